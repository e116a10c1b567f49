/* The broker's life in-process: a claim race between parked waiters, lease
 * expiry handled by the maintenance thread, stop with parked long-polls and a
 * restart on the same data, and option checks. A conformance test
 * (store_test_util.h): on SQLite, and on MongoDB with P2PRPC_TEST_STORE=mongodb. */
#include "broker_test_util.h"

typedef struct racer {
    pthread_t thread;
    char ids[32][P2P_HASH_HEX_LEN + 1];
    int n;
} racer;

/* Claims until a wait of 1 s brings nothing. */

/* Claims until a wait of 1 s brings nothing. */
static void *race(void *arg) {
    racer *r = arg;
    for (int i = 0; i < 40; i++) {
        json_t *c = claim("p2prpc_add", 1);
        if (c == NULL)
            break;
        ASSERT_LT(r->n, 32);
        snprintf(r->ids[r->n++], P2P_HASH_HEX_LEN + 1, "%s", str(c, "identifier"));
        json_decref(c);
    }
    return NULL;
}

static void test_claim_race_between_waiters(void) {
    if (st_skip_on_jongodb("claim race between waiters",
                           "its concurrent findAndModify is not atomic"))
        return;
    drain("p2prpc_add");
    enum { WAITERS = 4, CALLS = 24 };
    racer r[WAITERS];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < WAITERS; i++)
        ASSERT_EQ(pthread_create(&r[i].thread, NULL, race, &r[i]), 0);
    ASSERT_TRUE(wait_size(parked_of, NULL, WAITERS, 5000));
    char created[CALLS][P2P_HASH_HEX_LEN + 1];
    for (int i = 0; i < CALLS; i++)
        snprintf(created[i], sizeof(created[i]), "%s", create_add(1000 + i, 0, true, 201));
    int total = 0;
    for (int i = 0; i < WAITERS; i++) {
        ASSERT_EQ(pthread_join(r[i].thread, NULL), 0);
        total += r[i].n;
    }
    /* Every call was claimed exactly once. */
    ASSERT_EQ(total, CALLS);
    for (int k = 0; k < CALLS; k++) {
        int seen = 0;
        for (int i = 0; i < WAITERS; i++)
            for (int m = 0; m < r[i].n; m++)
                seen += strcmp(r[i].ids[m], created[k]) == 0;
        ASSERT_EQ(seen, 1);
    }
    http_resp m;
    request(&main_h, "GET", "/metrics", NULL, 0, &m);
    ASSERT_STR_CONTAINS(m.body, "p2prpc_calls{function=\"p2prpc_add\",status=\"queued\"} 0\n");
    ASSERT_STR_CONTAINS(m.body, "# TYPE p2prpc_http_request_duration_seconds histogram\n");
    ASSERT_STR_CONTAINS(m.body, "p2prpc_http_request_duration_seconds_bucket{le=\"+Inf\"} ");
    ASSERT_STR_CONTAINS(m.body, "p2prpc_claims_total ");
    ASSERT_TRUE(strtoull(strstr(m.body, "\np2prpc_claims_total ") + 21, NULL, 10) >= CALLS);
    http_resp_cleanup(&m);
}

static void test_lease_expiry(void) {
    harness h;
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    o.lease_ms = 300;
    o.max_attempts = 2;
    start_broker(&h, "lease", &o);
    char args[] = "{\"a\":1,\"b\":1}", id[P2P_HASH_HEX_LEN + 1], path[300];
    ident_of(add_schema, args, id);
    ASSERT_EQ(api_on(&h, "POST", "/api/v1/p2prpc_add/push_update",
                     create_body(add_schema, id, args, true), NULL),
              201);
    for (int attempt = 1; attempt <= 2; attempt++) {
        json_t *c = NULL;
        ASSERT_EQ(api_on(&h, "POST", "/api/v1/p2prpc_add/search_work?wait=10", NULL, &c), 200);
        ASSERT_EQ(num(c, "attempts"), attempt);
        /* The lease lapses; the maintenance thread requeues (then fails) it,
         * and the change releases this long-poll. */
        json_t *j = NULL;
        snprintf(path, sizeof(path),
                 "/api/v1/p2prpc_add/pull_update?identifier=%s&since=%d&wait=10", id, 2 * attempt);
        int64_t start = test_now_ms();
        ASSERT_EQ(api_on(&h, "GET", path, NULL, &j), 200);
        ASSERT_GE(test_now_ms() - start, 100);
        ASSERT_LT(test_now_ms() - start, 5000);
        ASSERT_STR_EQ(str(j, "status"), attempt == 1 ? "queued" : "failed");
        if (attempt == 2)
            ASSERT_STR_CONTAINS(str(j, "error"), "lease expired 2 times");
        /* The old lease is stale now. */
        char body[300];
        snprintf(body, sizeof(body),
                 "{\"identifier\":\"%s\",\"lease_token\":\"%s\",\"progress\":5}", id,
                 str(c, "lease_token"));
        ASSERT_EQ(api_on(&h, "POST", "/api/v1/p2prpc_add/push_update", body, NULL), 409);
        json_decref(j);
        json_decref(c);
    }
    p2p_broker_free(h.b);
}

static void test_stop_with_parked_waiters(void) {
    harness h;
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    start_broker(&h, "stop", &o);
    bg_call w[2];
    bg_start(&w[0], &h, "POST", "/api/v1/p2prpc_add/search_work?wait=30", NULL);
    char id[P2P_HASH_HEX_LEN + 1], path[300], args[] = "{\"a\":9,\"b\":9}";
    ident_of(add_schema, args, id);
    ASSERT_EQ(api_on(&h, "POST", "/api/v1/p2prpc_add/push_update",
                     create_body(add_schema, id, args, false), NULL),
              201);
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=1&wait=30",
             id);
    bg_start(&w[1], &h, "GET", path, NULL);
    usleep(300 * 1000);
    int64_t start = test_now_ms();
    p2p_broker_stop(h.b);
    ASSERT_LT(test_now_ms() - start, 3000);
    for (int i = 0; i < 2; i++) {
        http_bg_join(&w[i].bg);
        assert_json_error(&w[i].bg.resp, 503, "canceled");
        http_resp_cleanup(&w[i].bg.resp);
    }
    ASSERT_TRUE(p2p_broker_url(h.b) == NULL);
    ASSERT_EQ(p2p_broker_port(h.b), 0);
    /* It starts again on the same data, the call still there. */
    p2p_error err = {0};
    ASSERT_OK(p2p_broker_start(h.b, &err));
    snprintf(h.base, sizeof(h.base), "%s", p2p_broker_url(h.b));
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s", id);
    ASSERT_EQ(api_on(&h, "GET", path, NULL, NULL), 200);
    p2p_broker_free(h.b);
}

static void test_options(void) {
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    ASSERT_EQ(o.lease_ms, P2P_BROKER_DEFAULT_LEASE_MS);
    ASSERT_EQ(o.max_attempts, P2P_BROKER_DEFAULT_MAX_ATTEMPTS);
    p2p_broker *b = NULL;
    p2p_error err = {0};
    o.lease_ms = 0;
    ASSERT_EQ(p2p_broker_new(&o, &b, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "lease");
    p2p_broker_options_init(&o);
    o.max_attempts = 0;
    ASSERT_EQ(p2p_broker_new(&o, &b, &err), P2P_EINVAL);
    p2p_broker_options_init(&o);
    o.tls_cert_file = "cert.pem";
    ASSERT_EQ(p2p_broker_new(&o, &b, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "TLS");
    p2p_broker_options_init(&o);
    o.max_blob_size = 0;
    ASSERT_EQ(p2p_broker_new(&o, &b, &err), P2P_EINVAL);
    ASSERT_TRUE(b == NULL);
    p2p_broker_free(NULL);
    /* Not started: no URL, no port, no maintenance. */
    p2p_broker_options_init(&o);
    ASSERT_OK(p2p_broker_new(&o, &b, &err));
    ASSERT_TRUE(p2p_broker_url(b) == NULL);
    ASSERT_EQ(p2p_broker_maintain(b, &err), P2P_EINVAL);
    p2p_broker_stop(b);
    p2p_broker_free(b);
    /* A port that is taken: start fails cleanly and can be freed. */
    harness h;
    p2p_broker_options_init(&o);
    start_broker(&h, "busy", &o);
    p2p_broker_options_init(&o);
    o.host = "127.0.0.1";
    o.port = p2p_broker_port(h.b);
    o.data_dir = h.data;
    ASSERT_OK(p2p_broker_new(&o, &b, &err));
    ASSERT_EQ(p2p_broker_start(b, &err), P2P_EIO);
    p2p_broker_free(b);
    p2p_broker_free(h.b);
}

int main(void) {
    broker_test_setup("broker_lifecycle", NULL);
    TEST_RUN(test_claim_race_between_waiters);
    TEST_RUN(test_lease_expiry);
    TEST_RUN(test_stop_with_parked_waiters);
    TEST_RUN(test_options);
    return broker_test_teardown();
}
