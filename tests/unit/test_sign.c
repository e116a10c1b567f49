#include "log.h"
#include "sign.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const unsigned char SECRET[] = "test-secret";
#define SECRET_LEN (sizeof(SECRET) - 1)
#define T0 INT64_C(1700000000)
#define SKEW 300

static p2p_sign_verifier *new_verifier(void) {
    p2p_error err;
    p2p_sign_verifier *v = p2p_sign_verifier_new(SECRET, SECRET_LEN, SKEW, &err);
    ASSERT_TRUE(v != NULL);
    return v;
}

static p2p_sign_headers sign(const char *method, const char *path, int64_t now) {
    p2p_sign_headers h;
    p2p_error err;
    ASSERT_OK(p2p_sign_request(SECRET, SECRET_LEN, method, path, now, &h, &err));
    return h;
}

static int verify(p2p_sign_verifier *v, const char *method, const char *path,
                  const p2p_sign_headers *h, int64_t now, p2p_error *err) {
    return p2p_sign_verify(v, method, path, h->time, h->nonce, h->signature, now, err);
}

static void test_good_signature_and_header_shape(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_sign_headers h = sign("GET", "/f/x?wait=5", T0);
    ASSERT_STR_EQ(h.time, "1700000000");
    ASSERT_EQ(strlen(h.nonce), 32);
    ASSERT_EQ(strspn(h.nonce, "0123456789abcdef"), 32);
    ASSERT_EQ(strlen(h.signature), 64);
    ASSERT_EQ(strspn(h.signature, "0123456789abcdef"), 64);
    p2p_error err;
    ASSERT_OK(verify(v, "GET", "/f/x?wait=5", &h, T0, &err));
    /* Two signatures of the same request differ: the nonce is fresh each time. */
    p2p_sign_headers h2 = sign("GET", "/f/x?wait=5", T0);
    ASSERT_TRUE(strcmp(h.nonce, h2.nonce) != 0);
    ASSERT_TRUE(strcmp(h.signature, h2.signature) != 0);
    ASSERT_OK(verify(v, "GET", "/f/x?wait=5", &h2, T0, &err));
    p2p_sign_verifier_free(v);
    p2p_sign_verifier_free(NULL);
}

/* The signed string is fixed by docs/protocol.md; this vector was computed
 * with `openssl dgst -sha256 -hmac test-secret`, independently of this code. */
static void test_known_answer(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_error err;
    const char *sig = "300b023295a2853d885113f3c9c7257c3051a06adb57c4b51ffcc04233424606";
    ASSERT_OK(p2p_sign_verify(v, "GET", "/f/x?wait=5&a=%20b", "1700000000",
                              "00112233445566778899aabbccddeeff", sig, T0, &err));
    p2p_sign_verifier_free(v);
}

static void expect_code(p2p_sign_verifier *v, const char *path, const p2p_sign_headers *h,
                        int64_t now, int code, const char *msg_part) {
    p2p_error err = {0};
    ASSERT_EQ(verify(v, "GET", path, h, now, &err), code);
    ASSERT_EQ(err.code, code);
    ASSERT_STR_CONTAINS(err.msg, msg_part);
}

static void expect_auth(p2p_sign_verifier *v, const char *method, const char *path,
                        const p2p_sign_headers *h, int64_t now, const char *msg_part) {
    p2p_error err = {0};
    ASSERT_EQ(verify(v, method, path, h, now, &err), P2P_EAUTH);
    ASSERT_EQ(err.code, P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, msg_part);
}

static void test_tampering_is_refused(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_sign_headers h = sign("POST", "/f/push_update?x=1", T0);
    expect_auth(v, "GET", "/f/push_update?x=1", &h, T0, "bad signature");
    expect_auth(v, "POST", "/f/push_updatf?x=1", &h, T0, "bad signature");
    expect_auth(v, "POST", "/f/push_update?x=2", &h, T0, "bad signature");
    expect_auth(v, "POST", "/f/push_update", &h, T0, "bad signature");
    p2p_sign_headers other_time = h;
    other_time.time[9] = '1';
    expect_auth(v, "POST", "/f/push_update?x=1", &other_time, T0, "bad signature");
    p2p_sign_headers other_nonce = h;
    other_nonce.nonce[0] = other_nonce.nonce[0] == 'a' ? 'b' : 'a';
    expect_auth(v, "POST", "/f/push_update?x=1", &other_nonce, T0, "bad signature");
    p2p_sign_headers flipped = h;
    flipped.signature[63] = flipped.signature[63] == '0' ? '1' : '0';
    expect_auth(v, "POST", "/f/push_update?x=1", &flipped, T0, "bad signature");
    /* None of the refusals above took room in the replay cache. */
    p2p_sign_stats st;
    p2p_sign_verifier_stats(v, &st);
    ASSERT_EQ(st.nonces, 0);
    p2p_error err;
    ASSERT_OK(verify(v, "POST", "/f/push_update?x=1", &h, T0, &err));
    p2p_sign_verifier_free(v);
}

static void test_wrong_secret(void) {
    p2p_error err;
    p2p_sign_verifier *v = p2p_sign_verifier_new((const unsigned char *)"other", 5, SKEW, &err);
    ASSERT_TRUE(v != NULL);
    p2p_sign_headers h = sign("GET", "/health", T0);
    expect_auth(v, "GET", "/health", &h, T0, "bad signature");
    p2p_sign_verifier_free(v);
}

static void test_stale_timestamps(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_error err;
    /* The window is inclusive: exactly +-skew passes, one second more fails. */
    p2p_sign_headers past_edge = sign("GET", "/a", T0 - SKEW);
    p2p_sign_headers future_edge = sign("GET", "/a", T0 + SKEW);
    ASSERT_OK(verify(v, "GET", "/a", &past_edge, T0, &err));
    ASSERT_OK(verify(v, "GET", "/a", &future_edge, T0, &err));
    p2p_sign_headers past = sign("GET", "/a", T0 - SKEW - 1);
    p2p_sign_headers future = sign("GET", "/a", T0 + SKEW + 1);
    expect_auth(v, "GET", "/a", &past, T0, "stale request: timestamp 1699999699 is -301 s");
    expect_auth(v, "GET", "/a", &future, T0, "is 301 s from the server clock");
    p2p_sign_verifier_free(v);
}

static void test_replayed_nonce(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_error err;
    p2p_sign_headers h = sign("PUT", "/blobs/ab", T0);
    ASSERT_OK(verify(v, "PUT", "/blobs/ab", &h, T0, &err));
    expect_auth(v, "PUT", "/blobs/ab", &h, T0, "replayed nonce");
    /* Still refused later in the window, until the timestamp itself is stale. */
    expect_auth(v, "PUT", "/blobs/ab", &h, T0 + SKEW, "replayed nonce");
    expect_auth(v, "PUT", "/blobs/ab", &h, T0 + SKEW + 1, "stale request");
    p2p_sign_verifier_free(v);
}

static void test_malformed_headers(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_sign_headers h = sign("GET", "/a", T0);
    p2p_error err = {0};
    ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", NULL, h.nonce, h.signature, T0, &err), P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, "missing X-P2P-Time header");
    ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", h.time, NULL, h.signature, T0, &err), P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, "missing X-P2P-Nonce header");
    ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", h.time, h.nonce, NULL, T0, &err), P2P_EAUTH);
    ASSERT_STR_CONTAINS(err.msg, "missing X-P2P-Signature header");

    const char *bad_times[] = {"",
                               "-1700000000",
                               "+1700000000",
                               "17e8",
                               "1700000000 ",
                               "99999999999999999999",
                               "9999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_times) / sizeof(bad_times[0]); i++) {
        ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", bad_times[i], h.nonce, h.signature, T0, &err),
                  P2P_EAUTH);
        ASSERT_STR_CONTAINS(err.msg, "malformed X-P2P-Time");
    }
    char upper[33];
    snprintf(upper, sizeof(upper), "%s", h.nonce);
    for (char *c = upper; *c; c++)
        *c = (*c >= 'a' && *c <= 'f') ? (char)(*c - 32) : *c;
    const char *bad_nonces[] = {"", "0011", "00112233445566778899aabbccddeeff00",
                                "0011223344556677889xaabbccddeeff", upper};
    for (size_t i = 0; i < sizeof(bad_nonces) / sizeof(bad_nonces[0]); i++) {
        if (bad_nonces[i] == upper && strcmp(upper, h.nonce) == 0)
            continue; /* an all-digit nonce has no case to change */
        ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", h.time, bad_nonces[i], h.signature, T0, &err),
                  P2P_EAUTH);
        ASSERT_STR_CONTAINS(err.msg, "malformed X-P2P-Nonce");
    }
    char short_sig[65], long_sig[70], nonhex_sig[65];
    memcpy(short_sig, h.signature, 65);
    short_sig[63] = '\0';
    snprintf(long_sig, sizeof(long_sig), "%s00", h.signature);
    snprintf(nonhex_sig, sizeof(nonhex_sig), "%s", h.signature);
    nonhex_sig[10] = 'g';
    const char *bad_sigs[] = {"", short_sig, long_sig, nonhex_sig};
    for (size_t i = 0; i < sizeof(bad_sigs) / sizeof(bad_sigs[0]); i++) {
        ASSERT_EQ(p2p_sign_verify(v, "GET", "/a", h.time, h.nonce, bad_sigs[i], T0, &err),
                  P2P_EAUTH);
        ASSERT_STR_CONTAINS(err.msg, "malformed X-P2P-Signature");
    }
    ASSERT_OK(verify(v, "GET", "/a", &h, T0, &err));
    p2p_sign_verifier_free(v);
}

static void test_bad_arguments(void) {
    p2p_sign_headers h;
    p2p_error err;
    ASSERT_EQ(p2p_sign_request(SECRET, SECRET_LEN, "GET", "/a\n", T0, &h, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_sign_request(SECRET, SECRET_LEN, "G\nET", "/a", T0, &h, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_sign_request(SECRET, SECRET_LEN, "", "/a", T0, &h, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_sign_request(SECRET, SECRET_LEN, "GET", "a", T0, &h, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_sign_request(SECRET, 0, "GET", "/a", T0, &h, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_sign_request(SECRET, SECRET_LEN, "GET", "/a", -1, &h, &err), P2P_EINVAL);
    ASSERT_TRUE(p2p_sign_verifier_new(SECRET, SECRET_LEN, 0, &err) == NULL);
    ASSERT_EQ(err.code, P2P_EINVAL);
    ASSERT_TRUE(p2p_sign_verifier_new(SECRET, SECRET_LEN, P2P_SIGN_MAX_SKEW + 1, &err) == NULL);
    ASSERT_TRUE(p2p_sign_verifier_new(NULL, 3, SKEW, &err) == NULL);
    p2p_sign_verifier *v = new_verifier();
    h = sign("GET", "/a", T0);
    ASSERT_EQ(verify(v, NULL, "/a", &h, T0, &err), P2P_EINVAL);
    ASSERT_EQ(verify(v, "GET", NULL, &h, T0, &err), P2P_EINVAL);
    p2p_sign_verifier_free(v);
}

/* Signs and accepts `n` requests at `now`; returns how many were accepted. */
static size_t accept_many(p2p_sign_verifier *v, size_t n, int64_t now) {
    size_t accepted = 0;
    for (size_t i = 0; i < n; i++) {
        p2p_sign_headers h = sign("GET", "/many", now);
        p2p_error err;
        if (verify(v, "GET", "/many", &h, now, &err) == 0)
            accepted++;
    }
    return accepted;
}

static void test_cache_expiry_releases_memory(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_sign_stats empty, full, after;
    p2p_sign_verifier_stats(v, &empty);
    ASSERT_EQ(empty.nonces, 0);
    for (int64_t s = 0; s < 10; s++)
        ASSERT_EQ(accept_many(v, 2000, T0 + s), 2000);
    p2p_sign_verifier_stats(v, &full);
    ASSERT_EQ(full.nonces, 20000);
    /* 16 bytes a nonce at a load of 3/8..3/4. */
    ASSERT_GE(full.bytes, empty.bytes + 20000 * 16);
    ASSERT_LE(full.bytes, empty.bytes + 20000 * 16 * 8 / 3);
    /* Once the newest of those seconds is out of the window, all go. */
    ASSERT_EQ(accept_many(v, 1, T0 + 9 + SKEW + 1), 1);
    p2p_sign_verifier_stats(v, &after);
    ASSERT_EQ(after.nonces, 1);
    ASSERT_LE(after.bytes, empty.bytes + 16 * 16);
    ASSERT_EQ(after.evictions, 0);
    p2p_sign_verifier_free(v);
}

/* At the bound the oldest second goes, and its timestamps are refused from
 * then on: a replay of a forgotten nonce must still fail. */
static void test_bound_evicts_oldest_and_refuses_its_second(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_sign_verifier_set_max_nonces(v, 100);
    p2p_error err;
    p2p_sign_headers first = sign("GET", "/b", T0);
    ASSERT_OK(verify(v, "GET", "/b", &first, T0 + 1, &err));
    ASSERT_EQ(accept_many(v, 99, T0 + 1), 99);
    p2p_sign_stats st;
    p2p_sign_verifier_stats(v, &st);
    ASSERT_EQ(st.nonces, 100);
    ASSERT_EQ(st.evictions, 0);
    ASSERT_EQ(st.floor, INT64_MIN);

    /* The 101st nonce, a second later, pushes out second T0 (one nonce). */
    p2p_sign_headers next = sign("GET", "/b", T0 + 2);
    ASSERT_OK(verify(v, "GET", "/b", &next, T0 + 2, &err));
    p2p_sign_verifier_stats(v, &st);
    ASSERT_EQ(st.nonces, 100);
    ASSERT_EQ(st.evictions, 1);
    ASSERT_EQ(st.floor, T0);
    expect_code(v, "/b", &first, T0 + 2, P2P_EUNAVAIL, "replay cache full");
    p2p_sign_headers fresh_old = sign("GET", "/b", T0);
    expect_code(v, "/b", &fresh_old, T0 + 2, P2P_EUNAVAIL, "refuses timestamps up to 1700000000");
    /* The next insert evicts second T0+1 (99 nonces), then T0+2 survives. */
    ASSERT_EQ(accept_many(v, 1, T0 + 2), 1);
    p2p_sign_verifier_stats(v, &st);
    ASSERT_EQ(st.nonces, 2);
    ASSERT_EQ(st.floor, T0 + 1);
    expect_auth(v, "GET", "/b", &next, T0 + 2, "replayed nonce");
    /* Shrinking the bound evicts at once. */
    p2p_sign_verifier_set_max_nonces(v, 1);
    p2p_sign_verifier_stats(v, &st);
    ASSERT_EQ(st.nonces, 0);
    ASSERT_EQ(st.floor, T0 + 2);
    expect_code(v, "/b", &next, T0 + 2, P2P_EUNAVAIL, "replay cache full");
    ASSERT_EQ(accept_many(v, 1, T0 + 3), 1);
    p2p_sign_verifier_free(v);
}

static void test_clock_going_back(void) {
    p2p_sign_verifier *v = new_verifier();
    p2p_error err;
    int64_t later = T0 + 2 * SKEW + 1; /* maps to the same set as T0 */
    p2p_sign_headers h = sign("GET", "/c", later);
    ASSERT_OK(verify(v, "GET", "/c", &h, later, &err));
    p2p_sign_headers back = sign("GET", "/c", T0);
    expect_auth(v, "GET", "/c", &back, T0, "clock went back");
    p2p_sign_verifier_free(v);
}

#define THREADS 4
#define PER_THREAD 3000

typedef struct shared_batch {
    p2p_sign_verifier *v;
    p2p_sign_headers *reqs; /* every thread verifies every one of these */
    size_t n;
    size_t accepted, replays; /* by this thread */
    int index;
} shared_batch;

static void *verify_all(void *arg) {
    shared_batch *b = arg;
    /* Each thread starts at a different place, so that they race on the same
     * requests at different moments. */
    size_t start = (size_t)b->index * b->n / THREADS;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (start + k) % b->n;
        p2p_error err;
        int rc = verify(b->v, "GET", "/conc", &b->reqs[i], T0, &err);
        if (rc == 0)
            b->accepted++;
        else if (strstr(err.msg, "replayed nonce") != NULL)
            b->replays++;
    }
    return NULL;
}

static void test_concurrent_verification(void) {
    p2p_sign_verifier *v = new_verifier();
    size_t n = THREADS * PER_THREAD;
    p2p_sign_headers *reqs = calloc(n, sizeof(*reqs));
    ASSERT_TRUE(reqs != NULL);
    for (size_t i = 0; i < n; i++)
        reqs[i] = sign("GET", "/conc", T0);
    shared_batch batches[THREADS];
    pthread_t tids[THREADS];
    struct timespec t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int t = 0; t < THREADS; t++) {
        batches[t] = (shared_batch){.v = v, .reqs = reqs, .n = n, .index = t};
        ASSERT_EQ(pthread_create(&tids[t], NULL, verify_all, &batches[t]), 0);
    }
    size_t accepted = 0, replays = 0;
    for (int t = 0; t < THREADS; t++) {
        ASSERT_EQ(pthread_join(tids[t], NULL), 0);
        accepted += batches[t].accepted;
        replays += batches[t].replays;
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double secs = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    /* Every request is accepted exactly once, whichever thread gets there first. */
    ASSERT_EQ(accepted, n);
    ASSERT_EQ(replays, n * (THREADS - 1));
    fprintf(stderr, "   %zu verifications on %d threads in %.3f s (%.0f/s)\n", n * THREADS, THREADS,
            secs, (double)(n * THREADS) / secs);
    free(reqs);
    p2p_sign_verifier_free(v);
}

/* Writes a temporary file into `path` (512 bytes) and returns `path`. */
static char *write_temp(const char *content, size_t len, mode_t mode, char *path) {
    const char *dir = getenv("P2PRPC_TEST_TMP");
    if (dir == NULL)
        dir = "/tmp";
    mkdir(dir, 0700);
    snprintf(path, 512, "%s/secret_XXXXXX", dir);
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, content, len), (ssize_t)len);
    ASSERT_EQ(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void expect_secret(const char *content, const char *want) {
    char path[512];
    write_temp(content, strlen(content), 0600, path);
    unsigned char *s = NULL;
    size_t len = 0;
    p2p_error err;
    ASSERT_OK(p2p_secret_load(path, &s, &len, &err));
    ASSERT_EQ(len, strlen(want));
    ASSERT_MEM_EQ(s, want, len);
    p2p_secret_free(s, len);
    unlink(path);
}

static void expect_secret_error(const char *content, size_t len, int code, const char *msg) {
    char path[512];
    write_temp(content, len, 0600, path);
    unsigned char *s = (unsigned char *)"untouched";
    size_t n = 7;
    p2p_error err;
    ASSERT_EQ(p2p_secret_load(path, &s, &n, &err), code);
    ASSERT_STR_CONTAINS(err.msg, msg);
    ASSERT_STR_EQ((char *)s, "untouched");
    ASSERT_EQ(n, 7);
    unlink(path);
}

static void test_secret_load(void) {
    expect_secret("s3cr3t\n", "s3cr3t");
    expect_secret("s3cr3t\r\n\n\n", "s3cr3t");
    expect_secret("s3cr3t", "s3cr3t");
    expect_secret("two\nlines\n", "two\nlines");
    expect_secret_error("", 0, P2P_EINVAL, "empty");
    expect_secret_error("\n\r\n", 3, P2P_EINVAL, "empty");
    size_t big = 65537;
    char *huge = malloc(big);
    ASSERT_TRUE(huge != NULL);
    memset(huge, 'x', big);
    expect_secret_error(huge, big, P2P_EINVAL, "larger than 65536 bytes");
    free(huge);
    unsigned char *s = NULL;
    size_t len = 0;
    p2p_error err;
    ASSERT_EQ(p2p_secret_load("/nonexistent/secret", &s, &len, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "/nonexistent/secret");
    p2p_secret_free(NULL, 0);
}

static void test_secret_permissions_warning(void) {
    char log_path[512], path[512], private_path[512];
    write_temp("", 0, 0600, log_path);
    p2p_error err;
    ASSERT_OK(p2p_log_open(log_path, &err));
    write_temp("shared\n", 7, 0644, path);
    unsigned char *s = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_secret_load(path, &s, &len, &err));
    p2p_secret_free(s, len);
    write_temp("private\n", 8, 0600, private_path);
    ASSERT_OK(p2p_secret_load(private_path, &s, &len, &err));
    p2p_secret_free(s, len);
    ASSERT_OK(p2p_log_open(NULL, &err));
    FILE *f = fopen(log_path, "r");
    ASSERT_TRUE(f != NULL);
    char text[2048] = {0};
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    ASSERT_GT(n, 0);
    ASSERT_STR_CONTAINS(text, "readable by group or others");
    ASSERT_STR_CONTAINS(text, path);
    ASSERT_TRUE(strstr(text, private_path) == NULL);
    unlink(path);
    unlink(private_path);
    unlink(log_path);
}

int main(void) {
    TEST_RUN(test_good_signature_and_header_shape);
    TEST_RUN(test_known_answer);
    TEST_RUN(test_tampering_is_refused);
    TEST_RUN(test_wrong_secret);
    TEST_RUN(test_stale_timestamps);
    TEST_RUN(test_replayed_nonce);
    TEST_RUN(test_malformed_headers);
    TEST_RUN(test_bad_arguments);
    TEST_RUN(test_cache_expiry_releases_memory);
    TEST_RUN(test_bound_evicts_oldest_and_refuses_its_second);
    TEST_RUN(test_clock_going_back);
    TEST_RUN(test_concurrent_verification);
    TEST_RUN(test_secret_load);
    TEST_RUN(test_secret_permissions_warning);
    return 0;
}
