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

static bool is_blank(int c) {
    return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r';
}

static bool is_word_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The directive whose '#' is at the current position: its name (at most
 * `size` - 1 bytes, "" when there is none) and the index of the first byte
 * after the name and the blanks that follow. Reads ahead only. */
static size_t directive_name(const p2p__cg_lexer *lx, char *name, size_t size) {
    size_t i = lx->pos + 1, n = 0;
    while (i < lx->len && is_blank((unsigned char)lx->text[i]))
        i++;
    for (; i < lx->len && is_word_char((unsigned char)lx->text[i]); i++) {
        if (n + 1 < size)
            name[n++] = lx->text[i];
    }
    name[n] = '\0';
    while (i < lx->len && is_blank((unsigned char)lx->text[i]))
        i++;
    return i;
}

/* True for "#if 0" alone on its line (a comment may follow): a group every
 * compiler skips, so its content (a declaration commented out, text that is
 * not C) is not read. "#if 0 || X" is not it. */
static bool directive_is_if0(const p2p__cg_lexer *lx) {
    char name[8];
    size_t i = directive_name(lx, name, sizeof(name));
    if (strcmp(name, "if") != 0 || i >= lx->len || lx->text[i] != '0')
        return false;
    for (i++; i < lx->len && is_blank((unsigned char)lx->text[i]); i++)
        continue;
    if (i >= lx->len || lx->text[i] == '\n')
        return true;
    return lx->text[i] == '/' && i + 1 < lx->len &&
           (lx->text[i + 1] == '/' || lx->text[i + 1] == '*');
}

/* What a directive inside a skipped group does to its nesting. */
static int group_step(const p2p__cg_lexer *lx) {
    char name[8];
    directive_name(lx, name, sizeof(name));
    if (strcmp(name, "if") == 0 || strcmp(name, "ifdef") == 0 || strcmp(name, "ifndef") == 0)
        return 1; /* a nested conditional opens */
    if (strcmp(name, "endif") == 0)
        return -1;
    return strncmp(name, "el", 2) == 0 ? 0 : 2; /* #else, #elif...: 0; anything else: 2 */
}

/* Skips the lines of an "#if 0" group (its directive already skipped) up to
 * its #else, #elif or #endif, whose line is skipped too: an #else branch is
 * then read as usual. Comments count, so a directive inside one does not.
 * `line`/`col` are the "#if 0"'s, for the error when no #endif comes. */
static int skip_false_group(p2p__cg_lexer *lx, int line, int col, p2p_error *err) {
    int depth = 0, rc = 0;
    bool line_start = false;
    while (rc == 0 && lx->pos < lx->len) {
        int c = peek(lx, 0), step;
        if (c == '/' && peek(lx, 1) == '*') {
            rc = skip_block_comment(lx, err);
        } else if (c == '/' && peek(lx, 1) == '/') {
            skip_line_comment(lx);
        } else if (c == '#' && line_start && (step = group_step(lx)) != 2) {
            if ((step == 0 || step == -1) && depth == 0)
                return skip_directive(lx, err);
            depth += step;
            rc = skip_directive(lx, err);
        } else if (!skip_splice(lx)) {
            line_start = c == '\n' || (line_start && is_blank(c));
            advance(lx);
        }
    }
    return rc != 0 ? rc
                   : p2p__cg_error(err, P2P_EINVAL, lx->path, line, col,
                                   "unterminated #if 0 (no #endif)");
}

/* A directive from its '#' (the current position); after "#if 0" the
 * whole group it opens. */
static int skip_directive_at_hash(p2p__cg_lexer *lx, p2p_error *err) {
    bool if0 = directive_is_if0(lx);
    int line = lx->line, col = lx->col;
    int rc = skip_directive(lx, err);
    if (rc == 0 && if0)
        rc = skip_false_group(lx, line, col, err);
    return rc;
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
            rc = skip_directive_at_hash(lx, err);
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
