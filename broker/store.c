#include "store.h"

#include "hash.h"
#include "store_internal.h"
#include "store_mongo.h"
#include "store_sqlite.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void p2p_call_init(p2p_call *call) {
    memset(call, 0, sizeof(*call));
}

void p2p_call_cleanup(p2p_call *call) {
    if (call == NULL)
        return;
    free(call->function);
    free(call->args);
    free(call->outputs);
    free(call->error);
    free(call->worker);
    p2p_call_init(call);
}

void p2p_call_list_init(p2p_call_list *list) {
    list->items = NULL;
    list->count = 0;
}

void p2p_call_list_cleanup(p2p_call_list *list) {
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        p2p_call_cleanup(&list->items[i]);
    free(list->items);
    p2p_call_list_init(list);
}

void p2p_store_hashes_init(p2p_store_hashes *hashes) {
    hashes->items = NULL;
    hashes->count = 0;
    hashes->capacity = 0;
}

void p2p_store_hashes_cleanup(p2p_store_hashes *hashes) {
    if (hashes == NULL)
        return;
    free(hashes->items);
    p2p_store_hashes_init(hashes);
}

int p2p_store_hashes_add(p2p_store_hashes *hashes, const char *hash) {
    if (hashes->count == hashes->capacity) {
        size_t cap = hashes->capacity ? hashes->capacity * 2 : 8;
        void *grown = realloc(hashes->items, cap * sizeof(hashes->items[0]));
        if (grown == NULL)
            return P2P_ENOMEM;
        hashes->items = grown;
        hashes->capacity = cap;
    }
    memcpy(hashes->items[hashes->count], hash, P2P_STORE_ID_LEN);
    hashes->items[hashes->count][P2P_STORE_ID_LEN] = '\0';
    hashes->count++;
    return 0;
}

int p2p_store_sync_parse(const char *name, p2p_store_sync *out) {
    if (name != NULL && strcmp(name, "normal") == 0)
        *out = P2P_STORE_SYNC_NORMAL;
    else if (name != NULL && strcmp(name, "full") == 0)
        *out = P2P_STORE_SYNC_FULL;
    else
        return P2P_EINVAL;
    return 0;
}

static int64_t realtime_ms(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void p2p_store_options_init(p2p_store_options *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->sync = P2P_STORE_SYNC_NORMAL;
    opts->busy_timeout_ms = 5000;
    opts->lease_ms = 60000;
    opts->max_attempts = 3;
    opts->call_ttl_ms = 0;
}

int p2p__store_options_check(const p2p_store_options *in, p2p_store_options *opts, p2p_error *err) {
    if (in == NULL)
        p2p_store_options_init(opts);
    else
        *opts = *in;
    if (opts->sync != P2P_STORE_SYNC_NORMAL && opts->sync != P2P_STORE_SYNC_FULL)
        return p2p_error_set(err, P2P_EINVAL, "store sync must be normal or full");
    if (opts->busy_timeout_ms < 0 || opts->lease_ms <= 0 || opts->max_attempts < 1 ||
        opts->call_ttl_ms < 0)
        return p2p_error_set(err, P2P_EINVAL,
                             "store options: busy timeout and ttl must be >= 0, lease and "
                             "max attempts > 0");
    if (opts->clock == NULL) {
        opts->clock = realtime_ms;
        opts->clock_ctx = NULL;
    }
    return 0;
}

int64_t p2p__store_now(const p2p_store *store) {
    return store->opts.clock(store->opts.clock_ctx);
}

int p2p__store_new_token(char token[P2P_STORE_TOKEN_LEN + 1], p2p_error *err) {
    static const char digits[] = "0123456789abcdef";
    unsigned char bytes[P2P_STORE_TOKEN_LEN / 2];
    ssize_t got = getrandom(bytes, sizeof(bytes), 0);
    if (got != (ssize_t)sizeof(bytes))
        return p2p_error_errno(err, P2P_EIO, errno, "cannot draw a lease token");
    for (size_t i = 0; i < sizeof(bytes); i++) {
        token[2 * i] = digits[bytes[i] >> 4];
        token[2 * i + 1] = digits[bytes[i] & 15];
    }
    token[P2P_STORE_TOKEN_LEN] = '\0';
    return 0;
}

/* Input validation: identifiers and hashes through common/hash's validator,
 * lease tokens (32 hex) here. */

static bool is_lower_hex(const char *s, size_t len) {
    if (s == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[len] == '\0';
}

static bool is_name(const char *s, const char *extra) {
    if (s == NULL || s[0] == '\0')
        return false;
    size_t len = 0;
    for (; s[len] != '\0'; len++) {
        char c = s[len];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (c != '\0' && strchr(extra, c) != NULL);
        if (!ok || len >= P2P_STORE_NAME_MAX)
            return false;
    }
    return true;
}

static int check_id(const char *identifier, p2p_error *err) {
    if (p2p_hash_hex_valid(identifier))
        return 0;
    return p2p_error_set(err, P2P_EINVAL,
                         "invalid call identifier: must be 64 lowercase hex characters");
}

static int check_hash(const char *hash, p2p_error *err) {
    if (p2p_hash_hex_valid(hash))
        return 0;
    return p2p_error_set(err, P2P_EINVAL, "invalid blob hash: must be 64 lowercase hex characters");
}

static int check_hashes(const char *const *blobs, size_t nblobs, p2p_error *err) {
    if (nblobs > 0 && blobs == NULL)
        return p2p_error_set(err, P2P_EINVAL, "blob hashes missing");
    for (size_t i = 0; i < nblobs; i++) {
        int rc = check_hash(blobs[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_function(const char *function, p2p_error *err) {
    if (is_name(function, ""))
        return 0;
    return p2p_error_set(err, P2P_EINVAL, "invalid function name: 1 to %d letters, digits or '_'",
                         P2P_STORE_NAME_MAX);
}

static int check_lease(const char *identifier, const char *token, p2p_error *err) {
    int rc = check_id(identifier, err);
    if (rc == 0 && !is_lower_hex(token, P2P_STORE_TOKEN_LEN))
        rc = p2p_error_set(err, P2P_EINVAL,
                           "invalid lease token: must be 32 lowercase hex characters");
    return rc;
}

static int check_text(const char *text, const char *what, p2p_error *err) {
    return text != NULL ? 0 : p2p_error_set(err, P2P_EINVAL, "%s missing", what);
}

int p2p_store_open(const char *location, const p2p_store_options *opts, p2p_store **out,
                   p2p_error *err) {
    *out = NULL;
    if (location == NULL || location[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "store location missing");
    if (strncmp(location, "mongodb://", 10) == 0 || strncmp(location, "mongodb+srv://", 14) == 0)
        return p2p_store_mongo_open(location, opts, out, err);
    if (strncmp(location, "sqlite:", 7) == 0)
        location += 7;
    return p2p_store_sqlite_open(location, opts, out, err);
}

void p2p_store_free(p2p_store *store) {
    if (store != NULL)
        store->ops->free(store);
}

const char *p2p_store_backend(const p2p_store *store) {
    return store->ops->name;
}

int p2p_store_create(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                     p2p_error *err) {
    if (in == NULL)
        return p2p_error_set(err, P2P_EINVAL, "call to create missing");
    int rc = check_id(in->identifier, err);
    if (rc == 0)
        rc = check_function(in->function, err);
    if (rc == 0)
        rc = check_text(in->args, "call arguments", err);
    if (rc == 0)
        rc = check_hashes(in->blobs, in->nblobs, err);
    if (rc != 0)
        return rc;
    bool ignored;
    return store->ops->create(store, in, out, created ? created : &ignored, err);
}

int p2p_store_get(p2p_store *store, const char *identifier, p2p_call *out, p2p_error *err) {
    int rc = check_id(identifier, err);
    return rc != 0 ? rc : store->ops->get(store, identifier, out, err);
}

int p2p_store_make_available(p2p_store *store, const char *identifier, bool *changed,
                             p2p_error *err) {
    bool ignored;
    int rc = check_id(identifier, err);
    return rc != 0
               ? rc
               : store->ops->make_available(store, identifier, changed ? changed : &ignored, err);
}

int p2p_store_claim(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                    p2p_error *err) {
    int rc = check_function(function, err);
    if (rc != 0)
        return rc;
    if (out == NULL)
        return p2p_error_set(err, P2P_EINVAL, "claim needs a call to fill");
    if (!is_name(worker, "-.:"))
        return p2p_error_set(err, P2P_EINVAL,
                             "invalid worker id: 1 to %d letters, digits or '_-.:'",
                             P2P_STORE_NAME_MAX);
    return store->ops->claim(store, function, worker, out, err);
}

int p2p_store_renew(p2p_store *store, const char *identifier, const char *token,
                    p2p_store_lease *out, p2p_error *err) {
    p2p_store_lease ignored;
    int rc = check_lease(identifier, token, err);
    return rc != 0 ? rc
                   : store->ops->renew(store, identifier, token, -1, out ? out : &ignored, err);
}

int p2p_store_progress(p2p_store *store, const char *identifier, const char *token, double progress,
                       p2p_store_lease *out, p2p_error *err) {
    p2p_store_lease ignored;
    int rc = check_lease(identifier, token, err);
    if (rc != 0)
        return rc;
    if (!isfinite(progress) || progress < 0 || progress > 100)
        return p2p_error_set(err, P2P_EINVAL, "progress must be a number from 0 to 100");
    return store->ops->renew(store, identifier, token, progress, out ? out : &ignored, err);
}

int p2p_store_complete(p2p_store *store, const char *identifier, const char *token,
                       const char *outputs, const char *const *blobs, size_t nblobs,
                       p2p_error *err) {
    int rc = check_lease(identifier, token, err);
    if (rc == 0)
        rc = check_text(outputs, "call outputs", err);
    if (rc == 0)
        rc = check_hashes(blobs, nblobs, err);
    if (rc != 0)
        return rc;
    return store->ops->finish(store, identifier, token, P2P_CALL_DONE, outputs, blobs, nblobs, err);
}

int p2p_store_fail(p2p_store *store, const char *identifier, const char *token, const char *message,
                   p2p_error *err) {
    int rc = check_lease(identifier, token, err);
    if (rc == 0)
        rc = check_text(message, "error message", err);
    if (rc != 0)
        return rc;
    return store->ops->finish(store, identifier, token, P2P_CALL_FAILED, message, NULL, 0, err);
}

int p2p_store_mark_terminated(p2p_store *store, const char *identifier, const char *token,
                              p2p_error *err) {
    int rc = check_lease(identifier, token, err);
    if (rc != 0)
        return rc;
    return store->ops->finish(store, identifier, token, P2P_CALL_TERMINATED, NULL, NULL, 0, err);
}

int p2p_store_release(p2p_store *store, const char *identifier, const char *token,
                      p2p_call_status *status, p2p_error *err) {
    p2p_call_status ignored;
    int rc = check_lease(identifier, token, err);
    return rc != 0 ? rc
                   : store->ops->release(store, identifier, token, status ? status : &ignored, err);
}

int p2p_store_terminate(p2p_store *store, const char *identifier, p2p_call_status *status,
                        p2p_error *err) {
    p2p_call_status ignored;
    int rc = check_id(identifier, err);
    return rc != 0 ? rc : store->ops->terminate(store, identifier, status ? status : &ignored, err);
}

int p2p_store_delete(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                     p2p_error *err) {
    int rc = check_id(identifier, err);
    return rc != 0 ? rc : store->ops->remove(store, identifier, orphans, err);
}

int p2p_store_restart(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                      p2p_error *err) {
    int rc = check_id(identifier, err);
    return rc != 0 ? rc : store->ops->restart(store, identifier, orphans, err);
}

int p2p_store_resolve(p2p_store *store, const char *identifier, const char *args,
                      const char *const *blobs, size_t nblobs, const char *error, p2p_error *err) {
    int rc = check_id(identifier, err);
    if (rc == 0 && (args == NULL) == (error == NULL))
        rc = p2p_error_set(err, P2P_EINVAL, "resolve takes either args or an error");
    if (rc == 0)
        rc = check_text(args != NULL ? args : error, args != NULL ? "args" : "error", err);
    if (rc == 0 && args != NULL)
        rc = check_hashes(blobs, nblobs, err);
    if (rc == 0 && store->ops->resolve == NULL)
        rc = p2p_error_set(err, P2P_EINVAL, "the %s store cannot resolve pipelines",
                           store->ops->name);
    return rc != 0 ? rc : store->ops->resolve(store, identifier, args, blobs, nblobs, error, err);
}

bool p2p_store_can_resolve(const p2p_store *store) {
    return store->ops->resolve != NULL;
}

int p2p_store_has_waiting(p2p_store *store, const char *upstream, bool *waiting, p2p_error *err) {
    *waiting = false;
    int rc = check_id(upstream, err);
    if (rc != 0 || store->ops->has_waiting == NULL)
        return rc;
    /* Canonical args are compact JSON in which a quote inside a string is
     * escaped, so this text only occurs as a reference's identifier. */
    char pattern[P2P_STORE_ID_LEN + 32];
    snprintf(pattern, sizeof(pattern), "\"identifier\":\"%s\"", upstream);
    return store->ops->has_waiting(store, pattern, waiting, err);
}

int p2p_store_requeue_expired(p2p_store *store, size_t *requeued, size_t *failed, p2p_error *err) {
    size_t ignored_requeued, ignored_failed;
    return store->ops->requeue_expired(store, requeued ? requeued : &ignored_requeued,
                                       failed ? failed : &ignored_failed, err);
}

int p2p_store_expire(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                     p2p_store_hashes *orphans, p2p_error *err) {
    size_t ignored;
    return store->ops->expire(store, cutoff_ms, limit, deleted ? deleted : &ignored, orphans, err);
}

int p2p_store_count(p2p_store *store, const char *function, uint64_t counts[P2P_CALL_STATUS_COUNT],
                    p2p_error *err) {
    if (function != NULL) {
        int rc = check_function(function, err);
        if (rc != 0)
            return rc;
    }
    return store->ops->count(store, function, counts, err);
}

int p2p_store_list(p2p_store *store, const p2p_store_query *query, p2p_call_list *out,
                   p2p_error *err) {
    if (query->function != NULL) {
        int rc = check_function(query->function, err);
        if (rc != 0)
            return rc;
    }
    if (query->status < -1 || query->status >= P2P_CALL_STATUS_COUNT)
        return p2p_error_set(err, P2P_EINVAL, "invalid status filter %d", query->status);
    if (query->limit < 1 || query->limit > 1000)
        return p2p_error_set(err, P2P_EINVAL, "list limit must be 1 to 1000");
    return store->ops->list(store, query, out, err);
}

int p2p_store_blob_refcount(p2p_store *store, const char *hash, uint64_t *count, p2p_error *err) {
    int rc = check_hash(hash, err);
    return rc != 0 ? rc : store->ops->blob_refcount(store, hash, count, err);
}

static int check_checkpoint_name(const char *name, p2p_error *err) {
    if (is_name(name, "-."))
        return 0;
    return p2p_error_set(err, P2P_EINVAL,
                         "invalid checkpoint name: 1 to %d letters, digits or '_-.'",
                         P2P_STORE_NAME_MAX);
}

int p2p_store_checkpoint_put(p2p_store *store, const char *identifier, const char *token,
                             const char *name, const char *hash, p2p_store_hashes *orphans,
                             p2p_error *err) {
    int rc = check_lease(identifier, token, err);
    if (rc == 0)
        rc = check_checkpoint_name(name, err);
    if (rc == 0)
        rc = check_hash(hash, err);
    if (rc != 0)
        return rc;
    return store->ops->checkpoint_put(store, identifier, token, name, hash, orphans, err);
}

int p2p_store_checkpoint_get(p2p_store *store, const char *identifier, const char *name,
                             char hash[P2P_STORE_ID_LEN + 1], p2p_error *err) {
    int rc = check_id(identifier, err);
    if (rc == 0)
        rc = check_checkpoint_name(name, err);
    return rc != 0 ? rc : store->ops->checkpoint_get(store, identifier, name, hash, err);
}

void p2p_store_get_stats(p2p_store *store, p2p_store_stats *out) {
    memset(out, 0, sizeof(*out));
    store->ops->get_stats(store, out);
}
