/* The integration harness against /bin/sh scripts: the listening line is
 * found and parsed, stderr lands in the log, a silent or dying child is
 * reported in bounded time, signals and exit statuses come back. */
#include "fsutil.h"
#include "harness.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];

static harness_proc *start_sh(const char *script, const char *log, bool wait, long timeout_ms,
                              int *rc) {
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    const char *env[] = {"HARNESS_TEST_VAR=from-the-harness", NULL};
    harness_proc_options o = {.argv = argv,
                              .env = env,
                              .log_path = log,
                              .wait_listening = wait,
                              .ready_timeout_ms = timeout_ms};
    harness_proc *p = NULL;
    p2p_error err;
    *rc = harness_proc_start(&o, &p, &err);
    if (*rc != 0)
        fprintf(stderr, "start: %s\n", err.msg);
    return p;
}

static void test_listening_line_and_log(void) {
    char log[600];
    snprintf(log, sizeof(log), "%s/sh.log", dir);
    int rc;
    harness_proc *p = start_sh("echo starting; echo \"to stderr $HARNESS_TEST_VAR\" >&2; "
                               "echo 'listening on http://127.0.0.1:4242'; exec sleep 60",
                               log, true, 10000, &rc);
    ASSERT_OK(rc);
    ASSERT_STR_EQ(harness_proc_url(p), "http://127.0.0.1:4242");
    ASSERT_STR_EQ(harness_proc_listening_line(p), "listening on http://127.0.0.1:4242");
    ASSERT_EQ(harness_proc_stdout_lines(p), 2);
    ASSERT_TRUE(harness_proc_running(p));
    long threads = 0;
    ASSERT_OK(harness_proc_sched(p, &threads, NULL, NULL));
    ASSERT_EQ(threads, 1);

    /* Still running: a bounded wait times out. */
    int st = 0;
    int64_t t0 = harness_now_ms();
    ASSERT_EQ(harness_proc_wait(p, 200, &st, NULL), P2P_ETIMEDOUT);
    ASSERT_GE(harness_now_ms() - t0, 150);
    ASSERT_OK(harness_proc_stop(p, 10000, &st, NULL));
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    ASSERT_FALSE(harness_proc_running(p));
    ASSERT_EQ(harness_proc_signal(p, SIGTERM, NULL), P2P_ECONFLICT);
    harness_proc_free(p);

    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(log, 1 << 20, &text, &len, NULL));
    ASSERT_STR_CONTAINS(text, "to stderr from-the-harness");
    ASSERT_STR_CONTAINS(text, "starting");
    free(text);
}

static void test_exit_before_listening(void) {
    int rc;
    int64_t t0 = harness_now_ms();
    harness_proc *p = start_sh("echo no port here; exit 3", NULL, true, 20000, &rc);
    ASSERT_EQ(rc, P2P_EPROTO);
    ASSERT_TRUE(p == NULL);
    ASSERT_LT(harness_now_ms() - t0, 10000);
}

static void test_silent_child_times_out(void) {
    int rc;
    int64_t t0 = harness_now_ms();
    harness_proc *p = start_sh("exec sleep 60", NULL, true, 300, &rc);
    ASSERT_EQ(rc, P2P_ETIMEDOUT);
    ASSERT_TRUE(p == NULL);
    int64_t took = harness_now_ms() - t0;
    ASSERT_GE(took, 250);
    ASSERT_LT(took, 10000);
}

static void test_exit_status_and_kill(void) {
    int rc, st = 0;
    harness_proc *p = start_sh("exit 7", NULL, false, 0, &rc);
    ASSERT_OK(rc);
    ASSERT_OK(harness_proc_wait(p, 10000, &st, NULL));
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 7);
    ASSERT_EQ(harness_proc_wait(p, 10, &st, NULL), P2P_ECONFLICT);
    harness_proc_free(p);

    p = start_sh("trap '' TERM; echo 'listening on https://127.0.0.1:1'; exec sleep 60", NULL, true,
                 10000, &rc);
    ASSERT_OK(rc);
    ASSERT_STR_EQ(harness_proc_url(p), "https://127.0.0.1:1");
    ASSERT_OK(harness_proc_kill(p, NULL));
    ASSERT_FALSE(harness_proc_running(p));
    harness_proc_free(p);
    /* A child never reaped is killed by free. */
    p = start_sh("exec sleep 60", NULL, false, 0, &rc);
    ASSERT_OK(rc);
    harness_proc_free(p);
}

static void test_files_and_replies(void) {
    char sub[700];
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    ASSERT_OK(p2p_fs_mkdirs(sub, 0700, NULL));
    unsigned char secret[16];
    char path[800];
    snprintf(path, sizeof(path), "%s/secret", sub);
    ASSERT_OK(harness_write_secret(path, secret, sizeof(secret), NULL));
    /* sh.log of the first test, and a/b/secret. */
    ASSERT_EQ(harness_count_files(dir, true), 2);
    ASSERT_EQ(harness_count_files(dir, false), 2);
    snprintf(path, sizeof(path), "%s/a", dir);
    ASSERT_OK(harness_rmtree(path, NULL));
    ASSERT_EQ(harness_count_files(dir, true), 1);
    ASSERT_OK(harness_rmtree(path, NULL));

    ASSERT_EQ(harness_http_status("HTTP/1.1 413 Payload Too Large\r\n"), 413);
    ASSERT_EQ(harness_http_status("HTTP/1.1 41 x"), 0);
    ASSERT_EQ(harness_http_status("garbage"), 0);
    int fd = -1;
    ASSERT_EQ(harness_connect("http://10.0.0.1:80", &fd, NULL), P2P_EINVAL);
    ASSERT_EQ(harness_connect("http://127.0.0.1:0", &fd, NULL), P2P_EINVAL);
}

int main(void) {
    ASSERT_OK(harness_scratch_dir("harness", dir, sizeof(dir), NULL));
    TEST_RUN(test_listening_line_and_log);
    TEST_RUN(test_exit_before_listening);
    TEST_RUN(test_silent_child_times_out);
    TEST_RUN(test_exit_status_and_kill);
    TEST_RUN(test_files_and_replies);
    ASSERT_OK(harness_rmtree(dir, NULL));
    return 0;
}
