/* The database goes away under a running broker, and comes back.
 *
 * The broker reaches MongoDB through a TCP proxy (mongo_fixture.h) that the
 * test takes down: every connection is cut and new ones are closed at once,
 * as a crashed or unreachable server does, while the data stays (so this
 * runs the same against jongodb and a real MongoDB).
 * - while it is down, the routes that need the store answer 503
 *   {"error":{"code":"unavailable","message":"database unavailable: ..."}}
 *   within the driver's server selection timeout, and the broker stays up
 *   (/health answers 200);
 * - once it is back, the same broker process, never restarted, creates and
 *   reads calls again by itself (bounded retries, 250 ms apart), a worker
 *   started before the outage gets the work done, the maintenance passes
 *   that failed meanwhile were counted (p2prpc_maintenance_errors_total), and
 *   the store's watcher said once that the database was gone and once that it
 *   answers again (no line per failed look);
 * - a broker started while the database is down exits at once (status not 0)
 *   saying "database unavailable", instead of serving 503s from the start; so
 *   does a broker given a malformed --store mongodb:// URI.
 * The proxy also counts connections: 100 requests before the outage open no
 * more than a handful, so the broker keeps a client pool rather than a client
 * per operation. */
#include "fsutil.h"
#include "mongo_fixture.h"
#include "worker_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static mongo_fixture M;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* POST push_update for p2prpc_add(a, x) with execute, as the worker's
 * schema has it; the answer in `r`. */
static void push(broker *b, long long a, long long x, char id[P2P_HASH_HEX_LEN + 1],
                 harness_reply *r) {
    json_t *args = fx_add_args(a, x);
    wf_call_id(WF_ADD, args, id);
    json_t *body = json_pack("{s:s, s:s, s:O, s:b}", "identifier", id, "fingerprint",
                             p2p_schema_fingerprint(wf_schema(WF_ADD)), "args", args, "execute", 1);
    ASSERT_TRUE(body != NULL);
    fx_post(b, NULL, FX_ADD, "push_update", NULL, body, r);
    json_decref(body);
    json_decref(args);
}

static void expect_unavailable(const harness_reply *r, const char *what) {
    if (r->status != 503)
        fprintf(stderr, "%s while the database is down: %ld %s\n", what, r->status, r->body);
    HARNESS_EXPECT(r, 503, "unavailable");
    json_t *msg = json_object_get(json_object_get(r->json, "error"), "message");
    ASSERT_STR_CONTAINS(json_string_value(msg), "database unavailable");
    fprintf(stderr, "%s while down: 503 in %lld ms: %s\n", what, (long long)r->ms,
            json_string_value(msg));
    /* The driver gives up after its server selection timeout (5 s unless the
     * URI says otherwise); allow for a loaded machine. */
    ASSERT_LT(r->ms, 30000);
}

static mongo_proxy *proxy;
static broker B;

/* While the proxy is down: 503s with the reason, a broker that stays up. */
static void expect_down(const char *existing, const worker *w) {
    int64_t down_at = harness_now_ms();
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    push(&B, 3, 4, id, &r);
    expect_unavailable(&r, "push_update");
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, existing, -1, -1, &r);
    expect_unavailable(&r, "pull_update");
    harness_reply_cleanup(&r);
    ASSERT_OK(harness_get(B.client, B.url, "/health", 10000, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    ASSERT_TRUE(harness_proc_running(B.proc));
    ASSERT_TRUE(harness_proc_running(w->proc));
    /* Down longer than the driver's server selection timeout (5 s), so that
     * a maintenance pass fails rather than just waiting for the server. */
    while (harness_now_ms() - down_at < 12000)
        sleep_ms(250);
    fprintf(stderr, "down for %lld ms\n", (long long)(harness_now_ms() - down_at));
}

/* Pushes p2prpc_add(a, x) until it is created (bounded: 120 tries 250 ms
 * apart); returns the refused tries. */
static int push_until_created(long long a, long long x, char id[P2P_HASH_HEX_LEN + 1]) {
    harness_reply r;
    int tries = 0;
    for (;; tries++) {
        push(&B, a, x, id, &r);
        if (r.status == 201 || tries >= 120)
            break;
        harness_reply_cleanup(&r);
        sleep_ms(250);
    }
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    return tries;
}

/* Lines of the broker's log that contain `text`. */
static int log_lines(const char *text) {
    FILE *f = fopen(B.log, "r");
    ASSERT_TRUE(f != NULL);
    char line[2048];
    int n = 0;
    for (int i = 0; i < 1000000 && fgets(line, sizeof(line), f) != NULL; i++)
        n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

/* The watcher's two lines, once each (bounded wait for the second: its next
 * look comes within a second). */
static void expect_watcher_said_once(void) {
    static const char gone[] = "store watcher: database unavailable";
    static const char back[] = "store watcher: the database answers again";
    for (int i = 0; i < 40 && log_lines(back) == 0; i++)
        sleep_ms(250);
    ASSERT_EQ(log_lines(gone), 1);
    ASSERT_EQ(log_lines(back), 1);
}

/* Down before the broker starts: it refuses to start, and says why. */
static void expect_start_refused(void) {
    mongo_proxy_set_down(proxy, true);
    p2p_error err;
    int64_t t0 = harness_now_ms();
    ASSERT_NE(broker_try_start(&B, &err), 0);
    fprintf(stderr, "start with the database down: refused after %lld ms (%s)\n",
            (long long)(harness_now_ms() - t0), err.msg);
    size_t len = 0;
    char *log = NULL;
    ASSERT_OK(p2p_fs_read_file(B.log, 1 << 20, &log, &len, NULL));
    ASSERT_STR_CONTAINS(log, "database unavailable");
    free(log);
    /* A malformed URI: refused before any connection. */
    snprintf(B.store, sizeof(B.store), "mongodb://127.0.0.1:1/bad.name");
    ASSERT_OK(harness_write_file(B.log, "", 0, NULL));
    ASSERT_NE(broker_try_start(&B, &err), 0);
    ASSERT_OK(p2p_fs_read_file(B.log, 1 << 20, &log, &len, NULL));
    fprintf(stderr, "malformed URI: %s", log);
    ASSERT_STR_CONTAINS(log, "bad MongoDB URI"); /* the URI itself may hold a password */
    free(log);
}

/* 100 requests that need the store open only a few connections. */
static void expect_pooled(const char *existing) {
    int before = mongo_proxy_accepted(proxy);
    for (int i = 0; i < 100; i++) {
        harness_reply r;
        fx_pull(&B, NULL, FX_ADD, existing, -1, -1, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        harness_reply_cleanup(&r);
    }
    int opened = mongo_proxy_accepted(proxy) - before;
    fprintf(stderr, "100 requests opened %d new database connections (%d in all)\n", opened,
            mongo_proxy_accepted(proxy));
    ASSERT_LT(opened, 10);
    ASSERT_LT(mongo_proxy_accepted(proxy), 40);
}

static void test_database_down_and_back(void) {
    char server[128];
    mongo_fixture_host_port(&M, server, sizeof(server));
    ASSERT_OK(mongo_proxy_start(server, &proxy, NULL));
    wf_broker_init(&B, "mdd_broker", NULL);
    mongo_fixture_uri_for(&M, mongo_proxy_host_port(proxy), B.store, sizeof(B.store));
    broker_start(&B);
    worker w;
    worker_start_for(&w, "mdd_worker", &B, &(worker_config){.concurrency = 1, .log_level = "info"});

    /* Up: a call is created and done. */
    char before[P2P_HASH_HEX_LEN + 1], during[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    push(&B, 1, 2, before, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_t *call = wf_await_status(&B, WF_ADD, before, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    json_decref(call);
    expect_pooled(before);

    mongo_proxy_set_down(proxy, true);
    expect_down(before, &w);

    /* Back: the same broker recovers by itself. */
    mongo_proxy_set_down(proxy, false);
    int64_t up_at = harness_now_ms();
    int tries = push_until_created(3, 4, during);
    fprintf(stderr, "recovered %lld ms after the database came back (%d refused tries)\n",
            (long long)(harness_now_ms() - up_at), tries);
    call = wf_await_status(&B, WF_ADD, during, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 7);
    json_decref(call);
    call = wf_pull(&B, WF_ADD, before);
    wf_expect_status(call, "done");
    json_decref(call);
    ASSERT_GT(mongo_proxy_accepted(proxy), 1);
    char *metrics = fx_metrics_text(&B);
    double failed_passes = fx_metric(metrics, "p2prpc_maintenance_errors_total", NULL);
    free(metrics);
    fprintf(stderr, "maintenance passes that failed while down: %.0f\n", failed_passes);
    ASSERT_GT(failed_passes, 0);
    expect_watcher_said_once();
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&B);

    expect_start_refused();
    broker_cleanup(&B);
    mongo_proxy_free(proxy);
}

int main(void) {
    mongo_fixture_start(&M, "db_down");
    TEST_RUN(test_database_down_and_back);
    mongo_fixture_cleanup(&M);
    return 0;
}
