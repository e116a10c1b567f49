/* A worker facing brokers that do not serve exactly what it serves, or that
 * refuse it:
 * - a broker that serves only some of its functions (the broker tests' set:
 *   p2prpc_add with the same signature, and functions the worker does not
 *   have): p2prpc_add calls are done, and the worker does not hammer the
 *   broker about the rest;
 * - a broker whose p2prpc_slow has another signature (another fingerprint):
 *   the worker never claims those calls (it would decode wrong arguments),
 *   and still serves p2prpc_add there;
 * - a worker with the wrong secret: every request is refused with 401; it
 *   keeps running, backs off instead of spinning, and claims nothing.
 * "Does not hammer" is measured from the broker's own request counters. */
#include "worker_fixture.h"

#include "ident.h"
#include "value.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Answers the broker gave so far (every class), less the metrics reads. */
static double answers(broker *b) {
    char *text = fx_metrics_text(b);
    double sum = 0;
    static const char *const classes[] = {"class=\"2xx\"", "class=\"4xx\"", "class=\"5xx\""};
    for (int i = 0; i < 3; i++) {
        const char *labels[] = {classes[i], NULL};
        double v = fx_metric(text, "p2prpc_http_responses_total", labels);
        sum += v > 0 ? v : 0;
    }
    free(text);
    return sum;
}

/* Requests the worker made in `ms` of idling (our own metrics reads are the
 * 2 around the window, and are subtracted). */
static double requests_while_idle(broker *b, long ms) {
    double before = answers(b);
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
    return answers(b) - before - 1;
}

static void expect_add_done(broker *b, long long x) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(x, 1);
    wf_push(b, WF_ADD, args, id);
    json_decref(args);
    json_t *call = wf_await_status(b, WF_ADD, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), x + 1);
    json_decref(call);
}

static void test_broker_with_some_of_the_functions(void) {
    broker b;
    broker_init(&b, "wsch_subset_b", NULL); /* the broker tests' three functions */
    broker_start(&b);
    worker w;
    worker_start_for(&w, "wsch_subset_w", &b, &(worker_config){.poll_wait = "2"});
    expect_add_done(&b, 1);
    /* Idle: one parked long-poll for p2prpc_add, renewed every 2 s; the six
     * functions the broker lacks are not asked about in a loop. */
    double n = requests_while_idle(&b, 5000);
    fprintf(stderr, "worker idle 5 s at a broker with 1 of its 7 functions: %.0f requests\n", n);
    ASSERT_TRUE(n <= 15);
    expect_add_done(&b, 2);
    ASSERT_TRUE(harness_proc_running(w.proc));
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

/* Writes p2prpc_add and a p2prpc_slow(seconds, count) -> done to the
 * broker's schema file; returns that p2prpc_slow (caller frees). */
static p2p_schema *write_mismatched_schemas(broker *b) {
    static const p2p_param in[] = {{"seconds", P2P_TYPE_DOUBLE}, {"count", P2P_TYPE_INT64}};
    static const p2p_param out[] = {{"done", P2P_TYPE_INT64}};
    p2p_schema *slow = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_slow", in, 2, out, 1, &slow, NULL));
    ASSERT_TRUE(strcmp(p2p_schema_fingerprint(slow), p2p_schema_fingerprint(wf_schema(WF_SLOW))) !=
                0);
    json_t *all = json_array(), *one = NULL;
    ASSERT_OK(p2p_schema_to_json(wf_schema(WF_ADD), &one, NULL));
    ASSERT_OK(json_array_append_new(all, one));
    ASSERT_OK(p2p_schema_to_json(slow, &one, NULL));
    ASSERT_OK(json_array_append_new(all, one));
    ASSERT_OK(json_dump_file(all, b->schema_path, 0));
    json_decref(all);
    return slow;
}

static void test_fingerprint_mismatch_is_never_claimed(void) {
    broker b;
    broker_init(&b, "wsch_mismatch_b", NULL);
    p2p_schema *slow = write_mismatched_schemas(&b);
    broker_start(&b);
    worker w;
    worker_start_for(&w, "wsch_mismatch_w", &b, &(worker_config){.poll_wait = "2"});

    /* A call of the broker's p2prpc_slow, queued. */
    json_t *args = json_pack("{s:f, s:i}", "seconds", 0.1, "count", 2);
    p2p_value v[2];
    size_t n_in = 0;
    const p2p_param *params = p2p_schema_inputs(slow, &n_in);
    ASSERT_OK(p2p_value_list_from_json(params, n_in, args, v, NULL));
    char id[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_ident_compute(slow, v, id, NULL));
    p2p_value_list_cleanup(v, n_in);
    json_t *body = json_pack("{s:s, s:s, s:o, s:b}", "identifier", id, "fingerprint",
                             p2p_schema_fingerprint(slow), "args", args, "execute", 1);
    harness_reply r;
    harness_post_json(b.client, b.url, "/api/v1/p2prpc_slow/push_update", body, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(body);

    expect_add_done(&b, 3);
    /* Three seconds later (polls every 2 s) it is still queued, never run. */
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/p2prpc_slow/pull_update?identifier=%s&since=0&wait=0",
             id);
    harness_get(b.client, b.url, path, 0, &r);
    long long version = harness_reply_int(&r, "version", -1);
    harness_reply_cleanup(&r);
    snprintf(path, sizeof(path), "/api/v1/p2prpc_slow/pull_update?identifier=%s&since=%lld&wait=3",
             id, version);
    harness_get(b.client, b.url, path, 33000, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    ASSERT_EQ(harness_reply_int(&r, "attempts", -1), 0);
    harness_reply_cleanup(&r);
    char *metrics = fx_metrics_text(&b);
    ASSERT_TRUE(fx_metric(metrics, "p2prpc_claims_total", NULL) == 1); /* the add */
    free(metrics);

    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
    p2p_schema_free(slow);
}

static void test_wrong_secret(void) {
    broker b;
    wf_broker_init(&b, "wsch_secret_b", NULL);
    broker_start(&b);
    worker w;
    worker_init(&w, "wsch_secret_w", NULL, &(worker_config){.poll_wait = "2"});
    char wrong[HARNESS_PATH_MAX];
    unsigned char secret[32];
    snprintf(wrong, sizeof(wrong), "%.900s/wrong_secret", w.dir);
    ASSERT_OK(harness_write_secret(wrong, secret, sizeof(secret), NULL));
    snprintf(w.secret_path, sizeof(w.secret_path), "%s", wrong);
    worker_discover(&w, (const char *[]){b.url, NULL});
    worker_start(&w);

    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(9, 9);
    wf_push(&b, WF_ADD, args, id);
    json_decref(args);
    /* Let the backoff settle, then count the refused requests. */
    nanosleep(&(struct timespec){2, 0}, NULL);
    double n = requests_while_idle(&b, 5000);
    fprintf(stderr, "worker with a wrong secret: %.0f requests in 5 s\n", n);
    ASSERT_TRUE(n <= 40);
    ASSERT_TRUE(harness_proc_running(w.proc));
    json_t *call = wf_pull(&b, WF_ADD, id);
    wf_expect_status(call, "queued");
    json_decref(call);
    ASSERT_TRUE(worker_log_contains(&w, "401") || worker_log_contains(&w, "unauthorized") ||
                worker_log_contains(&w, "signature"));
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

int main(void) {
    TEST_RUN(test_broker_with_some_of_the_functions);
    TEST_RUN(test_fingerprint_mismatch_is_never_claimed);
    TEST_RUN(test_wrong_secret);
    return 0;
}
