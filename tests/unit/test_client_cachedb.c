/* The client's local cache (client/cache.c): entries, shared files, the
 * download of one hash by several threads, and handles on one directory as
 * several processes would have them. */
#include "client_internal.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
/* SHA-256 of "abc" and of "abd". */
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_ABD "a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9"

static char tmp_dir[512];

static void make_tmp_dir(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/client_cache_%d", base ? base : "/tmp", (int)getpid());
    if (base != NULL)
        mkdir(base, 0700);
    ASSERT_EQ(mkdir(tmp_dir, 0700), 0);
}

static void cache_dir(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A fetch that writes `text` (or fails with `rc`), counting its calls. */
typedef struct fake_fetch {
    const char *text;
    int rc;
    atomic_int calls;
} fake_fetch;

static int fetch_text(void *arg, const char *tmp_path, p2p_error *err) {
    fake_fetch *x = arg;
    atomic_fetch_add(&x->calls, 1);
    if (x->rc != 0)
        return p2p_error_set(err, x->rc, "fake fetch fails");
    FILE *fp = fopen(tmp_path, "wb");
    ASSERT_TRUE(fp != NULL);
    ASSERT_EQ(fwrite(x->text, 1, strlen(x->text), fp), strlen(x->text));
    ASSERT_EQ(fclose(fp), 0);
    usleep(20000); /* long enough for a second thread to queue on the lock */
    return 0;
}

static void test_entries(void) {
    char dir[600];
    cache_dir(dir, sizeof(dir), "entries");
    p2p__ccache *c = NULL;
    ASSERT_OK(p2p__ccache_open(dir, &c, NULL));
    p2p__ccache_entry e;
    p2p_error err;
    ASSERT_EQ(p2p__ccache_get(c, ID_A, &e, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, ID_A);

    ASSERT_OK(p2p__ccache_put_in_flight(c, ID_A, "p2prpc_f", "http://b1/", NULL));
    ASSERT_OK(p2p__ccache_get(c, ID_A, &e, NULL));
    ASSERT_FALSE(e.done);
    ASSERT_STR_EQ(e.broker, "http://b1/");
    ASSERT_TRUE(e.outputs == NULL);
    p2p__ccache_entry_cleanup(&e);

    /* In flight again on another broker: the broker follows. */
    ASSERT_OK(p2p__ccache_put_in_flight(c, ID_A, "p2prpc_f", "http://b2/", NULL));
    ASSERT_OK(p2p__ccache_get(c, ID_A, &e, NULL));
    ASSERT_STR_EQ(e.broker, "http://b2/");
    p2p__ccache_entry_cleanup(&e);

    ASSERT_OK(p2p__ccache_put_done(c, ID_A, "p2prpc_f", "http://b2/", "{\"y\":1}", NULL, 0, NULL));
    /* A done entry is never turned back in flight. */
    ASSERT_OK(p2p__ccache_put_in_flight(c, ID_A, "p2prpc_f", "http://b3/", NULL));
    ASSERT_OK(p2p__ccache_get(c, ID_A, &e, NULL));
    ASSERT_TRUE(e.done);
    ASSERT_STR_EQ(e.outputs, "{\"y\":1}");
    ASSERT_STR_EQ(e.broker, "http://b2/");
    ASSERT_STR_EQ(e.function, "p2prpc_f");
    p2p__ccache_entry_cleanup(&e);

    ASSERT_OK(p2p__ccache_forget(c, ID_A, NULL));
    ASSERT_EQ(p2p__ccache_get(c, ID_A, &e, NULL), P2P_ENOTFOUND);
    ASSERT_OK(p2p__ccache_forget(c, ID_A, NULL)); /* nothing to forget: fine */
    p2p__ccache_free(c);
}

static void test_files_shared_and_forgotten(void) {
    char dir[600];
    cache_dir(dir, sizeof(dir), "files");
    p2p__ccache *c = NULL;
    ASSERT_OK(p2p__ccache_open(dir, &c, NULL));
    fake_fetch abc = {.text = "abc"};
    ASSERT_FALSE(p2p__ccache_file_ok(c, SHA_ABC, 3));
    ASSERT_OK(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &abc, NULL));
    ASSERT_EQ(atomic_load(&abc.calls), 1);
    ASSERT_TRUE(p2p__ccache_file_ok(c, SHA_ABC, 3));
    ASSERT_FALSE(p2p__ccache_file_ok(c, SHA_ABC, 4)); /* size mismatch: not ok */
    /* Already there: no fetch. */
    ASSERT_OK(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &abc, NULL));
    ASSERT_EQ(atomic_load(&abc.calls), 1);
    char *path = p2p__ccache_file_path(c, SHA_ABC);
    char want[800];
    snprintf(want, sizeof(want), "%s/files/ba/%s", dir, SHA_ABC);
    ASSERT_STR_EQ(path, want);

    /* Two entries reference the file: forgetting one keeps it. */
    const char *hashes[] = {SHA_ABC};
    ASSERT_OK(p2p__ccache_put_done(c, ID_A, "p2prpc_f", NULL, "{}", hashes, 1, NULL));
    ASSERT_OK(p2p__ccache_put_done(c, ID_B, "p2prpc_f", NULL, "{}", hashes, 1, NULL));
    ASSERT_OK(p2p__ccache_forget(c, ID_A, NULL));
    ASSERT_TRUE(exists(path));
    ASSERT_OK(p2p__ccache_forget(c, ID_B, NULL));
    ASSERT_FALSE(exists(path));
    free(path);
    p2p__ccache_free(c);
}

static void test_bad_downloads(void) {
    char dir[600], tmp[800];
    cache_dir(dir, sizeof(dir), "bad");
    p2p__ccache *c = NULL;
    ASSERT_OK(p2p__ccache_open(dir, &c, NULL));
    /* Content that does not hash to the name: refused, nothing kept. */
    fake_fetch wrong = {.text = "abd"};
    p2p_error err;
    ASSERT_EQ(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &wrong, &err), P2P_EHASH);
    ASSERT_STR_CONTAINS(err.msg, SHA_ABD);
    ASSERT_FALSE(p2p__ccache_file_ok(c, SHA_ABC, 3));
    snprintf(tmp, sizeof(tmp), "%s/files/tmp/%s.part", dir, SHA_ABC);
    ASSERT_FALSE(exists(tmp));
    /* The fetch's own error comes back as it is. */
    fake_fetch down = {.rc = P2P_EUNAVAIL};
    ASSERT_EQ(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &down, &err), P2P_EUNAVAIL);
    ASSERT_EQ(p2p__ccache_ensure_file(c, "ABC", 3, fetch_text, &down, &err), P2P_EINVAL);
    /* A damaged file (wrong size) in place is fetched again. */
    fake_fetch abc = {.text = "abc"};
    char *path = p2p__ccache_file_path(c, SHA_ABC);
    ASSERT_OK(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &abc, NULL));
    ASSERT_EQ(truncate(path, 1), 0);
    ASSERT_OK(p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, &abc, NULL));
    ASSERT_EQ(atomic_load(&abc.calls), 2);
    ASSERT_TRUE(p2p__ccache_file_ok(c, SHA_ABC, 3));
    free(path);
    p2p__ccache_free(c);
}

typedef struct racer {
    const char *dir;
    fake_fetch *fetch;
    int rc;
    p2p_error err;
} racer;

/* Each racer opens its own handle, as another process would. */
static void *race(void *arg) {
    racer *r = arg;
    p2p__ccache *c = NULL;
    r->rc = p2p__ccache_open(r->dir, &c, &r->err);
    if (r->rc == 0)
        r->rc = p2p__ccache_ensure_file(c, SHA_ABC, 3, fetch_text, r->fetch, &r->err);
    if (r->rc == 0)
        r->rc = p2p__ccache_put_done(c, ID_A, "p2prpc_f", NULL, "{}", NULL, 0, &r->err);
    p2p__ccache_free(c);
    return NULL;
}

static void test_handles_share_one_download(void) {
    char dir[600];
    cache_dir(dir, sizeof(dir), "race");
    fake_fetch abc = {.text = "abc"};
    enum { N = 4 };
    pthread_t t[N];
    racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){dir, &abc, -1, {0}};
        ASSERT_EQ(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        if (r[i].rc != 0)
            fprintf(stderr, "racer %d: %s\n", i, r[i].err.msg);
        ASSERT_OK(r[i].rc);
    }
    ASSERT_EQ(atomic_load(&abc.calls), 1);
}

static void test_open_errors(void) {
    char file[600];
    cache_dir(file, sizeof(file), "plain_file");
    FILE *fp = fopen(file, "w");
    ASSERT_TRUE(fp != NULL);
    fclose(fp);
    p2p__ccache *c = NULL;
    p2p_error err;
    ASSERT_EQ(p2p__ccache_open(file, &c, &err), P2P_EIO);
    ASSERT_TRUE(c == NULL);
}

int main(void) {
    make_tmp_dir();
    TEST_RUN(test_entries);
    TEST_RUN(test_files_shared_and_forgotten);
    TEST_RUN(test_bad_downloads);
    TEST_RUN(test_handles_share_one_download);
    TEST_RUN(test_open_errors);
    return 0;
}
