/* The worker's requests to a broker, over p2p_http_client: pushes on a lease
 * and blob transfers. Every request sent here is idempotent by the protocol
 * (docs/protocol.md): a repeated push with the same token changes nothing, a
 * blob is addressed by its content. So all of them are retried on transient
 * failures. The long-poll search_work, which is not, is in poller.c. */
#include "worker_internal.h"

#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One attempt of a download may take this long; the next one resumes. */
#define DOWNLOAD_ATTEMPT_MS (10 * 60 * 1000L)
/* Attempts in a row that add no byte before a download gives up. */
#define DOWNLOAD_STALLS 6
/* An upload is sent whole (no resume): a floor plus a slow link's rate. */
#define UPLOAD_FLOOR_MS 60000L
#define UPLOAD_MIN_RATE (128 * 1024)

static char *blob_url(const char *base, const char *hash) {
    return p2p_http_api_url(base, "blobs", hash);
}

int p2p__wire_post(p2p_http_client *c, const char *url, const json_t *body, json_t **reply,
                   long *status, p2p_error *err) {
    long got = 0;
    int rc = p2p_http_client_post_json(c, url, body, true, reply, &got, err);
    if (status != NULL)
        *status = got;
    if (rc == 0 && *reply == NULL)
        rc = p2p_error_set(err, P2P_EPROTO, "%s: empty answer where JSON was expected", url);
    return rc;
}

static void read_push_reply(const json_t *reply, p2p__push_reply *out) {
    const char *status = json_string_value(json_object_get(reply, "status"));
    snprintf(out->status, sizeof(out->status), "%s", status != NULL ? status : "");
    out->terminate_requested = json_is_true(json_object_get(reply, "terminate_requested"));
    out->lease_expires_ms = json_integer_value(json_object_get(reply, "lease_expires_ms"));
}

int p2p__wire_push(p2p_http_client *c, const char *base, const char *function,
                   const char *identifier, const char *token, const char *member, json_t *value,
                   p2p__push_reply *out, p2p_error *err) {
    json_t *body =
        json_pack("{s:s, s:s, s:o}", "identifier", identifier, "lease_token", token, member, value);
    char *url = p2p_http_api_url(base, function, "push_update");
    json_t *reply = NULL;
    int rc = body != NULL && url != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p__wire_post(c, url, body, &reply, NULL, err);
    if (rc == 0 && out != NULL)
        read_push_reply(reply, out);
    json_decref(reply);
    json_decref(body);
    free(url);
    return rc;
}

int p2p__wire_hash_file(const char *path, char hash[P2P_HASH_HEX_LEN + 1], int64_t *size,
                        p2p_error *err) {
    int fd = -1;
    uint64_t n = 0;
    int rc = p2p_fs_open_regular(path, &fd, NULL, err);
    if (rc == 0)
        rc = p2p_hash_fd(fd, hash, &n, err);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && size != NULL)
        *size = (int64_t)n;
    return rc;
}

static bool aborted(const p2p__abort *a) {
    return a != NULL && a->flag != NULL && atomic_load(a->flag);
}

static int on_transfer(void *arg, int64_t done, int64_t total) {
    (void)done;
    (void)total;
    return aborted(arg) ? 1 : 0;
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Checks the downloaded file against its size and hash. */
static int verify_download(const char *path, const char *hash, int64_t size, p2p_error *err) {
    char got[P2P_HASH_HEX_LEN + 1];
    int64_t n = 0;
    int rc = p2p__wire_hash_file(path, got, &n, err);
    if (rc != 0)
        return rc;
    if (size >= 0 && n != size)
        return p2p_error_set(err, P2P_EHASH, "blob %s: got %" PRId64 " bytes, not %" PRId64, hash,
                             n, size);
    if (strcmp(got, hash) != 0)
        return p2p_error_set(err, P2P_EHASH, "blob %s: the content hashes to %s", hash, got);
    return 0;
}

/* One GET, resuming what is in `path`. Returns 0 when the whole body is
 * there, P2P_EUNAVAIL-like codes for what another attempt may fix, others
 * (404, 4xx) for what it will not (`*final`). */
static int download_once(p2p_http_client *c, const char *url, const char *path,
                         const p2p__abort *abort, bool *final, p2p_error *err) {
    p2p_http_call req = {.method = "GET",
                         .url = url,
                         .download_path = path,
                         .resume = true,
                         .idempotent = true,
                         .progress = on_transfer,
                         .progress_arg = (void *)abort,
                         .timeout_ms = DOWNLOAD_ATTEMPT_MS};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(c, &req, &resp, err);
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, err);
    *final = rc == P2P_ECANCELED || (resp.status >= 400 && resp.status < 500) || rc == P2P_EIO;
    p2p_http_reply_cleanup(&resp);
    return rc;
}

int p2p__wire_download(p2p_http_client *c, const char *base, const char *hash, int64_t size,
                       const char *path, const p2p__abort *abort, p2p_error *err) {
    char *url = blob_url(base, hash);
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    unlink(path);
    int rc = 0, stalls = 0, restarts = 0;
    int64_t have = 0;
    for (;;) {
        bool final = false;
        rc = download_once(c, url, path, abort, &final, err);
        if (rc == 0) {
            rc = verify_download(path, hash, size, err);
            if (rc != P2P_EHASH || restarts++ > 0)
                break;
            P2P_WARN("worker: %s; downloading it again", err != NULL ? err->msg : hash);
            unlink(path);
            have = 0;
            continue;
        }
        if (final)
            break;
        int64_t now_have = file_size(path);
        stalls = now_have > have ? 0 : stalls + 1;
        have = now_have;
        if (stalls >= DOWNLOAD_STALLS)
            break;
        long delay = p2p_http_backoff_ms(P2P__BACKOFF_BASE_MS, 5000, stalls);
        P2P_INFO("worker: blob %s: %s; resuming at byte %" PRId64 " in %ld ms", hash,
                 err != NULL ? err->msg : p2p_strerror(rc), have, delay);
        if (aborted(abort) || !p2p__worker_sleep(abort != NULL ? abort->fd : -1, (int64_t)delay)) {
            rc = p2p_error_set(err, P2P_ECANCELED, "blob %s: download cancelled", hash);
            break;
        }
    }
    free(url);
    return rc;
}

int p2p__wire_upload(p2p_http_client *c, const char *base, const char *path, const char *hash,
                     int64_t size, const p2p__abort *abort, p2p_error *err) {
    char *url = blob_url(base, hash);
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    p2p_http_call head = {.method = "HEAD", .url = url, .idempotent = true};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(c, &head, &resp, err);
    long status = resp.status;
    p2p_http_reply_cleanup(&resp);
    if (rc == 0 && status == 200)
        goto cleanup; /* the broker has it: nothing to send */
    if (rc == 0 && status != 404) {
        rc = p2p_error_set(err, P2P_EPROTO, "HEAD %s: HTTP %ld", url, status);
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;
    p2p_http_call put = {.method = "PUT",
                         .url = url,
                         .upload_path = path,
                         .idempotent = true,
                         .progress = on_transfer,
                         .progress_arg = (void *)abort,
                         .timeout_ms = UPLOAD_FLOOR_MS + (long)(size / UPLOAD_MIN_RATE) * 1000};
    rc = p2p_http_client_request(c, &put, &resp, err);
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, err);
    p2p_http_reply_cleanup(&resp);
cleanup:
    free(url);
    return rc;
}
