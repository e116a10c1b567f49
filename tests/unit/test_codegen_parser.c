/* codegen/parser.h: annotated headers in, functions and schemas out; every
 * rule of DESIGN §1 and every malformed input gets a positioned error. */
#include "parser.h"
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#define EXAMPLE                                                                                    \
    "P2PRPC_FUNCTION\n"                                                                            \
    "int p2prpc_analyze_large_file(p2p_file video_handle, int64_t arg2,\n"                         \
    "                              P2P_OUT p2p_file *results_file1,\n"                             \
    "                              P2P_OUT p2p_file *results_file2,\n"                             \
    "                              P2P_OUT int64_t *res_var);\n"

static void parse_ok(const char *text, p2p_cg_header *h) {
    p2p_error err = {0};
    int rc = p2p_cg_parse("t.h", text, strlen(text), h, &err);
    if (rc != 0)
        fprintf(stderr, "unexpected parse error: %s\n", err.msg);
    ASSERT_OK(rc);
}

/* Parses `text` as "t.h" and checks the exact message of its first error. */
static void expect_error(const char *text, const char *msg) {
    p2p_cg_header h;
    p2p_error err = {0};
    ASSERT_EQ(p2p_cg_parse("t.h", text, strlen(text), &h, &err), P2P_EINVAL);
    ASSERT_EQ(err.code, P2P_EINVAL);
    ASSERT_STR_EQ(err.msg, msg);
    p2p_cg_header_cleanup(&h);
}

static void check_param(const p2p_cg_param *p, const char *name, const char *c_type, p2p_type type,
                        bool output) {
    ASSERT_STR_EQ(p->name, name);
    ASSERT_STR_EQ(p->c_type, c_type);
    ASSERT_EQ(p->type, type);
    ASSERT_EQ(p->output, output);
}

static void test_example(void) {
    p2p_cg_header h;
    parse_ok("#include <p2prpc/p2prpc.h>\n\n" EXAMPLE, &h);
    ASSERT_STR_EQ(h.path, "t.h");
    ASSERT_EQ(h.n_functions, 1);
    const p2p_cg_function *f = &h.functions[0];
    ASSERT_STR_EQ(f->name, "p2prpc_analyze_large_file");
    ASSERT_EQ(f->line, 4);
    ASSERT_EQ(f->col, 5);
    ASSERT_EQ(f->n_params, 5);
    check_param(&f->params[0], "video_handle", "p2p_file", P2P_TYPE_FILE, false);
    check_param(&f->params[1], "arg2", "int64_t", P2P_TYPE_INT64, false);
    check_param(&f->params[2], "results_file1", "p2p_file *", P2P_TYPE_FILE, true);
    check_param(&f->params[3], "results_file2", "p2p_file *", P2P_TYPE_FILE, true);
    check_param(&f->params[4], "res_var", "int64_t *", P2P_TYPE_INT64, true);
    ASSERT_EQ(f->params[1].line, 4);
    ASSERT_EQ(f->params[1].col, 62);
    ASSERT_EQ(f->params[4].line, 7);
    ASSERT_EQ(f->params[4].col, 48);

    /* The schema is the one the broker and worker build from JSON. */
    const p2p_param in[] = {{"video_handle", P2P_TYPE_FILE}, {"arg2", P2P_TYPE_INT64}};
    const p2p_param outs[] = {{"results_file1", P2P_TYPE_FILE},
                              {"results_file2", P2P_TYPE_FILE},
                              {"res_var", P2P_TYPE_INT64}};
    p2p_schema *want = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_analyze_large_file", in, 2, outs, 3, &want, NULL));
    ASSERT_TRUE(p2p_schema_finished(f->schema));
    ASSERT_STR_EQ(p2p_schema_fingerprint(f->schema), p2p_schema_fingerprint(want));
    p2p_schema_free(want);
    p2p_cg_header_cleanup(&h);
    p2p_cg_header_cleanup(&h); /* twice is harmless: zeroed */
}

/* Everything a real header holds around the declarations is skipped. */
static void test_header_content_tolerated(void) {
    const char *text = "/* A header with everything around the declarations.\n"
                       " * P2PRPC_FUNCTION in a comment is not a declaration. */\n"
                       "#ifndef MY_H\n"
                       "#define MY_H\n"
                       "#include <stdint.h>\n"
                       "#include \"p2prpc/p2prpc.h\" // the markers\n"
                       "#define LONG_MACRO(a, b) \\\n"
                       "    P2PRPC_FUNCTION int p2prpc_not_me(int x, \\\n"
                       "        P2P_OUT int *y);\n"
                       "  #  if defined(FOO) /* a comment\n"
                       "  spanning lines */ && 1\n"
                       "#endif\n"
                       "#ifdef __cplusplus\n"
                       "extern \"C\" {\n"
                       "#endif\n"
                       "typedef struct point { int x, y; } point;\n"
                       "enum color { RED = 1, GREEN = '}' };\n"
                       "struct nested { struct { int a; } inner; char s[4]; };\n"
                       "extern int other_function(int a, char *b);\n"
                       "extern const char *names[];\n"
                       "static inline int helper(int x) { if (x) { return 1; } return \"}\"[0]; }\n"
                       "int p2prpc_unmarked(int a, int *b); // no marker: not ours\n"
                       "typedef int (*callback)(void *, ...);\n"
                       "// P2PRPC_FUNCTION int p2prpc_commented(int a);\n"
                       "P2PRPC_FUNCTION int p2prpc_first(double ratio, P2P_OUT double *scaled);\n"
                       "#ifdef __cplusplus\n"
                       "}\n"
                       "#endif\n"
                       "#endif /* MY_H */\n";
    p2p_cg_header h;
    parse_ok(text, &h);
    ASSERT_EQ(h.n_functions, 1);
    ASSERT_STR_EQ(h.functions[0].name, "p2prpc_first");
    ASSERT_EQ(h.functions[0].line, 25);
    check_param(&h.functions[0].params[0], "ratio", "double", P2P_TYPE_DOUBLE, false);
    check_param(&h.functions[0].params[1], "scaled", "double *", P2P_TYPE_DOUBLE, true);
    p2p_cg_header_cleanup(&h);
}

/* An "#if 0" group is not read (up to its #else or #endif, nested
 * conditionals counted); other conditional groups are. */
static void test_if0_groups(void) {
    const char *text = "#if 0\n"
                       "P2PRPC_FUNCTION int p2prpc_old(int x); don't \"\n"
                       "#  ifdef X\n#else\n#endif\n"
                       "/* #endif */ // #endif\n"
                       "  #endif\n"
                       "#if 0 /* disabled */\n"
                       "P2PRPC_FUNCTION int p2prpc_old2(void);\n"
                       "#else\n"
                       "P2PRPC_FUNCTION int p2prpc_new(P2P_OUT int *y);\n"
                       "#endif\n"
                       "#ifdef NOT_DEFINED\n"
                       "P2PRPC_FUNCTION int p2prpc_ifdef(P2P_OUT int *y);\n"
                       "#endif\n"
                       "#if 00\n#endif\n"
                       "#if 0 || 1\n"
                       "P2PRPC_FUNCTION int p2prpc_or(P2P_OUT int *y);\n"
                       "#endif\n";
    p2p_cg_header h;
    parse_ok(text, &h);
    ASSERT_EQ(h.n_functions, 3);
    ASSERT_STR_EQ(h.functions[0].name, "p2prpc_new");
    ASSERT_EQ(h.functions[0].line, 11);
    ASSERT_STR_EQ(h.functions[1].name, "p2prpc_ifdef");
    ASSERT_STR_EQ(h.functions[2].name, "p2prpc_or");
    p2p_cg_header_cleanup(&h);
}

/* Every accepted spelling, whitespace and comments inside a declaration. */
static void test_types_and_layout(void) {
    const char *text = "P2PRPC_FUNCTION\n"
                       "extern int\n"
                       "  p2prpc_all ( int64_t a , int b, long c, long int d,\r\n"
                       "\tdouble e, bool f, _Bool g, const char *h, char const* i,\n"
                       "  const int64_t j, /* comment */ p2p_file k, const char *const l,\n"
                       "  P2P_OUT int64_t *o1, P2P_OUT int*o2, P2P_OUT long *o3,\n"
                       "  P2P_OUT double *o4, P2P_OUT bool *o5, P2P_OUT char **o6,\n"
                       "  P2P_OUT p2p_file *o7, P2P_OUT int64_t *const o8 // end\n"
                       ")\n"
                       ";";
    p2p_cg_header h;
    parse_ok(text, &h);
    const p2p_cg_function *f = &h.functions[0];
    ASSERT_EQ(f->n_params, 20);
    const char *types[] = {"int64_t",  "int",          "long",         "long",         "double",
                           "bool",     "bool",         "const char *", "const char *", "int64_t",
                           "p2p_file", "const char *", "int64_t *",    "int *",        "long *",
                           "double *", "bool *",       "char **",      "p2p_file *",   "int64_t *"};
    const p2p_type kinds[] = {P2P_TYPE_INT64,  P2P_TYPE_INT64,  P2P_TYPE_INT64, P2P_TYPE_INT64,
                              P2P_TYPE_DOUBLE, P2P_TYPE_BOOL,   P2P_TYPE_BOOL,  P2P_TYPE_STRING,
                              P2P_TYPE_STRING, P2P_TYPE_INT64,  P2P_TYPE_FILE,  P2P_TYPE_STRING,
                              P2P_TYPE_INT64,  P2P_TYPE_INT64,  P2P_TYPE_INT64, P2P_TYPE_DOUBLE,
                              P2P_TYPE_BOOL,   P2P_TYPE_STRING, P2P_TYPE_FILE,  P2P_TYPE_INT64};
    for (size_t i = 0; i < 20; i++) {
        ASSERT_STR_EQ(f->params[i].c_type, types[i]);
        ASSERT_EQ(f->params[i].type, kinds[i]);
        ASSERT_EQ(f->params[i].output, i >= 12);
    }
    ASSERT_EQ(f->line, 3);
    ASSERT_EQ(f->col, 3);
    size_t n_in = 0, n_out = 0;
    ASSERT_STR_EQ(p2p_schema_inputs(f->schema, &n_in)[7].name, "h");
    ASSERT_STR_EQ(p2p_schema_outputs(f->schema, &n_out)[5].name, "o6");
    ASSERT_EQ(n_in, 12);
    ASSERT_EQ(n_out, 8);
    p2p_cg_header_cleanup(&h);
}

/* Several functions, in declared order; outputs may come before inputs. */
static void test_several_functions(void) {
    const char *text = "P2PRPC_FUNCTION int p2prpc_a(P2P_OUT char **greeting, const char *who);\n"
                       "int unrelated(void);\n"
                       "P2PRPC_FUNCTION int p2prpc_b(P2P_OUT double *mean, int64_t n);\n"
                       "P2PRPC_FUNCTION int p2prpc_c(P2P_OUT bool *ok);\n";
    p2p_cg_header h;
    parse_ok(text, &h);
    ASSERT_EQ(h.n_functions, 3);
    ASSERT_STR_EQ(h.functions[0].name, "p2prpc_a");
    ASSERT_STR_EQ(h.functions[1].name, "p2prpc_b");
    ASSERT_STR_EQ(h.functions[2].name, "p2prpc_c");
    check_param(&h.functions[0].params[0], "greeting", "char **", P2P_TYPE_STRING, true);
    check_param(&h.functions[0].params[1], "who", "const char *", P2P_TYPE_STRING, false);
    size_t n = 0;
    ASSERT_STR_EQ(p2p_schema_inputs(h.functions[0].schema, &n)[0].name, "who");
    ASSERT_EQ(h.functions[2].n_params, 1);
    p2p_cg_header_cleanup(&h);
}

/* A BOM, CRLF line ends and UTF-8 in comments and strings are fine; the text
 * need not be NUL-terminated. */
static void test_encoding_and_bounds(void) {
    const char text[] = "\xEF\xBB\xBF// caf\xC3\xA9\r\n"
                        "static const char *s = \"\xE2\x82\xAC\";\r\n"
                        "P2PRPC_FUNCTION int p2prpc_x(P2P_OUT int *y);XXXX";
    p2p_cg_header h;
    p2p_error err = {0};
    ASSERT_OK(p2p_cg_parse("t.h", text, sizeof(text) - 1 - 4, &h, &err));
    ASSERT_EQ(h.functions[0].line, 3);
    ASSERT_EQ(h.functions[0].col, 21);
    p2p_cg_header_cleanup(&h);
    /* Cut before the ';': the text ends inside the declaration. */
    ASSERT_EQ(p2p_cg_parse("t.h", text, sizeof(text) - 1 - 5, &h, &err), P2P_EINVAL);
    ASSERT_STR_EQ(err.msg, "t.h:3:45: error: unexpected end of file in the P2PRPC_FUNCTION "
                           "declaration started at line 3");
    p2p_cg_header_cleanup(&h);
}

static void test_parse_file(void) {
    const char *tmp = getenv("P2PRPC_TEST_TMP");
    ASSERT_TRUE(tmp != NULL);
    ASSERT_TRUE(mkdir(tmp, 0700) == 0 || errno == EEXIST);
    char path[512];
    snprintf(path, sizeof(path), "%s/parser_example.h", tmp);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fputs(EXAMPLE, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
    p2p_cg_header h;
    p2p_error err = {0};
    ASSERT_OK(p2p_cg_parse_file(path, &h, &err));
    ASSERT_STR_EQ(h.path, path);
    ASSERT_EQ(h.n_functions, 1);
    p2p_cg_header_cleanup(&h);

    snprintf(path, sizeof(path), "%s/parser_missing.h", tmp);
    ASSERT_EQ(p2p_cg_parse_file(path, &h, &err), P2P_ENOTFOUND);
    char want[600];
    snprintf(want, sizeof(want), "%s: error: ", path);
    ASSERT_EQ(strncmp(err.msg, want, strlen(want)), 0);
    ASSERT_STR_CONTAINS(err.msg, "No such file");
    p2p_cg_header_cleanup(&h);
    ASSERT_EQ(p2p_cg_parse_file(tmp, &h, &err), P2P_EINVAL); /* a directory */
    p2p_cg_header_cleanup(&h);
}

/* DESIGN §1, one rule at a time. */
static void test_rule_errors(void) {
    expect_error("P2PRPC_FUNCTION int p2prpc_f(float x, P2P_OUT int *y);",
                 "t.h:1:36: error: type 'float' of input 'x' is not allowed; inputs are int64_t, "
                 "int, long, double, bool, const char * or p2p_file");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT unsigned long *y);",
                 "t.h:1:60: error: type 'unsigned long *' of output 'y' is not allowed; outputs "
                 "are int64_t *, int *, long *, double *, bool *, char ** or p2p_file *");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(struct pt p, P2P_OUT int *y);",
                 "t.h:1:40: error: type 'struct pt' of input 'p' is not allowed; inputs are "
                 "int64_t, int, long, double, bool, const char * or p2p_file");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x,\n  P2P_OUT int y);",
                 "t.h:2:15: error: P2P_OUT parameter 'y' must be a pointer (the function writes "
                 "its output through it)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int64_t *x, P2P_OUT int *y);",
                 "t.h:1:39: error: input 'x' is a pointer ('int64_t *'): inputs are passed by "
                 "value; mark an output P2P_OUT");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(char *s, P2P_OUT int *y);",
                 "t.h:1:36: error: string input 's' must be 'const char *' (an output string is "
                 "'P2P_OUT char **')");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT char *s);",
                 "t.h:1:44: error: output 's' must be 'char **', not 'char *' (the function "
                 "stores a malloc'ed string)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int **s);",
                 "t.h:1:44: error: output 's' must be 'int *', not 'int **'");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT const int64_t *s);",
                 "t.h:1:53: error: output 's' must not point to const: the function writes it");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int64_t a, double b);",
                 "t.h:1:21: error: p2prpc_f has no output; a function needs at least one");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int a, P2P_OUT int *a);",
                 "t.h:1:50: error: parameter 'a' of p2prpc_f is already declared at line 1, "
                 "column 34");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int status, P2P_OUT int *y);",
                 "t.h:1:34: error: parameter name \"status\" is reserved by p2prpc (it names a "
                 "member of calls)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *progress);",
                 "t.h:1:50: error: parameter name \"progress\" is reserved by p2prpc (it names a "
                 "member of calls)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int p2p_x, P2P_OUT int *y);",
                 "t.h:1:34: error: parameter name \"p2p_x\" is in the framework's namespace "
                 "(\"p2p\" prefix)");
    expect_error("P2PRPC_FUNCTION int analyze(int x, P2P_OUT int *y);",
                 "t.h:1:21: error: function name \"analyze\" must start with \"p2prpc_\" followed "
                 "by at least one character");
    expect_error("P2PRPC_FUNCTION int p2prpc_(int x, P2P_OUT int *y);",
                 "t.h:1:21: error: function name \"p2prpc_\" must start with \"p2prpc_\" followed "
                 "by at least one character");
    expect_error("P2PRPC_FUNCTION void p2prpc_f(int x, P2P_OUT int *y);",
                 "t.h:1:17: error: a P2PRPC_FUNCTION must return int (0 for success), not 'void'");
    expect_error("P2PRPC_FUNCTION int *p2prpc_f(int x, P2P_OUT int *y);",
                 "t.h:1:21: error: a P2PRPC_FUNCTION must return int (0 for success), not a "
                 "pointer");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n"
                 "P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *z);",
                 "t.h:2:21: error: function p2prpc_f is already declared at line 1, column 21");
}

/* What is not C, or not the C subset a remote function can have. */
static void test_syntax_errors(void) {
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int64_t, P2P_OUT int *y);",
                 "t.h:1:30: error: parameter 1 of p2prpc_f has no name");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *);",
                 "t.h:1:49: error: parameter 2 of p2prpc_f has no name");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(x, P2P_OUT int *y);",
                 "t.h:1:30: error: parameter 'x' of p2prpc_f has no type");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y, ...);",
                 "t.h:1:46: error: variadic functions ('...') cannot be called remotely");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y;",
                 "t.h:1:51: error: expected ')' before ';'");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y)\n"
                 "P2PRPC_FUNCTION int p2prpc_g(P2P_OUT int *z);",
                 "t.h:2:1: error: expected ';' after the declaration before 'P2PRPC_FUNCTION'");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y)",
                 "t.h:1:52: error: unexpected end of file in the P2PRPC_FUNCTION declaration "
                 "started at line 1");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x,\n",
                 "t.h:2:1: error: unexpected end of file in the P2PRPC_FUNCTION declaration "
                 "started at line 1");
    expect_error("P2PRPC_FUNCTION", "t.h:1:16: error: unexpected end of file in the "
                                    "P2PRPC_FUNCTION declaration started at line 1");
    expect_error("/* never closed\nP2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);",
                 "t.h:1:1: error: unterminated comment");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n  #if 0\n#if 1\n#endif\n",
                 "t.h:2:3: error: unterminated #if 0 (no #endif)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n"
                 "static const char *s = \"never closed;\n",
                 "t.h:2:24: error: unterminated string literal");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\nchar c = 'x;\n",
                 "t.h:2:10: error: unterminated character literal");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x[4], P2P_OUT int *y);",
                 "t.h:1:35: error: array parameters are not allowed; pass a p2p_file or a string");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int (*cb)(int), P2P_OUT int *y);",
                 "t.h:1:34: error: function pointer parameters cannot be called remotely");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(void);",
                 "t.h:1:30: error: p2prpc_f takes no parameters ('void'); it needs at least one "
                 "P2P_OUT output");
    expect_error("P2PRPC_FUNCTION int p2prpc_f();",
                 "t.h:1:30: error: p2prpc_f has no parameters; it needs at least one P2P_OUT "
                 "output");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, , P2P_OUT int *y);",
                 "t.h:1:37: error: expected a parameter before ','");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y,);",
                 "t.h:1:52: error: expected a parameter before ')'");
    expect_error("#include <stdint.h>\nint other(int a);\n",
                 "t.h:1:1: error: no P2PRPC_FUNCTION declaration in this header (mark each remote "
                 "function with P2PRPC_FUNCTION)");
    expect_error("", "t.h:1:1: error: no P2PRPC_FUNCTION declaration in this header (mark each "
                     "remote function with P2PRPC_FUNCTION)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y) {\n  return 0;\n}\n",
                 "t.h:1:53: error: p2prpc_f is defined here; a P2PRPC_FUNCTION must be a "
                 "declaration ending with ';' (define it in a .c file)");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x P2P_OUT, int *y);",
                 "t.h:1:36: error: P2P_OUT must come first in a parameter declaration");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int P2P_OUT *y);",
                 "t.h:1:34: error: P2P_OUT must come first in a parameter declaration");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int x = 3, P2P_OUT int *y);",
                 "t.h:1:36: error: unexpected '=' in a parameter declaration");
    expect_error("P2PRPC_FUNCTION int p2prpc_f;", "t.h:1:29: error: expected '(' after the "
                                                  "function name before ';'");
    expect_error("P2PRPC_FUNCTION int (p2prpc_f)(P2P_OUT int *y);",
                 "t.h:1:21: error: expected the function name before '('");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n}\n",
                 "t.h:2:1: error: unexpected '}' at file scope");
    expect_error("extern \"C\" {\nP2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n",
                 "t.h:1:12: error: '{' is never closed");
    expect_error("struct s {\n  int a;\nP2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n};\n",
                 "t.h:3:1: error: P2PRPC_FUNCTION must be at file scope, not inside a '{' block");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\nstruct s {\n  int a;\n",
                 "t.h:2:10: error: '{' is never closed");
    expect_error("P2PRPC_FUNCTION int p2prpc_f(int \xC3\xA9t\xC3\xA9, P2P_OUT int *y);",
                 "t.h:1:34: error: unexpected '\xC3\xA9' in a parameter declaration");
}

/* Bytes that are not UTF-8 text. */
static void test_byte_errors(void) {
    const char nul[] = "P2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);\n// a\0b\n";
    p2p_cg_header h;
    p2p_error err = {0};
    ASSERT_EQ(p2p_cg_parse("t.h", nul, sizeof(nul) - 1, &h, &err), P2P_EINVAL);
    ASSERT_STR_EQ(err.msg, "t.h:2:5: error: NUL byte in the header (is it a text file?)");
    p2p_cg_header_cleanup(&h);
    expect_error("/* latin-1 \xE9 */\nP2PRPC_FUNCTION int p2prpc_f(P2P_OUT int *y);",
                 "t.h:1:12: error: invalid UTF-8 byte 0xE9 (headers must be UTF-8 text)");
    expect_error("// ok\n\xC0\xAF", "t.h:2:1: error: invalid UTF-8 byte 0xC0 (headers must be "
                                    "UTF-8 text)");
}

/* Limits: the largest header, the longest parameter, the most parameters. */
static void test_limits(void) {
    p2p_cg_header h;
    p2p_error err = {0};
    ASSERT_EQ(p2p_cg_parse("t.h", "", (size_t)P2P_CG_MAX_HEADER + 1, &h, &err), P2P_ETOOBIG);
    ASSERT_STR_EQ(err.msg, "t.h: error: larger than 4194304 bytes");
    p2p_cg_header_cleanup(&h);
    expect_error("P2PRPC_FUNCTION int p2prpc_f(const const const const const const const const "
                 "const const const const const const const int x, P2P_OUT int *y);",
                 "t.h:1:30: error: parameter 1 of p2prpc_f is longer than 16 tokens");
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof(text), "P2PRPC_FUNCTION int p2prpc_f(");
    for (int i = 0; i < 65; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "int a%d, ", i);
    snprintf(text + used, sizeof(text) - used, "P2P_OUT int *y);");
    ASSERT_EQ(p2p_cg_parse("t.h", text, strlen(text), &h, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "t.h:1:");
    ASSERT_STR_CONTAINS(err.msg, ": error: p2prpc_f has more than 64 inputs");
    p2p_cg_header_cleanup(&h);
}

int main(void) {
    TEST_RUN(test_example);
    TEST_RUN(test_header_content_tolerated);
    TEST_RUN(test_if0_groups);
    TEST_RUN(test_types_and_layout);
    TEST_RUN(test_several_functions);
    TEST_RUN(test_encoding_and_bounds);
    TEST_RUN(test_parse_file);
    TEST_RUN(test_rule_errors);
    TEST_RUN(test_syntax_errors);
    TEST_RUN(test_byte_errors);
    TEST_RUN(test_limits);
    return 0;
}
