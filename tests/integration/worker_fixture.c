/* The worker test fixture: see worker_fixture.h. */
#include "worker_fixture.h"

#include "fsutil.h"
#include "ident.h"
#include "value.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Most processes a /proc scan collects. */
#define MAX_PROCS 256

static const char *const fn_names[WF_FN_COUNT] = {
    "p2prpc_add",      "p2prpc_segv", "p2prpc_bad_frame", "p2prpc_slow",
    "p2prpc_stubborn", "p2prpc_copy", "p2prpc_resume",    "p2prpc_typed"};

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the test app and its schemas ---- */

void wf_testapp_path(char out[HARNESS_PATH_MAX]) {
    p2p_error err;
    if (harness_bin_path("worker_testapp", NULL, out, HARNESS_PATH_MAX, &err) != 0)
        TEST_FAIL_("%s", err.msg);
    if (access(out, X_OK) != 0)
        TEST_FAIL_("the test worker %s is not built (worker/ not merged yet?)", out);
}

int wf_run_testapp(const char *const *args, const char *log, long timeout_ms) {
    char bin[HARNESS_PATH_MAX];
    wf_testapp_path(bin);
    const char *argv[32] = {bin};
    size_t n = 1;
    for (; args[n - 1] != NULL; n++) {
        ASSERT_LT(n + 1, sizeof(argv) / sizeof(argv[0]));
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    harness_proc_options o = {.argv = argv, .log_path = log};
    harness_proc *p = NULL;
    p2p_error err;
    if (harness_proc_start(&o, &p, &err) != 0)
        TEST_FAIL_("cannot start %s: %s", bin, err.msg);
    int wstatus = 0;
    if (harness_proc_wait(p, timeout_ms, &wstatus, &err) != 0)
        TEST_FAIL_("%s: %s", bin, err.msg);
    harness_proc_free(p);
    return wstatus;
}

static p2p_schema *schemas[WF_FN_COUNT];
static pthread_once_t schemas_once = PTHREAD_ONCE_INIT;

static void free_schemas(void) {
    for (int i = 0; i < WF_FN_COUNT; i++)
        p2p_schema_free(schemas[i]);
}

/* Reads the test app's own dump, so the tests call exactly what it serves. */
static void load_schemas(void) {
    char dir[HARNESS_PATH_MAX], path[HARNESS_PATH_MAX + 32], log[HARNESS_PATH_MAX + 32];
    p2p_error err;
    if (harness_scratch_dir("wf_schemas", dir, sizeof(dir), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    snprintf(path, sizeof(path), "%s/schemas.json", dir);
    snprintf(log, sizeof(log), "%s/dump.log", dir);
    int st = wf_run_testapp((const char *[]){"--dump-schemas", path, NULL}, log, 60000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TEST_FAIL_("worker_testapp --dump-schemas %s: wait status 0x%x (log %s)", path, st, log);
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    if (all == NULL || !json_is_array(all))
        TEST_FAIL_("%s: not a JSON array: %s", path, all ? "" : jerr.text);
    ASSERT_EQ(json_array_size(all), WF_FN_COUNT);
    for (int i = 0; i < WF_FN_COUNT; i++) {
        for (size_t j = 0; j < json_array_size(all) && schemas[i] == NULL; j++) {
            const char *name = json_string_value(json_object_get(json_array_get(all, j), "name"));
            if (name != NULL && strcmp(name, fn_names[i]) == 0 &&
                p2p_schema_from_json(json_array_get(all, j), &schemas[i], &err) != 0)
                TEST_FAIL_("%s: schema %s: %s", path, name, err.msg);
        }
        if (schemas[i] == NULL)
            TEST_FAIL_("%s: no schema for %s", path, fn_names[i]);
    }
    json_decref(all);
    if (harness_rmtree(dir, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    atexit(free_schemas);
}

const p2p_schema *wf_schema(wf_fn f) {
    ASSERT_TRUE(f >= 0 && f < WF_FN_COUNT);
    pthread_once(&schemas_once, load_schemas);
    return schemas[f];
}

const char *wf_name(wf_fn f) {
    return p2p_schema_name(wf_schema(f));
}

/* ---- brokers ---- */

void wf_broker_init(broker *b, const char *name, const broker_config *cfg) {
    broker_init(b, name, cfg);
    json_t *all = json_array();
    for (int i = 0; i < WF_FN_COUNT; i++) {
        json_t *one = NULL;
        ASSERT_OK(p2p_schema_to_json(wf_schema((wf_fn)i), &one, NULL));
        ASSERT_OK(json_array_append_new(all, one));
    }
    ASSERT_OK(json_dump_file(all, b->schema_path, JSON_INDENT(2)));
    json_decref(all);
}

static int url_port(const char *url) {
    const char *colon = strrchr(url, ':');
    ASSERT_TRUE(colon != NULL);
    long port = strtol(colon + 1, NULL, 10);
    ASSERT_TRUE(port > 0 && port < 65536);
    return (int)port;
}

void wf_broker_restart_same_port(broker *b, long down_ms) {
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", url_port(b->url));
    broker_stop(b);
    sleep_ms(down_ms);
    const char *const *saved = b->cfg.extra_args;
    const char *extra[32] = {0};
    size_t n = 0;
    for (; saved != NULL && saved[n] != NULL; n++) {
        ASSERT_LT(n + 3, sizeof(extra) / sizeof(extra[0]));
        extra[n] = saved[n];
    }
    /* The last --listen wins over the fixture's 127.0.0.1:0. */
    extra[n] = "--listen";
    extra[n + 1] = listen;
    b->cfg.extra_args = extra;
    p2p_error err = {0};
    int rc = -1;
    for (int i = 0; i < 20 && rc != 0; i++) {
        rc = broker_try_start(b, &err);
        if (rc != 0) {
            fprintf(stderr, "restart on %s failed (%s); retrying\n", listen, err.msg);
            sleep_ms(500);
        }
    }
    b->cfg.extra_args = saved;
    if (rc != 0)
        TEST_FAIL_("cannot restart the broker on %s: %s", listen, err.msg);
}

int wf_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&a, &len));
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- workers ---- */

static bool has_tag(pid_t pid, const char *tag);

void worker_init(worker *w, const char *name, const char *secret_path, const worker_config *cfg) {
    memset(w, 0, sizeof(*w));
    if (cfg != NULL)
        w->cfg = *cfg;
    p2p_error err;
    if (harness_scratch_dir(name, w->dir, sizeof(w->dir), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    snprintf(w->work_dir, sizeof(w->work_dir), "%s/work", w->dir);
    snprintf(w->data_dir, sizeof(w->data_dir), "%s/data", w->dir);
    snprintf(w->discovery, sizeof(w->discovery), "%s/discovery.txt", w->dir);
    snprintf(w->log, sizeof(w->log), "%s/worker.log", w->dir);
    snprintf(w->secret_path, sizeof(w->secret_path), "%s", secret_path ? secret_path : "");
    snprintf(w->tag, sizeof(w->tag), "P2PRPC_TEST_TAG=%s", w->dir);
    if (w->cfg.no_secret)
        w->secret_path[0] = '\0';
}

void worker_set_discovery(worker *w, const char *text) {
    p2p_error err;
    if (harness_write_file(w->discovery, text, strlen(text), &err) != 0)
        TEST_FAIL_("%s", err.msg);
}

void worker_discover(worker *w, const char *const *urls) {
    char text[4096];
    size_t n = 0;
    for (size_t i = 0; urls[i] != NULL; i++) {
        int k = snprintf(text + n, sizeof(text) - n, "%s\n", urls[i]);
        ASSERT_TRUE(k > 0 && (size_t)k < sizeof(text) - n);
        n += (size_t)k;
    }
    text[n] = '\0';
    worker_set_discovery(w, text);
}

/* argv of the worker into `argv` (`max` slots). */
static void build_argv(worker *w, const char *bin, const char **argv, size_t max, char *num,
                       size_t num_len) {
    size_t n = 0;
#define ARG(x)                                                                                     \
    do {                                                                                           \
        ASSERT_LT(n + 1, max);                                                                     \
        argv[n++] = (x);                                                                           \
    } while (0)
    ARG(bin);
    ARG("--discovery");
    ARG(w->discovery);
    ARG("--work-dir");
    ARG(w->work_dir);
    ARG("--data-dir");
    ARG(w->data_dir);
    ARG("--log-level");
    ARG(w->cfg.log_level ? w->cfg.log_level : "debug");
    if (w->secret_path[0] != '\0') {
        ARG("--secret-file");
        ARG(w->secret_path);
    }
    if (w->cfg.concurrency > 0) {
        snprintf(num, num_len, "%d", w->cfg.concurrency);
        ARG("--concurrency");
        ARG(num);
    }
    const char *flags[][2] = {{"--lease-renew-seconds", w->cfg.lease_renew},
                              {"--grace-seconds", w->cfg.grace},
                              {"--poll-wait", w->cfg.poll_wait}};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (flags[i][1] != NULL) {
            ARG(flags[i][0]);
            ARG(flags[i][1]);
        }
    }
    for (size_t i = 0; w->cfg.extra != NULL && w->cfg.extra[i] != NULL; i++)
        ARG(w->cfg.extra[i]);
    argv[n] = NULL;
#undef ARG
}

/* Reads `worker UUID serving N function(s) from M broker(s)`. */
static bool parse_started(worker *w, const char *line) {
    char rest[64];
    const char *p = line + strlen("worker ");
    size_t id_len = strcspn(p, " ");
    if (id_len != 36 || id_len >= sizeof(w->node_id))
        return false;
    memcpy(w->node_id, p, id_len);
    w->node_id[id_len] = '\0';
    p += id_len;
    if (strncmp(p, " serving ", 9) != 0)
        return false;
    char *end = NULL;
    w->functions = strtol(p + 9, &end, 10);
    if (end == p + 9 || strncmp(end, " function(s) from ", 18) != 0)
        return false;
    p = end + 18;
    w->brokers = strtol(p, &end, 10);
    if (end == p)
        return false;
    snprintf(rest, sizeof(rest), "%s", end);
    return strcmp(rest, " broker(s)") == 0;
}

/* Starts the worker process; with `wait_ready`, waits for its started line. */
static int spawn(worker *w, bool wait_ready, long timeout_ms, p2p_error *err) {
    ASSERT_TRUE(w->proc == NULL);
    char bin[HARNESS_PATH_MAX], num[32];
    wf_testapp_path(bin);
    const char *argv[64];
    build_argv(w, bin, argv, sizeof(argv) / sizeof(argv[0]), num, sizeof(num));
    char busy[HARNESS_PATH_MAX + 32], rss[HARNESS_PATH_MAX + 32];
    snprintf(busy, sizeof(busy), "P2PRPC_TESTAPP_BUSY_FILE=%s",
             w->cfg.busy_file ? w->cfg.busy_file : "");
    snprintf(rss, sizeof(rss), "P2PRPC_TESTAPP_RSS_FILE=%s",
             w->cfg.rss_file ? w->cfg.rss_file : "");
    const char *env[] = {w->tag, busy, rss, NULL};
    harness_proc_options o = {.argv = argv,
                              .env = env,
                              .log_path = w->log,
                              .wait_listening = wait_ready,
                              .ready_timeout_ms = timeout_ms,
                              .ready_prefix = "worker "};
    return harness_proc_start(&o, &w->proc, err);
}

int worker_run(worker *w, long timeout_ms) {
    p2p_error err;
    if (spawn(w, false, 0, &err) != 0)
        TEST_FAIL_("cannot start the worker: %s", err.msg);
    return worker_wait(w, timeout_ms);
}

int worker_try_start(worker *w, long timeout_ms, p2p_error *err) {
    int rc = spawn(w, true, timeout_ms, err);
    if (rc != 0) {
        w->proc = NULL;
        return rc;
    }
    w->starts++;
    snprintf(w->started, sizeof(w->started), "%s", harness_proc_listening_line(w->proc));
    fprintf(stderr, "worker %d (%s): \"%s\", log %s\n", (int)harness_proc_pid(w->proc), w->dir,
            w->started, w->log);
    return 0;
}

void worker_start(worker *w) {
    p2p_error err;
    if (worker_try_start(w, 60000, &err) != 0)
        TEST_FAIL_("worker did not start: %s", err.msg);
    if (!parse_started(w, w->started))
        TEST_FAIL_("started line is not \"worker UUID serving N function(s) from M "
                   "broker(s)\": \"%s\"",
                   w->started);
    ASSERT_EQ(w->functions, WF_FN_COUNT);
    /* The tag is what finds the worker's children wherever they end up. */
    if (!has_tag(harness_proc_pid(w->proc), w->tag))
        TEST_FAIL_("worker %d does not carry %s", (int)harness_proc_pid(w->proc), w->tag);
}

void worker_start_for(worker *w, const char *name, broker *b, const worker_config *cfg) {
    worker_init(w, name, b->secret_len ? b->secret_path : NULL, cfg);
    worker_discover(w, (const char *[]){b->url, NULL});
    worker_start(w);
}

long worker_stop(worker *w, long timeout_ms) {
    ASSERT_TRUE(w->proc != NULL);
    int wstatus = 0;
    p2p_error err;
    int64_t t0 = harness_now_ms();
    if (harness_proc_stop(w->proc, timeout_ms, &wstatus, &err) != 0)
        TEST_FAIL_("worker stop: %s", err.msg);
    long took = (long)(harness_now_ms() - t0);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        TEST_FAIL_("worker did not exit 0 on SIGTERM: wait status 0x%x (signal %d, exit %d)",
                   wstatus, WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0,
                   WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    fprintf(stderr, "worker %d exited 0 on SIGTERM in %ld ms\n", (int)harness_proc_pid(w->proc),
            took);
    harness_proc_free(w->proc);
    w->proc = NULL;
    return took;
}

void worker_kill(worker *w) {
    ASSERT_TRUE(w->proc != NULL);
    p2p_error err;
    if (harness_proc_kill(w->proc, &err) != 0)
        TEST_FAIL_("worker kill: %s", err.msg);
    harness_proc_free(w->proc);
    w->proc = NULL;
}

int worker_wait(worker *w, long timeout_ms) {
    ASSERT_TRUE(w->proc != NULL);
    int wstatus = 0;
    p2p_error err;
    if (harness_proc_wait(w->proc, timeout_ms, &wstatus, &err) != 0)
        TEST_FAIL_("worker wait: %s", err.msg);
    harness_proc_free(w->proc);
    w->proc = NULL;
    return wstatus;
}

void worker_cleanup(worker *w) {
    harness_proc_free(w->proc);
    w->proc = NULL;
    p2p_error err;
    if (harness_rmtree(w->dir, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
}

pid_t worker_pid(const worker *w) {
    ASSERT_TRUE(w->proc != NULL);
    return harness_proc_pid(w->proc);
}

bool worker_log_contains(const worker *w, const char *text) {
    char *log = NULL;
    size_t len = 0;
    if (p2p_fs_read_file(w->log, 64u << 20, &log, &len, NULL) != 0)
        return false;
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

/* ---- processes ---- */

static void proc_cmdline(pid_t pid, char *out, size_t len);

/* The state letter and parent of /proc/PID/stat; false when it is gone. */
static bool proc_stat(pid_t pid, char *state, pid_t *ppid) {
    char path[64], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (p2p_fs_read_file(path, 4096, &text, &len, NULL) != 0)
        return false;
    /* "PID (COMM) S PPID ...": COMM may hold spaces and parentheses. */
    const char *close = strrchr(text, ')');
    bool ok = close != NULL && close[1] == ' ' && close[2] != '\0';
    if (ok) {
        *state = close[2];
        *ppid = (pid_t)strtol(close + 3, NULL, 10);
    }
    free(text);
    return ok;
}

static bool proc_alive(pid_t pid) {
    char state = 0;
    pid_t ppid = 0;
    return proc_stat(pid, &state, &ppid) && state != 'Z' && state != 'X';
}

/* Every numeric entry of /proc into `out`; returns their number. */
static size_t list_pids(pid_t *out, size_t max) {
    DIR *d = opendir("/proc");
    ASSERT_TRUE(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        char *end = NULL;
        long v = strtol(e->d_name, &end, 10);
        if (end != e->d_name && *end == '\0' && v > 0)
            out[n++] = (pid_t)v;
    }
    closedir(d);
    return n;
}

/* Live children of `pid`, grandchildren too when `deep`. */
static size_t tree(pid_t pid, bool deep, pid_t *out, size_t max) {
    static pid_t all[4096];
    size_t n_all = list_pids(all, sizeof(all) / sizeof(all[0]));
    size_t n = 0;
    /* Breadth first over the tree: out[] is the queue of parents. */
    for (size_t head = 0; head <= n && (deep || head == 0); head++) {
        pid_t parent = head == 0 ? pid : out[head - 1];
        for (size_t i = 0; i < n_all && n < max; i++) {
            char state = 0;
            pid_t ppid = 0;
            if (proc_stat(all[i], &state, &ppid) && ppid == parent && state != 'Z')
                out[n++] = all[i];
        }
    }
    return n;
}

size_t wf_descendants(pid_t pid, pid_t *out, size_t max) {
    return tree(pid, true, out, max);
}

size_t wf_children(pid_t pid, pid_t *out, size_t max) {
    return tree(pid, false, out, max);
}

size_t wf_call_children(const worker *w, const char *id, pid_t *out, size_t max) {
    pid_t kids[MAX_PROCS];
    size_t n = wf_children(worker_pid(w), kids, MAX_PROCS), k = 0;
    char want[64];
    snprintf(want, sizeof(want), "/call-%.16s", id ? id : "");
    for (size_t i = 0; i < n && k < max; i++) {
        char link[64], cwd[HARNESS_PATH_MAX];
        snprintf(link, sizeof(link), "/proc/%d/cwd", (int)kids[i]);
        ssize_t len = readlink(link, cwd, sizeof(cwd) - 1);
        if (len <= 0)
            continue;
        cwd[len] = '\0';
        if (strstr(cwd, want) != NULL)
            out[k++] = kids[i];
    }
    return k;
}

void wf_print_procs(const pid_t *pids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char cmd[512], state = '?';
        pid_t ppid = 0;
        proc_cmdline(pids[i], cmd, sizeof(cmd));
        (void)proc_stat(pids[i], &state, &ppid);
        fprintf(stderr, "  pid %d ppid %d state %c: %s\n", (int)pids[i], (int)ppid, state, cmd);
    }
}

/* True when /proc/PID/environ holds the entry `tag`. */
static bool has_tag(pid_t pid, const char *tag) {
    char path[64], *env = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    if (p2p_fs_read_file(path, 1 << 20, &env, &len, NULL) != 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < len && !found; i += strlen(env + i) + 1)
        found = strcmp(env + i, tag) == 0;
    free(env);
    return found;
}

size_t wf_tagged(const worker *w, pid_t *out, size_t max) {
    static pid_t all[4096];
    size_t n_all = list_pids(all, sizeof(all) / sizeof(all[0]));
    size_t n = 0;
    for (size_t i = 0; i < n_all && n < max; i++)
        if (all[i] != getpid() && has_tag(all[i], w->tag) && proc_alive(all[i]))
            out[n++] = all[i];
    return n;
}

/* argv[0] and argv[1] of a process, for messages. */
static void proc_cmdline(pid_t pid, char *out, size_t len) {
    char path[64], *text = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    snprintf(out, len, "?");
    if (p2p_fs_read_file(path, 8192, &text, &n, NULL) != 0)
        return;
    for (size_t i = 0; i + 1 < n; i++)
        if (text[i] == '\0')
            text[i] = ' ';
    snprintf(out, len, "%s", text);
    free(text);
}

/* Waits for `pid` to exit until `deadline` (ms); true when it did. */
static bool await_exit(pid_t pid, int64_t deadline) {
    int fd = pidfd_open(pid, 0);
    if (fd < 0)
        return errno == ESRCH;
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        long left = (long)(deadline - harness_now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (r > 0)
            gone = true;
        else if (r == 0 || errno != EINTR)
            break;
    }
    close(fd);
    /* A zombie nobody reaps (an orphan under a PID 1 that does not wait) is
     * dead all the same. */
    return gone || !proc_alive(pid);
}

void wf_await_gone(const pid_t *pids, size_t n, long timeout_ms) {
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (size_t i = 0; i < n; i++) {
        if (!await_exit(pids[i], deadline)) {
            char cmd[512];
            proc_cmdline(pids[i], cmd, sizeof(cmd));
            TEST_FAIL_("process %d (%s) still runs %ld ms later", (int)pids[i], cmd, timeout_ms);
        }
    }
}

void wf_assert_no_orphans(const worker *w, long timeout_ms) {
    pid_t pids[MAX_PROCS], others[MAX_PROCS];
    size_t n = wf_tagged(w, pids, MAX_PROCS), k = 0;
    pid_t self = w->proc != NULL && harness_proc_running(w->proc) ? harness_proc_pid(w->proc) : 0;
    for (size_t i = 0; i < n; i++) {
        char state = 0;
        pid_t ppid = 0;
        /* A live worker may keep a child between calls (a pre-forked one). */
        if (pids[i] != self && !(self > 0 && proc_stat(pids[i], &state, &ppid) && ppid == self))
            others[k++] = pids[i];
    }
    wf_await_gone(others, k, timeout_ms);
}

/* ---- calls ---- */

void wf_call_id(wf_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]) {
    p2p_error err;
    if (p2p_ident_from_json(wf_schema(f), args, id, &err) != 0)
        TEST_FAIL_("ident: %s", err.msg);
}

static void post(broker *b, p2p_http_client *c, wf_fn f, const char *route, const json_t *body,
                 harness_reply *r) {
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/%s", wf_name(f), route);
    harness_post_json(c ? c : b->client, b->url, path, body, r);
}

void wf_push(broker *b, wf_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]) {
    wf_call_id(f, args, id);
    json_t *body = json_pack("{s:s, s:s, s:O, s:b}", "identifier", id, "fingerprint",
                             p2p_schema_fingerprint(wf_schema(f)), "args", args, "execute", 1);
    ASSERT_TRUE(body != NULL);
    harness_reply r;
    post(b, NULL, f, "push_update", body, &r);
    if (r.status != 200)
        HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(body);
}

static json_t *take_json(harness_reply *r) {
    json_t *j = r->json;
    r->json = NULL;
    harness_reply_cleanup(r);
    return j;
}

json_t *wf_on_id(broker *b, wf_fn f, const char *route, const char *id) {
    json_t *body = json_pack("{s:s}", "identifier", id);
    harness_reply r;
    post(b, NULL, f, route, body, &r);
    json_decref(body);
    HARNESS_EXPECT(&r, 200, NULL);
    return take_json(&r);
}

/* pull_update?identifier=ID[&since=S&wait=W] with client `c`. */
static void pull(broker *b, p2p_http_client *c, wf_fn f, const char *id, long long since, int wait,
                 harness_reply *r) {
    char path[512];
    int n = snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s", wf_name(f), id);
    if (since >= 0)
        snprintf(path + n, sizeof(path) - (size_t)n, "&since=%lld&wait=%d", since, wait);
    harness_get(c, b->url, path, (wait + 30) * 1000L, r);
}

json_t *wf_pull(broker *b, wf_fn f, const char *id) {
    harness_reply r;
    pull(b, b->client, f, id, -1, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    return take_json(&r);
}

json_t *wf_watch(broker *b, wf_fn f, const char *id, long timeout_ms, wf_watch_fn fn, void *ctx) {
    p2p_http_client *c = broker_client(b, 0);
    int64_t deadline = harness_now_ms() + timeout_ms;
    long long since = -1;
    json_t *call = NULL;
    /* Bounded: each round waits up to 10 s or returns a new version. */
    for (long i = 0; i < 100000; i++) {
        long left = (long)(deadline - harness_now_ms());
        harness_reply r;
        pull(b, c, f, id, since, since < 0 ? 0 : (int)(left > 10000 ? 10 : left / 1000 + 1), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        json_decref(call);
        call = take_json(&r);
        long long v = wf_int(call, "version", -1);
        ASSERT_GE(v, since);
        if (v != since && fn(call, ctx))
            break;
        since = v;
        if (harness_now_ms() > deadline) {
            char *text = json_dumps(call, JSON_COMPACT);
            TEST_FAIL_("call %.12s of %s: still %s after %ld ms", id, wf_name(f), text ? text : "?",
                       timeout_ms);
        }
    }
    p2p_http_client_free(c);
    return call;
}

static bool status_in(const json_t *call, void *ctx) {
    const char *want = ctx, *status = wf_str(call, "status");
    size_t len = status ? strlen(status) : 0;
    for (const char *p = want; status != NULL && *p != '\0';) {
        size_t n = strcspn(p, "|");
        if (n == len && strncmp(p, status, n) == 0)
            return true;
        p += n + (p[n] == '|');
    }
    return false;
}

json_t *wf_await_status(broker *b, wf_fn f, const char *id, const char *statuses, long timeout_ms) {
    return wf_watch(b, f, id, timeout_ms, status_in, (void *)statuses);
}

static bool progress_at_least(const json_t *call, void *ctx) {
    double min = *(const double *)ctx;
    const char *status = wf_str(call, "status");
    if (status != NULL && strcmp(status, "running") != 0 && strcmp(status, "queued") != 0)
        TEST_FAIL_("call ended (%s, error \"%s\") before its progress reached %g", status,
                   wf_str(call, "error") ? wf_str(call, "error") : "", min);
    return status != NULL && strcmp(status, "running") == 0 && wf_num(call, "progress", 0) >= min;
}

json_t *wf_await_progress(broker *b, wf_fn f, const char *id, double min, long timeout_ms) {
    return wf_watch(b, f, id, timeout_ms, progress_at_least, &min);
}

const char *wf_str(const json_t *call, const char *key) {
    return json_string_value(json_object_get(call, key));
}

long long wf_int(const json_t *call, const char *key, long long dflt) {
    json_t *v = json_object_get(call, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

double wf_num(const json_t *call, const char *key, double dflt) {
    json_t *v = json_object_get(call, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

long long wf_output_int(const json_t *call, const char *name) {
    json_t *v = json_object_get(json_object_get(call, "outputs"), name);
    if (!json_is_integer(v))
        TEST_FAIL_("call %.12s has no integer output %s", wf_str(call, "identifier"), name);
    return (long long)json_integer_value(v);
}

void wf_expect_status(const json_t *call, const char *status) {
    const char *got = wf_str(call, "status");
    if (got == NULL || strcmp(got, status) != 0)
        TEST_FAIL_("call %.12s: expected %s, got %s (error \"%s\")", wf_str(call, "identifier"),
                   status, got ? got : "(none)",
                   wf_str(call, "error") ? wf_str(call, "error") : "");
}
