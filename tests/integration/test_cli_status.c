/* `p2prpc status` (codegen/cmd_status.h) against a real p2prpc-broker
 * process, and the read-only route it uses, GET /api/v1/{function}/calls.
 * p2p_cli_status runs in this process with its stdout and stderr sent to
 * files, so that the test reads exactly what a user would see. */
#include "broker_fixture.h"
#include "cmd_status.h"
#include "fsutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static broker B;
static char out_dir[512];
static char running_id[P2P_HASH_HEX_LEN + 1];

#define WORKER_ID "status-test-worker"

typedef struct captured {
    int status;
    char *out; /* owned */
    char *err; /* owned */
} captured;

static void captured_cleanup(captured *c) {
    free(c->out);
    free(c->err);
    memset(c, 0, sizeof(*c));
}

static char *slurp(const char *path) {
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(path, 1 << 20, &text, &len, NULL));
    return text;
}

/* Runs `p2prpc status ARGS...` (NULL-terminated) and captures what it
 * prints. */
static void run_status(const char *const *args, captured *c) {
    char *argv[16] = {"status"};
    int argc = 1;
    for (; args[argc - 1] != NULL && argc < 15; argc++)
        argv[argc] = (char *)args[argc - 1];
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof(out_path), "%s/stdout", out_dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", out_dir);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(saved_out >= 0 && saved_err >= 0 && fo >= 0 && fe >= 0);
    ASSERT_TRUE(dup2(fo, 1) == 1 && dup2(fe, 2) == 2);
    close(fo);
    close(fe);
    c->status = p2p_cli_status(argc, argv);
    fflush(stdout);
    fflush(stderr);
    ASSERT_TRUE(dup2(saved_out, 1) == 1 && dup2(saved_err, 2) == 2);
    close(saved_out);
    close(saved_err);
    c->out = slurp(out_path);
    c->err = slurp(err_path);
}

/* Asserts an exit status, nothing on stdout, and exactly `err` on stderr. */
static void expect_failure(const char *const *args, int status, const char *err) {
    captured c;
    run_status(args, &c);
    ASSERT_EQ(c.status, status);
    ASSERT_STR_EQ(c.out, "");
    ASSERT_STR_EQ(c.err, err);
    captured_cleanup(&c);
}

/* A worker's update on the call it claimed (the claim reply `claim`). */
static void worker_update(fx_fn f, const harness_reply *claim, json_t *extra) {
    harness_reply r;
    fx_worker_push(&B, NULL, f, harness_reply_str(claim, "identifier"),
                   harness_reply_str(claim, "lease_token"), extra, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
}

static void push(fx_fn f, json_t *args, bool execute, char id[P2P_HASH_HEX_LEN + 1]) {
    harness_reply r;
    fx_push(&B, NULL, f, args, execute, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
}

/* p2prpc_add: one call in each status but failed; p2prpc_echo: one failed. */
static void make_calls(void) {
    char id[P2P_HASH_HEX_LEN + 1], fourth[P2P_HASH_HEX_LEN + 1];
    harness_reply claim, r;
    push(FX_ADD, fx_add_args(1, 1), false, id);
    for (int i = 2; i <= 5; i++)
        push(FX_ADD, fx_add_args(i, i), true, i == 4 ? fourth : id);
    fx_on_id(&B, NULL, FX_ADD, "terminate", fourth, &r); /* (4, 4): queued -> terminated */
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_claim(&B, NULL, FX_ADD, 0, WORKER_ID, &claim); /* (2, 2): running at 42.5% */
    HARNESS_EXPECT(&claim, 200, NULL);
    snprintf(running_id, sizeof(running_id), "%s", harness_reply_str(&claim, "identifier"));
    worker_update(FX_ADD, &claim, json_pack("{s:f}", "progress", 42.5));
    harness_reply_cleanup(&claim);
    fx_claim(&B, NULL, FX_ADD, 0, WORKER_ID, &claim); /* (3, 3): done */
    HARNESS_EXPECT(&claim, 200, NULL);
    worker_update(FX_ADD, &claim, json_pack("{s:{s:i}}", "outputs", "sum", 6));
    harness_reply_cleanup(&claim);
    push(FX_ECHO, json_pack("{s:s, s:f, s:b}", "text", "x", "scale", 1.5, "flag", 1), true, id);
    fx_claim(&B, NULL, FX_ECHO, 0, WORKER_ID, &claim);
    HARNESS_EXPECT(&claim, 200, NULL);
    worker_update(FX_ECHO, &claim, json_pack("{s:s}", "error", "boom"));
    harness_reply_cleanup(&claim);
}

static const char *counts_table =
    "FUNCTION                   PUSHED  QUEUED  RUNNING  DONE  FAILED  TERMINATED\n"
    "p2prpc_add                      1       1        1     1       0           1\n"
    "p2prpc_analyze_large_file       0       0        0     0       0           0\n"
    "p2prpc_echo                     0       0        0     0       1           0\n";

static void test_table(void) {
    captured c;
    run_status((const char *const[]){B.url, "--secret-file", B.secret_path, NULL}, &c);
    ASSERT_STR_EQ(c.err, "");
    ASSERT_EQ(c.status, 0);
    char head[1024];
    ASSERT_LT(snprintf(head, sizeof(head), "BROKER %s\n\n%s\nRUNNING CALLS\n", B.url, counts_table),
              (int)sizeof(head));
    ASSERT_EQ(strncmp(c.out, head, strlen(head)), 0);
    /* The one running call: its progress bar, attempts, identifier, worker. */
    char row[512];
    snprintf(row, sizeof(row), "p2prpc_add                 [####------]  42.5%%         1  ");
    ASSERT_STR_CONTAINS(c.out, row);
    snprintf(row, sizeof(row), "s ago      %s  " WORKER_ID "\n", running_id);
    ASSERT_STR_CONTAINS(c.out, row);
    ASSERT_STR_CONTAINS(c.out, "PROGRESS             ATTEMPTS  UPDATED     IDENTIFIER");
    captured_cleanup(&c);
}

/* --function keeps one row; the secret may come from the environment. */
static void test_function_filter_and_env_secret(void) {
    ASSERT_OK(setenv("P2PRPC_SECRET_FILE", B.secret_path, 1));
    captured c;
    run_status((const char *const[]){"--function", "p2prpc_echo", B.url, NULL}, &c);
    ASSERT_OK(unsetenv("P2PRPC_SECRET_FILE"));
    ASSERT_EQ(c.status, 0);
    char want[512];
    snprintf(want, sizeof(want),
             "BROKER %s\n\n"
             "FUNCTION     PUSHED  QUEUED  RUNNING  DONE  FAILED  TERMINATED\n"
             "p2prpc_echo       0       0        0     0       1           0\n"
             "\nRUNNING CALLS\nnone\n",
             B.url);
    ASSERT_STR_EQ(c.out, want);
    captured_cleanup(&c);
}

static void test_usage_errors(void) {
    captured c;
    run_status((const char *const[]){"--help", NULL}, &c);
    ASSERT_EQ(c.status, 0);
    ASSERT_EQ(
        strncmp(c.out, "usage: p2prpc status BROKER_URL [--function F] [--secret-file FILE]\n", 68),
        0);
    ASSERT_STR_EQ(c.err, "");
    captured_cleanup(&c);
    expect_failure((const char *const[]){B.url, "--bogus", NULL}, 2,
                   "p2prpc status: unknown flag '--bogus' (see p2prpc help status)\n");
    expect_failure((const char *const[]){"-x", B.url, NULL}, 2,
                   "p2prpc status: unknown flag '-x' (see p2prpc help status)\n");
    expect_failure((const char *const[]){B.url, "--function", NULL}, 2,
                   "p2prpc status: missing value for '--function' (see p2prpc help status)\n");
    expect_failure((const char *const[]){NULL}, 2,
                   "p2prpc status: no BROKER_URL given (usage: p2prpc status BROKER_URL "
                   "[--function F] [--secret-file FILE])\n");
    expect_failure((const char *const[]){B.url, B.url, NULL}, 2,
                   "p2prpc status: more than one BROKER_URL given (usage: p2prpc status "
                   "BROKER_URL [--function F] [--secret-file FILE])\n");
    expect_failure((const char *const[]){"127.0.0.1:8080", NULL}, 2,
                   "p2prpc status: BROKER_URL must start with http:// or https://, not "
                   "'127.0.0.1:8080'\n");
}

static void test_broker_errors(void) {
    char want[768];
    snprintf(want, sizeof(want), "p2prpc status: no function p2prpc_nope on %s\n", B.url);
    expect_failure(
        (const char *const[]){B.url, "--secret-file", B.secret_path, "-f", "p2prpc_nope", NULL}, 1,
        want);
    /* Without the secret the broker refuses, and the message says what to do. */
    captured c;
    run_status((const char *const[]){B.url, NULL}, &c);
    ASSERT_EQ(c.status, 1);
    ASSERT_STR_EQ(c.out, "");
    snprintf(want, sizeof(want), "p2prpc status: GET %s/api/v1/functions: ", B.url);
    ASSERT_EQ(strncmp(c.err, want, strlen(want)), 0);
    ASSERT_STR_CONTAINS(c.err, " (give the broker's secret with --secret-file FILE)\n");
    captured_cleanup(&c);
    snprintf(want, sizeof(want), "%s/missing-secret", out_dir);
    run_status((const char *const[]){B.url, "--secret-file", want, NULL}, &c);
    ASSERT_EQ(c.status, 1);
    ASSERT_STR_CONTAINS(c.err, "p2prpc status: ");
    ASSERT_STR_CONTAINS(c.err, "missing-secret");
    captured_cleanup(&c);
}

/* The route itself: filters, paging, bad arguments. */
static void test_calls_route(void) {
    harness_reply r;
    ASSERT_OK(harness_get(B.client, B.url, "/api/v1/p2prpc_add/calls", 0, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "function"), "p2prpc_add");
    ASSERT_EQ(json_array_size(json_object_get(r.json, "calls")), 5);
    ASSERT_EQ(harness_reply_int(&r, "limit", 0), 100);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(r.json, "counts"), "queued")), 1);
    harness_reply_cleanup(&r);

    ASSERT_OK(harness_get(B.client, B.url, "/api/v1/p2prpc_add/calls?status=running", 0, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    const json_t *call = json_array_get(json_object_get(r.json, "calls"), 0);
    ASSERT_EQ(json_array_size(json_object_get(r.json, "calls")), 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(call, "identifier")), running_id);
    ASSERT_STR_EQ(json_string_value(json_object_get(call, "worker")), WORKER_ID);
    ASSERT_TRUE(json_number_value(json_object_get(call, "progress")) == 42.5);
    ASSERT_GT(json_integer_value(json_object_get(call, "lease_expires_ms")), 0);
    ASSERT_TRUE(json_object_get(call, "args") == NULL);
    harness_reply_cleanup(&r);

    /* Newest first: offset 3 of 5 leaves the two oldest, (1, 1) pushed first. */
    ASSERT_OK(harness_get(B.client, B.url, "/api/v1/p2prpc_add/calls?limit=2&offset=3", 0, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(json_array_size(json_object_get(r.json, "calls")), 2);
    call = json_array_get(json_object_get(r.json, "calls"), 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(call, "status")), "pushed");
    ASSERT_TRUE(json_is_null(json_object_get(call, "worker")));
    harness_reply_cleanup(&r);

    ASSERT_OK(harness_get(B.client, B.url, "/api/v1/p2prpc_echo/calls?status=failed", 0, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    call = json_array_get(json_object_get(r.json, "calls"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(call, "error")), "boom");
    harness_reply_cleanup(&r);

    const char *bad[] = {"/api/v1/p2prpc_add/calls?status=sleeping",
                         "/api/v1/p2prpc_add/calls?limit=0", "/api/v1/p2prpc_add/calls?limit=1001",
                         "/api/v1/p2prpc_add/calls?offset=-1", "/api/v1/p2prpc_add/calls?limit=x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_OK(harness_get(B.client, B.url, bad[i], 0, &r));
        HARNESS_EXPECT(&r, 400, "invalid");
        harness_reply_cleanup(&r);
    }
    ASSERT_OK(harness_get(B.client, B.url, "/api/v1/p2prpc_nope/calls", 0, &r));
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
}

/* A broker that is gone: one line, exit status 1, and quickly. */
static void test_unreachable(void) {
    char url[HARNESS_URL_MAX];
    snprintf(url, sizeof(url), "%s", B.url);
    broker_stop(&B);
    captured c;
    int64_t start = harness_now_ms();
    run_status((const char *const[]){url, "--secret-file", B.secret_path, NULL}, &c);
    ASSERT_LT(harness_now_ms() - start, 30000);
    ASSERT_EQ(c.status, 1);
    ASSERT_STR_EQ(c.out, "");
    char want[512];
    snprintf(want, sizeof(want), "p2prpc status: GET %s/api/v1/functions: ", url);
    ASSERT_STR_CONTAINS(c.err, want);
    if (strchr(c.err, '\n') - c.err != (long)strlen(c.err) - 1)
        TEST_FAIL_("more than one line: %s", c.err);
    captured_cleanup(&c);
}

int main(void) {
    broker_init(&B, "cli_status", NULL);
    broker_start(&B);
    p2p_error err = {0};
    ASSERT_OK(harness_scratch_dir("cli_status_out", out_dir, sizeof(out_dir), &err));
    make_calls();
    TEST_RUN(test_table);
    TEST_RUN(test_function_filter_and_env_secret);
    TEST_RUN(test_usage_errors);
    TEST_RUN(test_broker_errors);
    TEST_RUN(test_calls_route);
    TEST_RUN(test_unreachable);
    broker_cleanup(&B);
    ASSERT_OK(harness_rmtree(out_dir, &err));
    return 0;
}
