/* The blob routes: PUT, HEAD, GET and DELETE on /api/v1/blobs/{hash}.
 *
 * The {hash} was already checked with p2p_hash_hex_valid by the admission
 * hook (broker.c), before any byte of a body was read; it is checked again
 * here because the blob store builds a path from it. A PUT body arrives in a
 * temp file under the blob store's tmp/ while the server hashes it, so the
 * handler only compares the hash and renames. */
#include "broker_internal.h"

#include "hash.h"
#include "log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The {hash} of the path, or NULL after a 400 answer. */
static const char *blob_hash(p2p_http_request *req) {
    const char *hash = p2p_http_request_param(req, "hash");
    if (!p2p_hash_hex_valid(hash)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "a blob hash is 64 lowercase hex characters");
        return NULL;
    }
    return hash;
}

void p2p__route_blob_put(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const char *hash = blob_hash(req);
    if (hash == NULL)
        return;
    const char *got = p2p_http_request_body_sha256(req);
    if (got == NULL || strcmp(got, hash) != 0) {
        p2p_http_respond_error(req, 422, P2P_EHASH, "the body hashes to %s, not %s",
                               got != NULL ? got : "(nothing)", hash);
        return;
    }
    uint64_t size = p2p_http_request_body_size(req);
    char *tmp = NULL;
    bool created = false;
    p2p_error err = {0};
    int rc = p2p_http_request_take_body_file(req, &tmp, &err);
    if (rc == 0)
        rc = p2p_blobstore_commit(b->blobs, hash, tmp, &created, &err);
    free(tmp);
    if (rc != 0) {
        P2P_WARN("blobs: cannot store %s: %s", hash, err.msg);
        p2p_http_respond_err(req, &err);
        return;
    }
    p2p_http_respond_json(
        req, created ? 201 : 200,
        json_pack("{s:s, s:I, s:b}", "hash", hash, "size", (json_int_t)size, "created", created));
}

static int open_blob(p2p_http_request *req, p2p_broker *b, const char *hash, p2p_blob_reader **r,
                     uint64_t *size) {
    p2p_error err = {0};
    int rc = p2p_blobstore_read(b->blobs, hash, r, size, &err);
    if (rc != 0)
        p2p_http_respond_err(req, &err);
    return rc;
}

static int64_t read_blob(void *ctx, uint64_t offset, char *buf, size_t max) {
    p2p_error err = {0};
    int64_t got = p2p_blob_reader_pread(ctx, buf, max, offset, &err);
    if (got < 0)
        P2P_WARN("blobs: a download stopped: %s", err.msg);
    return got;
}

static void free_reader(void *ctx) {
    p2p_blob_reader_free(ctx);
}

/* Sends the blob of `r` (taken): its file with sendfile when the backend
 * has one, else piece by piece from the reader. */
static void send_blob(p2p_http_request *req, p2p_blob_reader *r, uint64_t size) {
    int fd = p2p_blob_reader_take_fd(r);
    if (fd >= 0) {
        p2p_blob_reader_free(r);
        p2p_http_respond_file_range(req, fd, "application/octet-stream");
        return;
    }
    p2p_http_respond_stream_range(req, size, read_blob, r, free_reader, "application/octet-stream");
}

void p2p__route_blob_head(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const char *hash = blob_hash(req);
    p2p_blob_reader *r = NULL;
    uint64_t size = 0;
    if (hash == NULL || open_blob(req, b, hash, &r, &size) != 0)
        return;
    /* A client asks before uploading: the blob is about to be used, so the
     * sweep of unreferenced blobs must spare it for another period. */
    if (p2p_blobstore_touch(b->blobs, hash, NULL) != 0)
        P2P_DEBUG("blobs: cannot touch %s", hash);
    /* libmicrohttpd sends the headers of this response (Content-Length =
     * size) without its body, since the request is a HEAD. */
    send_blob(req, r, size);
}

void p2p__route_blob_get(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const char *hash = blob_hash(req);
    p2p_blob_reader *r = NULL;
    uint64_t size = 0;
    if (hash == NULL || open_blob(req, b, hash, &r, &size) != 0)
        return;
    p2p_metrics_add(b->metrics, P2P_METRIC_BLOB_GETS, 1);
    send_blob(req, r, size);
}

void p2p__route_blob_delete(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const char *hash = blob_hash(req);
    if (hash == NULL)
        return;
    uint64_t refs = 0;
    p2p_error err = {0};
    pthread_rwlock_wrlock(&b->blob_lock);
    int rc = p2p_store_blob_refcount(b->store, hash, &refs, &err);
    if (rc == 0 && refs > 0)
        rc = p2p_error_set(&err, P2P_ECONFLICT, "blob %s is referenced by %" PRIu64 " call(s)",
                           hash, refs);
    if (rc == 0)
        rc = p2p_blobstore_remove(b->blobs, hash, NULL, &err);
    pthread_rwlock_unlock(&b->blob_lock);
    if (rc != 0) {
        p2p_http_respond_err(req, &err);
        return;
    }
    p2p_metrics_add(b->metrics, P2P_METRIC_BLOBS_REMOVED, 1);
    p2p_http_respond_empty(req, 204);
}
