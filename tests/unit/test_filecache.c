#include "filecache.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_ABD "a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9"

static char tmp_dir[512];

static void make_tmp_dir(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/filecache_%d", base ? base : "/tmp", (int)getpid());
    if (base != NULL)
        mkdir(base, 0700);
    ASSERT_EQ(mkdir(tmp_dir, 0700), 0);
}

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

/* Overwrites the file in place (same inode), as an editor saving would. */
static void write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, data, len), (ssize_t)len);
    ASSERT_EQ(close(fd), 0);
}

/* A fixed mtime well in the past, so the entry is not "racy" and is stored. */
static void set_mtime(const char *path, time_t sec, long nsec) {
    struct timespec times[2] = {{0, UTIME_OMIT}, {sec, nsec}};
    ASSERT_EQ(utimensat(AT_FDCWD, path, times, 0), 0);
}

#define OLD_MTIME ((time_t)1600000000)

static p2p_filecache *open_cache(const char *name) {
    char path[600];
    tmp_path(path, sizeof(path), name);
    p2p_filecache *c = NULL;
    p2p_error err = {0};
    if (p2p_filecache_open(path, &c, &err) != 0)
        TEST_FAIL_("open %s: %s", path, err.msg);
    return c;
}

static p2p_filecache_stats stats_of(const p2p_filecache *c) {
    p2p_filecache_stats s;
    p2p_filecache_get_stats(c, &s);
    return s;
}

static void hash_ok(p2p_filecache *c, const char *path, const char *expected) {
    char hex[P2P_HASH_HEX_LEN + 1];
    p2p_error err = {0};
    if (p2p_filecache_hash(c, path, hex, &err) != 0)
        TEST_FAIL_("hash %s: %s", path, err.msg);
    ASSERT_STR_EQ(hex, expected);
}

/* The trick that shows a hit did not read the file: change the content but
 * restore the size and the mtime (the key); the cache must answer the old hash.
 * Then a new mtime (one nanosecond later) must give the new one. */
static void test_hit_avoids_rehash_and_mtime_invalidates(void) {
    p2p_filecache *c = open_cache("hit.db");
    char path[600];
    tmp_path(path, sizeof(path), "hit.txt");
    write_file(path, "abc", 3);
    set_mtime(path, OLD_MTIME, 5);
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).misses, 1);
    ASSERT_EQ(stats_of(c).stored, 1);
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).hits, 1);

    write_file(path, "abd", 3);
    set_mtime(path, OLD_MTIME, 5);
    hash_ok(c, path, SHA_ABC); /* stale on purpose: the key did not change */
    ASSERT_EQ(stats_of(c).hits, 2);
    ASSERT_EQ(stats_of(c).misses, 1);

    set_mtime(path, OLD_MTIME, 6);
    hash_ok(c, path, SHA_ABD);
    ASSERT_EQ(stats_of(c).misses, 2);
    hash_ok(c, path, SHA_ABD);
    ASSERT_EQ(stats_of(c).hits, 3);
    /* Size is part of the key too, at the same mtime. */
    write_file(path, "abcd", 4);
    set_mtime(path, OLD_MTIME, 6);
    hash_ok(c, path, "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
    ASSERT_EQ(stats_of(c).misses, 3);
    p2p_filecache_free(c);
    unlink(path);
}

static void test_recent_files_are_not_stored(void) {
    p2p_filecache *c = open_cache("racy.db");
    char path[600];
    tmp_path(path, sizeof(path), "racy.txt");
    write_file(path, "abc", 3); /* mtime = now */
    hash_ok(c, path, SHA_ABC);
    hash_ok(c, path, SHA_ABC);
    p2p_filecache_stats s = stats_of(c);
    ASSERT_EQ(s.misses, 2);
    ASSERT_EQ(s.hits, 0);
    ASSERT_EQ(s.stored, 0);
    ASSERT_EQ(s.not_stored, 2);
    /* An mtime in the future (year 2500) is not stored either. */
    set_mtime(path, (time_t)16725225600, 0);
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).not_stored, 3);
    /* Ten seconds old is old enough. */
    set_mtime(path, time(NULL) - 10, 0);
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).stored, 1);
    p2p_filecache_free(c);
    unlink(path);
}

static void test_two_handles_and_reopen(void) {
    p2p_filecache *a = open_cache("shared.db");
    p2p_filecache *b = open_cache("shared.db");
    char path[600];
    tmp_path(path, sizeof(path), "shared.txt");
    write_file(path, "abc", 3);
    set_mtime(path, OLD_MTIME, 0);
    hash_ok(a, path, SHA_ABC);
    hash_ok(b, path, SHA_ABC);
    ASSERT_EQ(stats_of(a).misses, 1);
    ASSERT_EQ(stats_of(b).hits, 1);
    ASSERT_EQ(stats_of(b).misses, 0);
    p2p_filecache_free(a);
    p2p_filecache_free(b);
    p2p_filecache *c = open_cache("shared.db");
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).hits, 1);
    p2p_value v;
    p2p_value_init(&v);
    ASSERT_OK(p2p_filecache_file_value(c, path, &v, NULL));
    ASSERT_EQ(v.type, P2P_TYPE_FILE);
    ASSERT_STR_EQ(v.as.file.path, path);
    ASSERT_STR_EQ(v.as.file.hash, SHA_ABC);
    ASSERT_EQ(v.as.file.size, 3);
    p2p_value_cleanup(&v);
    p2p_filecache_free(c);
    p2p_filecache_free(NULL);
    unlink(path);
}

typedef struct opener {
    char path[600];
    int rc;
    p2p_error err;
} opener;

static void *open_and_close(void *arg) {
    opener *o = arg;
    p2p_filecache *c = NULL;
    o->rc = p2p_filecache_open(o->path, &c, &o->err);
    p2p_filecache_free(c);
    return NULL;
}

/* Several processes opening one new cache at the same moment (the clients
 * of one cache_path starting together): every open succeeds. Switching a new
 * database to WAL answers "database is locked" at once, without the busy
 * handler, to all but one of them; the open retries. 20 new databases, 4
 * openers each. */
static void test_concurrent_first_opens(void) {
    enum { ROUNDS = 20, N = 4 };
    for (int round = 0; round < ROUNDS; round++) {
        char name[64];
        snprintf(name, sizeof(name), "race%d.db", round);
        pthread_t t[N];
        opener o[N];
        for (int i = 0; i < N; i++) {
            o[i] = (opener){.rc = -1};
            tmp_path(o[i].path, sizeof(o[i].path), name);
            ASSERT_EQ(pthread_create(&t[i], NULL, open_and_close, &o[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            ASSERT_EQ(pthread_join(t[i], NULL), 0);
            if (o[i].rc != 0)
                TEST_FAIL_("round %d, opener %d: %s", round, i, o[i].err.msg);
        }
    }
}

static void test_prune_keeps_the_most_recently_used(void) {
    p2p_filecache *c = open_cache("prune.db");
    char paths[5][600];
    char hashes[5][P2P_HASH_HEX_LEN + 1];
    for (int i = 0; i < 5; i++) {
        char name[32], content[8];
        snprintf(name, sizeof(name), "prune%d.txt", i);
        snprintf(content, sizeof(content), "f%d", i);
        tmp_path(paths[i], sizeof(paths[i]), name);
        write_file(paths[i], content, strlen(content));
        set_mtime(paths[i], OLD_MTIME, 0);
        ASSERT_OK(p2p_hash_bytes_hex(content, strlen(content), hashes[i], NULL));
        hash_ok(c, paths[i], hashes[i]);
    }
    /* Using file 0 again makes file 1 and 2 the least recently used. */
    hash_ok(c, paths[0], hashes[0]);
    ASSERT_OK(p2p_filecache_set_max_entries(c, 3, NULL));
    p2p_filecache_stats before = stats_of(c);
    for (int i = 0; i < 5; i++)
        hash_ok(c, paths[(i + 3) % 5], hashes[(i + 3) % 5]); /* 3, 4, 0 first: still there */
    p2p_filecache_stats after = stats_of(c);
    ASSERT_EQ(after.hits - before.hits, 3);
    ASSERT_EQ(after.misses - before.misses, 2);
    p2p_filecache_free(c);
    for (int i = 0; i < 5; i++)
        unlink(paths[i]);
}

typedef struct toucher {
    const char *path;
    atomic_int stop;
    atomic_int touches;
} toucher;

/* Moves the file's mtime forward by one nanosecond every 200 us; the content
 * never changes, so every successful hash is still right. */
static void *touch_loop(void *arg) {
    toucher *t = arg;
    struct timespec pause = {0, 200000};
    for (long i = 1; i < 200000 && !atomic_load(&t->stop); i++) {
        set_mtime(t->path, OLD_MTIME, i);
        atomic_fetch_add(&t->touches, 1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void test_change_during_hashing_is_not_stored(void) {
    p2p_filecache *c = open_cache("change.db");
    char path[600], expected[P2P_HASH_HEX_LEN + 1];
    tmp_path(path, sizeof(path), "change.bin");
    /* 32 MiB takes a few tens of milliseconds to hash: many touches long. */
    size_t len = (size_t)32 << 20;
    char *data = calloc(1, len);
    ASSERT_TRUE(data != NULL);
    write_file(path, data, len);
    ASSERT_OK(p2p_hash_bytes_hex(data, len, expected, NULL));
    free(data);
    toucher t = {.path = path};
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, touch_loop, &t), 0);
    for (int i = 0; i < 1000 && atomic_load(&t.touches) == 0; i++)
        usleep(1000);
    int conflicts = 0, successes = 0;
    for (int attempt = 0; attempt < 5 && conflicts == 0; attempt++) {
        char hex[P2P_HASH_HEX_LEN + 1];
        p2p_error err = {0};
        int rc = p2p_filecache_hash(c, path, hex, &err);
        if (rc == P2P_ECONFLICT) {
            ASSERT_STR_CONTAINS(err.msg, "changed while it was hashed");
            conflicts++;
        } else {
            ASSERT_OK(rc);
            ASSERT_STR_EQ(hex, expected);
            successes++;
        }
    }
    atomic_store(&t.stop, 1);
    ASSERT_EQ(pthread_join(thread, NULL), 0);
    ASSERT_EQ(conflicts, 1);
    ASSERT_EQ(stats_of(c).stored, (uint64_t)successes);
    /* Once the file is still, it is hashed and stored. */
    hash_ok(c, path, expected);
    ASSERT_EQ(stats_of(c).stored, (uint64_t)successes + 1);
    p2p_filecache_free(c);
    unlink(path);
}

/* procfs files are regular but say size 0 and read as more: what is read
 * does not match what stat said, which the cache must refuse. */
static void test_size_mismatch_is_refused(void) {
    p2p_filecache *c = open_cache("proc.db");
    char hex[P2P_HASH_HEX_LEN + 1];
    p2p_error err;
    ASSERT_EQ(p2p_filecache_hash(c, "/proc/self/status", hex, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "size 0");
    ASSERT_EQ(stats_of(c).stored, 0);
    p2p_filecache_free(c);
}

/* Another connection holds the write lock: the hash still comes back, the
 * failure to store is counted and logged, not returned. */
static void test_locked_database_still_hashes(void) {
    p2p_filecache *c = open_cache("locked.db");
    p2p_filecache_set_busy_timeout(c, 50);
    char db_path[600], path[600];
    tmp_path(db_path, sizeof(db_path), "locked.db");
    tmp_path(path, sizeof(path), "locked.txt");
    write_file(path, "abc", 3);
    set_mtime(path, OLD_MTIME, 0);
    sqlite3 *other = NULL;
    ASSERT_EQ(sqlite3_open(db_path, &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    hash_ok(c, path, SHA_ABC);
    p2p_filecache_stats s = stats_of(c);
    ASSERT_EQ(s.misses, 1);
    ASSERT_EQ(s.stored, 0);
    ASSERT_EQ(s.not_stored, 1);
    ASSERT_EQ(s.db_errors, 1);
    ASSERT_EQ(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    hash_ok(c, path, SHA_ABC);
    ASSERT_EQ(stats_of(c).stored, 1);
    /* set_max_entries reports the lock rather than hiding it. */
    ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    p2p_error err;
    ASSERT_EQ(p2p_filecache_set_max_entries(c, 10, &err), P2P_EUNAVAIL);
    ASSERT_STR_CONTAINS(err.msg, "locked");
    ASSERT_EQ(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    p2p_filecache_free(c);
    unlink(path);
}

static void test_errors(void) {
    p2p_filecache *c = open_cache("errors.db");
    char hex[P2P_HASH_HEX_LEN + 1], path[600];
    p2p_error err;
    tmp_path(path, sizeof(path), "nothing.txt");
    ASSERT_EQ(p2p_filecache_hash(c, path, hex, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "nothing.txt");
    ASSERT_EQ(p2p_filecache_hash(c, tmp_dir, hex, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "not a regular file");
    ASSERT_EQ(p2p_filecache_hash(c, NULL, hex, &err), P2P_EINVAL);
    p2p_value v;
    p2p_value_init(&v);
    ASSERT_EQ(p2p_filecache_file_value(c, path, &v, &err), P2P_ENOTFOUND);
    ASSERT_EQ(v.type, 0);
    p2p_filecache_free(c);

    p2p_filecache *none = NULL;
    tmp_path(path, sizeof(path), "no/such/dir/cache.db");
    ASSERT_EQ(p2p_filecache_open(path, &none, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "cache.db");
    ASSERT_TRUE(none == NULL);
    ASSERT_EQ(p2p_filecache_open(NULL, &none, &err), P2P_EINVAL);

    /* A cache written by a newer release is refused, not rewritten. */
    tmp_path(path, sizeof(path), "future.db");
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ASSERT_EQ(p2p_filecache_open(path, &none, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "newer than this program");
    /* Not a database at all. */
    tmp_path(path, sizeof(path), "garbage.db");
    write_file(path, "this is not an SQLite database, not at all...", 45);
    ASSERT_EQ(p2p_filecache_open(path, &none, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "not a database");
}

static void remove_tmp_dir(void) {
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    ASSERT_EQ(system(cmd), 0);
}

int main(void) {
    make_tmp_dir();
    TEST_RUN(test_hit_avoids_rehash_and_mtime_invalidates);
    TEST_RUN(test_recent_files_are_not_stored);
    TEST_RUN(test_two_handles_and_reopen);
    TEST_RUN(test_concurrent_first_opens);
    TEST_RUN(test_prune_keeps_the_most_recently_used);
    TEST_RUN(test_change_during_hashing_is_not_stored);
    TEST_RUN(test_size_mismatch_is_refused);
    TEST_RUN(test_locked_database_still_hashes);
    TEST_RUN(test_errors);
    remove_tmp_dir();
    return 0;
}
