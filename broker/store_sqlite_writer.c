/* The writer thread of the SQLite store: group commit.
 *
 * Callers queue an op and sleep on `settled`. The writer takes everything
 * queued (up to MAX_BATCH ops), runs it in one transaction with a savepoint per
 * op, commits once, and wakes the callers. Throughput therefore grows with
 * concurrency instead of collapsing to one commit (one fsync in full mode) per
 * call: while one batch commits, the next one gathers. */
#include "store_sqlite_internal.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Bounds how long one transaction holds the write lock and how much a failed
 * commit takes down with it. */
#define MAX_BATCH 512

static int changes_grow(p2p__sq_store *s, p2p_error *err) {
    if (s->nchanges < s->changes_cap)
        return 0;
    size_t cap = s->changes_cap ? s->changes_cap * 2 : 64;
    void *grown = realloc(s->changes, cap * sizeof(*s->changes));
    if (grown == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory recording a change");
    s->changes = grown;
    s->changes_cap = cap;
    return 0;
}

static int note(p2p__sq_store *s, const char *identifier, const char *function,
                p2p_call_status status, uint64_t version, bool deleted, p2p_error *err) {
    int rc = changes_grow(s, err);
    if (rc != 0)
        return rc;
    p2p__sq_change *c = &s->changes[s->nchanges];
    c->function = strdup(function);
    if (c->function == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory recording a change");
    memcpy(c->identifier, identifier, P2P_STORE_ID_LEN + 1);
    c->status = status;
    c->version = version;
    c->deleted = deleted;
    s->nchanges++;
    return 0;
}

int p2p__sq_note_change(p2p__sq_store *s, sqlite3_int64 seq, bool deleted, p2p_error *err) {
    if (s->base.opts.on_change == NULL)
        return 0;
    sqlite3_stmt *stmt;
    int rc = p2p__sq_stmt(&s->writer, SQ_CHANGE_INFO, &stmt, err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, seq);
    int step = sqlite3_step(stmt);
    p2p_call_status status;
    const char *identifier = (const char *)sqlite3_column_text(stmt, 0);
    const char *function = (const char *)sqlite3_column_text(stmt, 1);
    if (step != SQLITE_ROW)
        rc = p2p__sq_error(s->writer.db, step, err, "cannot read a changed call");
    else if (identifier == NULL || strlen(identifier) != P2P_STORE_ID_LEN || function == NULL ||
             p2p_call_status_parse((const char *)sqlite3_column_text(stmt, 2), &status) != 0)
        rc = p2p_error_set(err, P2P_ESTORE, "store row %lld is malformed", (long long)seq);
    else
        rc = note(s, identifier, function, status,
                  deleted ? 0 : (uint64_t)sqlite3_column_int64(stmt, 3), deleted, err);
    sqlite3_reset(stmt);
    return rc;
}

static void changes_truncate(p2p__sq_store *s, size_t count) {
    while (s->nchanges > count)
        free(s->changes[--s->nchanges].function);
}

/* Forgets what a failed op produced, so that its caller sees nothing of it. */
static void op_undo(p2p__sq_store *s, p2p__sq_op *op) {
    if (op->call != NULL)
        p2p_call_cleanup(op->call);
    if (op->orphans != NULL)
        op->orphans->count = op->orphans_mark;
    changes_truncate(s, op->changes_mark);
}

/* Runs one op inside its own savepoint. Returns nonzero only when the
 * savepoint machinery itself failed, which dooms the whole transaction. */
static int run_one(p2p__sq_store *s, p2p__sq_op *op) {
    op->orphans_mark = op->orphans != NULL ? op->orphans->count : 0;
    op->changes_mark = s->nchanges;
    int rc = p2p__sq_exec(&s->writer, SQ_SAVEPOINT, &op->error);
    if (rc != 0) {
        op->rc = rc;
        return rc;
    }
    op->rc = p2p__sq_op_run(s, op);
    if (op->rc != 0) {
        op_undo(s, op);
        p2p_error scratch;
        rc = p2p__sq_exec(&s->writer, SQ_ROLLBACK_TO, &scratch);
        if (rc != 0) {
            P2P_ERROR("store: %s", scratch.msg);
            return rc;
        }
    }
    p2p_error scratch;
    rc = p2p__sq_exec(&s->writer, SQ_RELEASE, &scratch);
    if (rc != 0)
        P2P_ERROR("store: %s", scratch.msg);
    return rc;
}

/* Gives every op of the batch the transaction's error: even a refusal may
 * have been decided on a change of an earlier op that is now rolled back. */
static void fail_batch(p2p__sq_store *s, p2p__sq_op *batch, const p2p_error *why) {
    for (p2p__sq_op *op = batch; op != NULL; op = op->next) {
        op_undo(s, op);
        op->rc = why->code;
        op->error = *why;
    }
    changes_truncate(s, 0);
}

static void run_batch(p2p__sq_store *s, p2p__sq_op *batch) {
    p2p_error why;
    for (p2p__sq_op *op = batch; op != NULL; op = op->next) {
        op->rc = 0;
        op->orphans_mark = op->orphans != NULL ? op->orphans->count : 0;
        op->changes_mark = 0;
    }
    if (p2p__sq_exec(&s->writer, SQ_BEGIN, &why) != 0) {
        fail_batch(s, batch, &why);
        return;
    }
    int rc = 0;
    for (p2p__sq_op *op = batch; op != NULL && rc == 0; op = op->next)
        rc = run_one(s, op);
    if (rc == 0)
        rc = p2p__sq_exec(&s->writer, SQ_COMMIT, &why);
    else
        p2p_error_set(&why, P2P_ESTORE, "store transaction aborted: %s",
                      sqlite3_errmsg(s->writer.db));
    if (rc != 0) {
        P2P_ERROR("store: %s", why.msg);
        p2p_error scratch;
        if (sqlite3_get_autocommit(s->writer.db) == 0 &&
            p2p__sq_exec(&s->writer, SQ_ROLLBACK, &scratch) != 0)
            P2P_ERROR("store: %s", scratch.msg);
        fail_batch(s, batch, &why);
    }
}

/* Takes up to MAX_BATCH ops off the queue (under `lock`). */
static p2p__sq_op *take_batch(p2p__sq_store *s, size_t *count) {
    p2p__sq_op *batch = s->head, *last = NULL;
    size_t n = 0;
    for (p2p__sq_op *op = batch; op != NULL && n < MAX_BATCH; op = op->next) {
        last = op;
        n++;
    }
    s->head = last->next;
    if (s->head == NULL)
        s->tail = NULL;
    last->next = NULL;
    *count = n;
    return batch;
}

static void report_changes(p2p__sq_store *s) {
    for (size_t i = 0; i < s->nchanges; i++) {
        const p2p__sq_change *c = &s->changes[i];
        p2p_store_change change = {c->identifier, c->function, c->status, c->version, c->deleted};
        s->base.opts.on_change(s->base.opts.on_change_ctx, &change);
    }
    changes_truncate(s, 0);
}

static void *writer_main(void *arg) {
    p2p__sq_store *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->head == NULL)
            break;
        size_t count;
        p2p__sq_op *batch = take_batch(s, &count);
        pthread_mutex_unlock(&s->lock);
        run_batch(s, batch);
        /* Reported before the callers wake: when a write returns, its change
         * has been announced, so a long-poll cannot miss it. */
        report_changes(s);
        pthread_mutex_lock(&s->lock);
        s->writes += count;
        s->batches++;
        if (count > s->max_batch)
            s->max_batch = count;
        /* `next` is read before `done` is set: once done, the op's memory is
         * the caller's again. */
        for (p2p__sq_op *op = batch, *next; op != NULL; op = next) {
            next = op->next;
            op->done = true;
        }
        pthread_cond_broadcast(&s->settled);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int p2p__sq_writer_start(p2p__sq_store *s, p2p_error *err) {
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    if (rc != 0)
        return p2p_error_errno(err, P2P_ESTORE, rc, "cannot start the store writer thread");
    s->thread_started = true;
    return 0;
}

void p2p__sq_writer_stop(p2p__sq_store *s) {
    if (!s->thread_started)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->thread_started = false;
}

int p2p__sq_submit(p2p__sq_store *s, p2p__sq_op *op, p2p_error *err) {
    op->done = false;
    op->next = NULL;
    p2p_error_clear(&op->error);
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    pthread_cond_signal(&s->wake);
    while (!op->done)
        pthread_cond_wait(&s->settled, &s->lock);
    pthread_mutex_unlock(&s->lock);
    if (op->rc != 0 && err != NULL)
        *err = op->error;
    return op->rc;
}
