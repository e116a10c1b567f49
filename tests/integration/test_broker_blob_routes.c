/* Blobs over HTTP against a real broker (--max-blob-size 1 MiB): PUT
 * (created, then idempotent), HEAD with the size, GET whole and with Range,
 * the on-disk layout BLOBS/ab/abcdef..., DELETE refused while a call refers
 * to the blob and allowed once no call does, output blobs that must exist,
 * and the metrics that count them. */
#include "broker_fixture.h"

#include "fsutil.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BLOB (1 << 20)

static broker B;

/* Deterministic bytes, different for every seed. */
static char *pattern(size_t len, unsigned seed) {
    char *p = malloc(len);
    ASSERT_TRUE(p != NULL);
    uint32_t x = 2463534242u ^ seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (char)x;
    }
    return p;
}

static void blob_path(const char *hash, char *out, size_t len) {
    snprintf(out, len, "%s/%.2s/%s", B.blobs, hash, hash);
}

static void put(const void *data, size_t len, char hash[P2P_HASH_HEX_LEN + 1], long status) {
    harness_reply r;
    fx_blob_put(&B, NULL, data, len, hash, &r);
    HARNESS_EXPECT(&r, status, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "hash"), hash);
    ASSERT_EQ(harness_reply_int(&r, "size", -1), (long long)len);
    ASSERT_EQ(json_is_true(json_object_get(r.json, "created")), status == 201);
    harness_reply_cleanup(&r);
}

/* HEAD over a raw socket, to read its Content-Length; returns the status. */
static int head(const char *hash, long long *length) {
    int fd = -1;
    ASSERT_OK(harness_connect(B.url, &fd, NULL));
    char target[128], sign[512], req[1024];
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    ASSERT_OK(harness_sign_lines(B.secret, B.secret_len, "HEAD", target, sign, sizeof(sign), NULL));
    int n = snprintf(req, sizeof(req),
                     "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", target,
                     sign);
    ASSERT_EQ(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    static char buf[4096];
    /* A HEAD answer has no body whatever its Content-Length says: read the
     * header block only (the connection closes after it). */
    long got = 0;
    buf[0] = '\0';
    int64_t deadline = harness_now_ms() + 10000;
    while (strstr(buf, "\r\n\r\n") == NULL && harness_now_ms() < deadline && got < 4000) {
        long k = harness_read_some(fd, buf + got, sizeof(buf) - 1 - (size_t)got, 200);
        if (k > 0)
            got += k;
        buf[got] = '\0';
    }
    close(fd);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    *length = cl ? strtoll(cl + 17, NULL, 10) : -1;
    return harness_http_status(buf);
}

static void test_put_head_get(void) {
    size_t len = 300 * 1024 + 7; /* over the server's in-memory threshold */
    char *data = pattern(len, 1), hash[P2P_HASH_HEX_LEN + 1], path[HARNESS_PATH_MAX + 80];
    char *text = fx_metrics_text(&B);
    double blobs0 = fx_metric(text, "p2prpc_blobs", NULL);
    double bytes0 = fx_metric(text, "p2prpc_blob_bytes", NULL);
    free(text);

    put(data, len, hash, 201);
    put(data, len, hash, 200); /* again: already there, not rewritten */
    blob_path(hash, path, sizeof(path));
    char on_disk[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_file(path, on_disk, NULL));
    ASSERT_STR_EQ(on_disk, hash);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, (off_t)len);

    long long length = 0;
    ASSERT_EQ(head(hash, &length), 200);
    ASSERT_EQ(length, (long long)len);

    char target[128];
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    harness_reply r;
    harness_get(B.client, B.url, target, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(r.body_len, len);
    ASSERT_MEM_EQ(r.body, data, len);
    harness_reply_cleanup(&r);

    text = fx_metrics_text(&B);
    ASSERT_EQ((long long)fx_metric(text, "p2prpc_blobs", NULL), (long long)blobs0 + 1);
    ASSERT_EQ((long long)fx_metric(text, "p2prpc_blob_bytes", NULL), (long long)bytes0 + len);
    free(text);
    /* Nothing left behind in the upload directory. */
    char tmp[HARNESS_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s/tmp", B.blobs);
    ASSERT_EQ(harness_count_files(tmp, true), 0);
    free(data);
}

static void test_range(void) {
    size_t len = 5000;
    char *data = pattern(len, 2), hash[P2P_HASH_HEX_LEN + 1], target[128], expect[128];
    put(data, len, hash, 201);
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    harness_reply r;

    const char *mid[] = {"Range: bytes=100-199", NULL};
    harness_request_headers(B.client, B.url, "GET", target, mid, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 206, NULL);
    ASSERT_EQ(r.body_len, 100);
    ASSERT_MEM_EQ(r.body, data + 100, 100);
    snprintf(expect, sizeof(expect), "bytes 100-199/%zu", len);
    ASSERT_STR_EQ(r.content_range, expect);
    harness_reply_cleanup(&r);

    const char *from[] = {"Range: bytes=4990-", NULL};
    harness_request_headers(B.client, B.url, "GET", target, from, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 206, NULL);
    ASSERT_EQ(r.body_len, 10);
    ASSERT_MEM_EQ(r.body, data + 4990, 10);
    harness_reply_cleanup(&r);

    const char *suffix[] = {"Range: bytes=-7", NULL};
    harness_request_headers(B.client, B.url, "GET", target, suffix, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 206, NULL);
    ASSERT_EQ(r.body_len, 7);
    ASSERT_MEM_EQ(r.body, data + len - 7, 7);
    harness_reply_cleanup(&r);

    const char *past[] = {"Range: bytes=5000-", NULL};
    harness_request_headers(B.client, B.url, "GET", target, past, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 416, NULL);
    harness_reply_cleanup(&r);
    free(data);
}

static void test_absent_blob(void) {
    char hash[P2P_HASH_HEX_LEN + 1], target[128];
    ASSERT_OK(p2p_hash_bytes_hex("absent", 6, hash, NULL));
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    long long length;
    ASSERT_EQ(head(hash, &length), 404);
    harness_reply r;
    harness_get(B.client, B.url, target, 0, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    harness_request(B.client, B.url, "DELETE", target, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
}

static void test_largest_blob(void) {
    char *data = pattern(MAX_BLOB, 3), hash[P2P_HASH_HEX_LEN + 1];
    put(data, MAX_BLOB, hash, 201); /* exactly the limit is allowed */
    harness_reply r;
    char *over = pattern(MAX_BLOB + 1, 4);
    fx_blob_put(&B, NULL, over, MAX_BLOB + 1, hash, &r);
    HARNESS_EXPECT(&r, 413, "too_large");
    harness_reply_cleanup(&r);
    long long length;
    ASSERT_EQ(head(hash, &length), 404);
    free(data);
    free(over);
}

static void delete_blob(const char *hash, long status) {
    char target[128];
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    harness_reply r;
    harness_request(B.client, B.url, "DELETE", target, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, status, status == 409 ? "conflict" : NULL);
    harness_reply_cleanup(&r);
}

static json_t *analyze_args(const char *hash, size_t size, long long arg2) {
    return json_pack("{s:{s:s, s:I}, s:I}", "video_handle", "hash", hash, "size", (json_int_t)size,
                     "arg2", (json_int_t)arg2);
}

static void test_delete_refused_while_referenced(void) {
    char *video = pattern(2000, 5), vh[P2P_HASH_HEX_LEN + 1], path[HARNESS_PATH_MAX + 80];
    put(video, 2000, vh, 201);
    blob_path(vh, path, sizeof(path));

    /* Two calls use the same video. */
    char id1[P2P_HASH_HEX_LEN + 1], id2[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    json_t *a1 = analyze_args(vh, 2000, 1), *a2 = analyze_args(vh, 2000, 2);
    fx_push(&B, NULL, FX_ANALYZE, a1, true, id1, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    fx_push(&B, NULL, FX_ANALYZE, a2, false, id2, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    delete_blob(vh, 409);

    /* The worker produces two output files; they must be uploaded first. */
    fx_claim(&B, NULL, FX_ANALYZE, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), id1);
    char token[128];
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    char *o1 = pattern(100, 6), *o2 = pattern(200, 7);
    char h1[P2P_HASH_HEX_LEN + 1], h2[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex(o1, 100, h1, NULL));
    ASSERT_OK(p2p_hash_bytes_hex(o2, 200, h2, NULL));
    json_t *outputs =
        json_pack("{s:{s:s, s:i}, s:{s:s, s:i}, s:i}", "results_file1", "hash", h1, "size", 100,
                  "results_file2", "hash", h2, "size", 200, "res_var", 42);
    fx_worker_push(&B, NULL, FX_ANALYZE, id1, token, json_pack("{s:O}", "outputs", outputs), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    put(o1, 100, h1, 201);
    put(o2, 200, h2, 201);
    fx_worker_push(&B, NULL, FX_ANALYZE, id1, token, json_pack("{s:O}", "outputs", outputs), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    harness_reply_cleanup(&r);
    delete_blob(h1, 409); /* an output is a reference too */

    /* Deleting the first call frees its outputs, not the shared video. */
    fx_on_id(&B, NULL, FX_ANALYZE, "delete", id1, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(harness_reply_int(&r, "blobs_removed", -1), 2);
    harness_reply_cleanup(&r);
    long long length;
    ASSERT_EQ(head(h1, &length), 404);
    ASSERT_EQ(head(h2, &length), 404);
    ASSERT_EQ(head(vh, &length), 200);
    delete_blob(vh, 409);

    /* Deleting the last call that used it removes the video as well. */
    fx_on_id(&B, NULL, FX_ANALYZE, "delete", id2, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(harness_reply_int(&r, "blobs_removed", -1), 1);
    harness_reply_cleanup(&r);
    ASSERT_EQ(head(vh, &length), 404);
    ASSERT_EQ(access(path, F_OK), -1);

    /* A blob no call refers to can be deleted by hand, once. */
    put(video, 2000, vh, 201);
    delete_blob(vh, 204);
    delete_blob(vh, 404);
    ASSERT_EQ(access(path, F_OK), -1);
    json_decref(outputs);
    json_decref(a1);
    json_decref(a2);
    free(video);
    free(o1);
    free(o2);
}

int main(void) {
    broker_config cfg = {.max_blob_size = MAX_BLOB};
    broker_init(&B, "broker_blob_routes", &cfg);
    broker_start(&B);
    TEST_RUN(test_put_head_get);
    TEST_RUN(test_range);
    TEST_RUN(test_absent_blob);
    TEST_RUN(test_largest_blob);
    TEST_RUN(test_delete_refused_while_referenced);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
