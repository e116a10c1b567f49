/* The HTTP server through a real libcurl client on 127.0.0.1: routing, JSON,
 * body limits, spooling, file ranges, async answers, authorization, TLS.
 * Long-poll has its own file, test_http_longpoll.c. */
#include "http_server.h"
#include "test.h"

#include "http_test_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <sys/socket.h>

static char tmp_dir[512], spool_dir[600], file_path[600], taken_path[600];
static atomic_int small_calls, blob_calls, auth_calls;
static char auth_seen[256];
static p2p_http_server *srv;

static void url_of(p2p_http_server *s, char *out, size_t n, const char *scheme, const char *path) {
    snprintf(out, n, "%s://127.0.0.1:%u%s", scheme, (unsigned)p2p_http_server_port(s), path);
}

static const char *url(const char *path) {
    static char buf[512];
    url_of(srv, buf, sizeof(buf), "http", path);
    return buf;
}

/* ---- handlers ---- */

static void h_health(p2p_http_request *req, void *ctx) {
    ASSERT_TRUE(ctx == &small_calls);
    p2p_http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void h_echo(p2p_http_request *req, void *ctx) {
    (void)ctx;
    int64_t wait = -1;
    p2p_error err;
    int rc = p2p_http_request_query_int(req, "wait", 0, 60, &wait, &err);
    if (rc == P2P_EINVAL) {
        p2p_http_respond_err(req, &err);
        return;
    }
    json_t *body = NULL;
    if (p2p_http_request_json(req, &body) != 0)
        return; /* answered with 400 */
    const char *q = p2p_http_request_query(req, "q");
    p2p_http_respond_json(
        req, 200,
        json_pack("{s:s,s:o,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:I,s:b}", "function",
                  p2p_http_request_param(req, "function"), "body", body, "target",
                  p2p_http_request_target(req), "path", p2p_http_request_path(req), "method",
                  p2p_http_request_method(req), "q", q, "flag", p2p_http_request_query(req, "flag"),
                  "none", p2p_http_request_query(req, "none"), "wait", (json_int_t)wait, "spooled",
                  p2p_http_request_body_fd(req) >= 0));
}

static void h_small(p2p_http_request *req, void *ctx) {
    (void)ctx;
    atomic_fetch_add(&small_calls, 1);
    p2p_http_respond_json(req, 200,
                          json_pack("{s:I}", "size", (json_int_t)p2p_http_request_body_size(req)));
}

static void h_blob(p2p_http_request *req, void *ctx) {
    (void)ctx;
    atomic_fetch_add(&blob_calls, 1);
    const char *path = p2p_http_request_body_path(req);
    struct stat st;
    bool on_disk = path != NULL && stat(path, &st) == 0;
    bool took = false;
    if (p2p_http_request_query(req, "take") != NULL) {
        char *taken = NULL;
        p2p_error err;
        ASSERT_OK(p2p_http_request_take_body_file(req, &taken, &err));
        ASSERT_EQ(rename(taken, taken_path), 0);
        free(taken);
        took = true;
    }
    const char *sha = p2p_http_request_body_sha256(req);
    p2p_http_respond_json(req, 200,
                          json_pack("{s:I,s:s?,s:b,s:b,s:b,s:s?}", "size",
                                    (json_int_t)p2p_http_request_body_size(req), "sha256", sha,
                                    "on_disk", on_disk, "in_memory",
                                    p2p_http_request_body(req, NULL) != NULL, "took", took, "hash",
                                    p2p_http_request_param(req, "hash")));
}

static void h_file(p2p_http_request *req, void *ctx) {
    (void)ctx;
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    p2p_http_respond_file_range(req, fd, "application/octet-stream");
}

static void h_custom(p2p_http_request *req, void *ctx) {
    (void)ctx;
    ASSERT_EQ(p2p_http_response_header(req, "X-Bad", "a\r\nInjected: 1"), P2P_EINVAL);
    ASSERT_EQ(p2p_http_response_header(req, "X Bad", "v"), P2P_EINVAL);
    ASSERT_EQ(p2p_http_response_header(req, "", "v"), P2P_EINVAL);
    ASSERT_OK(p2p_http_response_header(req, "X-Extra", "yes"));
    p2p_http_respond_bytes(req, 201, "hi\0there", 8, "text/plain");
}

static void h_empty(p2p_http_request *req, void *ctx) {
    (void)ctx;
    p2p_http_respond_empty(req, 204);
    /* A second answer is a bug: logged and dropped, the first one stands. */
    p2p_http_respond_empty(req, 500);
}

static void h_null(p2p_http_request *req, void *ctx) {
    (void)ctx;
    p2p_http_respond_json(req, 200, NULL); /* as if json_pack had failed */
}

static void h_fail(p2p_http_request *req, void *ctx) {
    (void)ctx;
    p2p_error err;
    p2p_error_set(&err, P2P_EHASH, "content is not %s", "abc");
    p2p_http_respond_err(req, &err);
}

static void *answer_later(void *arg) {
    usleep(30000);
    p2p_http_respond_json(arg, 202, json_pack("{s:s}", "from", "another thread"));
    return NULL;
}

static void h_async(p2p_http_request *req, void *ctx) {
    (void)ctx;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, answer_later, req), 0);
    pthread_detach(t);
}

static const p2p_http_route routes[] = {
    {"GET", "/health", h_health, P2P_HTTP_PUBLIC, 0},
    {"POST", "/api/v1/{function}/echo", h_echo, 0, 0},
    {"POST", "/small", h_small, 0, 1024},
    {"PUT", "/blobs/{hash}", h_blob, P2P_HTTP_SPOOL_TO_FILE | P2P_HTTP_HASH_BODY, 64 << 20},
    {"POST", "/hash", h_blob, P2P_HTTP_HASH_BODY, 16 << 20},
    {"GET", "/file", h_file, 0, 0},
    {"HEAD", "/file", h_file, 0, 0},
    {"GET", "/custom", h_custom, 0, 0},
    {"DELETE", "/empty", h_empty, 0, 0},
    {"GET", "/fail", h_fail, 0, 0},
    {"GET", "/null", h_null, 0, 0},
    {"GET", "/async", h_async, 0, 0},
};

static p2p_http_server *start(p2p_http_server_options *o) {
    o->routes = routes;
    o->n_routes = sizeof(routes) / sizeof(routes[0]);
    o->handler_ctx = &small_calls;
    o->tmp_dir = spool_dir;
    o->spool_threshold = o->spool_threshold ? o->spool_threshold : 64 * 1024;
    o->max_discard = 256 * 1024;
    p2p_http_server *s = NULL;
    p2p_error err = {0};
    int rc = p2p_http_server_new(o, &s, &err);
    if (rc == 0)
        rc = p2p_http_server_start(s, &err);
    if (rc != 0)
        TEST_FAIL_("server start failed: %d %s", rc, err.msg);
    ASSERT_GT(p2p_http_server_port(s), 0);
    return s;
}

static char *pattern_bytes(size_t n) {
    char *b = malloc(n);
    ASSERT_TRUE(b != NULL);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (char)(x >> 16);
    }
    return b;
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char d[32];
    unsigned int n = 0;
    ASSERT_EQ(EVP_Digest(data, len, d, &n, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- tests ---- */

static void test_routes_404_405_keepalive(void) {
    http_resp r;
    http_do(&(http_req){.url = url("/health")}, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"ok\":true}");
    http_resp_cleanup(&r);

    http_do(&(http_req){.url = url("/nowhere?x=1")}, &r);
    assert_json_error(&r, 404, "not_found");
    ASSERT_STR_CONTAINS(r.body, "/nowhere");
    http_resp_cleanup(&r);

    http_do(&(http_req){.method = "DELETE", .url = url("/health")}, &r);
    assert_json_error(&r, 405, "invalid");
    ASSERT_STR_EQ(http_header(&r, "Allow"), "GET");
    http_resp_cleanup(&r);

    http_do(&(http_req){.method = "PATCH", .url = url("/file")}, &r);
    assert_json_error(&r, 405, "invalid");
    ASSERT_STR_EQ(http_header(&r, "Allow"), "GET, HEAD");
    http_resp_cleanup(&r);

    /* A 404 to a request without a body keeps the connection alive. */
    CURL *c = curl_easy_init();
    http_do(&(http_req){.url = url("/nowhere"), .reuse = c}, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_EQ(r.new_connects, 1);
    http_resp_cleanup(&r);
    http_do(&(http_req){.url = url("/health"), .reuse = c}, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.new_connects, 0);
    http_resp_cleanup(&r);
    curl_easy_cleanup(c);
}

static void test_json_echo_params_and_query(void) {
    const char *body = "{\"a\":[1,2,{\"b\":null}],\"s\":\"\\u00e9t\\u00e9\"}";
    http_resp r;
    http_do(&(http_req){.method = "POST",
                        .url = url("/api/v1/p2prpc_f%31/echo?q=x%20y&flag&wait=30"),
                        .body = body,
                        .body_len = strlen(body),
                        .headers = {"Content-Type: application/json"}},
            &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(http_header(&r, "Content-Type"), "application/json");
    json_t *j = http_json(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "function")), "p2prpc_f1");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "target")),
                  "/api/v1/p2prpc_f%31/echo?q=x%20y&flag&wait=30");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "path")), "/api/v1/p2prpc_f%31/echo");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "method")), "POST");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "q")), "x y");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "flag")), ""); /* "?flag": present */
    ASSERT_TRUE(json_is_null(json_object_get(j, "none")));
    ASSERT_EQ(json_integer_value(json_object_get(j, "wait")), 30);
    json_t *want = json_loads(body, 0, NULL);
    ASSERT_TRUE(json_equal(json_object_get(j, "body"), want));
    json_decref(want);
    json_decref(j);
    http_resp_cleanup(&r);
}

static void test_json_errors(void) {
    http_resp r;
    const char *bad = "{\"a\": [1, 2}";
    http_do(
        &(http_req){
            .method = "POST", .url = url("/api/v1/f/echo"), .body = bad, .body_len = strlen(bad)},
        &r);
    assert_json_error(&r, 400, "invalid");
    ASSERT_STR_CONTAINS(r.body, "malformed JSON body");
    http_resp_cleanup(&r);

    http_do(&(http_req){.method = "POST", .url = url("/api/v1/f/echo")}, &r);
    assert_json_error(&r, 400, "invalid");
    ASSERT_STR_CONTAINS(r.body, "JSON body is required");
    http_resp_cleanup(&r);

    const char *dup = "{\"a\":1,\"a\":2}";
    http_do(
        &(http_req){
            .method = "POST", .url = url("/api/v1/f/echo"), .body = dup, .body_len = strlen(dup)},
        &r);
    assert_json_error(&r, 400, "invalid");
    http_resp_cleanup(&r);

    const char *waits[] = {"/api/v1/f/echo?wait=abc", "/api/v1/f/echo?wait=61",
                           "/api/v1/f/echo?wait=-1",
                           "/api/v1/f/echo?wait=", "/api/v1/f/echo?wait=99999999999999999999"};
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
        http_do(&(http_req){.method = "POST", .url = url(waits[i]), .body = "{}", .body_len = 2},
                &r);
        assert_json_error(&r, 400, "invalid");
        ASSERT_STR_CONTAINS(r.body, "wait");
        http_resp_cleanup(&r);
    }

    /* p2p_http_respond_err takes the status from the code. */
    http_do(&(http_req){.url = url("/fail")}, &r);
    assert_json_error(&r, 422, "hash_mismatch");
    ASSERT_STR_CONTAINS(r.body, "content is not abc");
    http_resp_cleanup(&r);
}

static void test_json_body_spooled(void) {
    /* 300 KB of JSON, over the 64 KB spool threshold: parsed from the file. */
    size_t n = 300 * 1024;
    char *body = malloc(n + 1);
    memset(body, 'x', n);
    memcpy(body, "{\"k\":\"", 6);
    memcpy(body + n - 2, "\"}", 2);
    body[n] = '\0';
    http_resp r;
    http_do(
        &(http_req){.method = "POST", .url = url("/api/v1/f/echo"), .body = body, .body_len = n},
        &r);
    ASSERT_EQ(r.status, 200);
    json_t *j = http_json(&r);
    ASSERT_TRUE(json_is_true(json_object_get(j, "spooled")));
    ASSERT_EQ(json_string_length(json_object_get(json_object_get(j, "body"), "k")), n - 8);
    json_decref(j);
    http_resp_cleanup(&r);
    free(body);
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, 0, 2000));
}

static void test_413_before_reading(void) {
    atomic_store(&small_calls, 0);
    char *body = pattern_bytes(8 << 20);
    http_resp r;
    /* With Expect: 100-continue the client waits, gets 413, sends nothing. */
    http_do(&(http_req){.method = "POST",
                        .url = url("/small"),
                        .body = body,
                        .body_len = 5000,
                        .headers = {"Expect: 100-continue"}},
            &r);
    assert_json_error(&r, 413, "too_large");
    ASSERT_STR_CONTAINS(r.body, "5000");
    ASSERT_EQ(r.uploaded, 0);
    ASSERT_STR_EQ(http_header(&r, "Connection"), "close");
    http_resp_cleanup(&r);
    /* Without it the 413 still comes at once, before 8 MB could be read. */
    http_do(&(http_req){.method = "POST",
                        .url = url("/small"),
                        .body = body,
                        .body_len = 8 << 20,
                        .headers = {"Expect:"}},
            &r);
    ASSERT_EQ(r.rc, CURLE_OK);
    assert_json_error(&r, 413, "too_large");
    ASSERT_LT(r.uploaded, 8 << 20);
    http_resp_cleanup(&r);
    ASSERT_EQ(atomic_load(&small_calls), 0);
    /* At the limit it passes. */
    http_do(&(http_req){.method = "POST", .url = url("/small"), .body = body, .body_len = 1024},
            &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"size\":1024}");
    http_resp_cleanup(&r);
    ASSERT_EQ(atomic_load(&small_calls), 1);
    free(body);
}

static void test_413_chunked_while_streaming(void) {
    atomic_store(&small_calls, 0);
    p2p_http_server_options o = {.spool_threshold = 512}; /* the 1 KB route spools early */
    p2p_http_server *s = start(&o);
    char u[128];
    url_of(s, u, sizeof(u), "http", "/small");
    char *body = pattern_bytes(4 << 20);
    http_resp r;
    /* 4 KB over a 1 KB limit: drained (under max_discard) and answered 413. */
    http_do(
        &(http_req){.method = "POST", .url = u, .body = body, .body_len = 4096, .chunked = true},
        &r);
    assert_json_error(&r, 413, "too_large");
    http_resp_cleanup(&r);
    /* 4 MB: past max_discard the server writes the 413 on the socket itself
     * and closes the connection (test_http_linger.c has the details). */
    http_do(&(http_req){.method = "POST",
                        .url = u,
                        .body = body,
                        .body_len = 4 << 20,
                        .chunked = true,
                        .headers = {"Expect:"}},
            &r);
    assert_json_error(&r, 413, "too_large");
    ASSERT_STR_EQ(http_header(&r, "Connection"), "close");
    ASSERT_LT(r.uploaded, 4 << 20);
    http_resp_cleanup(&r);
    ASSERT_EQ(atomic_load(&small_calls), 0);
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, 0, 2000));
    free(body);
    p2p_http_server_free(s);
}

static void check_blob(const http_resp *r, size_t size, const char *sha, bool on_disk) {
    if (r->status != 200)
        TEST_FAIL_("status %ld, body %s", r->status, r->body ? r->body : "(none)");
    json_t *j = http_json(r);
    ASSERT_EQ(json_integer_value(json_object_get(j, "size")), size);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "sha256")), sha);
    ASSERT_EQ(json_is_true(json_object_get(j, "on_disk")), on_disk);
    ASSERT_EQ(json_is_true(json_object_get(j, "in_memory")), !on_disk);
    json_decref(j);
}

static void test_spool_and_hash(void) {
    size_t n = 5 << 20;
    char *body = pattern_bytes(n), sha[65];
    sha256_hex(body, n, sha);
    http_resp r;
    http_do(&(http_req){.method = "PUT", .url = url("/blobs/abc"), .body = body, .body_len = n},
            &r);
    check_blob(&r, n, sha, true);
    http_resp_cleanup(&r);
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, 0, 2000));

    /* Chunked, no announced size: starts in memory, moves to a file. */
    http_do(
        &(http_req){
            .method = "POST", .url = url("/hash"), .body = body, .body_len = n, .chunked = true},
        &r);
    check_blob(&r, n, sha, true);
    http_resp_cleanup(&r);
    /* Small: stays in memory and is still hashed. */
    sha256_hex(body, 100, sha);
    http_do(&(http_req){.method = "POST", .url = url("/hash"), .body = body, .body_len = 100}, &r);
    check_blob(&r, 100, sha, false);
    http_resp_cleanup(&r);
    /* Empty PUT on a SPOOL_TO_FILE route: an empty file, the empty hash. */
    http_do(&(http_req){.method = "PUT", .url = url("/blobs/e"), .headers = {"Content-Length: 0"}},
            &r);
    check_blob(&r, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", true);
    http_resp_cleanup(&r);
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, 0, 2000));
    free(body);
}

static void test_take_body_file(void) {
    http_resp r;
    http_do(
        &(http_req){.method = "PUT", .url = url("/blobs/t?take=1"), .body = "hello", .body_len = 5},
        &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "\"took\":true");
    http_resp_cleanup(&r);
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, 0, 2000));
    struct stat st;
    ASSERT_EQ(stat(taken_path, &st), 0);
    ASSERT_EQ(st.st_size, 5);
    ASSERT_EQ(unlink(taken_path), 0);
}

static void expect_range(const char *range, long status, const char *content_range, size_t off,
                         size_t len, const char *data) {
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "Range: %s", range);
    http_resp r;
    http_do(&(http_req){.url = url("/file"), .headers = {range ? hdr : NULL}}, &r);
    ASSERT_EQ(r.status, status);
    ASSERT_STR_EQ(http_header(&r, "Accept-Ranges"), "bytes");
    if (content_range != NULL)
        ASSERT_STR_EQ(http_header(&r, "Content-Range"), content_range);
    else
        ASSERT_TRUE(http_header(&r, "Content-Range") == NULL);
    if (status == 416) {
        assert_json_error(&r, 416, "invalid");
    } else {
        ASSERT_EQ(r.len, len);
        ASSERT_MEM_EQ(r.body, data + off, len);
    }
    http_resp_cleanup(&r);
}

static void test_file_ranges(void) {
    char *data = pattern_bytes(1000);
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_EQ(write(fd, data, 1000), 1000);
    close(fd);
    expect_range(NULL, 200, NULL, 0, 1000, data);
    expect_range("bytes=10-19", 206, "bytes 10-19/1000", 10, 10, data);
    expect_range("bytes=990-", 206, "bytes 990-999/1000", 990, 10, data);
    expect_range("bytes=995-5000", 206, "bytes 995-999/1000", 995, 5, data);
    expect_range("bytes=-5", 206, "bytes 995-999/1000", 995, 5, data);
    expect_range("bytes=-5000", 206, "bytes 0-999/1000", 0, 1000, data);
    expect_range("bytes=1000-", 416, "bytes */1000", 0, 0, data);
    expect_range("bytes=-0", 416, "bytes */1000", 0, 0, data);
    expect_range("bytes=5-2", 200, NULL, 0, 1000, data);     /* invalid: ignored */
    expect_range("bytes=0-1,5-6", 200, NULL, 0, 1000, data); /* several: ignored */
    expect_range("items=0-1", 200, NULL, 0, 1000, data);     /* other unit: ignored */
    http_resp r;
    http_do(&(http_req){.method = "HEAD", .url = url("/file")}, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(http_header(&r, "Content-Length"), "1000");
    ASSERT_EQ(r.len, 0);
    http_resp_cleanup(&r);
    free(data);
}

static void test_range_parser(void) {
    uint64_t off = 7, len = 7;
    ASSERT_EQ(p2p_http_range_parse(NULL, 10, &off, &len), P2P_HTTP_RANGE_NONE);
    const char *ignored[] = {
        "bytes=",     "bytes=-",    "bytes=a-b", "bytes= 1-2",    "bytes=1 -2",
        "bytes=+1-2", "bytes=1-+2", "bytes=3-1", "bytes=1-2,3-4", "bytes=18446744073709551616-",
        "Bytes=1-2",  "bytes=1-2-3"};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        if (p2p_http_range_parse(ignored[i], 10, &off, &len) != P2P_HTTP_RANGE_NONE)
            TEST_FAIL_("\"%s\" should be ignored", ignored[i]);
    }
    ASSERT_EQ(off, 7); /* untouched */
    ASSERT_EQ(p2p_http_range_parse("bytes=0-0", 10, &off, &len), P2P_HTTP_RANGE_PARTIAL);
    ASSERT_EQ(off, 0);
    ASSERT_EQ(len, 1);
    ASSERT_EQ(p2p_http_range_parse("bytes=9-18446744073709551615", 10, &off, &len),
              P2P_HTTP_RANGE_PARTIAL);
    ASSERT_EQ(off, 9);
    ASSERT_EQ(len, 1);
    ASSERT_EQ(p2p_http_range_parse("bytes=0-", 0, &off, &len), P2P_HTTP_RANGE_UNSATISFIABLE);
    ASSERT_EQ(p2p_http_range_parse("bytes=-1", 0, &off, &len), P2P_HTTP_RANGE_UNSATISFIABLE);
    ASSERT_EQ(p2p_http_range_parse("bytes=10-", 10, &off, &len), P2P_HTTP_RANGE_UNSATISFIABLE);
}

static void test_custom_empty_async(void) {
    http_resp r;
    http_do(&(http_req){.url = url("/custom")}, &r);
    ASSERT_EQ(r.status, 201);
    ASSERT_EQ(r.len, 8);
    ASSERT_MEM_EQ(r.body, "hi\0there", 8);
    ASSERT_STR_EQ(http_header(&r, "Content-Type"), "text/plain");
    ASSERT_STR_EQ(http_header(&r, "X-Extra"), "yes");
    ASSERT_TRUE(http_header(&r, "Injected") == NULL);
    http_resp_cleanup(&r);

    http_do(&(http_req){.method = "DELETE", .url = url("/empty")}, &r);
    ASSERT_EQ(r.status, 204);
    ASSERT_EQ(r.len, 0);
    http_resp_cleanup(&r);

    http_do(&(http_req){.url = url("/null")}, &r);
    assert_json_error(&r, 500, "no_memory");
    http_resp_cleanup(&r);

    int64_t t0 = test_now_ms();
    http_do(&(http_req){.url = url("/async")}, &r);
    ASSERT_EQ(r.status, 202);
    ASSERT_STR_EQ(r.body, "{\"from\":\"another thread\"}");
    ASSERT_GE(r.done_ms - t0, 30);
    http_resp_cleanup(&r);
}

static int authorize(void *ctx, const p2p_http_request *req, p2p_error *err) {
    ASSERT_TRUE(ctx == &auth_calls);
    atomic_fetch_add(&auth_calls, 1);
    snprintf(auth_seen, sizeof(auth_seen), "%s %s", p2p_http_request_method(req),
             p2p_http_request_target(req));
    const char *v = p2p_http_request_header(req, "x-test-auth");
    if (v == NULL || strcmp(v, "yes") != 0)
        return p2p_error_set(err, P2P_EAUTH, "bad or missing X-Test-Auth");
    return 0;
}

static void test_authorize(void) {
    atomic_store(&blob_calls, 0);
    atomic_store(&auth_calls, 0);
    p2p_http_server_options o = {.authorize = authorize, .authorize_ctx = &auth_calls};
    p2p_http_server *s = start(&o);
    char u[256];
    http_resp r;
    url_of(s, u, sizeof(u), "http", "/health");
    http_do(&(http_req){.url = u}, &r); /* PUBLIC */
    ASSERT_EQ(r.status, 200);
    http_resp_cleanup(&r);
    ASSERT_EQ(atomic_load(&auth_calls), 0);

    const char *paths[] = {"/file", "/custom", "/async", "/fail"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        url_of(s, u, sizeof(u), "http", paths[i]);
        http_do(&(http_req){.url = u}, &r);
        assert_json_error(&r, 401, "unauthorized");
        ASSERT_STR_CONTAINS(r.body, "X-Test-Auth");
        http_resp_cleanup(&r);
    }
    /* An unauthorized upload is refused before its body is read. */
    char *body = pattern_bytes(1 << 20);
    url_of(s, u, sizeof(u), "http", "/blobs/x");
    http_do(&(http_req){.method = "PUT",
                        .url = u,
                        .body = body,
                        .body_len = 1 << 20,
                        .headers = {"Expect: 100-continue"}},
            &r);
    assert_json_error(&r, 401, "unauthorized");
    ASSERT_EQ(r.uploaded, 0);
    ASSERT_EQ(atomic_load(&blob_calls), 0);
    http_resp_cleanup(&r);
    free(body);

    url_of(s, u, sizeof(u), "http", "/api/v1/fn/echo?q=a%20b");
    http_do(&(http_req){.method = "POST",
                        .url = u,
                        .body = "[]",
                        .body_len = 2,
                        .headers = {"X-Test-Auth: yes"}},
            &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(auth_seen, "POST /api/v1/fn/echo?q=a%20b");
    http_resp_cleanup(&r);
    /* Unknown routes are 404 whatever the credentials. */
    url_of(s, u, sizeof(u), "http", "/nothing");
    http_do(&(http_req){.url = u}, &r);
    assert_json_error(&r, 404, "not_found");
    http_resp_cleanup(&r);
    p2p_http_server_free(s);
}

static void test_tls(void) {
    char cert[700], key[700], cmd[2048];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tmp_dir);
    snprintf(key, sizeof(key), "%s/key.pem", tmp_dir);
    snprintf(cmd, sizeof(cmd),
             "timeout 30 openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
             key, cert);
    ASSERT_EQ(system(cmd), 0);
    p2p_http_server_options o = {.tls_cert_file = cert, .tls_key_file = key};
    p2p_http_server *s = start(&o);
    char u[256];
    url_of(s, u, sizeof(u), "https", "/health");
    http_resp r;
    http_do(&(http_req){.url = u, .cainfo = cert}, &r);
    ASSERT_EQ(r.rc, CURLE_OK);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"ok\":true}");
    http_resp_cleanup(&r);
    /* Without the CA the client refuses the certificate. */
    http_do(&(http_req){.url = u, .cainfo = "/dev/null"}, &r);
    ASSERT_TRUE(r.rc != CURLE_OK);
    http_resp_cleanup(&r);
    /* TLS records cannot be written by hand: a chunked body past the limit
     * and max_discard only gets the connection closed, and nothing lingers. */
    char *body = pattern_bytes(4 << 20);
    url_of(s, u, sizeof(u), "https", "/small");
    http_do(&(http_req){.method = "POST",
                        .url = u,
                        .cainfo = cert,
                        .body = body,
                        .body_len = 4 << 20,
                        .chunked = true,
                        .headers = {"Expect:"}},
            &r);
    ASSERT_TRUE(r.rc != CURLE_OK);
    ASSERT_EQ(r.status, 0);
    ASSERT_LT(r.uploaded, 4 << 20);
    ASSERT_EQ(p2p_http_server_lingering(s), 0);
    http_resp_cleanup(&r);
    free(body);
    /* Plain HTTP to the TLS port gets no HTTP answer. */
    url_of(s, u, sizeof(u), "http", "/health");
    http_do(&(http_req){.url = u, .timeout_ms = 3000}, &r);
    ASSERT_TRUE(r.rc != CURLE_OK || r.status != 200);
    http_resp_cleanup(&r);
    p2p_http_server_free(s);
    unlink(cert);
    unlink(key);
}

static void test_option_errors(void) {
    p2p_http_server *s = NULL;
    p2p_error err;
    p2p_http_server_options o = {.routes = routes, .n_routes = 1, .tls_cert_file = "/x"};
    ASSERT_EQ(p2p_http_server_new(&o, &s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "both");
    o = (p2p_http_server_options){.tls_cert_file = "/nonexistent.pem",
                                  .tls_key_file = "/nonexistent.key"};
    ASSERT_EQ(p2p_http_server_new(&o, &s, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "/nonexistent.pem");
    p2p_http_route bad = {"GET", "/x/{", h_health, 0, 0};
    o = (p2p_http_server_options){.routes = &bad, .n_routes = 1};
    ASSERT_EQ(p2p_http_server_new(&o, &s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "/x/{");
    o = (p2p_http_server_options){.host = "localhost"};
    ASSERT_OK(p2p_http_server_new(&o, &s, &err));
    ASSERT_EQ(p2p_http_server_start(s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "numeric");
    ASSERT_EQ(p2p_http_server_port(s), 0);
    p2p_http_server_free(s);
    /* A port in use. */
    o = (p2p_http_server_options){.port = p2p_http_server_port(srv)};
    ASSERT_OK(p2p_http_server_new(&o, &s, &err));
    ASSERT_EQ(p2p_http_server_start(s, &err), P2P_EIO);
    p2p_http_server_free(s);
    p2p_http_server_free(NULL);
    /* Started twice; stopped twice. */
    o = (p2p_http_server_options){0};
    ASSERT_OK(p2p_http_server_new(&o, &s, &err));
    ASSERT_OK(p2p_http_server_start(s, &err));
    ASSERT_EQ(p2p_http_server_start(s, &err), P2P_EINVAL);
    p2p_http_server_stop(s);
    p2p_http_server_stop(s);
    ASSERT_EQ(p2p_http_server_port(s), 0);
    p2p_http_server_free(s);
}

static int raw_connect(p2p_http_server *s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p2p_http_server_port(s))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends `raw` on a new connection and checks the status line of the answer. */
static void raw_exchange(p2p_http_server *s, const char *raw, const char *want_status) {
    int fd = raw_connect(s);
    ASSERT_EQ(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
    char buf[512] = {0};
    ASSERT_GT(read(fd, buf, sizeof(buf) - 1), 0);
    ASSERT_STR_CONTAINS(buf, want_status);
    close(fd);
}

/* Malformed HTTP is refused by libmicrohttpd itself, and the request object
 * born in the URI callback is still freed (the ASan build checks). */
static void test_malformed_http(void) {
    atomic_store(&small_calls, 0);
    raw_exchange(srv, "GET /health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
                 "HTTP/1.1 400");
    raw_exchange(srv, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 "HTTP/1.1 400");
    raw_exchange(
        srv, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 413");
    raw_exchange(srv, "GET /health HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505");
    char *big = malloc(40001);
    memset(big, 'a', 40000);
    big[40000] = '\0';
    char *hdr = malloc(40100);
    snprintf(hdr, 40100, "X-Big: %s", big);
    http_resp r;
    http_do(&(http_req){.url = url("/health"), .headers = {hdr}}, &r);
    ASSERT_EQ(r.status, 431);
    http_resp_cleanup(&r);
    char *target = malloc(40100);
    snprintf(target, 40100, "/health?x=%s", big);
    url_of(srv, hdr, 40100, "http", target);
    free(target);
    http_do(&(http_req){.url = hdr}, &r);
    ASSERT_EQ(r.status, 414);
    http_resp_cleanup(&r);
    free(hdr);
    free(big);
    ASSERT_EQ(atomic_load(&small_calls), 0);
}

static size_t in_flight(void *s) {
    return p2p_http_server_in_flight(s);
}

/* Sends `raw`, waits until the server holds the request (and, with a body,
 * its temp file), then hangs up: request and temp file must go. */
static void hang_up_after(p2p_http_server *s, const char *raw, int files) {
    ASSERT_EQ(p2p_http_server_in_flight(s), 0);
    int fd = raw_connect(s);
    ASSERT_EQ(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
    ASSERT_TRUE(wait_size(in_flight, s, 1, 3000));
    ASSERT_TRUE(wait_size(get_dir_entries, spool_dir, (size_t)files, 3000));
    close(fd);
    ASSERT_TRUE(wait_size(in_flight, s, 0, 3000));
    ASSERT_EQ(dir_entries(spool_dir), 0);
}

/* Clients that hang up in the middle of the headers or of the body. */
static void test_hangup_mid_request(void) {
    p2p_http_server_options o = {0};
    p2p_http_server *s = start(&o);
    hang_up_after(s, "GET /health HTTP/1.1\r\nHost: x\r\n", 0);
    hang_up_after(s, "PUT /blobs/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123", 1);
    hang_up_after(
        s, "POST /hash HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n", 0);
    p2p_http_server_free(s);
}

/* When the bytes and the hang-up arrive together, libmicrohttpd 0.9.75 in
 * epoll mode may miss the hang-up: the idle timeout bounds such a connection,
 * and its temp file goes with it. */
static void test_hangup_with_data_bounded_by_idle_timeout(void) {
    p2p_http_server_options o = {.idle_timeout_s = 1};
    p2p_http_server *s = start(&o);
    const char *raw = "PUT /blobs/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123";
    for (int i = 0; i < 5; i++) {
        int fd = raw_connect(s);
        ASSERT_EQ(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
        close(fd);
    }
    /* Let the server read them all (most runs miss some hang-ups here). */
    usleep(200000);
    ASSERT_TRUE(wait_size(in_flight, s, 0, 5000));
    ASSERT_EQ(dir_entries(spool_dir), 0);
    p2p_http_server_free(s);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_test_dir(tmp_dir, sizeof(tmp_dir), "http_server");
    snprintf(spool_dir, sizeof(spool_dir), "%s/spool", tmp_dir);
    ASSERT_TRUE(mkdir(spool_dir, 0700) == 0 || errno == EEXIST);
    snprintf(file_path, sizeof(file_path), "%s/file.bin", tmp_dir);
    snprintf(taken_path, sizeof(taken_path), "%s/taken.bin", tmp_dir);
    p2p_http_server_options o = {0};
    srv = start(&o);
    TEST_RUN(test_routes_404_405_keepalive);
    TEST_RUN(test_json_echo_params_and_query);
    TEST_RUN(test_json_errors);
    TEST_RUN(test_json_body_spooled);
    TEST_RUN(test_413_before_reading);
    TEST_RUN(test_413_chunked_while_streaming);
    TEST_RUN(test_spool_and_hash);
    TEST_RUN(test_take_body_file);
    TEST_RUN(test_file_ranges);
    TEST_RUN(test_range_parser);
    TEST_RUN(test_custom_empty_async);
    TEST_RUN(test_authorize);
    TEST_RUN(test_tls);
    TEST_RUN(test_option_errors);
    TEST_RUN(test_malformed_http);
    TEST_RUN(test_hangup_mid_request);
    TEST_RUN(test_hangup_with_data_bounded_by_idle_timeout);
    p2p_http_server_free(srv);
    ASSERT_EQ(dir_entries(spool_dir), 0);
    unlink(file_path);
    rmdir(spool_dir);
    rmdir(tmp_dir);
    curl_global_cleanup();
    return 0;
}
