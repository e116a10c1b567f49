/* The HTTP server wrapper and the HTTP client wrapper against each other on
 * 127.0.0.1:0, with request signing on: a 256 MiB streaming upload with peak
 * memory far below the file size, a Range resume, a 413, a 401 from a bad
 * signature, and a long-poll released by an event. */
#include "fsutil.h"
#include "hash.h"
#include "http_client.h"
#include "http_server.h"
#include "sign.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BIG_SIZE (256ull << 20)
#define SMALL_LIMIT 4096
/* Peak memory allowed while 256 MiB stream through client and server alike. */
#define PEAK_LIMIT_KB (48 * 1024)

static const unsigned char secret[] = "round-trip shared secret";
static char root[512], blob_dir[600], spool_dir[600];
static p2p_sign_verifier *verifier;
static p2p_http_server *server;
static char base_url[64];

/* ---- server side: a tiny blob store and a long-poll topic ---- */

static int authorize(void *ctx, const p2p_http_request *req, p2p_error *err) {
    (void)ctx;
    return p2p_sign_verify(verifier, p2p_http_request_method(req), p2p_http_request_target(req),
                           p2p_http_request_header(req, P2P_SIGN_HEADER_TIME),
                           p2p_http_request_header(req, P2P_SIGN_HEADER_NONCE),
                           p2p_http_request_header(req, P2P_SIGN_HEADER_SIGNATURE),
                           (int64_t)time(NULL), err);
}

static void put_blob(p2p_http_request *req, void *ctx) {
    (void)ctx;
    const char *hash = p2p_http_request_param(req, "hash");
    const char *got = p2p_http_request_body_sha256(req);
    if (!p2p_hash_hex_valid(hash)) {
        p2p_http_respond_error(req, 0, P2P_EINVAL, "bad hash");
        return;
    }
    if (got == NULL || strcmp(got, hash) != 0) {
        p2p_http_respond_error(req, 0, P2P_EHASH, "body hashes to %s", got ? got : "?");
        return;
    }
    char *tmp = NULL;
    p2p_error err;
    if (p2p_http_request_take_body_file(req, &tmp, &err) != 0) {
        p2p_http_respond_err(req, &err);
        return;
    }
    char *dest = p2p_fs_join(blob_dir, hash);
    int rc = dest && rename(tmp, dest) == 0 ? 0 : -1;
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    free(dest);
    if (rc != 0) {
        p2p_http_respond_error(req, 0, P2P_EIO, "cannot store blob");
        return;
    }
    json_t *body =
        json_pack("{s:s, s:I}", "hash", hash, "size", (json_int_t)p2p_http_request_body_size(req));
    p2p_http_respond_json(req, 201, body);
}

static void get_blob(p2p_http_request *req, void *ctx) {
    (void)ctx;
    const char *hash = p2p_http_request_param(req, "hash");
    if (!p2p_hash_hex_valid(hash)) {
        p2p_http_respond_error(req, 0, P2P_EINVAL, "bad hash");
        return;
    }
    char *path = p2p_fs_join(blob_dir, hash);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    if (fd < 0) {
        p2p_http_respond_error(req, 0, P2P_ENOTFOUND, "no blob %s", hash);
        return;
    }
    p2p_http_respond_file_range(req, fd, "application/octet-stream");
}

static void post_small(p2p_http_request *req, void *ctx) {
    (void)ctx;
    p2p_http_respond_json(req, 200,
                          json_pack("{s:I}", "size", (json_int_t)p2p_http_request_body_size(req)));
}

static void on_wake(p2p_http_request *req, void *ctx, p2p_http_wake why) {
    (void)ctx;
    if (why == P2P_HTTP_WAKE_NOTIFIED)
        p2p_http_respond_json(req, 200, json_pack("{s:s}", "event", "notified"));
    else
        p2p_http_respond_empty(req, 204);
}

static void get_wait(p2p_http_request *req, void *ctx) {
    (void)ctx;
    int64_t wait_ms = 0;
    p2p_error err;
    int rc = p2p_http_request_query_int(req, "wait_ms", 0, 60000, &wait_ms, &err);
    if (rc != 0 && rc != P2P_ENOTFOUND) {
        p2p_http_respond_err(req, &err);
        return;
    }
    if (p2p_http_request_park(req, p2p_http_request_param(req, "topic"), wait_ms, on_wake, NULL,
                              &err) != 0)
        p2p_http_respond_err(req, &err);
}

static void post_notify(p2p_http_request *req, void *ctx) {
    (void)ctx;
    size_t n = p2p_http_server_notify(server, p2p_http_request_param(req, "topic"));
    p2p_http_respond_json(req, 200, json_pack("{s:I}", "woken", (json_int_t)n));
}

static const p2p_http_route routes[] = {
    {"PUT", "/blobs/{hash}", put_blob, P2P_HTTP_SPOOL_TO_FILE | P2P_HTTP_HASH_BODY, BIG_SIZE + 1},
    {"GET", "/blobs/{hash}", get_blob, 0, 0},
    {"POST", "/small", post_small, 0, SMALL_LIMIT},
    {"GET", "/wait/{topic}", get_wait, 0, 0},
    {"POST", "/notify/{topic}", post_notify, 0, 0},
};

static void start_server(void) {
    p2p_error err;
    verifier = p2p_sign_verifier_new(secret, sizeof(secret) - 1, 60, &err);
    ASSERT_TRUE(verifier != NULL);
    p2p_http_server_options o = {0};
    o.host = "127.0.0.1";
    o.port = 0;
    o.routes = routes;
    o.n_routes = sizeof(routes) / sizeof(routes[0]);
    o.tmp_dir = spool_dir;
    o.authorize = authorize;
    ASSERT_OK(p2p_http_server_new(&o, &server, &err));
    ASSERT_OK(p2p_http_server_start(server, &err));
    ASSERT_GT(p2p_http_server_port(server), 0);
    snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u", p2p_http_server_port(server));
}

/* ---- client side helpers ---- */

static p2p_http_client *new_client(const unsigned char *key, size_t key_len) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.secret = key;
    o.secret_len = key_len;
    o.timeout_ms = 120000;
    p2p_error err;
    p2p_http_client *c = p2p_http_client_new(&o, &err);
    ASSERT_TRUE(c != NULL);
    return c;
}

static char *url_of(const char *path) {
    char *url = NULL;
    ASSERT_OK(p2p_http_url_join(base_url, path, &url, NULL));
    return url;
}

/* Writes `size` bytes of deterministic pseudo-random data, 1 MiB at a time. */
static void write_random_file(const char *path, uint64_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    static uint64_t chunk[(1 << 20) / 8];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint64_t done = 0; done < size; done += sizeof(chunk)) {
        for (size_t i = 0; i < sizeof(chunk) / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            chunk[i] = x;
        }
        ASSERT_EQ(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
    }
    ASSERT_EQ(close(fd), 0);
}

/* Peak resident memory since the last reset, in KiB (VmHWM). */
static long peak_rss_kb(void) {
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file("/proc/self/status", 1 << 16, &text, &len, NULL));
    const char *line = strstr(text, "VmHWM:");
    ASSERT_TRUE(line != NULL);
    long kb = strtol(line + 6, NULL, 10);
    free(text);
    return kb;
}

static void reset_peak_rss(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "5", 1), 1);
    close(fd);
}

/* ---- the tests ---- */

static char big_path[700], big_hash[P2P_HASH_HEX_LEN + 1];

static void test_streaming_upload_256mib(void) {
    snprintf(big_path, sizeof(big_path), "%s/big.bin", root);
    write_random_file(big_path, BIG_SIZE);
    ASSERT_OK(p2p_hash_file(big_path, big_hash, NULL));
    p2p_http_client *c = new_client(secret, sizeof(secret) - 1);
    char path[128];
    snprintf(path, sizeof(path), "/blobs/%s", big_hash);
    char *url = url_of(path);

    reset_peak_rss();
    long before = peak_rss_kb();
    p2p_http_call call = {.method = "PUT", .url = url, .upload_path = big_path, .idempotent = true};
    p2p_http_reply reply = {0};
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    long peak = peak_rss_kb();
    fprintf(stderr, "upload of %llu MiB: peak RSS %ld KiB (was %ld KiB before)\n", BIG_SIZE >> 20,
            peak, before);
    ASSERT_EQ(reply.status, 201);
    ASSERT_LT(peak, PEAK_LIMIT_KB);

    /* The stored blob is byte for byte the file. */
    char stored[P2P_HASH_HEX_LEN + 1];
    char *blob = p2p_fs_join(blob_dir, big_hash);
    ASSERT_OK(p2p_hash_file(blob, stored, NULL));
    ASSERT_STR_EQ(stored, big_hash);
    free(blob);
    p2p_http_reply_cleanup(&reply);

    /* A body that does not match its address is refused with 422. */
    snprintf(path, sizeof(path), "/blobs/%064d", 0);
    free(url);
    url = url_of(path);
    const char *small = "not the content of hash zero";
    p2p_http_call bad = {
        .method = "PUT", .url = url, .body = small, .body_len = strlen(small), .idempotent = true};
    ASSERT_OK(p2p_http_client_request(c, &bad, &reply, &err));
    ASSERT_EQ(reply.status, 422);
    ASSERT_EQ(p2p_http_reply_check(&reply, &err), P2P_EHASH);
    p2p_http_reply_cleanup(&reply);
    free(url);
    p2p_http_client_free(c);
}

static void test_range_resume(void) {
    char partial[700];
    snprintf(partial, sizeof(partial), "%s/partial.bin", root);
    /* A download that stopped after 100 MiB + 7 bytes. */
    uint64_t cut = (100ull << 20) + 7;
    char cmd[2200];
    snprintf(cmd, sizeof(cmd), "head -c %llu '%s' > '%s'", (unsigned long long)cut, big_path,
             partial);
    ASSERT_EQ(system(cmd), 0);

    p2p_http_client *c = new_client(secret, sizeof(secret) - 1);
    char path[128];
    snprintf(path, sizeof(path), "/blobs/%s", big_hash);
    char *url = url_of(path);
    reset_peak_rss();
    p2p_http_call call = {
        .method = "GET", .url = url, .download_path = partial, .resume = true, .idempotent = true};
    p2p_http_reply reply = {0};
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_EQ(reply.status, 206);
    ASSERT_TRUE(reply.resumed);
    ASSERT_EQ(reply.file_size, (int64_t)BIG_SIZE);
    ASSERT_LT(peak_rss_kb(), PEAK_LIMIT_KB);
    char got[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_file(partial, got, NULL));
    ASSERT_STR_EQ(got, big_hash);
    p2p_http_reply_cleanup(&reply);

    /* Resuming a complete file transfers nothing and says so. */
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_TRUE(reply.already_complete);
    ASSERT_OK(p2p_http_reply_check(&reply, &err));
    p2p_http_reply_cleanup(&reply);
    unlink(partial);
    free(url);
    p2p_http_client_free(c);
}

static void test_413_over_limit(void) {
    p2p_http_client *c = new_client(secret, sizeof(secret) - 1);
    char *url = url_of("/small");
    static char body[SMALL_LIMIT + 1];
    memset(body, 'x', sizeof(body));
    p2p_http_call call = {.method = "POST", .url = url, .body = body, .body_len = sizeof(body)};
    p2p_http_reply reply = {0};
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_EQ(reply.status, 413);
    ASSERT_EQ(p2p_http_reply_check(&reply, &err), P2P_ETOOBIG);
    ASSERT_STR_CONTAINS(reply.content_type, "application/json");
    p2p_http_reply_cleanup(&reply);
    /* At the limit it passes. */
    call.body_len = SMALL_LIMIT;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_EQ(reply.status, 200);
    p2p_http_reply_cleanup(&reply);
    free(url);
    p2p_http_client_free(c);
}

static void expect_401(p2p_http_client *c) {
    char *url = url_of("/small");
    p2p_http_call call = {.method = "POST", .url = url, .body = "{}", .body_len = 2};
    p2p_http_reply reply = {0};
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_EQ(reply.status, 401);
    ASSERT_EQ(p2p_http_reply_check(&reply, &err), P2P_EAUTH);
    json_t *body = NULL;
    ASSERT_OK(p2p_http_reply_json(&reply, &body, &err));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(body, "error"), "code")),
                  "unauthorized");
    json_decref(body);
    p2p_http_reply_cleanup(&reply);
    free(url);
}

static void test_401_bad_signature(void) {
    static const unsigned char wrong[] = "another secret";
    p2p_http_client *bad = new_client(wrong, sizeof(wrong) - 1);
    expect_401(bad);
    p2p_http_client_free(bad);
    p2p_http_client *unsigned_client = new_client(NULL, 0);
    expect_401(unsigned_client);
    p2p_http_client_free(unsigned_client);
}

typedef struct waiter {
    const char *path;
    long status;
    int64_t answered_ms;
} waiter;

static void *wait_thread(void *arg) {
    waiter *w = arg;
    p2p_http_client *c = new_client(secret, sizeof(secret) - 1);
    char *url = url_of(w->path);
    p2p_http_call call = {.method = "GET", .url = url, .idempotent = true};
    p2p_http_reply reply = {0};
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    w->answered_ms = p2p_http_now_ms();
    w->status = reply.status;
    p2p_http_reply_cleanup(&reply);
    free(url);
    p2p_http_client_free(c);
    return NULL;
}

static void test_long_poll_released_by_event(void) {
    waiter w = {.path = "/wait/jobs?wait_ms=20000"};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, wait_thread, &w), 0);
    /* Bounded wait for the request to be parked (at most 5 s). */
    for (int i = 0; i < 5000 && p2p_http_server_parked(server) == 0; i++)
        usleep(1000);
    ASSERT_EQ(p2p_http_server_parked(server), 1);

    p2p_http_client *c = new_client(secret, sizeof(secret) - 1);
    char *url = url_of("/notify/jobs");
    p2p_http_call call = {.method = "POST", .url = url};
    p2p_http_reply reply = {0};
    p2p_error err;
    int64_t notified = p2p_http_now_ms();
    ASSERT_OK(p2p_http_client_request(c, &call, &reply, &err));
    ASSERT_EQ(reply.status, 200);
    ASSERT_STR_CONTAINS(reply.body, "\"woken\":1");
    p2p_http_reply_cleanup(&reply);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(w.status, 200);
    fprintf(stderr, "long-poll answered %lld ms after the event\n",
            (long long)(w.answered_ms - notified));
    /* Released by the event, far before its 20 s timeout. */
    ASSERT_LT(w.answered_ms - notified, 5000);

    /* Without an event the park times out on its own. */
    waiter quiet = {.path = "/wait/other?wait_ms=200"};
    int64_t start = p2p_http_now_ms();
    wait_thread(&quiet);
    ASSERT_EQ(quiet.status, 204);
    ASSERT_GE(quiet.answered_ms - start, 190);
    ASSERT_EQ(p2p_http_server_parked(server), 0);
    free(url);
    p2p_http_client_free(c);
}

int main(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    ASSERT_OK(p2p_fs_mkdirs(base ? base : "/tmp", 0700, NULL));
    snprintf(root, sizeof(root), "%s/roundtrip.XXXXXX", base ? base : "/tmp");
    ASSERT_TRUE(mkdtemp(root) != NULL);
    snprintf(blob_dir, sizeof(blob_dir), "%s/blobs", root);
    snprintf(spool_dir, sizeof(spool_dir), "%s/spool", root);
    ASSERT_OK(p2p_fs_mkdirs(blob_dir, 0700, NULL));
    ASSERT_OK(p2p_fs_mkdirs(spool_dir, 0700, NULL));
    start_server();

    TEST_RUN(test_streaming_upload_256mib);
    TEST_RUN(test_range_resume);
    TEST_RUN(test_413_over_limit);
    TEST_RUN(test_401_bad_signature);
    TEST_RUN(test_long_poll_released_by_event);

    p2p_http_server_free(server);
    p2p_sign_verifier_free(verifier);
    /* Every spooled body was taken over or removed: no temp file is left. */
    char check[700];
    snprintf(check, sizeof(check), "test -z \"$(ls -A '%s')\"", spool_dir);
    ASSERT_EQ(system(check), 0);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}
