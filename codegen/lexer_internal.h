/* The codegen lexer: turns a header's bytes into the tokens the parser needs,
 * for the small subset of C that annotated headers use.
 *
 * Comments and preprocessor lines (with their continuation lines) are skipped
 * here, so the parser sees declarations only. Everything else becomes a
 * token: identifiers, numbers, string and character literals, "...", and
 * single punctuation bytes (a non-ASCII UTF-8 sequence is one token). The
 * lexer never reads past the text's length; the text need not end with NUL.
 * Internal to codegen/ (not installed). */
#ifndef P2PRPC_CODEGEN_LEXER_INTERNAL_H
#define P2PRPC_CODEGEN_LEXER_INTERNAL_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum p2p__cg_tok_kind {
    P2P__CG_TOK_EOF = 0,
    P2P__CG_TOK_IDENT,
    P2P__CG_TOK_NUMBER,
    P2P__CG_TOK_STRING, /* "..." including the quotes */
    P2P__CG_TOK_CHAR,   /* '...' including the quotes */
    P2P__CG_TOK_ELLIPSIS,
    P2P__CG_TOK_PUNCT, /* one byte, or one UTF-8 sequence */
} p2p__cg_tok_kind;

/* A token points into the lexer's text (borrowed for as long as the text). */
typedef struct p2p__cg_token {
    p2p__cg_tok_kind kind;
    const char *start;
    size_t len;
    int line, col; /* 1-based; col counts bytes */
} p2p__cg_token;

typedef struct p2p__cg_lexer {
    const char *path; /* borrowed, for messages */
    const char *text; /* borrowed */
    size_t len, pos;
    int line, col;
    bool line_start; /* nothing but blanks and comments since the last newline */
} p2p__cg_lexer;

/* Prepares `lx` over `len` bytes of `text` (both borrowed, with `path`, until
 * the lexer is no longer used). Skips a leading UTF-8 byte order mark. */
void p2p__cg_lex_init(p2p__cg_lexer *lx, const char *path, const char *text, size_t len);

/* Checks the whole text once: no NUL byte, valid UTF-8. Returns 0 or
 * P2P_EINVAL with "PATH:LINE:COL: error: ..." at the first bad byte. */
int p2p__cg_lex_check_bytes(const p2p__cg_lexer *lx, p2p_error *err) P2P_NODISCARD;

/* Reads the next token into `tok`; at the end of the text a P2P__CG_TOK_EOF
 * token at the end position. Returns 0, or P2P_EINVAL for an unterminated
 * comment, string or character literal (message at its start). */
int p2p__cg_lex_next(p2p__cg_lexer *lx, p2p__cg_token *tok, p2p_error *err) P2P_NODISCARD;

/* A NUL-terminated copy of the token's text (caller frees), or NULL when out
 * of memory. Not strndup: the text need not be NUL-terminated, and string
 * checkers (ASan's strict_string_checks) look for the NUL past `len`. */
char *p2p__cg_tok_dup(const p2p__cg_token *tok);

/* True when `tok` is the identifier or punctuation spelled `s`. */
bool p2p__cg_tok_is(const p2p__cg_token *tok, const char *s);

/* Sets `err` to "PATH:LINE:COL: error: MESSAGE" with `code`, and returns
 * `code`. */
int p2p__cg_error(p2p_error *err, int code, const char *path, int line, int col, const char *fmt,
                  ...) P2P_PRINTF(6, 7);

#endif
