/* worker_testapp: the worker program of the integration tests and of
 * bench/worker_bench. It fills the dispatch table by hand with the test
 * functions below (what generated code does for real ones) and hands over to
 * p2p_worker_main, which also runs the per-call child (fork + exec of this
 * same program) and `--dump-schemas FILE`.
 *
 *   p2prpc_add(a, b) -> sum                  a + b (wrapping)
 *   p2prpc_segv(x) -> y                      dies of SIGSEGV
 *   p2prpc_bad_frame(x) -> y                 prints a line on stdout, then
 *                                            p2p_fail("bad frame"), returns 1
 *   p2prpc_slow(seconds, steps) -> done      sleeps, reporting progress i/steps
 *   p2prpc_stubborn(seconds) -> done         ignores SIGTERM while it sleeps
 *   p2prpc_copy(input, xor) -> output, size  streams input to output in constant
 *                                            memory, each byte XORed with `xor`
 *   p2prpc_resume(steps, step_seconds) -> done, started
 *                                            checkpoints every step and resumes
 *                                            from the checkpoint; `started` is the
 *                                            step it began at
 *
 * Environment (read by the parent, inherited by the children):
 *   P2PRPC_TESTAPP_BUSY_FILE  while this file exists, can_do_work says no;
 *   P2PRPC_TESTAPP_RSS_FILE   p2prpc_copy appends the child's peak RSS
 *                             ("VmHWM KB\n") to this file when it is done;
 *   P2PRPC_TESTAPP_RUN_LOG    p2prpc_add appends "add A B PPID\n" to this file
 *                             each time it runs (PPID: the worker that ran it),
 *                             so that a test counts the runs of each call
 *                             (test_mongo_multi_broker.c). */
#include "fsutil.h"
#include "p2prpc.h"
#include "schema.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The copy buffer: the child's memory must not grow with the file. */
#define COPY_CHUNK (256 * 1024)
/* Longest sleep a test function accepts, so a typo cannot hang a test. */
#define MAX_SECONDS 3600.0
#define MAX_STEPS 1000000

/* Sleeps `seconds` (>= 0), resuming after signals that did not kill us. */
static void sleep_seconds(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool seconds_ok(double s) {
    return s >= 0 && s <= MAX_SECONDS;
}

/* ---- the test functions, in the adapter form of p2p_worker_invoke_fn ---- */

/* Appends "add A B PPID" to $P2PRPC_TESTAPP_RUN_LOG when set: one write() to
 * an O_APPEND file, so that lines from concurrent children never mix. */
static void log_run(int64_t a, int64_t b) {
    const char *path = getenv("P2PRPC_TESTAPP_RUN_LOG");
    if (path == NULL || path[0] == '\0')
        return;
    char line[64];
    int n =
        snprintf(line, sizeof(line), "add %" PRId64 " %" PRId64 " %ld\n", a, b, (long)getppid());
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || n <= 0 || write(fd, line, (size_t)n) != (ssize_t)n)
        fprintf(stderr, "worker_testapp: cannot append to %s\n", path);
    if (fd >= 0)
        close(fd);
}

static int fn_add(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    log_run(in[0].as.i64, in[1].as.i64);
    /* Unsigned arithmetic: an overflow wraps instead of being undefined. */
    uint64_t sum = (uint64_t)in[0].as.i64 + (uint64_t)in[1].as.i64;
    p2p_value_set_int64(&out[0], (int64_t)sum);
    return 0;
}

static int fn_segv(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)in;
    (void)out;
    (void)out_dir;
    /* The sanitizers catch SIGSEGV to print a report and exit 1; a crash
     * must look like a crash to the worker in every build. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 1;
}

static int fn_bad_frame(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)in;
    (void)out;
    (void)out_dir;
    /* User code prints: the worker's stdout must still carry one line only. */
    printf("p2prpc_bad_frame: about to fail\n");
    fflush(stdout);
    p2p_fail("bad frame");
    return 1;
}

static int fn_slow(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    double seconds = in[0].as.f64;
    int64_t steps = in[1].as.i64;
    if (!seconds_ok(seconds) || steps <= 0 || steps > MAX_STEPS) {
        p2p_fail("p2prpc_slow: seconds must be 0..%g and steps 1..%d", MAX_SECONDS, MAX_STEPS);
        return 1;
    }
    for (int64_t i = 1; i <= steps; i++) {
        sleep_seconds(seconds / (double)steps);
        p2p_progress_hook(i, steps);
    }
    p2p_value_set_int64(&out[0], steps);
    return 0;
}

static int fn_stubborn(const p2p_value *in, p2p_value *out, const char *out_dir) {
    (void)out_dir;
    double seconds = in[0].as.f64;
    if (!seconds_ok(seconds)) {
        p2p_fail("p2prpc_stubborn: seconds must be 0..%g", MAX_SECONDS);
        return 1;
    }
    /* Only SIGKILL can stop it: the worker's grace period is what ends it. */
    signal(SIGTERM, SIG_IGN);
    sleep_seconds(seconds);
    p2p_value_set_int64(&out[0], 1);
    return 0;
}

/* Appends this process's VmHWM line to the file $P2PRPC_TESTAPP_RSS_FILE. */
static void report_peak_rss(void) {
    const char *path = getenv("P2PRPC_TESTAPP_RSS_FILE");
    char *status = NULL;
    size_t len = 0;
    if (path == NULL || p2p_fs_read_file("/proc/self/status", 1 << 16, &status, &len, NULL) != 0)
        return;
    const char *line = strstr(status, "VmHWM:");
    FILE *f = line ? fopen(path, "a") : NULL;
    if (f != NULL) {
        fprintf(f, "%.*s\n", (int)strcspn(line, "\n"), line);
        fclose(f);
    }
    free(status);
}

/* Copies `in_fd` to `out_fd` with every byte XORed with `x`; returns the byte
 * count or -1 (failure set). */
static int64_t copy_xor(int in_fd, int out_fd, unsigned char x, int64_t total) {
    static unsigned char buf[COPY_CHUNK];
    int64_t done = 0;
    for (;;) {
        ssize_t n = read(in_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2p_fail("p2prpc_copy: read: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            return done;
        for (ssize_t i = 0; x != 0 && i < n; i++)
            buf[i] ^= x;
        if (p2p_fs_write_all(out_fd, buf, (size_t)n) != 0) {
            p2p_fail("p2prpc_copy: write: %s", strerror(errno));
            return -1;
        }
        done += n;
        if (total > 0 && (done % (64 * COPY_CHUNK) == 0 || done == total))
            p2p_progress_hook(done, total);
    }
}

/* Makes `v` a file output known by its path only: the worker hashes it. */
static int set_file_output(p2p_value *v, const char *path, int64_t size) {
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_FILE;
    v->as.file.path = copy;
    v->as.file.hash[0] = '\0';
    v->as.file.size = size;
    return 0;
}

static int fn_copy(const p2p_value *in, p2p_value *out, const char *out_dir) {
    int in_fd = -1, out_fd = -1, rc = 1;
    char *path = p2p_fs_join(out_dir, "output");
    int64_t x = in[1].as.i64;
    if (x < 0 || x > 255) {
        p2p_fail("p2prpc_copy: xor must be 0..255, not %" PRId64, x);
        goto cleanup;
    }
    struct stat st;
    in_fd = open(in[0].as.file.path, O_RDONLY | O_CLOEXEC);
    if (path == NULL || in_fd < 0 || fstat(in_fd, &st) != 0) {
        p2p_fail("p2prpc_copy: cannot open the input: %s", strerror(errno));
        goto cleanup;
    }
    out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out_fd < 0) {
        p2p_fail("p2prpc_copy: cannot create %s: %s", path, strerror(errno));
        goto cleanup;
    }
    int64_t size = copy_xor(in_fd, out_fd, (unsigned char)x, (int64_t)st.st_size);
    if (size < 0)
        goto cleanup;
    if (set_file_output(&out[0], path, size) != 0) {
        p2p_fail("p2prpc_copy: out of memory");
        goto cleanup;
    }
    p2p_value_set_int64(&out[1], size);
    report_peak_rss();
    rc = 0;
cleanup:
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0 && close(out_fd) != 0 && rc == 0) {
        p2p_fail("p2prpc_copy: close: %s", strerror(errno));
        rc = 1;
    }
    free(path);
    return rc;
}

/* The step a checkpoint file holds, or -1 when it holds no step. */
static int64_t read_step(const char *path, int64_t steps) {
    char *text = NULL;
    size_t len = 0;
    if (p2p_fs_read_file(path, 64, &text, &len, NULL) != 0)
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    bool ok = errno == 0 && end != text && *end == '\0' && v >= 0 && v <= steps;
    free(text);
    return ok ? (int64_t)v : -1;
}

/* Where the call starts: the checkpointed step, or 0 when none was saved. */
static int64_t resume_point(const char *path, int64_t steps) {
    int rc = p2p_checkpoint_load("state", path);
    if (rc == P2P_ENOTFOUND)
        return 0;
    if (rc != 0) {
        p2p_fail("p2prpc_resume: checkpoint load failed: %s", p2p_strerror(rc));
        return -1;
    }
    int64_t step = read_step(path, steps);
    if (step < 0)
        p2p_fail("p2prpc_resume: the checkpoint does not hold a step of 0..%" PRId64, steps);
    return step;
}

static int fn_resume(const p2p_value *in, p2p_value *out, const char *out_dir) {
    int64_t steps = in[0].as.i64;
    double step_seconds = in[1].as.f64;
    char *path = p2p_fs_join(out_dir, "state.txt");
    int rc = 1;
    if (steps <= 0 || steps > MAX_STEPS || !seconds_ok(step_seconds) || path == NULL) {
        p2p_fail("p2prpc_resume: steps must be 1..%d and step_seconds 0..%g", MAX_STEPS,
                 MAX_SECONDS);
        goto cleanup;
    }
    int64_t started = resume_point(path, steps);
    if (started < 0)
        goto cleanup;
    for (int64_t i = started; i < steps; i++) {
        sleep_seconds(step_seconds);
        char text[32];
        int n = snprintf(text, sizeof(text), "%" PRId64, i + 1);
        int save = p2p_fs_write_atomic(path, text, (size_t)n, 0600, NULL);
        if (save == 0)
            save = p2p_checkpoint_save("state", path);
        if (save != 0) {
            p2p_fail("p2prpc_resume: checkpoint save failed: %s", p2p_strerror(save));
            goto cleanup;
        }
        p2p_progress_hook(i + 1, steps);
    }
    p2p_value_set_int64(&out[0], steps);
    p2p_value_set_int64(&out[1], started);
    rc = 0;
cleanup:
    free(path);
    return rc;
}

/* ---- the dispatch table ---- */

typedef struct test_fn {
    const char *name;
    p2p_param inputs[2];
    size_t n_inputs;
    p2p_param outputs[2];
    size_t n_outputs;
    p2p_worker_invoke_fn invoke;
} test_fn;

static const test_fn test_fns[] = {
    {"p2prpc_add",
     {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}},
     2,
     {{"sum", P2P_TYPE_INT64}},
     1,
     fn_add},
    {"p2prpc_segv", {{"x", P2P_TYPE_INT64}}, 1, {{"y", P2P_TYPE_INT64}}, 1, fn_segv},
    {"p2prpc_bad_frame", {{"x", P2P_TYPE_INT64}}, 1, {{"y", P2P_TYPE_INT64}}, 1, fn_bad_frame},
    {"p2prpc_slow",
     {{"seconds", P2P_TYPE_DOUBLE}, {"steps", P2P_TYPE_INT64}},
     2,
     {{"done", P2P_TYPE_INT64}},
     1,
     fn_slow},
    {"p2prpc_stubborn",
     {{"seconds", P2P_TYPE_DOUBLE}},
     1,
     {{"done", P2P_TYPE_INT64}},
     1,
     fn_stubborn},
    {"p2prpc_copy",
     {{"input", P2P_TYPE_FILE}, {"xor", P2P_TYPE_INT64}},
     2,
     {{"output", P2P_TYPE_FILE}, {"size", P2P_TYPE_INT64}},
     2,
     fn_copy},
    {"p2prpc_resume",
     {{"steps", P2P_TYPE_INT64}, {"step_seconds", P2P_TYPE_DOUBLE}},
     2,
     {{"done", P2P_TYPE_INT64}, {"started", P2P_TYPE_INT64}},
     2,
     fn_resume},
};

#define N_FNS (sizeof(test_fns) / sizeof(test_fns[0]))

static bool can_do_work(void *ctx) {
    const char *busy_file = ctx;
    return busy_file == NULL || access(busy_file, F_OK) != 0;
}

int main(int argc, char **argv) {
    p2p_schema *schemas[N_FNS] = {0};
    p2p_worker_function fns[N_FNS];
    int rc = 1;
    for (size_t i = 0; i < N_FNS; i++) {
        const test_fn *t = &test_fns[i];
        p2p_error err;
        if (p2p_schema_build(t->name, t->inputs, t->n_inputs, t->outputs, t->n_outputs, &schemas[i],
                             &err) != 0) {
            fprintf(stderr, "worker_testapp: schema %s: %s\n", t->name, err.msg);
            goto cleanup;
        }
        fns[i] = (p2p_worker_function){.schema = schemas[i], .invoke = t->invoke};
    }
    const char *busy = getenv("P2PRPC_TESTAPP_BUSY_FILE");
    rc = p2p_worker_main(argc, argv, fns, N_FNS, can_do_work,
                         (void *)(busy != NULL && busy[0] != '\0' ? busy : NULL));
cleanup:
    for (size_t i = 0; i < N_FNS; i++)
        p2p_schema_free(schemas[i]);
    return rc;
}
