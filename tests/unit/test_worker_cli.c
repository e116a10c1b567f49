/* p2p_worker_main, the worker as a program: its flags and their errors,
 * --dump-schemas, the hidden child flag misused, and a whole run (the started
 * line on stdout, a call done, SIGTERM, exit status 0). */
#include "worker_test_util.h"

#include <pthread.h>

static wt_broker broker;

static int run_main(int argc, const char *const *argv) {
    char *copy[32];
    ASSERT_LT(argc, 32);
    for (int i = 0; i < argc; i++)
        copy[i] = (char *)argv[i];
    copy[argc] = NULL;
    return p2p_worker_main(argc, copy, wt_fns, F_COUNT, NULL, NULL);
}

#define RUN(...)                                                                                   \
    run_main(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *), (const char *[]){__VA_ARGS__})

static void test_usage_errors(void) {
    ASSERT_EQ(RUN("w", "--help"), 0);
    ASSERT_EQ(RUN("w", "--version"), 0);
    ASSERT_EQ(RUN("w"), 2); /* --discovery is required */
    ASSERT_EQ(RUN("w", "--bogus"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "extra"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--concurrency", "0"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--concurrency", "2x"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--poll-wait", "301"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--poll-wait", "0"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--grace-seconds", "-1"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--lease-renew-seconds", "abc"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--lease-renew-seconds", "nan"), 2);
    ASSERT_EQ(RUN("w", "--discovery", "d.txt", "--log-level", "loud"), 2);
    ASSERT_EQ(RUN("w", "--discovery"), 2);
}

static void test_cannot_start(void) {
    char data[700], missing[700];
    snprintf(data, sizeof(data), "%s/cli-data", wt_root);
    snprintf(missing, sizeof(missing), "%s/missing.txt", wt_root);
    ASSERT_EQ(RUN("w", "--discovery", missing, "--data-dir", data), 1);
    ASSERT_EQ(RUN("w", "--discovery", missing, "--data-dir", data, "--secret-file", missing), 1);
    /* The child flag outside a worker: refused, nothing run. */
    ASSERT_EQ(RUN("w", P2P_WORKER_CHILD_FLAG, "1"), 1);
    ASSERT_EQ(RUN("w", P2P_WORKER_CHILD_FLAG), 1);
}

static void test_dump_schemas(void) {
    char path[700];
    snprintf(path, sizeof(path), "%s/schemas.json", wt_root);
    ASSERT_EQ(RUN("w", "--dump-schemas", path), 0);
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    ASSERT_TRUE(json_is_array(all));
    ASSERT_EQ(json_array_size(all), F_COUNT);
    for (size_t i = 0; i < F_COUNT; i++) {
        p2p_schema *s = NULL;
        ASSERT_OK(p2p_schema_from_json(json_array_get(all, i), &s, NULL));
        ASSERT_STR_EQ(p2p_schema_fingerprint(s), p2p_schema_fingerprint(wt_schemas[i]));
        p2p_schema_free(s);
    }
    json_decref(all);
    char bad[800];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/schemas.json", wt_root);
    ASSERT_EQ(RUN("w", "--dump-schemas", bad), 1);
}

typedef struct run_args {
    char discovery[700], secret[700], data[700];
    int status;
} run_args;

static void *run_worker(void *arg) {
    run_args *a = arg;
    a->status = RUN("worker", "--discovery", a->discovery, "--secret-file", a->secret, "--data-dir",
                    a->data, "--poll-wait", "2", "--concurrency", "2", "--lease-renew-seconds",
                    "0.5", "--grace-seconds", "1", "--log-level", "warn");
    return NULL;
}

static void test_whole_run(void) {
    static run_args a;
    snprintf(a.discovery, sizeof(a.discovery), "%s/discovery.txt", wt_root);
    snprintf(a.secret, sizeof(a.secret), "%s/secret", wt_root);
    snprintf(a.data, sizeof(a.data), "%s/cli-worker", wt_root);
    char text[300];
    snprintf(text, sizeof(text), "# test\n%s\n", broker.url);
    ASSERT_OK(p2p_fs_write_atomic(a.discovery, text, strlen(text), 0600, NULL));
    ASSERT_OK(p2p_fs_write_atomic(a.secret, wt_secret, sizeof(wt_secret) - 1, 0600, NULL));
    /* The started line goes to stdout: catch it in a file. */
    char out[700];
    snprintf(out, sizeof(out), "%s/stdout.txt", wt_root);
    fflush(stdout);
    int saved = dup(1);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_TRUE(saved >= 0 && fd >= 0);
    ASSERT_TRUE(dup2(fd, 1) == 1);
    close(fd);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, run_worker, &a), 0);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_ADD, "{\"a\":20,\"b\":22}", id);
    json_t *j = wt_wait(broker.url, F_ADD, id, "done", 20000);
    json_decref(j);
    /* SIGTERM to the thread that waits for it (the process's other threads
     * do not block it). */
    ASSERT_EQ(pthread_kill(t, SIGTERM), 0);
    pthread_join(t, NULL);
    fflush(stdout);
    ASSERT_TRUE(dup2(saved, 1) == 1);
    close(saved);
    ASSERT_EQ(a.status, 0);
    char *line = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(out, 4096, &line, &len, NULL));
    ASSERT_TRUE(strncmp(line, "worker ", 7) == 0);
    ASSERT_STR_CONTAINS(line, " serving 8 function(s) from 1 broker(s)\n");
    ASSERT_EQ(len, strlen("worker  serving 8 function(s) from 1 broker(s)\n") + 36);
    free(line);
}

int main(int argc, char **argv) {
    WT_CHILD_MAIN(argc, argv);
    wt_setup("worker_cli");
    wt_broker_start(&broker, "broker", 0, 60000, NULL);
    TEST_RUN(test_usage_errors);
    TEST_RUN(test_cannot_start);
    TEST_RUN(test_dump_schemas);
    TEST_RUN(test_whole_run);
    wt_broker_stop(&broker);
    return wt_teardown();
}
