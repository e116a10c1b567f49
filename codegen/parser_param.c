/* One parameter declaration of a P2PRPC_FUNCTION: its direction, its type
 * against the rules of DESIGN §1, and its name (parser_internal.h). */
#include "parser_internal.h"

#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_TYPES "int64_t, int, long, double, bool, const char * or p2p_file"
#define OUTPUT_TYPES "int64_t *, int *, long *, double *, bool *, char ** or p2p_file *"

/* A type as written, reduced to what the rules look at. */
typedef struct spelled_type {
    char base[64];      /* the specifier words without const, e.g. "long int" */
    char written[96];   /* the whole type as written, for messages */
    int stars;          /* pointer levels */
    bool const_pointee; /* const applies to what the first pointer points to */
} spelled_type;

/* The base types DESIGN §1 allows, with their normalised spelling. */
typedef struct allowed_base {
    const char *base;
    const char *c_type;
    p2p_type type;
} allowed_base;

static const allowed_base allowed_bases[] = {
    {"int64_t", "int64_t", P2P_TYPE_INT64}, {"int", "int", P2P_TYPE_INT64},
    {"long", "long", P2P_TYPE_INT64},       {"long int", "long", P2P_TYPE_INT64},
    {"double", "double", P2P_TYPE_DOUBLE},  {"bool", "bool", P2P_TYPE_BOOL},
    {"_Bool", "bool", P2P_TYPE_BOOL},       {"p2p_file", "p2p_file", P2P_TYPE_FILE},
    {"char", "char", P2P_TYPE_STRING},
};

/* Words that can only be part of a type, so a parameter ending with one has
 * no name. */
static const char *const type_words[] = {
    "int64_t", "int",   "long",  "double", "bool",    "_Bool",    "p2p_file", "char",
    "const",   "void",  "float", "short",  "signed",  "unsigned", "volatile", "restrict",
    "struct",  "union", "enum",  "size_t", "int32_t", "uint64_t", NULL,
};

static bool is_type_word(const p2p__cg_token *t) {
    for (size_t i = 0; type_words[i] != NULL; i++) {
        if (p2p__cg_tok_is(t, type_words[i]))
            return true;
    }
    return false;
}

static void append(char *buf, size_t size, const char *sep, const p2p__cg_token *t) {
    size_t used = strlen(buf);
    if (used < size)
        snprintf(buf + used, size - used, "%s%.*s", used > 0 ? sep : "", (int)t->len, t->start);
}

/* Reads the type tokens toks[0..n-1] (identifiers and '*' only, as
 * check_shape made sure). Returns 0, or P2P_EINVAL for a word after a '*'
 * other than const. */
static int spell_type(const char *path, const p2p__cg_token *toks, size_t n, spelled_type *st,
                      p2p_error *err) {
    memset(st, 0, sizeof(*st));
    unsigned const_levels = 0; /* bit k: a const after k stars */
    for (size_t i = 0; i < n; i++) {
        const p2p__cg_token *t = &toks[i];
        bool star = p2p__cg_tok_is(t, "*");
        append(st->written, sizeof(st->written), star && st->stars > 0 ? "" : " ", t);
        if (star)
            st->stars++;
        else if (p2p__cg_tok_is(t, "const"))
            const_levels |= 1u << (st->stars < 31 ? st->stars : 31);
        else if (st->stars == 0)
            append(st->base, sizeof(st->base), " ", t);
        else
            return p2p__cg_error(err, P2P_EINVAL, path, t->line, t->col,
                                 "unexpected '%.*s' after '*' in a parameter declaration",
                                 (int)t->len, t->start);
    }
    /* A const after the last '*' qualifies the parameter itself, which does not
     * change the function's type; any other one qualifies what is pointed to. */
    st->const_pointee = st->stars > 0 && (const_levels & ((1u << st->stars) - 1)) != 0;
    return 0;
}

static const allowed_base *find_base(const char *base) {
    for (size_t i = 0; i < sizeof(allowed_bases) / sizeof(allowed_bases[0]); i++) {
        if (strcmp(allowed_bases[i].base, base) == 0)
            return &allowed_bases[i];
    }
    return NULL;
}

/* The rules for an input: by value, or a const char * string. */
static int check_input(const char *path, const p2p__cg_token *name, const spelled_type *st,
                       const allowed_base *ab, const char **c_type, p2p_error *err) {
    int line = name->line, col = name->col, nl = (int)name->len;
    if (ab == NULL || (ab->type == P2P_TYPE_STRING && st->stars == 0))
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "type '%s' of input '%.*s' is not allowed; inputs are " INPUT_TYPES,
                             st->written, nl, name->start);
    if (ab->type == P2P_TYPE_STRING && st->stars == 1) {
        if (!st->const_pointee)
            return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                                 "string input '%.*s' must be 'const char *' (an output string "
                                 "is 'P2P_OUT char **')",
                                 nl, name->start);
        *c_type = "const char *";
        return 0;
    }
    if (st->stars > 0)
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "input '%.*s' is a pointer ('%s'): inputs are passed by value; "
                             "mark an output P2P_OUT",
                             nl, name->start, st->written);
    *c_type = ab->c_type;
    return 0;
}

/* The rules for an output: a non-const pointer to an allowed type, or
 * char ** for a string the function allocates. */
static int check_output(const char *path, const p2p__cg_token *name, const spelled_type *st,
                        const allowed_base *ab, char *c_type, size_t size, p2p_error *err) {
    int line = name->line, col = name->col, nl = (int)name->len;
    if (st->stars == 0)
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "P2P_OUT parameter '%.*s' must be a pointer (the function writes "
                             "its output through it)",
                             nl, name->start);
    if (ab == NULL)
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "type '%s' of output '%.*s' is not allowed; outputs are " OUTPUT_TYPES,
                             st->written, nl, name->start);
    if (st->const_pointee)
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "output '%.*s' must not point to const: the function writes it", nl,
                             name->start);
    int want = ab->type == P2P_TYPE_STRING ? 2 : 1;
    if (st->stars != want)
        return p2p__cg_error(err, P2P_EINVAL, path, line, col,
                             "output '%.*s' must be '%s %s', not '%s'%s", nl, name->start,
                             ab->c_type, want == 2 ? "**" : "*", st->written,
                             want == 2 ? " (the function stores a malloc'ed string)" : "");
    snprintf(c_type, size, "%s %s", ab->c_type, want == 2 ? "**" : "*");
    return 0;
}

/* Refuses what this C subset does not take: "...", arrays, function
 * pointers, a (void) list, a declaration with no name or no type. */
static int check_shape(const char *path, const char *fn_name, const p2p__cg_param_toks *pt,
                       size_t index, bool only, size_t first, p2p_error *err) {
    const p2p__cg_token *b = &pt->bad, *t0 = &pt->toks[0], *last = &pt->toks[pt->n - 1];
    if (b->kind == P2P__CG_TOK_ELLIPSIS)
        return p2p__cg_error(err, P2P_EINVAL, path, b->line, b->col,
                             "variadic functions ('...') cannot be called remotely");
    if (b->kind != P2P__CG_TOK_EOF && p2p__cg_tok_is(b, "("))
        return p2p__cg_error(err, P2P_EINVAL, path, b->line, b->col,
                             "function pointer parameters cannot be called remotely");
    if (b->kind != P2P__CG_TOK_EOF)
        return p2p__cg_error(err, P2P_EINVAL, path, b->line, b->col,
                             "array parameters are not allowed; pass a p2p_file or a string");
    if (pt->total > P2P__CG_PARAM_TOKENS)
        return p2p__cg_error(err, P2P_EINVAL, path, t0->line, t0->col,
                             "parameter %zu of %s is longer than %d tokens", index + 1, fn_name,
                             P2P__CG_PARAM_TOKENS);
    if (only && pt->n == 1 && p2p__cg_tok_is(t0, "void"))
        return p2p__cg_error(err, P2P_EINVAL, path, t0->line, t0->col,
                             "%s takes no parameters ('void'); it needs at least one P2P_OUT "
                             "output",
                             fn_name);
    for (size_t i = first; i < pt->n; i++) {
        const p2p__cg_token *t = &pt->toks[i];
        if (p2p__cg_tok_is(t, "P2P_OUT"))
            return p2p__cg_error(err, P2P_EINVAL, path, t->line, t->col,
                                 "P2P_OUT must come first in a parameter declaration");
        if (t->kind != P2P__CG_TOK_IDENT && !p2p__cg_tok_is(t, "*"))
            return p2p__cg_error(err, P2P_EINVAL, path, t->line, t->col,
                                 "unexpected '%.*s' in a parameter declaration", (int)t->len,
                                 t->start);
    }
    if (last->kind != P2P__CG_TOK_IDENT || is_type_word(last) || p2p__cg_tok_is(last, "P2P_OUT"))
        return p2p__cg_error(err, P2P_EINVAL, path, last->line, last->col,
                             "parameter %zu of %s has no name", index + 1, fn_name);
    if (pt->n - first < 2)
        return p2p__cg_error(err, P2P_EINVAL, path, last->line, last->col,
                             "parameter '%.*s' of %s has no type", (int)last->len, last->start,
                             fn_name);
    return 0;
}

/* The name rules of common/schema.h, with this parameter's position. */
static int check_name(const char *path, const p2p__cg_token *name, char **out, p2p_error *err) {
    *out = p2p__cg_tok_dup(name);
    if (*out == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a parameter name");
    p2p_error why = {0};
    if (p2p_schema_check_param_name(*out, &why) != 0)
        return p2p__cg_error(err, P2P_EINVAL, path, name->line, name->col, "%s", why.msg);
    return 0;
}

int p2p__cg_param_analyze(const char *path, const char *fn_name, const p2p__cg_param_toks *pt,
                          size_t index, bool only, p2p_cg_param *out, p2p_error *err) {
    bool output = pt->n > 0 && p2p__cg_tok_is(&pt->toks[0], "P2P_OUT");
    int rc = check_shape(path, fn_name, pt, index, only, output ? 1 : 0, err);
    if (rc != 0)
        return rc;
    const p2p__cg_token *name = &pt->toks[pt->n - 1];
    spelled_type st;
    size_t first = output ? 1 : 0;
    rc = spell_type(path, &pt->toks[first], pt->n - 1 - first, &st, err);
    if (rc != 0)
        return rc;
    const allowed_base *ab = find_base(st.base);
    char c_type[32];
    const char *in_type = NULL;
    if (output)
        rc = check_output(path, name, &st, ab, c_type, sizeof(c_type), err);
    else
        rc = check_input(path, name, &st, ab, &in_type, err);
    if (rc == 0)
        rc = check_name(path, name, &out->name, err);
    if (rc != 0)
        return rc;
    out->c_type = strdup(output ? c_type : in_type);
    if (out->c_type == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a parameter type");
    out->type = ab->type;
    out->output = output;
    out->line = name->line;
    out->col = name->col;
    return 0;
}
