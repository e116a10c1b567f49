/* What the worker's integration tests share: real worker processes (the
 * worker_testapp program, tests/integration/worker_testapp.c) pulling from
 * real brokers (broker_fixture.h) that serve the test app's functions, a
 * watcher of calls built on pull_update long-polls (the event source of every
 * wait), and a look at the process tree through /proc to prove that no child
 * of a worker outlives its call.
 *
 * Every helper asserts (test.h style) unless it returns an error code. Every
 * wait is bounded. */
#ifndef P2PRPC_TEST_WORKER_FIXTURE_H
#define P2PRPC_TEST_WORKER_FIXTURE_H

#include "broker_fixture.h"
#include "harness.h"
#include "hash.h"
#include "schema.h"
#include "test.h"

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

/* The test app's functions, in the order of its dispatch table. */
typedef enum wf_fn {
    WF_ADD,       /* p2prpc_add(int64 a, int64 b) -> int64 sum */
    WF_SEGV,      /* p2prpc_segv(int64 x) -> int64 y: dies of SIGSEGV */
    WF_BAD_FRAME, /* p2prpc_bad_frame(int64 x) -> int64 y: p2p_fail("bad frame") */
    WF_SLOW,      /* p2prpc_slow(double seconds, int64 steps) -> int64 done */
    WF_STUBBORN,  /* p2prpc_stubborn(double seconds) -> int64 done: ignores SIGTERM */
    WF_COPY,      /* p2prpc_copy(file input, int64 xor) -> file output, int64 size */
    WF_RESUME,    /* p2prpc_resume(int64 steps, double step_seconds) -> int64 done,
                     int64 started */
    WF_TYPED,     /* p2prpc_typed(string text, double x, bool flag) -> string text_out,
                     double x_out, bool flag_out: text + "!", -2 x, !flag */
    WF_FN_COUNT
} wf_fn;

/* The schema of `f` as the test app dumps it (`--dump-schemas`, run once);
 * borrowed for the program's life. */
const p2p_schema *wf_schema(wf_fn f);
const char *wf_name(wf_fn f);

/* Path of the test app ($P2PRPC_BIN/worker_testapp) into `out`. */
void wf_testapp_path(char out[HARNESS_PATH_MAX]);

/* Runs `worker_testapp ARGS...` (argv without the program, NULL-terminated)
 * to its end, at most `timeout_ms`, with its stdout and stderr in `log`.
 * Returns the wait status. */
int wf_run_testapp(const char *const *args, const char *log, long timeout_ms);

/* broker_init whose schema file is the test app's dump: the broker serves
 * exactly the worker's functions. */
void wf_broker_init(broker *b, const char *name, const broker_config *cfg);

/* Stops the broker (SIGTERM, exit 0), keeps it down `down_ms`, then starts
 * it again over the same store on the same port, retrying a few times when
 * the port is briefly taken. */
void wf_broker_restart_same_port(broker *b, long down_ms);

/* A 127.0.0.1 port nothing listens on (bound to 0 and closed again). */
int wf_free_port(void);

/* ---- workers ---- */

/* Worker flags and environment; zero = the worker's default. Strings are
 * borrowed until worker_start returns. */
typedef struct worker_config {
    int concurrency;          /* --concurrency */
    const char *lease_renew;  /* --lease-renew-seconds */
    const char *grace;        /* --grace-seconds */
    const char *poll_wait;    /* --poll-wait */
    const char *log_level;    /* --log-level; NULL = debug */
    const char *busy_file;    /* P2PRPC_TESTAPP_BUSY_FILE: can_do_work says no while it exists */
    const char *rss_file;     /* P2PRPC_TESTAPP_RSS_FILE (p2prpc_copy's peak RSS) */
    const char *const *extra; /* more flags, NULL-terminated */
    bool no_secret;           /* run without --secret-file */
} worker_config;

typedef struct worker {
    char dir[512]; /* scratch: work/, data/, discovery.txt, worker.log */
    char work_dir[HARNESS_PATH_MAX];
    char data_dir[HARNESS_PATH_MAX];
    char discovery[HARNESS_PATH_MAX];
    char log[HARNESS_PATH_MAX];
    char secret_path[HARNESS_PATH_MAX];
    char tag[HARNESS_PATH_MAX]; /* P2PRPC_TEST_TAG; every child inherits it */
    worker_config cfg;
    harness_proc *proc;
    char node_id[64];                   /* from the started line */
    long functions;                     /* N of "serving N function(s)" */
    long brokers;                       /* M of "from M broker(s)" */
    char started[HARNESS_URL_MAX + 64]; /* the started line */
    int starts;
} worker;

/* Makes the scratch directory $P2PRPC_TEST_TMP/NAME.PID; `secret_path`
 * (borrowed; NULL = none) is the brokers' secret file. `cfg` is copied. */
void worker_init(worker *w, const char *name, const char *secret_path, const worker_config *cfg);

/* Writes `text` as the discovery file. */
void worker_set_discovery(worker *w, const char *text);

/* Writes the discovery file: one URL per line (NULL-terminated list). */
void worker_discover(worker *w, const char *const *urls);

/* Starts the worker and waits (60 s) for its started line,
 * `worker UUID serving N function(s) from M broker(s)`, asserting its form. */
void worker_start(worker *w);

/* The same without asserts on start-up: 0 once the started line came, or the
 * harness error (P2P_EPROTO: the worker exited first; it is reaped). */
int worker_try_start(worker *w, long timeout_ms, p2p_error *err) P2P_NODISCARD;

/* Runs the worker expecting it to exit by itself within `timeout_ms` (a
 * start-up error); returns its wait status. Its stdout is in its log. */
int worker_run(worker *w, long timeout_ms);

/* init + discover(b->url) + start. */
void worker_start_for(worker *w, const char *name, broker *b, const worker_config *cfg);

/* SIGTERM; asserts exit status 0 within `timeout_ms`. Returns how long the
 * exit took, in ms. */
long worker_stop(worker *w, long timeout_ms);

/* SIGKILL and reap. */
void worker_kill(worker *w);

/* Waits for the worker to exit on its own; returns its wait status. */
int worker_wait(worker *w, long timeout_ms);

/* Kills the worker if it runs, removes its scratch directory. */
void worker_cleanup(worker *w);

pid_t worker_pid(const worker *w);

/* True when the worker's log contains `text`. */
bool worker_log_contains(const worker *w, const char *text);

/* ---- processes ---- */

/* Live (not zombie) processes descending from `pid`, found through the ppid
 * of /proc/N/stat; up to `max` into `out`. Returns their number. */
size_t wf_descendants(pid_t pid, pid_t *out, size_t max);

/* The same for direct children only: the processes the worker started (a
 * sanitizer's helper task under a child is not one). */
size_t wf_children(pid_t pid, pid_t *out, size_t max);

/* The worker's children that run a call: their working directory is the
 * call's out/ directory (WORK_DIR/w-XXXXXX/call-ID16-XXXXXX/out, see
 * notes/worker-changes.md), which tells them from the spare children the
 * worker starts ahead of their call. `id` NULL = any call. */
size_t wf_call_children(const worker *w, const char *id, pid_t *out, size_t max);

/* Prints pid, ppid, state and command line of each process to stderr. */
void wf_print_procs(const pid_t *pids, size_t n);

/* Live processes whose environment carries the worker's tag: the worker and
 * every child it started, whoever their parent is now. */
size_t wf_tagged(const worker *w, pid_t *out, size_t max);

/* Waits until every one of pids[0..n-1] has exited (a zombie counts as
 * exited), at most `timeout_ms` in all; fails the test naming a survivor. */
void wf_await_gone(const pid_t *pids, size_t n, long timeout_ms);

/* Fails unless no live process carries the worker's tag, other than the
 * worker itself and its direct children while it runs (waits up to
 * `timeout_ms` for them to go): nothing escaped its parent. Once the worker
 * has exited, nothing of it may be left at all. */
void wf_assert_no_orphans(const worker *w, long timeout_ms);

/* ---- calls ---- */

/* Identifier of a call to `f` with `args` (borrowed). */
void wf_call_id(wf_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]);

/* Creates the call (push_update with execute) with the broker's client:
 * asserts 201, or 200 when it existed. */
void wf_push(broker *b, wf_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]);

/* pull_update now; the call JSON (new reference). */
json_t *wf_pull(broker *b, wf_fn f, const char *id);

/* POST ROUTE {"identifier": id}; asserts 200; the reply JSON (new reference). */
json_t *wf_on_id(broker *b, wf_fn f, const char *route, const char *id);

/* Called with each state of the call the watcher sees (borrowed); returns
 * true to stop watching. */
typedef bool (*wf_watch_fn)(const json_t *call, void *ctx);

/* Long-polls pull_update (since the last version seen, waits of up to 10 s)
 * and shows each state to `fn`, starting with the current one, until `fn`
 * says stop; fails the test after `timeout_ms`. Returns the last state (new
 * reference). Each watch has a client of its own, so several may run in
 * threads. */
json_t *wf_watch(broker *b, wf_fn f, const char *id, long timeout_ms, wf_watch_fn fn, void *ctx);

/* Watches until the status is one in `statuses` ("done|failed"); the state
 * (new reference). */
json_t *wf_await_status(broker *b, wf_fn f, const char *id, const char *statuses, long timeout_ms);

/* Watches until the call runs with progress >= `min` (fails when it
 * finishes first); the state (new reference). */
json_t *wf_await_progress(broker *b, wf_fn f, const char *id, double min, long timeout_ms);

/* Members of a call JSON: string (or NULL), integer (or `dflt`), number. */
const char *wf_str(const json_t *call, const char *key);
long long wf_int(const json_t *call, const char *key, long long dflt);
double wf_num(const json_t *call, const char *key, double dflt);
/* outputs.NAME as an integer, failing when absent. */
long long wf_output_int(const json_t *call, const char *name);

/* Asserts the call's status is `status`, naming the call and its error. */
void wf_expect_status(const json_t *call, const char *status);

#endif
