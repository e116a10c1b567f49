/* What parser.c and parser_param.c share: the parser's state and the
 * analysis of one parameter declaration. Internal to codegen/ (not installed). */
#ifndef P2PRPC_CODEGEN_PARSER_INTERNAL_H
#define P2PRPC_CODEGEN_PARSER_INTERNAL_H

#include "lexer_internal.h"
#include "parser.h"

#include <stdbool.h>
#include <stddef.h>

/* Most tokens one parameter declaration may have ("P2P_OUT const char *
 * const name" has 6); longer ones are refused rather than guessed at. */
#define P2P__CG_PARAM_TOKENS 16

/* The tokens of one parameter, between '(' or ',' and ',' or ')'. */
typedef struct p2p__cg_param_toks {
    p2p__cg_token toks[P2P__CG_PARAM_TOKENS];
    size_t n;          /* tokens kept in toks */
    size_t total;      /* tokens seen, possibly more than kept */
    p2p__cg_token bad; /* first '(', '[' or "..." seen; kind EOF when none */
} p2p__cg_param_toks;

/* Checks the tokens of parameter number `index` (0-based) of the function
 * `fn_name` (borrowed) and fills `out` (owned by the caller, who frees its
 * name and c_type, also after an error). `only` is true when it is the only
 * parameter of the list. Returns 0, P2P_EINVAL with a positioned message
 * naming `path`, or P2P_ENOMEM. */
int p2p__cg_param_analyze(const char *path, const char *fn_name, const p2p__cg_param_toks *pt,
                          size_t index, bool only, p2p_cg_param *out, p2p_error *err) P2P_NODISCARD;

#endif
