/* clientapp.c of `p2prpc generate-client`: a command-line program that calls
 * any function of the header with arguments from argv, shows a progress bar
 * on stderr, and prints the outputs as "name = value" lines on stdout. It is
 * also the template of a user's own call site. */
#include "generate_internal.h"

#include <ctype.h>
#include <string.h>

/* The argument's placeholder in the usage line: its name in capitals. */
static void placeholder(p2p__cg_buf *b, const p2p_cg_param *p) {
    for (const char *c = p->name; *c; c++)
        p2p__cg_printf(b, "%c", toupper((unsigned char)*c));
}

/* if (PARSER("clientapp", "NAME", p2p_argv[I], LO, HI, &INTO) != 0) return 2; */
static void parse_number(p2p__cg_buf *b, const char *parser, const p2p_cg_param *p, size_t i,
                         const char *lo, const char *hi, const char *into) {
    p2p__cg_call c = {0};
    p2p__cg_call_arg(&c, "\"clientapp\"");
    p2p__cg_call_arg(&c, "\"%s\"", p->name);
    p2p__cg_call_arg(&c, "p2p_argv[%zu]", i);
    p2p__cg_call_arg(&c, "%s", lo);
    p2p__cg_call_arg(&c, "%s", hi);
    p2p__cg_call_arg(&c, "&%s", into);
    p2p__cg_call_write(b, &c, 4, "if (", parser, " != 0)");
    p2p__cg_printf(b, "        return 2;\n");
}

/* Parses argv[i] into the input `p`; a bad value is a usage error. */
static void parse_arg(p2p__cg_buf *b, const p2p_cg_param *p, size_t i) {
    const char *t = p->c_type;
    p2p__cg_printf(b, "    ");
    p2p__cg_decl(b, p, p->name);
    if (p->type == P2P_TYPE_STRING) {
        p2p__cg_printf(b, " = p2p_argv[%zu];\n", i);
    } else if (p->type == P2P_TYPE_FILE) {
        p2p__cg_printf(b, " = {.path = p2p_argv[%zu]};\n", i);
    } else if (p->type == P2P_TYPE_BOOL) {
        p2p__cg_printf(b,
                       " = false;\n    if (p2p_stub_parse_bool(p2p_argv[%zu], &%s) != 0) {\n"
                       "        fprintf(stderr, \"clientapp: %s: \\\"%%s\\\" is not true or "
                       "false\\n\", p2p_argv[%zu]);\n        return 2;\n    }\n",
                       i, p->name, p->name, i);
    } else if (p->type == P2P_TYPE_DOUBLE) {
        p2p__cg_printf(b, " = 0;\n");
        parse_number(b, "p2p_cli_number", p, i, "-DBL_MAX", "DBL_MAX", p->name);
    } else {
        const char *lo = strcmp(t, "int") == 0    ? "INT_MIN"
                         : strcmp(t, "long") == 0 ? "LONG_MIN"
                                                  : "INT64_MIN";
        const char *hi = strcmp(t, "int") == 0    ? "INT_MAX"
                         : strcmp(t, "long") == 0 ? "LONG_MAX"
                                                  : "INT64_MAX";
        char into[P2P_SCHEMA_NAME_MAX + 8];
        snprintf(into, sizeof(into), "p2p_v_%s", p->name);
        p2p__cg_printf(b, " = 0;\n    long long %s = 0;\n", into);
        parse_number(b, "p2p_cli_integer", p, i, lo, hi, into);
        p2p__cg_printf(b, "    %s = (%s)%s;\n", p->name, t, into);
    }
}

static void print_output(p2p__cg_buf *b, const p2p_cg_param *p) {
    const char *t = p->c_type;
    const char *n = p->name;
    switch (p->type) {
    case P2P_TYPE_INT64:
        if (strcmp(t, "int *") == 0)
            p2p__cg_printf(b, "        printf(\"%s = %%d\\n\", %s);\n", n, n);
        else if (strcmp(t, "long *") == 0)
            p2p__cg_printf(b, "        printf(\"%s = %%ld\\n\", %s);\n", n, n);
        else
            p2p__cg_printf(b, "        printf(\"%s = %%\" PRId64 \"\\n\", %s);\n", n, n);
        break;
    case P2P_TYPE_DOUBLE:
        p2p__cg_printf(b, "        printf(\"%s = %%.17g\\n\", %s);\n", n, n);
        break;
    case P2P_TYPE_BOOL:
        p2p__cg_printf(b, "        printf(\"%s = %%s\\n\", %s ? \"true\" : \"false\");\n", n, n);
        break;
    case P2P_TYPE_STRING:
        p2p__cg_printf(b, "        printf(\"%s = %%s\\n\", %s);\n", n, n);
        break;
    case P2P_TYPE_FILE:
        p2p__cg_printf(b, "        printf(\"%s = %%s\\n\", %s.path);\n", n, n);
        break;
    }
}

/* The usage check: one argument per input, named in capitals. */
static void usage_check(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b,
                   "    if (p2p_argc != %zu) {\n"
                   "        fprintf(stderr, \"usage: clientapp %s",
                   p2p__cg_count(f, false), f->name);
    for (size_t i = 0; i < f->n_params; i++) {
        if (!f->params[i].output) {
            p2p__cg_printf(b, " ");
            placeholder(b, &f->params[i]);
        }
    }
    p2p__cg_printf(b, "\\n\");\n        return 2;\n    }\n");
}

/* The outputs' local variables, then NAME_get into them. */
static void get_outputs(p2p__cg_buf *b, const p2p_cg_function *f) {
    for (size_t i = 0; i < f->n_params; i++) {
        const p2p_cg_param *p = &f->params[i];
        if (!p->output)
            continue;
        p2p__cg_printf(b, "    ");
        p2p__cg_pointee(b, p->c_type, true);
        p2p__cg_printf(b, "%s = %s;\n", p->name,
                       p->type == P2P_TYPE_STRING ? "NULL"
                       : p->type == P2P_TYPE_BOOL ? "false"
                       : p->type == P2P_TYPE_FILE ? "{0}"
                                                  : "0");
    }
    p2p__cg_call c = {0};
    p2p__cg_call_arg(&c, "p2p_f");
    p2p__cg_call_arg(&c, "-1");
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output)
            p2p__cg_call_arg(&c, "&%s", f->params[i].name);
    char name[P2P_SCHEMA_NAME_MAX + 8];
    snprintf(name, sizeof(name), "%s_get", f->name);
    p2p__cg_call_write(b, &c, 4, "int p2p_rc = ", name, ";");
    p2p__cg_printf(b, "    p2p_end_progress();\n");
}

static void runner(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b, "\nstatic int run_%s(int p2p_argc, char **p2p_argv) {\n%s", f->name,
                   p2p__cg_count(f, false) ? "" : "    (void)p2p_argv;\n");
    usage_check(b, f);
    for (size_t i = 0, k = 0; i < f->n_params; i++)
        if (!f->params[i].output)
            parse_arg(b, &f->params[i], k++);
    p2p__cg_async_call(b, f, "&p2p_progress_bar");
    p2p__cg_printf(b,
                   "    if (p2p_f == NULL) {\n"
                   "        fprintf(stderr, \"clientapp: %s: %%s\\n\", p2p_stub_last_error());\n"
                   "        return 1;\n    }\n",
                   f->name);
    get_outputs(b, f);
    p2p__cg_printf(b, "    if (p2p_rc == 0) {\n");
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output)
            print_output(b, &f->params[i]);
    p2p__cg_printf(b,
                   "        printf(\"call = %%s%%s\\n\", p2p_future_identifier(p2p_f),\n"
                   "               p2p_future_cached(p2p_f) ? \" (cached)\" : \"\");\n"
                   "    } else {\n"
                   "        fprintf(stderr, \"clientapp: %s: %%s\\n\", p2p_stub_last_error());\n"
                   "    }\n",
                   f->name);
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output && f->params[i].type == P2P_TYPE_STRING)
            p2p__cg_printf(b, "    free(%s);\n", f->params[i].name);
    p2p__cg_printf(b, "    p2p_future_free(p2p_f);\n    return p2p_rc == 0 ? 0 : 1;\n}\n");
}

static const char progress_code[] =
    "/* The progress bar on stderr, redrawn at each new percentage. */\n"
    "static int p2p_last_percent = -1;\n\n"
    "static void p2p_show_progress(const p2p_future *f, double percent, void *ctx) {\n"
    "    (void)f;\n    (void)ctx;\n"
    "    int filled = (int)(percent / 5.0), shown = (int)percent;\n"
    "    if (shown == p2p_last_percent)\n        return;\n"
    "    char bar[21];\n"
    "    for (int i = 0; i < 20; i++)\n        bar[i] = i < filled ? '#' : '.';\n"
    "    bar[20] = '\\0';\n"
    "    fprintf(stderr, \"\\r[%s] %3d%%\", bar, shown);\n"
    "    fflush(stderr);\n"
    "    p2p_last_percent = shown;\n}\n\n"
    "static void p2p_show_upload(const char *input, int64_t sent, int64_t total, void *ctx) {\n"
    "    (void)ctx;\n"
    "    if (sent == total && total > 0)\n"
    "        fprintf(stderr, \"uploaded %s (%\" PRId64 \" bytes)\\n\", input, total);\n}\n\n"
    "static void p2p_end_progress(void) {\n"
    "    if (p2p_last_percent >= 0)\n        fprintf(stderr, \"\\n\");\n"
    "    p2p_last_percent = -1;\n}\n\n"
    "static const p2p_call_options p2p_progress_bar = {.on_progress = p2p_show_progress,\n"
    "                                                  .on_upload = p2p_show_upload};\n";

/* {"NAME", "ARG(type) ...", run_NAME}, wrapped at 100 columns. */
static void table_entry(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_buf args = {0};
    for (size_t j = 0, k = 0; j < f->n_params; j++) {
        if (f->params[j].output)
            continue;
        p2p__cg_printf(&args, "%s", k++ ? " " : "");
        placeholder(&args, &f->params[j]);
        p2p__cg_printf(&args, "(%s)", p2p_type_name(f->params[j].type));
    }
    p2p__cg_printf(b, "    {");
    size_t open = p2p__cg_column(b);
    p2p__cg_item(b, open, true, "\"%s\"", f->name);
    if (args.failed)
        b->failed = true;
    else
        p2p__cg_item(b, open, false, "\"%s\"", args.data ? args.data : "");
    p2p__cg_item(b, open, false, "run_%s", f->name);
    p2p__cg_printf(b, "},\n");
    p2p__cg_buf_cleanup(&args);
}

static void main_fn(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_printf(b, "\nstatic const struct {\n    const char *name;\n    const char *args;\n"
                      "    int (*run)(int argc, char **argv);\n} p2p_commands[] = {\n");
    for (size_t i = 0; i < h->n_functions; i++)
        table_entry(b, &h->functions[i]);
    p2p__cg_printf(
        b, "};\n\n"
           "static void p2p_usage(FILE *out) {\n"
           "    fprintf(out, \"usage: clientapp FUNCTION ARGUMENTS...\\nfunctions:\\n\");\n"
           "    for (size_t i = 0; i < sizeof(p2p_commands) / sizeof(p2p_commands[0]); i++)\n"
           "        fprintf(out, \"  %%s %%s\\n\", p2p_commands[i].name, p2p_commands[i].args);\n"
           "    fprintf(out, \"A file argument is a path; a bool is true or false.\\n\");\n"
           "}\n\n"
           "int main(int argc, char **argv) {\n"
           "    if (argc < 2 || strcmp(argv[1], \"--help\") == 0) {\n"
           "        p2p_usage(argc < 2 ? stderr : stdout);\n"
           "        return argc < 2 ? 2 : 0;\n"
           "    }\n"
           "    for (size_t i = 0; i < sizeof(p2p_commands) / sizeof(p2p_commands[0]); i++) {\n"
           "        if (strcmp(argv[1], p2p_commands[i].name) == 0) {\n"
           "            int rc = p2p_commands[i].run(argc - 2, argv + 2);\n"
           "            p2p_stub_shutdown();\n"
           "            return rc;\n"
           "        }\n"
           "    }\n"
           "    fprintf(stderr, \"clientapp: unknown function '%%s'\\n\", argv[1]);\n"
           "    p2p_usage(stderr);\n"
           "    return 2;\n"
           "}\n");
}

void p2p__cg_clientapp(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_c(b, h);
    p2p__cg_printf(b,
                   "/* A client of the functions of %s, and a template for your own call\n"
                   " * sites:\n"
                   " *     clientapp FUNCTION ARGUMENTS...\n"
                   " * calls FUNCTION remotely (FUNCTION_async, then FUNCTION_get) with a\n"
                   " * progress bar on stderr, and prints its outputs as \"name = value\" lines\n"
                   " * on stdout (an output file is its path in the client's cache), then\n"
                   " * \"call = IDENTIFIER\", followed by \" (cached)\" when the local cache\n"
                   " * answered. Exit status 0, 1 when the call failed, 2 on a usage error. */\n"
                   "#include \"stubs.h\"\n\n"
                   "#include <p2prpc/cliutil.h>\n\n"
                   "#include <float.h>\n#include <inttypes.h>\n#include <limits.h>\n"
                   "#include <stdbool.h>\n#include <stdint.h>\n#include <stdio.h>\n"
                   "#include <stdlib.h>\n#include <string.h>\n\n%s",
                   p2p__cg_basename(h->path), progress_code);
    for (size_t i = 0; i < h->n_functions; i++)
        runner(b, &h->functions[i]);
    main_fn(b, h);
}
