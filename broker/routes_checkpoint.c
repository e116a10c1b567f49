/* Checkpoints: a running call's worker saves named state as a blob, so that
 * another worker can resume the call after a lease expired (DESIGN §1,
 * p2p_checkpoint_save/load). The blob is uploaded first with PUT
 * /api/v1/blobs/{hash}; these routes only name it. */
#include "broker_internal.h"

#include "hash.h"

#include <stdlib.h>
#include <string.h>

static const char *const put_members[] = {"identifier", "lease_token", "name", "hash", NULL};

/* The string member `key` of `body`, or NULL after a 400 answer. */
static const char *string_member(p2p_http_request *req, const json_t *body, const char *key) {
    const json_t *j = json_object_get(body, key);
    if (!json_is_string(j)) {
        p2p_http_respond_error(req, 400, j != NULL ? P2P_ETYPE : P2P_EINVAL,
                               "\"%s\" (a string) is required", key);
        return NULL;
    }
    return json_string_value(j);
}

/* A checkpoint name as the store accepts it: 1..128 of [A-Za-z0-9_.-]. */
static bool valid_name(const char *name) {
    size_t len = strlen(name);
    return len > 0 && len <= P2P_STORE_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

static void save(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                 const json_t *body) {
    const char *id = p2p__route_identifier(req, body);
    const char *token = id ? string_member(req, body, "lease_token") : NULL;
    const char *name = token ? string_member(req, body, "name") : NULL;
    const char *hash = name ? string_member(req, body, "hash") : NULL;
    if (hash == NULL)
        return;
    if (!p2p_hash_hex_valid(hash)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "\"hash\" must be 64 lowercase hex");
        return;
    }
    /* The store checks the name too, but only after the blob lookup below:
     * a malformed request is told so before it is told to upload anything. */
    if (!valid_name(name)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "invalid checkpoint name: 1 to %d letters, digits or '_-.'",
                               P2P_STORE_NAME_MAX);
        return;
    }
    p2p_call call;
    p2p_call_init(&call);
    if (p2p__route_get_call(req, b, schema, id, &call) != 0)
        return;
    p2p_call_cleanup(&call);
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    p2p_error err = {0};
    uint64_t size = 0;
    pthread_rwlock_rdlock(&b->blob_lock);
    int rc = p2p_blobstore_stat(b->blobs, hash, &size, &err);
    if (rc == P2P_ENOTFOUND)
        rc = p2p_error_set(&err, P2P_ECONFLICT,
                           "blob %s (checkpoint \"%.128s\") is not on this broker: upload it first",
                           hash, name);
    if (rc == 0)
        rc = p2p_store_checkpoint_put(b->store, id, token, name, hash, &orphans, &err);
    pthread_rwlock_unlock(&b->blob_lock);
    if (rc == 0) {
        p2p__broker_remove_orphans(b, &orphans);
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:s, s:s, s:I}", "identifier", id, "name", name,
                                        "hash", hash, "size", (json_int_t)size));
    } else {
        p2p_http_respond_err(req, &err);
    }
    p2p_store_hashes_cleanup(&orphans);
}

void p2p__route_checkpoint_put(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    json_t *body = NULL;
    if (schema == NULL || p2p__route_body(req, &body) != 0)
        return;
    if (p2p__route_only(req, body, put_members) == 0)
        save(req, b, schema, body);
    json_decref(body);
}

void p2p__route_checkpoint_get(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    if (schema == NULL)
        return;
    const char *id = p2p_http_request_query(req, "identifier");
    const char *name = p2p_http_request_query(req, "name");
    if (id == NULL || !p2p_hash_hex_valid(id) || name == NULL) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "identifier= (64 lowercase hex) and name= are required");
        return;
    }
    p2p_call call;
    p2p_call_init(&call);
    if (p2p__route_get_call(req, b, schema, id, &call) != 0)
        return;
    p2p_call_cleanup(&call);
    char hash[P2P_STORE_ID_LEN + 1];
    uint64_t size = 0;
    p2p_error err = {0};
    int rc = p2p_store_checkpoint_get(b->store, id, name, hash, &err);
    if (rc == 0)
        rc = p2p_blobstore_stat(b->blobs, hash, &size, &err);
    if (rc != 0)
        p2p_http_respond_err(req, &err);
    else
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:s, s:s, s:I}", "identifier", id, "name", name,
                                        "hash", hash, "size", (json_int_t)size));
}
