/* A process harness for the integration tests (and the benchmarks) of p2prpc.
 *
 * It starts a real program (the broker, a worker...) with its own argv and
 * environment, reads its stdout until the line `listening on http://HOST:PORT`
 * and hands back the URL, sends its stderr (and the rest of its stdout) to a
 * log file, signals it and waits for it with a timeout. Around that: scratch
 * directories under $P2PRPC_TEST_TMP, secret files, a signed p2p_http_client,
 * small JSON request helpers, and a raw loopback socket for the cases the
 * client library cannot express (a chunked body, headers without a body).
 *
 * Every wait is bounded in time; nothing polls in a loop (a child is waited
 * for with a pidfd, the listening line with a condition variable).
 *
 * Safety net: a started child gets SIGKILL when the thread that started it
 * dies (PR_SET_PDEATHSIG), so start children from the main thread (or one that
 * outlives them). When the test aborts (a failed ASSERT), the tail of every
 * live child's log is printed to stderr before the abort completes.
 *
 * The harness itself never aborts except in harness_expect_() (meant for
 * tests); everything else returns 0 or a negative P2P_E* code. */
#ifndef P2PRPC_TEST_HARNESS_H
#define P2PRPC_TEST_HARNESS_H

#include "error.h"
#include "http_client.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest URL the harness reads from a `listening on` line. */
#define HARNESS_URL_MAX 256
/* Longest path the harness builds. */
#define HARNESS_PATH_MAX 1024

/* ---- time ---- */

/* CLOCK_MONOTONIC in milliseconds (and in seconds, as a double). */
int64_t harness_now_ms(void);
double harness_now_s(void);

/* ---- processes ---- */

typedef struct harness_proc harness_proc;

/* What to start. Zero-initialise, then set. Every pointer is borrowed for the
 * duration of harness_proc_start(). */
typedef struct harness_proc_options {
    const char *const *argv; /* NULL-terminated; argv[0] is the program's path; required */
    const char *const *env;  /* "NAME=VALUE" set on top of our environ; NULL-terminated; or NULL */
    const char *log_path;    /* stderr, and stdout after the listening line, are appended
                                here; NULL = the test's own stderr */
    bool wait_listening;     /* wait for `listening on URL` on stdout */
    long ready_timeout_ms;   /* bound on that wait; 0 = 30000 */
    /* With wait_listening: wait for the first stdout line that starts with
     * this prefix instead (a worker's `worker UUID serving ...`); the line is
     * then harness_proc_listening_line() and the URL stays "". NULL = the
     * listening line. */
    const char *ready_prefix;
} harness_proc_options;

/* Starts the program. With wait_listening, returns only once the child
 * printed its listening line (or its ready_prefix line) (P2P_ETIMEDOUT after ready_timeout_ms,
 * P2P_EPROTO when it closed stdout or exited first; the child is then killed and reaped). On
 * success `*out` is the caller's (harness_proc_free). Returns 0, P2P_EINVAL, P2P_EIO (fork, pipe,
 * log file) or P2P_ENOMEM. */
int harness_proc_start(const harness_proc_options *o, harness_proc **out,
                       p2p_error *err) P2P_NODISCARD;

/* The URL of the listening line ("" without wait_listening); borrowed until
 * harness_proc_free. */
const char *harness_proc_url(const harness_proc *p);

/* The full listening (or ready_prefix) line as printed, without its
 * newline; borrowed. */
const char *harness_proc_listening_line(const harness_proc *p);

/* Lines the child wrote to stdout so far. */
int harness_proc_stdout_lines(harness_proc *p);

/* The child's process id (still valid after it exited, until free). */
pid_t harness_proc_pid(const harness_proc *p);

/* The log path given at start, or "" (borrowed). */
const char *harness_proc_log(const harness_proc *p);

/* True until the child has been reaped by harness_proc_wait. */
bool harness_proc_running(const harness_proc *p);

/* Sends `sig` to the child. Returns 0, P2P_ECONFLICT when it was already
 * reaped, or P2P_EIO. */
int harness_proc_signal(harness_proc *p, int sig, p2p_error *err) P2P_NODISCARD;

/* Waits up to `timeout_ms` for the child to exit and reaps it; `*wstatus`
 * (may be NULL) receives the waitpid status. Returns 0, P2P_ETIMEDOUT (still
 * running), or P2P_ECONFLICT when it was already reaped (with the status it
 * had). Never blocks past the timeout. */
int harness_proc_wait(harness_proc *p, long timeout_ms, int *wstatus, p2p_error *err) P2P_NODISCARD;

/* SIGTERM, then wait up to `timeout_ms`; on timeout SIGKILL and reap, and
 * return P2P_ETIMEDOUT. `*wstatus` as above. */
int harness_proc_stop(harness_proc *p, long timeout_ms, int *wstatus, p2p_error *err) P2P_NODISCARD;

/* SIGKILL and reap. Returns 0 or P2P_ECONFLICT when already reaped. */
int harness_proc_kill(harness_proc *p, p2p_error *err) P2P_NODISCARD;

/* Kills the child when still running, reaps it, ends the stdout reader and
 * frees `p`. NULL is a no-op. */
void harness_proc_free(harness_proc *p);

/* Reads /proc/PID/status of a live child: the number of threads and the
 * voluntary + involuntary context switches summed over all its threads.
 * Either out-pointer may be NULL. Returns 0 or P2P_EIO. */
int harness_proc_sched(const harness_proc *p, long *threads, long long *ctx_switches,
                       p2p_error *err) P2P_NODISCARD;

/* ---- files ---- */

/* Creates a fresh, empty directory $P2PRPC_TEST_TMP/NAME.PID (any previous
 * content removed; $TMPDIR or /tmp when the variable is unset) and writes its
 * path to `out` (`out_len` bytes). Returns 0, P2P_EINVAL (too long) or P2P_EIO. */
int harness_scratch_dir(const char *name, char *out, size_t out_len, p2p_error *err) P2P_NODISCARD;

/* Removes `path` and everything under it; a missing path is fine. Returns 0
 * or P2P_EIO. */
int harness_rmtree(const char *path, p2p_error *err) P2P_NODISCARD;

/* Writes `len` bytes of `data` (borrowed) to `path`, mode 0600, atomically. */
int harness_write_file(const char *path, const void *data, size_t len,
                       p2p_error *err) P2P_NODISCARD;

/* Fills `secret[0..len-1]` with random printable bytes (hex digits) and
 * writes them to the secret file `path` (mode 0600) as p2p_secret_load
 * reads it. */
int harness_write_secret(const char *path, unsigned char *secret, size_t len,
                         p2p_error *err) P2P_NODISCARD;

/* Counts the entries of directory `path`, recursively when `recursive`
 * (directories themselves not counted). A missing directory counts 0. */
long harness_count_files(const char *path, bool recursive);

/* $P2PRPC_BIN/NAME (or DEFAULT_DIR/NAME when the variable is unset) into
 * `out`. Returns 0 or P2P_EINVAL (too long). */
int harness_bin_path(const char *name, const char *default_dir, char *out, size_t out_len,
                     p2p_error *err) P2P_NODISCARD;

/* ---- HTTP ---- */

/* A client signed with `secret` (borrowed, copied; NULL = unsigned), with no
 * automatic retries (a test must see each answer), a 5 s connect timeout and
 * `timeout_ms` per request (0 = 60000). Returns NULL with `err` filled. */
p2p_http_client *harness_client_new(const unsigned char *secret, size_t secret_len, long timeout_ms,
                                    p2p_error *err);

/* One answer. Zero-initialise; fill by harness_request & co; release with
 * harness_reply_cleanup. */
typedef struct harness_reply {
    int rc;      /* p2p_http_client_request's result; 0 when an answer came */
    long status; /* HTTP status; 0 when none came */
    char *body;  /* NUL-terminated body (owned), "" when none */
    size_t body_len;
    json_t *json;            /* the body parsed as JSON (owned), or NULL */
    int64_t ms;              /* how long the request took */
    int64_t end_ms;          /* harness_now_ms() when the answer was complete */
    char content_type[128];  /* the Content-Type header, or "" */
    char content_range[128]; /* the Content-Range header, or "" */
    p2p_error err;           /* the transport error when rc != 0 */
} harness_reply;

/* Sends METHOD base_url+path (both borrowed) with `body` (`len` bytes, may be
 * NULL) of `content_type` (NULL = application/json when there is a body).
 * `timeout_ms` 0 = the client's. Fills `*out` (overwritten; clean it up in
 * every case). Returns out->rc. */
int harness_request(p2p_http_client *c, const char *base_url, const char *method, const char *path,
                    const char *content_type, const void *body, size_t len, long timeout_ms,
                    harness_reply *out);

/* The same with extra request headers: "Name: value" strings, NULL-terminated
 * (borrowed; NULL = none). */
int harness_request_headers(p2p_http_client *c, const char *base_url, const char *method,
                            const char *path, const char *const *headers, const char *content_type,
                            const void *body, size_t len, long timeout_ms, harness_reply *out);

/* POST of `body` (borrowed; NULL = no body) as compact JSON. */
int harness_post_json(p2p_http_client *c, const char *base_url, const char *path,
                      const json_t *body, harness_reply *out);

/* GET of base_url+path with `timeout_ms` (0 = the client's). */
int harness_get(p2p_http_client *c, const char *base_url, const char *path, long timeout_ms,
                harness_reply *out);

/* Frees what `r` owns and zeroes it. */
void harness_reply_cleanup(harness_reply *r);

/* The "error"."code" of a JSON error body, or NULL. Borrowed from `r`. */
const char *harness_reply_error_code(const harness_reply *r);

/* The string member `key` of a JSON object body, or NULL; borrowed from `r`. */
const char *harness_reply_str(const harness_reply *r, const char *key);

/* The integer member `key` of a JSON object body, or `dflt`. */
long long harness_reply_int(const harness_reply *r, const char *key, long long dflt);

/* Aborts the program (printing where, the status and the body) unless the
 * request got an answer with `status`, and, when `code` is not NULL, a JSON
 * error body {"error":{"code": code, "message": non-empty}}. Use through
 * HARNESS_EXPECT so that the message names the caller's line. */
void harness_expect_(const harness_reply *r, long status, const char *code, const char *file,
                     int line);
#define HARNESS_EXPECT(reply, status, code)                                                        \
    harness_expect_((reply), (status), (code), __FILE__, __LINE__)

/* ---- raw loopback socket ---- */

/* Connects a blocking TCP socket to the port of `url` (http://127.0.0.1:PORT
 * only: the tests never leave loopback). Stores the descriptor in `*fd`
 * (caller closes). Returns 0, P2P_EINVAL or P2P_EUNAVAIL. */
int harness_connect(const char *url, int *fd, p2p_error *err) P2P_NODISCARD;

/* Formats the three signature header lines ("Name: value\r\n" each) for
 * METHOD and TARGET with `secret` into `out`. Returns 0 or the error of
 * p2p_sign_request. */
int harness_sign_lines(const unsigned char *secret, size_t secret_len, const char *method,
                       const char *target, char *out, size_t out_len, p2p_error *err) P2P_NODISCARD;

/* Reads what the peer sends on `fd` until it closes the connection, `max`
 * bytes arrived, or `timeout_ms` passed, into `out` (NUL-terminated, `max`+1
 * bytes). Returns the byte count (possibly 0), or -1 on a socket error. */
long harness_read_some(int fd, char *out, size_t max, long timeout_ms);

/* The status code of an HTTP/1.x status line at the start of `text`, or 0. */
int harness_http_status(const char *text);

#endif
