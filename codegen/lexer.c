/* The codegen lexer (lexer_internal.h). Hand-written on purpose: the input is
 * a small subset of C, and no library we use lexes C. */
#include "lexer_internal.h"

#include "value.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

void p2p__cg_lex_init(p2p__cg_lexer *lx, const char *path, const char *text, size_t len) {
    memset(lx, 0, sizeof(*lx));
    lx->path = path;
    lx->text = text;
    lx->len = len;
    lx->line = 1;
    lx->col = 1;
    lx->line_start = true;
    /* A BOM is invisible to editors, so columns start after it. */
    if (len >= sizeof(utf8_bom) && memcmp(text, utf8_bom, sizeof(utf8_bom)) == 0)
        lx->pos = sizeof(utf8_bom);
}

int p2p__cg_error(p2p_error *err, int code, const char *path, int line, int col, const char *fmt,
                  ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return p2p_error_set(err, code, "%s:%d:%d: error: %s", path, line, col, msg);
}

char *p2p__cg_tok_dup(const p2p__cg_token *tok) {
    char *copy = malloc(tok->len + 1);
    if (copy != NULL) {
        memcpy(copy, tok->start, tok->len);
        copy[tok->len] = '\0';
    }
    return copy;
}

bool p2p__cg_tok_is(const p2p__cg_token *tok, const char *s) {
    if (tok->kind != P2P__CG_TOK_IDENT && tok->kind != P2P__CG_TOK_PUNCT &&
        tok->kind != P2P__CG_TOK_ELLIPSIS)
        return false;
    size_t n = strlen(s);
    return tok->len == n && memcmp(tok->start, s, n) == 0;
}

/* The line and column of byte `offset`, counted from the lexer's start. */
static void position_of(const p2p__cg_lexer *lx, size_t offset, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = lx->pos; i < offset && i < lx->len; i++) {
        if (lx->text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int p2p__cg_lex_check_bytes(const p2p__cg_lexer *lx, p2p_error *err) {
    const char *body = lx->text + lx->pos;
    size_t n = lx->len - lx->pos;
    const char *nul = memchr(body, '\0', n);
    size_t bad = n;
    bool utf8_ok = p2p_utf8_valid(body, n, &bad);
    int line, col;
    if (nul != NULL && (utf8_ok || (size_t)(nul - body) < bad)) {
        position_of(lx, lx->pos + (size_t)(nul - body), &line, &col);
        return p2p__cg_error(err, P2P_EINVAL, lx->path, line, col,
                             "NUL byte in the header (is it a text file?)");
    }
    if (!utf8_ok) {
        position_of(lx, lx->pos + bad, &line, &col);
        return p2p__cg_error(err, P2P_EINVAL, lx->path, line, col,
                             "invalid UTF-8 byte 0x%02X (headers must be UTF-8 text)",
                             (unsigned)(unsigned char)body[bad]);
    }
    return 0;
}

static int peek(const p2p__cg_lexer *lx, size_t ahead) {
    size_t i = lx->pos + ahead;
    return i < lx->len ? (unsigned char)lx->text[i] : -1;
}

static void advance(p2p__cg_lexer *lx) {
    if (lx->pos >= lx->len)
        return;
    if (lx->text[lx->pos] == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->pos++;
}

/* A backslash that ends the line joins it with the next (C translation phase
 * 2); returns true after skipping one. */
static bool skip_splice(p2p__cg_lexer *lx) {
    if (peek(lx, 0) != '\\')
        return false;
    if (peek(lx, 1) == '\n') {
        advance(lx);
        advance(lx);
        return true;
    }
    if (peek(lx, 1) == '\r' && peek(lx, 2) == '\n') {
        advance(lx);
        advance(lx);
        advance(lx);
        return true;
    }
    return false;
}

/* Skips a block comment that starts at the current "/ *". */
static int skip_block_comment(p2p__cg_lexer *lx, p2p_error *err) {
    int line = lx->line, col = lx->col;
    advance(lx);
    advance(lx);
    while (lx->pos < lx->len) {
        if (peek(lx, 0) == '*' && peek(lx, 1) == '/') {
            advance(lx);
            advance(lx);
            return 0;
        }
        advance(lx);
    }
    return p2p__cg_error(err, P2P_EINVAL, lx->path, line, col, "unterminated comment");
}

/* Skips a line comment up to (not including) its newline. */
static void skip_line_comment(p2p__cg_lexer *lx) {
    while (lx->pos < lx->len && peek(lx, 0) != '\n') {
        if (!skip_splice(lx))
            advance(lx);
    }
}

/* Skips a quoted literal inside a directive. A directive may hold text that
 * is not C (#error don't), so a quote left open just ends at the newline. */
static void skip_directive_quote(p2p__cg_lexer *lx) {
    int quote = peek(lx, 0);
    advance(lx);
    while (lx->pos < lx->len && peek(lx, 0) != '\n') {
        if (skip_splice(lx))
            continue;
        int c = peek(lx, 0);
        advance(lx);
        if (c == quote)
            return;
        if (c == '\\' && peek(lx, 0) != '\n')
            advance(lx);
    }
}

/* Skips a preprocessor directive from its '#' to the end of its logical line
 * (continuation lines included), leaving the newline. */
static int skip_directive(p2p__cg_lexer *lx, p2p_error *err) {
    while (lx->pos < lx->len && peek(lx, 0) != '\n') {
        if (skip_splice(lx))
            continue;
        int c = peek(lx, 0);
        if (c == '/' && peek(lx, 1) == '*') {
            int rc = skip_block_comment(lx, err);
            if (rc != 0)
                return rc;
        } else if (c == '/' && peek(lx, 1) == '/') {
            skip_line_comment(lx);
        } else if (c == '"' || c == '\'') {
            skip_directive_quote(lx);
        } else {
            advance(lx);
        }
    }
    return 0;
}

/* Skips blanks, newlines, comments and directives before the next token. */
static int skip_space(p2p__cg_lexer *lx, p2p_error *err) {
    while (lx->pos < lx->len) {
        int c = peek(lx, 0), rc = 0;
        if (c == '\n') {
            advance(lx);
            lx->line_start = true;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            advance(lx);
        } else if (skip_splice(lx)) {
            continue;
        } else if (c == '/' && peek(lx, 1) == '*') {
            rc = skip_block_comment(lx, err);
        } else if (c == '/' && peek(lx, 1) == '/') {
            skip_line_comment(lx);
        } else if (c == '#' && lx->line_start) {
            rc = skip_directive(lx, err);
        } else {
            return 0;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool is_ident_start(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(int c) {
    return c >= '0' && c <= '9';
}

static void lex_ident(p2p__cg_lexer *lx) {
    while (is_ident_start(peek(lx, 0)) || is_digit(peek(lx, 0)))
        advance(lx);
}

/* A preprocessing number: digits, letters, '_', '.', and a sign after an
 * exponent letter. Its value never matters here. */
static void lex_number(p2p__cg_lexer *lx) {
    for (;;) {
        int c = peek(lx, 0);
        if ((c == 'e' || c == 'E' || c == 'p' || c == 'P') &&
            (peek(lx, 1) == '+' || peek(lx, 1) == '-')) {
            advance(lx);
            advance(lx);
        } else if (is_ident_start(c) || is_digit(c) || c == '.') {
            advance(lx);
        } else {
            return;
        }
    }
}

static int lex_quoted(p2p__cg_lexer *lx, p2p__cg_token *tok, p2p_error *err) {
    int quote = peek(lx, 0);
    advance(lx);
    for (;;) {
        if (skip_splice(lx))
            continue;
        int c = peek(lx, 0);
        if (c == -1 || c == '\n')
            return p2p__cg_error(err, P2P_EINVAL, lx->path, tok->line, tok->col,
                                 "unterminated %s literal", quote == '"' ? "string" : "character");
        advance(lx);
        if (c == quote)
            return 0;
        if (c == '\\' && peek(lx, 0) != -1 && peek(lx, 0) != '\n')
            advance(lx);
    }
}

/* One byte, or a whole UTF-8 sequence so that a message can quote it. */
static void lex_punct(p2p__cg_lexer *lx) {
    int lead = peek(lx, 0);
    advance(lx);
    if (lead < 0x80)
        return;
    for (int i = 0; i < 3 && (peek(lx, 0) & 0xC0) == 0x80 && peek(lx, 0) != -1; i++)
        advance(lx);
}

int p2p__cg_lex_next(p2p__cg_lexer *lx, p2p__cg_token *tok, p2p_error *err) {
    int rc = skip_space(lx, err);
    if (rc != 0)
        return rc;
    lx->line_start = false;
    tok->start = lx->text + lx->pos;
    tok->line = lx->line;
    tok->col = lx->col;
    size_t begin = lx->pos;
    int c = peek(lx, 0);
    if (c == -1) {
        tok->kind = P2P__CG_TOK_EOF;
    } else if (is_ident_start(c)) {
        tok->kind = P2P__CG_TOK_IDENT;
        lex_ident(lx);
    } else if (is_digit(c) || (c == '.' && is_digit(peek(lx, 1)))) {
        tok->kind = P2P__CG_TOK_NUMBER;
        lex_number(lx);
    } else if (c == '"' || c == '\'') {
        tok->kind = c == '"' ? P2P__CG_TOK_STRING : P2P__CG_TOK_CHAR;
        rc = lex_quoted(lx, tok, err);
    } else if (c == '.' && peek(lx, 1) == '.' && peek(lx, 2) == '.') {
        tok->kind = P2P__CG_TOK_ELLIPSIS;
        advance(lx);
        advance(lx);
        advance(lx);
    } else {
        tok->kind = P2P__CG_TOK_PUNCT;
        lex_punct(lx);
    }
    tok->len = lx->pos - begin;
    return rc;
}
