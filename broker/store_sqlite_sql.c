/* The SQL of the SQLite store, its statement cache, and the one place where
 * SQLite result codes become p2prpc errors. */
#include "store_sqlite_internal.h"

#include <stdlib.h>
#include <string.h>

#define CALL_COLUMNS                                                                               \
    "seq, identifier, function, status, args, outputs, error, progress, attempts, lease_token, "   \
    "lease_expires, worker, terminate_requested, created_at, updated_at, expires_at, version"

/* Every change of a call sets updated_at and expires_at and bumps version. */
#define TOUCH "updated_at = ?20, expires_at = ?21, version = version + 1"

static const char *const sql_text[SQ_STMT_COUNT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_ROLLBACK] = "ROLLBACK",
    [SQ_SAVEPOINT] = "SAVEPOINT op",
    [SQ_ROLLBACK_TO] = "ROLLBACK TO op",
    [SQ_RELEASE] = "RELEASE op",
    [SQ_GET_BY_ID] = "SELECT " CALL_COLUMNS " FROM calls WHERE identifier = ?1",
    [SQ_GET_BY_SEQ] = "SELECT " CALL_COLUMNS " FROM calls WHERE seq = ?1",
    [SQ_HEAD] = "SELECT seq, status, lease_token, terminate_requested, function, attempts "
                "FROM calls WHERE identifier = ?1",
    [SQ_CHANGE_INFO] = "SELECT identifier, function, status, version FROM calls WHERE seq = ?1",
    [SQ_COUNT_ALL] = "SELECT status, count(*) FROM calls GROUP BY status",
    [SQ_COUNT_FUNCTION] = "SELECT status, count(*) FROM calls WHERE function = ?3 GROUP BY status",
    [SQ_LIST_ALL] = "SELECT " CALL_COLUMNS " FROM calls ORDER BY seq DESC LIMIT ?1 OFFSET ?2",
    [SQ_LIST_FUNCTION] = "SELECT " CALL_COLUMNS " FROM calls WHERE function = ?3 "
                         "ORDER BY seq DESC LIMIT ?1 OFFSET ?2",
    [SQ_LIST_STATUS] = "SELECT " CALL_COLUMNS " FROM calls WHERE status = ?4 "
                       "ORDER BY seq DESC LIMIT ?1 OFFSET ?2",
    [SQ_LIST_FUNCTION_STATUS] = "SELECT " CALL_COLUMNS " FROM calls WHERE function = ?3 "
                                "AND status = ?4 ORDER BY seq DESC LIMIT ?1 OFFSET ?2",
    [SQ_REFCOUNT] = "SELECT (SELECT count(*) FROM call_blobs WHERE hash = ?1) + "
                    "(SELECT count(*) FROM checkpoints WHERE hash = ?1)",
    [SQ_CHECKPOINT_GET] = "SELECT k.hash FROM checkpoints k JOIN calls c ON c.seq = k.seq "
                          "WHERE c.identifier = ?1 AND k.name = ?2",
    [SQ_INSERT_CALL] = "INSERT INTO calls (identifier, function, status, args, progress, "
                       "attempts, terminate_requested, created_at, updated_at, expires_at, "
                       "version) VALUES (?1, ?2, ?3, ?4, 0, 0, 0, ?20, ?20, ?21, 1)",
    [SQ_INSERT_REF] = "INSERT OR IGNORE INTO call_blobs (seq, role, hash) VALUES (?1, ?2, ?3)",
    /* Status changes that end a lease or never had one. Progress becomes 100
     * only for done; outputs and error are replaced (NULL for the others). */
    [SQ_SET_STATE] = "UPDATE calls SET status = ?2, outputs = ?3, error = ?4, "
                     "progress = CASE WHEN ?2 = 'done' THEN 100 ELSE progress END, "
                     "lease_expires = NULL, " TOUCH " WHERE seq = ?1",
    [SQ_CLAIM_FIND] = "SELECT seq FROM calls WHERE function = ?1 AND status = 'queued' "
                      "ORDER BY seq LIMIT 1",
    [SQ_CLAIM_SET] =
        "UPDATE calls SET status = 'running', attempts = attempts + 1, progress = 0, "
        "lease_token = ?2, lease_expires = ?3, worker = ?4, terminate_requested = 0, " TOUCH
        " WHERE seq = ?1",
    [SQ_RENEW] = "UPDATE calls SET lease_expires = ?2, progress = coalesce(?3, progress), " TOUCH
                 " WHERE seq = ?1",
    [SQ_REQUEST_TERMINATE] = "UPDATE calls SET terminate_requested = 1, " TOUCH " WHERE seq = ?1",
    [SQ_RESOLVE] = "UPDATE calls SET status = 'queued', args = ?2, " TOUCH " WHERE seq = ?1",
    /* 'pushed' is written out so that the partial index calls_pushed serves it. */
    [SQ_WAITING] = "SELECT EXISTS (SELECT 1 FROM calls WHERE status = 'pushed' "
                   "AND instr(args, ?1) > 0)",
    [SQ_TOUCH] = "UPDATE calls SET " TOUCH " WHERE seq = ?1",
    [SQ_RESTART] = "UPDATE calls SET status = 'queued', attempts = 0, progress = 0, "
                   "outputs = NULL, error = NULL, lease_token = NULL, lease_expires = NULL, "
                   "worker = NULL, terminate_requested = 0, " TOUCH " WHERE seq = ?1",
    [SQ_REFS_ALL] = "SELECT hash FROM call_blobs WHERE seq = ?1 "
                    "UNION SELECT hash FROM checkpoints WHERE seq = ?1",
    [SQ_REFS_RESTART] = "SELECT hash FROM call_blobs WHERE seq = ?1 AND role = 1 "
                        "UNION SELECT hash FROM checkpoints WHERE seq = ?1",
    [SQ_DELETE_REFS] = "DELETE FROM call_blobs WHERE seq = ?1",
    [SQ_DELETE_OUTPUT_REFS] = "DELETE FROM call_blobs WHERE seq = ?1 AND role = 1",
    [SQ_DELETE_CHECKPOINTS] = "DELETE FROM checkpoints WHERE seq = ?1",
    [SQ_DELETE_CALL] = "DELETE FROM calls WHERE seq = ?1",
    [SQ_EXPIRED_LEASES] = "SELECT seq, attempts, terminate_requested FROM calls "
                          "WHERE status = 'running' "
                          "AND lease_expires <= ?1",
    [SQ_EXPIRE_FIND] = "SELECT seq FROM calls WHERE expires_at <= ?1 AND status != 'running' "
                       "ORDER BY expires_at LIMIT ?2",
    [SQ_CHECKPOINT_OLD] = "SELECT hash FROM checkpoints WHERE seq = ?1 AND name = ?2",
    [SQ_CHECKPOINT_SET] = "INSERT INTO checkpoints (seq, name, hash, updated_at) "
                          "VALUES (?1, ?2, ?3, ?20) ON CONFLICT (seq, name) "
                          "DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
    /* The claim being given back does not count: attempts - 1. */
    [SQ_RELEASE_CALL] = "UPDATE calls SET status = 'queued', attempts = max(attempts - 1, 0), "
                        "progress = 0, lease_expires = NULL, " TOUCH " WHERE seq = ?1",
};

const char *p2p__sq_sql(p2p__sq_stmt_id id) {
    return sql_text[id];
}

int p2p__sq_error(sqlite3 *db, int rc, p2p_error *err, const char *what) {
    int code = rc == SQLITE_NOMEM ? P2P_ENOMEM : P2P_ESTORE;
    const char *generic = sqlite3_errstr(rc);
    const char *detail = db != NULL ? sqlite3_errmsg(db) : generic;
    if (strcmp(detail, generic) == 0)
        return p2p_error_set(err, code, "%s: %s", what, detail);
    return p2p_error_set(err, code, "%s: %s (%s)", what, detail, generic);
}

int p2p__sq_stmt(p2p__sq_conn *conn, p2p__sq_stmt_id id, sqlite3_stmt **out, p2p_error *err) {
    sqlite3_stmt *stmt = conn->stmts[id];
    if (stmt == NULL) {
        int rc =
            sqlite3_prepare_v3(conn->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
        if (rc != SQLITE_OK)
            return p2p__sq_error(conn->db, rc, err, "cannot prepare a store statement");
        conn->stmts[id] = stmt;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    *out = stmt;
    return 0;
}

int p2p__sq_step_done(p2p__sq_conn *conn, sqlite3_stmt *stmt, p2p_error *err) {
    int rc = sqlite3_step(stmt);
    int ret = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = p2p__sq_error(conn->db, rc, err, "store write failed");
    sqlite3_reset(stmt);
    return ret;
}

int p2p__sq_exec(p2p__sq_conn *conn, p2p__sq_stmt_id id, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(conn, id, &stmt, err);
    return rc != 0 ? rc : p2p__sq_step_done(conn, stmt, err);
}

int p2p__sq_exec_script(p2p__sq_conn *conn, const char *sql, const char *what, p2p_error *err) {
    int rc = sqlite3_exec(conn->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : p2p__sq_error(conn->db, rc, err, what);
}

void p2p__sq_conn_close(p2p__sq_conn *conn) {
    for (int i = 0; i < SQ_STMT_COUNT; i++) {
        sqlite3_finalize(conn->stmts[i]);
        conn->stmts[i] = NULL;
    }
    sqlite3_close_v2(conn->db);
    conn->db = NULL;
}

/* Copies a TEXT column, or NULL for SQL NULL. Sets *oom on allocation failure. */
static char *column_dup(sqlite3_stmt *stmt, int col, bool *oom) {
    const unsigned char *text = sqlite3_column_text(stmt, col);
    if (text == NULL)
        return NULL;
    char *copy = strdup((const char *)text);
    if (copy == NULL)
        *oom = true;
    return copy;
}

/* Copies a TEXT column of fixed length `len` into `dst` (len + 1 bytes); SQL
 * NULL gives "". A value of another length means the file was tampered with. */
static bool column_fixed(sqlite3_stmt *stmt, int col, char *dst, size_t len) {
    const unsigned char *text = sqlite3_column_text(stmt, col);
    dst[0] = '\0';
    if (text == NULL)
        return true;
    if ((size_t)sqlite3_column_bytes(stmt, col) != len)
        return false;
    memcpy(dst, text, len + 1);
    return true;
}

int p2p__sq_row_to_call(sqlite3_stmt *stmt, p2p_call *call, p2p_error *err) {
    bool oom = false;
    p2p_call_cleanup(call);
    bool ok = column_fixed(stmt, 1, call->identifier, P2P_STORE_ID_LEN) &&
              column_fixed(stmt, 9, call->lease_token, P2P_STORE_TOKEN_LEN);
    const char *status = (const char *)sqlite3_column_text(stmt, 3);
    if (!ok || p2p_call_status_parse(status, &call->status) != 0) {
        p2p_call_cleanup(call);
        return p2p_error_set(err, P2P_ESTORE, "store row %lld is malformed",
                             (long long)sqlite3_column_int64(stmt, 0));
    }
    call->function = column_dup(stmt, 2, &oom);
    call->args = column_dup(stmt, 4, &oom);
    call->outputs = column_dup(stmt, 5, &oom);
    call->error = column_dup(stmt, 6, &oom);
    call->progress = sqlite3_column_double(stmt, 7);
    call->attempts = sqlite3_column_int(stmt, 8);
    call->lease_expires_ms = sqlite3_column_int64(stmt, 10);
    call->worker = column_dup(stmt, 11, &oom);
    call->terminate_requested = sqlite3_column_int(stmt, 12) != 0;
    call->created_ms = sqlite3_column_int64(stmt, 13);
    call->updated_ms = sqlite3_column_int64(stmt, 14);
    call->expires_ms = sqlite3_column_int64(stmt, 15);
    call->version = (uint64_t)sqlite3_column_int64(stmt, 16);
    if (oom) {
        p2p_call_cleanup(call);
        return p2p_error_set(err, P2P_ENOMEM, "out of memory reading a call");
    }
    return 0;
}
