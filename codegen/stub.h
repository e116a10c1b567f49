/* The runtime of generated code (`p2prpc generate-*`): what the generated
 * brokers, workers and clients call, so that the generated files stay short
 * and their logic is written, and tested, once.
 *
 *  - schemas: a static table of signatures (p2p_stub_function) to schemas;
 *  - worker adapters: typed arguments out of p2p_value lists, and the
 *    function's typed outputs into them, failing the call with a message
 *    (p2p_fail) when a value does not fit;
 *  - the client stubs' part is in stub_client.h, apart so that generated
 *    brokers and workers include nothing of the client. */
#ifndef P2PRPC_CODEGEN_STUB_H
#define P2PRPC_CODEGEN_STUB_H

#include "error.h"
#include "p2prpc.h"
#include "schema.h"
#include "value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One function's signature as generated code lists it (static data). */
typedef struct p2p_stub_function {
    const char *name;
    const p2p_param *inputs; /* NULL when n_inputs is 0 */
    size_t n_inputs;
    const p2p_param *outputs;
    size_t n_outputs;
} p2p_stub_function;

/* Builds the schemas of the `n` functions `fns` (borrowed) into a new array
 * `*out` of n finished schemas, which the caller frees with
 * p2p_stub_schemas_free. Returns 0, P2P_EINVAL (a bad signature, named) or
 * P2P_ENOMEM. */
int p2p_stub_schemas_new(const p2p_stub_function *fns, size_t n, p2p_schema ***out,
                         p2p_error *err) P2P_NODISCARD;

/* Frees the array and its `n` schemas. NULL is a no-op. */
void p2p_stub_schemas_free(p2p_schema **schemas, size_t n);

/* ---- worker adapters: each returns 0, or a negative P2P_E* code after
 * p2p_fail() with a message naming the parameter `name`. ---- */

/* The file input `v` as the user's function sees it; the path is borrowed
 * from `v`. */
p2p_file p2p_stub_in_file(const p2p_value *v);

/* The int64 input `v` as an int (or a long), refused when out of range. */
int p2p_stub_in_int(const p2p_value *v, const char *name, int *out) P2P_NODISCARD;
int p2p_stub_in_long(const p2p_value *v, const char *name, long *out) P2P_NODISCARD;

/* Sets the output `v` from what the function stored. A double must be
 * finite; a string (borrowed: the caller frees it) must be set, valid UTF-8;
 * a file must have a path (borrowed, copied), and its hash is used when
 * valid, else computed by the worker. */
int p2p_stub_out_double(p2p_value *v, const char *name, double x) P2P_NODISCARD;
int p2p_stub_out_string(p2p_value *v, const char *name, const char *s) P2P_NODISCARD;
int p2p_stub_out_file(p2p_value *v, const char *name, const p2p_file *f) P2P_NODISCARD;

/* ---- command-line parsing for the generated clientapp ---- */

/* Parses "true"/"false"/"1"/"0"/"yes"/"no" into `*out`; returns 0 or
 * P2P_EINVAL. */
int p2p_stub_parse_bool(const char *s, bool *out) P2P_NODISCARD;

#endif
