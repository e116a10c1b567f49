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
    wt_broker_stop(&a);
    wt_broker_stop(&b);
    return wt_teardown();
}
