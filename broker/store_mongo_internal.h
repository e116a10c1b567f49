/* Shared between the files of the MongoDB store backend; not installed.
 *
 *   store_mongo.c        open, the client pool, the function registry and its
 *                        indexes, the error adapter, reads, the vtable
 *   store_mongo_doc.c    call documents: BSON to p2p_call, the fields writes set
 *   store_mongo_ops.c    the write operations (one conditional update each)
 *   store_mongo_maint.c  lease requeue, expiry, restart, delete: the operations
 *                        that touch blob references or several calls
 *   store_mongo_watch.c  the watcher thread that reports other brokers' changes
 *
 * Layout of the database (docs/store.md, "The MongoDB backend"):
 *
 *   calls_FUNCTION   one collection per function; one document per call,
 *                    _id = identifier
 *   call_index       {_id: identifier, function}: which collection holds a call
 *   functions        {_id: function}: every function that ever had a call
 *   counters         {_id: "calls", seq}: the creation order of calls
 *
 * Nothing relies on multi-document transactions: every state change is one
 * findAndModify (or update) on one call document whose filter states what the
 * change requires, so that brokers sharing the database never apply the same
 * change twice. */
#ifndef P2PRPC_STORE_MONGO_INTERNAL_H
#define P2PRPC_STORE_MONGO_INTERNAL_H

#include "store_internal.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>

/* Collection names. */
#define MG_INDEX_COLL "call_index"
#define MG_FUNCTIONS_COLL "functions"
#define MG_COUNTERS_COLL "counters"
#define MG_CALLS_PREFIX "calls_"
/* "calls_" + a function name + NUL. */
#define MG_COLL_NAME_MAX (sizeof(MG_CALLS_PREFIX) + P2P_STORE_NAME_MAX + 1)

/* A function whose collection and indexes this process has made sure of. */
typedef struct p2p__mg_function {
    char name[P2P_STORE_NAME_MAX + 1];
    struct p2p__mg_function *next;
} p2p__mg_function;

/* A connection to a database: its URI, a client pool, the database name.
 * The store and the GridFS blob store each have one. */
typedef struct p2p__mg_link {
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    char *db_name;
} p2p__mg_link;

typedef struct p2p__mg_store {
    p2p_store base; /* first: a p2p_store * points here */
    p2p__mg_link link;

    pthread_mutex_t lock; /* guards `functions` */
    p2p__mg_function *functions;

    /* The watcher (store_mongo_watch.c), started when on_change is set. */
    pthread_t watcher;
    bool watcher_started;
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_wake;
    bool watch_stopping;
    int64_t watch_interval_ms;
    struct p2p__mg_seen *seen; /* owned by the watcher thread */
    size_t nseen;
    /* What this process reported itself, so that the watcher does not
     * report it again: appended by p2p__mg_changed under `local_lock`
     * (`pending`), merged by the watcher into `local` (its own, by id). */
    pthread_mutex_t local_lock;
    struct p2p__mg_seen *pending;
    size_t npending, pending_cap;
    struct p2p__mg_seen *local;
    size_t nlocal;

    atomic_uint_fast64_t writes, reads;
} p2p__mg_store;

/* A client from the pool, for one operation. */
typedef struct p2p__mg_conn {
    p2p__mg_store *s;
    mongoc_client_t *client;
} p2p__mg_conn;

/* --- store_mongo.c --- */

/* Parses `uri` (the database from its path, "p2prpc" when empty; default
 * timeouts added; with `sync` full, journaled majority writes), makes the
 * client pool and pings the server. `out` is zeroed first and cleaned up by
 * p2p__mg_link_close, even on error. P2P_EINVAL, P2P_EUNAVAIL, P2P_ESTORE. */
int p2p__mg_link_open(const char *uri, p2p_store_sync sync, p2p__mg_link *out,
                      p2p_error *err) P2P_NODISCARD;
void p2p__mg_link_close(p2p__mg_link *link);

/* Converts a driver or server failure into a p2prpc error and returns its
 * code: P2P_EUNAVAIL with "database unavailable: ..." when the database
 * cannot be reached (no server selected, a network error, a primary stepping
 * down), else P2P_ESTORE with "`what`: the driver's message". */
int p2p__mg_error(const bson_error_t *e, p2p_error *err, const char *what);

/* True when `e` is a duplicate key error (E11000). */
bool p2p__mg_duplicate(const bson_error_t *e);

/* Takes a client from the pool (blocks while all are in use); give it back
 * with p2p__mg_release. */
void p2p__mg_acquire(p2p__mg_store *s, p2p__mg_conn *c);
void p2p__mg_release(p2p__mg_conn *c);

/* The collection `name` of the store's database (caller destroys). */
mongoc_collection_t *p2p__mg_coll(p2p__mg_conn *c, const char *name);

/* The collection of calls of `function`, its indexes created on first use
 * by this process and the function recorded in `functions` (caller destroys
 * the collection). */
int p2p__mg_calls(p2p__mg_conn *c, const char *function, mongoc_collection_t **out,
                  p2p_error *err) P2P_NODISCARD;

/* The function that holds call `identifier` into `function`. P2P_ENOTFOUND
 * when there is none. */
int p2p__mg_lookup(p2p__mg_conn *c, const char *identifier, char function[P2P_STORE_NAME_MAX + 1],
                   p2p_error *err) P2P_NODISCARD;

/* Every function of the database (the `functions` collection), as a
 * NULL-terminated array the caller frees with p2p__mg_names_free. */
int p2p__mg_functions(p2p__mg_conn *c, char ***out, p2p_error *err) P2P_NODISCARD;
void p2p__mg_names_free(char **names);

/* Runs findAndModify on `coll`: `filter` selects, `update` changes (NULL with
 * `remove`), `sort` may be NULL; `flags` are MONGOC_FIND_AND_MODIFY_*. On
 * success `*found` tells whether a document matched and `doc` (initialised by
 * this call; the caller destroys it) holds it, before or after the change as
 * `flags` ask. */
int p2p__mg_find_modify(mongoc_collection_t *coll, const bson_t *filter, const bson_t *sort,
                        const bson_t *update, mongoc_find_and_modify_flags_t flags, bool *found,
                        bson_t *doc, p2p_error *err) P2P_NODISCARD;

/* Reads the first document of `coll` that matches `filter`, with `opts` (a
 * sort, a limit), into `doc` (initialised by this call; the caller destroys
 * it). P2P_ENOTFOUND "no KIND ID" when none matches; a server error is
 * mapped by p2p__mg_error ("cannot read a KIND"). */
int p2p__mg_find_one(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
                     const char *kind, const char *id, bson_t *doc, p2p_error *err) P2P_NODISCARD;

/* Reads the document `_id` of `coll` into `doc` (initialised by this call;
 * the caller destroys it). P2P_ENOTFOUND when it does not exist. */
int p2p__mg_find_id(mongoc_collection_t *coll, const char *id, bson_t *doc,
                    p2p_error *err) P2P_NODISCARD;

/* Counts a committed write and reports it to on_change (a no-op without
 * one). `doc` needs _id, function, status and version. */
void p2p__mg_changed(p2p__mg_store *s, const bson_t *doc, bool deleted);
/* Reports a change to on_change without counting a write (the watcher). */
void p2p__mg_notify(p2p__mg_store *s, const bson_t *doc, bool deleted);

/* --- store_mongo_doc.c --- */

/* Fills `call` (cleaned up first) from a call document. */
int p2p__mg_doc_to_call(const bson_t *doc, p2p_call *call, p2p_error *err) P2P_NODISCARD;

/* Field readers: a missing field or one of another type gives the default. */
const char *p2p__mg_str(const bson_t *doc, const char *field);
int64_t p2p__mg_int(const bson_t *doc, const char *field);
bool p2p__mg_bool(const bson_t *doc, const char *field);
int p2p__mg_status(const bson_t *doc, p2p_call_status *out);

/* Appends to `update` the fields every change sets: {$set: {updated_ms,
 * expires_ms (with a TTL)}, $inc: {version: 1}}, plus the `set` fields given
 * as a document (may be NULL) and `inc` ones (may be NULL). */
void p2p__mg_touch(p2p__mg_store *s, bson_t *update, const bson_t *set, const bson_t *inc);

/* Appends the hashes of `doc`'s array `field` (or, for "checkpoints", of its
 * entries' hash) to `out`, skipping repeats. */
int p2p__mg_doc_hashes(const bson_t *doc, const char *field, p2p_store_hashes *out,
                       p2p_error *err) P2P_NODISCARD;

/* Appends to `orphans` (may be NULL) each of `candidates` no call references. */
int p2p__mg_add_orphans(p2p__mg_conn *c, const p2p_store_hashes *candidates,
                        p2p_store_hashes *orphans, p2p_error *err) P2P_NODISCARD;

/* The number of references to `hash` in every function's collection. */
int p2p__mg_refcount(p2p__mg_conn *c, const char *hash, uint64_t *count,
                     p2p_error *err) P2P_NODISCARD;

/* --- store_mongo_ops.c and store_mongo_maint.c: the vtable's writes --- */

int p2p__mg_create(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                   p2p_error *err);
int p2p__mg_make_available(p2p_store *store, const char *identifier, bool *changed, p2p_error *err);
int p2p__mg_claim(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                  p2p_error *err);
int p2p__mg_renew(p2p_store *store, const char *identifier, const char *token, double progress,
                  p2p_store_lease *out, p2p_error *err);
int p2p__mg_finish(p2p_store *store, const char *identifier, const char *token,
                   p2p_call_status status, const char *text, const char *const *blobs,
                   size_t nblobs, p2p_error *err);
int p2p__mg_terminate(p2p_store *store, const char *identifier, p2p_call_status *status,
                      p2p_error *err);
int p2p__mg_release_call(p2p_store *store, const char *identifier, const char *token,
                         p2p_call_status *status, p2p_error *err);
int p2p__mg_resolve(p2p_store *store, const char *identifier, const char *args,
                    const char *const *blobs, size_t nblobs, const char *error, p2p_error *err);
int p2p__mg_has_waiting(p2p_store *store, const char *pattern, bool *waiting, p2p_error *err);
int p2p__mg_checkpoint_put(p2p_store *store, const char *identifier, const char *token,
                           const char *name, const char *hash, p2p_store_hashes *orphans,
                           p2p_error *err);
int p2p__mg_remove(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                   p2p_error *err);
int p2p__mg_restart(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                    p2p_error *err);
int p2p__mg_requeue_expired(p2p_store *store, size_t *requeued, size_t *failed, p2p_error *err);
int p2p__mg_expire(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                   p2p_store_hashes *orphans, p2p_error *err);

/* --- store_mongo_watch.c --- */

/* Notes that this process reported version `version` of call `id` (a no-op
 * without a watcher). */
void p2p__mg_watch_local(p2p__mg_store *s, const char *id, int64_t version);

/* Starts the watcher thread when the store has an on_change callback. */
int p2p__mg_watch_start(p2p__mg_store *s, p2p_error *err) P2P_NODISCARD;
/* Stops and joins it; a no-op when it never started. */
void p2p__mg_watch_stop(p2p__mg_store *s);

#endif
