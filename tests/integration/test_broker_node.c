/* The broker's node routes over HTTP: health (public), functions (the
 * registered schemas and fingerprints), nodes (itself, then its peers),
 * metrics in the Prometheus text format, the status page; and request
 * signing on every route but health. */
#include "broker_fixture.h"

#include "version.h"

#include <string.h>

static broker B;

static void test_health_is_public(void) {
    p2p_http_client *anon = harness_client_new(NULL, 0, 10000, NULL);
    ASSERT_TRUE(anon != NULL);
    harness_reply r;
    harness_get(anon, B.url, "/health", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "ok");
    ASSERT_STR_EQ(harness_reply_str(&r, "version"), P2P_VERSION);
    const char *node = harness_reply_str(&r, "node");
    ASSERT_TRUE(node != NULL && strlen(node) == 36);
    harness_reply_cleanup(&r);
    p2p_http_client_free(anon);
}

static void test_functions_lists_schemas(void) {
    harness_reply r;
    harness_get(B.client, B.url, "/api/v1/functions", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    json_t *list = json_object_get(r.json, "functions");
    ASSERT_TRUE(json_is_array(list));
    ASSERT_EQ(json_array_size(list), FX_FN_COUNT);
    for (int f = 0; f < FX_FN_COUNT; f++) {
        json_t *want = NULL;
        ASSERT_OK(p2p_schema_to_json(fx_schema((fx_fn)f), &want, NULL));
        bool found = false;
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            if (json_equal(item, want))
                found = true;
        }
        if (!found)
            TEST_FAIL_("schema %s not listed as is in %s", fx_name((fx_fn)f), r.body);
        json_decref(want);
    }
    harness_reply_cleanup(&r);
}

static void test_nodes_lists_itself_then_peers(void) {
    harness_reply h, r;
    harness_get(B.client, B.url, "/health", 0, &h);
    HARNESS_EXPECT(&h, 200, NULL);
    harness_get(B.client, B.url, "/api/v1/nodes", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    json_t *nodes = json_object_get(r.json, "nodes");
    ASSERT_EQ(json_array_size(nodes), 2);
    json_t *self = json_array_get(nodes, 0), *peer = json_array_get(nodes, 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(self, "uuid")), harness_reply_str(&h, "node"));
    ASSERT_STR_EQ(json_string_value(json_object_get(self, "url")), B.url);
    ASSERT_STR_EQ(json_string_value(json_object_get(peer, "url")), "http://127.0.0.1:9");
    ASSERT_TRUE(json_is_null(json_object_get(peer, "uuid")));
    harness_reply_cleanup(&h);
    harness_reply_cleanup(&r);
}

static void test_metrics_format(void) {
    /* One call per visible state of FX_ADD, so the gauges have something. */
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    json_t *args = fx_add_args(1, 1);
    fx_push(&B, NULL, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);

    harness_get(B.client, B.url, "/metrics", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_CONTAINS(r.body, "# TYPE p2prpc_calls gauge");
    ASSERT_STR_CONTAINS(r.body, "# TYPE p2prpc_http_request_duration_seconds histogram");
    ASSERT_GE(fx_metric(r.body, "p2prpc_claims_total", NULL), 1);
    ASSERT_GE(fx_metric(r.body, "p2prpc_http_request_duration_seconds_count", NULL), 2);
    ASSERT_GE(fx_metric(r.body, "p2prpc_http_request_duration_seconds_sum", NULL), 0);
    const char *inf[] = {"le=\"+Inf\"", NULL};
    ASSERT_GE(fx_metric(r.body, "p2prpc_http_request_duration_seconds_bucket", inf), 2);
    ASSERT_GE(fx_metric(r.body, "p2prpc_blob_bytes", NULL), 0);
    ASSERT_GE(fx_metric(r.body, "p2prpc_blobs", NULL), 0);
    /* Every function and every status has its line, zero or not. */
    static const char *const statuses[] = {"pushed", "queued", "running",
                                           "done",   "failed", "terminated"};
    for (int f = 0; f < FX_FN_COUNT; f++) {
        for (int s = 0; s < 6; s++) {
            char fl[160], sl[64];
            snprintf(fl, sizeof(fl), "function=\"%s\"", fx_name((fx_fn)f));
            snprintf(sl, sizeof(sl), "status=\"%s\"", statuses[s]);
            const char *labels[] = {fl, sl, NULL};
            double v = fx_metric(r.body, "p2prpc_calls", labels);
            if (v < 0)
                TEST_FAIL_("no p2prpc_calls line for %s %s", fl, sl);
            ASSERT_EQ((long long)v, f == FX_ADD && s == 2 ? 1 : 0);
        }
    }
    harness_reply_cleanup(&r);
}

static void test_status_page(void) {
    harness_reply r;
    harness_get(B.client, B.url, "/", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_CONTAINS(r.body, "<");
    ASSERT_STR_CONTAINS(r.body, "p2prpc_add");
    harness_reply_cleanup(&r);
}

/* Every route but health wants a good signature. */
static void test_unsigned_and_badly_signed_get_401(void) {
    static const char *const paths[] = {"/api/v1/functions", "/api/v1/nodes", "/metrics", "/",
                                        "/api/v1/p2prpc_add/pull_update?identifier="
                                        "0000000000000000000000000000000000000000000000000000"
                                        "000000000000"};
    p2p_http_client *anon = harness_client_new(NULL, 0, 10000, NULL);
    const unsigned char wrong[] = "not the broker's secret";
    p2p_http_client *bad = harness_client_new(wrong, sizeof(wrong) - 1, 10000, NULL);
    ASSERT_TRUE(anon != NULL && bad != NULL);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        harness_reply r;
        harness_get(anon, B.url, paths[i], 0, &r);
        HARNESS_EXPECT(&r, 401, "unauthorized");
        harness_reply_cleanup(&r);
        harness_get(bad, B.url, paths[i], 0, &r);
        HARNESS_EXPECT(&r, 401, "unauthorized");
        harness_reply_cleanup(&r);
    }
    p2p_http_client_free(anon);
    p2p_http_client_free(bad);
}

int main(void) {
    const char *peer[] = {"--peer", "http://127.0.0.1:9", NULL};
    broker_config cfg = {.extra_args = peer};
    broker_init(&B, "broker_node", &cfg);
    broker_start(&B);
    TEST_RUN(test_health_is_public);
    TEST_RUN(test_functions_lists_schemas);
    TEST_RUN(test_nodes_lists_itself_then_peers);
    TEST_RUN(test_metrics_format);
    TEST_RUN(test_status_page);
    TEST_RUN(test_unsigned_and_badly_signed_get_401);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
