/* The worker program's command line (p2p_worker_main, through the test app):
 * --help lists every flag and exits 0; --version; --dump-schemas writes the
 * schemas as a JSON array that p2prpc-broker --schema accepts (the
 * fingerprint of p2prpc_add is the one docs/protocol.md works out); an
 * unknown flag is a usage error (exit 2); a missing, empty or comment-only
 * discovery file stops the worker with an error before its started line; the
 * started line names the node UUID kept in --data-dir across restarts. */
#include "version.h"
#include "worker_fixture.h"

#include "fsutil.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static char dir[HARNESS_PATH_MAX];

/* Runs the test app with `args`; returns its exit status (fails on a signal)
 * and its output in `*out` (caller frees). */
static int run(const char *const *args, char **out) {
    char log[HARNESS_PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/run.log", dir);
    (void)remove(log);
    int st = wf_run_testapp(args, log, 30000);
    if (!WIFEXITED(st))
        TEST_FAIL_("worker_testapp %s: wait status 0x%x", args[0], st);
    size_t len = 0;
    *out = NULL;
    if (p2p_fs_read_file(log, 1 << 20, out, &len, NULL) != 0)
        *out = strdup("");
    return WEXITSTATUS(st);
}

static void test_help_and_version(void) {
    char *out = NULL;
    ASSERT_EQ(run((const char *[]){"--help", NULL}, &out), 0);
    static const char *const flags[] = {
        "--discovery", "--secret-file", "--concurrency", "--work-dir",      "--lease-renew-seconds",
        "--ca-file",   "--ca-path",     "--insecure",    "--grace-seconds", "--poll-wait",
        "--log-level", "--data-dir",    "--help",        "--version",       "--dump-schemas"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        ASSERT_STR_CONTAINS(out, flags[i]);
    free(out);
    ASSERT_EQ(run((const char *[]){"--version", NULL}, &out), 0);
    ASSERT_STR_CONTAINS(out, P2P_VERSION);
    free(out);
}

static void test_usage_errors(void) {
    char *out = NULL;
    ASSERT_EQ(run((const char *[]){"--no-such-flag", NULL}, &out), 2);
    ASSERT_STR_CONTAINS(out, "no-such-flag");
    free(out);
    ASSERT_EQ(
        run((const char *[]){"--concurrency", "zero", "--discovery", "/nonexistent", NULL}, &out),
        2);
    free(out);
    ASSERT_EQ(
        run((const char *[]){"--concurrency", "0", "--discovery", "/nonexistent", NULL}, &out), 2);
    free(out);
    static const char *const bad[][2] = {
        {"--concurrency", "1025"}, {"--poll-wait", "0"},           {"--poll-wait", "301"},
        {"--poll-wait", "1.5"},    {"--lease-renew-seconds", "0"}, {"--lease-renew-seconds", "nan"},
        {"--grace-seconds", "-1"}, {"--grace-seconds", "3601"},    {"--log-level", "loud"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st =
            run((const char *[]){bad[i][0], bad[i][1], "--discovery", "/nonexistent", NULL}, &out);
        if (st != 2)
            TEST_FAIL_("%s %s: exit %d, not 2 (usage); output: %s", bad[i][0], bad[i][1], st, out);
        ASSERT_STR_CONTAINS(out, bad[i][0] + 2);
        free(out);
    }
    /* The hidden child flag by hand: no job to run, an error, no hang. */
    ASSERT_EQ(run((const char *[]){"--p2p-child", NULL}, &out), 1);
    free(out);
}

static void test_dump_schemas_to_stdout(void) {
    char *out = NULL;
    ASSERT_EQ(run((const char *[]){"--dump-schemas", "-", NULL}, &out), 0);
    json_error_t jerr;
    json_t *all = json_loads(out, 0, &jerr);
    if (!json_is_array(all))
        TEST_FAIL_("--dump-schemas - did not print a JSON array: %s (%s)", out, jerr.text);
    ASSERT_EQ(json_array_size(all), WF_FN_COUNT);
    json_decref(all);
    free(out);
}

static void test_dump_schemas(void) {
    char path[HARNESS_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/dump.json", dir);
    char *out = NULL;
    ASSERT_EQ(run((const char *[]){"--dump-schemas", path, NULL}, &out), 0);
    free(out);
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    ASSERT_TRUE(json_is_array(all));
    ASSERT_EQ(json_array_size(all), WF_FN_COUNT);
    /* Every function once, in any order. */
    int found[WF_FN_COUNT] = {0};
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *s = json_array_get(all, i);
        const char *name = json_string_value(json_object_get(s, "name"));
        ASSERT_TRUE(name != NULL);
        for (int k = 0; k < WF_FN_COUNT; k++)
            found[k] += strcmp(name, wf_name((wf_fn)k)) == 0;
        if (strcmp(name, "p2prpc_add") == 0)
            ASSERT_STR_EQ(json_string_value(json_object_get(s, "fingerprint")),
                          "32ed06fe637db4e546d0e73b199b31a3553cb11db4c168342a5225e453b7599f");
    }
    for (int k = 0; k < WF_FN_COUNT; k++)
        ASSERT_EQ(found[k], 1);
    json_decref(all);
    /* A directory that does not exist: an error, not a crash. */
    ASSERT_NE(run((const char *[]){"--dump-schemas", "/nonexistent/dir/x.json", NULL}, &out), 0);
    free(out);
}

/* The worker stops with an error before its started line. */
static void expect_start_error(const char *name, const char *discovery_text, const char *hint) {
    worker w;
    worker_init(&w, name, NULL, NULL);
    if (discovery_text != NULL)
        worker_set_discovery(&w, discovery_text);
    int st = worker_run(&w, 30000);
    char *log = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(w.log, 1 << 20, &log, &len, NULL));
    fprintf(stderr, "%s: wait status 0x%x, log:\n%s", name, st, log);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_NE(WEXITSTATUS(st), 0);
    ASSERT_TRUE(strstr(log, "serving") == NULL);
    ASSERT_EQ(WEXITSTATUS(st), 1);
    /* The message names the file (and line) or says that there is no broker. */
    ASSERT_TRUE(strstr(log, hint) != NULL || strstr(log, "no broker") != NULL);
    free(log);
    worker_cleanup(&w);
}

static void test_bad_discovery(void) {
    expect_start_error("wcli_missing", NULL, "discovery");
    expect_start_error("wcli_empty", "", "discovery");
    expect_start_error("wcli_comments", "# nothing here\n\n   \n", "discovery");
    expect_start_error("wcli_badline", "http://127.0.0.1:1\nnot a url\n", "discovery.txt:2");
    expect_start_error("wcli_ftp", "ftp://127.0.0.1:21/\n", "discovery.txt:1");
}

static void test_unreadable_secret(void) {
    worker w;
    worker_init(&w, "wcli_secret", NULL, NULL);
    snprintf(w.secret_path, sizeof(w.secret_path), "%.900s/no_such_secret", w.dir);
    worker_set_discovery(&w, "http://127.0.0.1:1\n");
    int st = worker_run(&w, 30000);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 1);
    ASSERT_TRUE(worker_log_contains(&w, "no_such_secret"));
    worker_cleanup(&w);
}

/* SIGINT stops the worker like SIGTERM. */
static void test_sigint(void) {
    worker w;
    worker_init(&w, "wcli_sigint", NULL, NULL);
    /* A broker that is down: the worker starts all the same. */
    char text[64];
    snprintf(text, sizeof(text), "http://127.0.0.1:%d\n", wf_free_port());
    worker_set_discovery(&w, text);
    worker_start(&w);
    ASSERT_EQ(w.brokers, 1);
    ASSERT_OK(harness_proc_signal(w.proc, SIGINT, NULL));
    int st = worker_wait(&w, 30000);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    wf_assert_no_orphans(&w, 5000);
    worker_cleanup(&w);
}

static void test_node_id_kept(void) {
    broker b;
    wf_broker_init(&b, "wcli_broker", NULL);
    broker_start(&b);
    worker w;
    worker_start_for(&w, "wcli_node", &b, NULL);
    ASSERT_EQ(w.brokers, 1);
    char first[64];
    snprintf(first, sizeof(first), "%s", w.node_id);
    char path[HARNESS_PATH_MAX + 16], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/node_id", w.data_dir);
    ASSERT_OK(p2p_fs_read_file(path, 4096, &text, &len, NULL));
    ASSERT_TRUE(strncmp(text, first, 36) == 0);
    free(text);
    worker_stop(&w, 30000);
    worker_start(&w);
    ASSERT_STR_EQ(w.node_id, first);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

int main(void) {
    p2p_error err;
    if (harness_scratch_dir("wcli", dir, sizeof(dir), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_help_and_version);
    TEST_RUN(test_usage_errors);
    TEST_RUN(test_dump_schemas);
    TEST_RUN(test_dump_schemas_to_stdout);
    TEST_RUN(test_bad_discovery);
    TEST_RUN(test_unreadable_secret);
    TEST_RUN(test_sigint);
    TEST_RUN(test_node_id_kept);
    ASSERT_OK(harness_rmtree(dir, NULL));
    return 0;
}
