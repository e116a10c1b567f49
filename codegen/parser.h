/* The codegen parser: reads a user's annotated header and finds every
 * P2PRPC_FUNCTION declaration whose name starts with "p2prpc_" (DESIGN §1).
 *
 * Around them it tolerates ordinary header content: comments, preprocessor
 * lines (#include, #define, #if...), other declarations, extern "C" guards.
 * It checks the rules of DESIGN §1 (allowed types, P2P_OUT outputs, at least
 * one output, distinct and unreserved names, int return) through
 * common/schema.h, and reports the first error compiler style:
 *
 *     FILE:LINE:COL: error: MESSAGE
 *
 * with LINE and COL 1-based (COL counts bytes) at the offending token. */
#ifndef P2PRPC_CODEGEN_PARSER_H
#define P2PRPC_CODEGEN_PARSER_H

#include "error.h"
#include "schema.h"
#include "value.h"

#include <stdbool.h>
#include <stddef.h>

/* Largest header the parser reads, in bytes. */
#define P2P_CG_MAX_HEADER (4 * 1024 * 1024)

/* One parameter as declared. `c_type` is its C spelling normalised to one of
 * the accepted forms, so that generated code declares exactly the user's
 * signature: for inputs "int64_t", "int", "long", "double", "bool",
 * "const char *", "p2p_file"; for outputs the same followed by " *" (a
 * string output is "char **": the function stores a malloc'ed string the
 * framework frees). */
typedef struct p2p_cg_param {
    char *name;   /* owned */
    char *c_type; /* owned */
    p2p_type type;
    bool output;
    int line, col; /* of the parameter's name */
} p2p_cg_param;

/* One function, parameters in declared order (inputs and outputs mixed as
 * written; the schema lists inputs, then outputs, each in declared order). */
typedef struct p2p_cg_function {
    char *name; /* owned */
    p2p_cg_param *params;
    size_t n_params;
    p2p_schema *schema; /* owned, finished */
    int line, col;      /* of the function's name */
} p2p_cg_function;

/* What one header declares, functions in declared order. */
typedef struct p2p_cg_header {
    char *path; /* owned: the path as given, for messages and "generated from" lines */
    p2p_cg_function *functions;
    size_t n_functions;
} p2p_cg_header;

/* Parses the `len` bytes of `text` (borrowed), named `path` (borrowed,
 * copied) in messages, into `out` (overwritten; caller cleans it up with
 * p2p_cg_header_cleanup, also after an error). A header with no
 * P2PRPC_FUNCTION is an error. Returns 0, P2P_EINVAL with the message
 * "PATH:LINE:COL: error: ..." in `err`, P2P_ETOOBIG when `len` is over
 * P2P_CG_MAX_HEADER ("PATH: error: ..."), or P2P_ENOMEM. Never reads past
 * `len`; `text` need not be NUL-terminated. Preprocessor lines are skipped,
 * not evaluated, except "#if 0": its group (up to its #else, #elif or
 * #endif) is not read. A declaration under "#ifdef X" is read. */
int p2p_cg_parse(const char *path, const char *text, size_t len, p2p_cg_header *out,
                 p2p_error *err) P2P_NODISCARD;

/* Reads the file at `path` (at most P2P_CG_MAX_HEADER bytes) and parses it.
 * When it cannot be read: P2P_ENOTFOUND (missing), P2P_EIO, P2P_ETOOBIG
 * (too large) or P2P_EINVAL (not a regular file), all "PATH: error: ...". */
int p2p_cg_parse_file(const char *path, p2p_cg_header *out, p2p_error *err) P2P_NODISCARD;

/* Frees what `h` owns and zeroes it. Safe on a zeroed or half-filled one. */
void p2p_cg_header_cleanup(p2p_cg_header *h);

#endif
