/* The HTTP server's answer to a chunked body far over its limit, on
 * 127.0.0.1: raw-socket and libcurl clients that keep streaming get a
 * complete 413 with its JSON body (written on the socket while the upload
 * runs), then an orderly end of stream; the socket lingers within its caps;
 * memory and the temp directory stay flat. The small-overrun case (413
 * through libmicrohttpd) and TLS are in test_http_server.c. */
#include "http_server.h"
#include "test.h"

#include "http_test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define MIB (1024 * 1024)
#define ROUTE_LIMIT MIB
#define DISCARD (256 * 1024)

static char tmp_dir[512], spool_dir[600];
static atomic_int calls;

static void h_count(p2p_http_request *req, void *ctx) {
    (void)ctx;
    atomic_fetch_add(&calls, 1);
    p2p_http_respond_json(req, 200,
                          json_pack("{s:I}", "size", (json_int_t)p2p_http_request_body_size(req)));
}

static const p2p_http_route routes[] = {
    {"POST", "/mib", h_count, 0, ROUTE_LIMIT},
};

/* Starts a server with the test's routes; `o` may set the linger limits. */
static p2p_http_server *start(p2p_http_server_options *o) {
    o->routes = routes;
    o->n_routes = sizeof(routes) / sizeof(routes[0]);
    o->tmp_dir = spool_dir;
    o->spool_threshold = 64 * 1024; /* the over-limit body goes to a temp file first */
    o->max_discard = DISCARD;
    o->stop_grace_ms = 500;
    p2p_http_server *s = NULL;
    p2p_error err = {0};
    int rc = p2p_http_server_new(o, &s, &err);
    if (rc == 0)
        rc = p2p_http_server_start(s, &err);
    if (rc != 0)
        TEST_FAIL_("server start failed: %d %s", rc, err.msg);
    return s;
}

static size_t in_flight(void *s) {
    return p2p_http_server_in_flight(s);
}

static size_t lingering(void *s) {
    return p2p_http_server_lingering(s);
}

/* ---- process measures: the server runs in this process ---- */

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    ASSERT_TRUE(f != NULL);
    char line[256];
    long kib = -1;
    while (kib < 0 && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    ASSERT_GT(kib, 0);
    return kib;
}

static int open_fds(void) {
    return dir_entries("/proc/self/fd");
}

/* ---- a raw chunked upload ---- */

typedef struct upload {
    size_t total; /* body bytes to send at most */
    bool blind;   /* read only once a send fails (else stop at the first answer byte) */
    size_t sent;  /* body bytes the socket took */
    char answer[8192];
    size_t answer_len;
    int end_errno;       /* how the answer ended: 0 = orderly end of stream */
    size_t sample_every; /* bytes sent between two samples */
    long rss_peak_kib;   /* the highest VmRSS sampled */
    int files_peak;      /* the most temp directory entries sampled */
} upload;

static int raw_connect(p2p_http_server *s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p2p_http_server_port(s))};
    ASSERT_EQ(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static const char head[] =
        "POST /mib HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    ASSERT_EQ(send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(head) - 1));
    return fd;
}

static void sample(upload *u) {
    long rss = rss_kib();
    int files = dir_entries(spool_dir);
    u->rss_peak_kib = rss > u->rss_peak_kib ? rss : u->rss_peak_kib;
    u->files_peak = files > u->files_peak ? files : u->files_peak;
}

/* Sends 64 KiB chunks until `u->total`, a failed send, or (unless blind)
 * the first byte of an answer; every loop is bounded by time. */
static void send_body(int fd, upload *u) {
    static char chunk[65536 + 16];
    int head = snprintf(chunk, sizeof(chunk), "10000\r\n");
    memset(chunk + head, 'z', 65536);
    memcpy(chunk + head + 65536, "\r\n", 2);
    size_t chunk_len = (size_t)head + 65536 + 2, off = 0, next_sample = 0;
    int64_t deadline = test_now_ms() + 30000;
    while (u->sent < u->total && test_now_ms() < deadline) {
        if (u->sent >= next_sample) {
            sample(u);
            next_sample += u->sample_every;
        }
        struct pollfd p = {.fd = fd, .events = u->blind ? POLLOUT : POLLIN | POLLOUT};
        ASSERT_GT(poll(&p, 1, 10000), 0);
        if (!u->blind && (p.revents & (POLLIN | POLLERR | POLLHUP)))
            return;
        ssize_t n = send(fd, chunk + off, chunk_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return;
        u->sent += (size_t)n;
        off = (off + (size_t)n) % chunk_len;
    }
}

/* Reads what comes back until the end of the stream, an error or 10 s. */
static void read_answer(int fd, upload *u) {
    int64_t deadline = test_now_ms() + 10000;
    u->end_errno = ETIMEDOUT;
    while (test_now_ms() < deadline && u->answer_len < sizeof(u->answer) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t n = recv(fd, u->answer + u->answer_len, sizeof(u->answer) - 1 - u->answer_len,
                         MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        u->end_errno = n < 0 ? errno : 0;
        if (n <= 0)
            break;
        u->answer_len += (size_t)n;
    }
    u->answer[u->answer_len] = '\0';
}

/* Asserts a whole 413: status line, headers, and the JSON error body of
 * exactly Content-Length bytes. */
static void assert_413(const upload *u) {
    const char *a = u->answer;
    if (strncmp(a, "HTTP/1.1 413 ", 13) != 0)
        TEST_FAIL_("expected a 413, got %zu bytes: \"%.300s\"", u->answer_len, a);
    const char *end = strstr(a, "\r\n\r\n");
    ASSERT_TRUE(end != NULL);
    const char *body = end + 4;
    ASSERT_STR_CONTAINS(a, "\r\nContent-Type: application/json\r\n");
    ASSERT_STR_CONTAINS(a, "\r\nConnection: close\r\n");
    char want[64];
    snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", strlen(body));
    ASSERT_STR_CONTAINS(a, want);
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    if (j == NULL)
        TEST_FAIL_("body is not JSON (%s): \"%s\"", je.text, body);
    json_t *e = json_object_get(j, "error");
    ASSERT_EQ(json_object_size(j), 1);
    ASSERT_EQ(json_object_size(e), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "code")), "too_large");
    ASSERT_STR_CONTAINS(json_string_value(json_object_get(e, "message")), "1048576");
    json_decref(j);
}

/* ---- tests ---- */

/* 200 MiB announced by nobody: the client streams and reads at the same
 * time, as libcurl does. It gets the whole 413 and then an orderly end of
 * stream (no reset), long before 200 MiB; the handler never runs; memory and
 * the temp directory stay flat. After the answer the server still reads (and
 * drops) what the client sends, until the client closes. */
static void test_raw_client_reading_while_sending(void) {
    atomic_store(&calls, 0);
    p2p_http_server_options o = {0};
    p2p_http_server *s = start(&o);
    long rss_before = rss_kib();
    int64_t t0 = test_now_ms();
    upload u = {.total = (size_t)200 * MIB, .sample_every = 128 * 1024};
    int fd = raw_connect(s);
    send_body(fd, &u);
    read_answer(fd, &u);
    int64_t t_answer = test_now_ms();
    sample(&u);
    fprintf(stderr,
            "  answered after %zu bytes sent in %lld ms; rss %ld -> peak %ld KiB; temp files "
            "peak %d\n",
            u.sent, (long long)(t_answer - t0), rss_before, u.rss_peak_kib, u.files_peak);
    assert_413(&u);
    ASSERT_EQ(u.end_errno, 0);
    ASSERT_LT(u.sent, 64 * MIB);
    ASSERT_LT(u.rss_peak_kib - rss_before, 32 * 1024);
    ASSERT_LE(u.files_peak, 1);
    ASSERT_EQ(dir_entries(spool_dir), 0);
    ASSERT_EQ(atomic_load(&calls), 0);
    ASSERT_TRUE(wait_size(in_flight, s, 0, 3000));
    /* The socket lingers: more data is taken (and dropped), not refused
     * with a reset as it would be by a closed socket. */
    static char more[MIB];
    ASSERT_EQ(send(fd, more, sizeof(more), MSG_NOSIGNAL), (ssize_t)sizeof(more));
    ASSERT_EQ(p2p_http_server_lingering(s), 1);
    /* The client closing ends it at once (well before the 2 s idle cap). */
    close(fd);
    int64_t t_close = test_now_ms();
    ASSERT_TRUE(wait_size(lingering, s, 0, 3000));
    ASSERT_LT(test_now_ms() - t_close, 1000);
    ASSERT_EQ(dir_entries(spool_dir), 0);
    p2p_http_server_free(s);
}

/* A client that does not read until a send fails: the server lingers until
 * its byte cap (160 MiB here, so that most of the 200 MiB really flows
 * through the server), then closes; the 413 it wrote first is still there
 * to read. */
static void test_raw_client_reading_after_send_fails(void) {
    atomic_store(&calls, 0);
    p2p_http_server_options o = {.linger_bytes = 160 * MIB, .linger_ms = 30000};
    p2p_http_server *s = start(&o);
    long rss_before = rss_kib();
    upload u = {.total = (size_t)200 * MIB, .blind = true, .sample_every = 4 * MIB};
    int fd = raw_connect(s);
    int64_t t0 = test_now_ms();
    send_body(fd, &u);
    int send_errno = errno;
    read_answer(fd, &u);
    close(fd);
    fprintf(stderr, "  send failed (%s) after %zu bytes in %lld ms; rss %ld -> peak %ld KiB\n",
            strerror(send_errno), u.sent, (long long)(test_now_ms() - t0), rss_before,
            u.rss_peak_kib);
    assert_413(&u);
    /* Limit + drained + lingering cap + the socket buffers of both sides. */
    ASSERT_GT(u.sent, 160 * MIB);
    ASSERT_LT(u.sent, 192 * MIB);
    ASSERT_LT(u.rss_peak_kib - rss_before, 32 * 1024);
    ASSERT_LE(u.files_peak, 1);
    ASSERT_EQ(atomic_load(&calls), 0);
    ASSERT_TRUE(wait_size(lingering, s, 0, 3000));
    ASSERT_EQ(dir_entries(spool_dir), 0);
    p2p_http_server_free(s);
}

typedef struct endless {
    size_t left;
} endless;

static size_t endless_read(char *p, size_t size, size_t n, void *arg) {
    endless *e = arg;
    size_t k = size * n < e->left ? size * n : e->left;
    memset(p, 'x', k);
    e->left -= k;
    return k;
}

/* libcurl streaming 200 MiB through a read callback (chunked, no size),
 * with and without Expect: 100-continue: it sees the early 413 and stops. */
static void test_curl_chunked_upload(void) {
    atomic_store(&calls, 0);
    p2p_http_server_options o = {0};
    p2p_http_server *s = start(&o);
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/mib", (unsigned)p2p_http_server_port(s));
    const char *expect[] = {NULL, "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        http_req q = {.method = "POST", .url = u, .chunked = true, .headers = {expect[i]}};
        http_resp r = {0};
        CURL *c = curl_easy_init();
        ASSERT_TRUE(c != NULL);
        body_reader br;
        struct curl_slist *hl = NULL;
        http_setup(c, &q, &r, &br, &hl);
        endless e = {(size_t)200 * MIB};
        curl_easy_setopt(c, CURLOPT_READFUNCTION, endless_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &e);
        int64_t t0 = test_now_ms();
        r.rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &r.uploaded);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
        fprintf(stderr, "  curl%s: %s, status %ld after %lld bytes in %lld ms\n",
                i == 0 ? "" : " without Expect", curl_easy_strerror(r.rc), r.status,
                (long long)r.uploaded, (long long)(test_now_ms() - t0));
        assert_json_error(&r, 413, "too_large");
        ASSERT_STR_EQ(http_header(&r, "Connection"), "close");
        ASSERT_LT(r.uploaded, 64 * MIB);
        http_resp_cleanup(&r);
        ASSERT_TRUE(wait_size(lingering, s, 0, 3000)); /* curl closed its socket */
    }
    ASSERT_EQ(atomic_load(&calls), 0);
    ASSERT_EQ(dir_entries(spool_dir), 0);
    p2p_http_server_free(s);
}

/* Streams past the limit, reads the 413 and its end of stream. */
static int answered_client(p2p_http_server *s) {
    upload u = {.total = (size_t)200 * MIB, .sample_every = 4 * MIB};
    int fd = raw_connect(s);
    send_body(fd, &u);
    read_answer(fd, &u);
    assert_413(&u);
    return fd;
}

/* The caps: one socket at most (the next one is answered, then closed at
 * once), the idle time, the total time. */
static void test_linger_caps(void) {
    p2p_http_server_options o = {.linger_max = 1, .linger_idle_ms = 300, .linger_ms = 900};
    p2p_http_server *s = start(&o);
    int a = answered_client(s);
    ASSERT_EQ(p2p_http_server_lingering(s), 1);
    int b = answered_client(s);
    ASSERT_EQ(p2p_http_server_lingering(s), 1);
    close(b);
    /* `a` stays silent: the idle cap ends it. */
    int64_t t0 = test_now_ms();
    ASSERT_TRUE(wait_size(lingering, s, 0, 3000));
    int64_t idle = test_now_ms() - t0;
    fprintf(stderr, "  silent client released after %lld ms\n", (long long)idle);
    ASSERT_LT(idle, 1500);
    close(a);
    /* A client that keeps sending a little is never idle: the total cap ends it. */
    a = answered_client(s);
    t0 = test_now_ms();
    char byte[1024] = {0};
    while (p2p_http_server_lingering(s) == 1 && test_now_ms() - t0 < 5000) {
        if (send(a, byte, sizeof(byte), MSG_NOSIGNAL) < 0)
            break;
        usleep(50000);
    }
    int64_t total = test_now_ms() - t0;
    fprintf(stderr, "  trickling client released after %lld ms\n", (long long)total);
    ASSERT_EQ(p2p_http_server_lingering(s), 0);
    ASSERT_GE(total, 400);
    ASSERT_LT(total, 2500);
    close(a);
    p2p_http_server_free(s);
}

/* Stop closes lingering sockets at once, and leaves no descriptor behind. */
static void test_stop_with_lingering_sockets(void) {
    int fds_before = open_fds();
    p2p_http_server_options o = {.linger_idle_ms = 30000, .linger_ms = 60000};
    p2p_http_server *s = start(&o);
    int a = answered_client(s), b = answered_client(s);
    ASSERT_EQ(p2p_http_server_lingering(s), 2);
    int64_t t0 = test_now_ms();
    p2p_http_server_stop(s);
    ASSERT_LT(test_now_ms() - t0, 2000);
    ASSERT_EQ(p2p_http_server_lingering(s), 0);
    p2p_http_server_free(s);
    close(a);
    close(b);
    ASSERT_EQ(open_fds(), fds_before);
}

static void test_linger_option_bounds(void) {
    p2p_http_server_options o = {.linger_max = 65537};
    p2p_http_server *s = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_http_server_new(&o, &s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "linger_max");
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_test_dir(tmp_dir, sizeof(tmp_dir), "http_linger");
    snprintf(spool_dir, sizeof(spool_dir), "%s/spool", tmp_dir);
    ASSERT_TRUE(mkdir(spool_dir, 0700) == 0 || errno == EEXIST);
    TEST_RUN(test_raw_client_reading_while_sending);
    TEST_RUN(test_raw_client_reading_after_send_fails);
    TEST_RUN(test_curl_chunked_upload);
    TEST_RUN(test_linger_caps);
    TEST_RUN(test_stop_with_lingering_sockets);
    TEST_RUN(test_linger_option_bounds);
    ASSERT_EQ(dir_entries(spool_dir), 0);
    rmdir(spool_dir);
    rmdir(tmp_dir);
    curl_global_cleanup();
    return 0;
}
