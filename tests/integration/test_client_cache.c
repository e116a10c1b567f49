/* The client's local cache (cache_path), against a real broker and worker:
 * - a second identical call is answered from the cache while the broker is
 *   STOPPED: no network at all (a network attempt could only fail), the
 *   same outputs, the output file read from the cache's files/;
 * - the cache is on disk: a new client handle on the same cache_path, and a
 *   second process (fork) sharing it, get the answer from it;
 * - two processes sharing one cache_path make the same call at once: the
 *   function runs once (broker claims), both get the result;
 * - a cached output file that was damaged (truncated) is not a hit: the call
 *   goes to the network again and the file is downloaded again;
 * - file arguments: one changed byte changes the identifier, a touched mtime
 *   does not (and is still a cache hit), the same content under another path
 *   is the same call;
 * - cache_path NULL is DATA_DIR/client ($P2PRPC_HOME/client here);
 * - a file argument is hashed once, through the file-hash cache: content
 *   changed behind the cache's back (size and mtime restored, the documented
 *   blind spot) still gives the first identifier, which proves the file was
 *   not read again. */
#include "client_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_RUN_ARG(fn, arg)                                                                      \
    do {                                                                                           \
        fprintf(stderr, "-- %s\n", #fn);                                                           \
        fn(arg);                                                                                   \
    } while (0)

typedef struct env {
    broker b;
    worker w;
    char dir[HARNESS_PATH_MAX]; /* scratch: caches, input files */
} env;

static void env_start(env *e, const char *name) {
    char bname[128], wname[128], dname[128];
    snprintf(bname, sizeof(bname), "%s_b", name);
    snprintf(wname, sizeof(wname), "%s_w", name);
    snprintf(dname, sizeof(dname), "%s_c", name);
    cf_broker_init(&e->b, bname, NULL, NULL);
    broker_start(&e->b);
    worker_start_for(&e->w, wname, &e->b, &(worker_config){.concurrency = 2});
    p2p_error err;
    if (harness_scratch_dir(dname, e->dir, sizeof(e->dir), &err) != 0)
        TEST_FAIL_("%s", err.msg);
}

static void env_stop(env *e) {
    worker_kill(&e->w);
    worker_cleanup(&e->w);
    broker_cleanup(&e->b);
    p2p_error err;
    if (harness_rmtree(e->dir, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
}

/* ---- the second call, broker stopped ---- */

#define INPUT_SIZE (300 * 1024 + 7)

/* What the first calls answered, to compare the cache's answers with. */
typedef struct first_answers {
    char id_add[P2P_HASH_HEX_LEN + 1];
    char id_copy[P2P_HASH_HEX_LEN + 1];
    char out_hash[P2P_HASH_HEX_LEN + 1];
} first_answers;

/* add(40, 2) and copy(input, 0x5a) through the broker, the first time. */
static void first_calls(env *e, p2p_client *c, const char *cache, const char *input,
                        const p2p_value *add, const p2p_value *copy, first_answers *fa) {
    double created0 = cf_metric(&e->b, "p2prpc_calls_created_total");
    double claims0 = cf_metric(&e->b, "p2prpc_claims_total");
    p2p_future *f1 = cf_submit(c, WF_ADD, add, NULL);
    ASSERT_FALSE(p2p_future_cached(f1));
    CF_EXPECT_BROKER(f1, e->b.url);
    ASSERT_EQ(cf_get(f1, 1)[0].as.i64, 42);
    p2p_future *f2 = cf_submit(c, WF_COPY, copy, NULL);
    const p2p_value *out = cf_get(f2, 2);
    ASSERT_EQ(out[0].type, P2P_TYPE_FILE);
    ASSERT_EQ(out[1].as.i64, INPUT_SIZE);
    ASSERT_EQ(out[0].as.file.size, INPUT_SIZE);
    cf_expect_xor_of(out[0].as.file.path, input, 0x5a);
    /* The output file lives in the cache, named by its hash. */
    ASSERT_TRUE(strncmp(out[0].as.file.path, cache, strlen(cache)) == 0);
    ASSERT_STR_CONTAINS(out[0].as.file.path, out[0].as.file.hash);
    snprintf(fa->id_add, sizeof(fa->id_add), "%s", p2p_future_identifier(f1));
    snprintf(fa->id_copy, sizeof(fa->id_copy), "%s", p2p_future_identifier(f2));
    snprintf(fa->out_hash, sizeof(fa->out_hash), "%s", out[0].as.file.hash);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.cache_hits, 0);
    ASSERT_EQ(st.calls_created, 2);
    ASSERT_EQ(st.bytes_uploaded, INPUT_SIZE);
    ASSERT_EQ(st.bytes_downloaded, INPUT_SIZE);
    ASSERT_EQ(cf_metric(&e->b, "p2prpc_calls_created_total") - created0, 2);
    ASSERT_EQ(cf_metric(&e->b, "p2prpc_claims_total") - claims0, 2);
    p2p_future_free(f1);
    p2p_future_free(f2);
    ASSERT_GE(cf_cache_db_mentions(cache, fa->id_add), 1);
    ASSERT_GE(cf_cache_db_mentions(cache, fa->id_copy), 1);
}

/* The same two calls again through `c`: both answered from the cache. */
static void expect_from_cache(p2p_client *c, const char *input, const p2p_value *add,
                              const p2p_value *copy, const first_answers *fa) {
    int64_t t0 = harness_now_ms();
    p2p_future *f1 = cf_submit(c, WF_ADD, add, NULL);
    p2p_future *f2 = cf_submit(c, WF_COPY, copy, NULL);
    fprintf(stderr, "two cache hits in %lld ms\n", (long long)(harness_now_ms() - t0));
    ASSERT_TRUE(p2p_future_cached(f1) && p2p_future_cached(f2));
    ASSERT_TRUE(p2p_future_broker(f1) == NULL && p2p_future_broker(f2) == NULL);
    ASSERT_EQ(p2p_future_status(f1), P2P_CALL_DONE);
    ASSERT_STR_EQ(p2p_future_identifier(f1), fa->id_add);
    ASSERT_STR_EQ(p2p_future_identifier(f2), fa->id_copy);
    ASSERT_OK(p2p_future_wait(f1, 0, NULL));
    ASSERT_EQ(cf_get(f1, 1)[0].as.i64, 42);
    const p2p_value *out = cf_get(f2, 2);
    ASSERT_STR_EQ(out[0].as.file.hash, fa->out_hash);
    ASSERT_EQ(out[1].as.i64, INPUT_SIZE);
    cf_expect_xor_of(out[0].as.file.path, input, 0x5a);
    p2p_future_free(f1);
    p2p_future_free(f2);
}

static void test_second_call_from_cache_with_broker_stopped(void) {
    env e;
    env_start(&e, "ccache_stop");
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, e.dir, "cache");
    cf_path(input, e.dir, "input.bin");
    cf_write_random(input, INPUT_SIZE, 1);
    p2p_client *c = cf_client_for(&e.b, cache);
    p2p_value add[2], copy[2];
    cf_args_add(add, 40, 2);
    cf_args_copy(copy, input, 0x5a);
    first_answers fa;
    first_calls(&e, c, cache, input, add, copy, &fa);

    /* The broker goes away. The same client, then a new one on the same
     * cache_path: both answers from disk. */
    broker_stop(&e.b);
    expect_from_cache(c, input, add, copy, &fa);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.cache_hits, 2);
    ASSERT_EQ(st.calls_created, 2);
    ASSERT_EQ(st.bytes_downloaded, INPUT_SIZE);
    ASSERT_EQ(st.failovers, 0);
    p2p_client *fresh = cf_client_for(&e.b, cache);
    expect_from_cache(fresh, input, add, copy, &fa);
    p2p_client_get_stats(fresh, &st);
    ASSERT_EQ(st.cache_hits, 2);
    ASSERT_EQ(st.calls_created + st.calls_attached + st.bytes_downloaded + st.failovers, 0);
    p2p_client_free(fresh);

    /* A call that is not in the cache does need the broker, which is down:
     * the hits above came from disk. */
    p2p_value other[2];
    cf_args_add(other, 40, 3);
    p2p_future *f3 = NULL;
    p2p_error err = {0};
    int rc = p2p_client_submit(c, wf_schema(WF_ADD), other, NULL, 0, NULL, &f3, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EUNAVAIL, e.b.url);
    ASSERT_TRUE(f3 == NULL);
    p2p_value_list_cleanup(other, 2);
    p2p_value_list_cleanup(add, 2);
    p2p_value_list_cleanup(copy, 2);
    p2p_client_free(c);
    env_stop(&e);
}

/* ---- processes sharing one cache_path ---- */

/* In a forked child: a client on `cache` submits p2prpc_add(a, b) and
 * exits 0 when the sum is right and the answer's origin is `want_cached`. */
static int child_add(const broker *b, const char *cache, int64_t a, int64_t bb, int want_cached) {
    p2p_client *c = cf_client_for(b, cache);
    p2p_value args[2];
    cf_args_add(args, a, bb);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    int ok = (int)p2p_future_cached(f) == want_cached || want_cached < 0;
    ok = ok && cf_get(f, 1)[0].as.i64 == a + bb;
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    return ok ? 0 : 3;
}

static pid_t fork_child_add(const broker *b, const char *cache, int64_t a, int64_t bb,
                            int want_cached) {
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0)
        _exit(child_add(b, cache, a, bb, want_cached));
    return pid;
}

static void expect_child_ok(pid_t pid) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        TEST_FAIL_("child %d ended with status 0x%x", (int)pid, status);
}

static void test_processes_share_one_cache(void) {
    env e;
    env_start(&e, "ccache_procs");
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, e.dir, "cache");

    /* The parent fills the cache; a child process reads the answer from it. */
    p2p_client *c = cf_client_for(&e.b, cache);
    p2p_value args[2];
    cf_args_add(args, 1000, 337);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 1337);
    p2p_future_free(f);
    double claims0 = cf_metric(&e.b, "p2prpc_claims_total");
    expect_child_ok(fork_child_add(&e.b, cache, 1000, 337, 1));

    /* Four processes (three children and the parent) make the same new call
     * at the same time, over one cache_path: it runs once. */
    pid_t kids[3];
    for (int i = 0; i < 3; i++)
        kids[i] = fork_child_add(&e.b, cache, 77, 23, -1);
    p2p_value same[2];
    cf_args_add(same, 77, 23);
    f = cf_submit(c, WF_ADD, same, NULL);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 100);
    p2p_future_free(f);
    for (int i = 0; i < 3; i++)
        expect_child_ok(kids[i]);
    ASSERT_EQ(cf_metric(&e.b, "p2prpc_claims_total") - claims0, 1);
    /* And afterwards it is a hit for everyone. */
    expect_child_ok(fork_child_add(&e.b, cache, 77, 23, 1));
    ASSERT_EQ(cf_metric(&e.b, "p2prpc_claims_total") - claims0, 1);
    p2p_value_list_cleanup(same, 2);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    env_stop(&e);
}

/* ---- a damaged cached file ---- */

static void test_damaged_cached_file_is_downloaded_again(void) {
    env e;
    env_start(&e, "ccache_damage");
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, e.dir, "cache");
    cf_path(input, e.dir, "input.bin");
    cf_write_random(input, 200000, 2);
    p2p_client *c = cf_client_for(&e.b, cache);
    p2p_value copy[2];
    cf_args_copy(copy, input, 7);
    p2p_future *f = cf_submit(c, WF_COPY, copy, NULL);
    char path[HARNESS_PATH_MAX];
    snprintf(path, sizeof(path), "%s", cf_get(f, 2)[0].as.file.path);
    p2p_future_free(f);
    double claims0 = cf_metric(&e.b, "p2prpc_claims_total");

    /* Truncate the cached output: the entry must not be a hit any more. */
    ASSERT_OK(truncate(path, 1000));
    f = cf_submit(c, WF_COPY, copy, NULL);
    ASSERT_FALSE(p2p_future_cached(f));
    const p2p_value *out = cf_get(f, 2);
    cf_expect_xor_of(out[0].as.file.path, input, 7);
    ASSERT_EQ(cf_file_size(out[0].as.file.path), 200000);
    p2p_future_free(f);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.cache_hits, 0);
    ASSERT_EQ(st.calls_created, 1);
    ASSERT_EQ(st.calls_attached, 1);
    ASSERT_EQ(st.bytes_downloaded, 2 * 200000);
    /* Answered by the broker's stored result, not a new run. */
    ASSERT_EQ(cf_metric(&e.b, "p2prpc_claims_total") - claims0, 0);

    /* A missing file is no hit either. */
    ASSERT_OK(unlink(path));
    f = cf_submit(c, WF_COPY, copy, NULL);
    ASSERT_FALSE(p2p_future_cached(f));
    cf_expect_xor_of(cf_get(f, 2)[0].as.file.path, input, 7);
    p2p_future_free(f);
    /* Repaired: the next one is a hit again. */
    f = cf_submit(c, WF_COPY, copy, NULL);
    ASSERT_TRUE(p2p_future_cached(f));
    p2p_future_free(f);
    p2p_value_list_cleanup(copy, 2);
    p2p_client_free(c);
    env_stop(&e);
}

/* ---- file arguments: content, not mtime ---- */

static void copy_id(p2p_client *c, const char *path, char id[P2P_HASH_HEX_LEN + 1], bool *cached) {
    p2p_value copy[2];
    cf_args_copy(copy, path, 1);
    p2p_future *f = cf_submit(c, WF_COPY, copy, NULL);
    snprintf(id, P2P_HASH_HEX_LEN + 1, "%s", p2p_future_identifier(f));
    *cached = p2p_future_cached(f);
    cf_expect_xor_of(cf_get(f, 2)[0].as.file.path, path, 1);
    p2p_future_free(f);
    p2p_value_list_cleanup(copy, 2);
}

static void test_file_byte_changes_identifier_mtime_does_not(void) {
    env e;
    env_start(&e, "ccache_bytes");
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX], twin[HARNESS_PATH_MAX];
    cf_path(cache, e.dir, "cache");
    cf_path(input, e.dir, "input.bin");
    cf_path(twin, e.dir, "twin.bin");
    cf_write_random(input, 1 << 20, 3);
    cf_age_file(input, 60);
    p2p_client *c = cf_client_for(&e.b, cache);
    char id0[P2P_HASH_HEX_LEN + 1], id1[P2P_HASH_HEX_LEN + 1], id2[P2P_HASH_HEX_LEN + 1];
    bool cached = true;
    copy_id(c, input, id0, &cached);
    ASSERT_FALSE(cached);

    /* Touch: a new mtime, the same content. Same identifier, a cache hit. */
    cf_age_file(input, 30);
    copy_id(c, input, id1, &cached);
    ASSERT_STR_EQ(id1, id0);
    ASSERT_TRUE(cached);

    /* The same content under another path is the same call. */
    cf_write_random(twin, 1 << 20, 3);
    copy_id(c, twin, id1, &cached);
    ASSERT_STR_EQ(id1, id0);
    ASSERT_TRUE(cached);

    /* One byte changed in the middle, the size kept: another identifier. */
    FILE *fp = fopen(input, "r+b");
    ASSERT_TRUE(fp != NULL);
    ASSERT_OK(fseek(fp, 1 << 19, SEEK_SET));
    int old = getc(fp);
    ASSERT_OK(fseek(fp, 1 << 19, SEEK_SET));
    ASSERT_TRUE(putc((old ^ 0x01) & 0xff, fp) != EOF);
    ASSERT_OK(fclose(fp));
    cf_age_file(input, 10);
    copy_id(c, input, id2, &cached);
    ASSERT_TRUE(strcmp(id2, id0) != 0);
    ASSERT_FALSE(cached);
    fprintf(stderr, "identifiers: %s (touched: same), one byte changed: %s\n", id0, id2);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.calls_created, 2);
    ASSERT_EQ(st.cache_hits, 2);
    p2p_client_free(c);
    env_stop(&e);
}

/* ---- hashed once ---- */

static void test_file_hashed_once(void) {
    env e;
    env_start(&e, "ccache_once");
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, e.dir, "cache");
    cf_path(input, e.dir, "input.bin");
    cf_write_random(input, 512 * 1024, 21);
    cf_age_file(input, 120);
    struct stat st0;
    ASSERT_OK(stat(input, &st0));
    p2p_client *c = cf_client_for(&e.b, cache);
    char id0[P2P_HASH_HEX_LEN + 1], id1[P2P_HASH_HEX_LEN + 1];
    bool cached = true;
    copy_id(c, input, id0, &cached);
    ASSERT_FALSE(cached);

    /* New bytes in place (same inode, same size), the old mtime put back. */
    FILE *fp = fopen(input, "r+b");
    ASSERT_TRUE(fp != NULL);
    for (int i = 0; i < 4096; i++)
        ASSERT_TRUE(putc(0xA5, fp) != EOF);
    ASSERT_OK(fclose(fp));
    struct timespec t[2] = {st0.st_atim, st0.st_mtim};
    ASSERT_OK(utimensat(AT_FDCWD, input, t, 0));
    p2p_value copy[2];
    cf_args_copy(copy, input, 1);
    p2p_future *f = cf_submit(c, WF_COPY, copy, NULL);
    snprintf(id1, sizeof(id1), "%s", p2p_future_identifier(f));
    ASSERT_STR_EQ(id1, id0);
    ASSERT_TRUE(p2p_future_cached(f));
    p2p_future_free(f);
    p2p_value_list_cleanup(copy, 2);
    p2p_client_free(c);
    env_stop(&e);
}

/* ---- the default cache path ---- */

static void test_default_cache_path(const char *home) {
    env e;
    env_start(&e, "ccache_default");
    p2p_value args[2];
    cf_args_add(args, 123, 456);
    char id[P2P_HASH_HEX_LEN + 1];
    for (int round = 0; round < 2; round++) {
        const char *urls[] = {e.b.url};
        p2p_client_options o;
        cf_options(&o, urls, 1, e.b.secret_path, NULL);
        p2p_client *c = cf_client(&o);
        p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
        ASSERT_EQ(p2p_future_cached(f), round == 1);
        ASSERT_EQ(cf_get(f, 1)[0].as.i64, 579);
        snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
        p2p_future_free(f);
        p2p_client_free(c);
    }
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, home, "client");
    ASSERT_GE(cf_cache_db_mentions(cache, id), 1);
    p2p_value_list_cleanup(args, 2);
    env_stop(&e);
}

int main(void) {
    /* Before any thread starts: DATA_DIR for test_default_cache_path. */
    char home[HARNESS_PATH_MAX];
    p2p_error err;
    if (harness_scratch_dir("ccache_home", home, sizeof(home), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    ASSERT_OK(setenv("P2PRPC_HOME", home, 1));
    TEST_RUN_ARG(test_default_cache_path, home);
    TEST_RUN(test_second_call_from_cache_with_broker_stopped);
    TEST_RUN(test_file_byte_changes_identifier_mtime_does_not);
    TEST_RUN(test_file_hashed_once);
    TEST_RUN(test_damaged_cached_file_is_downloaded_again);
    TEST_RUN(test_processes_share_one_cache);
    if (harness_rmtree(home, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
