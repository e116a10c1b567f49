/* The client: calls a remote function as if it were local (DESIGN §2, §7).
 *
 * A submit hashes the arguments into the call identifier (common/ident.h;
 * file arguments through the file-hash cache, so a large file is hashed
 * once). When the local cache (`cache_path`) holds that identifier as done,
 * the future is completed at once, without any network. Otherwise the client
 * picks a broker (the discovery file, the brokers given, and those their
 * nodes route reports; the first healthy one, failing over to the next),
 * and creates the call queued there, or attaches to it when the broker has
 * it already (one exchange: the create answers for an existing call). A call
 * with file arguments asks first whether the broker has it, so that an
 * existing call costs no upload, then uploads the blobs the broker lacks
 * before the create. The future then follows the call
 * with long-polls (`pull_update?since=&wait=`), never with a fixed sleep.
 *
 * Outputs are decoded into typed values; output files are downloaded into
 * the cache (verified by hash, resumed with Range), and recorded there, so
 * the next identical call is answered from disk.
 *
 * Threads: a p2p_client may be used by several threads at once, and several
 * processes may share one cache_path. One p2p_future is used by one thread
 * at a time.
 *
 * Errors that tell the outcomes apart (returned by submit, wait and get):
 *   P2P_EFAILED      the function failed; the message is the function's
 *   P2P_ETERMINATED  the call was terminated
 *   P2P_ETIMEDOUT    the wait's timeout passed (the call goes on)
 *   P2P_ENOTFOUND    the broker does not know the call (deleted, expired)
 *   P2P_EUNAVAIL     no broker could be reached (every one was tried)
 *   P2P_ECONFLICT    the broker serves another signature of the function
 *   P2P_EAUTH        the broker refused the request's signature (secret) */
#ifndef P2PRPC_CLIENT_H
#define P2PRPC_CLIENT_H

#include "callstatus.h"
#include "error.h"
#include "hash.h"
#include "schema.h"
#include "value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of the options. */
#define P2P_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define P2P_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS 60000
#define P2P_CLIENT_DEFAULT_POLL_WAIT_S 30

/* Every pointer is borrowed until p2p_client_new returns (it copies what it
 * keeps). At least one broker must come from `brokers` or `discovery_file`. */
typedef struct p2p_client_options {
    const char *const *brokers; /* broker URLs (http or https), tried first */
    size_t n_brokers;
    /* A file of broker URLs, one per line, '#' comments (the worker's
     * format, docs/cli.md). Read by p2p_client_new. */
    const char *discovery_file;
    /* The shared secret that signs every request: `secret_file` (its bytes,
     * a trailing newline removed) or `secret`/`secret_len`. NULL = unsigned. */
    const char *secret_file;
    const unsigned char *secret;
    size_t secret_len;
    /* The local cache: a directory holding cache.db (SQLite) and files/.
     * NULL = DATA_DIR/client (common/node.h). Created when missing. */
    const char *cache_path;
    const char *ca_file;        /* TLS: PEM bundle to trust instead of the system's */
    const char *ca_path;        /* TLS: directory of hashed CA certificates */
    bool insecure;              /* TLS: skip peer and host verification */
    int64_t connect_timeout_ms; /* per connection attempt; default 5 s */
    int64_t request_timeout_ms; /* one exchange, long-polls and blobs excepted; default 60 s */
    int poll_wait_s;            /* pull_update long-poll wait, 1..300; default 30 */
} p2p_client_options;

/* Fills `opts` with the defaults above and every pointer NULL. */
void p2p_client_options_init(p2p_client_options *opts);

typedef struct p2p_client p2p_client;
typedef struct p2p_future p2p_future;

/* Checks and copies `opts`, reads the discovery and secret files, opens (or
 * creates) the cache. No network yet. `*out` is the caller's
 * (p2p_client_free). Returns 0, P2P_EINVAL (which option and why),
 * P2P_ENOTFOUND (a named file is missing), P2P_EIO, P2P_ESTORE (the cache
 * database), P2P_ENOMEM. */
int p2p_client_new(const p2p_client_options *opts, p2p_client **out, p2p_error *err) P2P_NODISCARD;

/* Frees the client. Every future it made must be freed first. NULL is a
 * no-op. */
void p2p_client_free(p2p_client *c);

/* The status of a call (p2p_call_status: P2P_CALL_PUSHED ... P2P_CALL_TERMINATED)
 * and p2p_call_status_name() are in callstatus.h, shared with the broker. */

/* Called with the call's progress (0..100) each time a long-poll brings a
 * new one, from the thread that waits on the future. */
typedef void (*p2p_client_progress_fn)(const p2p_future *f, double percent, void *ctx);

/* Called while file argument `input` (its parameter name) uploads: `sent` of
 * `total` bytes, from the submitting thread. */
typedef void (*p2p_client_upload_fn)(const char *input, int64_t sent, int64_t total, void *ctx);

/* Per-call options; a NULL p2p_call_options means all zero. Pointers are
 * borrowed until p2p_future_free. */
typedef struct p2p_call_options {
    p2p_client_progress_fn on_progress;
    void *progress_ctx;
    p2p_client_upload_fn on_upload;
    void *upload_ctx;
} p2p_call_options;

/* An input given as the output `output` of another call `future` (a
 * pipeline, DESIGN §7): the broker keeps the new call waiting until that
 * call is done, then feeds it the output (a file output's blob, with no
 * download to the client). The output must have the input's type; the call
 * goes to `future`'s broker (every reference must be on the same one). While
 * it waits, its status reads P2P_CALL_PUSHED ("waiting" on the wire). How the
 * identifier is defined then is in docs/protocol.md ("Call identifier",
 * "References"). */
typedef struct p2p_arg_ref {
    size_t input;             /* index of the input in the schema */
    const p2p_future *future; /* borrowed during submit only */
    const char *output;       /* the output's name in that call's schema */
} p2p_arg_ref;

/* Submits a call of the function `schema` (borrowed until p2p_future_free)
 * with `args`, one per schema input in order (borrowed during the call). A
 * file argument needs `as.file.path`; an empty `as.file.hash` is computed.
 * `refs` (n_refs entries, may be NULL) replace some inputs by other calls'
 * outputs; those entries of `args` are ignored and may be empty. On success
 * `*out` is a future the caller frees (p2p_future_free); it is already
 * finished when the cache had the answer. Returns 0, or P2P_EINVAL,
 * P2P_ETYPE (an argument does not fit the schema), P2P_ENOTFOUND (a file
 * argument's file is missing), P2P_EUNAVAIL, P2P_ECONFLICT, P2P_EAUTH,
 * P2P_EIO, P2P_ENOMEM. A call found terminated on the broker is run again; a
 * failed one is attached as it is (wait gives P2P_EFAILED; restart reruns
 * it). */
int p2p_client_submit(p2p_client *c, const p2p_schema *schema, const p2p_value *args,
                      const p2p_arg_ref *refs, size_t n_refs, const p2p_call_options *copts,
                      p2p_future **out, p2p_error *err) P2P_NODISCARD;

/* The call identifier, 64 lowercase hex. Borrowed until p2p_future_free. */
const char *p2p_future_identifier(const p2p_future *f);

/* The URL of the broker the call lives on, in its normalised form (discovery.h:
 * lowercase scheme and host, a path ending with '/', e.g.
 * "http://127.0.0.1:8470/"); NULL for an answer from the cache. Borrowed until
 * p2p_future_free. */
const char *p2p_future_broker(const p2p_future *f);

/* True when the answer came from the local cache, without network. */
bool p2p_future_cached(const p2p_future *f);

/* The latest status and progress (0..100) seen, without network. */
p2p_call_status p2p_future_status(const p2p_future *f);
double p2p_future_progress(const p2p_future *f);

/* Waits until the call is finished (done, failed or terminated), at most
 * `timeout_ms` (< 0 = no limit; 0 = look once). On done the outputs are
 * fetched (files downloaded into the cache) and recorded in the cache.
 * Returns 0 when done; P2P_EFAILED (with the function's message),
 * P2P_ETERMINATED, P2P_ETIMEDOUT, P2P_ENOTFOUND, P2P_EUNAVAIL (the broker
 * stayed unreachable past the client's retries), P2P_EHASH (a downloaded
 * file did not match), P2P_EIO... A timed-out wait may be repeated. */
int p2p_future_wait(p2p_future *f, int64_t timeout_ms, p2p_error *err) P2P_NODISCARD;

/* Waits as p2p_future_wait, then gives the outputs: `*outputs` points to the
 * `*n` values in schema output order, owned by the future (borrowed until
 * p2p_future_free). A file output's as.file.path is the file in the cache:
 * read it, never write it. */
int p2p_future_get(p2p_future *f, int64_t timeout_ms, const p2p_value **outputs, size_t *n,
                   p2p_error *err) P2P_NODISCARD;

/* Asks the call to stop (a running call stops at its worker's next update).
 * An answer from the cache is finished: nothing is sent and 0 returned.
 * Returns 0, P2P_ENOTFOUND, P2P_EUNAVAIL... */
int p2p_future_terminate(p2p_future *f, p2p_error *err) P2P_NODISCARD;

/* Terminates the call if it runs, waits for it to finish (at most
 * `timeout_ms`), forgets the cached answer, and runs it again; the future
 * then follows the new run. */
int p2p_future_restart(p2p_future *f, int64_t timeout_ms, p2p_error *err) P2P_NODISCARD;

/* Terminates the call, then removes it everywhere: on the broker (with the
 * blobs only it referenced) and in the local cache (entry and files). The
 * future is finished afterwards (P2P_ENOTFOUND from wait). */
int p2p_future_delete(p2p_future *f, p2p_error *err) P2P_NODISCARD;

/* Frees the future; the remote call goes on. NULL is a no-op. */
void p2p_future_free(p2p_future *f);

/* What the client did since p2p_client_new, for tests and benchmarks. */
typedef struct p2p_client_stats {
    uint64_t cache_hits;       /* submits answered from the cache */
    uint64_t calls_created;    /* calls the client created on a broker */
    uint64_t calls_attached;   /* calls that already existed on the broker */
    uint64_t bytes_uploaded;   /* file argument bytes sent */
    uint64_t bytes_downloaded; /* output file bytes received */
    uint64_t failovers;        /* times a broker was skipped for the next one */
} p2p_client_stats;

/* Copies the counters into `out`. Thread-safe. */
void p2p_client_get_stats(p2p_client *c, p2p_client_stats *out);

#endif
