/* The parent side of a child (spawn.c) without a broker: a job in, a result
 * out, over the control socket; a child and whatever it started die by the
 * group kill and are always reaped; a child dies with the thread that spawned
 * it; a crash is seen as a signal; one child runs job after job until its
 * socket is closed. Also measures the round trip of a no-op call through a
 * fresh child (posix_spawn + exec + job + result + reap), through a child
 * started beforehand, and through a child that already ran a call (what the
 * worker does since its children run many calls, spares.c). */
#include "worker_internal.h"
#include "worker_test_util.h"

#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static char dir[800];

/* The job of a call of `f` with `args` (no file: nothing is downloaded, the
 * broker URL is never used). Caller frees. */
static char *job_of(int f, const char *args) {
    json_t *job = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s}", "function", p2p_schema_name(wt_schemas[f]),
        "identifier", "1111111111111111111111111111111111111111111111111111111111111111",
        "lease_token", "22222222222222222222222222222222", "broker", "http://127.0.0.1:9/", "args",
        json_loads(args, 0, NULL), "in_dir", dir, "out_dir", dir, "log_level", "warn");
    char *text = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    return text;
}

/* Reads the child's messages until EOF; the last line (caller decrefs). */
static json_t *read_result(p2p__child *c) {
    static char buf[1 << 16];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
        ASSERT_EQ(poll(&pfd, 1, 20000), 1);
        ssize_t n = recv(c->sock, buf + len, sizeof(buf) - 1 - len, 0);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    char *last = len > 1 ? memrchr(buf, '\n', len - 1) : NULL;
    return json_loads(last != NULL ? last + 1 : buf, 0, NULL);
}

/* Sends the job of `f` and closes the sending side: the child runs that job
 * only, then exits. */
static void send_last_job(p2p__child *c, int f, const char *args) {
    p2p_error err = {0};
    char *job = job_of(f, args);
    ASSERT_OK(p2p__child_send_job(c, job, strlen(job), &err));
    free(job);
    ASSERT_OK(shutdown(c->sock, SHUT_WR));
}

/* Reads one message line of the child (caller decrefs). */
static json_t *read_line(p2p__child *c) {
    static char line[1 << 16];
    size_t len = 0;
    while (len == 0 || line[len - 1] != '\n') {
        struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
        ASSERT_EQ(poll(&pfd, 1, 20000), 1);
        /* One byte at a time: nothing of the next message is taken. */
        ssize_t n = recv(c->sock, line + len, 1, 0);
        ASSERT_GT(n, 0);
        len += (size_t)n;
        ASSERT_LT(len, sizeof(line) - 1);
    }
    line[len] = '\0';
    return json_loads(line, 0, NULL);
}

static json_t *run_job(int f, const char *args, int *wstatus) {
    p2p__child c;
    p2p_error err = {0};
    if (p2p__child_spawn("/proc/self/exe", dir, &c, &err) != 0)
        TEST_FAIL_("spawn: %s", err.msg);
    send_last_job(&c, f, args);
    json_t *result = read_result(&c);
    ASSERT_TRUE(p2p__child_reap(&c, true));
    *wstatus = c.wstatus;
    p2p__child_cleanup(&c);
    return result;
}

static void test_round_trip(void) {
    int ws = 0;
    json_t *r = run_job(F_ADD, "{\"a\":3,\"b\":4}", &ws);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(r, "outputs"), "sum")), 7);
    ASSERT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    json_decref(r);
    r = run_job(F_BAD_FRAME, "{\"x\":1}", &ws);
    ASSERT_STR_EQ(wt_str(r, "failed"), "bad frame");
    ASSERT_EQ(json_integer_value(json_object_get(r, "rc")), 1);
    json_decref(r);
    r = run_job(F_ADD, "{\"a\":3}", &ws); /* a missing argument: the framework says so */
    ASSERT_STR_CONTAINS(wt_str(r, "error"), "missing argument 'b'");
    ASSERT_TRUE(json_is_false(json_object_get(r, "retry")));
    json_decref(r);
    r = run_job(F_SEGV, "{\"x\":1}", &ws);
    ASSERT_TRUE(r == NULL); /* no result line: it crashed */
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGSEGV);
}

/* One child, three jobs: each result comes back while the child waits for
 * the next job (a failed function does not end it), in the directory it
 * started in; closing the socket ends it with 0. */
static void test_many_jobs(void) {
    p2p__child c;
    p2p_error err = {0};
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    for (int i = 0; i < 3; i++) {
        char *job = i == 1 ? job_of(F_BAD_FRAME, "{\"x\":1}") : job_of(F_ADD, "{\"a\":3,\"b\":4}");
        ASSERT_OK(p2p__child_send_job(&c, job, strlen(job), &err));
        free(job);
        json_t *r = read_line(&c);
        if (i == 1)
            ASSERT_STR_EQ(wt_str(r, "failed"), "bad frame");
        else
            ASSERT_EQ(json_integer_value(json_object_get(json_object_get(r, "outputs"), "sum")), 7);
        json_decref(r);
        ASSERT_FALSE(p2p__child_reap(&c, false)); /* still there, waiting */
    }
    char link[64], cwd[1024];
    snprintf(link, sizeof(link), "/proc/%d/cwd", (int)c.pid);
    ssize_t n = readlink(link, cwd, sizeof(cwd) - 1);
    ASSERT_GT(n, 0);
    cwd[n] = '\0';
    ASSERT_STR_EQ(cwd, dir);
    p2p__child_finish(&c, 20000); /* closes the socket: EOF */
    ASSERT_TRUE(WIFEXITED(c.wstatus) && WEXITSTATUS(c.wstatus) == 0);
    p2p__child_cleanup(&c);
    /* A malformed job line is a framework error: the child says so and ends. */
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    ASSERT_OK(p2p__child_send_job(&c, "{\"function\":", 13, &err));
    json_t *r = read_line(&c);
    ASSERT_STR_CONTAINS(wt_str(r, "error"), "cannot read the job");
    json_decref(r);
    ASSERT_TRUE(p2p__child_reap(&c, true));
    ASSERT_TRUE(WIFEXITED(c.wstatus) && WEXITSTATUS(c.wstatus) == 1);
    p2p__child_cleanup(&c);
}

/* Nothing the child started outlives the kill of its group. */
static void test_group_kill(void) {
    p2p__child c;
    p2p_error err = {0};
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    ASSERT_EQ(getpgid(c.pid), c.pid);
    p2p__child_kill(&c, SIGKILL);
    struct pollfd pfd = {.fd = c.pidfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 10000), 1);
    ASSERT_TRUE(p2p__child_reap(&c, false));
    ASSERT_TRUE(WIFSIGNALED(c.wstatus) && WTERMSIG(c.wstatus) == SIGKILL);
    pid_t pid = c.pid;
    p2p__child_cleanup(&c);
    ASSERT_EQ(kill(pid, 0), -1); /* reaped: gone */
    /* A child that started a process of its own: the group kill takes both
     * (this test is their subreaper, so it can reap the orphan). */
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    char *job = job_of(F_FORK, "{\"x\":60000}");
    ASSERT_OK(p2p__child_send_job(&c, job, strlen(job), &err));
    free(job);
    static char line[256];
    size_t len = 0;
    while (len == 0 || line[len - 1] != '\n') {
        pfd = (struct pollfd){.fd = c.sock, .events = POLLIN};
        ASSERT_EQ(poll(&pfd, 1, 20000), 1);
        ssize_t n = recv(c.sock, line + len, sizeof(line) - 1 - len, 0);
        ASSERT_GT(n, 0);
        len += (size_t)n;
    }
    line[len] = '\0';
    json_t *msg = json_loads(line, 0, NULL);
    pid_t grandchild =
        (pid_t)json_integer_value(json_array_get(json_object_get(msg, "progress"), 0));
    json_decref(msg);
    ASSERT_GT(grandchild, 1);
    ASSERT_EQ(getpgid(grandchild), c.pid);
    p2p__child_kill(&c, SIGKILL);
    p2p__child_cleanup(&c);
    int ws = 0;
    ASSERT_EQ(waitpid(grandchild, &ws, 0), grandchild);
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    /* Cleanup alone kills and reaps a child still running. */
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    pid = c.pid;
    p2p__child_cleanup(&c);
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
}

/* Spawns a slow call and waits for its first progress line: by then the
 * child has set PR_SET_PDEATHSIG. */
static void spawn_slow(p2p__child *c) {
    p2p_error err = {0};
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, c, &err));
    char *job = job_of(F_SLOW, "{\"ms\":60000,\"steps\":60000}");
    ASSERT_OK(p2p__child_send_job(c, job, strlen(job), &err));
    free(job);
    struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 20000), 1);
}

static void *spawn_and_leave(void *arg) {
    spawn_slow(arg);
    return NULL; /* the thread ends: PR_SET_PDEATHSIG kills the child */
}

static void test_dies_with_its_thread(void) {
    p2p__child c;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, spawn_and_leave, &c), 0);
    pthread_join(t, NULL);
    struct pollfd pfd = {.fd = c.pidfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 10000), 1);
    ASSERT_TRUE(p2p__child_reap(&c, false));
    ASSERT_TRUE(WIFSIGNALED(c.wstatus) && WTERMSIG(c.wstatus) == SIGKILL);
    p2p__child_cleanup(&c);
}

/* A worker killed with SIGKILL leaves no child running: a process (forked
 * here, before this test starts any thread of its own) spawns a child, tells
 * us its pid and dies; the orphan comes to us, the subreaper, killed. */
static void test_dies_with_its_process(void) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t worker = fork();
    ASSERT_GE(worker, 0);
    if (worker == 0) {
        p2p__child c;
        spawn_slow(&c);
        ssize_t n = write(fds[1], &c.pid, sizeof(c.pid));
        _exit(n == sizeof(c.pid) ? 0 : 1);
    }
    pid_t child = 0;
    ASSERT_EQ(read(fds[0], &child, sizeof(child)), (ssize_t)sizeof(child));
    close(fds[0]);
    close(fds[1]);
    int ws = 0;
    ASSERT_EQ(waitpid(worker, &ws, 0), worker);
    ASSERT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    ASSERT_EQ(waitpid(child, &ws, 0), child);
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
}

static void test_measure(void) {
    enum { N = 50 };
    int64_t start = wt_now_ms();
    for (int i = 0; i < N; i++) {
        int ws = 0;
        json_t *r = run_job(F_NOOP, "{\"x\":5}", &ws);
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(r, "outputs"), "y")), 5);
        json_decref(r);
    }
    int64_t took = wt_now_ms() - start;
    fprintf(stderr, "no-op call through a fresh child: %.2f ms per round trip (%d in %lld ms)\n",
            (double)took / N, N, (long long)took);
    ASSERT_LT(took / N, 1000);
    /* The same with the child started beforehand (what a zygote or a spare
     * child would save): only the job, the call and the result remain. */
    double spare_ms = 0;
    for (int i = 0; i < N; i++) {
        p2p__child c;
        p2p_error err = {0};
        ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
        sleep_ms(30); /* it is loaded and waits for its job */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        send_last_job(&c, F_NOOP, "{\"x\":5}");
        json_t *r = read_result(&c);
        ASSERT_TRUE(p2p__child_reap(&c, true));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        spare_ms += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        ASSERT_TRUE(r != NULL);
        json_decref(r);
        p2p__child_cleanup(&c);
    }
    fprintf(stderr, "no-op call through a child started beforehand: %.2f ms per round trip\n",
            spare_ms / N);
    /* The same child for every call, as the worker keeps them. */
    p2p__child c;
    p2p_error err = {0};
    ASSERT_OK(p2p__child_spawn("/proc/self/exe", dir, &c, &err));
    start = wt_now_ms();
    for (int i = 0; i < N; i++) {
        char *job = job_of(F_NOOP, "{\"x\":5}");
        ASSERT_OK(p2p__child_send_job(&c, job, strlen(job), &err));
        free(job);
        json_t *r = read_line(&c);
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(r, "outputs"), "y")), 5);
        json_decref(r);
    }
    took = wt_now_ms() - start;
    fprintf(stderr, "no-op call through a child that ran calls before: %.3f ms per round trip\n",
            (double)took / N);
    p2p__child_finish(&c, 20000);
    p2p__child_cleanup(&c);
}

int main(int argc, char **argv) {
    WT_CHILD_MAIN(argc, argv);
    wt_setup("worker_spawn");
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    snprintf(dir, sizeof(dir), "%s", wt_root);
    TEST_RUN(test_dies_with_its_process);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_many_jobs);
    TEST_RUN(test_group_kill);
    TEST_RUN(test_dies_with_its_thread);
    TEST_RUN(test_measure);
    return wt_teardown();
}
