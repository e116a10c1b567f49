/* The MongoDB store's operations that drop blob references or walk many
 * calls: delete, restart, lease requeue and expiry.
 *
 * Requeue and expiry first find candidates, then change each with a filter
 * that repeats the condition it was found by (and, for a lease, the token,
 * the attempts and the stop flag that decided its fate): when maintenance
 * runs on several brokers at once, each call changes once, and the others
 * find their filter no longer matches and skip it. */
#include "store_mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls looked at per function and pass of requeue_expired. */
#define REQUEUE_BATCH 1000

/* Removes the index entry of a call that is gone (only if it still names
 * `function`: the identifier may have been created again elsewhere). */
static void unindex(p2p__mg_conn *c, const char *identifier, const char *function) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_INDEX_COLL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier), "function", BCON_UTF8(function));
    (void)mongoc_collection_delete_one(coll, filter, NULL, NULL, NULL);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

/* Every blob hash `doc` references (arguments, outputs, checkpoints). */
static int all_refs(const bson_t *doc, p2p_store_hashes *out, p2p_error *err) {
    int rc = p2p__mg_doc_hashes(doc, "arg_blobs", out, err);
    if (rc == 0)
        rc = p2p__mg_doc_hashes(doc, "out_blobs", out, err);
    return rc != 0 ? rc : p2p__mg_doc_hashes(doc, "checkpoints", out, err);
}

/* Deletes the call `filter` selects in `coll`; `*found` tells whether one
 * was. Its references are appended to `refs`. */
static int delete_call(p2p__mg_conn *c, mongoc_collection_t *coll, const bson_t *filter,
                       bool *found, p2p_store_hashes *refs, p2p_error *err) {
    bson_t doc;
    int rc = p2p__mg_find_modify(coll, filter, NULL, NULL, MONGOC_FIND_AND_MODIFY_REMOVE, found,
                                 &doc, err);
    if (rc == 0 && *found) {
        const char *id = p2p__mg_str(&doc, "_id"), *function = p2p__mg_str(&doc, "function");
        if (id != NULL && function != NULL)
            unindex(c, id, function);
        rc = all_refs(&doc, refs, err);
        p2p__mg_changed(c->s, &doc, true);
    }
    bson_destroy(&doc);
    return rc;
}

int p2p__mg_remove(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                   p2p_error *err) {
    p2p__mg_conn c;
    char function[P2P_STORE_NAME_MAX + 1];
    mongoc_collection_t *coll = NULL;
    p2p_store_hashes refs;
    p2p_store_hashes_init(&refs);
    bool found = false;
    p2p__mg_acquire((p2p__mg_store *)store, &c);
    int rc = p2p__mg_lookup(&c, identifier, function, err);
    if (rc == 0)
        rc = p2p__mg_calls(&c, function, &coll, err);
    if (rc == 0) {
        bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier));
        rc = delete_call(&c, coll, filter, &found, &refs, err);
        bson_destroy(filter);
    }
    if (rc == 0 && !found) {
        unindex(&c, identifier, function); /* left by a delete that stopped half-way */
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no call %s", identifier);
    }
    if (rc == 0)
        rc = p2p__mg_add_orphans(&c, &refs, orphans, err);
    p2p_store_hashes_cleanup(&refs);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

static bson_t *restart_update(p2p__mg_store *s) {
    bson_t *set = BCON_NEW("status", BCON_UTF8("queued"), "attempts", BCON_INT32(0), "progress",
                           BCON_DOUBLE(0), "outputs", BCON_NULL, "error", BCON_NULL, "lease_token",
                           BCON_UTF8(""), "lease_expires_ms", BCON_INT64(0), "worker", BCON_NULL,
                           "terminate_requested", BCON_BOOL(false), "out_blobs", "[", "]",
                           "checkpoints", "[", "]");
    bson_t *update = bson_new();
    p2p__mg_touch(s, update, set, NULL);
    bson_destroy(set);
    return update;
}

/* Why a restart matched nothing: no such call, or it is not finished. */
static int restart_miss(mongoc_collection_t *coll, const char *identifier, p2p_error *err) {
    bson_t doc;
    p2p_call_status status = P2P_CALL_RUNNING;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    if (rc == 0 && p2p__mg_status(&doc, &status) != 0)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    else if (rc == 0)
        rc = p2p_error_set(err, P2P_ECONFLICT, "call %s is %s; only a finished call restarts",
                           identifier, p2p_call_status_name(status));
    bson_destroy(&doc);
    return rc;
}

int p2p__mg_restart(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                    p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    char function[P2P_STORE_NAME_MAX + 1];
    mongoc_collection_t *coll = NULL;
    p2p_store_hashes refs;
    p2p_store_hashes_init(&refs);
    bson_t *filter =
        BCON_NEW("_id", BCON_UTF8(identifier), "status", "{", "$in", "[", BCON_UTF8("done"),
                 BCON_UTF8("failed"), BCON_UTF8("terminated"), "]", "}");
    bson_t *update = restart_update(s), old = BSON_INITIALIZER;
    bool found = false;
    p2p__mg_acquire(s, &c);
    int rc = p2p__mg_lookup(&c, identifier, function, err);
    if (rc == 0)
        rc = p2p__mg_calls(&c, function, &coll, err);
    if (rc == 0) {
        bson_destroy(&old);
        rc = p2p__mg_find_modify(coll, filter, NULL, update, 0, &found, &old, err);
    }
    if (rc == 0 && !found)
        rc = restart_miss(coll, identifier, err);
    /* Outputs and checkpoints lose this reference; arguments keep theirs. */
    if (rc == 0)
        rc = p2p__mg_doc_hashes(&old, "out_blobs", &refs, err);
    if (rc == 0)
        rc = p2p__mg_doc_hashes(&old, "checkpoints", &refs, err);
    if (rc == 0) {
        bson_t *now =
            BCON_NEW("_id", BCON_UTF8(identifier), "function", BCON_UTF8(function), "status",
                     BCON_UTF8("queued"), "version", BCON_INT64(p2p__mg_int(&old, "version") + 1));
        p2p__mg_changed(s, now, false);
        bson_destroy(now);
        rc = p2p__mg_add_orphans(&c, &refs, orphans, err);
    }
    p2p_store_hashes_cleanup(&refs);
    bson_destroy(&old);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* --- lease requeue --- */

/* Settles one call found with an expired lease, if nobody did meanwhile. */
static int settle_expired(p2p__mg_store *s, mongoc_collection_t *coll, const bson_t *found_doc,
                          int64_t now, size_t *requeued, size_t *failed, p2p_error *err) {
    const char *id = p2p__mg_str(found_doc, "_id"), *token = p2p__mg_str(found_doc, "lease_token");
    if (id == NULL || token == NULL)
        return 0;
    int64_t attempts = p2p__mg_int(found_doc, "attempts");
    bool stop = p2p__mg_bool(found_doc, "terminate_requested");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("running"), "lease_token",
                              BCON_UTF8(token), "lease_expires_ms", "{", "$lte", BCON_INT64(now),
                              "}", "terminate_requested", BCON_BOOL(stop));
    char msg[64];
    p2p_call_status target = P2P_CALL_QUEUED;
    if (stop)
        target = P2P_CALL_TERMINATED;
    else if (attempts >= s->base.opts.max_attempts)
        target = P2P_CALL_FAILED;
    snprintf(msg, sizeof(msg), "lease expired %lld times", (long long)attempts);
    bson_t *set = BCON_NEW("status", BCON_UTF8(p2p_call_status_name(target)), "outputs", BCON_NULL,
                           "lease_expires_ms", BCON_INT64(0));
    if (target == P2P_CALL_FAILED)
        BSON_APPEND_UTF8(set, "error", msg);
    else
        BSON_APPEND_NULL(set, "error");
    bson_t update = BSON_INITIALIZER, doc;
    bool found = false;
    p2p__mg_touch(s, &update, set, NULL);
    int rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
    if (rc == 0 && found) {
        *(target == P2P_CALL_QUEUED ? requeued : failed) += 1;
        p2p__mg_changed(s, &doc, false);
    }
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(set);
    bson_destroy(filter);
    return rc;
}

static int requeue_function(p2p__mg_conn *c, const char *function, int64_t now, size_t *requeued,
                            size_t *failed, p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    if (rc != 0)
        return rc;
    bson_t *filter = BCON_NEW("status", BCON_UTF8("running"), "lease_expires_ms", "{", "$lte",
                              BCON_INT64(now), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(REQUEUE_BATCH));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    /* Each settle is its own operation on another client connection: the
     * cursor's documents are copied first so that it is not held open. */
    bson_t **docs = NULL;
    size_t n = 0, cap = 0;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            bson_t **grown = realloc(docs, cap * sizeof(*docs));
            if (grown == NULL) {
                rc = p2p_error_set(err, P2P_ENOMEM, "out of memory collecting expired leases");
                break;
            }
            docs = grown;
        }
        docs[n++] = bson_copy(doc);
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot look for expired leases");
    mongoc_cursor_destroy(cur);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = settle_expired(c->s, coll, docs[i], now, requeued, failed, err);
        bson_destroy(docs[i]);
    }
    free(docs);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return rc;
}

int p2p__mg_requeue_expired(p2p_store *store, size_t *requeued, size_t *failed, p2p_error *err) {
    p2p__mg_conn c;
    char **names = NULL;
    *requeued = *failed = 0;
    int64_t now = p2p__store_now(store);
    p2p__mg_acquire((p2p__mg_store *)store, &c);
    int rc = p2p__mg_functions(&c, &names, err);
    for (size_t i = 0; rc == 0 && names[i] != NULL; i++)
        rc = requeue_function(&c, names[i], now, requeued, failed, err);
    p2p__mg_names_free(names);
    p2p__mg_release(&c);
    return rc;
}

/* --- expiry --- */

/* The identifiers and expiry times `filter` finds, at most `limit`. */
static int collect_ids(mongoc_collection_t *coll, const bson_t *filter, size_t limit,
                       p2p_store_hashes *ids, int64_t **times, p2p_error *err) {
    bson_t *opts = BCON_NEW("sort", "{", "expires_ms", BCON_INT32(1), "}");
    if (limit > 0)
        BSON_APPEND_INT64(opts, "limit", (int64_t)limit);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    while (rc == 0 && (limit == 0 || ids->count < limit) && mongoc_cursor_next(cur, &doc)) {
        const char *id = p2p__mg_str(doc, "_id");
        if (id == NULL || strlen(id) != P2P_STORE_ID_LEN)
            continue;
        int64_t *grown = realloc(*times, (ids->count + 1) * sizeof(**times));
        if (grown == NULL || p2p_store_hashes_add(ids, id) != 0) {
            *times = grown != NULL ? grown : *times;
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory collecting expired calls");
            break;
        }
        *times = grown;
        grown[ids->count - 1] = p2p__mg_int(doc, "expires_ms");
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot look for expired calls");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    return rc;
}

static int expire_function(p2p__mg_conn *c, const char *function, int64_t cutoff, size_t limit,
                           size_t *deleted, p2p_store_hashes *refs, p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    p2p_store_hashes ids;
    p2p_store_hashes_init(&ids);
    int64_t *times = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    bson_t *filter = BCON_NEW("expires_ms", "{", "$lte", BCON_INT64(cutoff), "}", "status", "{",
                              "$ne", BCON_UTF8("running"), "}");
    if (rc == 0)
        rc = collect_ids(coll, filter, limit, &ids, &times, err);
    for (size_t i = 0; rc == 0 && i < ids.count; i++) {
        /* Only if it was not changed (and so given a later expiry) since. */
        bson_t *one = BCON_NEW("_id", BCON_UTF8(ids.items[i]), "expires_ms", BCON_INT64(times[i]),
                               "status", "{", "$ne", BCON_UTF8("running"), "}");
        bool found = false;
        rc = delete_call(c, coll, one, &found, refs, err);
        *deleted += rc == 0 && found;
        bson_destroy(one);
    }
    bson_destroy(filter);
    free(times);
    p2p_store_hashes_cleanup(&ids);
    mongoc_collection_destroy(coll);
    return rc;
}

int p2p__mg_expire(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                   p2p_store_hashes *orphans, p2p_error *err) {
    p2p__mg_conn c;
    char **names = NULL;
    p2p_store_hashes refs;
    p2p_store_hashes_init(&refs);
    *deleted = 0;
    p2p__mg_acquire((p2p__mg_store *)store, &c);
    int rc = p2p__mg_functions(&c, &names, err);
    for (size_t i = 0; rc == 0 && names[i] != NULL && (limit == 0 || *deleted < limit); i++)
        rc = expire_function(&c, names[i], cutoff_ms, limit > 0 ? limit - *deleted : 0, deleted,
                             &refs, err);
    /* After every delete, so that a blob two expired calls shared is found. */
    if (rc == 0)
        rc = p2p__mg_add_orphans(&c, &refs, orphans, err);
    p2p__mg_names_free(names);
    p2p_store_hashes_cleanup(&refs);
    p2p__mg_release(&c);
    return rc;
}
