/* The write operations of the SQLite store. Each runs on the writer connection
 * inside the current batch's transaction and savepoint: when one returns an
 * error, the writer rolls its savepoint back, so an op may stop half-way. */
#include "store_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What most ops read first: the call's state, without its texts. */
typedef struct head {
    sqlite3_int64 seq;
    p2p_call_status status;
    char token[P2P_STORE_TOKEN_LEN + 1];
    bool terminate_requested;
    char function[P2P_STORE_NAME_MAX + 1];
} head;

/* A call's sequence number with what lease expiry needs to decide its fate. */
typedef struct expired {
    sqlite3_int64 seq;
    int attempts;
    bool terminate_requested;
} expired;

static p2p__sq_conn *wconn(p2p__sq_store *s) {
    return &s->writer;
}

/* Binds ?20 (updated_at) and ?21 (expires_at) of a statement that touches a
 * call; statements without them are left alone. */
static void bind_touch(p2p__sq_store *s, sqlite3_stmt *stmt, int64_t now) {
    if (sqlite3_bind_parameter_count(stmt) < 20)
        return;
    sqlite3_bind_int64(stmt, 20, now);
    if (s->base.opts.call_ttl_ms > 0)
        sqlite3_bind_int64(stmt, 21, now + s->base.opts.call_ttl_ms);
    else
        sqlite3_bind_null(stmt, 21);
}

static void bind_text(sqlite3_stmt *stmt, int index, const char *text) {
    if (text != NULL)
        sqlite3_bind_text(stmt, index, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, index);
}

static int load_head(p2p__sq_store *s, const char *identifier, head *h, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_HEAD, &stmt, err);
    if (rc != 0)
        return rc;
    bind_text(stmt, 1, identifier);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) {
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no call %s", identifier);
    } else if (step != SQLITE_ROW) {
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot read a call");
    } else {
        const char *status = (const char *)sqlite3_column_text(stmt, 1);
        const char *token = (const char *)sqlite3_column_text(stmt, 2);
        const char *function = (const char *)sqlite3_column_text(stmt, 4);
        h->seq = sqlite3_column_int64(stmt, 0);
        h->terminate_requested = sqlite3_column_int(stmt, 3) != 0;
        snprintf(h->token, sizeof(h->token), "%s", token != NULL ? token : "");
        snprintf(h->function, sizeof(h->function), "%s", function != NULL ? function : "");
        if (p2p_call_status_parse(status, &h->status) != 0)
            rc = p2p_error_set(err, P2P_ESTORE, "call %s has a malformed status", identifier);
    }
    sqlite3_reset(stmt);
    return rc;
}

/* Loads the call at `seq` into `call`, when the caller asked for it. */
static int fill_call(p2p__sq_store *s, sqlite3_int64 seq, p2p_call *call, p2p_error *err) {
    if (call == NULL)
        return 0;
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_GET_BY_SEQ, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        rc = p2p__sq_row_to_call(stmt, call, err);
    else
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot read back a call");
    sqlite3_reset(stmt);
    return rc;
}

static int set_state(p2p__sq_store *s, sqlite3_int64 seq, p2p_call_status status,
                     const char *outputs, const char *error, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_SET_STATE, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    bind_text(stmt, 2, p2p_call_status_name(status));
    bind_text(stmt, 3, outputs);
    bind_text(stmt, 4, error);
    bind_touch(s, stmt, p2p__store_now(&s->base));
    rc = p2p__sq_step_done(wconn(s), stmt, err);
    return rc != 0 ? rc : p2p__sq_note_change(s, seq, false, err);
}

/* Runs a statement whose only parameter is ?1 = seq (plus the touch ones). */
static int exec_seq(p2p__sq_store *s, p2p__sq_stmt_id id, sqlite3_int64 seq, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), id, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    bind_touch(s, stmt, p2p__store_now(&s->base));
    return p2p__sq_step_done(wconn(s), stmt, err);
}

static int add_refs(p2p__sq_store *s, sqlite3_int64 seq, int role, const char *const *blobs,
                    size_t nblobs, p2p_error *err) {
    for (size_t i = 0; i < nblobs; i++) {
        sqlite3_stmt *stmt;
        int rc = p2p__sq_stmt(wconn(s), SQ_INSERT_REF, &stmt, err);
        if (rc != 0)
            return rc;
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_int(stmt, 2, role);
        bind_text(stmt, 3, blobs[i]);
        rc = p2p__sq_step_done(wconn(s), stmt, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Collects the hashes a statement with ?1 = seq selects (first column). */
static int collect_hashes(p2p__sq_store *s, p2p__sq_stmt_id id, sqlite3_int64 seq,
                          p2p_store_hashes *out, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), id, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    int step;
    while (rc == 0 && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *hash = (const char *)sqlite3_column_text(stmt, 0);
        if (hash == NULL || strlen(hash) != P2P_STORE_ID_LEN)
            rc = p2p_error_set(err, P2P_ESTORE, "call row %lld has a malformed blob hash",
                               (long long)seq);
        else if (p2p_store_hashes_add(out, hash) != 0)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory collecting blob hashes");
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot read blob references");
    sqlite3_reset(stmt);
    return rc;
}

static int refcount(p2p__sq_store *s, const char *hash, sqlite3_int64 *count, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_REFCOUNT, &stmt, err);
    if (rc != 0)
        return rc;
    bind_text(stmt, 1, hash);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        *count = sqlite3_column_int64(stmt, 0);
    else
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot count blob references");
    sqlite3_reset(stmt);
    return rc;
}

/* Appends to `orphans` (when not NULL) each of `candidates` nothing references. */
static int add_orphans(p2p__sq_store *s, const p2p_store_hashes *candidates,
                       p2p_store_hashes *orphans, p2p_error *err) {
    for (size_t i = 0; orphans != NULL && i < candidates->count; i++) {
        sqlite3_int64 count = 0;
        int rc = refcount(s, candidates->items[i], &count, err);
        if (rc != 0)
            return rc;
        if (count == 0 && p2p_store_hashes_add(orphans, candidates->items[i]) != 0)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory collecting blob hashes");
    }
    return 0;
}

/* Deletes the call at `seq` with its references; its lost blobs go to `orphans`. */
static int delete_seq(p2p__sq_store *s, sqlite3_int64 seq, p2p_store_hashes *orphans,
                      p2p_error *err) {
    p2p_store_hashes refs;
    p2p_store_hashes_init(&refs);
    int rc = p2p__sq_note_change(s, seq, true, err);
    if (rc == 0 && orphans != NULL)
        rc = collect_hashes(s, SQ_REFS_ALL, seq, &refs, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_DELETE_REFS, seq, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_DELETE_CHECKPOINTS, seq, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_DELETE_CALL, seq, err);
    if (rc == 0)
        rc = add_orphans(s, &refs, orphans, err);
    p2p_store_hashes_cleanup(&refs);
    return rc;
}

/* Loads the call and checks that `token` is its current lease. */
static int check_lease(p2p__sq_store *s, const char *identifier, const char *token, head *h,
                       p2p_error *err) {
    int rc = load_head(s, identifier, h, err);
    if (rc != 0)
        return rc;
    if (strcmp(h->token, token) != 0)
        return p2p_error_set(err, P2P_ECONFLICT,
                             "stale lease for call %s: the call was claimed again or never was",
                             identifier);
    if (h->status != P2P_CALL_RUNNING)
        return p2p_error_set(err, P2P_ECONFLICT, "stale lease for call %s: the call is %s",
                             identifier, p2p_call_status_name(h->status));
    return 0;
}

static int insert_call(p2p__sq_store *s, const p2p_store_new_call *in, sqlite3_int64 *seq,
                       p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_INSERT_CALL, &stmt, err);
    if (rc != 0)
        return rc;
    bind_text(stmt, 1, in->identifier);
    bind_text(stmt, 2, in->function);
    bind_text(stmt, 3, p2p_call_status_name(in->available ? P2P_CALL_QUEUED : P2P_CALL_PUSHED));
    bind_text(stmt, 4, in->args);
    bind_touch(s, stmt, p2p__store_now(&s->base));
    rc = p2p__sq_step_done(wconn(s), stmt, err);
    if (rc != 0)
        return rc;
    *seq = sqlite3_last_insert_rowid(wconn(s)->db);
    rc = add_refs(s, *seq, SQ_ROLE_ARG, in->blobs, in->nblobs, err);
    return rc != 0 ? rc : p2p__sq_note_change(s, *seq, false, err);
}

static int op_create(p2p__sq_store *s, p2p__sq_op *op) {
    const p2p_store_new_call *in = op->create;
    head h;
    p2p_error *err = &op->error;
    int rc = load_head(s, in->identifier, &h, err);
    if (rc == P2P_ENOTFOUND) {
        op->flag = true;
        rc = insert_call(s, in, &h.seq, err);
    } else if (rc == 0) {
        op->flag = false;
        if (strcmp(h.function, in->function) != 0)
            return p2p_error_set(err, P2P_ECONFLICT, "call %s exists for function %s, not %s",
                                 in->identifier, h.function, in->function);
        if (in->available && h.status == P2P_CALL_PUSHED)
            rc = set_state(s, h.seq, P2P_CALL_QUEUED, NULL, NULL, err);
    }
    return rc != 0 ? rc : fill_call(s, h.seq, op->call, err);
}

static int op_make_available(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    int rc = load_head(s, op->identifier, &h, &op->error);
    if (rc != 0)
        return rc;
    op->flag = h.status == P2P_CALL_PUSHED;
    if (h.status == P2P_CALL_FAILED || h.status == P2P_CALL_TERMINATED)
        return p2p_error_set(&op->error, P2P_ECONFLICT, "call %s is %s; restart it to run it again",
                             op->identifier, p2p_call_status_name(h.status));
    if (!op->flag)
        return 0;
    return set_state(s, h.seq, P2P_CALL_QUEUED, NULL, NULL, &op->error);
}

static int find_queued(p2p__sq_store *s, const char *function, sqlite3_int64 *seq, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_CLAIM_FIND, &stmt, err);
    if (rc != 0)
        return rc;
    bind_text(stmt, 1, function);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        *seq = sqlite3_column_int64(stmt, 0);
    else if (step == SQLITE_DONE)
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no queued call of %s", function);
    else
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot look for a queued call");
    sqlite3_reset(stmt);
    return rc;
}

static int op_claim(p2p__sq_store *s, p2p__sq_op *op) {
    p2p_error *err = &op->error;
    sqlite3_int64 seq = 0;
    char token[P2P_STORE_TOKEN_LEN + 1];
    int rc = find_queued(s, op->function, &seq, err);
    if (rc == 0)
        rc = p2p__store_new_token(token, err);
    sqlite3_stmt *stmt = NULL;
    if (rc == 0)
        rc = p2p__sq_stmt(wconn(s), SQ_CLAIM_SET, &stmt, err);
    if (rc != 0)
        return rc;
    int64_t now = p2p__store_now(&s->base);
    sqlite3_bind_int64(stmt, 1, seq);
    bind_text(stmt, 2, token);
    sqlite3_bind_int64(stmt, 3, now + s->base.opts.lease_ms);
    bind_text(stmt, 4, op->worker);
    bind_touch(s, stmt, now);
    rc = p2p__sq_step_done(wconn(s), stmt, err);
    if (rc == 0)
        rc = p2p__sq_note_change(s, seq, false, err);
    return rc != 0 ? rc : fill_call(s, seq, op->call, err);
}

static int op_renew(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    int rc = check_lease(s, op->identifier, op->token, &h, err);
    sqlite3_stmt *stmt;
    if (rc == 0)
        rc = p2p__sq_stmt(wconn(s), SQ_RENEW, &stmt, err);
    if (rc != 0)
        return rc;
    int64_t now = p2p__store_now(&s->base);
    op->lease.expires_ms = now + s->base.opts.lease_ms;
    op->lease.terminate_requested = h.terminate_requested;
    sqlite3_bind_int64(stmt, 1, h.seq);
    sqlite3_bind_int64(stmt, 2, op->lease.expires_ms);
    if (op->progress >= 0)
        sqlite3_bind_double(stmt, 3, op->progress);
    bind_touch(s, stmt, now);
    rc = p2p__sq_step_done(wconn(s), stmt, err);
    return rc != 0 ? rc : p2p__sq_note_change(s, h.seq, false, err);
}

static int op_finish(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    int rc = load_head(s, op->identifier, &h, err);
    if (rc != 0)
        return rc;
    /* A retry by the worker that finished it: its first reply was lost. */
    if (h.status == op->status && strcmp(h.token, op->token) == 0)
        return 0;
    rc = check_lease(s, op->identifier, op->token, &h, err);
    if (rc != 0)
        return rc;
    const char *outputs = op->status == P2P_CALL_DONE ? op->text : NULL;
    const char *error = op->status == P2P_CALL_FAILED ? op->text : NULL;
    rc = add_refs(s, h.seq, SQ_ROLE_OUTPUT, op->blobs, op->nblobs, err);
    return rc != 0 ? rc : set_state(s, h.seq, op->status, outputs, error, err);
}

static int op_terminate(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    int rc = load_head(s, op->identifier, &h, &op->error);
    if (rc != 0)
        return rc;
    op->status = h.status;
    if (h.status == P2P_CALL_PUSHED || h.status == P2P_CALL_QUEUED) {
        op->status = P2P_CALL_TERMINATED;
        return set_state(s, h.seq, P2P_CALL_TERMINATED, NULL, NULL, &op->error);
    }
    if (h.status != P2P_CALL_RUNNING || h.terminate_requested)
        return 0;
    rc = exec_seq(s, SQ_REQUEST_TERMINATE, h.seq, &op->error);
    return rc != 0 ? rc : p2p__sq_note_change(s, h.seq, false, &op->error);
}

static int op_release(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    int rc = load_head(s, op->identifier, &h, err);
    if (rc != 0)
        return rc;
    op->status = h.status;
    /* A retry by the worker that released it: its first reply was lost. */
    if ((h.status == P2P_CALL_QUEUED || h.status == P2P_CALL_TERMINATED) &&
        strcmp(h.token, op->token) == 0)
        return 0;
    rc = check_lease(s, op->identifier, op->token, &h, err);
    if (rc != 0)
        return rc;
    if (h.terminate_requested) {
        op->status = P2P_CALL_TERMINATED;
        return set_state(s, h.seq, P2P_CALL_TERMINATED, NULL, NULL, err);
    }
    op->status = P2P_CALL_QUEUED;
    rc = exec_seq(s, SQ_RELEASE_CALL, h.seq, err);
    return rc != 0 ? rc : p2p__sq_note_change(s, h.seq, false, err);
}

static int op_delete(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    int rc = load_head(s, op->identifier, &h, &op->error);
    return rc != 0 ? rc : delete_seq(s, h.seq, op->orphans, &op->error);
}

static int op_restart(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    int rc = load_head(s, op->identifier, &h, err);
    if (rc != 0)
        return rc;
    if (!p2p_call_status_finished(h.status))
        return p2p_error_set(err, P2P_ECONFLICT, "call %s is %s; only a finished call restarts",
                             op->identifier, p2p_call_status_name(h.status));
    p2p_store_hashes refs;
    p2p_store_hashes_init(&refs);
    rc = collect_hashes(s, SQ_REFS_RESTART, h.seq, &refs, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_DELETE_OUTPUT_REFS, h.seq, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_DELETE_CHECKPOINTS, h.seq, err);
    if (rc == 0)
        rc = exec_seq(s, SQ_RESTART, h.seq, err);
    if (rc == 0)
        rc = add_orphans(s, &refs, op->orphans, err);
    if (rc == 0)
        rc = p2p__sq_note_change(s, h.seq, false, err);
    p2p_store_hashes_cleanup(&refs);
    return rc;
}

/* Collects the running calls whose lease ended at or before `now`. Collected
 * first, because updating them changes the index the query walks. */
static int collect_expired(p2p__sq_store *s, int64_t now, expired **out, size_t *count,
                           p2p_error *err) {
    sqlite3_stmt *stmt;
    size_t cap = 0;
    int rc = p2p__sq_stmt(wconn(s), SQ_EXPIRED_LEASES, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, now);
    int step;
    while (rc == 0 && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            expired *grown = realloc(*out, cap * sizeof(**out));
            if (grown == NULL) {
                rc = p2p_error_set(err, P2P_ENOMEM, "out of memory collecting expired leases");
                break;
            }
            *out = grown;
        }
        expired *e = &(*out)[(*count)++];
        e->seq = sqlite3_column_int64(stmt, 0);
        e->attempts = sqlite3_column_int(stmt, 1);
        e->terminate_requested = sqlite3_column_int(stmt, 2) != 0;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot look for expired leases");
    sqlite3_reset(stmt);
    return rc;
}

static int settle_expired(p2p__sq_store *s, const expired *e, p2p__sq_op *op) {
    if (e->terminate_requested) {
        op->count2++;
        return set_state(s, e->seq, P2P_CALL_TERMINATED, NULL, NULL, &op->error);
    }
    if (e->attempts >= s->base.opts.max_attempts) {
        char msg[64];
        snprintf(msg, sizeof(msg), "lease expired %d times", e->attempts);
        op->count2++;
        return set_state(s, e->seq, P2P_CALL_FAILED, NULL, msg, &op->error);
    }
    op->count1++;
    return set_state(s, e->seq, P2P_CALL_QUEUED, NULL, NULL, &op->error);
}

static int op_requeue_expired(p2p__sq_store *s, p2p__sq_op *op) {
    expired *list = NULL;
    size_t count = 0;
    op->count1 = op->count2 = 0;
    int rc = collect_expired(s, p2p__store_now(&s->base), &list, &count, &op->error);
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = settle_expired(s, &list[i], op);
    free(list);
    return rc;
}

/* Collects the calls SQ_EXPIRE_FIND selects, before any is deleted. */
static int collect_expire(p2p__sq_store *s, p2p__sq_op *op, sqlite3_int64 **seqs, size_t *n,
                          p2p_error *err) {
    sqlite3_stmt *stmt;
    size_t cap = 0;
    int rc = p2p__sq_stmt(wconn(s), SQ_EXPIRE_FIND, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, op->cutoff_ms);
    sqlite3_bind_int64(stmt, 2, op->limit > 0 ? (sqlite3_int64)op->limit : -1);
    int step;
    while (rc == 0 && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            sqlite3_int64 *grown = realloc(*seqs, cap * sizeof(**seqs));
            if (grown == NULL) {
                rc = p2p_error_set(err, P2P_ENOMEM, "out of memory collecting expired calls");
                break;
            }
            *seqs = grown;
        }
        (*seqs)[(*n)++] = sqlite3_column_int64(stmt, 0);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot look for expired calls");
    sqlite3_reset(stmt);
    return rc;
}

static int op_expire(p2p__sq_store *s, p2p__sq_op *op) {
    sqlite3_int64 *seqs = NULL;
    size_t n = 0;
    op->count1 = 0;
    int rc = collect_expire(s, op, &seqs, &n, &op->error);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = delete_seq(s, seqs[i], op->orphans, &op->error);
        op->count1 += rc == 0;
    }
    free(seqs);
    return rc;
}

/* Reads the hash checkpoint `name` of `seq` had, when it differs from `hash`. */
static int checkpoint_old(p2p__sq_store *s, sqlite3_int64 seq, const char *name, const char *hash,
                          p2p_store_hashes *old, p2p_error *err) {
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(wconn(s), SQ_CHECKPOINT_OLD, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    bind_text(stmt, 2, name);
    int step = sqlite3_step(stmt);
    const char *prev = step == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = p2p__sq_error(wconn(s)->db, step, err, "cannot read a checkpoint");
    else if (prev != NULL && strlen(prev) == P2P_STORE_ID_LEN && strcmp(prev, hash) != 0 &&
             p2p_store_hashes_add(old, prev) != 0)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory saving a checkpoint");
    sqlite3_reset(stmt);
    return rc;
}

static int op_checkpoint_put(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    p2p_store_hashes old;
    p2p_store_hashes_init(&old);
    sqlite3_stmt *stmt;
    int rc = check_lease(s, op->identifier, op->token, &h, err);
    if (rc == 0)
        rc = checkpoint_old(s, h.seq, op->name, op->hash, &old, err);
    if (rc == 0)
        rc = p2p__sq_stmt(wconn(s), SQ_CHECKPOINT_SET, &stmt, err);
    if (rc == 0) {
        sqlite3_bind_int64(stmt, 1, h.seq);
        bind_text(stmt, 2, op->name);
        bind_text(stmt, 3, op->hash);
        bind_touch(s, stmt, p2p__store_now(&s->base));
        rc = p2p__sq_step_done(wconn(s), stmt, err);
    }
    if (rc == 0)
        rc = exec_seq(s, SQ_TOUCH, h.seq, err);
    if (rc == 0)
        rc = add_orphans(s, &old, op->orphans, err);
    if (rc == 0)
        rc = p2p__sq_note_change(s, h.seq, false, err);
    p2p_store_hashes_cleanup(&old);
    return rc;
}

/* A waiting (pushed) call gets its resolved args and blobs and is queued, or
 * fails with op->text as the message when op->status is failed. */
static int op_resolve(p2p__sq_store *s, p2p__sq_op *op) {
    head h;
    p2p_error *err = &op->error;
    int rc = load_head(s, op->identifier, &h, err);
    if (rc != 0)
        return rc;
    if (h.status != P2P_CALL_PUSHED)
        return p2p_error_set(err, P2P_ECONFLICT, "call %s is %s, not waiting for its inputs",
                             op->identifier, p2p_call_status_name(h.status));
    if (op->status == P2P_CALL_FAILED)
        return set_state(s, h.seq, P2P_CALL_FAILED, NULL, op->text, err);
    sqlite3_stmt *stmt;
    rc = p2p__sq_stmt(wconn(s), SQ_RESOLVE, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, h.seq);
    bind_text(stmt, 2, op->text);
    bind_touch(s, stmt, p2p__store_now(&s->base));
    rc = p2p__sq_step_done(wconn(s), stmt, err);
    if (rc == 0)
        rc = add_refs(s, h.seq, SQ_ROLE_ARG, op->blobs, op->nblobs, err);
    return rc != 0 ? rc : p2p__sq_note_change(s, h.seq, false, err);
}

int p2p__sq_op_run(p2p__sq_store *s, p2p__sq_op *op) {
    switch (op->code) {
    case SQ_OP_CREATE:
        return op_create(s, op);
    case SQ_OP_MAKE_AVAILABLE:
        return op_make_available(s, op);
    case SQ_OP_CLAIM:
        return op_claim(s, op);
    case SQ_OP_RENEW:
        return op_renew(s, op);
    case SQ_OP_FINISH:
        return op_finish(s, op);
    case SQ_OP_TERMINATE:
        return op_terminate(s, op);
    case SQ_OP_DELETE:
        return op_delete(s, op);
    case SQ_OP_RESTART:
        return op_restart(s, op);
    case SQ_OP_REQUEUE_EXPIRED:
        return op_requeue_expired(s, op);
    case SQ_OP_EXPIRE:
        return op_expire(s, op);
    case SQ_OP_CHECKPOINT_PUT:
        return op_checkpoint_put(s, op);
    case SQ_OP_RELEASE:
        return op_release(s, op);
    case SQ_OP_RESOLVE:
        return op_resolve(s, op);
    }
    return p2p_error_set(&op->error, P2P_EINTERNAL, "unknown store operation %d", (int)op->code);
}
