/* The broker test fixture: see broker_fixture.h. */
#include "broker_fixture.h"

#include "ident.h"
#include "value.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static const char *const status_names[6] = {"pushed", "queued", "running",
                                            "done",   "failed", "terminated"};

/* ---- schemas ---- */

static p2p_schema *schemas[FX_FN_COUNT];
static pthread_once_t schemas_once = PTHREAD_ONCE_INIT;

static void free_schemas(void) {
    for (int i = 0; i < FX_FN_COUNT; i++)
        p2p_schema_free(schemas[i]);
}

static void build_schemas(void) {
    static const p2p_param add_in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    static const p2p_param add_out[] = {{"sum", P2P_TYPE_INT64}};
    static const p2p_param an_in[] = {{"video_handle", P2P_TYPE_FILE}, {"arg2", P2P_TYPE_INT64}};
    static const p2p_param an_out[] = {{"results_file1", P2P_TYPE_FILE},
                                       {"results_file2", P2P_TYPE_FILE},
                                       {"res_var", P2P_TYPE_INT64}};
    static const p2p_param echo_in[] = {
        {"text", P2P_TYPE_STRING}, {"scale", P2P_TYPE_DOUBLE}, {"flag", P2P_TYPE_BOOL}};
    static const p2p_param echo_out[] = {{"out", P2P_TYPE_STRING}};
    p2p_error err;
    if (p2p_schema_build("p2prpc_add", add_in, 2, add_out, 1, &schemas[FX_ADD], &err) != 0 ||
        p2p_schema_build("p2prpc_analyze_large_file", an_in, 2, an_out, 3, &schemas[FX_ANALYZE],
                         &err) != 0 ||
        p2p_schema_build("p2prpc_echo", echo_in, 3, echo_out, 1, &schemas[FX_ECHO], &err) != 0)
        TEST_FAIL_("schema: %s", err.msg);
    atexit(free_schemas);
}

const p2p_schema *fx_schema(fx_fn f) {
    pthread_once(&schemas_once, build_schemas);
    ASSERT_TRUE(f >= 0 && f < FX_FN_COUNT);
    return schemas[f];
}

const char *fx_name(fx_fn f) {
    return p2p_schema_name(fx_schema(f));
}

/* ---- the broker process ---- */

static void write_schema_file(const char *path) {
    json_t *all = json_array();
    for (int i = 0; i < FX_FN_COUNT; i++) {
        json_t *one = NULL;
        ASSERT_OK(p2p_schema_to_json(fx_schema((fx_fn)i), &one, NULL));
        ASSERT_OK(json_array_append_new(all, one));
    }
    char *text = json_dumps(all, JSON_INDENT(2));
    ASSERT_TRUE(text != NULL);
    ASSERT_OK(harness_write_file(path, text, strlen(text), NULL));
    free(text);
    json_decref(all);
}

void broker_init(broker *b, const char *name, const broker_config *cfg) {
    memset(b, 0, sizeof(*b));
    if (cfg != NULL)
        b->cfg = *cfg;
    p2p_error err;
    if (harness_scratch_dir(name, b->dir, sizeof(b->dir), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    snprintf(b->store, sizeof(b->store), "sqlite:%s/broker.db", b->dir);
    snprintf(b->blobs, sizeof(b->blobs), "%s/blobs", b->dir);
    snprintf(b->data, sizeof(b->data), "%s/data", b->dir);
    snprintf(b->secret_path, sizeof(b->secret_path), "%s/secret", b->dir);
    snprintf(b->schema_path, sizeof(b->schema_path), "%s/schemas.json", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/broker.log", b->dir);
    if (!b->cfg.no_secret) {
        b->secret_len = sizeof(b->secret);
        if (harness_write_secret(b->secret_path, b->secret, b->secret_len, &err) != 0)
            TEST_FAIL_("%s", err.msg);
    }
    write_schema_file(b->schema_path);
}

/* argv of the broker; the numbers live in `nums` (caller's storage). */
static void build_argv(broker *b, const char *bin, const char **argv, size_t max,
                       char nums[4][32]) {
    size_t n = 0;
#define ARG(x)                                                                                     \
    do {                                                                                           \
        ASSERT_LT(n + 1, max);                                                                     \
        argv[n++] = (x);                                                                           \
    } while (0)
    ARG(bin);
    ARG("--listen");
    ARG("127.0.0.1:0");
    ARG("--store");
    ARG(b->store);
    ARG("--blobs");
    ARG(b->blobs);
    ARG("--data-dir");
    ARG(b->data);
    ARG("--schema");
    ARG(b->schema_path);
    if (b->secret_len > 0) {
        ARG("--secret-file");
        ARG(b->secret_path);
    }
    if (b->cfg.lease_seconds > 0) {
        snprintf(nums[0], 32, "%d", b->cfg.lease_seconds);
        ARG("--lease-seconds");
        ARG(nums[0]);
    }
    if (b->cfg.max_attempts > 0) {
        snprintf(nums[1], 32, "%d", b->cfg.max_attempts);
        ARG("--max-attempts");
        ARG(nums[1]);
    }
    if (b->cfg.max_blob_size > 0) {
        snprintf(nums[2], 32, "%lld", b->cfg.max_blob_size);
        ARG("--max-blob-size");
        ARG(nums[2]);
    }
    if (b->cfg.sync != NULL) {
        ARG("--sync");
        ARG(b->cfg.sync);
    }
    for (size_t i = 0; b->cfg.extra_args != NULL && b->cfg.extra_args[i] != NULL; i++)
        ARG(b->cfg.extra_args[i]);
    argv[n] = NULL;
#undef ARG
}

int broker_try_start(broker *b, p2p_error *err) {
    ASSERT_TRUE(b->proc == NULL);
    char bin[HARNESS_PATH_MAX], nums[4][32];
    const char *argv[64];
    ASSERT_OK(harness_bin_path("p2prpc-broker", NULL, bin, sizeof(bin), err));
    build_argv(b, bin, argv, sizeof(argv) / sizeof(argv[0]), nums);
    harness_proc_options o = {
        .argv = argv, .log_path = b->log, .wait_listening = true, .ready_timeout_ms = 60000};
    int rc = harness_proc_start(&o, &b->proc, err);
    if (rc != 0) {
        b->proc = NULL;
        return rc;
    }
    snprintf(b->url, sizeof(b->url), "%s", harness_proc_url(b->proc));
    fprintf(stderr, "broker %d (start %d) at %s, log %s\n", (int)harness_proc_pid(b->proc),
            ++b->starts, b->url, b->log);
    /* The listening line is exact: the loopback address and the real port. */
    const char *line = harness_proc_listening_line(b->proc);
    ASSERT_TRUE(strncmp(line, "listening on http://127.0.0.1:", 30) == 0);
    ASSERT_GT(strtol(line + 30, NULL, 10), 0);
    p2p_http_client_free(b->client);
    b->client = broker_client(b, 60000);
    return 0;
}

void broker_start(broker *b) {
    p2p_error err;
    if (broker_try_start(b, &err) != 0)
        TEST_FAIL_("cannot start p2prpc-broker: %s", err.msg);
}

static void forget_proc(broker *b) {
    harness_proc_free(b->proc);
    b->proc = NULL;
}

void broker_stop(broker *b) {
    ASSERT_TRUE(b->proc != NULL);
    int wstatus = 0;
    p2p_error err;
    int64_t t0 = harness_now_ms();
    int rc = harness_proc_stop(b->proc, 30000, &wstatus, &err);
    if (rc != 0)
        TEST_FAIL_("broker stop: %s", err.msg);
    fprintf(stderr, "broker stopped by SIGTERM in %lld ms\n", (long long)(harness_now_ms() - t0));
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        TEST_FAIL_("broker did not exit 0 on SIGTERM: wait status 0x%x (signal %d, exit %d)",
                   wstatus, WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0,
                   WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    forget_proc(b);
}

void broker_kill(broker *b) {
    ASSERT_TRUE(b->proc != NULL);
    p2p_error err;
    if (harness_proc_kill(b->proc, &err) != 0)
        TEST_FAIL_("broker kill: %s", err.msg);
    forget_proc(b);
}

void broker_cleanup(broker *b) {
    harness_proc_free(b->proc);
    b->proc = NULL;
    p2p_http_client_free(b->client);
    b->client = NULL;
    p2p_error err;
    if (harness_rmtree(b->dir, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
}

p2p_http_client *broker_client(const broker *b, long timeout_ms) {
    p2p_error err;
    p2p_http_client *c =
        harness_client_new(b->secret_len ? b->secret : NULL, b->secret_len, timeout_ms, &err);
    if (c == NULL)
        TEST_FAIL_("client: %s", err.msg);
    return c;
}

/* ---- calls ---- */

void fx_call_id(fx_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]) {
    p2p_error err;
    if (p2p_ident_from_json(fx_schema(f), args, id, &err) != 0)
        TEST_FAIL_("ident: %s", err.msg);
}

json_t *fx_add_args(long long a, long long b) {
    return json_pack("{s:I, s:I}", "a", (json_int_t)a, "b", (json_int_t)b);
}

int fx_post(broker *b, p2p_http_client *c, fx_fn f, const char *route, const char *query,
            const json_t *body, harness_reply *r) {
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/%s%s%s", fx_name(f), route, query ? "?" : "",
             query ? query : "");
    return harness_post_json(c ? c : b->client, b->url, path, body, r);
}

int fx_push(broker *b, p2p_http_client *c, fx_fn f, const json_t *args, bool execute,
            char id[P2P_HASH_HEX_LEN + 1], harness_reply *r) {
    fx_call_id(f, args, id);
    json_t *body =
        json_pack("{s:s, s:s, s:O, s:b}", "identifier", id, "fingerprint",
                  p2p_schema_fingerprint(fx_schema(f)), "args", args, "execute", execute);
    ASSERT_TRUE(body != NULL);
    int rc = fx_post(b, c, f, "push_update", NULL, body, r);
    json_decref(body);
    return rc;
}

int fx_on_id(broker *b, p2p_http_client *c, fx_fn f, const char *route, const char *id,
             harness_reply *r) {
    json_t *body = json_pack("{s:s}", "identifier", id);
    int rc = fx_post(b, c, f, route, NULL, body, r);
    json_decref(body);
    return rc;
}

int fx_claim(broker *b, p2p_http_client *c, fx_fn f, int wait, const char *worker,
             harness_reply *r) {
    char query[32];
    snprintf(query, sizeof(query), "wait=%d", wait);
    json_t *body = worker ? json_pack("{s:s}", "worker", worker) : NULL;
    int rc = fx_post(b, c, f, "search_work", wait >= 0 ? query : NULL, body, r);
    json_decref(body);
    return rc;
}

int fx_worker_push(broker *b, p2p_http_client *c, fx_fn f, const char *id, const char *token,
                   json_t *extra, harness_reply *r) {
    json_t *body = json_pack("{s:s, s:s}", "identifier", id, "lease_token", token);
    ASSERT_TRUE(body != NULL);
    if (extra != NULL)
        ASSERT_OK(json_object_update(body, extra));
    json_decref(extra);
    int rc = fx_post(b, c, f, "push_update", NULL, body, r);
    json_decref(body);
    return rc;
}

int fx_pull(broker *b, p2p_http_client *c, fx_fn f, const char *id, long long since, int wait,
            harness_reply *r) {
    char path[512];
    int n = snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s", fx_name(f), id);
    if (since >= 0)
        n += snprintf(path + n, sizeof(path) - (size_t)n, "&since=%lld", since);
    if (wait >= 0)
        snprintf(path + n, sizeof(path) - (size_t)n, "&wait=%d", wait);
    return harness_get(c ? c : b->client, b->url, path, wait > 0 ? (wait + 30) * 1000L : 0, r);
}

long long fx_expect_status(broker *b, fx_fn f, const char *id, const char *status) {
    harness_reply r;
    fx_pull(b, NULL, f, id, -1, -1, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    if (status != NULL && (harness_reply_str(&r, "status") == NULL ||
                           strcmp(harness_reply_str(&r, "status"), status) != 0))
        TEST_FAIL_("call %.12s: expected status %s, got %s", id, status, r.body);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), id);
    long long version = harness_reply_int(&r, "version", -1);
    ASSERT_GT(version, 0);
    harness_reply_cleanup(&r);
    return version;
}

int fx_blob_put(broker *b, p2p_http_client *c, const void *data, size_t len,
                char hash[P2P_HASH_HEX_LEN + 1], harness_reply *r) {
    ASSERT_OK(p2p_hash_bytes_hex(data, len, hash, NULL));
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    return harness_request(c ? c : b->client, b->url, "PUT", path, "application/octet-stream", data,
                           len, 0, r);
}

/* ---- metrics ---- */

char *fx_metrics_text(broker *b) {
    harness_reply r;
    harness_get(b->client, b->url, "/metrics", 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    char *text = r.body;
    r.body = NULL;
    harness_reply_cleanup(&r);
    return text;
}

/* True when the line's label block contains every wanted label. */
static bool labels_match(const char *labels, size_t len, const char *const *want) {
    for (size_t i = 0; want != NULL && want[i] != NULL; i++) {
        const char *at = strstr(labels, want[i]);
        if (at == NULL || at >= labels + len)
            return false;
    }
    return true;
}

double fx_metric(const char *text, const char *name, const char *const *labels) {
    size_t name_len = strlen(name);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (line[0] != '#' && len > name_len && strncmp(line, name, name_len) == 0 &&
            (line[name_len] == '{' || line[name_len] == ' ')) {
            const char *value = line + name_len;
            const char *close = line[name_len] == '{' ? memchr(line, '}', len) : NULL;
            if (close != NULL)
                value = close + 1;
            if (labels_match(line + name_len, (size_t)(value - (line + name_len)), labels))
                return strtod(value, NULL);
        }
        line = eol ? eol + 1 : NULL;
    }
    return -1;
}

void fx_counts(broker *b, fx_fn f, long long counts[6]) {
    char *text = fx_metrics_text(b);
    char fn_label[160];
    snprintf(fn_label, sizeof(fn_label), "function=\"%s\"", fx_name(f));
    for (int i = 0; i < 6; i++) {
        char st_label[64];
        snprintf(st_label, sizeof(st_label), "status=\"%s\"", status_names[i]);
        const char *labels[] = {fn_label, st_label, NULL};
        double v = fx_metric(text, "p2prpc_calls", labels);
        counts[i] = v < 0 ? 0 : (long long)v;
    }
    free(text);
}

void fx_await_metric(broker *b, const char *name, double min, long timeout_ms) {
    int64_t deadline = harness_now_ms() + timeout_ms;
    double v = -1;
    for (long i = 0; i <= timeout_ms / 10 && harness_now_ms() <= deadline; i++) {
        char *text = fx_metrics_text(b);
        v = fx_metric(text, name, NULL);
        free(text);
        if (v >= min)
            return;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    TEST_FAIL_("metric %s stayed at %g, below %g, for %ld ms", name, v, min, timeout_ms);
}
