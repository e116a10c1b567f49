/* The broker's blob store: commit, read (whole, piece by piece, at an
 * offset), removal, totals kept across reopen, leftovers of a crash, the
 * sweep listing, concurrent commits of one blob, and a large blob read in
 * pieces. A conformance test (store_test_util.h): it runs on the disk backend
 * and (P2PRPC_TEST_STORE=mongodb) on GridFS, with the same expectations,
 * except the disk's file layout (disk only), and how many of several
 * concurrent commits of one blob say they created it (exactly one on disk;
 * on GridFS each that saw no other copy, see blobstore_gridfs.c; remove
 * deletes every copy, the totals count the blob once). On GridFS, two
 * handles on one database (two brokers) also serve each other's blobs. */
#include "blobstore.h"
#include "fsutil.h"
#include "hash.h"
#include "store_test_util.h"
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

/* Opens the blob store `name` of the backend under test: the directory
 * ROOT/NAME, or the GridFS bucket of a database of its own with uploads
 * received in ROOT/NAME/tmp. */
static p2p_blobstore *bs_open(const char *name, bool fsync) {
    char *dir = dir_of(name);
    p2p_blobstore *bs = NULL;
    p2p_error err;
    int rc;
    if (st_mongo()) {
        char uri[1024], tmp[700];
        st_location(root, name, uri, sizeof(uri));
        snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
        rc = p2p_blobstore_open_gridfs(uri, tmp, fsync, &bs, &err);
    } else {
        rc = p2p_blobstore_open(dir, fsync, &bs, &err);
    }
    if (rc != 0)
        TEST_FAIL_("cannot open blob store %s: %s", name, err.msg);
    ASSERT_STR_EQ(p2p_blobstore_backend(bs), st_mongo() ? "gridfs" : "disk");
    free(dir);
    return bs;
}

/* Reads all of blob `hash` with a reader, `piece` bytes at a time, into a
 * new buffer (caller frees); checks the size it announced. */
static char *read_whole(p2p_blobstore *bs, const char *hash, size_t piece, uint64_t *size) {
    p2p_blob_reader *r = NULL;
    ASSERT_OK(p2p_blobstore_read(bs, hash, &r, size, NULL));
    char *data = malloc(*size + 1);
    ASSERT_TRUE(data != NULL);
    uint64_t at = 0;
    /* Short reads are fine (a GridFS reader stops at its chunk's end); each
     * read returns at least a byte, which bounds the loop. */
    for (uint64_t i = 0; i <= *size && at < *size; i++) {
        size_t want = piece < *size - at ? piece : (size_t)(*size - at);
        int64_t n = p2p_blob_reader_pread(r, data + at, want, at, NULL);
        ASSERT_GT(n, 0);
        at += (uint64_t)n;
    }
    ASSERT_EQ(at, *size);
    ASSERT_EQ(p2p_blob_reader_pread(r, data, 1, *size, NULL), 0); /* the end */
    p2p_blob_reader_free(r);
    data[*size] = '\0';
    return data;
}

/* The blob "hello blob" through a reader: in pieces, at an offset, and its
 * descriptor (disk only: zero-copy sending needs a file). */
static void check_reader(p2p_blobstore *bs, const char *hash) {
    uint64_t size = 0;
    char *whole = read_whole(bs, hash, 3, &size);
    ASSERT_EQ(size, 10);
    ASSERT_STR_EQ(whole, "hello blob");
    free(whole);
    p2p_blob_reader *reader = NULL;
    char buf[8];
    ASSERT_OK(p2p_blobstore_read(bs, hash, &reader, &size, NULL));
    ASSERT_EQ(p2p_blob_reader_pread(reader, buf, 4, 6, NULL), 4); /* at an offset */
    ASSERT_MEM_EQ(buf, "blob", 4);
    int taken = p2p_blob_reader_take_fd(reader);
    ASSERT_TRUE(st_mongo() ? taken == -1 : taken >= 0);
    if (taken >= 0)
        close(taken);
    p2p_blob_reader_free(reader);
}

static void test_commit_read_remove(void) {
    char *dir = dir_of("basic");
    p2p_blobstore *bs = bs_open("basic", false);
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
    ASSERT_NE(access(tmp, F_OK), 0); /* moved (disk) or stored and dropped (GridFS) */
    if (!st_mongo()) {
        /* The layout: DIR/ab/abcdef... */
        char expected[800];
        snprintf(expected, sizeof(expected), "%s/%.2s/%s", dir, hash, hash);
        char on_disk[P2P_HASH_HEX_LEN + 1];
        ASSERT_OK(p2p_hash_file(expected, on_disk, NULL));
        ASSERT_STR_EQ(on_disk, hash);
    }

    uint64_t size = 0;
    ASSERT_OK(p2p_blobstore_stat(bs, hash, &size, NULL));
    ASSERT_EQ(size, 10);
    int fd = -1;
    ASSERT_OK(p2p_blobstore_open_blob(bs, hash, &fd, &size, NULL));
    char buf[32] = {0};
    ASSERT_EQ(read(fd, buf, sizeof(buf)), 10);
    ASSERT_STR_EQ(buf, "hello blob");
    close(fd);
    check_reader(bs, hash);
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
    p2p_blob_reader *reader = NULL;
    ASSERT_EQ(p2p_blobstore_read(bs, hash, &reader, &size, &err), P2P_ENOTFOUND);
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 0);
    ASSERT_EQ(bytes, 0);
    p2p_blobstore_free(bs);
    p2p_blobstore_free(NULL);
    free(dir);
}

static void test_bad_hashes(void) {
    p2p_blobstore *bs = bs_open("bad", false);
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
    p2p_blobstore_free(bs);
    bs = NULL;
    ASSERT_EQ(p2p_blobstore_open(NULL, false, &bs, &err), P2P_EINVAL);
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s/bad-uri-tmp", root);
    ASSERT_EQ(p2p_blobstore_open_gridfs("mongodb://[::1", tmp, false, &bs, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_blobstore_open_gridfs("mongodb://127.0.0.1:1/x", NULL, false, &bs, &err),
              P2P_EINVAL);
    ASSERT_TRUE(bs == NULL);
}

static void test_reopen_totals_and_leftovers(void) {
    char *dir = dir_of("reopen");
    p2p_blobstore *bs = bs_open("reopen", true); /* fsync (durable) mode too */
    const char *texts[] = {"one", "two two", "three three three"};
    for (size_t i = 0; i < 3; i++) {
        char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
        hash_of(texts[i], hash);
        make_upload(bs, texts[i], tmp, sizeof(tmp));
        ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, NULL, NULL));
    }
    /* An upload in flight when the broker died, and (disk) a stray file in a
     * shard. */
    char tmp[700], stray[800];
    make_upload(bs, "partial", tmp, sizeof(tmp));
    char hash[P2P_HASH_HEX_LEN + 1];
    hash_of("one", hash);
    snprintf(stray, sizeof(stray), "%s/%.2s/not-a-hash", dir, hash);
    if (!st_mongo())
        ASSERT_OK(p2p_fs_write_atomic(stray, "x", 1, 0600, NULL));
    p2p_blobstore_free(bs);

    bs = bs_open("reopen", false);
    uint64_t count = 0, bytes = 0;
    p2p_blobstore_totals(bs, &count, &bytes);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(bytes, 3 + 7 + 17);
    ASSERT_NE(access(tmp, F_OK), 0); /* the unfinished upload is gone */
    if (!st_mongo())
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

/* Makes blob `hash` look last used a day ago: its file's mtime (disk), its
 * metadata.touched_ms (GridFS, blobstore.h). */
static void age_by_a_day(const char *dir, const char *name, const char *hash) {
    if (!st_mongo()) {
        char path[800];
        snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hash, hash);
        struct timespec times[2] = {{time(NULL) - 86400, 0}, {time(NULL) - 86400, 0}};
        ASSERT_EQ(utimensat(AT_FDCWD, path, times, 0), 0);
        return;
    }
    char uri[1024];
    st_location(root, name, uri, sizeof(uri));
    mongoc_uri_t *u = mongoc_uri_new(uri);
    ASSERT_TRUE(u != NULL);
    mongoc_client_t *client = mongoc_client_new_from_uri(u);
    mongoc_collection_t *files =
        mongoc_client_get_collection(client, mongoc_uri_get_database(u), "blobs.files");
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(hash));
    bson_t *update = BCON_NEW("$set", "{", "metadata.touched_ms",
                              BCON_INT64(((int64_t)time(NULL) - 86400) * 1000), "}");
    bson_error_t error;
    if (!mongoc_collection_update_many(files, filter, update, NULL, NULL, &error))
        TEST_FAIL_("ageing %s: %s", hash, error.message);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(u);
}

static void test_list_old_and_touch(void) {
    char *dir = dir_of("old");
    p2p_blobstore *bs = bs_open("old", false);
    char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
    hash_of("old blob", hash);
    make_upload(bs, "old blob", tmp, sizeof(tmp));
    ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, NULL, NULL));
    unsigned shard = 0;
    ASSERT_EQ(sscanf(hash, "%2x", &shard), 1);
    age_by_a_day(dir, "old", hash);

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
    p2p_blobstore *bs = bs_open("race", false);
    char hash[P2P_HASH_HEX_LEN + 1];
    hash_of("raced", hash);
    int said_created = 0;
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
        uint64_t count = 0, bytes = 0, size = 0;
        p2p_blobstore_totals(bs, &count, &bytes);
        said_created += created;
        /* The totals count the blob once. On disk exactly one upload became
         * the blob; GridFS uploads that saw no other copy when they looked
         * each say "created" and may keep identical copies (blobstore_gridfs.c). */
        ASSERT_TRUE(st_mongo() ? created >= 1 && created <= 4 : created == 1);
        ASSERT_EQ(count, 1);
        ASSERT_EQ(bytes, 5);
        char *whole = read_whole(bs, hash, 2, &size);
        ASSERT_STR_EQ(whole, "raced");
        free(whole);
        ASSERT_OK(p2p_blobstore_remove(bs, hash, NULL, NULL));
        ASSERT_EQ(p2p_blobstore_stat(bs, hash, &size, NULL), P2P_ENOTFOUND); /* every copy */
    }
    fprintf(stderr, "   20 rounds of 4 racing commits: %d said created\n", said_created);
    p2p_blobstore_free(bs);
}

/* A blob of many GridFS chunks (255 KiB each) or disk pages: read whole in
 * pieces that straddle chunks, and at offsets inside chunks (Range). */
static void test_large_blob(void) {
    p2p_blobstore *bs = bs_open("large", false);
    size_t len = 3 * 1024 * 1024 + 12345;
    char *data = malloc(len);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 131 + i / 4093);
    char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
    ASSERT_OK(p2p_hash_bytes_hex(data, len, hash, NULL));
    snprintf(tmp, sizeof(tmp), "%s/upload-%d", p2p_blobstore_tmp_dir(bs), counter++);
    ASSERT_OK(p2p_fs_write_atomic(tmp, data, len, 0600, NULL));
    ASSERT_OK(p2p_blobstore_commit(bs, hash, tmp, NULL, NULL));
    uint64_t size = 0;
    char *back = read_whole(bs, hash, 100000, &size);
    ASSERT_EQ(size, len);
    ASSERT_MEM_EQ(back, data, len);
    free(back);
    p2p_blob_reader *r = NULL;
    ASSERT_OK(p2p_blobstore_read(bs, hash, &r, &size, NULL));
    char buf[4096];
    const uint64_t offsets[] = {len - 10, 255 * 1024 - 7, 1, 2 * 255 * 1024 + 1000, 0};
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        size_t want = sizeof(buf) < len - offsets[i] ? sizeof(buf) : len - offsets[i];
        int64_t n = p2p_blob_reader_pread(r, buf, want, offsets[i], NULL);
        ASSERT_GT(n, 0);
        ASSERT_LE(n, (int64_t)want);
        ASSERT_MEM_EQ(buf, data + offsets[i], (size_t)n);
    }
    p2p_blob_reader_free(r);
    ASSERT_OK(p2p_blobstore_remove(bs, hash, &size, NULL));
    ASSERT_EQ(size, len);
    free(data);
    p2p_blobstore_free(bs);
}

/* GridFS: two handles on one database (two brokers) serve each other's
 * blobs; a removal through one is seen by the other. */
static void test_shared_bucket(void) {
    if (!st_mongo())
        return; /* one directory per broker on disk (blobstore.h) */
    p2p_blobstore *a = bs_open("shared", false);
    p2p_blobstore *b = bs_open("shared", false);
    char hash[P2P_HASH_HEX_LEN + 1], tmp[700];
    hash_of("shared blob", hash);
    make_upload(a, "shared blob", tmp, sizeof(tmp));
    bool created = false;
    ASSERT_OK(p2p_blobstore_commit(a, hash, tmp, &created, NULL));
    ASSERT_TRUE(created);
    uint64_t size = 0;
    char *got = read_whole(b, hash, 4, &size);
    ASSERT_STR_EQ(got, "shared blob");
    free(got);
    make_upload(b, "shared blob", tmp, sizeof(tmp));
    ASSERT_OK(p2p_blobstore_commit(b, hash, tmp, &created, NULL));
    ASSERT_FALSE(created); /* b knows it exists */
    ASSERT_OK(p2p_blobstore_remove(b, hash, NULL, NULL));
    p2p_error err;
    ASSERT_EQ(p2p_blobstore_stat(a, hash, &size, &err), P2P_ENOTFOUND);
    p2p_blobstore_free(b);
    p2p_blobstore_free(a);
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
    TEST_RUN(test_large_blob);
    TEST_RUN(test_shared_bucket);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? st_exit_status() : 1;
}
