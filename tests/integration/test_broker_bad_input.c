/* Bad input over HTTP, one case per test function. Each gets a JSON error
 * body {"error":{"code","message"}} with the right status and code, and
 * leaves the store as it was: the calls per function and status (metrics),
 * the blobs (metrics and the files on disk), and a witness call in every
 * status, read back with pull_update, are compared before and after.
 *
 * The broker runs with --max-blob-size 65536. Requests the client library
 * cannot express (headers without their body, a chunked body, a replayed
 * signature) go through a raw loopback socket. */
#include "broker_fixture.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BLOB 65536

static broker B;

/* ---- the store snapshot ---- */

typedef struct snapshot {
    long long counts[FX_FN_COUNT][6];
    double blobs, blob_bytes;
    long blob_files;
    json_t *witness[3]; /* pull_update of a pushed, a running and a done call */
} snapshot;

static char witness_id[3][P2P_HASH_HEX_LEN + 1];
/* The lease of the running witness. */
static char running_token[128];

static void take(snapshot *s) {
    for (int f = 0; f < FX_FN_COUNT; f++)
        fx_counts(&B, (fx_fn)f, s->counts[f]);
    char *text = fx_metrics_text(&B);
    s->blobs = fx_metric(text, "p2prpc_blobs", NULL);
    s->blob_bytes = fx_metric(text, "p2prpc_blob_bytes", NULL);
    free(text);
    s->blob_files = harness_count_files(B.blobs, true);
    for (int i = 0; i < 3; i++) {
        harness_reply r;
        fx_pull(&B, NULL, FX_ADD, witness_id[i], -1, -1, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        s->witness[i] = json_incref(r.json);
        harness_reply_cleanup(&r);
    }
}

static void release(snapshot *s) {
    for (int i = 0; i < 3; i++)
        json_decref(s->witness[i]);
}

/* Asserts nothing changed since `before`. Temp files of a refused upload may
 * take a moment to go, so the file count is awaited (bounded). */
static void expect_unchanged(snapshot *before) {
    snapshot after;
    for (int i = 0; i < 300; i++) {
        if (harness_count_files(B.blobs, true) == before->blob_files)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    take(&after);
    for (int f = 0; f < FX_FN_COUNT; f++)
        for (int s = 0; s < 6; s++)
            if (after.counts[f][s] != before->counts[f][s])
                TEST_FAIL_("%s: status %d count went from %lld to %lld", fx_name((fx_fn)f), s,
                           before->counts[f][s], after.counts[f][s]);
    ASSERT_EQ((long long)after.blobs, (long long)before->blobs);
    ASSERT_EQ((long long)after.blob_bytes, (long long)before->blob_bytes);
    ASSERT_EQ(after.blob_files, before->blob_files);
    for (int i = 0; i < 3; i++)
        if (!json_equal(after.witness[i], before->witness[i]))
            TEST_FAIL_("witness call %d changed", i);
    release(&after);
    release(before);
}

static void make_witnesses(void) {
    harness_reply r;
    for (int i = 0; i < 3; i++) {
        json_t *args = fx_add_args(-1, i);
        fx_push(&B, NULL, FX_ADD, args, i > 0, witness_id[i], &r);
        HARNESS_EXPECT(&r, 201, NULL);
        harness_reply_cleanup(&r);
        json_decref(args);
        if (i == 0)
            continue;
        char token[128];
        fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), witness_id[i]);
        snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
        harness_reply_cleanup(&r);
        if (i == 1) {
            memcpy(running_token, token, sizeof(token));
            continue;
        }
        fx_worker_push(&B, NULL, FX_ADD, witness_id[i], token,
                       json_pack("{s:{s:i}}", "outputs", "sum", 1), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        harness_reply_cleanup(&r);
    }
}

/* ---- helpers ---- */

/* POSTs raw `text` to FN/ROUTE and expects an error. */
static void post_text(fx_fn f, const char *route, const char *text, long status, const char *code) {
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/%s/%s", fx_name(f), route);
    harness_reply r;
    harness_request(B.client, B.url, "POST", path, "application/json", text, strlen(text), 0, &r);
    HARNESS_EXPECT(&r, status, code);
    harness_reply_cleanup(&r);
}

/* Pushes a call with `args` under identifier `id` (NULL: the right one). */
static void push_expect(fx_fn f, json_t *args, const char *id, const char *fingerprint, long status,
                        const char *code, const char *msg_part) {
    char right[P2P_HASH_HEX_LEN + 1] = "";
    if (id == NULL) {
        fx_call_id(f, args, right);
        id = right;
    }
    json_t *body = json_pack("{s:s, s:s, s:O, s:b}", "identifier", id, "fingerprint",
                             fingerprint ? fingerprint : p2p_schema_fingerprint(fx_schema(f)),
                             "args", args, "execute", 1);
    harness_reply r;
    fx_post(&B, NULL, f, "push_update", NULL, body, &r);
    HARNESS_EXPECT(&r, status, code);
    if (msg_part != NULL) {
        const char *msg =
            json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
        ASSERT_STR_CONTAINS(msg, msg_part);
    }
    fprintf(stderr, "  -> %ld %s\n", r.status, r.body);
    harness_reply_cleanup(&r);
    json_decref(body);
    json_decref(args);
}

/* A valid identifier that names no call. */
static const char *const NOBODY =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ---- JSON routes ---- */

static void test_malformed_json(void) {
    snapshot s;
    take(&s);
    post_text(FX_ADD, "push_update", "{\"identifier\": ", 400, "invalid");
    post_text(FX_ADD, "push_update", "[1, 2, 3]", 400, "invalid");
    post_text(FX_ADD, "execute_function", "not json at all", 400, "invalid");
    post_text(FX_ADD, "terminate", "{\"identifier\": 12}", 400, NULL);
    post_text(FX_ADD, "search_work", "{\"worker\":", 400, "invalid");
    expect_unchanged(&s);
}

static void test_wrong_argument_type(void) {
    snapshot s;
    take(&s);
    push_expect(FX_ADD, json_pack("{s:s, s:i}", "a", "one", "b", 2), NOBODY, NULL, 400, "type",
                "a");
    push_expect(FX_ADD, json_pack("{s:f, s:i}", "a", 1.5, "b", 2), NOBODY, NULL, 400, NULL, "a");
    push_expect(FX_ECHO, json_pack("{s:i, s:f, s:b}", "text", 5, "scale", 1.0, "flag", 1), NOBODY,
                NULL, 400, "type", "text");
    push_expect(FX_ANALYZE, json_pack("{s:s, s:i}", "video_handle", "/etc/passwd", "arg2", 1),
                NOBODY, NULL, 400, NULL, "video_handle");
    post_text(FX_ADD, "push_update", "{\"identifier\":\"x\",\"args\":5}", 400, NULL);
    expect_unchanged(&s);
}

static void test_missing_argument(void) {
    snapshot s;
    take(&s);
    push_expect(FX_ADD, json_pack("{s:i}", "a", 1), NOBODY, NULL, 400, "invalid", "b");
    push_expect(FX_ADD, json_object(), NOBODY, NULL, 400, "invalid", NULL);
    expect_unchanged(&s);
}

static void test_extra_argument(void) {
    snapshot s;
    take(&s);
    push_expect(FX_ADD, json_pack("{s:i, s:i, s:i}", "a", 1, "b", 2, "c", 3), NOBODY, NULL, 400,
                "invalid", "c");
    expect_unchanged(&s);
}

static void test_identifier_must_match_arguments(void) {
    snapshot s;
    take(&s);
    char other[P2P_HASH_HEX_LEN + 1];
    json_t *o = fx_add_args(9, 9);
    fx_call_id(FX_ADD, o, other);
    json_decref(o);
    push_expect(FX_ADD, fx_add_args(9, 8), other, NULL, 400, "invalid", NULL);
    expect_unchanged(&s);
}

static void test_fingerprint_mismatch(void) {
    snapshot s;
    take(&s);
    const char *fp = p2p_schema_fingerprint(fx_schema(FX_ADD));
    /* 409, naming the fingerprint the broker serves; a client stops there. */
    push_expect(FX_ADD, fx_add_args(4, 4), NULL, NOBODY, 409, "conflict", fp);
    expect_unchanged(&s);
}

static void test_unknown_function(void) {
    snapshot s;
    take(&s);
    static const char *const paths[] = {
        "/api/v1/p2prpc_nope/push_update", "/api/v1/p2prpc_nope/execute_function",
        "/api/v1/p2prpc_nope/search_work", "/api/v1/p2prpc_nope/terminate",
        "/api/v1/p2prpc_nope/delete"};
    json_t *body = json_pack("{s:s}", "identifier", NOBODY);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        harness_reply r;
        harness_post_json(B.client, B.url, paths[i], body, &r);
        HARNESS_EXPECT(&r, 404, "not_found");
        harness_reply_cleanup(&r);
    }
    json_decref(body);
    harness_reply r;
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/p2prpc_nope/pull_update?identifier=%s", NOBODY);
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void test_unknown_identifier(void) {
    snapshot s;
    take(&s);
    harness_reply r;
    fx_pull(&B, NULL, FX_ADD, NOBODY, -1, -1, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    static const char *const routes[] = {"execute_function", "terminate", "delete"};
    for (size_t i = 0; i < 3; i++) {
        fx_on_id(&B, NULL, FX_ADD, routes[i], NOBODY, &r);
        HARNESS_EXPECT(&r, 404, "not_found");
        harness_reply_cleanup(&r);
    }
    fx_worker_push(&B, NULL, FX_ADD, NOBODY, "00000000000000000000000000000000",
                   json_pack("{s:i}", "progress", 1), &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    /* Distinct from pending: the pushed witness answers 200 "pushed". */
    fx_expect_status(&B, FX_ADD, witness_id[0], "pushed");
    expect_unchanged(&s);
}

static void test_malformed_identifier(void) {
    snapshot s;
    take(&s);
    static const char *const bad[] = {
        "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",  /* uppercase */
        "0123456789abcdef",                                                  /* short */
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", /* long */
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        harness_reply r;
        fx_pull(&B, NULL, FX_ADD, bad[i], -1, -1, &r);
        HARNESS_EXPECT(&r, 400, "invalid");
        harness_reply_cleanup(&r);
        if (strchr(bad[i], '%') != NULL)
            continue;
        fx_on_id(&B, NULL, FX_ADD, "execute_function", bad[i], &r);
        HARNESS_EXPECT(&r, 400, "invalid");
        harness_reply_cleanup(&r);
        push_expect(FX_ADD, fx_add_args(1, 2), bad[i], NULL, 400, "invalid", NULL);
    }
    harness_reply r;
    harness_get(B.client, B.url, "/api/v1/p2prpc_add/pull_update", 0, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void test_file_argument_without_its_blob(void) {
    snapshot s;
    take(&s);
    /* Hash of content the broker never received. */
    char hash[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex("never uploaded", 14, hash, NULL));
    push_expect(
        FX_ANALYZE,
        json_pack("{s:{s:s, s:i}, s:i}", "video_handle", "hash", hash, "size", 14, "arg2", 1), NULL,
        NULL, 409, "conflict", hash);
    expect_unchanged(&s);

    /* The blob is there, but the announced size is not its size. */
    harness_reply r;
    fx_blob_put(&B, NULL, "uploaded", 8, hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    take(&s);
    push_expect(
        FX_ANALYZE,
        json_pack("{s:{s:s, s:i}, s:i}", "video_handle", "hash", hash, "size", 9, "arg2", 1), NULL,
        NULL, 409, "conflict", NULL);
    expect_unchanged(&s);
}

static void test_worker_push_shapes(void) {
    snapshot s;
    take(&s);
    const char *id = witness_id[1];
    harness_reply r;
    /* Not exactly one of progress/outputs/error/terminated. */
    fx_worker_push(&B, NULL, FX_ADD, id, running_token,
                   json_pack("{s:i, s:{s:i}}", "progress", 5, "outputs", "sum", 1), &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    /* Outputs checked against the schema: wrong type, missing, extra. */
    fx_worker_push(&B, NULL, FX_ADD, id, running_token,
                   json_pack("{s:{s:s}}", "outputs", "sum", "x"), &r);
    HARNESS_EXPECT(&r, 400, "type");
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, id, running_token, json_pack("{s:{}}", "outputs"), &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, id, running_token,
                   json_pack("{s:{s:i, s:i}}", "outputs", "sum", 1, "more", 2), &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    /* Progress outside 0..100. */
    fx_worker_push(&B, NULL, FX_ADD, id, running_token, json_pack("{s:i}", "progress", 101), &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void test_stale_lease(void) {
    snapshot s;
    take(&s);
    harness_reply r;
    /* A well-formed token that is not the lease of the running call. */
    fx_worker_push(&B, NULL, FX_ADD, witness_id[1], "ffffffffffffffffffffffffffffffff",
                   json_pack("{s:i}", "progress", 50), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    /* The done call's last lease is over. */
    fx_worker_push(&B, NULL, FX_ADD, witness_id[2], running_token,
                   json_pack("{s:{s:i}}", "outputs", "sum", 2), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    /* A lease on a call that was never claimed. */
    fx_worker_push(&B, NULL, FX_ADD, witness_id[0], running_token,
                   json_pack("{s:i}", "progress", 50), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void test_bad_signature(void) {
    snapshot s;
    take(&s);
    const unsigned char wrong[] = "a secret that is not the broker's";
    p2p_http_client *bad = harness_client_new(wrong, sizeof(wrong) - 1, 10000, NULL);
    p2p_http_client *anon = harness_client_new(NULL, 0, 10000, NULL);
    ASSERT_TRUE(bad != NULL && anon != NULL);
    json_t *args = fx_add_args(31337, 1);
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_push(&B, bad, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 401, "unauthorized");
    harness_reply_cleanup(&r);
    fx_push(&B, anon, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 401, "unauthorized");
    harness_reply_cleanup(&r);
    fx_claim(&B, bad, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 401, "unauthorized");
    harness_reply_cleanup(&r);
    fx_on_id(&B, anon, FX_ADD, "delete", witness_id[2], &r);
    HARNESS_EXPECT(&r, 401, "unauthorized");
    harness_reply_cleanup(&r);
    char hash[P2P_HASH_HEX_LEN + 1];
    fx_blob_put(&B, bad, "sneaky", 6, hash, &r);
    HARNESS_EXPECT(&r, 401, "unauthorized");
    harness_reply_cleanup(&r);
    json_decref(args);
    p2p_http_client_free(bad);
    p2p_http_client_free(anon);
    expect_unchanged(&s);
}

/* Bodies are strict: unknown members are refused, not ignored. */
static void test_unknown_members_and_bad_fields(void) {
    /* A blob that exists, so that a checkpoint is refused for its name only. */
    char state[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_blob_put(&B, NULL, "some state", 10, state, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    snapshot s;
    take(&s);
    json_t *body = json_pack("{s:s, s:b}", "identifier", witness_id[1], "extra", 1);
    fx_post(&B, NULL, FX_ADD, "terminate", NULL, body, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    json_decref(body);
    json_t *args = fx_add_args(77, 77);
    char id[P2P_HASH_HEX_LEN + 1];
    fx_call_id(FX_ADD, args, id);
    body = json_pack("{s:s, s:s, s:O, s:b, s:s}", "identifier", id, "fingerprint",
                     p2p_schema_fingerprint(fx_schema(FX_ADD)), "args", args, "execute", 1,
                     "priority", "high");
    fx_post(&B, NULL, FX_ADD, "push_update", NULL, body, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    json_decref(body);
    json_decref(args);
    /* A lease token that is not 32 hex is malformed, not merely stale. */
    fx_worker_push(&B, NULL, FX_ADD, witness_id[1], "../../etc", json_pack("{s:i}", "progress", 5),
                   &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    /* A worker id outside [A-Za-z0-9_.:-]. */
    fx_claim(&B, NULL, FX_ADD, 0, "worker one; DROP TABLE calls", &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    /* A checkpoint name outside [A-Za-z0-9_.-]. */
    body = json_pack("{s:s, s:s, s:s, s:s}", "identifier", witness_id[1], "lease_token",
                     running_token, "name", "../state", "hash", state);
    fx_post(&B, NULL, FX_ADD, "checkpoint", NULL, body, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    json_decref(body);
    /* "progress" of the wrong type. */
    fx_worker_push(&B, NULL, FX_ADD, witness_id[1], running_token,
                   json_pack("{s:s}", "progress", "half"), &r);
    HARNESS_EXPECT(&r, 400, "type");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

/* A malformed checkpoint name is 400 whether or not its blob exists: shape
 * errors come before state errors, as for push_update (malformed identifier
 * before fingerprint). Found by this test: the broker used to answer 409
 * "upload it first", checking the blob before the name. */
static void test_checkpoint_bad_name_with_missing_blob(void) {
    snapshot s;
    take(&s);
    harness_reply r;
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "identifier", witness_id[1], "lease_token",
                             running_token, "name", "../state", "hash", NOBODY);
    fx_post(&B, NULL, FX_ADD, "checkpoint", NULL, body, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    json_decref(body);
    expect_unchanged(&s);
}

/* ---- blobs and raw HTTP ---- */

static void test_blob_hash_mismatch(void) {
    char stored[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_blob_put(&B, NULL, "stored", 6, stored, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    snapshot s;
    take(&s);
    char hash[P2P_HASH_HEX_LEN + 1], path[128];
    ASSERT_OK(p2p_hash_bytes_hex("the announced content", 21, hash, NULL));
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    harness_request(B.client, B.url, "PUT", path, "application/octet-stream", "some other content",
                    18, 0, &r);
    HARNESS_EXPECT(&r, 422, "hash_mismatch");
    harness_reply_cleanup(&r);
    harness_request(B.client, B.url, "HEAD", path, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 404, NULL);
    harness_reply_cleanup(&r);
    /* An existing blob is not replaced, and a wrong body for it is still 422. */
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", stored);
    harness_request(B.client, B.url, "PUT", path, "application/octet-stream", "STORED", 6, 0, &r);
    HARNESS_EXPECT(&r, 422, "hash_mismatch");
    harness_reply_cleanup(&r);
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(r.body, "stored");
    harness_reply_cleanup(&r);
    /* A path that is not a hash never reaches the disk. */
    harness_request(B.client, B.url, "PUT", "/api/v1/blobs/ABC", "application/octet-stream", "x", 1,
                    0, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    harness_get(B.client, B.url, "/api/v1/blobs/..%2F..%2Fbroker.db", 0, &r);
    HARNESS_EXPECT(&r, 400, "invalid");
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void send_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            TEST_FAIL_("send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Connects and sends a signed request line and headers, no body. */
static int raw_open(const char *method, const char *target, const char *headers) {
    int fd = -1;
    p2p_error err;
    if (harness_connect(B.url, &fd, &err) != 0)
        TEST_FAIL_("%s", err.msg);
    char sign[512], head[2048];
    ASSERT_OK(harness_sign_lines(B.secret, B.secret_len, method, target, sign, sizeof(sign), &err));
    int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s\r\n", method,
                     target, sign, headers);
    ASSERT_TRUE(n > 0 && (size_t)n < sizeof(head));
    send_all(fd, head, (size_t)n);
    return fd;
}

/* Reads one response and asserts a JSON error with `status` and `code`. */
static void expect_raw_error(int fd, int status, const char *code) {
    static char buf[16384];
    long n = harness_read_some(fd, buf, sizeof(buf) - 1, 10000);
    ASSERT_GT(n, 0);
    if (harness_http_status(buf) != status)
        TEST_FAIL_("expected %d, got: %.500s", status, buf);
    const char *body = strstr(buf, "\r\n\r\n");
    ASSERT_TRUE(body != NULL);
    json_t *j = json_loads(body + 4, 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"), "code")), code);
    json_decref(j);
}

static void test_oversize_blob_refused_from_content_length(void) {
    snapshot s;
    take(&s);
    char hash[P2P_HASH_HEX_LEN + 1], target[128];
    ASSERT_OK(p2p_hash_bytes_hex("big", 3, hash, NULL));
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    /* 1 GiB announced, not one byte sent: the answer cannot wait for it. */
    int64_t t0 = harness_now_ms();
    int fd = raw_open("PUT", target,
                      "Content-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n");
    expect_raw_error(fd, 413, "too_large");
    fprintf(stderr, "413 from Content-Length after %lld ms, no body sent\n",
            (long long)(harness_now_ms() - t0));
    close(fd);
    /* One byte over the limit is over. */
    fd = raw_open("PUT", target,
                  "Content-Type: application/octet-stream\r\nContent-Length: 65537\r\n");
    expect_raw_error(fd, 413, "too_large");
    close(fd);
    /* JSON routes have their limit too. */
    char push[128];
    snprintf(push, sizeof(push), "/api/v1/%s/push_update", fx_name(FX_ADD));
    fd = raw_open("POST", push, "Content-Type: application/json\r\nContent-Length: 1073741824\r\n");
    expect_raw_error(fd, 413, "too_large");
    close(fd);
    expect_unchanged(&s);
}

/* Streams up to `total` bytes of chunked body, 64 KiB per chunk, until the
 * peer answers or closes; returns the bytes handed to the socket. */
static size_t stream_chunks(int fd, size_t total, bool finish) {
    static char chunk[65536 + 16];
    int head = snprintf(chunk, sizeof(chunk), "10000\r\n");
    memset(chunk + head, 'z', 65536);
    memcpy(chunk + head + 65536, "\r\n", 2);
    size_t chunk_len = (size_t)head + 65536 + 2, sent = 0, off = 0;
    int64_t deadline = harness_now_ms() + 60000;
    while (sent < total && harness_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLOUT};
        if (poll(&pfd, 1, 10000) <= 0 || (pfd.revents & (POLLIN | POLLERR | POLLHUP)))
            break;
        ssize_t n = send(fd, chunk + off, chunk_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        sent += (size_t)n;
        off = (off + (size_t)n) % chunk_len;
    }
    if (finish && sent >= total)
        send_all(fd, "0\r\n\r\n", 5);
    return sent;
}

static void test_chunked_body_over_the_limit(void) {
    snapshot s;
    take(&s);
    char hash[P2P_HASH_HEX_LEN + 1], target[128], path[128];
    ASSERT_OK(p2p_hash_bytes_hex("chunked", 7, hash, NULL));
    snprintf(target, sizeof(target), "/api/v1/blobs/%s", hash);
    static const char chunked[] =
        "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n";

    /* 3 chunks past the limit: read to the end, then a clean 413. */
    int fd = raw_open("PUT", target, chunked);
    size_t sent = stream_chunks(fd, 4 * (65536 + 8), true);
    expect_raw_error(fd, 413, "too_large");
    close(fd);
    fprintf(stderr, "chunked, 4 chunks of 64 KiB over a 64 KiB limit: 413 (%zu bytes sent)\n",
            sent);

    /* 1 GiB without Content-Length: refused while streaming. Once the body
     * is past its limit and the bytes the broker drains, the broker writes
     * the 413 on the socket while the body still flows, then closes without
     * a reset (lingering close): the client, which stops sending when an
     * answer arrives, reads a whole 413 long before 1 GiB. */
    size_t total = (size_t)1 << 30;
    int64_t t0 = harness_now_ms();
    fd = raw_open("PUT", target, chunked);
    sent = stream_chunks(fd, total, false);
    expect_raw_error(fd, 413, "too_large");
    close(fd);
    fprintf(stderr, "chunked 1 GiB over a 64 KiB limit: 413 after %zu bytes sent, in %lld ms\n",
            sent, (long long)(harness_now_ms() - t0));
    ASSERT_LT(sent, 64u << 20);

    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    harness_reply r;
    harness_request(B.client, B.url, "HEAD", path, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 404, NULL);
    harness_reply_cleanup(&r);
    expect_unchanged(&s);
}

static void test_replayed_signature(void) {
    snapshot s;
    take(&s);
    char sign[512], head[2048];
    ASSERT_OK(harness_sign_lines(B.secret, B.secret_len, "GET", "/api/v1/functions", sign,
                                 sizeof(sign), NULL));
    int n = snprintf(head, sizeof(head),
                     "GET /api/v1/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: "
                     "close\r\n\r\n",
                     sign);
    static char buf[65536];
    for (int i = 0; i < 2; i++) {
        int fd = -1;
        ASSERT_OK(harness_connect(B.url, &fd, NULL));
        send_all(fd, head, (size_t)n);
        long got = harness_read_some(fd, buf, sizeof(buf) - 1, 10000);
        close(fd);
        ASSERT_GT(got, 0);
        /* The same signed request again is a replay. */
        ASSERT_EQ(harness_http_status(buf), i == 0 ? 200 : 401);
    }
    expect_unchanged(&s);
}

int main(void) {
    broker_config cfg = {.max_blob_size = MAX_BLOB};
    broker_init(&B, "broker_bad_input", &cfg);
    broker_start(&B);
    make_witnesses();
    TEST_RUN(test_malformed_json);
    TEST_RUN(test_wrong_argument_type);
    TEST_RUN(test_missing_argument);
    TEST_RUN(test_extra_argument);
    TEST_RUN(test_identifier_must_match_arguments);
    TEST_RUN(test_fingerprint_mismatch);
    TEST_RUN(test_unknown_function);
    TEST_RUN(test_unknown_identifier);
    TEST_RUN(test_malformed_identifier);
    TEST_RUN(test_file_argument_without_its_blob);
    TEST_RUN(test_worker_push_shapes);
    TEST_RUN(test_stale_lease);
    TEST_RUN(test_bad_signature);
    TEST_RUN(test_unknown_members_and_bad_fields);
    TEST_RUN(test_blob_hash_mismatch);
    TEST_RUN(test_oversize_blob_refused_from_content_length);
    TEST_RUN(test_chunked_body_over_the_limit);
    TEST_RUN(test_replayed_signature);
    TEST_RUN(test_checkpoint_bad_name_with_missing_blob);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
