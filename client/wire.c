/* The client's requests to a broker, over p2p_http_client (which retries
 * idempotent requests on transport errors and 502/503/504). */
#include "client_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An upload is sent whole (no resume): a floor plus a slow link's rate. */
#define UPLOAD_FLOOR_MS 60000L
#define UPLOAD_MIN_RATE (128 * 1024)
/* One attempt of a download may take this long; the next one resumes. */
#define DOWNLOAD_ATTEMPT_MS (10 * 60 * 1000L)

bool p2p__cwire_broker_fault(int rc, long status) {
    if (status >= 500)
        return true;
    /* No answer at all: the broker is down, unreachable or stalled. */
    return status == 0 && (rc == P2P_EUNAVAIL || rc == P2P_ETIMEDOUT || rc == P2P_EPROTO);
}

/* Puts the broker's URL before its message: the message is kept, and the
 * URL says which broker said it. */
static void name_broker(const char *url, p2p_error *err) {
    if (err == NULL)
        return;
    char msg[sizeof(err->msg)];
    snprintf(msg, sizeof(msg), "%s", err->msg);
    p2p_error_set(err, err->code, "%s: %s", url, msg);
}

/* Checks the reply's status and parses a 2xx JSON body. */
static int finish(const p2p_http_reply *resp, const char *url, json_t **reply, p2p_error *err) {
    int rc = p2p_http_reply_check(resp, err);
    if (rc != 0) {
        name_broker(url, err);
        return rc;
    }
    if (reply != NULL && resp->body_len > 0)
        return p2p_http_reply_json(resp, reply, err);
    return 0;
}

int p2p__cwire_post(p2p_http_client *h, const char *url, const json_t *body, bool idempotent,
                    json_t **reply, long *status, p2p_error *err) {
    int rc = p2p_http_client_post_json(h, url, body, idempotent, reply, status, err);
    if (rc != 0 && *status != 0)
        name_broker(url, err);
    return rc;
}

int p2p__cwire_get(p2p_http_client *h, const char *url, long timeout_ms, json_t **reply,
                   long *status, p2p_error *err) {
    if (reply != NULL)
        *reply = NULL;
    *status = 0;
    p2p_http_call req = {.method = "GET", .url = url, .idempotent = true, .timeout_ms = timeout_ms};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(h, &req, &resp, err);
    *status = resp.status;
    if (rc == 0)
        rc = finish(&resp, url, reply, err);
    p2p_http_reply_cleanup(&resp);
    return rc;
}

int p2p__cwire_blob_has(p2p_http_client *h, const char *base, const char *hash, int64_t size,
                        p2p_error *err) {
    char *url = p2p_http_api_url(base, "blobs", hash);
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    p2p_http_call req = {.method = "HEAD", .url = url, .idempotent = true};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(h, &req, &resp, err);
    if (rc == 0 && resp.status == 200)
        rc = 1;
    else if (rc == 0 && resp.status != 404)
        rc = finish(&resp, url, NULL, err);
    (void)size; /* a blob is named by its content: its size follows */
    p2p_http_reply_cleanup(&resp);
    free(url);
    return rc;
}

int p2p__cwire_blob_put(p2p_http_client *h, const char *base, const char *path, const char *hash,
                        int64_t size, p2p_http_progress_fn progress, void *arg, p2p_error *err) {
    char *url = p2p_http_api_url(base, "blobs", hash);
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    p2p_http_call req = {.method = "PUT",
                         .url = url,
                         .upload_path = path,
                         .idempotent = true,
                         .progress = progress,
                         .progress_arg = arg,
                         .timeout_ms = UPLOAD_FLOOR_MS + (long)(size / UPLOAD_MIN_RATE) * 1000};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(h, &req, &resp, err);
    if (rc == 0)
        rc = finish(&resp, url, NULL, err);
    p2p_http_reply_cleanup(&resp);
    free(url);
    return rc;
}

int p2p__cwire_blob_get(p2p_http_client *h, const char *base, const char *hash, const char *path,
                        p2p_error *err) {
    char *url = p2p_http_api_url(base, "blobs", hash);
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    p2p_http_call req = {.method = "GET",
                         .url = url,
                         .download_path = path,
                         .resume = true,
                         .idempotent = true,
                         .timeout_ms = DOWNLOAD_ATTEMPT_MS};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(h, &req, &resp, err);
    if (rc == 0)
        rc = finish(&resp, url, NULL, err);
    p2p_http_reply_cleanup(&resp);
    free(url);
    return rc;
}
