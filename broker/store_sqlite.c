/* The SQLite store: opening and schema, the read connections, and the vtable.
 * Writes go through the writer thread (store_sqlite_writer.c). */
#include "store_sqlite.h"

#include "fsutil.h"
#include "store_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* PRAGMA application_id of a p2prpc store: "P2PS". */
#define APPLICATION_ID 0x50325053

/* Schema version 1. seq orders the queue (creation order) and is what the
 * reference tables point to. See docs/store.md. */
static const char schema_v1[] =
    "CREATE TABLE calls ("
    " seq INTEGER PRIMARY KEY,"
    " identifier TEXT NOT NULL UNIQUE,"
    " function TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN"
    "  ('pushed', 'queued', 'running', 'done', 'failed', 'terminated')),"
    " args TEXT NOT NULL,"
    " outputs TEXT,"
    " error TEXT,"
    " progress REAL NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " lease_token TEXT,"
    " lease_expires INTEGER,"
    " worker TEXT,"
    " terminate_requested INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " expires_at INTEGER,"
    " version INTEGER NOT NULL);"
    "CREATE INDEX calls_claim ON calls (function, status, seq);"
    "CREATE INDEX calls_lease ON calls (lease_expires) WHERE status = 'running';"
    "CREATE INDEX calls_expiry ON calls (expires_at) WHERE expires_at IS NOT NULL;"
    "CREATE TABLE call_blobs ("
    " seq INTEGER NOT NULL,"
    " role INTEGER NOT NULL,"
    " hash TEXT NOT NULL,"
    " PRIMARY KEY (seq, role, hash)) WITHOUT ROWID;"
    "CREATE INDEX call_blobs_hash ON call_blobs (hash);"
    "CREATE TABLE checkpoints ("
    " seq INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " hash TEXT NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " PRIMARY KEY (seq, name)) WITHOUT ROWID;"
    "CREATE INDEX checkpoints_hash ON checkpoints (hash);";

/* The calls that may wait for their inputs (pipelines), so that a finished
 * call finds those waiting for it without a scan of the whole table. Not
 * part of schema_v1: created at every open, for stores made before it. */
static const char index_pushed[] =
    "CREATE INDEX IF NOT EXISTS calls_pushed ON calls (seq) WHERE status = 'pushed'";

static p2p__sq_store *sq(p2p_store *store) {
    return (p2p__sq_store *)store;
}

/* --- opening --- */

/* Runs a PRAGMA that returns one integer. */
static int pragma_int(p2p__sq_conn *conn, const char *sql, sqlite3_int64 *out, p2p_error *err) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(conn->db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else
        ret = p2p__sq_error(conn->db, rc, err, "cannot read the store's header");
    sqlite3_finalize(stmt);
    return ret;
}

static int open_conn(const char *path, int flags, int busy_ms, p2p__sq_conn *conn, p2p_error *err) {
    memset(conn, 0, sizeof(*conn));
    int rc = sqlite3_open_v2(path, &conn->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof(what), "cannot open the store %s", path);
        rc = p2p__sq_error(conn->db, rc, err, what);
        sqlite3_close_v2(conn->db);
        conn->db = NULL;
        return rc;
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, busy_ms);
    return 0;
}

/* Creates the file (0600, so that other users cannot read the calls' arguments)
 * and its directory when missing, and fsyncs the directory so that the new
 * entry survives power loss. */
static int create_file(const char *path, p2p_error *err) {
    char *copy = strdup(path);
    if (copy == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    const char *dir = dirname(copy);
    int rc = p2p_fs_mkdirs(dir, 0700, err);
    int fd = rc == 0 ? open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (rc == 0 && fd < 0 && errno != EEXIST)
        rc = p2p_error_errno(err, P2P_ESTORE, errno, "cannot create the store %s", path);
    if (fd >= 0) {
        close(fd);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(copy);
    return rc;
}

/* Refuses files that are not p2prpc stores before anything is written to them. */
static int check_identity(p2p__sq_conn *conn, const char *path, sqlite3_int64 *version,
                          p2p_error *err) {
    sqlite3_int64 app_id = 0, tables = 0;
    p2p_error why;
    int rc = pragma_int(conn, "PRAGMA user_version", version, &why);
    if (rc == 0)
        rc = pragma_int(conn, "PRAGMA application_id", &app_id, &why);
    if (rc == 0)
        rc = pragma_int(conn, "SELECT count(*) FROM sqlite_master", &tables, &why);
    if (rc != 0)
        return p2p_error_set(err, rc, "store %s: %s", path, why.msg);
    if (*version == 0 && tables == 0)
        return 0;
    if (app_id != APPLICATION_ID)
        return p2p_error_set(err, P2P_ESTORE, "%s is an SQLite database but not a p2prpc store",
                             path);
    if (*version > P2P_STORE_SQLITE_SCHEMA)
        return p2p_error_set(err, P2P_ESTORE,
                             "store %s has schema version %lld; this build knows up to %d", path,
                             (long long)*version, P2P_STORE_SQLITE_SCHEMA);
    return 0;
}

/* Creates the schema of a new database. Another process may be doing the same
 * at this moment: the version is read again under the write lock. */
static int create_schema(p2p__sq_store *s, p2p_error *err) {
    char sql[160];
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
             APPLICATION_ID, P2P_STORE_SQLITE_SCHEMA);
    sqlite3_int64 version = 0;
    int rc = p2p__sq_exec_script(&s->writer, "BEGIN IMMEDIATE", "cannot create the schema", err);
    if (rc == 0)
        rc = pragma_int(&s->writer, "PRAGMA user_version", &version, err);
    if (rc == 0 && version == 0)
        rc = p2p__sq_exec_script(&s->writer, schema_v1, "cannot create the schema", err);
    if (rc == 0 && version == 0)
        rc = p2p__sq_exec_script(&s->writer, sql, "cannot create the schema", err);
    if (rc == 0)
        rc = p2p__sq_exec_script(&s->writer, index_pushed, "cannot create an index", err);
    if (rc == 0)
        rc = p2p__sq_exec_script(&s->writer, "COMMIT", "cannot create the schema", err);
    if (rc != 0 && sqlite3_get_autocommit(s->writer.db) == 0)
        (void)p2p__sq_exec_script(&s->writer, "ROLLBACK", "rollback", NULL);
    return rc;
}

/* Sets WAL and the sync level, and creates the schema of a new database
 * (and the indexes added since in an older one). */
static int prepare_writer(p2p__sq_store *s, p2p_error *err) {
    char sql[64];
    int rc = p2p__sq_exec_script(&s->writer, "PRAGMA journal_mode = WAL", "cannot enable WAL", err);
    snprintf(sql, sizeof(sql), "PRAGMA synchronous = %s",
             s->base.opts.sync == P2P_STORE_SYNC_FULL ? "FULL" : "NORMAL");
    if (rc == 0)
        rc = p2p__sq_exec_script(&s->writer, sql, "cannot set the sync level", err);
    sqlite3_int64 mode = 0;
    if (rc == 0)
        rc = pragma_int(&s->writer, "PRAGMA synchronous", &mode, err);
    if (rc == 0 && mode != (s->base.opts.sync == P2P_STORE_SYNC_FULL ? 2 : 1))
        rc = p2p_error_set(err, P2P_ESTORE, "store %s refused the sync level", s->path);
    return rc != 0 ? rc : create_schema(s, err);
}

/* WAL mode is a property of the file; a new database only gets it from the
 * first connection that sets it, so the check reads it back. */
static int check_wal(p2p__sq_store *s, p2p_error *err) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(s->writer.db, "PRAGMA journal_mode", -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    int ret = 0;
    if (rc != SQLITE_ROW)
        ret = p2p__sq_error(s->writer.db, rc, err, "cannot read the journal mode");
    else if (mode == NULL || strcmp(mode, "wal") != 0)
        ret = p2p_error_set(err, P2P_ESTORE, "store %s cannot use WAL mode (got %s)", s->path,
                            mode ? mode : "nothing");
    sqlite3_finalize(stmt);
    return ret;
}

static const p2p__store_ops sqlite_ops;

static int sq_setup(p2p__sq_store *s, p2p_error *err) {
    sqlite3_int64 version = 0;
    int rc = create_file(s->path, err);
    if (rc == 0)
        rc = open_conn(s->path, SQLITE_OPEN_READWRITE, s->base.opts.busy_timeout_ms, &s->writer,
                       err);
    if (rc == 0)
        rc = check_identity(&s->writer, s->path, &version, err);
    if (rc == 0)
        rc = prepare_writer(s, err);
    if (rc == 0)
        rc = check_wal(s, err);
    return rc != 0 ? rc : p2p__sq_writer_start(s, err);
}

static void sq_free(p2p_store *store);

int p2p_store_sqlite_open(const char *path, const p2p_store_options *opts, p2p_store **out,
                          p2p_error *err) {
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "store path missing");
    p2p__sq_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->settled, NULL);
    pthread_mutex_init(&s->readers_lock, NULL);
    atomic_init(&s->reads, 0);
    int rc = p2p__store_options_check(opts, &s->base.opts, err);
    if (rc == 0) {
        s->path = strdup(path);
        rc = s->path != NULL ? sq_setup(s, err) : p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    if (rc != 0) {
        sq_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static void sq_free(p2p_store *store) {
    p2p__sq_store *s = sq(store);
    p2p__sq_writer_stop(s);
    while (s->readers != NULL) {
        p2p__sq_conn *next = s->readers->next;
        p2p__sq_conn_close(s->readers);
        free(s->readers);
        s->readers = next;
    }
    /* Last, so that SQLite checkpoints the WAL into the database and removes
     * it: only the last connection to close does, and only a writer can. */
    p2p__sq_conn_close(&s->writer);
    free(s->changes);
    free(s->path);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->settled);
    pthread_mutex_destroy(&s->readers_lock);
    free(s);
}

/* --- reads: a pool of read-only connections, one per concurrent reader --- */

static int reader_acquire(p2p__sq_store *s, p2p__sq_conn **out, p2p_error *err) {
    pthread_mutex_lock(&s->readers_lock);
    p2p__sq_conn *conn = s->readers;
    if (conn != NULL)
        s->readers = conn->next;
    pthread_mutex_unlock(&s->readers_lock);
    atomic_fetch_add(&s->reads, 1);
    if (conn != NULL) {
        *out = conn;
        return 0;
    }
    conn = malloc(sizeof(*conn));
    if (conn == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    int rc = open_conn(s->path, SQLITE_OPEN_READONLY, s->base.opts.busy_timeout_ms, conn, err);
    if (rc != 0) {
        free(conn);
        return rc;
    }
    *out = conn;
    return 0;
}

static void reader_release(p2p__sq_store *s, p2p__sq_conn *conn) {
    pthread_mutex_lock(&s->readers_lock);
    conn->next = s->readers;
    s->readers = conn;
    pthread_mutex_unlock(&s->readers_lock);
}

static int sq_get(p2p_store *store, const char *identifier, p2p_call *out, p2p_error *err) {
    p2p__sq_conn *conn = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = reader_acquire(sq(store), &conn, err);
    if (rc != 0)
        return rc;
    rc = p2p__sq_stmt(conn, SQ_GET_BY_ID, &stmt, err);
    if (rc == 0) {
        sqlite3_bind_text(stmt, 1, identifier, -1, SQLITE_STATIC);
        int step = sqlite3_step(stmt);
        if (step == SQLITE_ROW)
            rc = p2p__sq_row_to_call(stmt, out, err);
        else if (step == SQLITE_DONE)
            rc = p2p_error_set(err, P2P_ENOTFOUND, "no call %s", identifier);
        else
            rc = p2p__sq_error(conn->db, step, err, "cannot read a call");
        sqlite3_reset(stmt);
    }
    reader_release(sq(store), conn);
    return rc;
}

static int count_rows(p2p__sq_conn *conn, sqlite3_stmt *stmt, uint64_t *counts, p2p_error *err) {
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        p2p_call_status status;
        if (p2p_call_status_parse((const char *)sqlite3_column_text(stmt, 0), &status) == 0)
            counts[status] = (uint64_t)sqlite3_column_int64(stmt, 1);
    }
    return step == SQLITE_DONE ? 0 : p2p__sq_error(conn->db, step, err, "cannot count calls");
}

static int sq_count(p2p_store *store, const char *function, uint64_t *counts, p2p_error *err) {
    p2p__sq_conn *conn = NULL;
    sqlite3_stmt *stmt = NULL;
    memset(counts, 0, P2P_CALL_STATUS_COUNT * sizeof(*counts));
    int rc = reader_acquire(sq(store), &conn, err);
    if (rc != 0)
        return rc;
    rc = p2p__sq_stmt(conn, function ? SQ_COUNT_FUNCTION : SQ_COUNT_ALL, &stmt, err);
    if (rc == 0) {
        if (function != NULL)
            sqlite3_bind_text(stmt, 3, function, -1, SQLITE_STATIC);
        rc = count_rows(conn, stmt, counts, err);
        sqlite3_reset(stmt);
    }
    reader_release(sq(store), conn);
    return rc;
}

static int list_rows(p2p__sq_conn *conn, sqlite3_stmt *stmt, size_t limit, p2p_call_list *out,
                     p2p_error *err) {
    out->items = calloc(limit, sizeof(*out->items));
    if (out->items == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    int step, rc = 0;
    while (rc == 0 && out->count < limit && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
        rc = p2p__sq_row_to_call(stmt, &out->items[out->count], err);
        out->count += rc == 0;
    }
    if (rc == 0 && out->count < limit && step != SQLITE_DONE)
        rc = p2p__sq_error(conn->db, step, err, "cannot list calls");
    if (rc != 0)
        p2p_call_list_cleanup(out);
    return rc;
}

static int sq_list(p2p_store *store, const p2p_store_query *q, p2p_call_list *out, p2p_error *err) {
    p2p__sq_conn *conn = NULL;
    sqlite3_stmt *stmt = NULL;
    p2p_call_list_cleanup(out);
    int rc = reader_acquire(sq(store), &conn, err);
    if (rc != 0)
        return rc;
    int variant = (q->function != NULL ? 1 : 0) + (q->status >= 0 ? 2 : 0);
    rc = p2p__sq_stmt(conn, (p2p__sq_stmt_id)(SQ_LIST_ALL + variant), &stmt, err);
    if (rc == 0) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)q->limit);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)q->offset);
        if (q->function != NULL)
            sqlite3_bind_text(stmt, 3, q->function, -1, SQLITE_STATIC);
        if (q->status >= 0)
            sqlite3_bind_text(stmt, 4, p2p_call_status_name((p2p_call_status)q->status), -1,
                              SQLITE_STATIC);
        rc = list_rows(conn, stmt, q->limit, out, err);
        sqlite3_reset(stmt);
    }
    reader_release(sq(store), conn);
    return rc;
}

/* Runs a read statement that binds ?1 (and ?2 when `second` is set) and
 * returns one column of one row. A missing row gives P2P_ENOTFOUND. */
static int read_one(p2p__sq_store *s, p2p__sq_stmt_id id, const char *first, const char *second,
                    sqlite3_int64 *number, char *text, size_t text_size, p2p_error *err) {
    p2p__sq_conn *conn = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = reader_acquire(s, &conn, err);
    if (rc != 0)
        return rc;
    rc = p2p__sq_stmt(conn, id, &stmt, err);
    if (rc == 0) {
        sqlite3_bind_text(stmt, 1, first, -1, SQLITE_STATIC);
        if (second != NULL)
            sqlite3_bind_text(stmt, 2, second, -1, SQLITE_STATIC);
        int step = sqlite3_step(stmt);
        const char *value = step == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
        if (step == SQLITE_ROW && number != NULL)
            *number = sqlite3_column_int64(stmt, 0);
        if (step == SQLITE_ROW && text != NULL)
            snprintf(text, text_size, "%s", value != NULL ? value : "");
        if (step == SQLITE_DONE)
            rc = P2P_ENOTFOUND;
        else if (step != SQLITE_ROW)
            rc = p2p__sq_error(conn->db, step, err, "store read failed");
        sqlite3_reset(stmt);
    }
    reader_release(s, conn);
    return rc;
}

static int sq_blob_refcount(p2p_store *store, const char *hash, uint64_t *count, p2p_error *err) {
    sqlite3_int64 n = 0;
    int rc = read_one(sq(store), SQ_REFCOUNT, hash, NULL, &n, NULL, 0, err);
    *count = rc == 0 ? (uint64_t)n : 0;
    return rc;
}

static int sq_checkpoint_get(p2p_store *store, const char *identifier, const char *name,
                             char hash[P2P_STORE_ID_LEN + 1], p2p_error *err) {
    int rc = read_one(sq(store), SQ_CHECKPOINT_GET, identifier, name, NULL, hash,
                      P2P_STORE_ID_LEN + 1, err);
    if (rc == P2P_ENOTFOUND)
        return p2p_error_set(err, rc, "call %s has no checkpoint %s", identifier, name);
    return rc;
}

static void sq_get_stats(p2p_store *store, p2p_store_stats *out) {
    p2p__sq_store *s = sq(store);
    pthread_mutex_lock(&s->lock);
    out->writes = s->writes;
    out->batches = s->batches;
    out->max_batch = s->max_batch;
    pthread_mutex_unlock(&s->lock);
    out->reads = atomic_load(&s->reads);
}

/* --- writes: each builds an op for the writer thread --- */

static int sq_create(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                     p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_CREATE, .create = in, .call = out};
    int rc = p2p__sq_submit(sq(store), &op, err);
    *created = rc == 0 && op.flag;
    return rc;
}

static int sq_make_available(p2p_store *store, const char *identifier, bool *changed,
                             p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_MAKE_AVAILABLE, .identifier = identifier};
    int rc = p2p__sq_submit(sq(store), &op, err);
    *changed = rc == 0 && op.flag;
    return rc;
}

static int sq_claim(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                    p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_CLAIM, .function = function, .worker = worker, .call = out};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_renew(p2p_store *store, const char *identifier, const char *token, double progress,
                    p2p_store_lease *out, p2p_error *err) {
    p2p__sq_op op = {
        .code = SQ_OP_RENEW, .identifier = identifier, .token = token, .progress = progress};
    int rc = p2p__sq_submit(sq(store), &op, err);
    if (rc == 0)
        *out = op.lease;
    return rc;
}

static int sq_finish(p2p_store *store, const char *identifier, const char *token,
                     p2p_call_status status, const char *text, const char *const *blobs,
                     size_t nblobs, p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_FINISH,
                     .identifier = identifier,
                     .token = token,
                     .status = status,
                     .text = text,
                     .blobs = blobs,
                     .nblobs = nblobs};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_terminate(p2p_store *store, const char *identifier, p2p_call_status *status,
                        p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_TERMINATE, .identifier = identifier};
    int rc = p2p__sq_submit(sq(store), &op, err);
    if (rc == 0)
        *status = op.status;
    return rc;
}

static int sq_release(p2p_store *store, const char *identifier, const char *token,
                      p2p_call_status *status, p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_RELEASE, .identifier = identifier, .token = token};
    int rc = p2p__sq_submit(sq(store), &op, err);
    if (rc == 0)
        *status = op.status;
    return rc;
}

static int sq_remove(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                     p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_DELETE, .identifier = identifier, .orphans = orphans};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_restart(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                      p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_RESTART, .identifier = identifier, .orphans = orphans};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_requeue_expired(p2p_store *store, size_t *requeued, size_t *failed, p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_REQUEUE_EXPIRED};
    int rc = p2p__sq_submit(sq(store), &op, err);
    *requeued = rc == 0 ? op.count1 : 0;
    *failed = rc == 0 ? op.count2 : 0;
    return rc;
}

static int sq_expire(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                     p2p_store_hashes *orphans, p2p_error *err) {
    p2p__sq_op op = {
        .code = SQ_OP_EXPIRE, .cutoff_ms = cutoff_ms, .limit = limit, .orphans = orphans};
    int rc = p2p__sq_submit(sq(store), &op, err);
    *deleted = rc == 0 ? op.count1 : 0;
    return rc;
}

static int sq_checkpoint_put(p2p_store *store, const char *identifier, const char *token,
                             const char *name, const char *hash, p2p_store_hashes *orphans,
                             p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_CHECKPOINT_PUT,
                     .identifier = identifier,
                     .token = token,
                     .name = name,
                     .hash = hash,
                     .orphans = orphans};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_resolve(p2p_store *store, const char *identifier, const char *args,
                      const char *const *blobs, size_t nblobs, const char *error, p2p_error *err) {
    p2p__sq_op op = {.code = SQ_OP_RESOLVE,
                     .identifier = identifier,
                     .text = args != NULL ? args : error,
                     .blobs = blobs,
                     .nblobs = nblobs,
                     .status = args != NULL ? P2P_CALL_QUEUED : P2P_CALL_FAILED};
    return p2p__sq_submit(sq(store), &op, err);
}

static int sq_has_waiting(p2p_store *store, const char *pattern, bool *waiting, p2p_error *err) {
    sqlite3_int64 n = 0;
    int rc = read_one(sq(store), SQ_WAITING, pattern, NULL, &n, NULL, 0, err);
    *waiting = rc == 0 && n != 0;
    return rc;
}

static const p2p__store_ops sqlite_ops = {
    .name = "sqlite",
    .free = sq_free,
    .create = sq_create,
    .get = sq_get,
    .make_available = sq_make_available,
    .claim = sq_claim,
    .renew = sq_renew,
    .finish = sq_finish,
    .terminate = sq_terminate,
    .release = sq_release,
    .remove = sq_remove,
    .restart = sq_restart,
    .requeue_expired = sq_requeue_expired,
    .expire = sq_expire,
    .count = sq_count,
    .list = sq_list,
    .blob_refcount = sq_blob_refcount,
    .checkpoint_put = sq_checkpoint_put,
    .checkpoint_get = sq_checkpoint_get,
    .get_stats = sq_get_stats,
    .resolve = sq_resolve,
    .has_waiting = sq_has_waiting,
};
