/* Calls through real worker processes (worker_testapp) and a real broker:
 * - throughput: 200 p2prpc_add calls with distinct arguments through two
 *   workers, every sum checked;
 * - crashing code: a function that dies of SIGSEGV and one that calls
 *   p2p_fail("bad frame") give failed calls carrying "SIGSEGV" and
 *   "bad frame", are not retried, and the same worker process then completes
 *   the next call; so does a child killed from outside (SIGKILL);
 * - capacity: --concurrency 2 never runs more than two children at once;
 * - files: an input blob is downloaded, the function's output file is hashed
 *   and uploaded by the worker (an output equal to a blob the broker has, and
 *   a new one), and the work directory is empty once the worker is stopped;
 * - no process of a worker outlives it. */
#include "worker_fixture.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static broker B;

/* ---- throughput ---- */

#define N_CALLS 200

static void test_200_calls_through_two_workers(void) {
    worker w1, w2;
    worker_config cfg = {.concurrency = 2};
    worker_start_for(&w1, "wcalls_w1", &B, &cfg);
    worker_start_for(&w2, "wcalls_w2", &B, &cfg);
    ASSERT_EQ(w1.brokers, 1);
    ASSERT_TRUE(strcmp(w1.node_id, w2.node_id) != 0);

    static char ids[N_CALLS][P2P_HASH_HEX_LEN + 1];
    long long before[6];
    fx_counts(&B, FX_ADD, before);
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < N_CALLS; i++) {
        json_t *args = fx_add_args(i, 3LL * i + 1000000007LL);
        wf_push(&B, WF_ADD, args, ids[i]);
        json_decref(args);
    }
    int64_t pushed = harness_now_ms();
    for (int i = 0; i < N_CALLS; i++) {
        json_t *call = wf_await_status(&B, WF_ADD, ids[i], "done|failed|terminated", 240000);
        wf_expect_status(call, "done");
        ASSERT_EQ(wf_output_int(call, "sum"), 4LL * i + 1000000007LL);
        ASSERT_EQ(wf_int(call, "attempts", -1), 1);
        ASSERT_TRUE(wf_num(call, "progress", -1) == 100.0);
        json_decref(call);
    }
    int64_t t1 = harness_now_ms();
    fprintf(stderr, "%d calls: pushed in %lld ms, all done %lld ms after the first push (%.1f/s)\n",
            N_CALLS, (long long)(pushed - t0), (long long)(t1 - t0),
            N_CALLS * 1000.0 / (double)(t1 - t0 + 1));
    long long counts[6];
    fx_counts(&B, FX_ADD, counts);
    ASSERT_EQ(counts[3] - before[3], N_CALLS); /* done */
    ASSERT_EQ(counts[1] + counts[2] + counts[4], 0);

    ASSERT_TRUE(harness_proc_running(w1.proc) && harness_proc_running(w2.proc));
    wf_assert_no_orphans(&w1, 5000);
    wf_assert_no_orphans(&w2, 5000);
    worker_stop(&w1, 30000);
    worker_stop(&w2, 30000);
    wf_assert_no_orphans(&w1, 5000);
    wf_assert_no_orphans(&w2, 5000);
    /* Per-call directories are removed once a call is over. */
    ASSERT_EQ(harness_count_files(w1.work_dir, true), 0);
    ASSERT_EQ(harness_count_files(w2.work_dir, true), 0);
    worker_cleanup(&w1);
    worker_cleanup(&w2);
}

/* ---- crashing code ---- */

static json_t *run_one(wf_fn f, json_t *args) {
    char id[P2P_HASH_HEX_LEN + 1];
    wf_push(&B, f, args, id);
    json_decref(args);
    return wf_await_status(&B, f, id, "done|failed|terminated", 60000);
}

/* The worker's one direct child (--concurrency 1: one spare), once it is
 * there and is not `not` (0 = any). Sampled every 10 ms: a spawn has no
 * event the test can wait for. */
static pid_t the_child(worker *w, pid_t not ) {
    int64_t deadline = harness_now_ms() + 30000;
    while (harness_now_ms() < deadline) {
        pid_t kids[64];
        size_t n = wf_children(worker_pid(w), kids, 64);
        if (n == 1 && kids[0] != not )
            return kids[0];
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    TEST_FAIL_("the worker has no single new child after 30 s");
    return 0;
}

/* A child that ended its call with a result runs the next call (no start on
 * the call's path), a failed function included; a crashed one is replaced. */
static void test_child_runs_the_next_call(void) {
    worker w;
    worker_start_for(&w, "wcalls_reuse", &B, &(worker_config){.concurrency = 1});
    pid_t child = the_child(&w, 0);
    for (int i = 0; i < 4; i++) {
        json_t *call = i == 2 ? run_one(WF_BAD_FRAME, json_pack("{s:i}", "x", 1))
                              : run_one(WF_ADD, fx_add_args(i, 1000));
        wf_expect_status(call, i == 2 ? "failed" : "done");
        json_decref(call);
        pid_t kids[64];
        ASSERT_EQ(wf_children(worker_pid(&w), kids, 64), 1);
        ASSERT_EQ(kids[0], child);
    }
    json_t *call = run_one(WF_SEGV, json_pack("{s:i}", "x", 2));
    wf_expect_status(call, "failed");
    json_decref(call);
    pid_t next = the_child(&w, child);
    call = run_one(WF_ADD, fx_add_args(7, 1000));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 1007);
    json_decref(call);
    pid_t kids[64];
    ASSERT_EQ(wf_children(worker_pid(&w), kids, 64), 1);
    ASSERT_EQ(kids[0], next);
    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    worker_cleanup(&w);
}

/* --work-dir and --data-dir as a user types them, relative to the directory
 * the worker starts in: calls run there (the children once failed with
 * "cannot enter rel/work/w-.../call-.../out", resolving the path again from
 * another directory). */
static void test_relative_directories(void) {
    worker w;
    worker_init(&w, "wcalls_relative", B.secret_len ? B.secret_path : NULL,
                &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){B.url, NULL});
    char cwd[HARNESS_PATH_MAX];
    ASSERT_TRUE(getcwd(cwd, sizeof(cwd)) != NULL);
    ASSERT_EQ(chdir(w.dir), 0);
    snprintf(w.work_dir, sizeof(w.work_dir), "rel/work");
    snprintf(w.data_dir, sizeof(w.data_dir), "rel/data");
    worker_start(&w);
    ASSERT_EQ(chdir(cwd), 0);
    json_t *call = run_one(WF_ADD, fx_add_args(40, 2));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 42);
    json_decref(call);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

static void test_crashes_fail_the_call_not_the_worker(void) {
    worker w;
    worker_start_for(&w, "wcalls_crash", &B, &(worker_config){.concurrency = 1});
    pid_t pid = worker_pid(&w);

    json_t *call = run_one(WF_SEGV, json_pack("{s:i}", "x", 1));
    wf_expect_status(call, "failed");
    fprintf(stderr, "segv: error \"%s\"\n", wf_str(call, "error"));
    ASSERT_STR_CONTAINS(wf_str(call, "error"), "SIGSEGV");
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    ASSERT_TRUE(json_object_get(call, "outputs") == NULL ||
                json_is_null(json_object_get(call, "outputs")));
    json_decref(call);

    call = run_one(WF_BAD_FRAME, json_pack("{s:i}", "x", 2));
    wf_expect_status(call, "failed");
    fprintf(stderr, "bad_frame: error \"%s\"\n", wf_str(call, "error"));
    ASSERT_STR_CONTAINS(wf_str(call, "error"), "bad frame");
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    /* What the function printed went to the worker's stderr, not its stdout. */
    ASSERT_EQ(harness_proc_stdout_lines(w.proc), 1);
    ASSERT_TRUE(worker_log_contains(&w, "p2prpc_bad_frame: about to fail"));

    /* The same worker process carries on. */
    ASSERT_TRUE(harness_proc_running(w.proc));
    ASSERT_EQ(worker_pid(&w), pid);
    call = run_one(WF_ADD, fx_add_args(20, 22));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 42);
    json_decref(call);

    /* A crash twice in a row changes nothing either. */
    call = run_one(WF_SEGV, json_pack("{s:i}", "x", 3));
    wf_expect_status(call, "failed");
    json_decref(call);
    call = run_one(WF_ADD, fx_add_args(-5, 2));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), -3);
    json_decref(call);
    ASSERT_EQ(worker_pid(&w), pid);

    wf_assert_no_orphans(&w, 5000);
    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    ASSERT_EQ(harness_count_files(w.work_dir, true), 0);
    worker_cleanup(&w);
}

/* Something outside kills the function's process (the OOM killer, an
 * operator): the call fails with the signal's name, the worker goes on. */
static void test_child_killed_from_outside(void) {
    worker w;
    worker_start_for(&w, "wcalls_oom", &B, &(worker_config){.concurrency = 1});
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 60.0, "steps", 600);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&B, WF_SLOW, id, 0.1, 30000));
    pid_t kids[64];
    size_t n = wf_call_children(&w, id, kids, 64);
    ASSERT_EQ(n, 1);
    ASSERT_OK(kill(kids[0], SIGKILL));
    json_t *call = wf_await_status(&B, WF_SLOW, id, "done|failed|terminated", 30000);
    wf_expect_status(call, "failed");
    fprintf(stderr, "child killed: error \"%s\"\n", wf_str(call, "error"));
    ASSERT_STR_CONTAINS(wf_str(call, "error"), "SIGKILL");
    json_decref(call);
    call = run_one(WF_ADD, fx_add_args(1, 99));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 100);
    json_decref(call);
    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    worker_cleanup(&w);
}

/* --concurrency 2 with six calls queued: never more than two children
 * running a call at once, and two at some point (spare children waiting for
 * a call do not count). Sampled every 20 ms (the count of children
 * has no event to wait for), bounded by the calls' end. */
static void test_concurrency_limit(void) {
    worker w;
    worker_start_for(&w, "wcalls_conc", &B, &(worker_config){.concurrency = 2});
    char ids[6][P2P_HASH_HEX_LEN + 1];
    for (int i = 0; i < 6; i++) {
        json_t *args = json_pack("{s:f, s:i}", "seconds", 0.6 + 0.01 * i, "steps", 3);
        wf_push(&B, WF_SLOW, args, ids[i]);
        json_decref(args);
    }
    size_t most = 0;
    long long counts[6] = {0};
    int64_t deadline = harness_now_ms() + 60000;
    for (int i = 0; i < 3000 && harness_now_ms() < deadline; i++) {
        pid_t kids[64];
        size_t n = wf_call_children(&w, NULL, kids, 64);
        most = n > most ? n : most;
        if (n > 2) {
            wf_print_procs(kids, n);
            TEST_FAIL_("%zu children at once with --concurrency 2", n);
        }
        char *text = fx_metrics_text(&B);
        const char *labels[] = {"function=\"p2prpc_slow\"", "status=\"done\"", NULL};
        counts[3] = (long long)fx_metric(text, "p2prpc_calls", labels);
        free(text);
        if (counts[3] >= 6)
            break;
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    fprintf(stderr, "--concurrency 2: at most %zu children at once\n", most);
    ASSERT_EQ(most, 2);
    for (int i = 0; i < 6; i++) {
        json_t *call = wf_await_status(&B, WF_SLOW, ids[i], "done|failed|terminated", 60000);
        wf_expect_status(call, "done");
        json_decref(call);
    }
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

/* ---- files ---- */

/* `len` pseudo-random bytes (xorshift64*), the same for the same seed. */
static unsigned char *random_bytes(size_t len, uint64_t seed) {
    unsigned char *p = malloc(len);
    ASSERT_TRUE(p != NULL);
    uint64_t x = seed | 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (unsigned char)((x * 0x2545F4914F6CDD1DULL) >> 56);
    }
    return p;
}

/* Pushes p2prpc_copy(input, xor) and returns the finished call. */
static json_t *copy_call(const char *hash, size_t len, int x) {
    json_t *args =
        json_pack("{s:{s:s, s:I}, s:i}", "input", "hash", hash, "size", (json_int_t)len, "xor", x);
    return run_one(WF_COPY, args);
}

/* Downloads blob `hash` and compares it with `want`. */
static void expect_blob(const char *hash, const unsigned char *want, size_t len) {
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    harness_reply r;
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(r.body_len, len);
    ASSERT_MEM_EQ(r.body, want, len);
    harness_reply_cleanup(&r);
}

static void test_files_in_and_out(void) {
    worker w;
    worker_start_for(&w, "wcalls_files", &B, &(worker_config){.concurrency = 2});
    size_t len = (3u << 20) + 123;
    unsigned char *data = random_bytes(len, 42);
    char in_hash[P2P_HASH_HEX_LEN + 1], out_hash[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_blob_put(&B, NULL, data, len, in_hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);

    /* A plain copy: the output is a blob the broker already has. */
    json_t *call = copy_call(in_hash, len, 0);
    wf_expect_status(call, "done");
    json_t *out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), in_hash);
    ASSERT_EQ(json_integer_value(json_object_get(out, "size")), (long long)len);
    ASSERT_EQ(wf_output_int(call, "size"), (long long)len);
    json_decref(call);

    /* A transformed copy: a new output blob the worker uploads. */
    for (size_t i = 0; i < len; i++)
        data[i] ^= 0x5a;
    ASSERT_OK(p2p_hash_bytes_hex(data, len, out_hash, NULL));
    call = copy_call(in_hash, len, 0x5a);
    wf_expect_status(call, "done");
    out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), out_hash);
    ASSERT_EQ(json_integer_value(json_object_get(out, "size")), (long long)len);
    json_decref(call);
    expect_blob(out_hash, data, len);

    /* An empty file goes through too. */
    char empty[P2P_HASH_HEX_LEN + 1];
    fx_blob_put(&B, NULL, "", 0, empty, &r);
    if (r.status != 200)
        HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    call = copy_call(empty, 0, 7);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "size"), 0);
    out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), empty);
    json_decref(call);

    free(data);
    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    ASSERT_EQ(harness_count_files(w.work_dir, true), 0);
    worker_cleanup(&w);
}

int main(void) {
    wf_broker_init(&B, "wcalls_broker", NULL);
    broker_start(&B);
    TEST_RUN(test_child_runs_the_next_call);
    TEST_RUN(test_relative_directories);
    TEST_RUN(test_crashes_fail_the_call_not_the_worker);
    TEST_RUN(test_child_killed_from_outside);
    TEST_RUN(test_concurrency_limit);
    TEST_RUN(test_files_in_and_out);
    TEST_RUN(test_200_calls_through_two_workers);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
