/* Pipelines on the broker (broker/pipeline.c): a call whose argument is
 * another call's output waits, is settled when the upstream finishes (queued
 * with the value, or failed naming the upstream), and bad references are
 * refused before anything is stored. */
#include "broker_test_util.h"

/* The identifier of p2prpc_add(a = ref(up, output), b). */
static void ref_ident(const char *up, const char *output, int64_t b,
                      char id[P2P_HASH_HEX_LEN + 1]) {
    p2p_value v[2];
    p2p_value_init(&v[0]);
    p2p_value_init(&v[1]);
    p2p_value_set_int64(&v[1], b);
    p2p_ident_ref refs[2] = {{up, output}, {NULL, NULL}};
    ASSERT_OK(p2p_ident_compute_refs(add_schema, v, refs, id, NULL));
    p2p_value_list_cleanup(v, 2);
}

static const char *ref_body(const char *id, const char *up, const char *output, int64_t b) {
    char args[400];
    snprintf(args, sizeof(args),
             "{\"a\":{\"ref\":{\"identifier\":\"%s\",\"output\":\"%s\"}},\"b\":%lld}", up, output,
             (long long)b);
    return create_body(add_schema, id, args, true);
}

/* Creates add(ref(up, "sum"), b); returns the answer's status (static). */
static const char *create_ref(const char *up, int64_t b, char id[P2P_HASH_HEX_LEN + 1]) {
    static char status[32];
    ref_ident(up, "sum", b, id);
    json_t *j = NULL;
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/push_update", ref_body(id, up, "sum", b), &j), 201);
    snprintf(status, sizeof(status), "%s", str(j, "status"));
    json_decref(j);
    return status;
}

/* Claims the next add call and finishes it with sum = a + b; its args back. */
static json_t *run_next_add(void) {
    json_t *c = claim("p2prpc_add", 5);
    ASSERT_TRUE(c != NULL);
    json_t *args = json_incref(json_object_get(c, "args"));
    char fields[64];
    snprintf(fields, sizeof(fields), "\"outputs\":{\"sum\":%lld}",
             (long long)(num(args, "a") + num(args, "b")));
    ASSERT_EQ(worker_push("p2prpc_add", c, fields, NULL), 200);
    json_decref(c);
    return args;
}

/* A counter of the broker's /metrics. */
static long long metric(const char *name) {
    http_resp r;
    request(&main_h, "GET", "/metrics", NULL, 0, &r);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *line = strstr(r.body, needle);
    long long v = line != NULL ? strtoll(line + strlen(needle), NULL, 10) : -1;
    http_resp_cleanup(&r);
    return v;
}

static void test_upstream_already_done(void) {
    long long resolved0 = metric("p2prpc_pipeline_resolved_total");
    ASSERT_GE(resolved0, 0);
    char up[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
    snprintf(up, sizeof(up), "%s", create_add(1, 2, true, 201));
    json_decref(run_next_add());
    ASSERT_STR_EQ(create_ref(up, 10, id), "queued");
    ASSERT_EQ(metric("p2prpc_pipeline_resolved_total"), resolved0 + 1);
    json_t *args = run_next_add();
    ASSERT_EQ(num(args, "a"), 3);
    ASSERT_EQ(num(args, "b"), 10);
    json_decref(args);
    json_t *j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "done");
    ASSERT_EQ(num(json_object_get(j, "outputs"), "sum"), 13);
    json_decref(j);
}

static void test_waits_then_runs(void) {
    char up[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
    snprintf(up, sizeof(up), "%s", create_add(5, 6, true, 201));
    ASSERT_STR_EQ(create_ref(up, 1, id), "waiting");
    json_t *j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "waiting");
    json_decref(j);
    /* Never queued as it is. */
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    expect_error("POST", "/api/v1/p2prpc_add/execute_function", body, 409, "conflict",
                 "waiting for its inputs");
    /* The same pipeline again is the same call. */
    json_t *again = NULL;
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/push_update", ref_body(id, up, "sum", 1), &again),
              200);
    ASSERT_STR_EQ(str(again, "status"), "waiting");
    json_decref(again);
    json_t *args = run_next_add(); /* the upstream: the only queued call */
    ASSERT_EQ(num(args, "a"), 5);
    json_decref(args);
    args = run_next_add(); /* settled by the upstream's push */
    ASSERT_EQ(num(args, "a"), 11);
    ASSERT_EQ(num(args, "b"), 1);
    json_decref(args);
}

static void test_upstream_terminated_fails_it(void) {
    char up[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
    snprintf(up, sizeof(up), "%s", create_add(7, 8, true, 201));
    ASSERT_STR_EQ(create_ref(up, 2, id), "waiting");
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", up);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/terminate", body, NULL), 200);
    ASSERT_OK(p2p_broker_maintain(main_h.b, NULL));
    json_t *j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "failed");
    ASSERT_STR_CONTAINS(str(j, "error"), "input a: upstream call");
    ASSERT_STR_CONTAINS(str(j, "error"), up);
    json_decref(j);
}

static void test_upstream_deleted_fails_it(void) {
    char up[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
    snprintf(up, sizeof(up), "%s", create_add(9, 9, false, 201));
    ASSERT_STR_EQ(create_ref(up, 3, id), "waiting");
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", up);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/delete", body, NULL), 200);
    ASSERT_OK(p2p_broker_maintain(main_h.b, NULL));
    json_t *j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "failed");
    ASSERT_STR_CONTAINS(str(j, "error"), "deleted");
    json_decref(j);
}

static void test_bad_references(void) {
    char up[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
    snprintf(up, sizeof(up), "%s", create_add(20, 21, false, 201));
    const char *path = "/api/v1/p2prpc_add/push_update";
    /* An upstream this broker does not have. */
    char unknown[P2P_HASH_HEX_LEN + 1];
    memset(unknown, 'e', P2P_HASH_HEX_LEN);
    unknown[P2P_HASH_HEX_LEN] = '\0';
    ref_ident(unknown, "sum", 1, id);
    expect_error("POST", path, ref_body(id, unknown, "sum", 1), 409, "conflict",
                 "is not on this broker");
    /* No such output, and an output of another type. */
    ref_ident(up, "nope", 1, id);
    expect_error("POST", path, ref_body(id, up, "nope", 1), 400, "invalid", "no output");
    char args[400];
    snprintf(args, sizeof(args),
             "{\"f\":{\"ref\":{\"identifier\":\"%s\",\"output\":\"sum\"}},\"s\":\"x\"}", up);
    expect_error("POST", "/api/v1/p2prpc_cat/push_update", create_body(cat_schema, up, args, true),
                 400, "type", "output \\\"sum\\\" of p2prpc_add is int64");
    /* A malformed reference, and an identifier computed without the reference. */
    snprintf(args, sizeof(args), "{\"a\":{\"ref\":{\"identifier\":\"%s\"}},\"b\":1}", up);
    expect_error("POST", path, create_body(add_schema, up, args, true), 400, "invalid",
                 "a reference is");
    ref_ident(up, "sum", 2, id); /* b = 2, sent with b = 1 */
    expect_error("POST", path, ref_body(id, up, "sum", 1), 400, "invalid",
                 "identifier does not match");
}

int main(void) {
    broker_test_setup("broker_pipeline", NULL);
    TEST_RUN(test_upstream_already_done);
    TEST_RUN(test_waits_then_runs);
    TEST_RUN(test_upstream_terminated_fails_it);
    TEST_RUN(test_upstream_deleted_fails_it);
    TEST_RUN(test_bad_references);
    return broker_test_teardown();
}
