/* The client without a broker: options and their errors, the broker list,
 * argument checks, a cache hit with no network at all, and the error once
 * every broker is down (ports on 127.0.0.1 where nothing listens). */
#include "client_internal.h"
#include "ident.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[512];

static void make_tmp_dir(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/client_options_%d", base ? base : "/tmp", (int)getpid());
    if (base != NULL)
        mkdir(base, 0700);
    ASSERT_EQ(mkdir(tmp_dir, 0700), 0);
}

static void path_of(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    ASSERT_TRUE(fp != NULL);
    fputs(text, fp);
    ASSERT_EQ(fclose(fp), 0);
}

/* A loopback port nothing listens on: bound, then closed. */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static p2p_schema *add_schema(void) {
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"sum", P2P_TYPE_INT64}};
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_add", in, 2, out, 1, &s, NULL));
    return s;
}

static void test_defaults_and_names(void) {
    p2p_client_options o;
    p2p_client_options_init(&o);
    ASSERT_EQ(o.connect_timeout_ms, P2P_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS);
    ASSERT_EQ(o.request_timeout_ms, P2P_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS);
    ASSERT_EQ(o.poll_wait_s, P2P_CLIENT_DEFAULT_POLL_WAIT_S);
    ASSERT_TRUE(o.brokers == NULL && o.cache_path == NULL && o.secret_file == NULL);
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_PUSHED), "pushed");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_TERMINATED), "terminated");
    ASSERT_STR_EQ(p2p_call_status_name((p2p_call_status)99), "unknown");
    p2p_call_status s = P2P_CALL_DONE;
    ASSERT_OK(p2p_call_status_parse("running", &s));
    ASSERT_EQ(s, P2P_CALL_RUNNING);
    ASSERT_EQ(p2p_call_status_parse("running?", &s), P2P_EINVAL);
    ASSERT_EQ(p2p_call_status_parse(NULL, &s), P2P_EINVAL);
    ASSERT_EQ(s, P2P_CALL_RUNNING);
}

static void expect_new_error(const p2p_client_options *o, int code, const char *substr) {
    p2p_client *c = (p2p_client *)1;
    p2p_error err = {0};
    ASSERT_EQ(p2p_client_new(o, &c, &err), code);
    ASSERT_TRUE(c == NULL);
    ASSERT_STR_CONTAINS(err.msg, substr);
}

static void test_option_errors(void) {
    char cache[600], disc[600], empty[600], bad[600];
    path_of(cache, sizeof(cache), "cache_opts");
    path_of(disc, sizeof(disc), "missing_discovery.txt");
    path_of(empty, sizeof(empty), "empty_discovery.txt");
    path_of(bad, sizeof(bad), "bad_discovery.txt");
    write_text(empty, "# nothing\n\n");
    write_text(bad, "http://127.0.0.1:1\nftp://x\n");
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.cache_path = cache;
    expect_new_error(NULL, P2P_EINVAL, "NULL");
    expect_new_error(&o, P2P_EINVAL, "no broker");
    const char *urls[] = {"http://127.0.0.1:1", "not a url"};
    o.brokers = urls;
    o.n_brokers = 2;
    expect_new_error(&o, P2P_EINVAL, "broker 1");
    o.n_brokers = 1;
    o.poll_wait_s = 301;
    expect_new_error(&o, P2P_EINVAL, "poll_wait_s");
    o.poll_wait_s = 30;
    o.request_timeout_ms = 0;
    expect_new_error(&o, P2P_EINVAL, "request_timeout_ms");
    o.request_timeout_ms = 1000;
    o.secret = (const unsigned char *)"s";
    o.secret_len = 1;
    o.secret_file = disc;
    expect_new_error(&o, P2P_EINVAL, "not both");
    o.secret = NULL;
    o.secret_len = 0;
    expect_new_error(&o, P2P_ENOTFOUND, "missing_discovery.txt"); /* the secret file */
    o.secret_file = NULL;
    o.n_brokers = 0;
    o.discovery_file = disc;
    expect_new_error(&o, P2P_ENOTFOUND, "missing_discovery.txt");
    o.discovery_file = empty;
    expect_new_error(&o, P2P_EINVAL, "names no broker");
    o.discovery_file = bad;
    expect_new_error(&o, P2P_EINVAL, "bad_discovery.txt:2");
}

static void test_broker_list(void) {
    char cache[600], disc[600];
    path_of(cache, sizeof(cache), "cache_list");
    path_of(disc, sizeof(disc), "discovery.txt");
    write_text(disc, "# brokers\nhttp://127.0.0.1:2\nHTTP://127.0.0.1:1/  # again\n");
    const char *urls[] = {"http://127.0.0.1:1"};
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.cache_path = cache;
    o.brokers = urls;
    o.n_brokers = 1;
    o.discovery_file = disc;
    p2p_client *c = NULL;
    ASSERT_OK(p2p_client_new(&o, &c, NULL));
    /* Given first, then the file's, normalised, without duplicates. */
    ASSERT_EQ(p2p__brokers_count(c), 2);
    char *u0 = p2p__brokers_at(c, 0), *u1 = p2p__brokers_at(c, 1);
    ASSERT_STR_EQ(u0, "http://127.0.0.1:1/");
    ASSERT_STR_EQ(u1, "http://127.0.0.1:2/");
    ASSERT_TRUE(p2p__brokers_at(c, 2) == NULL);
    /* A broker that just answered is not probed again; one that failed is. */
    ASSERT_FALSE(p2p__brokers_fresh(c, u0));
    p2p__brokers_mark(c, u0, true);
    ASSERT_TRUE(p2p__brokers_fresh(c, u0));
    ASSERT_FALSE(p2p__brokers_fresh(c, u1));
    p2p__brokers_mark(c, u1, false);
    ASSERT_TRUE(p2p__brokers_fresh(c, u0));
    p2p__brokers_mark(c, u0, false);
    ASSERT_FALSE(p2p__brokers_fresh(c, u0));
    free(u0);
    free(u1);
    p2p_client_free(c);
    p2p_client_free(NULL);
}

static p2p_client *client_on_dead_brokers(const char *cache, int n) {
    char u[3][64];
    const char *urls[3];
    for (int i = 0; i < n; i++) {
        snprintf(u[i], sizeof(u[i]), "http://127.0.0.1:%d", dead_port());
        urls[i] = u[i];
    }
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.cache_path = cache;
    o.brokers = urls;
    o.n_brokers = (size_t)n;
    o.connect_timeout_ms = 1000;
    p2p_client *c = NULL;
    ASSERT_OK(p2p_client_new(&o, &c, NULL));
    return c;
}

static void test_argument_errors(void) {
    char cache[600];
    path_of(cache, sizeof(cache), "cache_args");
    p2p_client *c = client_on_dead_brokers(cache, 1);
    p2p_schema *s = add_schema();
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], 1);
    ASSERT_OK(p2p_value_set_string(&args[1], "2", NULL));
    p2p_future *f = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_client_submit(c, s, args, NULL, 0, NULL, &f, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "argument \"b\" is string");
    ASSERT_TRUE(f == NULL);
    ASSERT_EQ(p2p_client_submit(c, s, NULL, NULL, 0, NULL, &f, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_client_submit(c, NULL, args, NULL, 0, NULL, &f, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_client_submit(c, s, args, NULL, 0, NULL, NULL, &err), P2P_EINVAL);

    /* A file argument without path nor hash; then a file that is missing. */
    const p2p_param fin[] = {{"input", P2P_TYPE_FILE}};
    const p2p_param fout[] = {{"n", P2P_TYPE_INT64}};
    p2p_schema *fs = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_size", fin, 1, fout, 1, &fs, NULL));
    p2p_value fa;
    p2p_value_init(&fa);
    fa.type = P2P_TYPE_FILE;
    ASSERT_EQ(p2p_client_submit(c, fs, &fa, NULL, 0, NULL, &f, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "argument \"input\"");
    fa.as.file.path = (char *)"/nonexistent/p2prpc/file";
    ASSERT_EQ(p2p_client_submit(c, fs, &fa, NULL, 0, NULL, &f, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "argument \"input\"");
    p2p_schema_free(fs);
    p2p_value_list_cleanup(args, 2);
    p2p_schema_free(s);
    p2p_client_free(c);
}

static void test_no_broker_reachable(void) {
    char cache[600];
    path_of(cache, sizeof(cache), "cache_dead");
    p2p_client *c = client_on_dead_brokers(cache, 3);
    p2p_schema *s = add_schema();
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], 1);
    p2p_value_set_int64(&args[1], 2);
    p2p_future *f = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_client_submit(c, s, args, NULL, 0, NULL, &f, &err), P2P_EUNAVAIL);
    ASSERT_STR_CONTAINS(err.msg, "no broker reachable (tried 3: http://127.0.0.1:");
    char *last = p2p__brokers_at(c, 2);
    ASSERT_STR_CONTAINS(err.msg, last);
    free(last);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.failovers, 3);
    ASSERT_EQ(st.calls_created, 0);
    p2p_value_list_cleanup(args, 2);
    p2p_schema_free(s);
    p2p_client_free(c);
}

/* A done entry answers at once, with every broker down. */
static void test_cache_hit_without_network(void) {
    char cache[600];
    path_of(cache, sizeof(cache), "cache_hit");
    p2p_client *c = client_on_dead_brokers(cache, 1);
    p2p_schema *s = add_schema();
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], 20);
    p2p_value_set_int64(&args[1], 22);
    char id[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_ident_compute(s, args, id, NULL));
    ASSERT_OK(p2p__ccache_put_done(c->cache, id, "p2prpc_add", "http://127.0.0.1:1/",
                                   "{\"sum\":42}", NULL, 0, NULL));
    p2p_future *f = NULL;
    ASSERT_OK(p2p_client_submit(c, s, args, NULL, 0, NULL, &f, NULL));
    ASSERT_TRUE(p2p_future_cached(f));
    ASSERT_TRUE(p2p_future_broker(f) == NULL);
    ASSERT_STR_EQ(p2p_future_identifier(f), id);
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_DONE);
    const p2p_value *out = NULL;
    size_t n = 0;
    ASSERT_OK(p2p_future_get(f, 0, &out, &n, NULL));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(out[0].as.i64, 42);
    ASSERT_OK(p2p_future_terminate(f, NULL)); /* finished: nothing to stop */
    p2p_future_free(f);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.cache_hits, 1);

    /* Outputs that no longer fit the schema are no hit: forgotten. */
    ASSERT_OK(p2p__ccache_forget(c->cache, id, NULL));
    ASSERT_OK(
        p2p__ccache_put_done(c->cache, id, "p2prpc_add", NULL, "{\"sum\":\"x\"}", NULL, 0, NULL));
    p2p_error err;
    ASSERT_EQ(p2p_client_submit(c, s, args, NULL, 0, NULL, &f, &err), P2P_EUNAVAIL);
    p2p__ccache_entry e;
    ASSERT_EQ(p2p__ccache_get(c->cache, id, &e, NULL), P2P_ENOTFOUND);
    p2p_value_list_cleanup(args, 2);
    p2p_schema_free(s);
    p2p_client_free(c);
}

int main(void) {
    make_tmp_dir();
    TEST_RUN(test_defaults_and_names);
    TEST_RUN(test_option_errors);
    TEST_RUN(test_broker_list);
    TEST_RUN(test_argument_errors);
    TEST_RUN(test_no_broker_reachable);
    TEST_RUN(test_cache_hit_without_network);
    return 0;
}
