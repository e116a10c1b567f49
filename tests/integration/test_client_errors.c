/* The error codes of client/client.h, each provoked for real (a broker and a
 * worker running) and checked with its message:
 *   P2P_EFAILED      the function failed: its p2p_fail message, or the signal
 *   P2P_ENOTFOUND    the call was deleted on the broker behind the client's
 *                    back; a function the broker does not serve
 *   P2P_EAUTH        a wrong secret, no secret for a broker that wants one
 *   P2P_EINVAL / P2P_ENOTFOUND / P2P_ETYPE  bad options and bad arguments,
 *                    each message naming the option or the argument
 * (P2P_ETERMINATED and P2P_ETIMEDOUT: test_client_lifecycle and
 * test_client_calls; P2P_EUNAVAIL and P2P_ECONFLICT: test_client_failover;
 * P2P_EHASH: test_client_downloads.) */
#include "client_fixture.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static broker B;
static worker W;
static char DIR_[HARNESS_PATH_MAX];

/* submit that is expected to fail with `want` naming `substr`. */
static void expect_submit_error(p2p_client *c, const p2p_schema *s, const p2p_value *args,
                                const p2p_arg_ref *refs, size_t n_refs, int want,
                                const char *substr) {
    p2p_future *f = NULL;
    p2p_error err = {0};
    int rc = p2p_client_submit(c, s, args, refs, n_refs, NULL, &f, &err);
    CF_EXPECT_ERROR(rc, &err, want, substr);
    ASSERT_TRUE(f == NULL);
}

static void expect_new_error(const p2p_client_options *o, int want, const char *substr) {
    p2p_client *c = (p2p_client *)1;
    p2p_error err = {0};
    int rc = p2p_client_new(o, &c, &err);
    CF_EXPECT_ERROR(rc, &err, want, substr);
    if (c != NULL && c != (p2p_client *)1)
        TEST_FAIL_("p2p_client_new failed but gave a client");
}

static void test_function_failed(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "failed");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value x[1];
    cf_args_int(x, 17);
    p2p_future *f = cf_submit(c, WF_BAD_FRAME, x, NULL);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, "bad frame");
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_FAILED);
    const p2p_value *out = NULL;
    size_t n = 0;
    err = (p2p_error){0};
    rc = p2p_future_get(f, 1000, &out, &n, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, "bad frame");
    p2p_future_free(f);
    p2p_value_list_cleanup(x, 1);

    cf_args_int(x, 18);
    f = cf_submit(c, WF_SEGV, x, NULL);
    err = (p2p_error){0};
    rc = p2p_future_wait(f, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, "SIGSEGV");
    p2p_future_free(f);
    p2p_value_list_cleanup(x, 1);
    p2p_client_free(c);
}

static void test_call_deleted_behind_the_clients_back(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "deleted");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 60.0, 600);
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
    json_t *call = wf_await_status(&B, WF_SLOW, id, "running", 60000);
    json_decref(call);
    call = wf_on_id(&B, WF_SLOW, "delete", id);
    json_decref(call);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, 30000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ENOTFOUND, NULL);
    err = (p2p_error){0};
    rc = p2p_future_terminate(f, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ENOTFOUND, NULL);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_function_not_served(void) {
    static const p2p_param in[] = {{"x", P2P_TYPE_INT64}};
    static const p2p_param out[] = {{"y", P2P_TYPE_INT64}};
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_build("p2prpc_nosuch", in, 1, out, 1, &s, NULL));
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "nosuch");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value x[1];
    cf_args_int(x, 1);
    p2p_future *f = NULL;
    p2p_error err = {0};
    int rc = p2p_client_submit(c, s, x, NULL, 0, NULL, &f, &err);
    fprintf(stderr, "unserved function: %s: %s\n", p2p_error_name(rc), err.msg);
    ASSERT_TRUE(rc != 0 && f == NULL);
    ASSERT_STR_CONTAINS(err.msg, "p2prpc_nosuch");
    p2p_value_list_cleanup(x, 1);
    p2p_client_free(c);
    p2p_schema_free(s);
}

static void test_bad_secret(void) {
    char cache[HARNESS_PATH_MAX], wrong[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "auth");
    cf_path(wrong, DIR_, "wrong.secret");
    unsigned char other[32];
    ASSERT_OK(harness_write_secret(wrong, other, sizeof(other), NULL));
    const char *urls[] = {B.url};
    p2p_value args[2];
    cf_args_add(args, 2, 2);
    for (int i = 0; i < 2; i++) {
        p2p_client_options o;
        cf_options(&o, urls, 1, i == 0 ? wrong : NULL, cache);
        p2p_client *c = cf_client(&o);
        double created0 = cf_metric(&B, "p2prpc_calls_created_total");
        expect_submit_error(c, wf_schema(WF_ADD), args, NULL, 0, P2P_EAUTH, B.url);
        ASSERT_EQ(cf_metric(&B, "p2prpc_calls_created_total") - created0, 0);
        p2p_client_free(c);
    }
    /* The secret given as bytes works as the file does. */
    p2p_client_options o;
    cf_options(&o, urls, 1, NULL, cache);
    o.secret = B.secret;
    o.secret_len = B.secret_len;
    p2p_client *c = cf_client(&o);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 4);
    p2p_future_free(f);
    p2p_client_free(c);
    p2p_value_list_cleanup(args, 2);
}

static void test_bad_options(void) {
    char cache[HARNESS_PATH_MAX], missing[HARNESS_PATH_MAX], plain[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "options");
    cf_path(missing, DIR_, "no-such-file");
    cf_path(plain, DIR_, "plain-file");
    ASSERT_OK(harness_write_file(plain, "x", 1, NULL));
    const char *urls[] = {B.url};
    p2p_client_options o;

    cf_options(&o, NULL, 0, B.secret_path, cache);
    expect_new_error(&o, P2P_EINVAL, "broker");

    cf_options(&o, NULL, 0, B.secret_path, cache);
    o.discovery_file = missing;
    expect_new_error(&o, P2P_ENOTFOUND, missing);

    cf_options(&o, urls, 1, missing, cache);
    expect_new_error(&o, P2P_ENOTFOUND, missing);

    const char *bad_urls[] = {"ftp://127.0.0.1:1"};
    cf_options(&o, bad_urls, 1, B.secret_path, cache);
    expect_new_error(&o, P2P_EINVAL, "ftp://127.0.0.1:1");

    cf_options(&o, urls, 1, B.secret_path, cache);
    o.poll_wait_s = 301;
    expect_new_error(&o, P2P_EINVAL, "poll_wait");

    cf_options(&o, urls, 1, B.secret_path, cache);
    o.connect_timeout_ms = -5;
    expect_new_error(&o, P2P_EINVAL, "connect_timeout");

    /* A cache path that is a regular file cannot hold a cache. */
    cf_options(&o, urls, 1, B.secret_path, plain);
    p2p_client *c = NULL;
    p2p_error err = {0};
    int rc = p2p_client_new(&o, &c, &err);
    fprintf(stderr, "cache_path is a file: %s: %s\n", p2p_error_name(rc), err.msg);
    ASSERT_TRUE(rc != 0 && c == NULL);
    ASSERT_STR_CONTAINS(err.msg, plain);

    expect_new_error(NULL, P2P_EINVAL, NULL);
    p2p_client_free(NULL);
    p2p_future_free(NULL);
}

static void test_bad_arguments(void) {
    char cache[HARNESS_PATH_MAX], missing[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "args");
    cf_path(missing, DIR_, "no-such-input.bin");
    p2p_client *c = cf_client_for(&B, cache);

    /* A string where p2prpc_add wants an int64. */
    p2p_value args[2];
    cf_args_add(args, 1, 2);
    ASSERT_OK(p2p_value_set_string(&args[1], "two", NULL));
    expect_submit_error(c, wf_schema(WF_ADD), args, NULL, 0, P2P_ETYPE, "\"b\"");
    p2p_value_list_cleanup(args, 2);

    /* An empty value. */
    cf_args_add(args, 1, 2);
    p2p_value_cleanup(&args[0]);
    p2p_future *f = NULL;
    p2p_error err = {0};
    int rc = p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, &f, &err);
    fprintf(stderr, "empty argument: %s: %s\n", p2p_error_name(rc), err.msg);
    ASSERT_TRUE((rc == P2P_EINVAL || rc == P2P_ETYPE) && f == NULL);
    ASSERT_STR_CONTAINS(err.msg, "a");
    p2p_value_list_cleanup(args, 2);

    /* A file argument whose file does not exist: named, nothing sent. */
    double created0 = cf_metric(&B, "p2prpc_calls_created_total");
    cf_args_copy(args, missing, 0);
    err = (p2p_error){0};
    rc = p2p_client_submit(c, wf_schema(WF_COPY), args, NULL, 0, NULL, &f, &err);
    fprintf(stderr, "missing input file: %s: %s\n", p2p_error_name(rc), err.msg);
    ASSERT_TRUE(rc != 0 && f == NULL);
    ASSERT_STR_CONTAINS(err.msg, missing);
    ASSERT_EQ(cf_metric(&B, "p2prpc_calls_created_total") - created0, 0);
    p2p_value_list_cleanup(args, 2);

    /* NULL schema, NULL args, NULL out. */
    cf_args_add(args, 1, 2);
    expect_submit_error(c, NULL, args, NULL, 0, P2P_EINVAL, NULL);
    expect_submit_error(c, wf_schema(WF_ADD), NULL, NULL, 0, P2P_EINVAL, NULL);
    err = (p2p_error){0};
    rc = p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, NULL, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EINVAL, NULL);

    /* References: an input index past the schema, an output the upstream's
     * function does not have, an output of the wrong type. */
    p2p_future *up = cf_submit(c, WF_ADD, args, NULL);
    ASSERT_EQ(cf_get(up, 1)[0].as.i64, 3);
    p2p_value ca[2];
    cf_args_copy(ca, missing, 0);
    p2p_arg_ref past = {.input = 2, .future = up, .output = "sum"};
    expect_submit_error(c, wf_schema(WF_ADD), args, &past, 1, P2P_EINVAL, NULL);
    p2p_arg_ref unknown = {.input = 0, .future = up, .output = "nosuch"};
    expect_submit_error(c, wf_schema(WF_ADD), args, &unknown, 1, P2P_EINVAL, "nosuch");
    p2p_arg_ref wrong_type = {.input = 0, .future = up, .output = "sum"};
    expect_submit_error(c, wf_schema(WF_COPY), ca, &wrong_type, 1, P2P_ETYPE, "input");
    p2p_arg_ref no_future = {.input = 0, .future = NULL, .output = "sum"};
    expect_submit_error(c, wf_schema(WF_ADD), args, &no_future, 1, P2P_EINVAL, NULL);
    p2p_future_free(up);
    p2p_value_list_cleanup(ca, 2);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_status_names(void) {
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_PUSHED), "pushed");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_QUEUED), "queued");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_RUNNING), "running");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_DONE), "done");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_FAILED), "failed");
    ASSERT_STR_EQ(p2p_call_status_name(P2P_CALL_TERMINATED), "terminated");
    ASSERT_STR_EQ(p2p_call_status_name((p2p_call_status)99), "unknown");
    p2p_client_options o;
    p2p_client_options_init(&o);
    ASSERT_EQ(o.connect_timeout_ms, P2P_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS);
    ASSERT_EQ(o.request_timeout_ms, P2P_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS);
    ASSERT_EQ(o.poll_wait_s, P2P_CLIENT_DEFAULT_POLL_WAIT_S);
    ASSERT_TRUE(o.brokers == NULL && o.cache_path == NULL && o.secret_file == NULL);
}

int main(void) {
    cf_broker_init(&B, "cerr_b", NULL, NULL);
    broker_start(&B);
    worker_start_for(&W, "cerr_w", &B, &(worker_config){.concurrency = 2});
    p2p_error err;
    if (harness_scratch_dir("cerr_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_status_names);
    TEST_RUN(test_bad_options);
    TEST_RUN(test_bad_arguments);
    TEST_RUN(test_bad_secret);
    TEST_RUN(test_function_failed);
    TEST_RUN(test_function_not_served);
    TEST_RUN(test_call_deleted_behind_the_clients_back);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    broker_cleanup(&B);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
