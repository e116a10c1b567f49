/* The MongoDB store: opening, the client pool, the function registry and its
 * indexes, the one adapter from bson_error_t to p2prpc errors, the reads, and
 * the vtable. Writes are in store_mongo_ops.c and store_mongo_maint.c. */
#include "store_mongo.h"

#include "log.h"
#include "store_mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DB "p2prpc"
#define DEFAULT_SELECTION_MS 5000
#define DEFAULT_CONNECT_MS 3000

static p2p__mg_store *mg(p2p_store *store) {
    return (p2p__mg_store *)store;
}

/* --- errors --- */

/* Server error codes that mean "not reachable right now": a primary stepping
 * down or shutting down, network failures seen by the server. */
static bool unavailable_code(uint32_t code) {
    static const uint32_t codes[] = {6,     7,     89,    91,    189,   9001,
                                     10107, 11600, 11602, 13435, 13436, 262};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == code)
            return true;
    return false;
}

int p2p__mg_error(const bson_error_t *e, p2p_error *err, const char *what) {
    bool down = e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
                (e->domain == MONGOC_ERROR_SERVER && unavailable_code(e->code)) ||
                (e->domain == MONGOC_ERROR_WRITE_CONCERN && unavailable_code(e->code));
    if (down)
        return p2p_error_set(err, P2P_EUNAVAIL, "database unavailable: %s", e->message);
    return p2p_error_set(err, P2P_ESTORE, "%s: %s", what, e->message);
}

bool p2p__mg_duplicate(const bson_error_t *e) {
    return (e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_COLLECTION ||
            e->domain == MONGOC_ERROR_WRITE_CONCERN) &&
           (e->code == 11000 || e->code == 11001);
}

/* --- clients and collections --- */

void p2p__mg_acquire(p2p__mg_store *s, p2p__mg_conn *c) {
    c->s = s;
    c->client = mongoc_client_pool_pop(s->link.pool);
}

void p2p__mg_release(p2p__mg_conn *c) {
    if (c->client != NULL)
        mongoc_client_pool_push(c->s->link.pool, c->client);
    c->client = NULL;
}

mongoc_collection_t *p2p__mg_coll(p2p__mg_conn *c, const char *name) {
    return mongoc_client_get_collection(c->client, c->s->link.db_name, name);
}

static bool function_known(p2p__mg_store *s, const char *function) {
    pthread_mutex_lock(&s->lock);
    p2p__mg_function *f = s->functions;
    while (f != NULL && strcmp(f->name, function) != 0)
        f = f->next;
    pthread_mutex_unlock(&s->lock);
    return f != NULL;
}

static void function_remember(p2p__mg_store *s, const char *function) {
    p2p__mg_function *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return; /* it is set up again next time */
    snprintf(f->name, sizeof(f->name), "%s", function);
    pthread_mutex_lock(&s->lock);
    f->next = s->functions;
    s->functions = f;
    pthread_mutex_unlock(&s->lock);
}

/* One index of a calls collection: name, key (BCON), options. */
static void append_index(bson_t *indexes, unsigned i, const char *name, bson_t *key, bool sparse) {
    char n[16];
    const char *k;
    bson_uint32_to_string(i, &k, n, sizeof(n));
    bson_t index;
    bson_append_document_begin(indexes, k, -1, &index);
    BSON_APPEND_DOCUMENT(&index, "key", key);
    BSON_APPEND_UTF8(&index, "name", name);
    if (sparse)
        BSON_APPEND_BOOL(&index, "sparse", true);
    bson_append_document_end(indexes, &index);
    bson_destroy(key);
}

/* The indexes that claim, lease requeue, expiry, the watcher, lists and blob
 * reference counts need (docs/store.md). createIndexes does nothing for
 * indexes that exist already, so every broker may run it. */
static int create_indexes(p2p__mg_conn *c, const char *coll_name, p2p_error *err) {
    bson_t *cmd = bson_new(), indexes, reply;
    bson_error_t e;
    BSON_APPEND_UTF8(cmd, "createIndexes", coll_name);
    bson_append_array_begin(cmd, "indexes", -1, &indexes);
    append_index(&indexes, 0, "claim", BCON_NEW("status", BCON_INT32(1), "seq", BCON_INT32(1)),
                 false);
    append_index(&indexes, 1, "lease",
                 BCON_NEW("status", BCON_INT32(1), "lease_expires_ms", BCON_INT32(1)), false);
    append_index(&indexes, 2, "expiry", BCON_NEW("expires_ms", BCON_INT32(1)), true);
    append_index(&indexes, 3, "changes", BCON_NEW("updated_ms", BCON_INT32(1)), false);
    append_index(&indexes, 4, "order", BCON_NEW("seq", BCON_INT32(1)), false);
    append_index(&indexes, 5, "arg_blobs", BCON_NEW("arg_blobs", BCON_INT32(1)), false);
    append_index(&indexes, 6, "out_blobs", BCON_NEW("out_blobs", BCON_INT32(1)), false);
    append_index(&indexes, 7, "checkpoint_blobs", BCON_NEW("checkpoints.hash", BCON_INT32(1)),
                 false);
    bson_append_array_end(cmd, &indexes);
    mongoc_database_t *db = mongoc_client_get_database(c->client, c->s->link.db_name);
    bool ok = mongoc_database_write_command_with_opts(db, cmd, NULL, &reply, &e);
    mongoc_database_destroy(db);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok ? 0 : p2p__mg_error(&e, err, "cannot create the indexes of the calls");
}

/* Records `function` in `functions`, so that maintenance on every broker
 * finds its collection. */
static int register_function(p2p__mg_conn *c, const char *function, p2p_error *err) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_FUNCTIONS_COLL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(function));
    bson_t *update =
        BCON_NEW("$setOnInsert", "{", "created_ms", BCON_INT64(p2p__store_now(&c->s->base)), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t e;
    bool ok = mongoc_collection_update_one(coll, filter, update, opts, NULL, &e);
    /* Two brokers upserting the same new _id: one gets a duplicate key, and
     * the document exists either way. */
    int rc = ok || p2p__mg_duplicate(&e) ? 0 : p2p__mg_error(&e, err, "cannot record a function");
    bson_destroy(filter);
    bson_destroy(update);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return rc;
}

static void calls_name(const char *function, char out[MG_COLL_NAME_MAX]) {
    snprintf(out, MG_COLL_NAME_MAX, "%s%s", MG_CALLS_PREFIX, function);
}

int p2p__mg_calls(p2p__mg_conn *c, const char *function, mongoc_collection_t **out,
                  p2p_error *err) {
    char name[MG_COLL_NAME_MAX];
    calls_name(function, name);
    if (!function_known(c->s, function)) {
        int rc = register_function(c, function, err);
        if (rc == 0)
            rc = create_indexes(c, name, err);
        if (rc != 0)
            return rc;
        function_remember(c->s, function);
    }
    *out = p2p__mg_coll(c, name);
    return 0;
}

int p2p__mg_find_one(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
                     const char *kind, const char *id, bson_t *doc, p2p_error *err) {
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *found = NULL;
    bson_error_t e;
    int rc = 0;
    bson_init(doc);
    if (mongoc_cursor_next(cur, &found)) {
        bson_concat(doc, found);
    } else if (mongoc_cursor_error(cur, &e)) {
        char what[64];
        snprintf(what, sizeof(what), "cannot read a %s", kind);
        rc = p2p__mg_error(&e, err, what);
    } else {
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no %s %s", kind, id);
    }
    mongoc_cursor_destroy(cur);
    return rc;
}

int p2p__mg_find_id(mongoc_collection_t *coll, const char *id, bson_t *doc, p2p_error *err) {
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    int rc = p2p__mg_find_one(coll, filter, opts, "call", id, doc, err);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

int p2p__mg_lookup(p2p__mg_conn *c, const char *identifier, char function[P2P_STORE_NAME_MAX + 1],
                   p2p_error *err) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_INDEX_COLL);
    bson_t doc;
    int rc = p2p__mg_find_id(coll, identifier, &doc, err);
    const char *f = rc == 0 ? p2p__mg_str(&doc, "function") : NULL;
    if (rc == 0 && (f == NULL || f[0] == '\0' || strlen(f) > P2P_STORE_NAME_MAX))
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed index entry", identifier);
    if (rc == 0)
        snprintf(function, P2P_STORE_NAME_MAX + 1, "%s", f);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    return rc;
}

void p2p__mg_names_free(char **names) {
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        free(names[i]);
    free(names);
}

static int names_add(char ***names, size_t *n, const char *name) {
    char **grown = realloc(*names, (*n + 2) * sizeof(**names));
    if (grown == NULL)
        return P2P_ENOMEM;
    *names = grown;
    grown[*n] = strdup(name);
    grown[*n + 1] = NULL;
    if (grown[*n] == NULL)
        return P2P_ENOMEM;
    (*n)++;
    return 0;
}

int p2p__mg_functions(p2p__mg_conn *c, char ***out, p2p_error *err) {
    mongoc_collection_t *coll = p2p__mg_coll(c, MG_FUNCTIONS_COLL);
    bson_t *filter = bson_new();
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    char **names = calloc(1, sizeof(*names));
    size_t n = 0;
    int rc = names == NULL ? p2p_error_set(err, P2P_ENOMEM, NULL) : 0;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        const char *name = p2p__mg_str(doc, "_id");
        if (name != NULL && name[0] != '\0' && strlen(name) <= P2P_STORE_NAME_MAX &&
            names_add(&names, &n, name) != 0)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory listing functions");
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot list the functions");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    if (rc != 0)
        p2p__mg_names_free(names);
    else
        *out = names;
    return rc;
}

int p2p__mg_find_modify(mongoc_collection_t *coll, const bson_t *filter, const bson_t *sort,
                        const bson_t *update, mongoc_find_and_modify_flags_t flags, bool *found,
                        bson_t *doc, p2p_error *err) {
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    bson_t reply;
    bson_error_t e;
    bson_iter_t it;
    if (sort != NULL)
        mongoc_find_and_modify_opts_set_sort(opts, sort);
    if (update != NULL)
        mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts, flags);
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, filter, opts, &reply, &e);
    bson_init(doc);
    *found = false;
    int rc = 0;
    if (!ok) {
        rc = p2p__mg_duplicate(&e) ? p2p_error_set(err, P2P_ECONFLICT, "%s", e.message)
                                   : p2p__mg_error(&e, err, "store write failed");
    } else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_iter_document(&it, &len, &data);
        bson_t value_doc;
        if (bson_init_static(&value_doc, data, len) && bson_concat(doc, &value_doc))
            *found = true;
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    return rc;
}

void p2p__mg_changed(p2p__mg_store *s, const bson_t *doc, bool deleted) {
    atomic_fetch_add(&s->writes, 1);
    const char *id = p2p__mg_str(doc, "_id");
    if (!deleted && id != NULL)
        p2p__mg_watch_local(s, id, p2p__mg_int(doc, "version"));
    p2p__mg_notify(s, doc, deleted);
}

void p2p__mg_notify(p2p__mg_store *s, const bson_t *doc, bool deleted) {
    if (s->base.opts.on_change == NULL)
        return;
    p2p_store_change ch = {0};
    ch.identifier = p2p__mg_str(doc, "_id");
    ch.function = p2p__mg_str(doc, "function");
    if (ch.identifier == NULL || ch.function == NULL || p2p__mg_status(doc, &ch.status) != 0)
        return;
    ch.version = deleted ? 0 : (uint64_t)p2p__mg_int(doc, "version");
    ch.deleted = deleted;
    s->base.opts.on_change(s->base.opts.on_change_ctx, &ch);
}

/* --- reads --- */

static int mg_get(p2p_store *store, const char *identifier, p2p_call *out, p2p_error *err) {
    p2p__mg_conn c;
    char function[P2P_STORE_NAME_MAX + 1];
    mongoc_collection_t *coll = NULL;
    bson_t doc = BSON_INITIALIZER;
    atomic_fetch_add(&mg(store)->reads, 1);
    p2p__mg_acquire(mg(store), &c);
    int rc = p2p__mg_lookup(&c, identifier, function, err);
    if (rc == 0)
        rc = p2p__mg_calls(&c, function, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_id(coll, identifier, &doc, err);
    }
    if (rc == 0)
        rc = p2p__mg_doc_to_call(&doc, out, err);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

/* Adds the counts per status of one function's collection to `counts`. */
static int count_function(p2p__mg_conn *c, const char *function, uint64_t *counts, p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    for (int st = 0; rc == 0 && st < P2P_CALL_STATUS_COUNT; st++) {
        bson_t *filter = BCON_NEW("status", BCON_UTF8(p2p_call_status_name((p2p_call_status)st)));
        bson_error_t e;
        int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &e);
        bson_destroy(filter);
        if (n < 0)
            rc = p2p__mg_error(&e, err, "cannot count calls");
        else
            counts[st] += (uint64_t)n;
    }
    mongoc_collection_destroy(coll);
    return rc;
}

static int mg_count(p2p_store *store, const char *function, uint64_t *counts, p2p_error *err) {
    p2p__mg_conn c;
    char **names = NULL;
    memset(counts, 0, P2P_CALL_STATUS_COUNT * sizeof(*counts));
    atomic_fetch_add(&mg(store)->reads, 1);
    p2p__mg_acquire(mg(store), &c);
    int rc = 0;
    if (function != NULL)
        rc = count_function(&c, function, counts, err);
    else
        rc = p2p__mg_functions(&c, &names, err);
    for (size_t i = 0; rc == 0 && names != NULL && names[i] != NULL; i++)
        rc = count_function(&c, names[i], counts, err);
    p2p__mg_names_free(names);
    p2p__mg_release(&c);
    return rc;
}

/* Reads up to `want` calls of one function, newest first, into `out`
 * (appended), and their creation order into `seqs` (may be NULL) at the
 * same positions. */
static int list_function(p2p__mg_conn *c, const char *function, int status, size_t skip,
                         size_t want, p2p_call_list *out, int64_t *seqs, p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    if (rc != 0)
        return rc;
    bson_t *filter = bson_new();
    if (status >= 0)
        BSON_APPEND_UTF8(filter, "status", p2p_call_status_name((p2p_call_status)status));
    bson_t *opts = BCON_NEW("sort", "{", "seq", BCON_INT32(-1), "}", "skip",
                            BCON_INT64((int64_t)skip), "limit", BCON_INT64((int64_t)want));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    size_t got = 0;
    while (rc == 0 && got < want && mongoc_cursor_next(cur, &doc)) {
        if (seqs != NULL)
            seqs[out->count] = p2p__mg_int(doc, "seq");
        rc = p2p__mg_doc_to_call(doc, &out->items[out->count], err);
        out->count += rc == 0;
        got += rc == 0;
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot list calls");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return rc;
}

typedef struct ranked {
    int64_t seq;
    size_t index;
} ranked;

static int by_seq_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* Keeps calls offset..offset+limit of `out` in the order of `seqs`
 * (newest first), freeing the others. */
static int keep_page(p2p_call_list *out, const int64_t *seqs, size_t offset, size_t limit,
                     p2p_error *err) {
    ranked *order = calloc(out->count, sizeof(*order));
    p2p_call *page = calloc(limit, sizeof(*page));
    if (order == NULL || page == NULL) {
        free(order);
        free(page);
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    for (size_t i = 0; i < out->count; i++)
        order[i] = (ranked){.seq = seqs[i], .index = i};
    qsort(order, out->count, sizeof(*order), by_seq_desc);
    size_t n = 0;
    for (size_t i = 0; i < out->count; i++) {
        p2p_call *call = &out->items[order[i].index];
        if (i >= offset && n < limit)
            page[n++] = *call;
        else
            p2p_call_cleanup(call);
    }
    free(order);
    free(out->items);
    out->items = page;
    out->count = n;
    return 0;
}

/* Every function: the first offset + limit of each, merged newest first by
 * the creation order that all functions share (the counter). */
static int list_all(p2p__mg_conn *c, const p2p_store_query *q, p2p_call_list *out, p2p_error *err) {
    char **names = NULL;
    int64_t *seqs = NULL;
    int rc = p2p__mg_functions(c, &names, err);
    size_t n = 0, want = q->offset + q->limit;
    for (size_t i = 0; rc == 0 && names[i] != NULL; i++)
        n++;
    if (rc == 0 && n > 0) {
        out->items = calloc(n * want, sizeof(*out->items));
        seqs = calloc(n * want, sizeof(*seqs));
        if (out->items == NULL || seqs == NULL)
            rc = p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = list_function(c, names[i], q->status, 0, want, out, seqs, err);
    p2p__mg_names_free(names);
    if (rc == 0 && out->count > 0)
        rc = keep_page(out, seqs, q->offset, q->limit, err);
    free(seqs);
    return rc;
}

static int mg_list(p2p_store *store, const p2p_store_query *q, p2p_call_list *out, p2p_error *err) {
    p2p__mg_conn c;
    p2p_call_list_cleanup(out);
    atomic_fetch_add(&mg(store)->reads, 1);
    p2p__mg_acquire(mg(store), &c);
    int rc = 0;
    if (q->function != NULL) {
        out->items = calloc(q->limit, sizeof(*out->items));
        rc = out->items == NULL
                 ? p2p_error_set(err, P2P_ENOMEM, NULL)
                 : list_function(&c, q->function, q->status, q->offset, q->limit, out, NULL, err);
    } else {
        rc = list_all(&c, q, out, err);
    }
    p2p__mg_release(&c);
    if (rc != 0)
        p2p_call_list_cleanup(out);
    return rc;
}

static int mg_blob_refcount(p2p_store *store, const char *hash, uint64_t *count, p2p_error *err) {
    p2p__mg_conn c;
    atomic_fetch_add(&mg(store)->reads, 1);
    p2p__mg_acquire(mg(store), &c);
    int rc = p2p__mg_refcount(&c, hash, count, err);
    p2p__mg_release(&c);
    return rc;
}

/* The hash of checkpoint `name` in the call document `doc`, or NULL. */
static const char *checkpoint_of(const bson_t *doc, const char *name) {
    bson_iter_t it, arr, entry;
    if (!bson_iter_init_find(&it, doc, "checkpoints") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return NULL;
    while (bson_iter_next(&arr)) {
        const char *n = NULL, *h = NULL;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &entry))
            continue;
        while (bson_iter_next(&entry)) {
            if (BSON_ITER_HOLDS_UTF8(&entry) && strcmp(bson_iter_key(&entry), "name") == 0)
                n = bson_iter_utf8(&entry, NULL);
            else if (BSON_ITER_HOLDS_UTF8(&entry) && strcmp(bson_iter_key(&entry), "hash") == 0)
                h = bson_iter_utf8(&entry, NULL);
        }
        if (n != NULL && h != NULL && strcmp(n, name) == 0)
            return h;
    }
    return NULL;
}

static int mg_checkpoint_get(p2p_store *store, const char *identifier, const char *name,
                             char hash[P2P_STORE_ID_LEN + 1], p2p_error *err) {
    p2p__mg_conn c;
    char function[P2P_STORE_NAME_MAX + 1];
    mongoc_collection_t *coll = NULL;
    bson_t doc = BSON_INITIALIZER;
    atomic_fetch_add(&mg(store)->reads, 1);
    p2p__mg_acquire(mg(store), &c);
    int rc = p2p__mg_lookup(&c, identifier, function, err);
    if (rc == 0)
        rc = p2p__mg_calls(&c, function, &coll, err);
    if (rc == 0) {
        bson_destroy(&doc);
        rc = p2p__mg_find_id(coll, identifier, &doc, err);
    }
    const char *h = rc == 0 ? checkpoint_of(&doc, name) : NULL;
    if (rc == P2P_ENOTFOUND || (rc == 0 && h == NULL))
        rc = p2p_error_set(err, P2P_ENOTFOUND, "call %s has no checkpoint %s", identifier, name);
    else if (rc == 0 && strlen(h) != P2P_STORE_ID_LEN)
        rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed checkpoint", identifier);
    if (rc == 0)
        snprintf(hash, P2P_STORE_ID_LEN + 1, "%s", h);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    p2p__mg_release(&c);
    return rc;
}

static void mg_get_stats(p2p_store *store, p2p_store_stats *out) {
    uint64_t writes = atomic_load(&mg(store)->writes);
    out->writes = writes;
    out->batches = writes; /* one acknowledged write per change */
    out->max_batch = writes > 0 ? 1 : 0;
    out->reads = atomic_load(&mg(store)->reads);
}

/* --- opening --- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* The driver's log goes to the project's log. A server without sessions
 * (test servers) makes the driver warn at every pool shutdown that it could
 * not end them: that one is only a debug message. */
static void driver_log(mongoc_log_level_t level, const char *domain, const char *message,
                       void *ctx) {
    (void)ctx;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        P2P_ERROR("mongoc %s: %s", domain, message);
    else if (level == MONGOC_LOG_LEVEL_WARNING && strstr(message, "endSessions") == NULL)
        P2P_WARN("mongoc %s: %s", domain, message);
    else if (level <= MONGOC_LOG_LEVEL_INFO)
        P2P_DEBUG("mongoc %s: %s", domain, message);
}

static void init_driver(void) {
    mongoc_log_set_handler(driver_log, NULL);
    mongoc_init();
}

static bool db_name_ok(const char *name) {
    size_t n = strlen(name);
    return n > 0 && n <= 38 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") == n;
}

/* Fills in the timeouts and, for sync full, the write concern, unless the
 * URI sets them. */
static void tune_uri(mongoc_uri_t *uri, p2p_store_sync sync) {
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       DEFAULT_SELECTION_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, DEFAULT_CONNECT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(uri, "p2prpc-broker");
    if (sync == P2P_STORE_SYNC_FULL && !mongoc_uri_has_option(uri, MONGOC_URI_W)) {
        mongoc_write_concern_t *wc = mongoc_write_concern_new();
        mongoc_write_concern_set_wmajority(wc, 0);
        mongoc_write_concern_set_journal(wc, true);
        mongoc_uri_set_write_concern(uri, wc);
        mongoc_write_concern_destroy(wc);
    }
}

static int parse_uri(p2p__mg_link *l, const char *uri, p2p_store_sync sync, p2p_error *err) {
    bson_error_t e;
    l->uri = mongoc_uri_new_with_error(uri, &e);
    if (l->uri == NULL)
        return p2p_error_set(err, P2P_EINVAL, "bad MongoDB URI: %s", e.message);
    const char *db = mongoc_uri_get_database(l->uri);
    if (db == NULL || db[0] == '\0')
        db = DEFAULT_DB;
    if (!db_name_ok(db))
        return p2p_error_set(err, P2P_EINVAL,
                             "bad MongoDB database name \"%.64s\": 1 to 38 letters, digits, "
                             "'_' or '-'",
                             db);
    l->db_name = strdup(db);
    if (l->db_name == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    tune_uri(l->uri, sync);
    return 0;
}

static int ping(p2p__mg_link *l, p2p_error *err) {
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_t reply;
    bson_error_t e;
    mongoc_client_t *client = mongoc_client_pool_pop(l->pool);
    bool ok = mongoc_client_command_simple(client, l->db_name, cmd, NULL, &reply, &e);
    mongoc_client_pool_push(l->pool, client);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok ? 0 : p2p__mg_error(&e, err, "the database refused a ping");
}

int p2p__mg_link_open(const char *uri, p2p_store_sync sync, p2p__mg_link *out, p2p_error *err) {
    memset(out, 0, sizeof(*out));
    if (uri == NULL || uri[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "MongoDB URI missing");
    pthread_once(&init_once, init_driver);
    int rc = parse_uri(out, uri, sync, err);
    if (rc != 0)
        return rc;
    bson_error_t e;
    out->pool = mongoc_client_pool_new_with_error(out->uri, &e);
    if (out->pool == NULL)
        return p2p_error_set(err, P2P_EINVAL, "bad MongoDB URI: %s", e.message);
    mongoc_client_pool_set_error_api(out->pool, MONGOC_ERROR_API_VERSION_2);
    return ping(out, err);
}

void p2p__mg_link_close(p2p__mg_link *link) {
    if (link->pool != NULL)
        mongoc_client_pool_destroy(link->pool);
    mongoc_uri_destroy(link->uri);
    free(link->db_name);
    memset(link, 0, sizeof(*link));
}

static int mg_setup(p2p__mg_store *s, const char *uri, p2p_error *err) {
    int rc = p2p__mg_link_open(uri, s->base.opts.sync, &s->link, err);
    return rc != 0 ? rc : p2p__mg_watch_start(s, err);
}

static void mg_free(p2p_store *store);
static const p2p__store_ops mongo_ops;

int p2p_store_mongo_open(const char *uri, const p2p_store_options *opts, p2p_store **out,
                         p2p_error *err) {
    *out = NULL;
    p2p__mg_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    s->base.ops = &mongo_ops;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->watch_lock, NULL);
    pthread_mutex_init(&s->local_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->watch_wake, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->writes, 0);
    atomic_init(&s->reads, 0);
    int rc = p2p__store_options_check(opts, &s->base.opts, err);
    if (rc == 0)
        rc = mg_setup(s, uri, err);
    if (rc != 0) {
        mg_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static void mg_free(p2p_store *store) {
    p2p__mg_store *s = mg(store);
    p2p__mg_watch_stop(s);
    p2p__mg_link_close(&s->link);
    while (s->functions != NULL) {
        p2p__mg_function *next = s->functions->next;
        free(s->functions);
        s->functions = next;
    }
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->watch_lock);
    pthread_mutex_destroy(&s->local_lock);
    pthread_cond_destroy(&s->watch_wake);
    free(s);
}

static const p2p__store_ops mongo_ops = {
    .name = "mongodb",
    .free = mg_free,
    .create = p2p__mg_create,
    .get = mg_get,
    .make_available = p2p__mg_make_available,
    .claim = p2p__mg_claim,
    .renew = p2p__mg_renew,
    .finish = p2p__mg_finish,
    .terminate = p2p__mg_terminate,
    .release = p2p__mg_release_call,
    .remove = p2p__mg_remove,
    .restart = p2p__mg_restart,
    .requeue_expired = p2p__mg_requeue_expired,
    .expire = p2p__mg_expire,
    .count = mg_count,
    .list = mg_list,
    .blob_refcount = mg_blob_refcount,
    .checkpoint_put = p2p__mg_checkpoint_put,
    .checkpoint_get = mg_checkpoint_get,
    .get_stats = mg_get_stats,
    .resolve = p2p__mg_resolve,
    .has_waiting = p2p__mg_has_waiting,
};
