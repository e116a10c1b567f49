#include "filecache.h"

#include "fsutil.h"
#include "log.h"
#include "sqlite_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* Bumped when the table changes; a newer file is refused, never rewritten. */
#define CACHE_FORMAT 1

struct p2p_filecache {
    sqlite3 *db;
    char *path;
    size_t max_entries;
    p2p_filecache_stats stats;
};

/* What stat(2) says about a file; the cache key plus what detects a change
 * during hashing (ctime catches a writer that restores the mtime meanwhile). */
typedef struct file_key {
    int64_t dev, ino, size, mtime_sec, mtime_nsec;
    struct timespec ctime;
} file_key;

/* A plain rowid table: the prune deletes by rowid through the last_used
 * index. dev and ino are stored as the int64 of their bits. */
static const char *const setup_sql =
    "CREATE TABLE IF NOT EXISTS file_hash ("
    " dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
    " mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,"
    " hash TEXT NOT NULL, last_used INTEGER NOT NULL,"
    " UNIQUE (dev, ino, size, mtime_sec, mtime_nsec));"
    "CREATE INDEX IF NOT EXISTS file_hash_last_used ON file_hash (last_used);";

static const char *const key_where =
    " WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_sec = ?4 AND mtime_nsec = ?5";

/* The one place SQLite's codes become p2p codes. */
static int db_error(p2p_filecache *c, sqlite3 *db, int src, const char *what, p2p_error *err) {
    int code = P2P_EIO;
    if (src == SQLITE_BUSY || src == SQLITE_LOCKED)
        code = P2P_EUNAVAIL;
    else if (src == SQLITE_NOMEM)
        code = P2P_ENOMEM;
    return p2p_error_set(err, code, "file cache %s: %s: %s", c->path, what,
                         db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int exec(p2p_filecache *c, const char *sql, p2p_error *err) {
    int src = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? 0 : db_error(c, c->db, src, sql, err);
}

static int prepare(p2p_filecache *c, const char *sql, sqlite3_stmt **stmt, p2p_error *err) {
    int src = sqlite3_prepare_v2(c->db, sql, -1, stmt, NULL);
    return src == SQLITE_OK ? 0 : db_error(c, c->db, src, "prepare", err);
}

/* Runs a statement that returns no row, and finalizes it. */
static int step_done(p2p_filecache *c, sqlite3_stmt *stmt, const char *what, p2p_error *err) {
    int src = sqlite3_step(stmt);
    int rc = src == SQLITE_DONE ? 0 : db_error(c, c->db, src, what, err);
    sqlite3_finalize(stmt);
    return rc;
}

static int prune(p2p_filecache *c, p2p_error *err);
static void db_warning(p2p_filecache *c, const p2p_error *e);

static int read_format(p2p_filecache *c, int *format, p2p_error *err) {
    sqlite3_stmt *stmt = NULL;
    int rc = prepare(c, "PRAGMA user_version", &stmt, err);
    if (rc != 0)
        return rc;
    int src = sqlite3_step(stmt);
    if (src == SQLITE_ROW)
        *format = sqlite3_column_int(stmt, 0);
    else
        rc = db_error(c, c->db, src, "read the format version", err);
    sqlite3_finalize(stmt);
    return rc;
}

static int setup(p2p_filecache *c, p2p_error *err) {
    int format = 0;
    /* journal_mode=WAL lets readers and one writer of several processes work
     * at once; synchronous=NORMAL is durable enough for a cache. */
    int src = p2p_sqlite_set_wal(c->db, P2P_FILECACHE_DEFAULT_BUSY_MS);
    int rc = src == SQLITE_OK ? 0 : db_error(c, c->db, src, "PRAGMA journal_mode = WAL", err);
    if (rc == 0)
        rc = exec(c, "PRAGMA synchronous = NORMAL", err);
    if (rc == 0)
        rc = read_format(c, &format, err);
    if (rc == 0 && format > CACHE_FORMAT)
        return p2p_error_set(err, P2P_EINVAL,
                             "file cache %s has format %d, newer than this program's (%d)", c->path,
                             format, CACHE_FORMAT);
    /* One IMMEDIATE transaction waits for the write lock (busy timeout), where
     * statements of their own could fail at once on a lock upgrade when
     * several processes open a new cache together. */
    if (rc == 0)
        rc = exec(c, "BEGIN IMMEDIATE", err);
    if (rc != 0)
        return rc;
    rc = exec(c, setup_sql, err);
    if (rc == 0 && format < CACHE_FORMAT)
        rc = exec(c, "PRAGMA user_version = 1", err);
    if (rc == 0)
        return exec(c, "COMMIT", err);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int p2p_filecache_open(const char *path, p2p_filecache **out, p2p_error *err) {
    if (path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "no file cache path given");
    p2p_filecache *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->path = strdup(path)) == NULL) {
        free(c);
        return p2p_error_set(err, P2P_ENOMEM, "cannot allocate a file cache");
    }
    c->max_entries = P2P_FILECACHE_DEFAULT_MAX_ENTRIES;
    int src = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    int rc = src == SQLITE_OK ? 0 : db_error(c, c->db, src, "open", err);
    if (rc == 0) {
        sqlite3_busy_timeout(c->db, P2P_FILECACHE_DEFAULT_BUSY_MS);
        rc = setup(c, err);
    }
    if (rc != 0) {
        p2p_filecache_free(c);
        return rc;
    }
    p2p_error prune_err = {0};
    if (prune(c, &prune_err) != 0)
        db_warning(c, &prune_err);
    *out = c;
    return 0;
}

void p2p_filecache_free(p2p_filecache *c) {
    if (c == NULL)
        return;
    sqlite3_close(c->db);
    free(c->path);
    free(c);
}

void p2p_filecache_get_stats(const p2p_filecache *c, p2p_filecache_stats *out) {
    *out = c->stats;
}

void p2p_filecache_set_busy_timeout(p2p_filecache *c, int ms) {
    sqlite3_busy_timeout(c->db, ms < 0 ? 0 : ms);
}

/* Keeps the `max_entries` most recently used rows. */
static int prune(p2p_filecache *c, p2p_error *err) {
    sqlite3_stmt *stmt = NULL;
    int rc = prepare(c,
                     "DELETE FROM file_hash WHERE rowid IN (SELECT rowid FROM file_hash"
                     " ORDER BY last_used DESC LIMIT -1 OFFSET ?1)",
                     &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)c->max_entries);
    return step_done(c, stmt, "prune", err);
}

int p2p_filecache_set_max_entries(p2p_filecache *c, size_t max_entries, p2p_error *err) {
    c->max_entries = max_entries < 1 ? 1 : max_entries;
    return prune(c, err);
}

static void key_from_stat(const struct stat *st, file_key *key) {
    key->dev = (int64_t)st->st_dev;
    key->ino = (int64_t)st->st_ino;
    key->size = (int64_t)st->st_size;
    key->mtime_sec = (int64_t)st->st_mtim.tv_sec;
    key->mtime_nsec = (int64_t)st->st_mtim.tv_nsec;
    key->ctime = st->st_ctim;
}

static bool key_equal(const file_key *a, const file_key *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void bind_key(sqlite3_stmt *stmt, const file_key *key) {
    sqlite3_bind_int64(stmt, 1, key->dev);
    sqlite3_bind_int64(stmt, 2, key->ino);
    sqlite3_bind_int64(stmt, 3, key->size);
    sqlite3_bind_int64(stmt, 4, key->mtime_sec);
    sqlite3_bind_int64(stmt, 5, key->mtime_nsec);
}

/* Returns 1 and fills `out_hex` on a hit, 0 on a miss, or an error. A row
 * whose hash is malformed (a damaged file) counts as a miss. */
static int lookup(p2p_filecache *c, const file_key *key, char *out_hex, p2p_error *err) {
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT hash FROM file_hash%s", key_where);
    sqlite3_stmt *stmt = NULL;
    int rc = prepare(c, sql, &stmt, err);
    if (rc != 0)
        return rc;
    bind_key(stmt, key);
    int src = sqlite3_step(stmt);
    if (src == SQLITE_ROW) {
        const char *hash = (const char *)sqlite3_column_text(stmt, 0);
        rc = p2p_hash_hex_valid(hash) ? 1 : 0;
        if (rc == 1)
            memcpy(out_hex, hash, P2P_HASH_HEX_LEN + 1);
    } else if (src != SQLITE_DONE) {
        rc = db_error(c, c->db, src, "lookup", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int touch(p2p_filecache *c, const file_key *key, p2p_error *err) {
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE file_hash SET last_used = ?6%s", key_where);
    sqlite3_stmt *stmt = NULL;
    int rc = prepare(c, sql, &stmt, err);
    if (rc != 0)
        return rc;
    bind_key(stmt, key);
    sqlite3_bind_int64(stmt, 6, now_ns());
    return step_done(c, stmt, "touch", err);
}

/* Inserts the row, replacing every older row of the same file (same device
 * and inode): those can only match again if the old mtime comes back. */
static int insert(p2p_filecache *c, const file_key *key, const char *hash, p2p_error *err) {
    sqlite3_stmt *stmt = NULL;
    int rc = prepare(c, "DELETE FROM file_hash WHERE dev = ?1 AND ino = ?2", &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, key->dev);
    sqlite3_bind_int64(stmt, 2, key->ino);
    rc = step_done(c, stmt, "delete old entries", err);
    if (rc == 0)
        rc = prepare(c,
                     "INSERT INTO file_hash (dev, ino, size, mtime_sec, mtime_nsec, hash, "
                     "last_used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                     &stmt, err);
    if (rc != 0)
        return rc;
    bind_key(stmt, key);
    sqlite3_bind_text(stmt, 6, hash, P2P_HASH_HEX_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 7, now_ns());
    return step_done(c, stmt, "insert", err);
}

static int store(p2p_filecache *c, const file_key *key, const char *hash, p2p_error *err) {
    /* IMMEDIATE takes the write lock up front, so two writers wait for each
     * other (busy timeout) instead of failing on a lock upgrade. */
    int rc = exec(c, "BEGIN IMMEDIATE", err);
    if (rc != 0)
        return rc;
    rc = insert(c, key, hash, err);
    if (rc == 0 && (c->stats.stored + 1) % P2P_FILECACHE_PRUNE_EVERY == 0)
        rc = prune(c, err);
    if (rc == 0)
        rc = exec(c, "COMMIT", err);
    if (rc != 0)
        (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* A cache failure must not fail the caller: the hash is right either way. */
static void db_warning(p2p_filecache *c, const p2p_error *e) {
    c->stats.db_errors++;
    P2P_WARN("%s (continuing without the cache)", e->msg);
}

/* Whole seconds, so an mtime far in the future cannot overflow; this errs on
 * the safe side (not caching) by up to one second. */
static bool racy(const file_key *key) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return key->mtime_sec >= (int64_t)now.tv_sec - P2P_FILECACHE_RACY_SECONDS;
}

/* Opens a regular file for reading; on success `*fd_out` is the caller's. */
static int open_regular(const char *path, int *fd_out, file_key *key, p2p_error *err) {
    int fd = -1;
    struct stat st;
    int rc = p2p_fs_open_regular(path, &fd, &st, err);
    if (rc != 0)
        return rc;
    key_from_stat(&st, key);
    *fd_out = fd;
    return 0;
}

/* Hashes the open file in full and checks that it did not change meanwhile. */
static int hash_checked(int fd, const char *path, const file_key *before, char *out_hex,
                        p2p_error *err) {
    uint64_t read_bytes = 0;
    int rc = p2p_hash_fd(fd, out_hex, &read_bytes, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot stat %s", path);
    file_key after;
    key_from_stat(&st, &after);
    if (!key_equal(before, &after) || read_bytes != (uint64_t)before->size)
        return p2p_error_set(err, P2P_ECONFLICT,
                             "%s changed while it was hashed (%llu bytes read, size %lld); "
                             "retry once it is complete",
                             path, (unsigned long long)read_bytes, (long long)before->size);
    return 0;
}

static void remember(p2p_filecache *c, const file_key *key, const char *hash) {
    p2p_error db_err = {0};
    if (racy(key)) {
        c->stats.not_stored++;
        return;
    }
    if (store(c, key, hash, &db_err) != 0) {
        c->stats.not_stored++;
        db_warning(c, &db_err);
        return;
    }
    c->stats.stored++;
}

static int cached_hash(p2p_filecache *c, const char *path, char *out_hex, int64_t *size,
                       p2p_error *err) {
    file_key key = {0};
    p2p_error db_err = {0};
    int fd = -1;
    int rc = open_regular(path, &fd, &key, err);
    if (rc != 0)
        return rc;
    *size = key.size;
    int found = lookup(c, &key, out_hex, &db_err);
    if (found < 0)
        db_warning(c, &db_err);
    if (found == 1) {
        c->stats.hits++;
        if (touch(c, &key, &db_err) != 0)
            db_warning(c, &db_err);
        close(fd);
        return 0;
    }
    c->stats.misses++;
    rc = hash_checked(fd, path, &key, out_hex, err);
    close(fd);
    if (rc == 0)
        remember(c, &key, out_hex);
    return rc;
}

int p2p_filecache_hash(p2p_filecache *c, const char *path, char out_hex[P2P_HASH_HEX_LEN + 1],
                       p2p_error *err) {
    int64_t size = 0;
    return cached_hash(c, path, out_hex, &size, err);
}

int p2p_filecache_file_value(p2p_filecache *c, const char *path, p2p_value *out, p2p_error *err) {
    char hash[P2P_HASH_HEX_LEN + 1];
    int64_t size = 0;
    int rc = cached_hash(c, path, hash, &size, err);
    return rc != 0 ? rc : p2p_value_set_file(out, path, hash, size, err);
}
