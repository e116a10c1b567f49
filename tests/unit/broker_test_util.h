/* Shared by the broker's in-process tests (test_broker_*.c): a broker on
 * 127.0.0.1:0 with a secret and two functions, signed libcurl requests, and
 * helpers for calls, claims and blobs. Header-only, static. */
#ifndef P2PRPC_BROKER_TEST_UTIL_H
#define P2PRPC_BROKER_TEST_UTIL_H

#include "broker.h"
#include "fsutil.h"
#include "hash.h"
#include "http_test_client.h"
#include "ident.h"
#include "node.h"
#include "sign.h"
#include "store_test_util.h"

#include <fcntl.h>
#include <sys/stat.h>

static const unsigned char secret[] = "broker routes test secret";
static char root[512];
static p2p_schema *add_schema, *cat_schema;

/* The broker under test and its base URL; some tests start their own. */
typedef struct harness {
    p2p_broker *b;
    char base[128];
    char data[600];
} harness;

static harness main_h;

/* Starts a broker in ROOT/NAME on 127.0.0.1:0 with the test secret and the two
 * functions; `o` gives the other options (host, port, data dir and secret are
 * overwritten). Fails the test when it cannot start. */
static inline void start_broker(harness *h, const char *name, p2p_broker_options *o) {
    snprintf(h->data, sizeof(h->data), "%s/%s", root, name);
    /* With P2PRPC_TEST_STORE=mongodb (the conformance runs, store_test_util.h)
     * the broker keeps its calls in a MongoDB database of its own and its
     * blobs in that database's GridFS bucket. */
    static char mongo_store[1024];
    if (st_mongo() && o->store == NULL) {
        st_location(root, name, mongo_store, sizeof(mongo_store));
        o->store = mongo_store;
    }
    o->host = "127.0.0.1";
    o->port = 0;
    o->data_dir = h->data;
    o->secret = secret;
    o->secret_len = sizeof(secret) - 1;
    p2p_error err = {0};
    if (p2p_broker_new(o, &h->b, &err) != 0)
        TEST_FAIL_("broker_new: %s", err.msg);
    ASSERT_OK(p2p_registry_add(p2p_broker_registry(h->b), add_schema, NULL));
    ASSERT_OK(p2p_registry_add(p2p_broker_registry(h->b), cat_schema, NULL));
    if (p2p_broker_start(h->b, &err) != 0)
        TEST_FAIL_("broker_start: %s", err.msg);
    snprintf(h->base, sizeof(h->base), "%s", p2p_broker_url(h->b));
    ASSERT_GT(p2p_broker_port(h->b), 0);
}

/* ---- signed requests ---- */

typedef struct signed_headers {
    char lines[3][160];
} signed_headers;

/* Signs `method` on the target of `url` and puts the three headers first. */
static inline void sign_into(http_req *q, signed_headers *sh, const char *base) {
    p2p_sign_headers h;
    const char *target = q->url + strlen(base);
    ASSERT_OK(p2p_sign_request(secret, sizeof(secret) - 1, q->method ? q->method : "GET", target,
                               (int64_t)time(NULL), &h, NULL));
    snprintf(sh->lines[0], sizeof(sh->lines[0]), "%s: %s", P2P_SIGN_HEADER_TIME, h.time);
    snprintf(sh->lines[1], sizeof(sh->lines[1]), "%s: %s", P2P_SIGN_HEADER_NONCE, h.nonce);
    snprintf(sh->lines[2], sizeof(sh->lines[2]), "%s: %s", P2P_SIGN_HEADER_SIGNATURE, h.signature);
    int n = 0;
    while (n < 5 && q->headers[n] != NULL)
        n++;
    for (int i = n - 1; i >= 0; i--)
        q->headers[i + 3] = q->headers[i];
    for (int i = 0; i < 3; i++)
        q->headers[i] = sh->lines[i];
}

/* One signed request to `h`; `r` is the caller's to clean up. */
static inline void request(const harness *h, const char *method, const char *path, const void *body,
                           size_t len, http_resp *r) {
    char url[1200];
    snprintf(url, sizeof(url), "%s%s", h->base, path);
    http_req q = {.method = method, .url = url, .body = body, .body_len = len, .timeout_ms = 20000};
    signed_headers sh;
    sign_into(&q, &sh, h->base);
    http_do(&q, r);
    ASSERT_EQ(r->rc, CURLE_OK);
}

/* A JSON request: returns the status, `*out` (may be NULL) the JSON answer. */
static inline long api_on(const harness *h, const char *method, const char *path, const char *body,
                          json_t **out) {
    http_resp r;
    request(h, method, path, body, body ? strlen(body) : 0, &r);
    long status = r.status;
    if (out != NULL)
        *out = r.len > 0 ? http_json(&r) : NULL;
    http_resp_cleanup(&r);
    return status;
}

static inline long api(const char *method, const char *path, const char *body, json_t **out) {
    return api_on(&main_h, method, path, body, out);
}

/* The request must fail with `status`, error `code`, and `needle` in its message. */
static inline void expect_error(const char *method, const char *path, const char *body, long status,
                                const char *code, const char *needle) {
    http_resp r;
    request(&main_h, method, path, body, body ? strlen(body) : 0, &r);
    assert_json_error(&r, status, code);
    if (needle != NULL)
        ASSERT_STR_CONTAINS(r.body, needle);
    http_resp_cleanup(&r);
}

static inline const char *str(const json_t *j, const char *key) {
    return json_string_value(json_object_get(j, key));
}

static inline json_int_t num(const json_t *j, const char *key) {
    return json_integer_value(json_object_get(j, key));
}

/* ---- calls ---- */

/* The identifier of a call of `s` with the JSON arguments `args`. */
static inline void ident_of(const p2p_schema *s, const char *args, char out[P2P_HASH_HEX_LEN + 1]) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(s, &n);
    p2p_value values[8];
    json_t *j = json_loads(args, 0, NULL);
    ASSERT_TRUE(j != NULL);
    ASSERT_OK(p2p_value_list_from_json(params, n, j, values, NULL));
    ASSERT_OK(p2p_ident_compute(s, values, out, NULL));
    p2p_value_list_cleanup(values, n);
    json_decref(j);
}

static char *create_body(const p2p_schema *s, const char *id, const char *args, bool execute) {
    static char body[4096];
    snprintf(body, sizeof(body),
             "{\"identifier\":\"%s\",\"fingerprint\":\"%s\",\"args\":%s,\"execute\":%s}", id,
             p2p_schema_fingerprint(s), args, execute ? "true" : "false");
    return body;
}

/* Creates a call of p2prpc_add(a, b) and returns its identifier (static). */
static inline const char *create_add(int64_t a, int64_t b, bool execute, long want_status) {
    static char id[P2P_HASH_HEX_LEN + 1];
    char args[128];
    snprintf(args, sizeof(args), "{\"a\":%lld,\"b\":%lld}", (long long)a, (long long)b);
    ident_of(add_schema, args, id);
    json_t *j = NULL;
    long st = api("POST", "/api/v1/p2prpc_add/push_update",
                  create_body(add_schema, id, args, execute), &j);
    ASSERT_EQ(st, want_status);
    ASSERT_STR_EQ(str(j, "identifier"), id);
    ASSERT_TRUE(json_is_boolean(json_object_get(j, "created")));
    ASSERT_EQ(json_is_true(json_object_get(j, "created")), want_status == 201);
    json_decref(j);
    return id;
}

static inline json_t *pull(const char *function, const char *id, const char *extra) {
    char path[400];
    snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s%s", function, id,
             extra ? extra : "");
    json_t *j = NULL;
    ASSERT_EQ(api("GET", path, NULL, &j), 200);
    return j;
}

/* Claims a call of `function` (wait seconds); NULL on 204. */
static inline json_t *claim(const char *function, int wait) {
    char path[200];
    snprintf(path, sizeof(path), "/api/v1/%s/search_work?wait=%d", function, wait);
    json_t *j = NULL;
    long st = api("POST", path, "{\"worker\":\"test-worker\"}", &j);
    ASSERT_TRUE(st == 200 || st == 204);
    return st == 200 ? j : NULL;
}

/* What a bad request must not change: every call count and the blobs. */
static char *snapshot(void) {
    http_resp r;
    request(&main_h, "GET", "/metrics", NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    char *out = calloc(1, r.len + 1);
    ASSERT_TRUE(out != NULL);
    /* Keep the lines that describe stored state, in order. */
    size_t pos = 0;
    for (const char *p = r.body; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, "p2prpc_calls{", 13) == 0 || strncmp(p, "p2prpc_blobs ", 13) == 0 ||
            strncmp(p, "p2prpc_blob_bytes ", 18) == 0) {
            memcpy(out + pos, p, len);
            pos += len;
            out[pos++] = '\n';
        }
        p = end ? end + 1 : NULL;
    }
    http_resp_cleanup(&r);
    return out;
}

static inline void assert_unchanged(const char *before) {
    char *after = snapshot();
    ASSERT_STR_EQ(after, before);
    free(after);
}

/* Uploads `len` bytes; returns the status, the hash in `hash`. */
static inline long put_blob(const void *data, size_t len, char hash[P2P_HASH_HEX_LEN + 1]) {
    ASSERT_OK(p2p_hash_bytes_hex(data, len, hash, NULL));
    char path[200];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    http_resp r;
    request(&main_h, "PUT", path, data, len, &r);
    long st = r.status;
    http_resp_cleanup(&r);
    return st;
}

/* Claims every queued call of `function` and fails it, so that the next
 * test starts with an empty queue. */
static inline void drain(const char *function) {
    for (int i = 0; i < 1000; i++) {
        json_t *c = claim(function, 0);
        if (c == NULL)
            return;
        char body[300], path[200];
        snprintf(body, sizeof(body),
                 "{\"identifier\":\"%s\",\"lease_token\":\"%s\",\"error\":\"x\"}",
                 str(c, "identifier"), str(c, "lease_token"));
        snprintf(path, sizeof(path), "/api/v1/%s/push_update", function);
        ASSERT_EQ(api("POST", path, body, NULL), 200);
        json_decref(c);
    }
    TEST_FAIL_("the queue of %s does not drain", function);
}

/* A worker update; returns the status and the JSON in `*out` (may be NULL). */
static inline long worker_push(const char *function, const json_t *claimed, const char *fields,
                               json_t **out) {
    char body[1024], path[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\",\"lease_token\":\"%s\",%s}",
             str(claimed, "identifier"), str(claimed, "lease_token"), fields);
    snprintf(path, sizeof(path), "/api/v1/%s/push_update", function);
    return api("POST", path, body, out);
}

/* A signed request in a background thread. */
typedef struct bg_call {
    http_bg bg;
    char url[400];
    signed_headers sh;
} bg_call;

static inline void bg_start(bg_call *c, const harness *h, const char *method, const char *path,
                            const char *body) {
    memset(c, 0, sizeof(*c));
    snprintf(c->url, sizeof(c->url), "%s%s", h->base, path);
    c->bg.req = (http_req){.method = method,
                           .url = c->url,
                           .body = body,
                           .body_len = body ? strlen(body) : 0,
                           .timeout_ms = 30000};
    sign_into(&c->bg.req, &c->sh, h->base);
    http_bg_start(&c->bg);
}

static inline size_t parked_of(void *arg) {
    (void)arg;
    json_t *j = NULL;
    http_resp r;
    request(&main_h, "GET", "/metrics", NULL, 0, &r);
    const char *line = strstr(r.body, "\np2prpc_longpoll_waiting ");
    size_t n = line ? (size_t)strtoull(line + 25, NULL, 10) : 0;
    http_resp_cleanup(&r);
    json_decref(j);
    return n;
}

static inline void blob_path(const char *hash, char *path, size_t size) {
    snprintf(path, size, "/api/v1/blobs/%s", hash);
}

/* A call of p2prpc_cat over an uploaded blob; its identifier into `id`. */
static inline void create_cat(const char *content, char id[P2P_HASH_HEX_LEN + 1],
                              char hash[P2P_HASH_HEX_LEN + 1]) {
    ASSERT_EQ(put_blob(content, strlen(content), hash) / 100, 2);
    char args[300];
    snprintf(args, sizeof(args), "{\"f\":{\"hash\":\"%s\",\"size\":%zu},\"s\":\"x\"}", hash,
             strlen(content));
    ident_of(cat_schema, args, id);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_cat/push_update", create_body(cat_schema, id, args, true),
                  NULL),
              201);
}

static p2p_schema *make_schema(const char *name, const p2p_param *in, size_t n_in,
                               const p2p_param *out) {
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_build(name, in, n_in, out, 1, &s, NULL));
    return s;
}

/* Creates the scratch dir and the two schemas, and starts main_h with `o`
 * (NULL = the defaults). */
static inline void broker_test_setup(const char *name, p2p_broker_options *o) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_test_dir(root, sizeof(root), name);
    const p2p_param add_in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param add_out[] = {{"sum", P2P_TYPE_INT64}};
    const p2p_param cat_in[] = {{"f", P2P_TYPE_FILE}, {"s", P2P_TYPE_STRING}};
    const p2p_param cat_out[] = {{"out", P2P_TYPE_FILE}};
    add_schema = make_schema("p2prpc_add", add_in, 2, add_out);
    cat_schema = make_schema("p2prpc_cat", cat_in, 2, cat_out);
    p2p_broker_options defaults;
    p2p_broker_options_init(&defaults);
    start_broker(&main_h, "main", o != NULL ? o : &defaults);
}

/* Stops main_h, frees the schemas, removes the scratch dir; the exit status
 * (77, skipped, when a test could not run on this server). */
static inline int broker_test_teardown(void) {
    p2p_broker_free(main_h.b);
    p2p_schema_free(add_schema);
    p2p_schema_free(cat_schema);
    curl_global_cleanup();
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? st_exit_status() : 1; /* 77 when a test was skipped */
}

#endif
