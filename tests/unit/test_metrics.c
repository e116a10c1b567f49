/* The broker's metrics text: every family with HELP and TYPE, counters,
 * cumulative histogram buckets whose +Inf equals the count, and the gauges
 * the caller passes in. */
#include "metrics.h"
#include "test.h"

#include <pthread.h>

/* The value on the line that starts with `prefix` (followed by a space). */
static double value_of(const char *text, const char *prefix) {
    char needle[256];
    snprintf(needle, sizeof(needle), "\n%s ", prefix);
    const char *line = strstr(text, needle);
    if (line == NULL)
        TEST_FAIL_("no line %s in:\n%s", prefix, text);
    return strtod(line + strlen(needle), NULL);
}

static char *render(p2p_metrics *m, const p2p_metrics_gauges *g) {
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_metrics_render(m, g, &text, &len, NULL));
    ASSERT_EQ(strlen(text), len);
    ASSERT_TRUE(len > 0 && text[len - 1] == '\n');
    return text;
}

static void test_counters_and_gauges(void) {
    p2p_metrics *m = NULL;
    ASSERT_OK(p2p_metrics_new(&m, NULL));
    p2p_metrics_add(m, P2P_METRIC_CLAIMS, 3);
    p2p_metrics_add(m, P2P_METRIC_CLAIMS, 2);
    p2p_metrics_add(m, P2P_METRIC_EXPIRED, 7);
    p2p_metrics_add(m, P2P_METRIC_COUNTER_COUNT, 1); /* out of range: ignored */
    ASSERT_EQ(p2p_metrics_get(m, P2P_METRIC_CLAIMS), 5);
    p2p_metrics_function fns[2] = {{.name = "p2prpc_a", .counts = {1, 2, 3, 4, 5, 6}},
                                   {.name = "p2prpc_b", .counts = {0}}};
    p2p_metrics_gauges g = {.functions = fns,
                            .n_functions = 2,
                            .blobs = 9,
                            .blob_bytes = 12345,
                            .parked = 4,
                            .store = {.reads = 11, .writes = 22, .batches = 5}};
    char *text = render(m, &g);
    ASSERT_STR_CONTAINS(text, "# TYPE p2prpc_calls gauge\n");
    ASSERT_EQ(value_of(text, "p2prpc_calls{function=\"p2prpc_a\",status=\"running\"}"), 3);
    ASSERT_EQ(value_of(text, "p2prpc_calls{function=\"p2prpc_a\",status=\"terminated\"}"), 6);
    ASSERT_EQ(value_of(text, "p2prpc_calls{function=\"p2prpc_b\",status=\"queued\"}"), 0);
    ASSERT_STR_CONTAINS(text, "# TYPE p2prpc_claims_total counter\n");
    ASSERT_EQ(value_of(text, "p2prpc_claims_total"), 5);
    ASSERT_EQ(value_of(text, "p2prpc_calls_expired_total"), 7);
    ASSERT_EQ(value_of(text, "p2prpc_lease_requeued_total"), 0);
    ASSERT_EQ(value_of(text, "p2prpc_blobs"), 9);
    ASSERT_EQ(value_of(text, "p2prpc_blob_bytes"), 12345);
    ASSERT_EQ(value_of(text, "p2prpc_longpoll_waiting"), 4);
    ASSERT_EQ(value_of(text, "p2prpc_store_reads_total"), 11);
    ASSERT_EQ(value_of(text, "p2prpc_store_writes_total"), 22);
    ASSERT_EQ(value_of(text, "p2prpc_store_commits_total"), 5);
    free(text);
    p2p_metrics_free(m);
    p2p_metrics_free(NULL);
}

static void test_histogram(void) {
    p2p_metrics *m = NULL;
    ASSERT_OK(p2p_metrics_new(&m, NULL));
    p2p_metrics_gauges g = {0};
    p2p_metrics_observe_request(m, 200, 100);       /* 0.1 ms */
    p2p_metrics_observe_request(m, 201, 250);       /* on the first bound: counted in it */
    p2p_metrics_observe_request(m, 404, 3000);      /* 3 ms */
    p2p_metrics_observe_request(m, 204, 20000000);  /* 20 s long-poll */
    p2p_metrics_observe_request(m, 503, 900000000); /* past the last bucket */
    p2p_metrics_observe_request(m, 200, -5);        /* clock step: counted as 0 */
    char *text = render(m, &g);
    ASSERT_STR_CONTAINS(text, "# TYPE p2prpc_http_request_duration_seconds histogram\n");
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"0.00025\"}"), 3);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"0.0025\"}"), 3);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"0.005\"}"), 4);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"30\"}"), 5);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"300\"}"), 5);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"+Inf\"}"), 6);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_count"), 6);
    double sum = value_of(text, "p2prpc_http_request_duration_seconds_sum");
    ASSERT_TRUE(sum > 920.0033 && sum < 920.0034);
    ASSERT_EQ(value_of(text, "p2prpc_http_responses_total{class=\"2xx\"}"), 4);
    ASSERT_EQ(value_of(text, "p2prpc_http_responses_total{class=\"4xx\"}"), 1);
    ASSERT_EQ(value_of(text, "p2prpc_http_responses_total{class=\"5xx\"}"), 1);
    free(text);
    p2p_metrics_free(m);
}

static void *observe_many(void *arg) {
    p2p_metrics *m = arg;
    for (int i = 0; i < 100000; i++) {
        p2p_metrics_observe_request(m, 200, i % 5000);
        p2p_metrics_add(m, P2P_METRIC_CLAIMS, 1);
    }
    return NULL;
}

/* Rendering while other threads observe: buckets stay cumulative and never
 * pass +Inf; nothing is lost once they are done. */
static void test_concurrent(void) {
    p2p_metrics *m = NULL;
    ASSERT_OK(p2p_metrics_new(&m, NULL));
    p2p_metrics_gauges g = {0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, observe_many, m), 0);
    for (int k = 0; k < 20; k++) {
        char *text = render(m, &g);
        double inf = value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"+Inf\"}");
        double last = value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"300\"}");
        double first =
            value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"0.00025\"}");
        ASSERT_TRUE(first <= last && last <= inf);
        free(text);
    }
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    char *text = render(m, &g);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_count"), 200000);
    ASSERT_EQ(value_of(text, "p2prpc_http_request_duration_seconds_bucket{le=\"0.005\"}"), 200000);
    ASSERT_EQ(value_of(text, "p2prpc_claims_total"), 200000);
    free(text);
    p2p_metrics_free(m);
}

int main(void) {
    TEST_RUN(test_counters_and_gauges);
    TEST_RUN(test_histogram);
    TEST_RUN(test_concurrent);
    return 0;
}
