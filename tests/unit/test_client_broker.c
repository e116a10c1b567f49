/* The client against an in-process broker and no worker: create or attach
 * (one push_update without file arguments),
 * the in-flight cache row, gossip from the nodes route, lifecycle of a call
 * nobody runs, a worker's answer seen by wait, and the errors a broker
 * gives (wrong secret, another signature of the function, a function it
 * does not serve). */
#include "broker_test_util.h"
#include "client_internal.h"

static const char *const PEER = "http://127.0.0.1:9/";

/* The broker's URL as the client lists it (normalised: a trailing '/'). */
static char base_url[200];

static p2p_client *client_of(const char *cache_name, const unsigned char *key, size_t key_len) {
    char cache[700];
    snprintf(cache, sizeof(cache), "%s/%s", root, cache_name);
    const char *urls[] = {main_h.base};
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.brokers = urls;
    o.n_brokers = 1;
    o.secret = key;
    o.secret_len = key_len;
    o.cache_path = cache;
    o.connect_timeout_ms = 1000;
    o.poll_wait_s = 2;
    p2p_client *c = NULL;
    p2p_error err = {0};
    if (p2p_client_new(&o, &c, &err) != 0)
        TEST_FAIL_("client: %s", err.msg);
    return c;
}

static void add_args(p2p_value v[2], int64_t a, int64_t b) {
    p2p_value_init(&v[0]);
    p2p_value_init(&v[1]);
    p2p_value_set_int64(&v[0], a);
    p2p_value_set_int64(&v[1], b);
}

static p2p_future *submit_add(p2p_client *c, int64_t a, int64_t b) {
    p2p_value v[2];
    add_args(v, a, b);
    p2p_future *f = NULL;
    p2p_error err = {0};
    if (p2p_client_submit(c, add_schema, v, NULL, 0, NULL, &f, &err) != 0)
        TEST_FAIL_("submit: %s", err.msg);
    p2p_value_list_cleanup(v, 2);
    return f;
}

static void test_create_attach_and_gossip(void) {
    p2p_client *c = client_of("cache_a", secret, sizeof(secret) - 1);
    ASSERT_EQ(p2p__brokers_count(c), 1);
    p2p_future *f = submit_add(c, 1, 2);
    ASSERT_FALSE(p2p_future_cached(f));
    ASSERT_STR_EQ(p2p_future_broker(f), base_url);
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_QUEUED);
    /* The nodes route named the peer: it is a broker of the client now. */
    ASSERT_EQ(p2p__brokers_count(c), 2);
    char *peer = p2p__brokers_at(c, 1);
    ASSERT_STR_EQ(peer, PEER);
    free(peer);
    p2p__ccache_entry e;
    ASSERT_OK(p2p__ccache_get(c->cache, p2p_future_identifier(f), &e, NULL));
    ASSERT_FALSE(e.done);
    ASSERT_STR_EQ(e.broker, base_url);
    p2p__ccache_entry_cleanup(&e);
    /* Another client (another cache) attaches to the same call. */
    p2p_client *c2 = client_of("cache_b", secret, sizeof(secret) - 1);
    p2p_future *g = submit_add(c2, 1, 2);
    ASSERT_STR_EQ(p2p_future_identifier(g), p2p_future_identifier(f));
    p2p_client_stats s1, s2;
    p2p_client_get_stats(c, &s1);
    p2p_client_get_stats(c2, &s2);
    ASSERT_EQ(s1.calls_created, 1);
    ASSERT_EQ(s2.calls_created, 0);
    ASSERT_EQ(s2.calls_attached, 1);
    /* A worker runs it; both waits see the outputs. */
    json_t *claimed = claim("p2prpc_add", 5);
    ASSERT_TRUE(claimed != NULL);
    ASSERT_EQ(worker_push("p2prpc_add", claimed, "\"progress\":50", NULL), 200);
    ASSERT_EQ(p2p_future_wait(f, 0, NULL), P2P_ETIMEDOUT); /* looks once */
    ASSERT_TRUE(p2p_future_progress(f) == 50.0);
    ASSERT_EQ(worker_push("p2prpc_add", claimed, "\"outputs\":{\"sum\":3}", NULL), 200);
    json_decref(claimed);
    const p2p_value *out = NULL;
    size_t n = 0;
    ASSERT_OK(p2p_future_get(f, 30000, &out, &n, NULL));
    ASSERT_EQ(out[0].as.i64, 3);
    ASSERT_OK(p2p_future_get(g, 30000, &out, &n, NULL));
    ASSERT_EQ(out[0].as.i64, 3);
    p2p_future_free(f);
    p2p_future_free(g);
    /* From now on the first client answers from its cache. */
    f = submit_add(c, 1, 2);
    ASSERT_TRUE(p2p_future_cached(f));
    p2p_future_free(f);
    p2p_client_free(c);
    p2p_client_free(c2);
}

static void test_lifecycle_without_worker(void) {
    p2p_client *c = client_of("cache_life", secret, sizeof(secret) - 1);
    p2p_future *f = submit_add(c, 40, 2);
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
    ASSERT_OK(p2p_future_terminate(f, NULL));
    p2p_error err = {0};
    ASSERT_EQ(p2p_future_wait(f, 5000, &err), P2P_ETERMINATED);
    /* Restart: queued again, same identifier. */
    ASSERT_OK(p2p_future_restart(f, 5000, NULL));
    json_t *j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    json_decref(j);
    /* Delete: gone from the broker and from the cache. */
    ASSERT_OK(p2p_future_delete(f, NULL));
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s", id);
    ASSERT_EQ(api("GET", path, NULL, NULL), 404);
    p2p__ccache_entry e;
    ASSERT_EQ(p2p__ccache_get(c->cache, id, &e, NULL), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_future_wait(f, 0, &err), P2P_ENOTFOUND);
    p2p_future_free(f);
    p2p_client_free(c);
}

static void test_broker_refusals(void) {
    /* A wrong secret: unauthorized at once, no failover to the peer. */
    static const unsigned char wrong[] = "not the secret";
    p2p_client *c = client_of("cache_bad", wrong, sizeof(wrong) - 1);
    p2p_value v[2];
    add_args(v, 5, 5);
    p2p_future *f = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_client_submit(c, add_schema, v, NULL, 0, NULL, &f, &err), P2P_EAUTH);
    p2p_client_free(c);

    c = client_of("cache_conflict", secret, sizeof(secret) - 1);
    /* Another signature of p2prpc_add: a conflict naming both fingerprints. */
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param other_out[] = {{"total", P2P_TYPE_INT64}};
    p2p_schema *other = make_schema("p2prpc_add", in, 2, other_out);
    ASSERT_EQ(p2p_client_submit(c, other, v, NULL, 0, NULL, &f, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, p2p_schema_fingerprint(other));
    ASSERT_STR_CONTAINS(err.msg, p2p_schema_fingerprint(add_schema));
    p2p_schema_free(other);
    /* A function this broker does not serve: skipped, as is the dead peer. */
    p2p_schema *unknown = make_schema("p2prpc_unknown", in, 2, other_out);
    ASSERT_EQ(p2p_client_submit(c, unknown, v, NULL, 0, NULL, &f, &err), P2P_EUNAVAIL);
    ASSERT_STR_CONTAINS(err.msg, "does not serve p2prpc_unknown");
    ASSERT_STR_CONTAINS(err.msg, PEER);
    p2p_schema_free(unknown);
    p2p_value_list_cleanup(v, 2);
    p2p_client_free(c);
}

int main(void) {
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    const char *peers[] = {PEER};
    o.peers = peers;
    o.n_peers = 1;
    broker_test_setup("client_broker", &o);
    char *norm = NULL;
    ASSERT_OK(p2p_discovery_normalize(main_h.base, &norm, NULL));
    snprintf(base_url, sizeof(base_url), "%s", norm);
    free(norm);
    TEST_RUN(test_create_attach_and_gossip);
    TEST_RUN(test_lifecycle_without_worker);
    TEST_RUN(test_broker_refusals);
    return broker_test_teardown();
}
