/* The runtime of generated code (`p2prpc generate-*`): what the generated
 * brokers, workers and client stubs call, so that the generated files stay
 * short and their logic is written, and tested, once.
 *
 *  - schemas: a static table of signatures (p2p_stub_function) to schemas;
 *  - worker adapters: typed arguments out of p2p_value lists, and the
 *    function's typed outputs into them, failing the call with a message
 *    (p2p_fail) when a value does not fit;
 *  - client stubs: one process-wide client made on first use, lazily built
 *    schemas, and the last error of the calling thread.
 *
 * The client stubs read three environment variables when the default client
 * is made: P2PRPC_DISCOVERY (the discovery file, instead of the one the
 * generated code names), P2PRPC_CACHE (the client's cache directory,
 * default DATA_DIR/client) and P2PRPC_SECRET_FILE (the shared secret). */
#ifndef P2PRPC_CODEGEN_STUB_H
#define P2PRPC_CODEGEN_STUB_H

#include "client.h"
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

/* ---- client stubs ---- */

/* The schema of `fn` (static data), built on first use and kept until
 * p2p_stub_shutdown. Thread-safe. NULL on error (p2p_stub_last_error). */
const p2p_schema *p2p_stub_schema(const p2p_stub_function *fn);

/* Makes `v` (initialised) the file argument `f`: its path (borrowed,
 * copied) and, when valid, its hash, else the client computes it. */
int p2p_stub_arg_file(p2p_value *v, const p2p_file *f, p2p_error *err) P2P_NODISCARD;

/* Submits a call of `fn` with `args` (one per input, in order; cleaned up
 * here, also on error) on the default client, made on first use from
 * `discovery` (borrowed; P2PRPC_DISCOVERY overrides it). `copts` is borrowed
 * until the future is freed. Returns the future (the caller frees it with
 * p2p_future_free), or NULL with the reason in p2p_stub_last_error(). */
p2p_future *p2p_stub_submit(const p2p_stub_function *fn, const char *discovery, p2p_value *args,
                            const p2p_call_options *copts);

/* Waits for `f` (at most `timeout_ms`; < 0 = no limit) and gives its
 * `n_outputs` outputs (borrowed until p2p_future_free). Returns 0 or the
 * negative code of p2p_future_get, the message in p2p_stub_last_error(). */
int p2p_stub_get(p2p_future *f, int64_t timeout_ms, size_t n_outputs,
                 const p2p_value **outputs) P2P_NODISCARD;

/* The typed output `v` into the user's variable. A file's path is borrowed
 * from `v`; a string is a new copy the caller frees (P2P_ENOMEM). */
void p2p_stub_file_result(const p2p_value *v, p2p_file *out);
int p2p_stub_string_result(const p2p_value *v, char **out) P2P_NODISCARD;

/* Replaces out->path by a copy kept until p2p_stub_shutdown, for the
 * synchronous stubs, whose future is gone when they return. */
int p2p_stub_keep_file(p2p_file *out) P2P_NODISCARD;

/* Records `e` as this thread's last error and returns its code. */
int p2p_stub_fail(const p2p_error *e);

/* The message of the last failed stub call of this thread ("" when none).
 * Borrowed until the thread's next stub call. */
const char *p2p_stub_last_error(void);

/* The code of the last failed stub call of this thread (0 when none). */
int p2p_stub_last_code(void);

/* Frees the default client, the schemas and the kept paths. Call it once
 * every future is freed, typically at the end of main(); stubs called
 * afterwards start again from scratch. */
void p2p_stub_shutdown(void);

/* ---- command-line parsing for the generated clientapp ---- */

/* Parses "true"/"false"/"1"/"0"/"yes"/"no" into `*out`; returns 0 or
 * P2P_EINVAL. */
int p2p_stub_parse_bool(const char *s, bool *out) P2P_NODISCARD;

#endif
