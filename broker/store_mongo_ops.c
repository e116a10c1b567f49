/* The write operations of the MongoDB store on one call: create, make
 * available, claim, renew, finish, terminate, release, checkpoint.
 *
 * Each change is one findAndModify whose filter holds what the change needs
 * (status queued for a claim, the current lease token for a renew), so that
 * it applies at most once however many brokers try at the same moment. When
 * the filter matches nothing, the call is read to tell the caller why
 * (missing, stale lease, a retry of a finish that already happened). */
#include "store_mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An operation that races with a change of another broker looks again, at
 * most this many times. */
#define MAX_TRIES 8

/* The collection holding call `identifier`. */
static int open_call(p2p__mg_conn *c, const char *identifier, mongoc_collection_t **coll,
                     p2p_error *err) {
    char function[P2P_STORE_NAME_MAX + 1];
    int rc = p2p__mg_lookup(c, identifier, function, err);
    return rc != 0 ? rc : p2p__mg_calls(c, function, coll, err);
}

/* Why a lease check failed: the call is gone, or the token is not current. */
static int explain_lease(const bson_t *doc, int found_rc, const char *identifier, const char *token,
                         p2p_error *err) {
    if (found_rc != 0)
        return found_rc;
    const char *current = p2p__mg_str(doc, "lease_token");
    p2p_call_status status = P2P_CALL_PUSHED;
    if (p2p__mg_status(doc, &status) != 0)
        return p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    if (current == NULL || strcmp(current, token) != 0)
        return p2p_error_set(err, P2P_ECONFLICT,
                             "stale lease for call %s: the call was claimed again or never was",
                             identifier);
    if (status != P2P_CALL_RUNNING)
        return p2p_error_set(err, P2P_ECONFLICT, "stale lease for call %s: the call is %s",
                             identifier, p2p_call_status_name(status));
    return 0; /* the lease is valid: the caller tries again */
}

/* {_id, status: running, lease_token: token} plus optional extras. */
static bson_t *lease_filter(const char *identifier, const char *token) {
    return BCON_NEW("_id", BCON_UTF8(identifier), "status", BCON_UTF8("running"), "lease_token",
                    BCON_UTF8(token));
}

/* --- create --- */

static int next_seq(p2p__mg_conn *c, int64_t *seq, p2p_error *err) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_COUNTERS_COLL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("calls"));
    bson_t *update = BCON_NEW("$inc", "{", "seq", BCON_INT64(1), "}");
    bson_t doc;
    bool found = false;
    int rc = P2P_ECONFLICT;
    /* Two first upserts at once: one gets a duplicate key, and tries again. */
    for (int i = 0; i < 2 && rc == P2P_ECONFLICT; i++) {
        rc = p2p__mg_find_modify(coll, filter, NULL, update,
                                 MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
        if (rc == 0 && !found)
            rc = p2p_error_set(err, P2P_ESTORE, "the call counter did not come back");
        if (rc == 0)
            *seq = p2p__mg_int(&doc, "seq");
        bson_destroy(&doc);
    }
    bson_destroy(filter);
    bson_destroy(update);
    mongoc_collection_destroy(coll);
    return rc;
}

static bson_t *new_call_doc(p2p__mg_store *s, const p2p_store_new_call *in, int64_t seq) {
    int64_t now = p2p__store_now(&s->base);
    bson_t *doc = BCON_NEW(
        "_id", BCON_UTF8(in->identifier), "function", BCON_UTF8(in->function), "status",
        BCON_UTF8(p2p_call_status_name(in->available ? P2P_CALL_QUEUED : P2P_CALL_PUSHED)), "args",
        BCON_UTF8(in->args), "outputs", BCON_NULL, "error", BCON_NULL, "progress", BCON_DOUBLE(0),
        "attempts", BCON_INT32(0), "lease_token", BCON_UTF8(""), "lease_expires_ms", BCON_INT64(0),
        "worker", BCON_NULL, "terminate_requested", BCON_BOOL(false), "seq", BCON_INT64(seq),
        "created_ms", BCON_INT64(now), "updated_ms", BCON_INT64(now), "version", BCON_INT64(1),
        "out_blobs", "[", "]", "checkpoints", "[", "]");
    if (s->base.opts.call_ttl_ms > 0)
        BSON_APPEND_INT64(doc, "expires_ms", now + s->base.opts.call_ttl_ms);
    bson_t arr;
    bson_append_array_begin(doc, "arg_blobs", -1, &arr);
    unsigned n = 0;
    for (size_t i = 0; i < in->nblobs; i++) {
        bool repeat = false;
        for (size_t j = 0; j < i && !repeat; j++)
            repeat = strcmp(in->blobs[i], in->blobs[j]) == 0;
        if (repeat)
            continue;
        char key[16];
        const char *k;
        bson_uint32_to_string(n++, &k, key, sizeof(key));
        bson_append_utf8(&arr, k, -1, in->blobs[i], -1);
    }
    bson_append_array_end(doc, &arr);
    return doc;
}

/* Claims `identifier` in call_index for `function`; `owner` receives the
 * function that holds it (another one when the identifier is taken). */
static int index_call(p2p__mg_conn *c, const char *identifier, const char *function,
                      char owner[P2P_STORE_NAME_MAX + 1], p2p_error *err) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_INDEX_COLL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier));
    bson_t *update = BCON_NEW("$setOnInsert", "{", "function", BCON_UTF8(function), "}");
    bson_t doc;
    bool found = false;
    int rc = P2P_ECONFLICT;
    for (int i = 0; i < 2 && rc == P2P_ECONFLICT; i++) {
        rc = p2p__mg_find_modify(coll, filter, NULL, update,
                                 MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
        const char *f = rc == 0 && found ? p2p__mg_str(&doc, "function") : NULL;
        if (rc == 0 && (f == NULL || strlen(f) > P2P_STORE_NAME_MAX))
            rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed index entry", identifier);
        if (rc == 0)
            snprintf(owner, P2P_STORE_NAME_MAX + 1, "%s", f);
        bson_destroy(&doc);
    }
    bson_destroy(filter);
    bson_destroy(update);
    mongoc_collection_destroy(coll);
    return rc;
}

/* Inserts the new call; `*inserted` is false when it exists already. */
static int insert_call(mongoc_collection_t *coll, const bson_t *doc, bool *inserted,
                       p2p_error *err) {
    bson_error_t e;
    *inserted = mongoc_collection_insert_one(coll, doc, NULL, NULL, &e);
    if (*inserted || p2p__mg_duplicate(&e))
        return 0;
    return p2p__mg_error(&e, err, "cannot store a call");
}

/* Undoes an insert that lost the identifier to another function. */
static void drop_inserted(mongoc_collection_t *coll, const char *identifier, int64_t seq) {
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier), "seq", BCON_INT64(seq));
    (void)mongoc_collection_delete_one(coll, filter, NULL, NULL, NULL);
    bson_destroy(filter);
}

static int queue_pushed(p2p__mg_store *s, mongoc_collection_t *coll, const char *identifier,
                        bool *changed, p2p_error *err) {
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier), "status", BCON_UTF8("pushed"));
    bson_t *set = BCON_NEW("status", BCON_UTF8("queued"));
    bson_t update = BSON_INITIALIZER, doc;
    p2p__mg_touch(s, &update, set, NULL);
    int rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 changed, &doc, err);
    if (rc == 0 && *changed)
        p2p__mg_changed(s, &doc, false);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(set);
    bson_destroy(filter);
    return rc;
}

static int read_call(mongoc_collection_t *coll, const char *identifier, p2p_call *out,
                     p2p_error *err) {
    if (out == NULL)
        return 0;
    bson_t doc;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    if (rc == 0)
        rc = p2p__mg_doc_to_call(&doc, out, err);
    bson_destroy(&doc);
    return rc;
}

int p2p__mg_create(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                   p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bson_t *doc = NULL;
    char owner[P2P_STORE_NAME_MAX + 1];
    int64_t seq = 0;
    bool changed = false;
    *created = false;
    p2p__mg_acquire(s, &c);
    int rc = p2p__mg_calls(&c, in->function, &coll, err);
    if (rc == 0)
        rc = next_seq(&c, &seq, err);
    if (rc == 0) {
        doc = new_call_doc(s, in, seq);
        rc = insert_call(coll, doc, created, err);
    }
    /* The index entry is written after the call, so that a crash between
     * the two leaves a call that the next create of it indexes again. */
    if (rc == 0)
        rc = index_call(&c, in->identifier, in->function, owner, err);
    if (rc == 0 && strcmp(owner, in->function) != 0) {
        if (*created)
            drop_inserted(coll, in->identifier, seq);
        *created = false;
        rc = p2p_error_set(err, P2P_ECONFLICT, "call %s exists for function %s, not %s",
                           in->identifier, owner, in->function);
    }
    if (rc == 0 && *created)
        p2p__mg_changed(s, doc, false);
    else if (rc == 0 && in->available)
        rc = queue_pushed(s, coll, in->identifier, &changed, err);
    if (rc == 0)
        rc = read_call(coll, in->identifier, out, err);
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

int p2p__mg_make_available(p2p_store *store, const char *identifier, bool *changed,
                           p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bson_t doc = BSON_INITIALIZER;
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    if (rc == 0)
        rc = queue_pushed(s, coll, identifier, changed, err);
    if (rc == 0 && !*changed) {
        bson_destroy(&doc);
        rc = p2p__mg_find_id(coll, identifier, &doc, err);
    }
    p2p_call_status status = P2P_CALL_QUEUED;
    if (rc == 0 && !*changed && p2p__mg_status(&doc, &status) != 0)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    if (rc == 0 && (status == P2P_CALL_FAILED || status == P2P_CALL_TERMINATED))
        rc = p2p_error_set(err, P2P_ECONFLICT, "call %s is %s; restart it to run it again",
                           identifier, p2p_call_status_name(status));
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* --- claim and leases --- */

int p2p__mg_claim(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                  p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    char token[P2P_STORE_TOKEN_LEN + 1];
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    int rc = p2p__store_new_token(token, err);
    if (rc != 0)
        return rc;
    int64_t now = p2p__store_now(store);
    bson_t *filter = BCON_NEW("status", BCON_UTF8("queued"));
    bson_t *sort = BCON_NEW("seq", BCON_INT32(1));
    bson_t *set = BCON_NEW("status", BCON_UTF8("running"), "lease_token", BCON_UTF8(token),
                           "lease_expires_ms", BCON_INT64(now + store->opts.lease_ms), "worker",
                           BCON_UTF8(worker), "progress", BCON_DOUBLE(0), "terminate_requested",
                           BCON_BOOL(false));
    bson_t *inc = BCON_NEW("attempts", BCON_INT32(1));
    bson_t update = BSON_INITIALIZER, doc = BSON_INITIALIZER;
    bool found = false;
    p2p__mg_touch(s, &update, set, inc);
    p2p__mg_acquire(s, &c);
    rc = p2p__mg_calls(&c, function, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_modify(coll, filter, sort, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
    }
    if (rc == 0 && !found)
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no queued call of %s", function);
    if (rc == 0)
        rc = p2p__mg_doc_to_call(&doc, out, err);
    if (found)
        p2p__mg_changed(s, &doc, false);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(filter);
    bson_destroy(sort);
    bson_destroy(set);
    bson_destroy(inc);
    return rc;
}

/* Reads the call after a lease filter matched nothing, and says why. */
static int lease_miss(mongoc_collection_t *coll, const char *identifier, const char *token,
                      p2p_error *err) {
    bson_t doc;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    rc = explain_lease(&doc, rc, identifier, token, err);
    bson_destroy(&doc);
    /* The lease was valid again when read: a change slipped in between. */
    return rc != 0
               ? rc
               : p2p_error_set(err, P2P_ECONFLICT, "call %s changed during the update", identifier);
}

int p2p__mg_renew(p2p_store *store, const char *identifier, const char *token, double progress,
                  p2p_store_lease *out, p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    int64_t expires = p2p__store_now(store) + store->opts.lease_ms;
    bson_t *filter = lease_filter(identifier, token);
    bson_t *set = BCON_NEW("lease_expires_ms", BCON_INT64(expires));
    if (progress >= 0)
        BSON_APPEND_DOUBLE(set, "progress", progress);
    bson_t update = BSON_INITIALIZER, doc = BSON_INITIALIZER;
    bool found = false;
    p2p__mg_touch(s, &update, set, NULL);
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
    }
    if (rc == 0 && !found)
        rc = lease_miss(coll, identifier, token, err);
    if (rc == 0) {
        out->expires_ms = expires;
        out->terminate_requested = p2p__mg_bool(&doc, "terminate_requested");
        p2p__mg_changed(s, &doc, false);
    }
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(filter);
    bson_destroy(set);
    return rc;
}

/* The $set of a change to a status without a lease: outputs and error are
 * replaced (NULL for the others), progress becomes 100 only for done. */
static bson_t *state_set(p2p_call_status status, const char *outputs, const char *error) {
    bson_t *set = BCON_NEW("status", BCON_UTF8(p2p_call_status_name(status)), "lease_expires_ms",
                           BCON_INT64(0));
    if (outputs != NULL)
        BSON_APPEND_UTF8(set, "outputs", outputs);
    else
        BSON_APPEND_NULL(set, "outputs");
    if (error != NULL)
        BSON_APPEND_UTF8(set, "error", error);
    else
        BSON_APPEND_NULL(set, "error");
    if (status == P2P_CALL_DONE)
        BSON_APPEND_DOUBLE(set, "progress", 100);
    return set;
}

static void add_to_set(bson_t *update, const char *field, const char *const *hashes, size_t n) {
    if (n == 0)
        return;
    bson_t op, spec, each;
    bson_append_document_begin(update, "$addToSet", -1, &op);
    bson_append_document_begin(&op, field, -1, &spec);
    bson_append_array_begin(&spec, "$each", -1, &each);
    for (size_t i = 0; i < n; i++) {
        char key[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
        bson_append_utf8(&each, k, -1, hashes[i], -1);
    }
    bson_append_array_end(&spec, &each);
    bson_append_document_end(&op, &spec);
    bson_append_document_end(update, &op);
}

/* A finish that matched nothing: a retry of the same finish gives 0. */
static int finish_miss(mongoc_collection_t *coll, const char *identifier, const char *token,
                       p2p_call_status target, p2p_error *err) {
    bson_t doc;
    p2p_call_status status;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    const char *current = rc == 0 ? p2p__mg_str(&doc, "lease_token") : NULL;
    bool retry = rc == 0 && p2p__mg_status(&doc, &status) == 0 && status == target &&
                 current != NULL && strcmp(current, token) == 0;
    bson_destroy(&doc);
    return retry ? 0 : lease_miss(coll, identifier, token, err);
}

int p2p__mg_finish(p2p_store *store, const char *identifier, const char *token,
                   p2p_call_status status, const char *text, const char *const *blobs,
                   size_t nblobs, p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bson_t *filter = lease_filter(identifier, token);
    bson_t *set = state_set(status, status == P2P_CALL_DONE ? text : NULL,
                            status == P2P_CALL_FAILED ? text : NULL);
    bson_t update = BSON_INITIALIZER, doc = BSON_INITIALIZER;
    bool found = false;
    p2p__mg_touch(s, &update, set, NULL);
    add_to_set(&update, "out_blobs", blobs, nblobs);
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
    }
    if (rc == 0 && !found)
        rc = finish_miss(coll, identifier, token, status, err);
    else if (rc == 0)
        p2p__mg_changed(s, &doc, false);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(filter);
    bson_destroy(set);
    return rc;
}

/* One conditional change: `filter` and `set` (+ `inc`, may be NULL),
 * reported when it matched. `*found` tells whether it did. Takes ownership of
 * the three documents. */
static int change_if(p2p__mg_store *s, mongoc_collection_t *coll, bson_t *filter, bson_t *set,
                     bson_t *inc, bool *found, p2p_error *err) {
    bson_t update = BSON_INITIALIZER, doc;
    p2p__mg_touch(s, &update, set, inc);
    int rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 found, &doc, err);
    if (rc == 0 && *found)
        p2p__mg_changed(s, &doc, false);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(filter);
    bson_destroy(set);
    bson_destroy(inc);
    return rc;
}

/* One round of terminate: stop a pushed or queued call, or flag a running
 * one; else read what it is. `*done` is false when it changed under us. */
static int terminate_once(p2p__mg_store *s, mongoc_collection_t *coll, const char *identifier,
                          p2p_call_status *status, bool *done, p2p_error *err) {
    bool found = false;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier), "status", "{", "$in", "[",
                              BCON_UTF8("pushed"), BCON_UTF8("queued"), "]", "}");
    int rc =
        change_if(s, coll, filter, state_set(P2P_CALL_TERMINATED, NULL, NULL), NULL, &found, err);
    *status = P2P_CALL_TERMINATED;
    *done = true;
    if (rc != 0 || found)
        return rc;
    filter = BCON_NEW("_id", BCON_UTF8(identifier), "status", BCON_UTF8("running"),
                      "terminate_requested", BCON_BOOL(false));
    rc = change_if(s, coll, filter, BCON_NEW("terminate_requested", BCON_BOOL(true)), NULL, &found,
                   err);
    *status = P2P_CALL_RUNNING;
    if (rc != 0 || found)
        return rc;
    bson_t doc;
    rc = p2p__mg_find_id(coll, identifier, &doc, err);
    if (rc == 0 && p2p__mg_status(&doc, status) != 0)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    *done = *status != P2P_CALL_PUSHED && *status != P2P_CALL_QUEUED &&
            !(*status == P2P_CALL_RUNNING && !p2p__mg_bool(&doc, "terminate_requested"));
    bson_destroy(&doc);
    return rc;
}

int p2p__mg_terminate(p2p_store *store, const char *identifier, p2p_call_status *status,
                      p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bool done = false;
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    for (int i = 0; rc == 0 && !done && i < MAX_TRIES; i++)
        rc = terminate_once(s, coll, identifier, status, &done, err);
    if (rc == 0 && !done)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s kept changing; try again", identifier);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* One round of release: a call asked to stop becomes terminated, another
 * goes back to the queue (attempts - 1); else the call is read. */
static int release_once(p2p__mg_store *s, mongoc_collection_t *coll, const char *identifier,
                        const char *token, p2p_call_status *status, bool *done, p2p_error *err) {
    bool found = false;
    bson_t *filter = lease_filter(identifier, token);
    BSON_APPEND_BOOL(filter, "terminate_requested", true);
    int rc =
        change_if(s, coll, filter, state_set(P2P_CALL_TERMINATED, NULL, NULL), NULL, &found, err);
    *status = P2P_CALL_TERMINATED;
    *done = true;
    if (rc != 0 || found)
        return rc;
    filter = lease_filter(identifier, token);
    BSON_APPEND_BOOL(filter, "terminate_requested", false);
    bson_t *set = BCON_NEW("status", BCON_UTF8("queued"), "progress", BCON_DOUBLE(0),
                           "lease_expires_ms", BCON_INT64(0));
    rc = change_if(s, coll, filter, set, BCON_NEW("attempts", BCON_INT32(-1)), &found, err);
    *status = P2P_CALL_QUEUED;
    if (rc != 0 || found)
        return rc;
    bson_t doc;
    rc = p2p__mg_find_id(coll, identifier, &doc, err);
    const char *current = rc == 0 ? p2p__mg_str(&doc, "lease_token") : NULL;
    bool mine = current != NULL && strcmp(current, token) == 0;
    if (rc == 0 && p2p__mg_status(&doc, status) != 0)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    /* A retry of a release that happened: the answer is what it became. */
    bool repeat = mine && (*status == P2P_CALL_QUEUED || *status == P2P_CALL_TERMINATED);
    *done = rc != 0 || repeat || !(mine && *status == P2P_CALL_RUNNING);
    if (rc == 0 && *done && !repeat)
        rc = explain_lease(&doc, 0, identifier, token, err);
    bson_destroy(&doc);
    return rc;
}

int p2p__mg_release_call(p2p_store *store, const char *identifier, const char *token,
                         p2p_call_status *status, p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bool done = false;
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    for (int i = 0; rc == 0 && !done && i < MAX_TRIES; i++)
        rc = release_once(s, coll, identifier, token, status, &done, err);
    if (rc == 0 && !done)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s kept changing; try again", identifier);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* --- checkpoints --- */

/* The checkpoints of `doc` with `name` set to `hash` (appended, or replacing
 * the entry of that name, whose hash goes to `old` when it differs). */
static int checkpoints_with(const bson_t *doc, const char *name, const char *hash, int64_t now,
                            bson_t *out, p2p_store_hashes *old, p2p_error *err) {
    bson_iter_t it, arr;
    bson_t list;
    uint32_t n = 0;
    char key[16];
    const char *k;
    bson_append_array_begin(out, "checkpoints", -1, &list);
    if (bson_iter_init_find(&it, doc, "checkpoints") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            const uint8_t *data;
            uint32_t len;
            bson_t entry;
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
                continue;
            bson_iter_document(&arr, &len, &data);
            if (!bson_init_static(&entry, data, len))
                continue;
            const char *n_ = p2p__mg_str(&entry, "name"), *h = p2p__mg_str(&entry, "hash");
            if (n_ != NULL && strcmp(n_, name) == 0) {
                if (h != NULL && strcmp(h, hash) != 0 && strlen(h) == P2P_STORE_ID_LEN &&
                    p2p_store_hashes_add(old, h) != 0)
                    return p2p_error_set(err, P2P_ENOMEM, "out of memory saving a checkpoint");
                continue;
            }
            bson_uint32_to_string(n++, &k, key, sizeof(key));
            bson_append_document(&list, k, -1, &entry);
        }
    }
    bson_uint32_to_string(n, &k, key, sizeof(key));
    bson_t *added =
        BCON_NEW("name", BCON_UTF8(name), "hash", BCON_UTF8(hash), "updated_ms", BCON_INT64(now));
    bson_append_document(&list, k, -1, added);
    bson_destroy(added);
    bson_append_array_end(out, &list);
    return 0;
}

/* One round of checkpoint_put: reads the call, checks the lease, and writes
 * the new list only if the call's version is still the one read (no change
 * in between). `*done` is false when it was not. */
static int checkpoint_once(p2p__mg_store *s, mongoc_collection_t *coll, const char *identifier,
                           const char *token, const char *name, const char *hash, bool *done,
                           p2p_store_hashes *old, p2p_error *err) {
    bson_t doc;
    old->count = 0;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    rc = explain_lease(&doc, rc, identifier, token, err);
    bson_t *set = bson_new();
    if (rc == 0)
        rc = checkpoints_with(&doc, name, hash, p2p__store_now(&s->base), set, old, err);
    if (rc != 0) {
        bson_destroy(set);
        bson_destroy(&doc);
        return rc;
    }
    bson_t *filter = lease_filter(identifier, token);
    BSON_APPEND_INT64(filter, "version", p2p__mg_int(&doc, "version"));
    bson_destroy(&doc);
    return change_if(s, coll, filter, set, NULL, done, err);
}

int p2p__mg_checkpoint_put(p2p_store *store, const char *identifier, const char *token,
                           const char *name, const char *hash, p2p_store_hashes *orphans,
                           p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    p2p_store_hashes old;
    p2p_store_hashes_init(&old);
    bool found = false;
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    for (int i = 0; rc == 0 && !found && i < MAX_TRIES; i++)
        rc = checkpoint_once(s, coll, identifier, token, name, hash, &found, &old, err);
    if (rc == 0 && !found)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s kept changing; try again", identifier);
    if (rc == 0)
        rc = p2p__mg_add_orphans(&c, &old, orphans, err);
    p2p_store_hashes_cleanup(&old);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* --- pipelines --- */

int p2p__mg_resolve(p2p_store *store, const char *identifier, const char *args,
                    const char *const *blobs, size_t nblobs, const char *error, p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    mongoc_collection_t *coll = NULL;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(identifier), "status", BCON_UTF8("pushed"));
    bson_t *set = error != NULL ? state_set(P2P_CALL_FAILED, NULL, error)
                                : BCON_NEW("status", BCON_UTF8("queued"), "args", BCON_UTF8(args));
    bson_t update = BSON_INITIALIZER, doc = BSON_INITIALIZER;
    bool found = false;
    p2p__mg_touch(s, &update, set, NULL);
    if (error == NULL)
        add_to_set(&update, "arg_blobs", blobs, nblobs);
    p2p__mg_acquire(s, &c);
    int rc = open_call(&c, identifier, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_modify(coll, filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                                 &found, &doc, err);
    }
    if (rc == 0 && found) {
        p2p__mg_changed(s, &doc, false);
    } else if (rc == 0) {
        p2p_call_status status = P2P_CALL_PUSHED;
        bson_destroy(&doc);
        rc = p2p__mg_find_id(coll, identifier, &doc, err);
        if (rc == 0 && p2p__mg_status(&doc, &status) != 0)
            rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
        else if (rc == 0)
            rc = p2p_error_set(err, P2P_ECONFLICT, "call %s is %s, not waiting for its inputs",
                               identifier, p2p_call_status_name(status));
    }
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    bson_destroy(&doc);
    bson_destroy(&update);
    bson_destroy(filter);
    bson_destroy(set);
    return rc;
}

/* Whether one function's collection has a pushed call whose args contain
 * `pattern` (the status index narrows the search to the pushed calls). */
static int waiting_in(p2p__mg_conn *c, const char *function, const char *pattern, bool *waiting,
                      p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    if (rc != 0)
        return rc;
    /* The pattern is quotes, a colon, letters and hex digits: nothing a
     * regular expression reads as special. */
    bson_t *filter = BCON_NEW("status", BCON_UTF8("pushed"), "args", BCON_REGEX(pattern, ""));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(coll, filter, opts, NULL, NULL, &e);
    if (n < 0)
        rc = p2p__mg_error(&e, err, "cannot look for waiting calls");
    *waiting = n > 0;
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return rc;
}

int p2p__mg_has_waiting(p2p_store *store, const char *pattern, bool *waiting, p2p_error *err) {
    p2p__mg_store *s = (p2p__mg_store *)store;
    p2p__mg_conn c;
    char **names = NULL;
    *waiting = false;
    atomic_fetch_add(&s->reads, 1);
    p2p__mg_acquire(s, &c);
    int rc = p2p__mg_functions(&c, &names, err);
    for (size_t i = 0; rc == 0 && !*waiting && names[i] != NULL; i++)
        rc = waiting_in(&c, names[i], pattern, waiting, err);
    p2p__mg_names_free(names);
    p2p__mg_release(&c);
    return rc;
}
