/* The worker and its brokers: the discovery file (and its errors), a broker
 * learnt from another broker's nodes route, a broker that is down from the
 * start, and a broker that restarts under a running worker. */
#include "worker_test_util.h"

static wt_broker a, b;

static void write_file(const char *path, const char *text) {
    ASSERT_OK(p2p_fs_write_atomic(path, text, strlen(text), 0600, NULL));
}

static void test_discovery_errors(void) {
    char path[700];
    snprintf(path, sizeof(path), "%s/bad-discovery.txt", wt_root);
    p2p_worker_options o;
    wt_worker_options(&o, "bad", a.url);
    o.brokers = NULL;
    o.n_brokers = 0;
    o.discovery_file = path;
    p2p_worker *w = NULL;
    p2p_error err = {0};
    ASSERT_OK(p2p_worker_new(&o, wt_fns, F_COUNT, &w, &err));
    ASSERT_EQ(p2p_worker_start(w, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, path);
    p2p_worker_free(w);
    write_file(path, "# brokers\nhttp://127.0.0.1:1/\nftp://127.0.0.1:2/\n");
    ASSERT_OK(p2p_worker_new(&o, wt_fns, F_COUNT, &w, &err));
    ASSERT_EQ(p2p_worker_start(w, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, ":3:");
    ASSERT_STR_CONTAINS(err.msg, "ftp://");
    p2p_worker_free(w);
    write_file(path, "# nothing here\n\n   \n");
    ASSERT_OK(p2p_worker_new(&o, wt_fns, F_COUNT, &w, &err));
    ASSERT_EQ(p2p_worker_start(w, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "no broker");
    p2p_worker_free(w);
    /* Options are checked at once. */
    const char *bad_url = "not a url";
    o.brokers = &bad_url;
    o.n_brokers = 1;
    ASSERT_EQ(p2p_worker_new(&o, wt_fns, F_COUNT, &w, &err), P2P_EINVAL);
    ASSERT_TRUE(w == NULL);
    wt_worker_options(&o, "bad", a.url);
    o.concurrency = 0;
    ASSERT_EQ(p2p_worker_new(&o, wt_fns, F_COUNT, &w, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "concurrency");
    o.concurrency = 1;
    ASSERT_EQ(p2p_worker_new(&o, wt_fns, 0, &w, &err), P2P_EINVAL);
    p2p_worker_function twice[2] = {wt_fns[F_ADD], wt_fns[F_ADD]};
    ASSERT_EQ(p2p_worker_new(&o, twice, 2, &w, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "twice");
}

/* Only A is in the discovery file; A lists B as a peer; B's call is done,
 * and a dead URL in the file does not stop anything. */
static void test_gossip(void) {
    char path[700], text[600];
    snprintf(path, sizeof(path), "%s/discovery.txt", wt_root);
    snprintf(text, sizeof(text),
             "# the test brokers\n  %s   # A, with a comment\n\nhttp://127.0.0.1:9/\n", a.url);
    write_file(path, text);
    p2p_worker_options o;
    wt_worker_options(&o, "gossip", a.url);
    o.brokers = NULL;
    o.n_brokers = 0;
    o.discovery_file = path;
    o.gossip_interval_ms = 200;
    p2p_worker *w = wt_worker_start(&o);
    ASSERT_EQ(p2p_worker_broker_count(w), 2);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(b.url, F_ADD, "{\"a\":7,\"b\":8}", id);
    json_t *j = wt_wait(b.url, F_ADD, id, "done", 20000);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "outputs"), "sum")), 15);
    json_decref(j);
    ASSERT_EQ(p2p_worker_broker_count(w), 3);
    /* Rounds go on without adding anything twice. */
    sleep_ms(600);
    ASSERT_EQ(p2p_worker_broker_count(w), 3);
    p2p_worker_free(w);
}

static void test_broker_restart(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "restart", b.url);
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(b.url, F_ADD, "{\"a\":1,\"b\":1}", id);
    json_decref(wt_wait(b.url, F_ADD, id, "done", 20000));
    uint16_t port = b.port;
    wt_broker_stop(&b);
    sleep_ms(1500); /* the worker's requests fail meanwhile: it backs off */
    wt_broker_start(&b, "b", port, 60000, NULL);
    int64_t back = wt_now_ms();
    wt_call(b.url, F_ADD, "{\"a\":2,\"b\":2}", id);
    json_t *j = wt_wait(b.url, F_ADD, id, "done", 20000);
    fprintf(stderr, "done %lld ms after the broker came back\n", (long long)(wt_now_ms() - back));
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "outputs"), "sum")), 4);
    json_decref(j);
    p2p_worker_free(w);
}

/* A broker with another version of p2prpc_add (another output name, so
 * another fingerprint): the worker never claims its calls. */
static void test_other_version(void) {
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"total", P2P_TYPE_INT64}};
    p2p_schema *other = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_add", in, 2, out, 1, &other, NULL));
    char data[700];
    snprintf(data, sizeof(data), "%s/c", wt_root);
    p2p_broker_options bo;
    p2p_broker_options_init(&bo);
    bo.host = "127.0.0.1";
    bo.port = 0;
    bo.data_dir = data;
    bo.secret = wt_secret;
    bo.secret_len = sizeof(wt_secret) - 1;
    p2p_broker *c = NULL;
    ASSERT_OK(p2p_broker_new(&bo, &c, NULL));
    ASSERT_OK(p2p_registry_add(p2p_broker_registry(c), other, NULL));
    ASSERT_OK(p2p_broker_start(c, NULL));
    char url[128];
    snprintf(url, sizeof(url), "%s/", p2p_broker_url(c));
    /* The call, as a client of that version makes it. */
    char id[P2P_HASH_HEX_LEN + 1], body[600];
    p2p_value v[2];
    p2p_value_init(&v[0]);
    p2p_value_init(&v[1]);
    p2p_value_set_int64(&v[0], 1);
    p2p_value_set_int64(&v[1], 2);
    ASSERT_OK(p2p_ident_compute(other, v, id, NULL));
    snprintf(body, sizeof(body),
             "{\"identifier\":\"%s\",\"fingerprint\":\"%s\",\"args\":{\"a\":1,\"b\":2},"
             "\"execute\":true}",
             id, p2p_schema_fingerprint(other));
    ASSERT_EQ(wt_api(url, "POST", "api/v1/p2prpc_add/push_update", body, NULL), 201);
    p2p_worker_options o;
    wt_worker_options(&o, "versions", url);
    p2p_worker *w = wt_worker_start(&o);
    sleep_ms(1500);
    json_t *j = NULL;
    char path[300];
    snprintf(path, sizeof(path), "api/v1/p2prpc_add/pull_update?identifier=%s", id);
    ASSERT_EQ(wt_api(url, "GET", path, NULL, &j), 200);
    ASSERT_STR_EQ(wt_str(j, "status"), "queued");
    json_decref(j);
    p2p_worker_stats st;
    p2p_worker_get_stats(w, &st);
    ASSERT_EQ(st.claimed, 0);
    p2p_worker_free(w);
    p2p_broker_free(c);
    p2p_schema_free(other);
}

int main(int argc, char **argv) {
    WT_CHILD_MAIN(argc, argv);
    wt_setup("worker_brokers");
    wt_broker_start(&b, "b", 0, 60000, NULL);
    char peer[128];
    snprintf(peer, sizeof(peer), "%s", b.url);
    wt_broker_start(&a, "a", 0, 60000, peer);
    TEST_RUN(test_discovery_errors);
    TEST_RUN(test_gossip);
    TEST_RUN(test_broker_restart);
    TEST_RUN(test_other_version);
    wt_broker_stop(&a);
    wt_broker_stop(&b);
    return wt_teardown();
}
