/* The broker's blob store on disk: layout, atomic no-replace commit, totals
 * kept across reopen, removal, leftovers of a crash, the sweep listing, and
 * concurrent commits of one blob. */
#include "blobstore.h"
#include "fsutil.h"
#include "hash.h"
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char root[512];
static int counter;

/* A temp file with `text` in the store's tmp dir; its path into `path`. */
static void make_upload(p2p_blobstore *bs, const char *text, char *path, size_t size) {
    snprintf(path, size, "%s/upload-%d", p2p_blobstore_tmp_dir(bs), counter++);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ASSERT_EQ(close(fd), 0);
}

static void hash_of(const char *text, char out[P2P_HASH_HEX_LEN + 1]) {
    ASSERT_OK(p2p_hash_bytes_hex(text, strlen(text), out, NULL));
}

static char *dir_of(const char *name) {
    char *d = p2p_fs_join(root, name);
    ASSERT_TRUE(d != NULL);
    return d;
}

static void test_commit_read_remove(void) {
    char *dir = dir_of("basic");
    p2p_blobstore *bs = NULL;
    ASSERT_OK(p2p_blobstore_open(dir, false, &bs, NULL));
    uint64_t count = 9, bytes = 9;
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 0);
    ASSERT_EQ(bytes, 0);

    char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
    hash_of("hello blob", hash);
    make_upload(bs, "hello blob", tmp, sizeof(tmp));
    bool created = false;
    ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, &created, NULL));
    ASSERT_TRUE(created);
    ASSERT_NE(access(tmp, F_OK), 0); /* moved, not copied */
    /* The layout: DIR/ab/abcdef... */
    char expected[800];
    snprintf(expected, sizeof(expected), "%s/%.2s/%s", dir, hash, hash);
    char on_disk[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_file(expected, on_disk, NULL));
    ASSERT_STR_EQ(on_disk, hash);

    uint64_t size = 0;
    ASSERT_OK(p2p_blobstore_stat(bs, hash, &size, NULL));
    ASSERT_EQ(size, 10);
    int fd = -1;
    ASSERT_OK(p2p_blobstore_open_blob(bs, hash, &fd, &size, NULL));
    char buf[32] = {0};
    ASSERT_EQ(read(fd, buf, sizeof(buf)), 10);
    ASSERT_STR_EQ(buf, "hello blob");
    close(fd);
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 1);
    ASSERT_EQ(bytes, 10);

    /* The same content again: the existing blob stays, the upload goes. */
    make_upload(bs, "hello blob", tmp, sizeof(tmp));
    ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, &created, NULL));
    ASSERT_FALSE(created);
    ASSERT_NE(access(tmp, F_OK), 0);
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 1);

    ASSERT_OK(p2p_blobstore_remove(bs, hash, &size, NULL));
    ASSERT_EQ(size, 10);
    p2p_error err = {0};
    ASSERT_EQ(p2p_blobstore_remove(bs, hash, NULL, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_blobstore_stat(bs, hash, &size, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_blobstore_open_blob(bs, hash, &fd, &size, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_blobstore_touch(bs, hash, &err), P2P_ENOTFOUND);
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 0);
    ASSERT_EQ(bytes, 0);
    p2p_blobstore_free(bs);
    p2p_blobstore_free(NULL);
    free(dir);
}

static void test_bad_hashes(void) {
    char *dir = dir_of("bad");
    p2p_blobstore *bs = NULL;
    ASSERT_OK(p2p_blobstore_open(dir, false, &bs, NULL));
    const char *bad[] = {"", "../../etc/passwd", "ABCDEF", NULL};
    char upper[P2P_HASH_HEX_LEN + 1];
    hash_of("x", upper);
    upper[0] = 'A';
    uint64_t size = 0;
    p2p_error err = {0};
    for (size_t i = 0; i < 5; i++) {
        const char *h = i < 3 ? bad[i] : i == 3 ? upper : NULL;
        ASSERT_EQ(p2p_blobstore_stat(bs, h, &size, &err), P2P_EINVAL);
        ASSERT_EQ(p2p_blobstore_remove(bs, h, NULL, &err), P2P_EINVAL);
        /* The upload is dropped, never placed under a made-up name. */
        char tmp[700];
        make_upload(bs, "x", tmp, sizeof(tmp));
        ASSERT_EQ(p2p_blobstore_commit(bs, h, tmp, NULL, &err), P2P_EINVAL);
        ASSERT_NE(access(tmp, F_OK), 0);
    }
    ASSERT_EQ(p2p_blobstore_open(NULL, false, &bs, &err) == P2P_EINVAL, 1);
    p2p_blobstore_free(bs);
    free(dir);
}

static void test_reopen_totals_and_leftovers(void) {
    char *dir = dir_of("reopen");
    p2p_blobstore *bs = NULL;
    ASSERT_OK(p2p_blobstore_open(dir, true, &bs, NULL)); /* fsync mode too */
    const char *texts[] = {"one", "two two", "three three three"};
    for (size_t i = 0; i < 3; i++) {
        char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
        hash_of(texts[i], hash);
        make_upload(bs, texts[i], tmp, sizeof(tmp));
        ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, NULL, NULL));
    }
    /* An upload in flight when the broker died, and a stray file in a shard. */
    char tmp[700], stray[800];
    make_upload(bs, "partial", tmp, sizeof(tmp));
    char hash[P2P_HASH_HEX_LEN + 1];
    hash_of("one", hash);
    snprintf(stray, sizeof(stray), "%s/%.2s/not-a-hash", dir, hash);
    ASSERT_OK(p2p_fs_write_atomic(stray, "x", 1, 0600, NULL));
    p2p_blobstore_free(bs);

    ASSERT_OK(p2p_blobstore_open(dir, false, &bs, NULL));
    uint64_t count = 0, bytes = 0;
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(bytes, 3 + 7 + 17);
    ASSERT_NE(access(tmp, F_OK), 0);   /* the unfinished upload is gone */
    ASSERT_EQ(access(stray, F_OK), 0); /* what is not a blob is left alone */
    p2p_blobstore_free(bs);
    free(dir);
}

typedef struct visit_log {
    int n;
    char last[P2P_HASH_HEX_LEN + 1];
} visit_log;

static int visit(void *ctx, const char *hash) {
    visit_log *v = ctx;
    v->n++;
    snprintf(v->last, sizeof(v->last), "%s", hash);
    return 0;
}

static void test_list_old_and_touch(void) {
    char *dir = dir_of("old");
    p2p_blobstore *bs = NULL;
    ASSERT_OK(p2p_blobstore_open(dir, false, &bs, NULL));
    char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
    hash_of("old blob", hash);
    make_upload(bs, "old blob", tmp, sizeof(tmp));
    ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, NULL, NULL));
    unsigned shard = 0;
    ASSERT_EQ(sscanf(hash, "%2x", &shard), 1);
    /* Age it by a day. */
    char path[800];
    snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hash, hash);
    struct timespec times[2] = {{time(NULL) - 86400, 0}, {time(NULL) - 86400, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, path, times, 0), 0);

    visit_log v = {0};
    ASSERT_OK(p2p_blobstore_list_old(bs, shard, time(NULL) - 3600, visit, &v, NULL));
    ASSERT_EQ(v.n, 1);
    ASSERT_STR_EQ(v.last, hash);
    /* Other shards and a cutoff before its mtime list nothing. */
    v.n = 0;
    ASSERT_OK(p2p_blobstore_list_old(bs, (shard + 1) % 256, time(NULL), visit, &v, NULL));
    ASSERT_OK(p2p_blobstore_list_old(bs, shard, time(NULL) - 2 * 86400, visit, &v, NULL));
    ASSERT_EQ(v.n, 0);
    /* A touch makes it young again. */
    ASSERT_OK(p2p_blobstore_touch(bs, hash, NULL));
    ASSERT_OK(p2p_blobstore_list_old(bs, shard, time(NULL) - 3600, visit, &v, NULL));
    ASSERT_EQ(v.n, 0);
    p2p_error err = {0};
    ASSERT_EQ(p2p_blobstore_list_old(bs, 256, 0, visit, &v, &err), P2P_EINVAL);
    p2p_blobstore_free(bs);
    free(dir);
}

typedef struct racer {
    p2p_blobstore *bs;
    const char *hash;
    char tmp[700];
    bool created;
    int rc;
} racer;

static void *race(void *arg) {
    racer *r = arg;
    r->rc = p2p_blobstore_commit(r->bs, r->hash, r->tmp, &r->created, NULL);
    return NULL;
}

static void test_concurrent_commits(void) {
    char *dir = dir_of("race");
    p2p_blobstore *bs = NULL;
    ASSERT_OK(p2p_blobstore_open(dir, false, &bs, NULL));
    char hash[P2P_HASH_HEX_LEN + 1];
    hash_of("raced", hash);
    for (int round = 0; round < 20; round++) {
        racer r[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            r[i] = (racer){.bs = bs, .hash = hash};
            make_upload(bs, "raced", r[i].tmp, sizeof(r[i].tmp));
        }
        for (int i = 0; i < 4; i++)
            ASSERT_EQ(pthread_create(&t[i], NULL, race, &r[i]), 0);
        int created = 0;
        for (int i = 0; i < 4; i++) {
            ASSERT_EQ(pthread_join(t[i], NULL), 0);
            ASSERT_OK(r[i].rc);
            created += r[i].created;
        }
        /* Exactly one upload became the blob; the totals count it once. */
        ASSERT_EQ(created, 1);
        uint64_t count = 0, bytes = 0;
        p2p_blobstore_totals(bs, &count, &bytes);
        ASSERT_EQ(count, 1);
        ASSERT_EQ(bytes, 5);
        ASSERT_OK(p2p_blobstore_remove(bs, hash, NULL, NULL));
    }
    p2p_blobstore_free(bs);
    free(dir);
}

int main(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    ASSERT_OK(p2p_fs_mkdirs(base ? base : "/tmp", 0700, NULL));
    snprintf(root, sizeof(root), "%s/blobstore.XXXXXX", base ? base : "/tmp");
    ASSERT_TRUE(mkdtemp(root) != NULL);
    TEST_RUN(test_commit_read_remove);
    TEST_RUN(test_bad_hashes);
    TEST_RUN(test_reopen_totals_and_leftovers);
    TEST_RUN(test_list_old_and_touch);
    TEST_RUN(test_concurrent_commits);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}
