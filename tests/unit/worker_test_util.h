/* Shared by the worker's in-process tests (test_worker_e2e.c and the others):
 * test functions and their dispatch table, a real broker on 127.0.0.1:0 with
 * a secret, a client over p2p_http_client, and a real worker whose children
 * are this very test program (main() hands argv to p2p_worker_main when it
 * starts with P2P_WORKER_CHILD_FLAG). Header-only, static. */
#ifndef P2PRPC_WORKER_TEST_UTIL_H
#define P2PRPC_WORKER_TEST_UTIL_H

#include "broker.h"
#include "fsutil.h"
#include "hash.h"
#include "http_client.h"
#include "ident.h"
#include "p2prpc.h"
#include "test.h"
#include "worker.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const unsigned char wt_secret[] = "worker test secret";
static char wt_root[512];

/* ---- the test functions (they run in the children) ---- */

static int fn_add(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    p2p_value_set_int64(&out[0], in[0].as.i64 + in[1].as.i64);
    return 0;
}

static int fn_noop(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    p2p_value_set_int64(&out[0], in[0].as.i64);
    return 0;
}

/* out = the content of f, then s; streamed in 64 KiB pieces. */
static int fn_cat(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    int src = open(in[0].as.file.path, O_RDONLY | O_CLOEXEC);
    int dst = open("cat.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    static char buf[65536];
    ssize_t n = 0;
    while (src >= 0 && dst >= 0 && (n = read(src, buf, sizeof(buf))) > 0) {
        if (p2p_fs_write_all(dst, buf, (size_t)n) != 0)
            n = -1;
    }
    bool ok = src >= 0 && dst >= 0 && n == 0 &&
              p2p_fs_write_all(dst, in[1].as.str, strlen(in[1].as.str)) == 0;
    if (src >= 0)
        close(src);
    if (dst >= 0)
        close(dst);
    if (!ok) {
        p2p_fail("cat: %s", strerror(errno));
        return 1;
    }
    /* As generated code does: the path, and no hash (the worker hashes it). */
    out[0].type = P2P_TYPE_FILE;
    out[0].as.file.path = strdup("cat.out");
    out[0].as.file.hash[0] = '\0';
    return 0;
}

static int fn_segv(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)in;
    (void)out;
    (void)out_dir;
    raise(SIGSEGV);
    return 0;
}

static int fn_bad_frame(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)in;
    (void)out;
    (void)out_dir;
    p2p_fail("bad %s", "frame");
    return 1;
}

static inline void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* slow(ms, steps): sleeps ms in `steps` steps, reporting each. */
static int fn_slow(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    int64_t ms = in[0].as.i64, steps = in[1].as.i64;
    for (int64_t i = 0; i < steps; i++) {
        sleep_ms(ms / steps);
        p2p_progress_hook(i + 1, steps);
    }
    p2p_value_set_bool(&out[0], true);
    return 0;
}

/* resume(ms, steps): one step every ms, a checkpoint after each; starts
 * where the checkpoint says; `started` is where it started. */
static int fn_resume(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    int64_t ms = in[0].as.i64, steps = in[1].as.i64, start = 0;
    if (p2p_checkpoint_load("state", "state.txt") == 0) {
        char *text = NULL;
        size_t len = 0;
        if (p2p_fs_read_file("state.txt", 64, &text, &len, NULL) == 0)
            start = strtoll(text, NULL, 10);
        free(text);
    }
    for (int64_t i = start; i < steps; i++) {
        sleep_ms(ms);
        char text[32];
        int len = snprintf(text, sizeof(text), "%lld", (long long)(i + 1));
        if (p2p_fs_write_atomic("state.txt", text, (size_t)len, 0600, NULL) != 0 ||
            p2p_checkpoint_save("state", "state.txt") != 0) {
            p2p_fail("cannot save the checkpoint at step %lld", (long long)i);
            return 1;
        }
        p2p_progress_hook(i + 1, steps);
    }
    p2p_value_set_int64(&out[0], start);
    return 0;
}

/* fork(x): starts a process of its own that sleeps, reports its pid as
 * progress (pid of pid), then sleeps x ms itself. */
static int fn_fork(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    pid_t pid = fork();
    if (pid == 0) {
        sleep_ms(60000);
        _exit(0);
    }
    p2p_progress_hook(pid, pid);
    sleep_ms(in[0].as.i64);
    p2p_value_set_int64(&out[0], pid);
    return 0;
}

enum { F_ADD, F_NOOP, F_CAT, F_SEGV, F_BAD_FRAME, F_SLOW, F_RESUME, F_FORK, F_COUNT };
static p2p_schema *wt_schemas[F_COUNT];
static p2p_worker_function wt_fns[F_COUNT];

static inline void wt_build_schemas(void) {
    static const p2p_param add_in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    static const p2p_param add_out[] = {{"sum", P2P_TYPE_INT64}};
    static const p2p_param x_in[] = {{"x", P2P_TYPE_INT64}};
    static const p2p_param y_out[] = {{"y", P2P_TYPE_INT64}};
    static const p2p_param cat_in[] = {{"f", P2P_TYPE_FILE}, {"s", P2P_TYPE_STRING}};
    static const p2p_param cat_out[] = {{"out", P2P_TYPE_FILE}};
    static const p2p_param slow_in[] = {{"ms", P2P_TYPE_INT64}, {"steps", P2P_TYPE_INT64}};
    static const p2p_param slow_out[] = {{"done", P2P_TYPE_BOOL}};
    static const p2p_param resume_out[] = {{"started", P2P_TYPE_INT64}};
    const struct {
        const char *name;
        const p2p_param *in, *out;
        size_t n_in;
        p2p_worker_invoke_fn fn;
    } defs[F_COUNT] = {
        [F_ADD] = {"p2prpc_add", add_in, add_out, 2, fn_add},
        [F_NOOP] = {"p2prpc_noop", x_in, y_out, 1, fn_noop},
        [F_CAT] = {"p2prpc_cat", cat_in, cat_out, 2, fn_cat},
        [F_SEGV] = {"p2prpc_segv", x_in, y_out, 1, fn_segv},
        [F_BAD_FRAME] = {"p2prpc_bad_frame", x_in, y_out, 1, fn_bad_frame},
        [F_SLOW] = {"p2prpc_slow", slow_in, slow_out, 2, fn_slow},
        [F_RESUME] = {"p2prpc_resume", slow_in, resume_out, 2, fn_resume},
        [F_FORK] = {"p2prpc_fork", x_in, y_out, 1, fn_fork},
    };
    for (int i = 0; i < F_COUNT; i++) {
        ASSERT_OK(p2p_schema_build(defs[i].name, defs[i].in, defs[i].n_in, defs[i].out, 1,
                                   &wt_schemas[i], NULL));
        wt_fns[i] = (p2p_worker_function){wt_schemas[i], defs[i].fn};
    }
}

static inline void wt_free_schemas(void) {
    for (int i = 0; i < F_COUNT; i++)
        p2p_schema_free(wt_schemas[i]);
}

/* The first thing main() does: a child runs its call and exits. */
#define WT_CHILD_MAIN(argc, argv)                                                                  \
    do {                                                                                           \
        if ((argc) >= 2 && strcmp((argv)[1], P2P_WORKER_CHILD_FLAG) == 0) {                        \
            wt_build_schemas();                                                                    \
            int status_ = p2p_worker_main((argc), (argv), wt_fns, F_COUNT, NULL, NULL);            \
            wt_free_schemas();                                                                     \
            return status_;                                                                        \
        }                                                                                          \
    } while (0)

/* ---- a broker ---- */

typedef struct wt_broker {
    p2p_broker *b;
    char url[128];
    char data[700];
    uint16_t port;
} wt_broker;

/* Starts a broker in ROOT/NAME on 127.0.0.1:port (0 = any) serving every
 * test function; `peer` (may be NULL) is listed by its nodes route. */
static inline void wt_broker_start(wt_broker *h, const char *name, uint16_t port, int64_t lease_ms,
                                   const char *peer) {
    snprintf(h->data, sizeof(h->data), "%s/%s", wt_root, name);
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    o.host = "127.0.0.1";
    o.port = port;
    o.data_dir = h->data;
    o.secret = wt_secret;
    o.secret_len = sizeof(wt_secret) - 1;
    o.lease_ms = lease_ms;
    const char *peers[] = {peer};
    o.peers = peers;
    o.n_peers = peer != NULL ? 1 : 0;
    p2p_error err = {0};
    if (p2p_broker_new(&o, &h->b, &err) != 0)
        TEST_FAIL_("broker_new: %s", err.msg);
    for (int i = 0; i < F_COUNT; i++)
        ASSERT_OK(p2p_registry_add(p2p_broker_registry(h->b), wt_schemas[i], NULL));
    if (p2p_broker_start(h->b, &err) != 0)
        TEST_FAIL_("broker_start: %s", err.msg);
    snprintf(h->url, sizeof(h->url), "%s/", p2p_broker_url(h->b));
    h->port = p2p_broker_port(h->b);
}

static inline void wt_broker_stop(wt_broker *h) {
    p2p_broker_free(h->b);
    h->b = NULL;
}

/* ---- a client ---- */

static p2p_http_client *wt_client;

static inline void wt_client_start(void) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.secret = wt_secret;
    o.secret_len = sizeof(wt_secret) - 1;
    p2p_error err = {0};
    wt_client = p2p_http_client_new(&o, &err);
    if (wt_client == NULL)
        TEST_FAIL_("client: %s", err.msg);
}

/* A request to `base` + `path`; the status, and the JSON answer in `*out`. */
static inline long wt_api(const char *base, const char *method, const char *path, const char *body,
                          json_t **out) {
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", base, path);
    p2p_http_call req = {.method = method,
                         .url = url,
                         .body = body,
                         .body_len = body != NULL ? strlen(body) : 0,
                         .content_type = "application/json"};
    p2p_http_reply resp;
    p2p_error err = {0};
    if (p2p_http_client_request(wt_client, &req, &resp, &err) != 0)
        TEST_FAIL_("%s %s: %s", method, url, err.msg);
    long status = resp.status;
    if (out != NULL)
        *out = resp.body_len > 0 ? json_loads(resp.body, 0, NULL) : NULL;
    p2p_http_reply_cleanup(&resp);
    return status;
}

/* Uploads `len` bytes as a blob; its hash into `hash`. */
static inline void wt_put_blob(const char *base, const void *data, size_t len,
                               char hash[P2P_HASH_HEX_LEN + 1]) {
    ASSERT_OK(p2p_hash_bytes_hex(data, len, hash, NULL));
    char url[512];
    snprintf(url, sizeof(url), "%sapi/v1/blobs/%s", base, hash);
    p2p_http_call req = {.method = "PUT", .url = url, .body = data, .body_len = len};
    p2p_http_reply resp;
    ASSERT_OK(p2p_http_client_request(wt_client, &req, &resp, NULL));
    ASSERT_EQ(resp.status / 100, 2);
    p2p_http_reply_cleanup(&resp);
}

/* Creates (and executes) a call of function `f` with the JSON `args`; its
 * identifier goes to `id`. */
static inline void wt_call(const char *base, int f, const char *args,
                           char id[P2P_HASH_HEX_LEN + 1]) {
    const p2p_schema *s = wt_schemas[f];
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(s, &n);
    p2p_value values[4];
    json_t *j = json_loads(args, 0, NULL);
    ASSERT_TRUE(j != NULL);
    ASSERT_OK(p2p_value_list_from_json(params, n, j, values, NULL));
    ASSERT_OK(p2p_ident_compute(s, values, id, NULL));
    p2p_value_list_cleanup(values, n);
    json_decref(j);
    char body[4096], path[256];
    snprintf(body, sizeof(body),
             "{\"identifier\":\"%s\",\"fingerprint\":\"%s\",\"args\":%s,\"execute\":true}", id,
             p2p_schema_fingerprint(s), args);
    snprintf(path, sizeof(path), "api/v1/%s/push_update", p2p_schema_name(s));
    long st = wt_api(base, "POST", path, body, NULL);
    ASSERT_TRUE(st == 200 || st == 201);
}

/* The call's JSON (caller decrefs). */
static inline json_t *wt_pull(const char *base, int f, const char *id) {
    char path[300];
    snprintf(path, sizeof(path), "api/v1/%s/pull_update?identifier=%s",
             p2p_schema_name(wt_schemas[f]), id);
    json_t *j = NULL;
    ASSERT_EQ(wt_api(base, "GET", path, NULL, &j), 200);
    return j;
}

static inline const char *wt_str(const json_t *j, const char *key) {
    return json_string_value(json_object_get(j, key));
}

static inline int64_t wt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (long-polls, at most `timeout_ms`) until the call is `status`; its
 * JSON (caller decrefs). Fails the test on timeout. */
static inline json_t *wt_wait(const char *base, int f, const char *id, const char *status,
                              int64_t timeout_ms) {
    int64_t deadline = wt_now_ms() + timeout_ms;
    json_int_t version = 0;
    for (int i = 0; i < 10000; i++) {
        char path[400];
        snprintf(path, sizeof(path), "api/v1/%s/pull_update?identifier=%s&since=%lld&wait=1",
                 p2p_schema_name(wt_schemas[f]), id, (long long)version);
        json_t *j = NULL;
        ASSERT_EQ(wt_api(base, "GET", path, NULL, &j), 200);
        if (strcmp(wt_str(j, "status"), status) == 0)
            return j;
        version = json_integer_value(json_object_get(j, "version"));
        if (wt_now_ms() > deadline)
            TEST_FAIL_("call %s is %s, not %s, after %lld ms (error: %s)", id, wt_str(j, "status"),
                       status, (long long)timeout_ms,
                       wt_str(j, "error") ? wt_str(j, "error") : "none");
        json_decref(j);
    }
    TEST_FAIL_("call %s never became %s", id, status);
}

/* ---- a worker ---- */

/* Options for a worker of every test function polling `url`, in ROOT/NAME. */
static inline void wt_worker_options(p2p_worker_options *o, const char *name, const char *url) {
    static char data[8][700];
    static const char *urls[8];
    static int next;
    int k = next++ % 8;
    snprintf(data[k], sizeof(data[k]), "%s/%s", wt_root, name);
    urls[k] = url;
    p2p_worker_options_init(o);
    o->brokers = &urls[k];
    o->n_brokers = 1;
    o->data_dir = data[k];
    o->secret = wt_secret;
    o->secret_len = sizeof(wt_secret) - 1;
    o->poll_wait_s = 5;
    o->grace_ms = 2000;
    o->lease_renew_ms = 1000;
}

static inline p2p_worker *wt_worker_start(const p2p_worker_options *o) {
    p2p_worker *w = NULL;
    p2p_error err = {0};
    if (p2p_worker_new(o, wt_fns, F_COUNT, &w, &err) != 0 || p2p_worker_start(w, &err) != 0)
        TEST_FAIL_("worker: %s", err.msg);
    return w;
}

/* Waits up to 5 s for the worker's counter at `offset` of its stats to
 * reach `want` (the broker may show the result before the worker counts it). */
static inline uint64_t wt_stat(p2p_worker *w, size_t offset, uint64_t want) {
    p2p_worker_stats st;
    for (int i = 0; i < 500; i++) {
        p2p_worker_get_stats(w, &st);
        uint64_t v = *(const uint64_t *)((const char *)&st + offset);
        if (v >= want)
            return v;
        sleep_ms(10);
    }
    return *(const uint64_t *)((const char *)&st + offset);
}

#define WT_STAT(w, field, want) wt_stat((w), offsetof(p2p_worker_stats, field), (want))

static inline void wt_setup(const char *name) {
    signal(SIGPIPE, SIG_IGN);
    /* Under AddressSanitizer a child's SIGSEGV would become ASan's report and
     * exit status 1; the children (which read this at their start) leave
     * the signal alone, so that the worker sees it as in production. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof(opts), "%s%shandle_segv=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    wt_build_schemas();
    const char *base = getenv("P2PRPC_TEST_TMP");
    base = base != NULL ? base : "/tmp";
    ASSERT_OK(p2p_fs_mkdirs(base, 0700, NULL));
    snprintf(wt_root, sizeof(wt_root), "%s/%s_%d", base, name, (int)getpid());
    ASSERT_OK(p2p_fs_mkdirs(wt_root, 0700, NULL));
    wt_client_start();
}

static inline int wt_teardown(void) {
    p2p_http_client_free(wt_client);
    wt_free_schemas();
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", wt_root);
    return system(cmd) == 0 ? 0 : 1;
}

#endif
