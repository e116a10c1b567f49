/* The HTTP client against a real HTTP server on 127.0.0.1 (see
 * http_test_server.h): streaming, Range resume, retries, timeouts, signing,
 * TLS verification, error bodies. */
#include "http_test_server.h"
/* ---------------- helpers ---------------- */

static void url_of(char *buf, size_t n, const char *path) {
    snprintf(buf, n, "http://127.0.0.1:%d%s", srv.port, path);
}

static p2p_http_client *new_client(int retries, const unsigned char *secret, size_t secret_len) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.max_retries = retries;
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 100;
    o.secret = secret;
    o.secret_len = secret_len;
    p2p_error err;
    p2p_http_client *c = p2p_http_client_new(&o, &err);
    ASSERT_TRUE(c != NULL);
    return c;
}

static int get(p2p_http_client *c, const char *path, bool idempotent, p2p_http_reply *resp,
               p2p_error *err) {
    char u[256];
    url_of(u, sizeof(u), path);
    p2p_http_call req = {.method = "GET", .url = u, .idempotent = idempotent};
    return p2p_http_client_request(c, &req, resp, err);
}

typedef struct progress_log {
    int calls;
    int64_t last_done, last_total;
    int cancel_after; /* > 0: cancel on that call */
} progress_log;

static int on_progress(void *arg, int64_t done, int64_t total) {
    progress_log *p = arg;
    p->calls++;
    ASSERT_GE(done, p->last_done); /* never goes backwards within one attempt here */
    p->last_done = done;
    p->last_total = total;
    return p->cancel_after > 0 && p->calls >= p->cancel_after;
}

/* ---------------- tests ---------------- */

static void test_streaming_upload_constant_memory(void) {
    char src[512], u[256];
    snprintf(src, sizeof(src), "%s/http_upload_src.bin", tmp_dir());
    make_file(src, BIG_FILE_SIZE, 42);
    p2p_http_client *c = new_client(0, NULL, 0);
    url_of(u, sizeof(u), "/upload");
    progress_log prog = {0};
    p2p_http_call req = {.method = "PUT",
                         .url = u,
                         .upload_path = src,
                         .idempotent = true,
                         .progress = on_progress,
                         .progress_arg = &prog};
    p2p_http_reply resp;
    p2p_error err;
    reset_peak_rss();
    long rss0 = status_kb("VmRSS");
    double t0 = now_s();
    ASSERT_OK(p2p_http_client_request(c, &req, &resp, &err));
    double secs = now_s() - t0;
    long peak = status_kb("VmHWM");
    ASSERT_EQ(resp.status, 200);
    json_t *doc = NULL;
    ASSERT_OK(p2p_http_reply_json(&resp, &doc, &err));
    char want[65];
    sha256_file(src, want);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "bytes")), BIG_FILE_SIZE);
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "sha256")), want);
    ASSERT_EQ(prog.last_done, BIG_FILE_SIZE);
    ASSERT_EQ(prog.last_total, BIG_FILE_SIZE);
    fprintf(stderr, "   64 MiB upload in %.2f s, RSS %ld kB -> peak %ld kB (+%ld kB)\n", secs, rss0,
            peak, peak - rss0);
    ASSERT_LT(peak - rss0, 16 * 1024); /* far below the 64 MiB that went through */
    json_decref(doc);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    unlink(src);
}

static void test_streaming_download_constant_memory(void) {
    char dst[512], u[256];
    snprintf(dst, sizeof(dst), "%s/http_download.bin", tmp_dir());
    make_file(srv.file_path, BIG_FILE_SIZE, 7);
    unlink(dst);
    p2p_http_client *c = new_client(0, NULL, 0);
    url_of(u, sizeof(u), "/file");
    progress_log prog = {0};
    p2p_http_call req = {.method = "GET",
                         .url = u,
                         .download_path = dst,
                         .idempotent = true,
                         .progress = on_progress,
                         .progress_arg = &prog};
    p2p_http_reply resp;
    p2p_error err;
    reset_peak_rss();
    long rss0 = status_kb("VmRSS");
    double t0 = now_s();
    ASSERT_OK(p2p_http_client_request(c, &req, &resp, &err));
    double secs = now_s() - t0;
    long peak = status_kb("VmHWM");
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.file_size, BIG_FILE_SIZE);
    ASSERT_EQ(resp.body_len, 0);
    ASSERT_STR_EQ(resp.body, "");
    ASSERT_EQ(prog.last_done, BIG_FILE_SIZE);
    ASSERT_EQ(prog.last_total, BIG_FILE_SIZE);
    expect_same_file(srv.file_path, dst);
    fprintf(stderr, "   64 MiB download in %.2f s, RSS %ld kB -> peak %ld kB (+%ld kB)\n", secs,
            rss0, peak, peak - rss0);
    ASSERT_LT(peak - rss0, 16 * 1024);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    unlink(dst);
}

static void test_json_echo_methods_and_headers(void) {
    p2p_http_client *c = new_client(0, NULL, 0);
    char u[256];
    url_of(u, sizeof(u), "/echo?a=1&b=x%20y");
    const char *headers[] = {"X-Extra: hello", NULL};
    const char *body = "{\"n\":5}";
    p2p_http_call req = {.method = "POST",
                         .url = u,
                         .body = body,
                         .body_len = strlen(body),
                         .content_type = "application/json",
                         .headers = headers};
    p2p_http_reply resp;
    p2p_error err;
    ASSERT_OK(p2p_http_client_request(c, &req, &resp, &err));
    ASSERT_OK(p2p_http_reply_check(&resp, &err));
    ASSERT_STR_EQ(resp.content_type, "application/json");
    json_t *doc = NULL;
    ASSERT_OK(p2p_http_reply_json(&resp, &doc, &err));
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "method")), "POST");
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "uri")), "/echo?a=1&b=x%20y");
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "body")), body);
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "content_type")), "application/json");
    ASSERT_STR_EQ(json_string_value(json_object_get(doc, "extra")), "hello");
    ASSERT_STR_CONTAINS(json_string_value(json_object_get(doc, "user_agent")), "p2prpc/");
    json_decref(doc);
    p2p_http_reply_cleanup(&resp);
    const char *methods[] = {"PUT", "DELETE", "GET", "HEAD", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        p2p_http_call r2 = {.method = methods[i],
                            .url = u,
                            .body = i == 0 ? "put" : NULL,
                            .body_len = i == 0 ? 3 : 0};
        ASSERT_OK(p2p_http_client_request(c, &r2, &resp, &err));
        ASSERT_EQ(resp.status, 200);
        if (strcmp(methods[i], "HEAD") == 0) {
            ASSERT_EQ(resp.body_len, 0);
        } else {
            ASSERT_OK(p2p_http_reply_json(&resp, &doc, &err));
            ASSERT_STR_EQ(json_string_value(json_object_get(doc, "method")), methods[i]);
            ASSERT_STR_EQ(json_string_value(json_object_get(doc, "body")), i == 0 ? "put" : "");
            json_decref(doc);
        }
        p2p_http_reply_cleanup(&resp);
    }
    p2p_http_client_free(c);
}

/* Keep-alive: sequential requests reuse one connection through the pool. */
static void test_connection_reuse_and_latency(void) {
    for (int pool = 8; pool >= 0; pool -= 8) {
        p2p_http_client_options o;
        p2p_http_client_options_init(&o);
        o.pool_size = pool;
        p2p_error err;
        p2p_http_client *c = p2p_http_client_new(&o, &err);
        ASSERT_TRUE(c != NULL);
        int before = atomic_load(&srv.connections), n = 200;
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            p2p_http_reply resp;
            ASSERT_OK(get(c, "/echo", true, &resp, &err));
            ASSERT_EQ(resp.status, 200);
            p2p_http_reply_cleanup(&resp);
        }
        double us = (now_s() - t0) * 1e6 / n;
        int opened = atomic_load(&srv.connections) - before;
        fprintf(stderr, "   pool %d: %d requests, %d connections, %.0f us per request\n", pool, n,
                opened, us);
        ASSERT_EQ(opened, pool > 0 ? 1 : n);
        p2p_http_client_free(c);
    }
}

static void test_retries_only_when_idempotent(void) {
    p2p_http_client *c = new_client(3, NULL, 0);
    p2p_http_reply resp;
    p2p_error err;
    atomic_store(&srv.hits, 0);
    atomic_store(&srv.flaky_failures, 2);
    ASSERT_OK(get(c, "/flaky", true, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.attempts, 3);
    ASSERT_EQ(atomic_load(&srv.hits), 3);
    p2p_http_reply_cleanup(&resp);

    /* An idempotent upload is sent again whole. */
    char src[512], u[256];
    snprintf(src, sizeof(src), "%s/http_small.bin", tmp_dir());
    make_file(src, 100000, 1);
    url_of(u, sizeof(u), "/flaky");
    p2p_http_call put = {.method = "PUT", .url = u, .upload_path = src, .idempotent = true};
    atomic_store(&srv.hits, 0);
    atomic_store(&srv.body_bytes, 0);
    ASSERT_OK(p2p_http_client_request(c, &put, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.attempts, 3);
    ASSERT_EQ(atomic_load(&srv.body_bytes), 3 * 100000);
    p2p_http_reply_cleanup(&resp);
    unlink(src);

    /* A POST that is not idempotent reached the server: it is never sent again. */
    atomic_store(&srv.hits, 0);
    p2p_http_call post = {.method = "POST", .url = u, .body = "{}", .body_len = 2};
    ASSERT_OK(p2p_http_client_request(c, &post, &resp, &err));
    ASSERT_EQ(resp.status, 503);
    ASSERT_EQ(resp.attempts, 1);
    ASSERT_EQ(atomic_load(&srv.hits), 1);
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_EUNAVAIL);
    ASSERT_STR_CONTAINS(err.msg, "try again");
    p2p_http_reply_cleanup(&resp);

    /* Retries run out: the last 503 is what comes back, after bounded backoff. */
    atomic_store(&srv.hits, 0);
    atomic_store(&srv.flaky_failures, 100);
    double t0 = now_s();
    ASSERT_OK(get(c, "/flaky", true, &resp, &err));
    long ms = elapsed_ms(t0);
    ASSERT_EQ(resp.status, 503);
    ASSERT_EQ(resp.attempts, 4);
    ASSERT_EQ(atomic_load(&srv.hits), 4);
    ASSERT_LT(ms, 20 + 40 + 80 + 1000); /* backoff caps 20, 40, 80 ms */
    p2p_http_reply_cleanup(&resp);
    atomic_store(&srv.flaky_failures, 0);
    p2p_http_client_free(c);
}

static void test_backoff_full_jitter(void) {
    for (int attempt = 0; attempt < 8; attempt++) {
        long cap = 100L << attempt > 1000 ? 1000 : 100L << attempt, max_seen = 0;
        double sum = 0;
        for (int i = 0; i < 400; i++) {
            long d = p2p_http_backoff_ms(100, 1000, attempt);
            ASSERT_GE(d, 0);
            ASSERT_LE(d, cap);
            max_seen = d > max_seen ? d : max_seen;
            sum += (double)d;
        }
        /* Uniform on [0, cap]: the chance of failing either bound is < 1e-30. */
        ASSERT_GT(max_seen, cap * 3 / 4);
        ASSERT_GT((long)(sum / 400), cap * 3 / 10);
        ASSERT_LT((long)(sum / 400), cap * 7 / 10);
    }
    ASSERT_EQ(p2p_http_backoff_ms(0, 0, 5), 0);
    ASSERT_LE(p2p_http_backoff_ms(1000, 5000, 60), 5000);
}

static void test_timeouts(void) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.timeout_ms = 300;
    o.max_retries = 1;
    o.backoff_base_ms = o.backoff_max_ms = 10;
    p2p_error err;
    p2p_http_client *c = p2p_http_client_new(&o, &err);
    ASSERT_TRUE(c != NULL);
    p2p_http_reply resp;
    double t0 = now_s();
    ASSERT_EQ(get(c, "/slow?ms=1500", false, &resp, &err), P2P_ETIMEDOUT);
    ASSERT_LT(elapsed_ms(t0), 1200);
    ASSERT_EQ(resp.attempts, 1); /* not idempotent, and its request was sent */
    ASSERT_STR_CONTAINS(err.msg, "/slow");
    p2p_http_reply_cleanup(&resp);
    t0 = now_s();
    ASSERT_EQ(get(c, "/slow?ms=1000", true, &resp, &err), P2P_ETIMEDOUT);
    ASSERT_EQ(resp.attempts, 2); /* idempotent: one retry */
    ASSERT_LT(elapsed_ms(t0), 1500);
    p2p_http_reply_cleanup(&resp);
    char u[256];
    url_of(u, sizeof(u), "/slow?ms=500");
    p2p_http_call req = {.method = "GET", .url = u, .timeout_ms = 3000};
    ASSERT_OK(p2p_http_client_request(c, &req, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
}

static void test_connection_refused(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ASSERT_EQ(getsockname(s, (struct sockaddr *)&addr, &len), 0);
    close(s); /* nothing listens there now */
    char u[256];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", ntohs(addr.sin_port));
    p2p_http_client *c = new_client(0, NULL, 0);
    p2p_http_call req = {.method = "GET", .url = u, .idempotent = true};
    p2p_http_reply resp;
    p2p_error err;
    double t0 = now_s();
    ASSERT_EQ(p2p_http_client_request(c, &req, &resp, &err), P2P_EUNAVAIL);
    ASSERT_LT(elapsed_ms(t0), 500);
    ASSERT_EQ(resp.status, 0);
    ASSERT_STR_CONTAINS(err.msg, u);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    /* Nothing reached a server, so even a POST may go again. */
    c = new_client(2, NULL, 0);
    p2p_http_call post = {.method = "POST", .url = u, .body = "x", .body_len = 1};
    ASSERT_EQ(p2p_http_client_request(c, &post, &resp, &err), P2P_EUNAVAIL);
    ASSERT_EQ(resp.attempts, 3);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
}

static int download(p2p_http_client *c, const char *path, const char *dst, bool resume,
                    p2p_http_reply *resp, p2p_error *err) {
    char u[256];
    url_of(u, sizeof(u), path);
    p2p_http_call req = {
        .method = "GET", .url = u, .download_path = dst, .resume = resume, .idempotent = true};
    return p2p_http_client_request(c, &req, resp, err);
}

/* Copies the first `n` bytes of the served file to `dst`, then `extra` junk. */
static void make_partial(const char *dst, int64_t n, int64_t extra) {
    char *buf = malloc((size_t)(n + extra));
    int fd = open(srv.file_path, O_RDONLY | O_CLOEXEC);
    ASSERT_EQ(pread(fd, buf, (size_t)n, 0), (ssize_t)n);
    close(fd);
    memset(buf + n, 'J', (size_t)extra);
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_EQ(write(fd, buf, (size_t)(n + extra)), (ssize_t)(n + extra));
    close(fd);
    free(buf);
}

static void test_range_resume(void) {
    const int64_t size = (1 << 20) + 123;
    char dst[512];
    snprintf(dst, sizeof(dst), "%s/http_partial.bin", tmp_dir());
    make_file(srv.file_path, size, 99);
    p2p_http_client *c = new_client(0, NULL, 0);
    p2p_http_reply resp;
    p2p_error err;

    make_partial(dst, 300000, 0); /* 206: only the rest travels */
    ASSERT_OK(download(c, "/file", dst, true, &resp, &err));
    ASSERT_EQ(resp.status, 206);
    ASSERT_TRUE(resp.resumed);
    ASSERT_STR_EQ(resp.content_range, "bytes 300000-1048698/1048699");
    ASSERT_EQ(resp.file_size, size);
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);

    /* 416 for a file already complete: success, nothing changes. */
    ASSERT_OK(download(c, "/file", dst, true, &resp, &err));
    ASSERT_EQ(resp.status, 416);
    ASSERT_TRUE(resp.already_complete);
    ASSERT_OK(p2p_http_reply_check(&resp, &err));
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);

    /* 200 to a ranged request means the server starts over: so does the file. */
    make_partial(dst, 5000, 0);
    ASSERT_OK(download(c, "/file?ignore_range=1", dst, true, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_FALSE(resp.resumed);
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);

    /* A local file longer than the object is no prefix of it: start over. */
    make_partial(dst, size, 10);
    ASSERT_OK(download(c, "/file", dst, true, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.attempts, 2);
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);

    /* Without resume, an old file is replaced whole. */
    make_partial(dst, 5000, 0);
    ASSERT_OK(download(c, "/file", dst, false, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    unlink(dst);
}

/* A download cut in the middle is retried, and the retry asks only for the
 * missing bytes. */
static void test_interrupted_download_resumes(void) {
    const int64_t size = 3 << 20;
    char dst[512];
    snprintf(dst, sizeof(dst), "%s/http_cut.bin", tmp_dir());
    make_file(srv.file_path, size, 5);
    unlink(dst);
    p2p_http_client *c = new_client(2, NULL, 0);
    p2p_http_reply resp;
    p2p_error err;
    atomic_store(&srv.cut_after, 1000000);
    ASSERT_OK(download(c, "/file", dst, true, &resp, &err));
    ASSERT_EQ(resp.attempts, 2);
    ASSERT_EQ(resp.status, 206);
    ASSERT_TRUE(resp.resumed);
    ASSERT_STR_CONTAINS(resp.content_range, "bytes 1000000-");
    expect_same_file(srv.file_path, dst);
    p2p_http_reply_cleanup(&resp);
    /* Without retries the cut is an error, and the error body never hits the file. */
    p2p_http_client_free(c);
    c = new_client(0, NULL, 0);
    atomic_store(&srv.cut_after, 1000);
    ASSERT_EQ(download(c, "/file", dst, false, &resp, &err), P2P_EUNAVAIL);
    p2p_http_reply_cleanup(&resp);
    ASSERT_OK(download(c, "/nothing-here", dst, true, &resp, &err));
    ASSERT_EQ(resp.status, 404);
    ASSERT_EQ(resp.file_size, 1000); /* the partial file was left alone */
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "no such route");
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    unlink(dst);
}

static void test_signed_requests(void) {
    p2p_http_client *good = new_client(3, SECRET, SECRET_LEN);
    p2p_http_client *none = new_client(0, NULL, 0);
    p2p_http_client *wrong = new_client(0, (const unsigned char *)"wrong", 5);
    p2p_http_reply resp;
    p2p_error err;
    ASSERT_OK(get(good, "/signed?x=1", true, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    p2p_http_reply_cleanup(&resp);
    /* The signed target is what curl sends, dot segments and escapes included. */
    ASSERT_OK(get(good, "/a/../signed?q=a%20b&r=%2F&s=%C3%A9", false, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_STR_CONTAINS(resp.body, "/signed?q=a%20b&r=%2F&s=%C3%A9");
    p2p_http_reply_cleanup(&resp);

    ASSERT_OK(get(none, "/signed", true, &resp, &err));
    ASSERT_EQ(resp.status, 401);
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, "missing X-P2P-Time header");
    p2p_http_reply_cleanup(&resp);
    ASSERT_OK(get(wrong, "/signed", true, &resp, &err));
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, "bad signature");
    p2p_http_reply_cleanup(&resp);

    /* Each retry carries a fresh nonce, or the server would see a replay. */
    atomic_store(&srv.hits, 0);
    atomic_store(&srv.flaky_failures, 2);
    ASSERT_OK(get(good, "/signed?flaky=1", true, &resp, &err));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.attempts, 3);
    p2p_http_reply_cleanup(&resp);
    atomic_store(&srv.flaky_failures, 0);
    p2p_http_client_free(good);
    p2p_http_client_free(none);
    p2p_http_client_free(wrong);
}

static void test_body_limit_and_errors(void) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.max_body = 1 << 20;
    p2p_error err;
    p2p_http_client *c = p2p_http_client_new(&o, &err);
    ASSERT_TRUE(c != NULL);
    p2p_http_reply resp;
    ASSERT_OK(get(c, "/big?n=1048576", false, &resp, &err));
    ASSERT_EQ(resp.body_len, 1 << 20);
    p2p_http_reply_cleanup(&resp);
    ASSERT_EQ(get(c, "/big?n=1048577", true, &resp, &err), P2P_ETOOBIG);
    ASSERT_EQ(resp.attempts, 1);
    p2p_http_reply_cleanup(&resp);
    char dst[512];
    snprintf(dst, sizeof(dst), "%s/http_big.bin", tmp_dir());
    ASSERT_OK(download(c, "/big?n=3000000", dst, false, &resp, &err));
    ASSERT_EQ(resp.file_size, 3000000);
    p2p_http_reply_cleanup(&resp);
    unlink(dst);

    ASSERT_OK(get(c, "/status?code=409&name=terminated", false, &resp, &err));
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_ETERMINATED);
    ASSERT_STR_EQ(err.msg, "HTTP 409: the server says no");
    p2p_http_reply_cleanup(&resp);
    ASSERT_OK(get(c, "/status?code=500", false, &resp, &err));
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_EINTERNAL);
    ASSERT_STR_EQ(err.msg, "HTTP 500: plain failure");
    json_t *doc = NULL;
    ASSERT_EQ(p2p_http_reply_json(&resp, &doc, &err), P2P_EPROTO);
    p2p_http_reply_cleanup(&resp);
    ASSERT_OK(get(c, "/status?code=418&name=nonsense", false, &resp, &err));
    ASSERT_EQ(p2p_http_reply_check(&resp, &err), P2P_EINVAL);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
}

static void test_progress_cancel(void) {
    make_file(srv.file_path, 8 << 20, 3);
    char dst[512], u[256];
    snprintf(dst, sizeof(dst), "%s/http_cancel.bin", tmp_dir());
    url_of(u, sizeof(u), "/file");
    p2p_http_client *c = new_client(3, NULL, 0);
    progress_log prog = {.cancel_after = 2};
    p2p_http_call req = {.method = "GET",
                         .url = u,
                         .download_path = dst,
                         .idempotent = true,
                         .progress = on_progress,
                         .progress_arg = &prog};
    p2p_http_reply resp;
    p2p_error err;
    ASSERT_EQ(p2p_http_client_request(c, &req, &resp, &err), P2P_ECANCELED);
    ASSERT_EQ(resp.attempts, 1);
    ASSERT_STR_CONTAINS(err.msg, "cancelled by the progress callback");
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    unlink(dst);
}

static void test_bad_requests(void) {
    p2p_http_client *c = new_client(0, NULL, 0);
    p2p_http_reply resp;
    p2p_error err;
    char u[256];
    url_of(u, sizeof(u), "/echo");
    p2p_http_call bad[] = {
        {.method = NULL, .url = u},
        {.method = "GET", .url = NULL},
        {.method = "GET", .url = "ftp://127.0.0.1/x"},
        {.method = "GET", .url = "http://127.0.0.1/a b"},
        {.method = "GET", .url = "not a url"},
        {.method = "PUT", .url = u, .body = "x", .body_len = 1, .upload_path = "/etc/hostname"},
        {.method = "GET", .url = u, .resume = true},
        {.method = "PUT", .url = u, .upload_path = "/nonexistent/file"},
        {.method = "PUT", .url = u, .upload_path = "/"},
    };
    int want[] = {P2P_EINVAL, P2P_EINVAL, P2P_EINVAL, P2P_EINVAL, P2P_EINVAL,
                  P2P_EINVAL, P2P_EINVAL, P2P_EIO,    P2P_EINVAL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ(p2p_http_client_request(c, &bad[i], &resp, &err), want[i]);
        ASSERT_EQ(err.code, want[i]);
        p2p_http_reply_cleanup(&resp);
    }
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.pool_size = 1000;
    ASSERT_TRUE(p2p_http_client_new(&o, &err) == NULL);
    ASSERT_EQ(err.code, P2P_EINVAL);
    p2p_http_client_free(c);
    p2p_http_client_free(NULL);
}

static int tls_get(const char *ca_file, bool insecure, const char *scheme, int port,
                   p2p_error *err) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.ca_file = ca_file;
    o.insecure = insecure;
    o.max_retries = 0;
    p2p_http_client *c = p2p_http_client_new(&o, err);
    ASSERT_TRUE(c != NULL);
    char u[256];
    snprintf(u, sizeof(u), "%s://127.0.0.1:%d/echo", scheme, port);
    p2p_http_call req = {.method = "GET", .url = u, .idempotent = true};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(c, &req, &resp, err);
    ASSERT_TRUE(rc != 0 || resp.status == 200);
    p2p_http_reply_cleanup(&resp);
    p2p_http_client_free(c);
    return rc;
}

static void test_tls_verification(void) {
    p2p_error err;
    /* Verification is on by default: a certificate nobody vouches for fails. */
    ASSERT_EQ(tls_get(NULL, false, "https", srv.tls_port, &err), P2P_EAUTH);
    ASSERT_OK(tls_get(srv.cert_path, false, "https", srv.tls_port, &err));
    ASSERT_OK(tls_get(NULL, true, "https", srv.tls_port, &err));
    ASSERT_EQ(tls_get("/nonexistent/ca.pem", false, "https", srv.tls_port, &err), P2P_EINVAL);
    /* https:// to a plain-HTTP port: the handshake fails. */
    ASSERT_EQ(tls_get(srv.cert_path, false, "https", srv.port, &err), P2P_EUNAVAIL);
    ASSERT_STR_CONTAINS(err.msg, "https://127.0.0.1:");
}

static void test_url_helpers(void) {
    char *u = NULL;
    p2p_error err;
    ASSERT_OK(p2p_http_url_join("http://127.0.0.1:8080/base/", "f/x", &u, &err));
    ASSERT_STR_EQ(u, "http://127.0.0.1:8080/base/f/x");
    free(u);
    ASSERT_OK(p2p_http_url_join("http://127.0.0.1:8080/base/", "/root?a=1", &u, &err));
    ASSERT_STR_EQ(u, "http://127.0.0.1:8080/root?a=1");
    ASSERT_OK(p2p_http_url_add_query(&u, "wait", "30", &err));
    ASSERT_OK(p2p_http_url_add_query(&u, "name", "a b&c=d/é", &err));
    /* curl may write hex digits in either case; both mean the same. */
    ASSERT_EQ(strcasecmp(u, "http://127.0.0.1:8080/root?a=1&wait=30&name=a%20b%26c%3Dd%2F%C3%A9"),
              0);
    free(u);
    ASSERT_EQ(p2p_http_url_join("not a url", "x", &u, &err), P2P_EINVAL);
    char *e = p2p_http_escape("a/b c");
    ASSERT_STR_EQ(e, "a%2Fb%20c");
    free(e);
}

#define THREADS 4
static p2p_http_client *shared_client;

static void *hammer(void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++) {
        p2p_http_reply resp;
        p2p_error err;
        ASSERT_OK(get(shared_client, "/signed?t=1", true, &resp, &err));
        ASSERT_EQ(resp.status, 200);
        p2p_http_reply_cleanup(&resp);
    }
    return NULL;
}

static void test_concurrent_requests(void) {
    shared_client = new_client(0, SECRET, SECRET_LEN);
    pthread_t t[THREADS];
    int before = atomic_load(&srv.connections);
    for (int i = 0; i < THREADS; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    /* The pool holds at most one idle handle per thread that ran at once. */
    ASSERT_LE(atomic_load(&srv.connections) - before, THREADS * 2);
    p2p_http_client_free(shared_client);
}

int main(void) {
    server_start();
    /* First, while the peak RSS is still low. */
    TEST_RUN(test_streaming_upload_constant_memory);
    TEST_RUN(test_streaming_download_constant_memory);
    TEST_RUN(test_json_echo_methods_and_headers);
    TEST_RUN(test_connection_reuse_and_latency);
    TEST_RUN(test_retries_only_when_idempotent);
    TEST_RUN(test_backoff_full_jitter);
    TEST_RUN(test_timeouts);
    TEST_RUN(test_connection_refused);
    TEST_RUN(test_range_resume);
    TEST_RUN(test_interrupted_download_resumes);
    TEST_RUN(test_signed_requests);
    TEST_RUN(test_body_limit_and_errors);
    TEST_RUN(test_progress_cancel);
    TEST_RUN(test_bad_requests);
    TEST_RUN(test_tls_verification);
    TEST_RUN(test_url_helpers);
    TEST_RUN(test_concurrent_requests);
    server_stop();
    return 0;
}
