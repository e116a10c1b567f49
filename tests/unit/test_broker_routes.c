/* The broker's call routes in-process: a broker started on 127.0.0.1:0 with
 * a secret, driven with signed libcurl requests. The node routes, every call
 * route's happy path, the worker's updates, the long-polls (released by a
 * change within milliseconds, or timing out), and every bad input of the spec,
 * each a JSON error that leaves the store unchanged. */
#include "broker_test_util.h"

static void test_node_routes(void) {
    /* /health is public: no signature needed. */
    char url[300];
    snprintf(url, sizeof(url), "%s/health", main_h.base);
    http_resp r;
    http_do(&(http_req){.url = url}, &r);
    ASSERT_EQ(r.status, 200);
    json_t *j = http_json(&r);
    ASSERT_STR_EQ(str(j, "status"), "ok");
    ASSERT_STR_EQ(str(j, "node"), p2p_broker_node_id(main_h.b));
    ASSERT_EQ(strlen(str(j, "node")), P2P_NODE_ID_LEN);
    ASSERT_TRUE(str(j, "version") != NULL);
    json_decref(j);
    http_resp_cleanup(&r);

    ASSERT_EQ(api("GET", "/api/v1/functions", NULL, &j), 200);
    json_t *list = json_object_get(j, "functions");
    ASSERT_EQ(json_array_size(list), 2);
    ASSERT_STR_EQ(str(json_array_get(list, 0), "name"), "p2prpc_add");
    ASSERT_STR_EQ(str(json_array_get(list, 0), "fingerprint"), p2p_schema_fingerprint(add_schema));
    ASSERT_STR_EQ(str(json_array_get(list, 1), "name"), "p2prpc_cat");
    json_decref(j);

    ASSERT_EQ(api("GET", "/api/v1/nodes", NULL, &j), 200);
    list = json_object_get(j, "nodes");
    ASSERT_EQ(json_array_size(list), 2);
    ASSERT_STR_EQ(str(json_array_get(list, 0), "uuid"), p2p_broker_node_id(main_h.b));
    ASSERT_STR_EQ(str(json_array_get(list, 0), "url"), "https://broker.example:8443");
    ASSERT_TRUE(json_is_null(json_object_get(json_array_get(list, 1), "uuid")));
    ASSERT_STR_EQ(str(json_array_get(list, 1), "url"), "http://127.0.0.1:9/");
    json_decref(j);

    request(&main_h, "GET", "/", NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(http_header(&r, "Content-Type"), "text/html");
    ASSERT_STR_CONTAINS(r.body, "<td>p2prpc_add</td>");
    http_resp_cleanup(&r);

    /* Everything but /health needs a signature. */
    snprintf(url, sizeof(url), "%s/metrics", main_h.base);
    http_do(&(http_req){.url = url}, &r);
    assert_json_error(&r, 401, "unauthorized");
    http_resp_cleanup(&r);
    /* Unknown routes and methods are JSON errors too. */
    expect_error("GET", "/api/v1/nothing/here/at/all", NULL, 404, "not_found", NULL);
    expect_error("DELETE", "/api/v1/functions", NULL, 405, "invalid", NULL);
}

static void test_create_execute_pull(void) {
    const char *id = create_add(1, 2, false, 201);
    char saved[P2P_HASH_HEX_LEN + 1];
    snprintf(saved, sizeof(saved), "%s", id);
    /* Idempotent: the same call again is not overwritten. */
    create_add(1, 2, false, 200);

    json_t *j = pull("p2prpc_add", saved, NULL);
    ASSERT_STR_EQ(str(j, "status"), "pushed");
    ASSERT_STR_EQ(str(j, "function"), "p2prpc_add");
    ASSERT_EQ(num(j, "version"), 1);
    ASSERT_EQ(num(j, "attempts"), 0);
    ASSERT_TRUE(json_is_false(json_object_get(j, "terminate_requested")));
    ASSERT_TRUE(json_object_get(j, "outputs") == NULL);
    ASSERT_TRUE(json_object_get(j, "error") == NULL);
    ASSERT_GT(num(j, "created_ms"), 0);
    json_decref(j);

    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", saved);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/execute_function", body, &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    ASSERT_TRUE(json_is_true(json_object_get(j, "changed")));
    json_decref(j);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/execute_function", body, &j), 200);
    ASSERT_TRUE(json_is_false(json_object_get(j, "changed")));
    json_decref(j);
    /* Pushing with execute:true an existing pushed call queues it too. */
    id = create_add(5, 6, false, 201);
    snprintf(saved, sizeof(saved), "%s", id);
    create_add(5, 6, true, 200);
    j = pull("p2prpc_add", saved, NULL);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    json_decref(j);
}

static void test_bad_input(void) {
    const char *push = "/api/v1/p2prpc_add/push_update";
    char id[P2P_HASH_HEX_LEN + 1], body[1024];
    ident_of(add_schema, "{\"a\":7,\"b\":8}", id);
    /* One pending call, to tell "unknown" from "pending" below. */
    const char *pending = create_add(70, 80, false, 201);
    char pending_id[P2P_HASH_HEX_LEN + 1];
    snprintf(pending_id, sizeof(pending_id), "%s", pending);
    char *before = snapshot();

    expect_error("POST", push, "{\"identifier\": ", 400, "invalid", "malformed JSON");
    expect_error("POST", push, "[1,2]", 400, "invalid", "JSON object");
    expect_error("POST", push, create_body(add_schema, id, "{\"a\":7,\"b\":\"8\"}", true), 400,
                 "type", "b");
    expect_error("POST", push, create_body(add_schema, id, "{\"a\":7,\"b\":8.5}", true), 400,
                 "type", "b");
    expect_error("POST", push, create_body(add_schema, id, "{\"a\":7}", true), 400, "invalid", "b");
    expect_error("POST", push, create_body(add_schema, id, "{\"a\":7,\"b\":8,\"c\":9}", true), 400,
                 "invalid", "c");
    expect_error("POST", push, create_body(add_schema, id, "[7,8]", true), 400, "type", NULL);
    expect_error("POST", "/api/v1/p2prpc_nope/push_update",
                 create_body(add_schema, id, "{\"a\":7,\"b\":8}", true), 404, "not_found",
                 "p2prpc_nope");
    /* Another signature of the function: a clear 409 naming the broker's. */
    snprintf(body, sizeof(body),
             "{\"identifier\":\"%s\",\"fingerprint\":\"%064d\",\"args\":{\"a\":7,\"b\":8}}", id, 0);
    expect_error("POST", push, body, 409, "conflict", "fingerprint mismatch: broker serves");
    /* An identifier that is not the arguments' own. */
    char other[P2P_HASH_HEX_LEN + 1];
    ident_of(add_schema, "{\"a\":7,\"b\":9}", other);
    expect_error("POST", push, create_body(add_schema, other, "{\"a\":7,\"b\":8}", true), 400,
                 "invalid", "identifier does not match the arguments");
    /* Malformed identifiers: never looked up. */
    const char *bad_ids[] = {"abc",
                             "ABCDEF0000000000000000000000000000000000000000000000000000000000",
                             "../../../../etc/passwd"};
    for (size_t i = 0; i < 3; i++) {
        expect_error("POST", push, create_body(add_schema, bad_ids[i], "{\"a\":7,\"b\":8}", true),
                     400, "invalid", "identifier");
        snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", bad_ids[i]);
        expect_error("POST", "/api/v1/p2prpc_add/execute_function", body, 400, "invalid",
                     "identifier");
    }
    expect_error("GET", "/api/v1/p2prpc_add/pull_update?identifier=abc", NULL, 400, "invalid",
                 "identifier");
    expect_error("GET", "/api/v1/p2prpc_add/pull_update", NULL, 400, "invalid", "identifier");
    /* Unknown identifier: 404, while a pending one is 200 with its status. */
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s", id);
    expect_error("GET", path, NULL, 404, "not_found", id);
    json_t *j = pull("p2prpc_add", pending_id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "pushed");
    json_decref(j);
    /* A call asked for under another function is unknown there. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_cat/pull_update?identifier=%s", pending_id);
    expect_error("GET", path, NULL, 404, "not_found", NULL);
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    expect_error("POST", "/api/v1/p2prpc_add/execute_function", body, 404, "not_found", NULL);
    expect_error("POST", "/api/v1/p2prpc_add/terminate", body, 404, "not_found", NULL);
    expect_error("POST", "/api/v1/p2prpc_add/delete", body, 404, "not_found", NULL);
    expect_error("POST", "/api/v1/p2prpc_add/restart", body, 404, "not_found", NULL);
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\",\"extra\":1}", pending_id);
    expect_error("POST", "/api/v1/p2prpc_add/terminate", body, 400, "invalid", "extra");
    /* Query arguments out of range. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&wait=301",
             pending_id);
    expect_error("GET", path, NULL, 400, "invalid", "wait");
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=-1",
             pending_id);
    expect_error("GET", path, NULL, 400, "invalid", "since");
    expect_error("POST", "/api/v1/p2prpc_add/search_work?wait=x", NULL, 400, "invalid", "wait");
    expect_error("POST", "/api/v1/p2prpc_add/search_work", "{\"worker\":\"a b\"}", 400, "invalid",
                 "worker");
    /* A file argument whose blob is not on the broker. */
    char args[300], hash[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex("never uploaded", 14, hash, NULL));
    snprintf(args, sizeof(args), "{\"f\":{\"hash\":\"%s\",\"size\":14},\"s\":\"x\"}", hash);
    ident_of(cat_schema, args, other);
    char msg[200];
    snprintf(msg, sizeof(msg), "blob %s", hash);
    expect_error("POST", "/api/v1/p2prpc_cat/push_update",
                 create_body(cat_schema, other, args, true), 409, "conflict", msg);
    expect_error("POST", "/api/v1/p2prpc_cat/push_update",
                 create_body(cat_schema, other, args, true), 409, "conflict", "upload it first");
    assert_unchanged(before);
    free(before);
}

static void test_worker_flow(void) {
    drain("p2prpc_add");
    const char *created = create_add(20, 22, true, 201);
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", created);
    json_t *c = claim("p2prpc_add", 0);
    ASSERT_TRUE(c != NULL);
    ASSERT_STR_EQ(str(c, "identifier"), id);
    ASSERT_STR_EQ(str(c, "function"), "p2prpc_add");
    ASSERT_EQ(num(json_object_get(c, "args"), "a"), 20);
    ASSERT_EQ(strlen(str(c, "lease_token")), P2P_STORE_TOKEN_LEN);
    ASSERT_GT(num(c, "lease_expires_ms"), 0);
    ASSERT_EQ(num(c, "attempts"), 1);
    /* Nothing else is queued: a second claim without wait gets 204. */
    ASSERT_TRUE(claim("p2prpc_add", 0) == NULL);

    json_t *j = NULL;
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"progress\":40", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "running");
    ASSERT_TRUE(json_is_false(json_object_get(j, "terminate_requested")));
    ASSERT_GE(num(j, "lease_expires_ms"), num(c, "lease_expires_ms"));
    json_decref(j);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"heartbeat\":true", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "running");
    json_decref(j);
    j = pull("p2prpc_add", id, NULL);
    ASSERT_EQ((int)json_real_value(json_object_get(j, "progress")), 40);
    json_decref(j);

    /* Bad updates change nothing. */
    char *before = snapshot();
    const char *bad[] = {"\"progress\":101",
                         "\"progress\":\"x\"",
                         "\"heartbeat\":false",
                         "\"progress\":1,\"error\":\"x\"",
                         "\"outputs\":{\"sum\":\"3\"}",
                         "\"outputs\":{\"total\":3}",
                         "\"terminated\":false",
                         "\"error\":5",
                         "\"bogus\":1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(worker_push("p2prpc_add", c, bad[i], NULL), 400);
    expect_error("POST", "/api/v1/p2prpc_add/push_update",
                 "{\"identifier\":\"x\",\"lease_token\":\"y\",\"heartbeat\":true}", 400, "invalid",
                 "identifier");
    /* A stale lease: 409. */
    char stale[400];
    snprintf(stale, sizeof(stale),
             "{\"identifier\":\"%s\",\"lease_token\":\"%032d\",\"progress\":50}", id, 0);
    expect_error("POST", "/api/v1/p2prpc_add/push_update", stale, 409, "conflict", "stale lease");
    assert_unchanged(before);
    free(before);

    /* Terminate: running, asked to stop; the worker learns it at its next push. */
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/terminate", body, &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "running");
    ASSERT_TRUE(json_is_true(json_object_get(j, "terminate_requested")));
    json_decref(j);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"progress\":60", &j), 200);
    ASSERT_TRUE(json_is_true(json_object_get(j, "terminate_requested")));
    json_decref(j);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"terminated\":true", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "terminated");
    ASSERT_EQ(num(j, "lease_expires_ms"), 0);
    json_decref(j);
    /* Restart runs it again; this time it completes. */
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/execute_function", body, NULL), 409);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/restart", body, &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    json_decref(j);
    json_decref(c);
    c = claim("p2prpc_add", 0);
    ASSERT_TRUE(c != NULL);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"outputs\":{\"sum\":42}", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "done");
    json_decref(j);
    /* A retried completion with the same lease is accepted and changes nothing. */
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"outputs\":{\"sum\":42}", NULL), 200);
    j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "done");
    ASSERT_EQ(num(json_object_get(j, "outputs"), "sum"), 42);
    ASSERT_EQ((int)json_real_value(json_object_get(j, "progress")), 100);
    json_decref(j);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/restart", "{\"identifier\":\"0\"}", NULL), 400);
    json_decref(c);

    /* A worker that fails the call: its message is the call's error. */
    create_add(30, 31, true, 201);
    c = claim("p2prpc_add", 0);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"error\":\"out of GPU memory\"", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "failed");
    json_decref(j);
    j = pull("p2prpc_add", str(c, "identifier"), NULL);
    ASSERT_STR_EQ(str(j, "error"), "out of GPU memory");
    json_decref(j);
    json_decref(c);
}

/* A worker that shuts down gives its call back: queued at once (a waiting
 * search_work gets it), and the claim is not counted as an attempt. */
static void test_worker_release(void) {
    drain("p2prpc_add");
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", create_add(7, 8, true, 201));
    json_t *c = claim("p2prpc_add", 0);
    ASSERT_TRUE(c != NULL);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"progress\":25", NULL), 200);
    char *before = snapshot();
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":false", NULL), 400);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":1", NULL), 400);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":true,\"progress\":3", NULL), 400);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":true,\"heartbeat\":true", NULL), 400);
    assert_unchanged(before);
    free(before);

    json_t *j = NULL;
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":true", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    ASSERT_EQ(num(j, "lease_expires_ms"), 0);
    ASSERT_TRUE(json_is_false(json_object_get(j, "terminate_requested")));
    json_decref(j);
    /* Repeated (a lost reply): 200, nothing changes. */
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":true", NULL), 200);
    j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    ASSERT_EQ(num(j, "attempts"), 0);
    json_decref(j);
    json_t *second = claim("p2prpc_add", 0);
    ASSERT_TRUE(second != NULL);
    ASSERT_STR_EQ(str(second, "identifier"), id);
    ASSERT_EQ(num(second, "attempts"), 1);
    /* The old lease is over; the new claimer's holds. */
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"heartbeat\":true", NULL), 409);
    ASSERT_EQ(worker_push("p2prpc_add", c, "\"release\":true", NULL), 409);

    /* A waiting search_work gets a released call at once. */
    bg_call w;
    bg_start(&w, &main_h, "POST", "/api/v1/p2prpc_add/search_work?wait=20", "{\"worker\":\"w-2\"}");
    ASSERT_TRUE(wait_size(parked_of, NULL, 1, 5000));
    int64_t released = test_now_ms();
    ASSERT_EQ(worker_push("p2prpc_add", second, "\"release\":true", NULL), 200);
    http_bg_join(&w.bg);
    ASSERT_EQ(w.bg.resp.status, 200);
    ASSERT_LT(w.bg.resp.done_ms - released, 2000);
    json_t *again = http_json(&w.bg.resp);
    http_resp_cleanup(&w.bg.resp);
    ASSERT_STR_EQ(str(again, "identifier"), id);
    ASSERT_EQ(num(again, "attempts"), 1);
    /* A release after a terminate request ends the call as terminated. */
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/terminate", body, NULL), 200);
    ASSERT_EQ(worker_push("p2prpc_add", again, "\"release\":true", &j), 200);
    ASSERT_STR_EQ(str(j, "status"), "terminated");
    ASSERT_TRUE(json_is_true(json_object_get(j, "terminate_requested")));
    json_decref(j);
    j = pull("p2prpc_add", id, NULL);
    ASSERT_STR_EQ(str(j, "status"), "terminated");
    json_decref(j);
    json_decref(again);
    json_decref(second);
    json_decref(c);
}

static void test_bad_signature(void) {
    char *before = snapshot();
    char url[300];
    snprintf(url, sizeof(url), "%s/api/v1/p2prpc_add/push_update", main_h.base);
    const char *body = create_body(add_schema, "0", "{}", true);
    /* Signed for another path: refused before anything is read. */
    http_req q = {.method = "POST", .url = url, .body = body, .body_len = strlen(body)};
    signed_headers sh;
    char other[300];
    snprintf(other, sizeof(other), "%s/api/v1/p2prpc_add/delete", main_h.base);
    q.url = other;
    sign_into(&q, &sh, main_h.base);
    q.url = url;
    http_resp r;
    http_do(&q, &r);
    assert_json_error(&r, 401, "unauthorized");
    ASSERT_STR_CONTAINS(r.body, "bad signature");
    http_resp_cleanup(&r);
    /* Replayed: the same headers twice. */
    http_req ok = {.method = "GET", .url = NULL};
    snprintf(url, sizeof(url), "%s/api/v1/functions", main_h.base);
    ok.url = url;
    sign_into(&ok, &sh, main_h.base);
    http_do(&ok, &r);
    ASSERT_EQ(r.status, 200);
    http_resp_cleanup(&r);
    http_do(&ok, &r);
    assert_json_error(&r, 401, "unauthorized");
    ASSERT_STR_CONTAINS(r.body, "replayed");
    http_resp_cleanup(&r);
    assert_unchanged(before);
    free(before);
}

static void test_search_work_long_poll(void) {
    drain("p2prpc_add");
    bg_call w;
    bg_start(&w, &main_h, "POST", "/api/v1/p2prpc_add/search_work?wait=20", "{\"worker\":\"w-1\"}");
    ASSERT_TRUE(wait_size(parked_of, NULL, 1, 5000));
    int64_t pushed = test_now_ms();
    const char *id = create_add(100, 200, true, 201);
    http_bg_join(&w.bg);
    ASSERT_EQ(w.bg.resp.status, 200);
    json_t *j = http_json(&w.bg.resp);
    ASSERT_STR_EQ(str(j, "identifier"), id);
    fprintf(stderr, "search_work answered %lld ms after the push started\n",
            (long long)(w.bg.resp.done_ms - pushed));
    /* Released by the push, far before its 20 s. */
    ASSERT_LT(w.bg.resp.done_ms - pushed, 2000);
    json_decref(j);
    http_resp_cleanup(&w.bg.resp);

    /* Nothing queued: 204 once the wait is over, not before. */
    int64_t start = test_now_ms();
    ASSERT_TRUE(claim("p2prpc_add", 1) == NULL);
    ASSERT_GE(test_now_ms() - start, 950);
    ASSERT_LT(test_now_ms() - start, 5000);
    ASSERT_EQ(parked_of(NULL), 0);
}

static void test_pull_update_long_poll(void) {
    const char *created = create_add(300, 400, false, 201);
    char id[P2P_HASH_HEX_LEN + 1], path[300], body[200];
    snprintf(id, sizeof(id), "%s", created);
    /* Already past `since`: answered at once. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=0&wait=20",
             id);
    int64_t start = test_now_ms();
    json_t *j = NULL;
    ASSERT_EQ(api("GET", path, NULL, &j), 200);
    ASSERT_LT(test_now_ms() - start, 2000);
    ASSERT_EQ(num(j, "version"), 1);
    json_decref(j);
    /* At `since`: parked until the call changes. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=1&wait=20",
             id);
    bg_call w;
    bg_start(&w, &main_h, "GET", path, NULL);
    ASSERT_TRUE(wait_size(parked_of, NULL, 1, 5000));
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    int64_t changed = test_now_ms();
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/execute_function", body, NULL), 200);
    http_bg_join(&w.bg);
    ASSERT_EQ(w.bg.resp.status, 200);
    j = http_json(&w.bg.resp);
    ASSERT_EQ(num(j, "version"), 2);
    ASSERT_STR_EQ(str(j, "status"), "queued");
    ASSERT_LT(w.bg.resp.done_ms - changed, 2000);
    json_decref(j);
    http_resp_cleanup(&w.bg.resp);
    /* No change: the current state once the wait is over. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=2&wait=1", id);
    start = test_now_ms();
    ASSERT_EQ(api("GET", path, NULL, &j), 200);
    ASSERT_GE(test_now_ms() - start, 950);
    ASSERT_EQ(num(j, "version"), 2);
    json_decref(j);
    /* Deleted while waited on: 404. */
    snprintf(path, sizeof(path), "/api/v1/p2prpc_add/pull_update?identifier=%s&since=2&wait=20",
             id);
    bg_start(&w, &main_h, "GET", path, NULL);
    ASSERT_TRUE(wait_size(parked_of, NULL, 1, 5000));
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_add/delete", body, NULL), 200);
    http_bg_join(&w.bg);
    /* Delete terminates first: the waiter sees that change, or the call gone. */
    if (w.bg.resp.status == 200) {
        j = http_json(&w.bg.resp);
        ASSERT_STR_EQ(str(j, "status"), "terminated");
        json_decref(j);
    } else {
        assert_json_error(&w.bg.resp, 404, "not_found");
    }
    http_resp_cleanup(&w.bg.resp);
    expect_error("GET", path, NULL, 404, "not_found", NULL);
}

int main(void) {
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    const char *peers[] = {"http://127.0.0.1:9/"};
    o.peers = peers;
    o.n_peers = 1;
    o.public_url = "https://broker.example:8443";
    broker_test_setup("broker_routes", &o);
    TEST_RUN(test_node_routes);
    TEST_RUN(test_create_execute_pull);
    TEST_RUN(test_bad_input);
    TEST_RUN(test_worker_flow);
    TEST_RUN(test_worker_release);
    TEST_RUN(test_bad_signature);
    TEST_RUN(test_search_work_long_poll);
    TEST_RUN(test_pull_update_long_poll);
    return broker_test_teardown();
}
