/* The client's local cache: DIR/cache.db, an SQLite database (WAL, busy
 * timeout) of calls, and DIR/files/ab/abcdef..., the output files named by
 * their hash. Several processes may share one DIR: every change is one
 * transaction, entries are written with conditional statements, files appear
 * by atomic rename from files/tmp/, and the download of one hash is
 * serialised by a lock file (flock), never by an in-process lock. */
#include "client_internal.h"

#include "fsutil.h"
#include "log.h"
#include "sqlite_util.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct p2p__ccache {
    /* One connection for the client's threads: a transaction must not take
     * in another thread's statements, so each operation holds the lock. */
    pthread_mutex_t lock;
    sqlite3 *db;
    char *files_dir;
    char *tmp_dir;
};

static const char SCHEMA_SQL[] = "CREATE TABLE IF NOT EXISTS calls ("
                                 " identifier TEXT PRIMARY KEY,"
                                 " function TEXT NOT NULL,"
                                 " broker TEXT,"
                                 " status TEXT NOT NULL CHECK (status IN ('in_flight', 'done')),"
                                 " outputs TEXT,"
                                 " updated_ms INTEGER NOT NULL);"
                                 "CREATE TABLE IF NOT EXISTS call_files ("
                                 " identifier TEXT NOT NULL,"
                                 " hash TEXT NOT NULL,"
                                 " PRIMARY KEY (identifier, hash));"
                                 "CREATE INDEX IF NOT EXISTS call_files_hash ON call_files (hash);";

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int db_error(p2p__ccache *c, p2p_error *err, const char *what) {
    return p2p_error_set(err, P2P_ESTORE, "client cache: %s: %s", what, sqlite3_errmsg(c->db));
}

static int exec_sql(p2p__ccache *c, const char *sql, p2p_error *err) {
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int rc = p2p_error_set(err, P2P_ESTORE, "client cache: %s: %s", sql,
                           msg != NULL ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    return rc;
}

/* In one IMMEDIATE transaction: it waits for the write lock (busy timeout),
 * where statements of their own could fail at once on a lock upgrade when
 * several processes open a new cache together. */
static int create_schema(p2p__ccache *c, p2p_error *err) {
    int rc = exec_sql(c, "BEGIN IMMEDIATE", err);
    if (rc != 0)
        return rc;
    rc = exec_sql(c, SCHEMA_SQL, err);
    if (rc == 0)
        return exec_sql(c, "COMMIT", err);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int make_dirs(p2p__ccache *c, const char *dir, p2p_error *err) {
    c->files_dir = p2p_fs_join(dir, "files");
    c->tmp_dir = c->files_dir != NULL ? p2p_fs_join(c->files_dir, "tmp") : NULL;
    if (c->tmp_dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    return p2p_fs_mkdirs(c->tmp_dir, 0700, err);
}

int p2p__ccache_open(const char *dir, p2p__ccache **out, p2p_error *err) {
    *out = NULL;
    char *path = NULL;
    p2p__ccache *c = calloc(1, sizeof(*c));
    int rc = c != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        pthread_mutex_init(&c->lock, NULL);
    if (rc == 0)
        rc = p2p_fs_mkdirs(dir, 0700, err);
    if (rc == 0)
        rc = make_dirs(c, dir, err);
    if (rc == 0 && (path = p2p_fs_join(dir, "cache.db")) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0 &&
        sqlite3_open_v2(path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK)
        rc = p2p_error_set(err, P2P_ESTORE, "client cache %s: cannot open: %s", path,
                           c->db != NULL ? sqlite3_errmsg(c->db) : "out of memory");
    if (rc == 0) {
        sqlite3_busy_timeout(c->db, P2P__CCACHE_BUSY_MS);
        /* WAL: readers of other processes never block the one writer. */
        if (p2p_sqlite_set_wal(c->db, P2P__CCACHE_BUSY_MS) != SQLITE_OK)
            rc = db_error(c, err, "PRAGMA journal_mode = WAL");
    }
    /* NORMAL in WAL mode: a commit survives a crash of the process, and a
     * power cut may lose the last entries, which only costs asking the broker
     * again (it keeps the results). FULL would fsync at every call. */
    if (rc == 0)
        rc = exec_sql(c, "PRAGMA synchronous = NORMAL", err);
    if (rc == 0)
        rc = create_schema(c, err);
    free(path);
    if (rc != 0) {
        p2p__ccache_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void p2p__ccache_free(p2p__ccache *c) {
    if (c == NULL)
        return;
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->lock);
    free(c->files_dir);
    free(c->tmp_dir);
    free(c);
}

const char *p2p__ccache_files_dir(const p2p__ccache *c) {
    return c->files_dir;
}

void p2p__ccache_entry_cleanup(p2p__ccache_entry *e) {
    free(e->function);
    free(e->broker);
    free(e->outputs);
    memset(e, 0, sizeof(*e));
}

static char *column_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t != NULL ? strdup((const char *)t) : NULL;
}

static int ccache_get_locked(p2p__ccache *c, const char *identifier, p2p__ccache_entry *e,
                             p2p_error *err) {
    memset(e, 0, sizeof(*e));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT function, broker, status, outputs FROM calls"
                           " WHERE identifier = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(c, err, "read");
    sqlite3_bind_text(st, 1, identifier, -1, SQLITE_STATIC);
    int rc = 0, step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        e->function = column_text(st, 0);
        e->broker = column_text(st, 1);
        const unsigned char *status = sqlite3_column_text(st, 2);
        e->done = status != NULL && strcmp((const char *)status, "done") == 0;
        e->outputs = column_text(st, 3);
        if (e->function == NULL || (e->done && e->outputs == NULL)) {
            p2p__ccache_entry_cleanup(e);
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory reading the cache");
        }
    } else if (step == SQLITE_DONE) {
        rc = P2P_ENOTFOUND;
        p2p_error_set(err, rc, "call %s is not in the cache", identifier);
    } else {
        rc = db_error(c, err, "read");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs one statement with up to four text parameters (NULL binds NULL) and
 * an integer time as ?5. */
static int run(p2p__ccache *c, const char *sql, const char *const p[4], p2p_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(c, err, "prepare");
    for (int i = 0; i < 4; i++) {
        if (p[i] != NULL)
            sqlite3_bind_text(st, i + 1, p[i], -1, SQLITE_STATIC);
    }
    if (sqlite3_bind_parameter_count(st) >= 5)
        sqlite3_bind_int64(st, 5, now_ms());
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : db_error(c, err, "write");
}

static int ccache_put_in_flight_locked(p2p__ccache *c, const char *identifier, const char *function,
                                       const char *broker, p2p_error *err) {
    const char *p[4] = {identifier, function, broker, NULL};
    /* One statement: the upsert never turns a done entry back in flight,
     * whatever another process wrote meanwhile. */
    return run(c,
               "INSERT INTO calls (identifier, function, broker, status, updated_ms)"
               " VALUES (?1, ?2, ?3, 'in_flight', ?5)"
               " ON CONFLICT (identifier) DO UPDATE SET broker = excluded.broker,"
               " updated_ms = excluded.updated_ms WHERE calls.status = 'in_flight'",
               p, err);
}

static int ccache_put_done_locked(p2p__ccache *c, const char *identifier, const char *function,
                                  const char *broker, const char *outputs,
                                  const char *const *file_hashes, size_t n_files, p2p_error *err) {
    int rc = exec_sql(c, "BEGIN IMMEDIATE", err);
    if (rc != 0)
        return rc;
    const char *p[4] = {identifier, function, broker, outputs};
    rc = run(c,
             "INSERT INTO calls (identifier, function, broker, status, outputs, updated_ms)"
             " VALUES (?1, ?2, ?3, 'done', ?4, ?5)"
             " ON CONFLICT (identifier) DO UPDATE SET broker = excluded.broker,"
             " status = 'done', outputs = excluded.outputs, updated_ms = excluded.updated_ms",
             p, err);
    for (size_t i = 0; rc == 0 && i < n_files; i++) {
        const char *q[4] = {identifier, file_hashes[i], NULL, NULL};
        rc = run(c, "INSERT OR IGNORE INTO call_files (identifier, hash) VALUES (?1, ?2)", q, err);
    }
    if (rc == 0)
        return exec_sql(c, "COMMIT", err);
    p2p_error ignored;
    (void)exec_sql(c, "ROLLBACK", &ignored);
    return rc;
}

char *p2p__ccache_file_path(const p2p__ccache *c, const char *hash) {
    size_t len = strlen(c->files_dir) + strlen(hash) + 8;
    char *path = malloc(len);
    if (path != NULL)
        snprintf(path, len, "%s/%.2s/%s", c->files_dir, hash, hash);
    return path;
}

/* Collects the hashes of `identifier`'s files that no other entry uses. */
static int orphan_files(p2p__ccache *c, const char *identifier, json_t *out, p2p_error *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT hash FROM call_files f WHERE identifier = ?1 AND NOT EXISTS"
                           " (SELECT 1 FROM call_files g WHERE g.hash = f.hash"
                           " AND g.identifier <> ?1)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(c, err, "read files");
    sqlite3_bind_text(st, 1, identifier, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(out, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : db_error(c, err, "read files");
}

static void unlink_files(p2p__ccache *c, const json_t *hashes) {
    size_t i;
    const json_t *h;
    json_array_foreach(hashes, i, h) {
        const char *hash = json_string_value(h);
        char *path =
            hash != NULL && p2p_hash_hex_valid(hash) ? p2p__ccache_file_path(c, hash) : NULL;
        if (path != NULL && unlink(path) != 0 && errno != ENOENT)
            P2P_WARN("client cache: cannot remove %s: %s", path, strerror(errno));
        free(path);
    }
}

static int ccache_forget_locked(p2p__ccache *c, const char *identifier, p2p_error *err) {
    json_t *orphans = json_array();
    if (orphans == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc = exec_sql(c, "BEGIN IMMEDIATE", err);
    if (rc == 0)
        rc = orphan_files(c, identifier, orphans, err);
    const char *p[4] = {identifier, NULL, NULL, NULL};
    if (rc == 0)
        rc = run(c, "DELETE FROM call_files WHERE identifier = ?1", p, err);
    if (rc == 0)
        rc = run(c, "DELETE FROM calls WHERE identifier = ?1", p, err);
    /* The files go while the write lock is held, so no other process records
     * a new reference to one of them in between. */
    if (rc == 0)
        unlink_files(c, orphans);
    if (rc == 0)
        rc = exec_sql(c, "COMMIT", err);
    else {
        p2p_error ignored;
        (void)exec_sql(c, "ROLLBACK", &ignored);
    }
    json_decref(orphans);
    return rc;
}

void p2p__ccache_drop(p2p__ccache *c, const char *identifier) {
    p2p_error err;
    if (p2p__ccache_forget(c, identifier, &err) != 0)
        P2P_WARN("client: cannot remove call %s from the cache: %s", identifier, err.msg);
}

bool p2p__ccache_file_ok(const p2p__ccache *c, const char *hash, int64_t size) {
    char *path = p2p__ccache_file_path(c, hash);
    struct stat st;
    bool ok =
        path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (int64_t)st.st_size == size;
    free(path);
    return ok;
}

/* Hashes the downloaded `tmp` and moves it into place as `final`. */
static int verify_and_place(const char *tmp, const char *final, const char *hash, int64_t size,
                            p2p_error *err) {
    int fd = -1;
    uint64_t n = 0;
    char got[P2P_HASH_HEX_LEN + 1];
    int rc = p2p_fs_open_regular(tmp, &fd, NULL, err);
    if (rc == 0)
        rc = p2p_hash_fd(fd, got, &n, err);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && (n != (uint64_t)size || strcmp(got, hash) != 0)) {
        unlink(tmp);
        return p2p_error_set(err, P2P_EHASH,
                             "output file %s: downloaded %" PRIu64 " bytes hashing to %s", hash, n,
                             got);
    }
    if (rc == 0 && rename(tmp, final) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot move %s to %s", tmp, final);
    return rc;
}

/* Creates the shard directory files/ab/ of `final` and locks it: one
 * download per shard at a time, among threads (each opens its own
 * descriptor: flock locks an open file description) and processes alike. The
 * lock is on the directory so that nothing stays behind in files/. */
static int lock_shard(const char *final, int *fd_out, p2p_error *err) {
    *fd_out = -1;
    char *dir = strdup(final);
    if (dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    int rc = p2p_fs_mkdirs(dir, 0700, err);
    int fd = rc == 0 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && fd < 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot open %s", dir);
    while (rc == 0 && flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR)
            rc = p2p_error_errno(err, P2P_EIO, errno, "cannot lock %s", dir);
    }
    if (rc != 0 && fd >= 0)
        close(fd);
    *fd_out = rc == 0 ? fd : -1;
    free(dir);
    return rc;
}

int p2p__ccache_ensure_file(p2p__ccache *c, const char *hash, int64_t size,
                            p2p__ccache_fetch_fn fetch, void *arg, p2p_error *err) {
    if (!p2p_hash_hex_valid(hash))
        return p2p_error_set(err, P2P_EINVAL, "output file hash is not 64 lowercase hex");
    if (p2p__ccache_file_ok(c, hash, size))
        return 0;
    int lock_fd = -1;
    char *final = p2p__ccache_file_path(c, hash);
    size_t len = strlen(c->tmp_dir) + strlen(hash) + 8;
    char *tmp = malloc(len);
    int rc = final != NULL && tmp != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = lock_shard(final, &lock_fd, err);
    if (rc == 0 && p2p__ccache_file_ok(c, hash, size))
        goto cleanup; /* another thread or process fetched it meanwhile */
    if (rc == 0) {
        snprintf(tmp, len, "%s/%s.part", c->tmp_dir, hash);
        rc = fetch(arg, tmp, err);
    }
    if (rc == 0)
        rc = verify_and_place(tmp, final, hash, size, err);
cleanup:
    if (lock_fd >= 0)
        close(lock_fd);
    free(final);
    free(tmp);
    return rc;
}

int p2p__ccache_get(p2p__ccache *c, const char *identifier, p2p__ccache_entry *e, p2p_error *err) {
    pthread_mutex_lock(&c->lock);
    int rc = ccache_get_locked(c, identifier, e, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int p2p__ccache_put_in_flight(p2p__ccache *c, const char *identifier, const char *function,
                              const char *broker, p2p_error *err) {
    pthread_mutex_lock(&c->lock);
    int rc = ccache_put_in_flight_locked(c, identifier, function, broker, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int p2p__ccache_put_done(p2p__ccache *c, const char *identifier, const char *function,
                         const char *broker, const char *outputs, const char *const *file_hashes,
                         size_t n_files, p2p_error *err) {
    pthread_mutex_lock(&c->lock);
    int rc =
        ccache_put_done_locked(c, identifier, function, broker, outputs, file_hashes, n_files, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int p2p__ccache_forget(p2p__ccache *c, const char *identifier, p2p_error *err) {
    pthread_mutex_lock(&c->lock);
    int rc = ccache_forget_locked(c, identifier, err);
    pthread_mutex_unlock(&c->lock);
    return rc;
}
