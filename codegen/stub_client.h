/* The runtime of generated client stubs (`p2prpc generate-client`): one
 * process-wide client made on first use, lazily built schemas, and the last
 * error of the calling thread.
 *
 * The default client reads three environment variables when it is made:
 * P2PRPC_DISCOVERY (the discovery file, instead of the one the generated
 * code names), P2PRPC_CACHE (the client's cache directory, default
 * DATA_DIR/client) and P2PRPC_SECRET_FILE (the shared secret). */
#ifndef P2PRPC_CODEGEN_STUB_CLIENT_H
#define P2PRPC_CODEGEN_STUB_CLIENT_H

#include "client.h"
#include "error.h"
#include "p2prpc.h"
#include "schema.h"
#include "stub.h"
#include "value.h"

#include <stddef.h>
#include <stdint.h>

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

#endif
