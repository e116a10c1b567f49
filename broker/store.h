/* The broker's durable call store: one interface, several backends.
 *
 * A call is one invocation of a function, named by its identifier (64 lowercase
 * hex characters). It moves through this lifecycle:
 *
 *   pushed --make_available--> queued --claim--> running --> done | failed | terminated
 *                                ^                  |
 *                                +--lease expired---+  (past max_attempts -> failed)
 *
 * Every operation the broker's routes need is one call below, and each is atomic:
 * in particular p2p_store_claim() hands a queued call to exactly one worker, however
 * many threads (or, with a shared database, brokers) claim at once. The interface has
 * no SQL in it, so that the SQLite backend (store_sqlite.h) and a MongoDB backend
 * implement the same contract.
 *
 * Threads: a p2p_store may be used from any number of threads at once; every
 * function blocks until its change is committed. When a write function returns 0,
 * the change is durable at the level chosen in p2p_store_options.sync.
 *
 * Time: every timestamp is in milliseconds since the Unix epoch and comes from
 * p2p_store_options.clock, so that tests can drive time. */
#ifndef P2PRPC_STORE_H
#define P2PRPC_STORE_H

#include "callstatus.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of a call identifier and of a blob hash: SHA-256 as lowercase hex. */
#define P2P_STORE_ID_LEN 64
/* Length of a lease token: 16 random bytes as lowercase hex. */
#define P2P_STORE_TOKEN_LEN 32
/* Longest function name, worker node id and checkpoint name accepted. */
#define P2P_STORE_NAME_MAX 128

/* p2p_call_status, its names and p2p_call_status_finished: callstatus.h. */

/* One call record, as the store returns it. Initialise with p2p_call_init();
 * the store fills it; p2p_call_cleanup() frees what it owns. */
typedef struct p2p_call {
    char identifier[P2P_STORE_ID_LEN + 1];
    char *function; /* owned */
    p2p_call_status status;
    char *args;      /* owned; JSON text exactly as given to create */
    char *outputs;   /* owned; JSON text given to complete, or NULL */
    char *error;     /* owned; the failure message, or NULL */
    double progress; /* 0..100 */
    int attempts;    /* claims that counted: every claim, less those given back by release */
    /* The current lease while running; after that, the last lease ("" if never claimed). */
    char lease_token[P2P_STORE_TOKEN_LEN + 1];
    int64_t lease_expires_ms; /* 0 unless running */
    char *worker;             /* owned; node id of the last claimer, or NULL */
    bool terminate_requested; /* a running call was asked to stop */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t expires_ms; /* when p2p_store_expire() may remove it; 0 = never */
    uint64_t version;   /* 1 at creation, +1 on every change */
} p2p_call;

/* Zeroes `call` so that it can be filled or cleaned up. */
void p2p_call_init(p2p_call *call);

/* Frees what `call` owns and zeroes it again. NULL is a no-op. */
void p2p_call_cleanup(p2p_call *call);

/* A list of calls, newest first. Initialise with p2p_call_list_init(). */
typedef struct p2p_call_list {
    p2p_call *items; /* owned */
    size_t count;
} p2p_call_list;

void p2p_call_list_init(p2p_call_list *list);
/* Frees every call and the array. NULL is a no-op. */
void p2p_call_list_cleanup(p2p_call_list *list);

/* Blob hashes returned by the store: the ones that lost their last reference,
 * so that the blob store can remove their files. Initialise with
 * p2p_store_hashes_init(); the store appends to it. */
typedef struct p2p_store_hashes {
    char (*items)[P2P_STORE_ID_LEN + 1]; /* owned */
    size_t count;
    size_t capacity;
} p2p_store_hashes;

void p2p_store_hashes_init(p2p_store_hashes *hashes);
/* Frees the array. NULL is a no-op. */
void p2p_store_hashes_cleanup(p2p_store_hashes *hashes);
/* Appends a copy of `hash` (P2P_STORE_ID_LEN characters). Returns 0 or P2P_ENOMEM. */
int p2p_store_hashes_add(p2p_store_hashes *hashes, const char *hash) P2P_NODISCARD;

typedef enum p2p_store_sync {
    /* Each change is in the database's log, in the OS page cache, before the call
     * returns: it survives kill -9 of the broker, not a power loss. */
    P2P_STORE_SYNC_NORMAL = 0,
    /* Each change is fsynced before the call returns, so it survives power loss.
     * Concurrent changes share one fsync (group commit). */
    P2P_STORE_SYNC_FULL = 1,
} p2p_store_sync;

/* Parses "normal" or "full". Returns 0 or P2P_EINVAL. */
int p2p_store_sync_parse(const char *name, p2p_store_sync *out) P2P_NODISCARD;

/* One committed change of a call, as reported to p2p_store_options.on_change. */
typedef struct p2p_store_change {
    const char *identifier; /* borrowed for the duration of the callback */
    const char *function;   /* borrowed for the duration of the callback */
    p2p_call_status status; /* after the change */
    uint64_t version;       /* after the change; 0 when deleted */
    bool deleted;           /* the call no longer exists */
} p2p_store_change;

typedef struct p2p_store_options {
    p2p_store_sync sync;
    int busy_timeout_ms; /* wait this long for a lock held by another process */
    int64_t lease_ms;    /* how long a claim, renew or progress keeps a lease */
    int max_attempts;    /* claims before an expired lease fails the call */
    int64_t call_ttl_ms; /* expires_ms = time of the last change + this; 0 = never */
    /* Returns the current time in ms since the epoch; NULL = the real-time clock. */
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
    /* Called after each commit, once per changed call, from a store thread, with
     * no store lock held, before the writing calls return. It must be quick and
     * must not call the store: it is meant to wake long-polls (pull_update,
     * search_work). NULL = none. */
    void (*on_change)(void *ctx, const p2p_store_change *change);
    void *on_change_ctx;
} p2p_store_options;

/* Fills `opts` with the defaults: sync normal, busy timeout 5000 ms, lease
 * 60000 ms, 3 attempts, no expiry, the real-time clock, no change callback. */
void p2p_store_options_init(p2p_store_options *opts);

typedef struct p2p_store p2p_store;

/* Opens the store at `location`: "sqlite:PATH" or a plain PATH opens (creating
 * it and its directory when missing) the SQLite database at PATH;
 * "mongodb://HOST:PORT/DB?options" (or "mongodb+srv://...") opens the
 * MongoDB store of store_mongo.h, whose errors add P2P_EUNAVAIL (the
 * database cannot be reached). `opts` is copied; NULL means the defaults. On
 * success `*out` is a new store the caller frees with p2p_store_free(). Errors:
 * P2P_EINVAL (bad location or options), P2P_ESTORE (the database cannot be
 * opened, is not a p2prpc store, or is from a newer release). */
int p2p_store_open(const char *location, const p2p_store_options *opts, p2p_store **out,
                   p2p_error *err) P2P_NODISCARD;

/* Waits for the changes in flight, then closes the store. NULL is a no-op. No
 * other thread may use `store` once this is called. */
void p2p_store_free(p2p_store *store);

/* Returns the backend's name ("sqlite" or "mongodb"). */
const char *p2p_store_backend(const p2p_store *store);

/* What p2p_store_create() stores. Every pointer is borrowed for the call. */
typedef struct p2p_store_new_call {
    const char *identifier;   /* 64 lowercase hex */
    const char *function;     /* letters, digits and '_' */
    const char *args;         /* JSON text; the store does not parse it */
    const char *const *blobs; /* hashes of the file arguments; may repeat */
    size_t nblobs;
    bool available; /* create it queued: execute folded into the push */
} p2p_store_new_call;

/* Creates the call `in` describes, in status pushed (queued when `available`).
 * Idempotent: when the identifier exists, nothing is overwritten, `*created`
 * is false and `out` receives the existing call; if it is pushed and
 * `available` is set, it is made available as p2p_store_make_available()
 * does. An existing call of another function gives P2P_ECONFLICT. `out` may be
 * NULL; else it must be initialised and the caller cleans it up. `created` may
 * be NULL. */
int p2p_store_create(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                     p2p_error *err) P2P_NODISCARD;

/* Reads the call `identifier` into `out` (initialised; caller cleans up).
 * P2P_ENOTFOUND when there is none. */
int p2p_store_get(p2p_store *store, const char *identifier, p2p_call *out,
                  p2p_error *err) P2P_NODISCARD;

/* Makes a pushed call available to workers (pushed -> queued). A call already
 * queued, running or done is left as it is and gives 0 too; `*changed` (may be
 * NULL) tells whether this call moved it. A failed or terminated call gives
 * P2P_ECONFLICT (use p2p_store_restart()); a missing one P2P_ENOTFOUND. */
int p2p_store_make_available(p2p_store *store, const char *identifier, bool *changed,
                             p2p_error *err) P2P_NODISCARD;

/* Atomically claims the oldest queued call (by creation) of `function` for the
 * worker `worker` (its node id): the call becomes running with a new random
 * lease token valid for lease_ms, attempts + 1, progress 0. `out`
 * (initialised; caller cleans up) receives it, args included. P2P_ENOTFOUND
 * when none is queued. */
int p2p_store_claim(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                    p2p_error *err) P2P_NODISCARD;

/* What a worker learns when it renews its lease (directly or with progress). */
typedef struct p2p_store_lease {
    bool terminate_requested; /* stop the function and call p2p_store_mark_terminated() */
    int64_t expires_ms;       /* the lease's new expiry */
} p2p_store_lease;

/* Extends the lease of a running call by lease_ms. `token` must be the current
 * lease token: a stale one (the lease expired and the call was requeued or
 * claimed again, or the call is no longer running) gives P2P_ECONFLICT, a
 * deleted call P2P_ENOTFOUND; either way the worker should stop the function.
 * `out` (may be NULL) tells whether termination was requested. */
int p2p_store_renew(p2p_store *store, const char *identifier, const char *token,
                    p2p_store_lease *out, p2p_error *err) P2P_NODISCARD;

/* Records `progress` (0..100) of a running call and renews its lease, with the
 * same checks and reply as p2p_store_renew(). Out of range or NaN: P2P_EINVAL. */
int p2p_store_progress(p2p_store *store, const char *identifier, const char *token, double progress,
                       p2p_store_lease *out, p2p_error *err) P2P_NODISCARD;

/* Finishes a running call with `outputs` (JSON text, opaque to the store) and
 * references to the blobs `blobs[0..nblobs)` it produced: running -> done,
 * progress 100. Lease checks as p2p_store_renew(); repeating it with the same
 * token once done gives 0 and changes nothing, so a worker may retry. */
int p2p_store_complete(p2p_store *store, const char *identifier, const char *token,
                       const char *outputs, const char *const *blobs, size_t nblobs,
                       p2p_error *err) P2P_NODISCARD;

/* Finishes a running call with the error `message`: running -> failed. Lease
 * checks and retries as p2p_store_complete(). */
int p2p_store_fail(p2p_store *store, const char *identifier, const char *token, const char *message,
                   p2p_error *err) P2P_NODISCARD;

/* Records that the worker stopped the function (usually after a terminate
 * request): running -> terminated. Lease checks and retries as
 * p2p_store_complete(). */
int p2p_store_mark_terminated(p2p_store *store, const char *identifier, const char *token,
                              p2p_error *err) P2P_NODISCARD;

/* Gives a running call back (a worker shutting down cleanly): running ->
 * queued at once, keeping its place in the queue, with the lease ended and
 * progress 0. The claim does not count as an attempt (attempts - 1), since the
 * worker did not fail it. A call asked to stop becomes terminated instead.
 * Lease checks as p2p_store_renew(); repeating it with the same token once
 * released gives 0 and changes nothing, so a worker may retry. `*status` (may
 * be NULL) receives the status afterwards: queued or terminated (or what a
 * repeated release finds). */
int p2p_store_release(p2p_store *store, const char *identifier, const char *token,
                      p2p_call_status *status, p2p_error *err) P2P_NODISCARD;

/* Asks the call to stop. A pushed or queued call becomes terminated at once. A
 * running call gets terminate_requested, which its worker learns in the reply
 * to its next renew or progress. A finished call is left as it is. Returns 0
 * in all three cases, with `*status` (may be NULL) the status afterwards:
 * terminated, running (stop pending), or the finished status. P2P_ENOTFOUND
 * when there is no such call. */
int p2p_store_terminate(p2p_store *store, const char *identifier, p2p_call_status *status,
                        p2p_error *err) P2P_NODISCARD;

/* Deletes the call, its blob references and its checkpoints, whatever its
 * status (a running call's worker gets P2P_ENOTFOUND at its next renew). The
 * hashes that no call references any more are appended to `orphans` (may be
 * NULL), each once. P2P_ENOTFOUND when there is no such call. */
int p2p_store_delete(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                     p2p_error *err) P2P_NODISCARD;

/* Runs a finished call again: done, failed or terminated -> queued, with
 * attempts, progress, outputs, error, lease and checkpoints cleared. Its
 * argument blobs stay referenced; output and checkpoint blobs that lose their
 * last reference are appended to `orphans` (may be NULL). A call that is not
 * finished gives P2P_ECONFLICT. */
int p2p_store_restart(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                      p2p_error *err) P2P_NODISCARD;

/* Handles every running call whose lease expired: it goes back to queued
 * (keeping its place in the queue); if it was already claimed max_attempts
 * times it fails with "lease expired N times"; if termination was requested
 * it becomes terminated. `requeued` and `failed` (may be NULL) receive the
 * counts (terminated ones count as failed). */
int p2p_store_requeue_expired(p2p_store *store, size_t *requeued, size_t *failed,
                              p2p_error *err) P2P_NODISCARD;

/* Deletes up to `limit` calls (0 = no limit) whose expires_ms is at or before
 * `cutoff_ms`, oldest first, except running ones (their lease decides). Blob
 * hashes left unreferenced are appended to `orphans` (may be NULL). `deleted`
 * (may be NULL) receives how many calls went. */
int p2p_store_expire(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                     p2p_store_hashes *orphans, p2p_error *err) P2P_NODISCARD;

/* Counts calls by status: `counts[s]` receives the number of calls of
 * `function` (NULL = every function) in status s. */
int p2p_store_count(p2p_store *store, const char *function, uint64_t counts[P2P_CALL_STATUS_COUNT],
                    p2p_error *err) P2P_NODISCARD;

/* Which calls p2p_store_list() returns. */
typedef struct p2p_store_query {
    const char *function; /* NULL = every function */
    int status;           /* a p2p_call_status, or -1 for every status */
    size_t offset;        /* skip this many (the cost grows with it) */
    size_t limit;         /* at most this many, 1..1000 */
} p2p_store_query;

/* Lists calls matching `query`, newest first, into `out` (initialised; the
 * caller cleans it up). */
int p2p_store_list(p2p_store *store, const p2p_store_query *query, p2p_call_list *out,
                   p2p_error *err) P2P_NODISCARD;

/* Counts the references to the blob `hash` (64 lowercase hex): argument,
 * output and checkpoint references of every call. 0 means the blob may go. */
int p2p_store_blob_refcount(p2p_store *store, const char *hash, uint64_t *count,
                            p2p_error *err) P2P_NODISCARD;

/* Saves checkpoint `name` of a running call as the blob `hash`, replacing an
 * earlier one of that name (whose hash goes to `orphans`, may be NULL, when
 * nothing else references it). Lease checks as p2p_store_renew(). */
int p2p_store_checkpoint_put(p2p_store *store, const char *identifier, const char *token,
                             const char *name, const char *hash, p2p_store_hashes *orphans,
                             p2p_error *err) P2P_NODISCARD;

/* Reads the hash of checkpoint `name` of a call into `hash` (NUL-terminated).
 * P2P_ENOTFOUND when the call has no such checkpoint. */
int p2p_store_checkpoint_get(p2p_store *store, const char *identifier, const char *name,
                             char hash[P2P_STORE_ID_LEN + 1], p2p_error *err) P2P_NODISCARD;

/* Counters since the store was opened. */
typedef struct p2p_store_stats {
    uint64_t writes;    /* write operations executed (failed ones included) */
    uint64_t batches;   /* transactions committed: one fsync each in full mode */
    uint64_t max_batch; /* the most write operations one transaction carried */
    uint64_t reads;     /* read operations */
} p2p_store_stats;

/* Copies the store's counters into `out`. */
void p2p_store_get_stats(p2p_store *store, p2p_store_stats *out);

/* Settles a call that waits for its inputs (a pipeline: a pushed call whose
 * args hold references to other calls' outputs; docs/protocol.md, "waiting").
 * With `error` NULL: the call's args become `args` (JSON text, the references
 * replaced by values), it references the argument blobs `blobs[0..nblobs)`,
 * and it becomes queued. With `error` set: it becomes failed with that
 * message (args unchanged). Only a pushed call settles: any other status
 * gives P2P_ECONFLICT (terminated or settled meanwhile), a missing call
 * P2P_ENOTFOUND. The caller holds the blob lock so the blobs exist. */
int p2p_store_resolve(p2p_store *store, const char *identifier, const char *args,
                      const char *const *blobs, size_t nblobs, const char *error,
                      p2p_error *err) P2P_NODISCARD;

/* True when the backend implements p2p_store_resolve (pipelines). */
bool p2p_store_can_resolve(const p2p_store *store);

/* Sets `*waiting` to whether some pushed call has a reference to an output
 * of `upstream` (64 lowercase hex) in its args, i.e. would settle once
 * `upstream` ends. Lets a finished call skip the pipeline pass when nothing
 * waits for it; the answer comes from the store, so it holds for every
 * broker sharing it. False in a backend without pipelines. */
int p2p_store_has_waiting(p2p_store *store, const char *upstream, bool *waiting,
                          p2p_error *err) P2P_NODISCARD;

#endif
