/* Call documents of the MongoDB store: reading them into p2p_call, the fields
 * every change sets, and the blob references they hold.
 *
 *   {_id: identifier, function, status, args, outputs, error, progress,
 *    attempts, lease_token, lease_expires_ms, worker, terminate_requested,
 *    seq, created_ms, updated_ms, expires_ms, version,
 *    arg_blobs: [hash...], out_blobs: [hash...],
 *    checkpoints: [{name, hash, updated_ms}...]} */
#include "store_mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *p2p__mg_str(const bson_t *doc, const char *field) {
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return bson_iter_utf8(&it, NULL);
}

int64_t p2p__mg_int(const bson_t *doc, const char *field) {
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_NUMBER(&it))
        return 0;
    return bson_iter_as_int64(&it);
}

static double get_double(const bson_t *doc, const char *field) {
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_NUMBER(&it))
        return 0;
    return bson_iter_as_double(&it);
}

bool p2p__mg_bool(const bson_t *doc, const char *field) {
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && bson_iter_as_bool(&it);
}

int p2p__mg_status(const bson_t *doc, p2p_call_status *out) {
    return p2p_call_status_parse(p2p__mg_str(doc, "status"), out);
}

/* A copy of string `field`, or NULL when missing; sets *oom on failure. */
static char *dup_field(const bson_t *doc, const char *field, bool *oom) {
    const char *v = p2p__mg_str(doc, field);
    if (v == NULL)
        return NULL;
    char *copy = strdup(v);
    *oom |= copy == NULL;
    return copy;
}

/* Copies string `field` of exactly `len` characters into `dst`; a missing
 * field (or an empty one) gives "". */
static bool fixed_field(const bson_t *doc, const char *field, char *dst, size_t len) {
    const char *v = p2p__mg_str(doc, field);
    dst[0] = '\0';
    if (v == NULL || v[0] == '\0')
        return true;
    if (strlen(v) != len)
        return false;
    memcpy(dst, v, len + 1);
    return true;
}

int p2p__mg_doc_to_call(const bson_t *doc, p2p_call *call, p2p_error *err) {
    bool oom = false;
    p2p_call_cleanup(call);
    bool ok = fixed_field(doc, "_id", call->identifier, P2P_STORE_ID_LEN) &&
              call->identifier[0] != '\0' &&
              fixed_field(doc, "lease_token", call->lease_token, P2P_STORE_TOKEN_LEN) &&
              p2p__mg_status(doc, &call->status) == 0 && p2p__mg_str(doc, "function") != NULL &&
              p2p__mg_str(doc, "args") != NULL;
    if (!ok) {
        p2p_call_cleanup(call);
        return p2p_error_set(err, P2P_ESTORE, "a call document is malformed");
    }
    call->function = dup_field(doc, "function", &oom);
    call->args = dup_field(doc, "args", &oom);
    call->outputs = dup_field(doc, "outputs", &oom);
    call->error = dup_field(doc, "error", &oom);
    call->worker = dup_field(doc, "worker", &oom);
    call->progress = get_double(doc, "progress");
    call->attempts = (int)p2p__mg_int(doc, "attempts");
    call->lease_expires_ms = p2p__mg_int(doc, "lease_expires_ms");
    call->terminate_requested = p2p__mg_bool(doc, "terminate_requested");
    call->created_ms = p2p__mg_int(doc, "created_ms");
    call->updated_ms = p2p__mg_int(doc, "updated_ms");
    call->expires_ms = p2p__mg_int(doc, "expires_ms");
    call->version = (uint64_t)p2p__mg_int(doc, "version");
    if (oom) {
        p2p_call_cleanup(call);
        return p2p_error_set(err, P2P_ENOMEM, "out of memory reading a call");
    }
    return 0;
}

void p2p__mg_touch(p2p__mg_store *s, bson_t *update, const bson_t *set, const bson_t *inc) {
    int64_t now = p2p__store_now(&s->base);
    bson_t child;
    bson_append_document_begin(update, "$set", -1, &child);
    if (set != NULL)
        bson_concat(&child, set);
    BSON_APPEND_INT64(&child, "updated_ms", now);
    if (s->base.opts.call_ttl_ms > 0)
        BSON_APPEND_INT64(&child, "expires_ms", now + s->base.opts.call_ttl_ms);
    bson_append_document_end(update, &child);
    bson_append_document_begin(update, "$inc", -1, &child);
    if (inc != NULL)
        bson_concat(&child, inc);
    BSON_APPEND_INT64(&child, "version", 1);
    bson_append_document_end(update, &child);
}

static bool has_hash(const p2p_store_hashes *h, const char *hash) {
    for (size_t i = 0; i < h->count; i++)
        if (strcmp(h->items[i], hash) == 0)
            return true;
    return false;
}

/* The hash an array element holds: itself, or its "hash" member. */
static const char *element_hash(bson_iter_t *el) {
    bson_iter_t sub;
    if (BSON_ITER_HOLDS_UTF8(el))
        return bson_iter_utf8(el, NULL);
    if (BSON_ITER_HOLDS_DOCUMENT(el) && bson_iter_recurse(el, &sub) &&
        bson_iter_find(&sub, "hash") && BSON_ITER_HOLDS_UTF8(&sub))
        return bson_iter_utf8(&sub, NULL);
    return NULL;
}

int p2p__mg_doc_hashes(const bson_t *doc, const char *field, p2p_store_hashes *out,
                       p2p_error *err) {
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;
    while (bson_iter_next(&arr)) {
        const char *hash = element_hash(&arr);
        if (hash == NULL || strlen(hash) != P2P_STORE_ID_LEN)
            return p2p_error_set(err, P2P_ESTORE, "a call document has a malformed blob hash");
        if (!has_hash(out, hash) && p2p_store_hashes_add(out, hash) != 0)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory collecting blob hashes");
    }
    return 0;
}

/* Checkpoint entries of `doc` whose hash is `hash`. */
static uint64_t checkpoint_refs(const bson_t *doc, const char *hash) {
    bson_iter_t it, arr;
    uint64_t n = 0;
    if (!bson_iter_init_find(&it, doc, "checkpoints") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;
    while (bson_iter_next(&arr)) {
        const char *h = element_hash(&arr);
        n += h != NULL && strcmp(h, hash) == 0;
    }
    return n;
}

/* References to `hash` in one collection of calls: argument and output
 * references count once per call, checkpoints once per entry (as in the
 * SQLite backend). */
static int refcount_coll(mongoc_collection_t *coll, const char *hash, uint64_t *count,
                         p2p_error *err) {
    static const char *const fields[] = {"arg_blobs", "out_blobs"};
    bson_error_t e;
    for (size_t i = 0; i < 2; i++) {
        bson_t *filter = BCON_NEW(fields[i], BCON_UTF8(hash));
        int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &e);
        bson_destroy(filter);
        if (n < 0)
            return p2p__mg_error(&e, err, "cannot count blob references");
        *count += (uint64_t)n;
    }
    bson_t *filter = BCON_NEW("checkpoints.hash", BCON_UTF8(hash));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        *count += checkpoint_refs(doc, hash);
    int rc =
        mongoc_cursor_error(cur, &e) ? p2p__mg_error(&e, err, "cannot count blob references") : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    return rc;
}

int p2p__mg_refcount(p2p__mg_conn *c, const char *hash, uint64_t *count, p2p_error *err) {
    char **names = NULL;
    *count = 0;
    int rc = p2p__mg_functions(c, &names, err);
    for (size_t i = 0; rc == 0 && names[i] != NULL; i++) {
        mongoc_collection_t *coll = NULL;
        rc = p2p__mg_calls(c, names[i], &coll, err);
        if (rc == 0)
            rc = refcount_coll(coll, hash, count, err);
        mongoc_collection_destroy(coll);
    }
    p2p__mg_names_free(names);
    if (rc != 0)
        *count = 0;
    return rc;
}

int p2p__mg_add_orphans(p2p__mg_conn *c, const p2p_store_hashes *candidates,
                        p2p_store_hashes *orphans, p2p_error *err) {
    for (size_t i = 0; orphans != NULL && i < candidates->count; i++) {
        uint64_t n = 0;
        int rc = p2p__mg_refcount(c, candidates->items[i], &n, err);
        if (rc != 0)
            return rc;
        if (n == 0 && !has_hash(orphans, candidates->items[i]) &&
            p2p_store_hashes_add(orphans, candidates->items[i]) != 0)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory collecting blob hashes");
    }
    return 0;
}
