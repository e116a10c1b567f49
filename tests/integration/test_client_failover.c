/* Picking a broker, with real broker processes:
 * - two brokers in the discovery file and the first one down: calls go to
 *   the second (its metrics count them), the client counts the failover;
 * - brokers that answer 503 to everything, 200 to /health but 500 to the
 *   calls, or nothing at all (a request timeout): each skipped once, the
 *   call goes to the real one;
 * - every broker down: P2P_EUNAVAIL "no broker reachable" naming each URL,
 *   quickly, each broker tried once;
 * - gossip: a client that knows one broker learns its --peer from
 *   GET /api/v1/nodes, and fails over to it once the first one is gone;
 * - a future stays with its broker: the broker restarts (same port, same
 *   store) during a wait and the wait still gets the result; a broker that
 *   stays down ends the wait within its timeout;
 * - a fingerprint mismatch (409) is P2P_ECONFLICT at once, naming both
 *   fingerprints, with no failover to the next broker. */
#include "client_fixture.h"

#include <stdio.h>
#include <string.h>

static broker B1, B2;
static worker W; /* serves B2 (and B3 when it runs) */
static char DIR_[HARNESS_PATH_MAX];

static void write_discovery(const char *path, const char *const *urls) {
    char text[2048];
    size_t n = 0;
    int k = snprintf(text, sizeof(text), "# brokers of the failover test\n\n");
    n += (size_t)k;
    for (size_t i = 0; urls[i] != NULL; i++) {
        k = snprintf(text + n, sizeof(text) - n, "%s\n", urls[i]);
        ASSERT_TRUE(k > 0 && (size_t)k < sizeof(text) - n);
        n += (size_t)k;
    }
    ASSERT_OK(harness_write_file(path, text, n, NULL));
}

static p2p_client *client_of_discovery(const char *name, const char *const *urls) {
    char cache[HARNESS_PATH_MAX], disc[HARNESS_PATH_MAX], file[128];
    snprintf(file, sizeof(file), "%s.discovery", name);
    cf_path(cache, DIR_, name);
    cf_path(disc, DIR_, file);
    write_discovery(disc, urls);
    p2p_client_options o;
    cf_options(&o, NULL, 0, B2.secret_path, cache);
    o.discovery_file = disc;
    return cf_client(&o);
}

static void test_first_discovery_entry_down(void) {
    /* B1 has been stopped: its port refuses connections. */
    p2p_client *c = client_of_discovery("first_down", (const char *[]){B1.url, B2.url, NULL});
    double created0 = cf_metric(&B2, "p2prpc_calls_created_total");
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 5; i++) {
        p2p_value args[2];
        cf_args_add(args, 7000 + i, 1);
        p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
        CF_EXPECT_BROKER(f, B2.url);
        ASSERT_EQ(cf_get(f, 1)[0].as.i64, 7001 + i);
        ASSERT_EQ(cf_pull_status(&B2, WF_ADD, p2p_future_identifier(f)), 200);
        p2p_future_free(f);
        p2p_value_list_cleanup(args, 2);
    }
    fprintf(stderr, "5 calls with the first broker down: %lld ms\n",
            (long long)(harness_now_ms() - t0));
    ASSERT_EQ(cf_metric(&B2, "p2prpc_calls_created_total") - created0, 5);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_GE(st.failovers, 1);
    ASSERT_EQ(st.calls_created, 5);
    p2p_client_free(c);
}

static void test_5xx_and_silent_brokers_are_skipped(void) {
    cf_fake *down = cf_fake_start(503, 503, false);
    cf_fake *half = cf_fake_start(200, 500, false);
    cf_fake *mute = cf_fake_start(0, 0, true);
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "fakes");
    const char *urls[] = {cf_fake_url(down), cf_fake_url(half), cf_fake_url(mute), B2.url};
    p2p_client_options o;
    cf_options(&o, urls, 4, B2.secret_path, cache);
    o.request_timeout_ms = 1500;
    p2p_client *c = cf_client(&o);
    for (int i = 0; i < 2; i++) {
        int64_t t0 = harness_now_ms();
        int before[3] = {cf_fake_requests(down), cf_fake_requests(half), cf_fake_requests(mute)};
        p2p_value args[2];
        cf_args_add(args, 8000 + i, 1);
        p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
        CF_EXPECT_BROKER(f, B2.url);
        ASSERT_EQ(cf_get(f, 1)[0].as.i64, 8001 + i);
        int64_t ms = harness_now_ms() - t0;
        int got[3] = {cf_fake_requests(down) - before[0], cf_fake_requests(half) - before[1],
                      cf_fake_requests(mute) - before[2]};
        fprintf(stderr,
                "submit %d past three bad brokers: %lld ms; requests 503 %d, 500 %d, mute %d\n", i,
                (long long)ms, got[0], got[1], got[2]);
        /* Each bad broker tried at most once per submit (a request or two). */
        for (int k = 0; k < 3; k++)
            ASSERT_LE(got[k], 3);
        ASSERT_LT(ms, 30000);
        p2p_future_free(f);
        p2p_value_list_cleanup(args, 2);
    }
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_GE(st.failovers, 3);
    p2p_client_free(c);
    cf_fake_stop(down);
    cf_fake_stop(half);
    cf_fake_stop(mute);
}

static void test_every_broker_down(void) {
    char dead[3][64];
    for (int i = 0; i < 3; i++)
        snprintf(dead[i], sizeof(dead[i]), "http://127.0.0.1:%d", wf_free_port());
    char cache[HARNESS_PATH_MAX], disc[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "all_down");
    cf_path(disc, DIR_, "all_down.discovery");
    write_discovery(disc, (const char *[]){dead[1], B1.url, NULL});
    const char *given[] = {dead[0]};
    p2p_client_options o;
    cf_options(&o, given, 1, B2.secret_path, cache);
    o.discovery_file = disc;
    p2p_client *c = cf_client(&o);
    p2p_value args[2];
    cf_args_add(args, 1, 1);
    for (int round = 0; round < 2; round++) {
        p2p_future *f = NULL;
        p2p_error err = {0};
        int64_t t0 = harness_now_ms();
        int rc = p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, &f, &err);
        int64_t ms = harness_now_ms() - t0;
        fprintf(stderr, "every broker down: %lld ms\n", (long long)ms);
        CF_EXPECT_ERROR(rc, &err, P2P_EUNAVAIL, "no broker reachable");
        ASSERT_TRUE(f == NULL);
        ASSERT_STR_CONTAINS(err.msg, dead[0]);
        ASSERT_STR_CONTAINS(err.msg, dead[1]);
        ASSERT_STR_CONTAINS(err.msg, B1.url);
        ASSERT_STR_CONTAINS(err.msg, "tried 3");
        /* Refused connections: no endless loop, no long backoff. */
        ASSERT_LT(ms, 20000);
    }
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_gossip_then_failover(void) {
    broker b3;
    const char *peer_args[] = {"--peer", B2.url, NULL};
    cf_broker_init(&b3, "cfail_b3", &(broker_config){.extra_args = peer_args}, &B2);
    broker_start(&b3);
    worker w3;
    worker_init(&w3, "cfail_w3", B2.secret_path, &(worker_config){.concurrency = 2});
    worker_discover(&w3, (const char *[]){b3.url, NULL});
    worker_start(&w3);

    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "gossip");
    p2p_client *c = cf_client_for(&b3, cache);
    p2p_value args[2];
    cf_args_add(args, 900, 1);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    CF_EXPECT_BROKER(f, b3.url);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 901);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);

    /* b3 goes away; the client only knows B2 from b3's node list. */
    worker_stop(&w3, 30000);
    broker_stop(&b3);
    double created0 = cf_metric(&B2, "p2prpc_calls_created_total");
    cf_args_add(args, 900, 2);
    f = cf_submit(c, WF_ADD, args, NULL);
    CF_EXPECT_BROKER(f, B2.url);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 902);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    ASSERT_EQ(cf_metric(&B2, "p2prpc_calls_created_total") - created0, 1);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_GE(st.failovers, 1);
    p2p_client_free(c);
    worker_cleanup(&w3);
    broker_cleanup(&b3);
}

static void test_wait_survives_broker_restart(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "restart");
    p2p_client *c = cf_client_for(&B2, cache);
    p2p_value args[2];
    cf_args_slow(args, 4.0, 4);
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    json_t *call = wf_await_status(&B2, WF_SLOW, p2p_future_identifier(f), "running", 60000);
    json_decref(call);
    char url[HARNESS_URL_MAX];
    snprintf(url, sizeof(url), "%s", B2.url);
    wf_broker_restart_same_port(&B2, 1500);
    ASSERT_STR_EQ(B2.url, url);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 4);
    CF_EXPECT_BROKER(f, url);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_wait_on_a_broker_that_stays_down(void) {
    broker b4;
    cf_broker_init(&b4, "cfail_b4", NULL, &B2);
    broker_start(&b4);
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "stays_down");
    p2p_client *c = cf_client_for(&b4, cache);
    p2p_value args[2];
    cf_args_add(args, 4, 4);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL); /* no worker: stays queued */
    broker_kill(&b4);
    p2p_error err = {0};
    int64_t t0 = harness_now_ms();
    int rc = p2p_future_wait(f, 3000, &err);
    int64_t ms = harness_now_ms() - t0;
    fprintf(stderr, "wait(3000) on a dead broker: %s after %lld ms: %s\n", p2p_error_name(rc),
            (long long)ms, err.msg);
    ASSERT_TRUE(rc == P2P_EUNAVAIL || rc == P2P_ETIMEDOUT);
    ASSERT_LT(ms, 3000 + 10000);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    broker_cleanup(&b4);
}

static void test_fingerprint_mismatch_no_failover(void) {
    /* The client's idea of p2prpc_add differs from the brokers'. */
    static const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_DOUBLE}};
    static const p2p_param out[] = {{"sum", P2P_TYPE_INT64}};
    p2p_schema *mine = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_add", in, 2, out, 1, &mine, NULL));
    broker b5;
    cf_broker_init(&b5, "cfail_b5", NULL, &B2);
    broker_start(&b5);
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "conflict");
    const char *urls[] = {b5.url, B2.url};
    p2p_client_options o;
    cf_options(&o, urls, 2, B2.secret_path, cache);
    p2p_client *c = cf_client(&o);
    const char *cls4[] = {"class=\"4xx\"", NULL};
    char *text = fx_metrics_text(&B2);
    double b2_4xx = fx_metric(text, "p2prpc_http_responses_total", cls4);
    free(text);
    double b2_created = cf_metric(&B2, "p2prpc_calls_created_total");

    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], 1);
    ASSERT_OK(p2p_value_set_double(&args[1], 2.5, NULL));
    p2p_future *f = NULL;
    p2p_error err = {0};
    int64_t t0 = harness_now_ms();
    int rc = p2p_client_submit(c, mine, args, NULL, 0, NULL, &f, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ECONFLICT, p2p_schema_fingerprint(mine));
    ASSERT_STR_CONTAINS(err.msg, p2p_schema_fingerprint(wf_schema(WF_ADD)));
    ASSERT_TRUE(f == NULL);
    ASSERT_LT(harness_now_ms() - t0, 10000);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.failovers, 0);
    ASSERT_EQ(st.calls_created, 0);
    /* B2 would have answered 409 too: it was never asked. */
    text = fx_metrics_text(&B2);
    double after = fx_metric(text, "p2prpc_http_responses_total", cls4);
    free(text);
    ASSERT_TRUE(after == b2_4xx);
    ASSERT_EQ(cf_metric(&B2, "p2prpc_calls_created_total") - b2_created, 0);
    ASSERT_EQ(cf_calls_total(&b5, WF_ADD), 0);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    p2p_schema_free(mine);
    broker_cleanup(&b5);
}

int main(void) {
    cf_broker_init(&B1, "cfail_b1", NULL, NULL);
    cf_broker_init(&B2, "cfail_b2", NULL, &B1);
    broker_start(&B1);
    broker_start(&B2);
    worker_start_for(&W, "cfail_w", &B2, &(worker_config){.concurrency = 2});
    broker_stop(&B1); /* down from here on: its URL refuses connections */
    p2p_error err;
    if (harness_scratch_dir("cfail_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_first_discovery_entry_down);
    TEST_RUN(test_every_broker_down);
    TEST_RUN(test_5xx_and_silent_brokers_are_skipped);
    TEST_RUN(test_fingerprint_mismatch_no_failover);
    TEST_RUN(test_gossip_then_failover);
    TEST_RUN(test_wait_on_a_broker_that_stays_down);
    TEST_RUN(test_wait_survives_broker_restart);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    broker_cleanup(&B1);
    broker_cleanup(&B2);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
