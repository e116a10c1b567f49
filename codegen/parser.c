/* The codegen parser (parser.h): file scope, extern "C" blocks, and the
 * P2PRPC_FUNCTION declarations; parser_param.c checks each parameter. */
#include "parser.h"

#include "fsutil.h"
#include "parser_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARKER "P2PRPC_FUNCTION"
/* extern "C" blocks nest at most this deep; headers use one. */
#define MAX_EXTERN_DEPTH 8

typedef struct parser {
    p2p__cg_lexer lx;
    p2p__cg_token tok; /* the current token */
    p2p_cg_header *out;
    p2p_error *err;
    int extern_depth;
    p2p__cg_token extern_open[MAX_EXTERN_DEPTH]; /* the '{' of each open block */
} parser;

static int next(parser *p) {
    return p2p__cg_lex_next(&p->lx, &p->tok, p->err);
}

static int fail_at(parser *p, const p2p__cg_token *t, const char *fmt, ...) P2P_PRINTF(3, 4);

/* An error at token `t`. */
static int fail_at(parser *p, const p2p__cg_token *t, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, t->line, t->col, "%s", msg);
}

/* The message for a token that is not the one expected: at the end of the
 * text it says where the declaration started. */
static int unexpected(parser *p, const char *expected, const p2p__cg_token *decl) {
    const p2p__cg_token *t = &p->tok;
    if (t->kind == P2P__CG_TOK_EOF)
        return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, t->line, t->col,
                             "unexpected end of file in the P2PRPC_FUNCTION declaration started "
                             "at line %d",
                             decl->line);
    return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, t->line, t->col,
                         "expected %s before '%.*s'", expected, (int)t->len, t->start);
}

static void param_cleanup(p2p_cg_param *prm) {
    free(prm->name);
    free(prm->c_type);
    memset(prm, 0, sizeof(*prm));
}

static void function_cleanup(p2p_cg_function *fn) {
    free(fn->name);
    for (size_t i = 0; i < fn->n_params; i++)
        param_cleanup(&fn->params[i]);
    free(fn->params);
    p2p_schema_free(fn->schema);
    memset(fn, 0, sizeof(*fn));
}

void p2p_cg_header_cleanup(p2p_cg_header *h) {
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n_functions; i++)
        function_cleanup(&h->functions[i]);
    free(h->functions);
    free(h->path);
    memset(h, 0, sizeof(*h));
}

/* Collects the tokens of one parameter, up to a ',' or ')' outside nested
 * brackets (left as the current token). */
static int collect_param(parser *p, const p2p__cg_token *decl, p2p__cg_param_toks *pt) {
    memset(pt, 0, sizeof(*pt));
    int depth = 0;
    for (;;) {
        const p2p__cg_token *t = &p->tok;
        bool open = p2p__cg_tok_is(t, "(") || p2p__cg_tok_is(t, "[");
        bool close = p2p__cg_tok_is(t, ")") || p2p__cg_tok_is(t, "]");
        if (t->kind == P2P__CG_TOK_EOF || p2p__cg_tok_is(t, ";") || p2p__cg_tok_is(t, "{") ||
            p2p__cg_tok_is(t, "}"))
            return unexpected(p, "')'", decl);
        if (depth == 0 && (p2p__cg_tok_is(t, ",") || p2p__cg_tok_is(t, ")")))
            return 0;
        if ((open || t->kind == P2P__CG_TOK_ELLIPSIS) && pt->bad.kind == P2P__CG_TOK_EOF)
            pt->bad = *t;
        depth += open ? 1 : close && depth > 0 ? -1 : 0;
        if (pt->n < P2P__CG_PARAM_TOKENS)
            pt->toks[pt->n++] = *t;
        pt->total++;
        int rc = next(p);
        if (rc != 0)
            return rc;
    }
}

static int add_param(p2p_cg_function *fn, p2p_cg_param *prm, p2p_error *err) {
    p2p_cg_param *grown = realloc(fn->params, (fn->n_params + 1) * sizeof(*grown));
    if (grown == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot grow a parameter list");
    fn->params = grown;
    fn->params[fn->n_params++] = *prm;
    memset(prm, 0, sizeof(*prm));
    return 0;
}

/* A second parameter of the same name; the schema would refuse it too, but
 * without saying where the first one is. */
static int check_duplicate(parser *p, const p2p_cg_function *fn, const p2p_cg_param *prm) {
    for (size_t i = 0; i < fn->n_params; i++) {
        if (strcmp(fn->params[i].name, prm->name) == 0)
            return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, prm->line, prm->col,
                                 "parameter '%s' of %s is already declared at line %d, column %d",
                                 prm->name, fn->name, fn->params[i].line, fn->params[i].col);
    }
    return 0;
}

/* Parses "( param, ... )" with the current token on '(' and leaves the one
 * after ')'. */
static int parse_params(parser *p, const p2p__cg_token *decl, p2p_cg_function *fn) {
    p2p__cg_param_toks pt;
    p2p_cg_param prm = {0};
    int rc = next(p);
    if (rc == 0 && p2p__cg_tok_is(&p->tok, ")"))
        rc = fail_at(p, &p->tok, "%s has no parameters; it needs at least one P2P_OUT output",
                     fn->name);
    for (size_t i = 0; rc == 0; i++) {
        rc = collect_param(p, decl, &pt);
        if (rc == 0 && pt.total == 0)
            rc = unexpected(p, "a parameter", decl);
        bool last = rc == 0 && p2p__cg_tok_is(&p->tok, ")");
        if (rc == 0)
            rc = p2p__cg_param_analyze(p->lx.path, fn->name, &pt, i, last && i == 0, &prm, p->err);
        if (rc == 0)
            rc = check_duplicate(p, fn, &prm);
        if (rc == 0)
            rc = add_param(fn, &prm, p->err);
        if (rc == 0)
            rc = next(p);
        if (last)
            break;
    }
    param_cleanup(&prm);
    return rc;
}

/* The schema of common/schema.h: inputs, then outputs, in declared order. */
static int build_schema(parser *p, p2p_cg_function *fn) {
    p2p_error why = {0};
    int rc = p2p_schema_new(fn->name, &fn->schema, &why);
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (size_t i = 0; i < fn->n_params && rc == 0; i++) {
            p2p_cg_param *prm = &fn->params[i];
            if (prm->output != (pass == 1))
                continue;
            rc = prm->output ? p2p_schema_add_output(fn->schema, prm->name, prm->type, &why)
                             : p2p_schema_add_input(fn->schema, prm->name, prm->type, &why);
            if (rc == P2P_EINVAL)
                return p2p__cg_error(p->err, rc, p->lx.path, prm->line, prm->col, "%s", why.msg);
        }
    }
    if (rc == 0)
        rc = p2p_schema_finish(fn->schema, &why);
    if (rc == P2P_EINVAL)
        return p2p__cg_error(p->err, rc, p->lx.path, fn->line, fn->col, "%s", why.msg);
    if (rc != 0)
        return p2p_error_set(p->err, rc, "%s", why.msg);
    return 0;
}

/* "int NAME" after the marker (and an optional extern), into fn->name. */
static int parse_head(parser *p, const p2p__cg_token *decl, p2p_cg_function *fn) {
    int rc = next(p);
    if (rc == 0 && p2p__cg_tok_is(&p->tok, "extern"))
        rc = next(p);
    if (rc != 0)
        return rc;
    if (p->tok.kind == P2P__CG_TOK_EOF)
        return unexpected(p, "'int'", decl);
    if (!p2p__cg_tok_is(&p->tok, "int"))
        return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, p->tok.line, p->tok.col,
                             "a P2PRPC_FUNCTION must return int (0 for success), not '%.*s'",
                             (int)p->tok.len, p->tok.start);
    if ((rc = next(p)) != 0)
        return rc;
    if (p2p__cg_tok_is(&p->tok, "*"))
        return fail_at(p, &p->tok,
                       "a P2PRPC_FUNCTION must return int (0 for success), not a pointer");
    if (p->tok.kind != P2P__CG_TOK_IDENT)
        return unexpected(p, "the function name", decl);
    fn->line = p->tok.line;
    fn->col = p->tok.col;
    if ((fn->name = p2p__cg_tok_dup(&p->tok)) == NULL)
        return p2p_error_set(p->err, P2P_ENOMEM, "cannot copy a function name");
    p2p_error why = {0};
    if (p2p_schema_check_function_name(fn->name, &why) != 0)
        return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, fn->line, fn->col, "%s", why.msg);
    for (size_t i = 0; i < p->out->n_functions; i++) {
        const p2p_cg_function *other = &p->out->functions[i];
        if (strcmp(other->name, fn->name) == 0)
            return p2p__cg_error(p->err, P2P_EINVAL, p->lx.path, fn->line, fn->col,
                                 "function %s is already declared at line %d, column %d", fn->name,
                                 other->line, other->col);
    }
    return next(p);
}

/* One declaration, from the marker (the current token) to its ';'. */
static int parse_function(parser *p) {
    p2p__cg_token decl = p->tok;
    p2p_cg_function fn = {0};
    int rc = parse_head(p, &decl, &fn);
    if (rc == 0 && !p2p__cg_tok_is(&p->tok, "("))
        rc = unexpected(p, "'(' after the function name", &decl);
    if (rc == 0)
        rc = parse_params(p, &decl, &fn);
    if (rc == 0 && p2p__cg_tok_is(&p->tok, "{"))
        rc = fail_at(p, &p->tok,
                     "%s is defined here; a P2PRPC_FUNCTION must be a declaration ending with "
                     "';' (define it in a .c file)",
                     fn.name);
    if (rc == 0 && !p2p__cg_tok_is(&p->tok, ";"))
        rc = unexpected(p, "';' after the declaration", &decl);
    if (rc == 0)
        rc = build_schema(p, &fn);
    if (rc == 0) {
        p2p_cg_function *grown =
            realloc(p->out->functions, (p->out->n_functions + 1) * sizeof(*grown));
        if (grown == NULL) {
            rc = p2p_error_set(p->err, P2P_ENOMEM, "cannot grow the function list");
        } else {
            p->out->functions = grown;
            p->out->functions[p->out->n_functions++] = fn;
            memset(&fn, 0, sizeof(fn));
        }
    }
    function_cleanup(&fn);
    return rc == 0 ? next(p) : rc;
}

/* Skips a '{' block that is not an extern "C" one (struct, enum, inline
 * function bodies...), leaving the token after its '}'. */
static int skip_block(parser *p) {
    p2p__cg_token open = p->tok;
    int rc = 0;
    for (long depth = 1; rc == 0 && depth > 0;) {
        if ((rc = next(p)) != 0)
            return rc;
        if (p->tok.kind == P2P__CG_TOK_EOF)
            return fail_at(p, &open, "'{' is never closed");
        if (p2p__cg_tok_is(&p->tok, MARKER))
            return fail_at(p, &p->tok,
                           "P2PRPC_FUNCTION must be at file scope, not inside a '{' block");
        depth += p2p__cg_tok_is(&p->tok, "{") ? 1 : p2p__cg_tok_is(&p->tok, "}") ? -1 : 0;
    }
    return next(p);
}

/* After "extern": a "C" string and '{' open a block whose content is file
 * scope for our purpose. Anything else is an ordinary declaration. */
static int parse_extern(parser *p) {
    int rc = next(p);
    if (rc != 0 || p->tok.kind != P2P__CG_TOK_STRING)
        return rc;
    if ((rc = next(p)) != 0 || !p2p__cg_tok_is(&p->tok, "{"))
        return rc;
    if (p->extern_depth == MAX_EXTERN_DEPTH)
        return fail_at(p, &p->tok, "extern blocks are nested deeper than %d levels",
                       MAX_EXTERN_DEPTH);
    p->extern_open[p->extern_depth++] = p->tok;
    return next(p);
}

static int parse_file_scope(parser *p) {
    int rc = next(p);
    while (rc == 0 && p->tok.kind != P2P__CG_TOK_EOF) {
        if (p2p__cg_tok_is(&p->tok, MARKER)) {
            rc = parse_function(p);
        } else if (p2p__cg_tok_is(&p->tok, "extern")) {
            rc = parse_extern(p);
        } else if (p2p__cg_tok_is(&p->tok, "{")) {
            rc = skip_block(p);
        } else if (p2p__cg_tok_is(&p->tok, "}")) {
            if (p->extern_depth == 0)
                return fail_at(p, &p->tok, "unexpected '}' at file scope");
            p->extern_depth--;
            rc = next(p);
        } else {
            rc = next(p);
        }
    }
    if (rc == 0 && p->extern_depth > 0)
        rc = fail_at(p, &p->extern_open[p->extern_depth - 1], "'{' is never closed");
    return rc;
}

int p2p_cg_parse(const char *path, const char *text, size_t len, p2p_cg_header *out,
                 p2p_error *err) {
    memset(out, 0, sizeof(*out));
    if (path == NULL || (text == NULL && len > 0))
        return p2p_error_set(err, P2P_EINVAL, "p2p_cg_parse: no path or no text");
    if ((out->path = strdup(path)) == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a path");
    if (len > P2P_CG_MAX_HEADER)
        return p2p_error_set(err, P2P_ETOOBIG, "%s: error: larger than %d bytes", path,
                             P2P_CG_MAX_HEADER);
    parser p = {.out = out, .err = err};
    p2p__cg_lex_init(&p.lx, path, text ? text : "", len);
    int rc = p2p__cg_lex_check_bytes(&p.lx, err);
    if (rc == 0)
        rc = parse_file_scope(&p);
    if (rc == 0 && out->n_functions == 0)
        rc = p2p__cg_error(err, P2P_EINVAL, path, 1, 1,
                           "no P2PRPC_FUNCTION declaration in this header (mark each remote "
                           "function with P2PRPC_FUNCTION)");
    return rc;
}

int p2p_cg_parse_file(const char *path, p2p_cg_header *out, p2p_error *err) {
    memset(out, 0, sizeof(*out));
    char *text = NULL;
    size_t len = 0;
    p2p_error why = {0};
    int rc = p2p_fs_read_file(path, P2P_CG_MAX_HEADER, &text, &len, &why);
    if (rc != 0)
        return p2p_error_set(err, rc, "%s: error: %s", path ? path : "(null)", why.msg);
    rc = p2p_cg_parse(path, text, len, out, err);
    free(text);
    return rc;
}
