/* Shared between the files of the client library; not installed.
 *
 *   client.c        the object: options, secret, cache, brokers, stats
 *   options.c       option defaults
 *   cache.c         the local cache: cache.db (calls) and files/ (outputs)
 *   brokers.c       the broker list: given, discovery file, gossip; health, failover
 *   submit.c        p2p_client_submit: arguments, identifier, the cache
 *   remote.c        a call on a broker: pull before push, blobs, failover
 *   future.c        wait/get: long-polls, outputs, downloads into the cache
 *   lifecycle.c     terminate, restart, delete
 *   refs.c          futures as arguments (pipelines)
 *   wire.c          requests to a broker: JSON exchanges, blob HEAD/PUT/GET */
#ifndef P2PRPC_CLIENT_INTERNAL_H
#define P2PRPC_CLIENT_INTERNAL_H

#include "client.h"

#include "discovery.h"
#include "filecache.h"
#include "http_client.h"
#include "ident.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include <jansson.h>

/* How long a cache transaction waits for another process's write lock. */
#define P2P__CCACHE_BUSY_MS 10000
/* The health probe of a broker: short, and never retried (a dead broker must
 * cost little before the next one is tried). */
#define P2P__PROBE_TIMEOUT_MS 3000L
/* A broker that answered this recently is not probed again before a submit:
 * its answer to the next request says as much as /health would. */
#define P2P__HEALTH_TTL_MS 2000

/* ---- the local cache (cache.c) ---- */

typedef struct p2p__ccache p2p__ccache;

/* One row of the calls table. Strings are owned (p2p__ccache_entry_cleanup). */
typedef struct p2p__ccache_entry {
    char *function;
    char *broker;  /* may be NULL */
    bool done;     /* false: in flight */
    char *outputs; /* JSON text of the outputs (done only), else NULL */
} p2p__ccache_entry;

void p2p__ccache_entry_cleanup(p2p__ccache_entry *e);

/* Opens (creating) DIR/cache.db and DIR/files/{,tmp/}. Caller frees. */
int p2p__ccache_open(const char *dir, p2p__ccache **out, p2p_error *err) P2P_NODISCARD;
void p2p__ccache_free(p2p__ccache *c);

/* The cache's files directory (borrowed until p2p__ccache_free). */
const char *p2p__ccache_files_dir(const p2p__ccache *c);

/* Reads the entry of `identifier`: 0 with `*e` filled, P2P_ENOTFOUND, or a
 * database error (P2P_ESTORE). */
int p2p__ccache_get(p2p__ccache *c, const char *identifier, p2p__ccache_entry *e,
                    p2p_error *err) P2P_NODISCARD;

/* Records `identifier` in flight on `broker`, unless a done entry exists (a
 * done entry is never downgraded; another in-flight entry gets the new
 * broker). */
int p2p__ccache_put_in_flight(p2p__ccache *c, const char *identifier, const char *function,
                              const char *broker, p2p_error *err) P2P_NODISCARD;

/* Records `identifier` done with `outputs` (JSON text, borrowed) and the
 * `n_files` output file hashes it references, in one transaction. */
int p2p__ccache_put_done(p2p__ccache *c, const char *identifier, const char *function,
                         const char *broker, const char *outputs, const char *const *file_hashes,
                         size_t n_files, p2p_error *err) P2P_NODISCARD;

/* Forgets `identifier` (no entry is success), and unlinks each of its files
 * that no other entry references. */
int p2p__ccache_forget(p2p__ccache *c, const char *identifier, p2p_error *err) P2P_NODISCARD;

/* p2p__ccache_forget, logging a failure as a warning (for paths where the
 * cache is only an optimisation). */
void p2p__ccache_drop(p2p__ccache *c, const char *identifier);

/* The path of the cached file of `hash` (files/ab/abcd...), caller frees. */
char *p2p__ccache_file_path(const p2p__ccache *c, const char *hash);

/* Makes sure files/ab/HASH holds the blob `hash` of `size` bytes, fetching
 * it with `fetch` when it is missing or damaged. Several threads and
 * processes may ask for the same hash at once: one downloads (under a lock
 * file), the others then find it. `fetch` writes the blob into `tmp_path`
 * (resuming what is there) and returns 0 or an error. */
typedef int (*p2p__ccache_fetch_fn)(void *arg, const char *tmp_path, p2p_error *err);
int p2p__ccache_ensure_file(p2p__ccache *c, const char *hash, int64_t size,
                            p2p__ccache_fetch_fn fetch, void *arg, p2p_error *err) P2P_NODISCARD;

/* True when files/ab/HASH exists with `size` bytes. */
bool p2p__ccache_file_ok(const p2p__ccache *c, const char *hash, int64_t size);

/* ---- the client object (client.c) ---- */

struct p2p_client {
    p2p_http_client *http;  /* every exchange, with retries */
    p2p_http_client *probe; /* /health only: short, never retried */
    p2p__ccache *cache;
    int poll_wait_s;
    long request_timeout_ms;

    pthread_mutex_t lock; /* guards everything below */
    /* Broker URLs, normalised, in the order they are tried: given, the
     * discovery file's, then those gossiped. */
    p2p_discovery_list brokers;
    bool gossiped; /* the nodes route was read once */
    char *last_ok; /* the broker that last answered a submit, and when (monotonic) */
    int64_t last_ok_ms;
    p2p_filecache **hashers; /* idle file-hash caches (one per thread at a time) */
    size_t n_hashers;
    char *filehash_path;
    p2p_client_stats stats;
};

/* Adds `delta` to the counter at `field` inside c->stats, under the lock. */
void p2p__client_count(p2p_client *c, uint64_t *field, uint64_t delta);

/* Takes a file-hash cache handle for this thread (opening one when none is
 * idle), and gives it back. */
int p2p__client_hasher_take(p2p_client *c, p2p_filecache **out, p2p_error *err) P2P_NODISCARD;
void p2p__client_hasher_give(p2p_client *c, p2p_filecache *fc);

/* ---- brokers (brokers.c) ---- */

/* A copy of the broker at position `i` of the list (caller frees), or NULL
 * past its end (or out of memory). The list only grows, at its end, so a walk
 * by position sees every broker once, those gossiped meanwhile included. */
char *p2p__brokers_at(p2p_client *c, size_t i);

/* How many brokers are known. */
size_t p2p__brokers_count(p2p_client *c);

/* Checks `/health` of `url`. 0 when healthy, else an error naming why. */
int p2p__brokers_probe(p2p_client *c, const char *url, p2p_error *err) P2P_NODISCARD;

/* True when `url` answered a submit less than P2P__HEALTH_TTL_MS ago. */
bool p2p__brokers_fresh(p2p_client *c, const char *url);

/* Records that `url` answered (ok) or failed a submit. */
void p2p__brokers_mark(p2p_client *c, const char *url, bool ok);

/* Reads `url`'s nodes route and adds the brokers it reports (errors are
 * logged and ignored: gossip only ever adds). */
void p2p__brokers_gossip(p2p_client *c, const char *url);

/* ---- wire (wire.c) ---- */

/* POSTs `body` (borrowed) as JSON; on a reply (any status) `*status` is set
 * and `*reply` gets the parsed 2xx body (caller decrefs). Returns 0 for a
 * 2xx, else the error of the exchange or of the status. */
int p2p__cwire_post(p2p_http_client *h, const char *url, const json_t *body, bool idempotent,
                    json_t **reply, long *status, p2p_error *err) P2P_NODISCARD;

/* GETs `url`; as p2p__cwire_post. `timeout_ms` 0 = the client's. */
int p2p__cwire_get(p2p_http_client *h, const char *url, long timeout_ms, json_t **reply,
                   long *status, p2p_error *err) P2P_NODISCARD;

/* HEADs the blob: 1 when the broker has it with `size` bytes, 0 when not. */
int p2p__cwire_blob_has(p2p_http_client *h, const char *base, const char *hash, int64_t size,
                        p2p_error *err) P2P_NODISCARD;

/* PUTs the file at `path` as blob `hash`, calling `progress` as it goes. */
int p2p__cwire_blob_put(p2p_http_client *h, const char *base, const char *path, const char *hash,
                        int64_t size, p2p_http_progress_fn progress, void *arg,
                        p2p_error *err) P2P_NODISCARD;

/* GETs blob `hash` into `path`, resuming what is there (Range). */
int p2p__cwire_blob_get(p2p_http_client *h, const char *base, const char *hash, const char *path,
                        p2p_error *err) P2P_NODISCARD;

/* True when an exchange's failure says the broker (not the request) is at
 * fault: no answer at all, or a 5xx. Those move on to the next broker. */
bool p2p__cwire_broker_fault(int rc, long status);

/* ---- futures (future.c, submit.c, lifecycle.c) ---- */

struct p2p_future {
    p2p_client *client;
    const p2p_schema *schema;
    char identifier[P2P_HASH_HEX_LEN + 1];
    char *broker;      /* the call's broker; NULL when unknown */
    char *broker_hint; /* a cached answer's broker (for restart/delete) */
    char *pinned;      /* the only broker it may live on (a pipeline's upstreams') */
    bool cached;
    bool deleted;
    json_t *args; /* wire-form arguments, kept for restart */
    char **paths; /* each input file's local path (NULL for other inputs) */
    size_t n_inputs;
    json_t *wire_outputs; /* the outputs of a done call, as the broker sent them */
    p2p_call_status status;
    double progress;
    int64_t version; /* last version seen; -1 = none */
    char *error;     /* the call's error message */
    p2p_value *outputs;
    size_t n_outputs;
    bool have_outputs;
    p2p_call_options opts;
};

/* Reads a call JSON (pull_update) into the future: status, progress (calling
 * on_progress when it moved), version, error. */
void p2p__future_absorb(p2p_future *f, const json_t *call);

/* Decodes the wire outputs (borrowed) into f->outputs; file outputs are
 * downloaded from `f->broker` unless `from_cache`, then checked. */
int p2p__future_take_outputs(p2p_future *f, const json_t *outputs, bool from_cache,
                             p2p_error *err) P2P_NODISCARD;

/* Finds or creates the call of `f` (its identifier, args and paths) on a
 * broker: pull before push, blobs first, failover. Sets f->broker, status,
 * version, and records the call in flight in the cache. */
int p2p__submit_remote(p2p_future *f, p2p_error *err) P2P_NODISCARD;

/* Checks the `n_refs` references of a submit of `f` and fills `out` (one
 * entry per input, zeroed by the caller; identifiers borrowed from the
 * upstream futures) and f->pinned (their broker). */
int p2p__refs_check(p2p_future *f, const p2p_arg_ref *refs, size_t n_refs, p2p_ident_ref *out,
                    p2p_error *err) P2P_NODISCARD;

/* The wire args: each input's value, or {"ref": ...} where refs[i] is set. */
int p2p__refs_args_json(const p2p_param *in, size_t n, const p2p_value *vals,
                        const p2p_ident_ref *refs, json_t **out, p2p_error *err) P2P_NODISCARD;

/* Clears what the future learnt of a run (status, outputs, error). */
void p2p__future_reset(p2p_future *f);

#endif
