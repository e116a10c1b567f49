/* Long-poll through the HTTP server with real libcurl clients on 127.0.0.1:
 * notify, timeout, many waiters at once, re-park, clients that hang up while
 * parked, and stop with parked and unanswered requests. */
#include "http_server.h"
#include "test.h"

#include "http_test_client.h"

#include <stdatomic.h>
#include <time.h>

#define MANY 200

static const char *const why_name[] = {"notified", "timeout", "closed", "shutdown"};
static atomic_int why_count[4];
static p2p_http_request *_Atomic never_req;
static p2p_http_server *srv;

typedef struct wait_state {
    int wakes;
    int64_t repark;
    char topic[64];
} wait_state;

static void on_wake(p2p_http_request *req, void *ctx, p2p_http_wake why) {
    wait_state *st = ctx;
    st->wakes++;
    atomic_fetch_add(&why_count[why], 1);
    p2p_error err;
    if (why == P2P_HTTP_WAKE_NOTIFIED && st->wakes <= st->repark &&
        p2p_http_request_park(req, st->topic, 10000, on_wake, st, &err) == 0)
        return;
    if (why == P2P_HTTP_WAKE_SHUTDOWN || why == P2P_HTTP_WAKE_CLOSED) {
        /* Nothing can wait any more: the callback must answer. */
        ASSERT_EQ(p2p_http_request_park(req, st->topic, 10000, on_wake, st, &err), P2P_ECANCELED);
        free(st);
        p2p_http_respond_error(req, 503, P2P_ECANCELED, "woken by %s", why_name[why]);
        return;
    }
    p2p_http_respond_json(req, 200,
                          json_pack("{s:s,s:i}", "why", why_name[why], "wakes", st->wakes));
    free(st);
}

static void h_wait(p2p_http_request *req, void *ctx) {
    (void)ctx;
    int64_t ms = 10000;
    wait_state *st = calloc(1, sizeof(*st));
    ASSERT_TRUE(st != NULL);
    p2p_error err;
    if (p2p_http_request_query_int(req, "ms", 0, 60000, &ms, &err) == P2P_EINVAL ||
        p2p_http_request_query_int(req, "repark", 0, 10, &st->repark, &err) == P2P_EINVAL) {
        free(st);
        p2p_http_respond_err(req, &err);
        return;
    }
    snprintf(st->topic, sizeof(st->topic), "%s", p2p_http_request_param(req, "topic"));
    if (p2p_http_request_park(req, st->topic, ms, on_wake, st, &err) != 0) {
        free(st);
        p2p_http_respond_err(req, &err);
    }
}

/* Never answers: stop must answer for it. */
static void h_never(p2p_http_request *req, void *ctx) {
    (void)ctx;
    atomic_store(&never_req, req);
}

static const p2p_http_route routes[] = {
    {"GET", "/wait/{topic}", h_wait, 0, 0},
    {"GET", "/never", h_never, 0, 0},
};

static p2p_http_server *start(void) {
    p2p_http_server_options o = {
        .routes = routes, .n_routes = sizeof(routes) / sizeof(routes[0]), .stop_grace_ms = 300};
    p2p_http_server *s = NULL;
    p2p_error err;
    ASSERT_OK(p2p_http_server_new(&o, &s, &err));
    ASSERT_OK(p2p_http_server_start(s, &err));
    return s;
}

static void url_of(p2p_http_server *s, char *out, size_t n, const char *path) {
    snprintf(out, n, "http://127.0.0.1:%u%s", (unsigned)p2p_http_server_port(s), path);
}

static size_t parked_of(void *s) {
    return p2p_http_server_parked(s);
}

static void assert_body_why(const http_resp *r, const char *why, int wakes) {
    ASSERT_EQ(r->rc, CURLE_OK);
    ASSERT_EQ(r->status, 200);
    json_t *j = http_json(r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "why")), why);
    ASSERT_EQ(json_integer_value(json_object_get(j, "wakes")), wakes);
    json_decref(j);
}

static void test_notify_releases_at_once(void) {
    http_bg b = {.req = {.timeout_ms = 15000}};
    char u[128];
    url_of(srv, u, sizeof(u), "/wait/work:fn?ms=10000");
    b.req.url = u;
    http_bg_start(&b);
    ASSERT_TRUE(wait_size(parked_of, srv, 1, 5000));
    ASSERT_EQ(p2p_http_server_notify(srv, "work:other"), 0);
    int64_t t0 = test_now_ms();
    ASSERT_EQ(p2p_http_server_notify(srv, "work:fn"), 1);
    http_bg_join(&b);
    assert_body_why(&b.resp, "notified", 1);
    int64_t latency = b.resp.done_ms - t0;
    fprintf(stderr, "   notify -> response in %" PRId64 " ms\n", latency);
    ASSERT_LT(latency, 200);
    http_resp_cleanup(&b.resp);
}

static void test_timeout(void) {
    char u[128];
    url_of(srv, u, sizeof(u), "/wait/t?ms=150");
    http_resp r;
    int64_t t0 = test_now_ms();
    http_do(&(http_req){.url = u}, &r);
    assert_body_why(&r, "timeout", 1);
    ASSERT_GE(r.done_ms - t0, 150);
    ASSERT_LT(r.done_ms - t0, 2000);
    http_resp_cleanup(&r);
    /* 0 wakes at once, from the timer thread. */
    url_of(srv, u, sizeof(u), "/wait/t?ms=0");
    http_do(&(http_req){.url = u}, &r);
    assert_body_why(&r, "timeout", 1);
    http_resp_cleanup(&r);
    ASSERT_EQ(p2p_http_server_parked(srv), 0);
}

static void test_repark(void) {
    http_bg b = {.req = {.timeout_ms = 15000}};
    char u[128];
    url_of(srv, u, sizeof(u), "/wait/rp?ms=10000&repark=1");
    b.req.url = u;
    int before = atomic_load(&why_count[P2P_HTTP_WAKE_NOTIFIED]);
    http_bg_start(&b);
    ASSERT_TRUE(wait_size(parked_of, srv, 1, 5000));
    ASSERT_EQ(p2p_http_server_notify(srv, "rp"), 1);
    /* The wake callback parks it again. */
    int64_t until = test_now_ms() + 5000;
    while (atomic_load(&why_count[P2P_HTTP_WAKE_NOTIFIED]) == before && test_now_ms() < until)
        usleep(2000);
    ASSERT_TRUE(wait_size(parked_of, srv, 1, 5000));
    ASSERT_EQ(p2p_http_server_notify(srv, "rp"), 1);
    http_bg_join(&b);
    assert_body_why(&b.resp, "notified", 2);
    http_resp_cleanup(&b.resp);
}

typedef struct multi_run {
    pthread_t thread;
    CURLM *multi;
    CURL *easy[MANY];
    http_resp resp[MANY];
    struct curl_slist *hl[MANY];
    body_reader br[MANY];
    int done;
} multi_run;

static void *multi_main(void *arg) {
    multi_run *m = arg;
    int64_t until = test_now_ms() + 30000;
    while (m->done < MANY && test_now_ms() < until) {
        int running = 0, left = 0;
        curl_multi_perform(m->multi, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
            for (int i = 0; i < MANY && msg->msg == CURLMSG_DONE; i++) {
                if (m->easy[i] != msg->easy_handle)
                    continue;
                m->resp[i].rc = msg->data.result;
                curl_easy_getinfo(m->easy[i], CURLINFO_RESPONSE_CODE, &m->resp[i].status);
                m->done++;
            }
        }
        if (m->done < MANY)
            curl_multi_poll(m->multi, NULL, 0, 100, NULL);
    }
    return NULL;
}

static int64_t clock_ms(clockid_t id) {
    struct timespec ts;
    ASSERT_EQ(clock_gettime(id, &ts), 0);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CPU time of the process minus the client's thread: the server's share. */
static int64_t server_cpu_ms(pthread_t client) {
    clockid_t cid;
    ASSERT_EQ(pthread_getcpuclockid(client, &cid), 0);
    return clock_ms(CLOCK_PROCESS_CPUTIME_ID) - clock_ms(cid);
}

static void test_many_released_at_once(void) {
    static multi_run m;
    memset(&m, 0, sizeof(m));
    m.multi = curl_multi_init();
    char u[128];
    url_of(srv, u, sizeof(u), "/wait/many?ms=30000");
    for (int i = 0; i < MANY; i++) {
        m.easy[i] = curl_easy_init();
        http_setup(m.easy[i], &(http_req){.url = u, .timeout_ms = 30000}, &m.resp[i], &m.br[i],
                   &m.hl[i]);
        curl_multi_add_handle(m.multi, m.easy[i]);
    }
    ASSERT_EQ(pthread_create(&m.thread, NULL, multi_main, &m), 0);
    ASSERT_TRUE(wait_size(parked_of, srv, MANY, 15000));
    /* Idle waiters cost no CPU: no thread wakes up while nothing happens. */
    int64_t c0 = server_cpu_ms(m.thread);
    usleep(500000);
    int64_t used = server_cpu_ms(m.thread) - c0;
    fprintf(stderr, "   %d parked: server used %" PRId64 " ms CPU over 500 ms idle\n", MANY, used);
    ASSERT_LT(used, 10);
    int64_t t0 = test_now_ms();
    ASSERT_EQ(p2p_http_server_notify(srv, "many"), MANY);
    pthread_join(m.thread, NULL);
    fprintf(stderr, "   %d released in %" PRId64 " ms\n", MANY, test_now_ms() - t0);
    ASSERT_EQ(m.done, MANY);
    for (int i = 0; i < MANY; i++) {
        ASSERT_EQ(m.resp[i].rc, CURLE_OK);
        ASSERT_EQ(m.resp[i].status, 200);
        ASSERT_STR_CONTAINS(m.resp[i].body, "\"notified\"");
        curl_multi_remove_handle(m.multi, m.easy[i]);
        curl_easy_cleanup(m.easy[i]);
        curl_slist_free_all(m.hl[i]);
        http_resp_cleanup(&m.resp[i]);
    }
    curl_multi_cleanup(m.multi);
    ASSERT_EQ(p2p_http_server_parked(srv), 0);
}

static void test_client_hangs_up_while_parked(void) {
    int closed = atomic_load(&why_count[P2P_HTTP_WAKE_CLOSED]);
    char u[128];
    url_of(srv, u, sizeof(u), "/wait/gone?ms=20000");
    http_resp r;
    http_do(&(http_req){.url = u, .timeout_ms = 300}, &r);
    ASSERT_EQ(r.rc, CURLE_OPERATION_TIMEDOUT);
    http_resp_cleanup(&r);
    /* Seen through the socket at once, not at the 20 s deadline. */
    ASSERT_TRUE(wait_size(parked_of, srv, 0, 3000));
    int64_t until = test_now_ms() + 3000;
    while (atomic_load(&why_count[P2P_HTTP_WAKE_CLOSED]) == closed && test_now_ms() < until)
        usleep(2000);
    ASSERT_EQ(atomic_load(&why_count[P2P_HTTP_WAKE_CLOSED]), closed + 1);
    ASSERT_EQ(p2p_http_server_notify(srv, "gone"), 0);
    /* The server still serves. */
    url_of(srv, u, sizeof(u), "/wait/t?ms=0");
    http_do(&(http_req){.url = u}, &r);
    assert_body_why(&r, "timeout", 1);
    http_resp_cleanup(&r);
}

static void test_stop_with_parked_and_unanswered(void) {
    enum { N = 20 };
    p2p_http_server *s = start();
    static http_bg b[N + 1];
    char u[128], never[128];
    url_of(s, u, sizeof(u), "/wait/s?ms=30000");
    url_of(s, never, sizeof(never), "/never");
    for (int i = 0; i <= N; i++) {
        b[i] = (http_bg){.req = {.url = i < N ? u : never, .timeout_ms = 15000}};
        http_bg_start(&b[i]);
    }
    ASSERT_TRUE(wait_size(parked_of, s, N, 5000));
    int64_t until = test_now_ms() + 5000;
    while (atomic_load(&never_req) == NULL && test_now_ms() < until)
        usleep(2000);
    ASSERT_TRUE(atomic_load(&never_req) != NULL);
    int shutdowns = atomic_load(&why_count[P2P_HTTP_WAKE_SHUTDOWN]);
    int64_t t0 = test_now_ms();
    p2p_http_server_stop(s);
    int64_t took = test_now_ms() - t0;
    fprintf(stderr, "   stop with %d parked + 1 unanswered took %" PRId64 " ms\n", N, took);
    ASSERT_GE(took, 300); /* the grace for the unanswered one */
    ASSERT_LT(took, 5000);
    ASSERT_EQ(atomic_load(&why_count[P2P_HTTP_WAKE_SHUTDOWN]), shutdowns + N);
    for (int i = 0; i <= N; i++) {
        http_bg_join(&b[i]);
        assert_json_error(&b[i].resp, 503, "canceled");
        ASSERT_STR_CONTAINS(b[i].resp.body, i < N ? "woken by shutdown" : "stopping");
        http_resp_cleanup(&b[i].resp);
    }
    /* A late answer to the request stop answered is dropped, not a crash. */
    p2p_http_respond_empty(atomic_load(&never_req), 200);
    p2p_http_server_free(s);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    srv = start();
    TEST_RUN(test_notify_releases_at_once);
    TEST_RUN(test_timeout);
    TEST_RUN(test_repark);
    TEST_RUN(test_many_released_at_once);
    TEST_RUN(test_client_hangs_up_while_parked);
    TEST_RUN(test_stop_with_parked_and_unanswered);
    p2p_http_server_free(srv);
    curl_global_cleanup();
    return 0;
}
