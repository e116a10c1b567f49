/* Shared between the files of the SQLite store backend; not installed.
 *
 *   store_sqlite.c         open, schema, read pool, read operations, vtable
 *   store_sqlite_sql.c     the SQL text, the statement cache, the SQLite error adapter
 *   store_sqlite_writer.c  the writer thread: queue, batches, savepoints, group commit
 *   store_sqlite_ops.c     the write operations, run by the writer inside a batch */
#ifndef P2PRPC_STORE_SQLITE_INTERNAL_H
#define P2PRPC_STORE_SQLITE_INTERNAL_H

#include "store_internal.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

/* Every statement the backend runs; the text is in store_sqlite_sql.c. */
typedef enum p2p__sq_stmt_id {
    SQ_BEGIN,
    SQ_COMMIT,
    SQ_ROLLBACK,
    SQ_SAVEPOINT,
    SQ_ROLLBACK_TO,
    SQ_RELEASE,
    SQ_GET_BY_ID,
    SQ_GET_BY_SEQ,
    SQ_HEAD,
    SQ_CHANGE_INFO,
    SQ_COUNT_ALL,
    SQ_COUNT_FUNCTION,
    SQ_LIST_ALL, /* the four list statements stay in this order: see sq_list_stmt() */
    SQ_LIST_FUNCTION,
    SQ_LIST_STATUS,
    SQ_LIST_FUNCTION_STATUS,
    SQ_REFCOUNT,
    SQ_CHECKPOINT_GET,
    SQ_INSERT_CALL,
    SQ_INSERT_REF,
    SQ_SET_STATE,
    SQ_CLAIM_FIND,
    SQ_CLAIM_SET,
    SQ_RENEW,
    SQ_REQUEST_TERMINATE,
    SQ_TOUCH,
    SQ_RESTART,
    SQ_REFS_ALL,
    SQ_REFS_RESTART,
    SQ_DELETE_REFS,
    SQ_DELETE_OUTPUT_REFS,
    SQ_DELETE_CHECKPOINTS,
    SQ_DELETE_CALL,
    SQ_EXPIRED_LEASES,
    SQ_EXPIRE_FIND,
    SQ_CHECKPOINT_OLD,
    SQ_CHECKPOINT_SET,
    SQ_RELEASE_CALL,
    SQ_RESOLVE,
    SQ_WAITING,
    SQ_STMT_COUNT
} p2p__sq_stmt_id;

/* Roles of the call_blobs table. */
#define SQ_ROLE_ARG 0
#define SQ_ROLE_OUTPUT 1

/* One connection and its prepared statements (prepared on first use). */
typedef struct p2p__sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[SQ_STMT_COUNT];
    struct p2p__sq_conn *next; /* in the pool of idle readers */
} p2p__sq_conn;

typedef enum p2p__sq_opcode {
    SQ_OP_CREATE,
    SQ_OP_MAKE_AVAILABLE,
    SQ_OP_CLAIM,
    SQ_OP_RENEW,
    SQ_OP_FINISH,
    SQ_OP_TERMINATE,
    SQ_OP_DELETE,
    SQ_OP_RESTART,
    SQ_OP_REQUEUE_EXPIRED,
    SQ_OP_EXPIRE,
    SQ_OP_CHECKPOINT_PUT,
    SQ_OP_RELEASE,
    SQ_OP_RESOLVE,
} p2p__sq_opcode;

/* One write operation, on the stack of the caller, who waits until `done`.
 * Inputs are borrowed from the caller; outputs are the caller's. */
typedef struct p2p__sq_op {
    p2p__sq_opcode code;
    const p2p_store_new_call *create;
    const char *identifier;
    const char *function; /* claim */
    const char *worker;   /* claim */
    const char *token;
    const char *text; /* outputs or error message */
    const char *const *blobs;
    size_t nblobs;
    const char *name;       /* checkpoint */
    const char *hash;       /* checkpoint */
    double progress;        /* renew; < 0 = no progress */
    p2p_call_status status; /* finish: the target; terminate, release: the result */
    int64_t cutoff_ms;      /* expire */
    size_t limit;           /* expire */

    p2p_call *call;            /* may be NULL */
    p2p_store_hashes *orphans; /* may be NULL */
    size_t orphans_mark;       /* orphans->count before the op, to undo */
    bool flag;                 /* created, changed */
    p2p_store_lease lease;
    size_t count1, count2; /* requeued and failed; deleted */

    int rc;
    p2p_error error;
    size_t changes_mark; /* the writer's change count before the op, to undo */
    bool done;
    struct p2p__sq_op *next;
} p2p__sq_op;

/* A committed change waiting to be reported to on_change. */
typedef struct p2p__sq_change {
    char identifier[P2P_STORE_ID_LEN + 1];
    char *function; /* owned */
    p2p_call_status status;
    uint64_t version;
    bool deleted;
} p2p__sq_change;

typedef struct p2p__sq_store {
    p2p_store base; /* first: a p2p_store * points here */
    char *path;

    /* The writer. `lock` guards the queue, `stopping`, `done` flags and stats. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* the writer waits for work */
    pthread_cond_t settled; /* callers wait for their op */
    p2p__sq_op *head, *tail;
    bool stopping;
    p2p__sq_conn writer;
    p2p__sq_change *changes; /* owned by the writer thread */
    size_t nchanges, changes_cap;

    /* Idle read connections. */
    pthread_mutex_t readers_lock;
    p2p__sq_conn *readers;

    uint64_t writes, batches, max_batch; /* under `lock` */
    atomic_uint_fast64_t reads;
} p2p__sq_store;

/* --- store_sqlite_sql.c --- */

/* Converts a SQLite failure into P2P_ESTORE (P2P_ENOMEM for SQLITE_NOMEM) with
 * "`what`: SQLite's message", and returns that code. `db` may be NULL. */
int p2p__sq_error(sqlite3 *db, int rc, p2p_error *err, const char *what);

/* Returns in `*out` the connection's statement `id`, prepared on first use,
 * reset and with no bindings. The caller resets it after use. */
int p2p__sq_stmt(p2p__sq_conn *conn, p2p__sq_stmt_id id, sqlite3_stmt **out, p2p_error *err);

/* Returns the SQL text of statement `id` (static). Tests check the query plans. */
const char *p2p__sq_sql(p2p__sq_stmt_id id);

/* Runs statement `id`, which returns no rows, and resets it. */
int p2p__sq_exec(p2p__sq_conn *conn, p2p__sq_stmt_id id, p2p_error *err);

/* Steps `stmt` expecting SQLITE_DONE (and resets it): for UPDATE, INSERT, DELETE. */
int p2p__sq_step_done(p2p__sq_conn *conn, sqlite3_stmt *stmt, p2p_error *err);

/* Finalizes every cached statement and closes the connection. */
void p2p__sq_conn_close(p2p__sq_conn *conn);

/* Fills `call` from the current row of a statement that selects the call
 * columns (SQ_GET_BY_ID, SQ_GET_BY_SEQ, SQ_LIST_*). `call` is cleaned up first. */
int p2p__sq_row_to_call(sqlite3_stmt *stmt, p2p_call *call, p2p_error *err);

/* Runs a one-shot SQL script (schema creation) on `conn`. */
int p2p__sq_exec_script(p2p__sq_conn *conn, const char *sql, const char *what, p2p_error *err);

/* --- store_sqlite_writer.c --- */

/* Starts the writer thread on the store's writer connection. */
int p2p__sq_writer_start(p2p__sq_store *s, p2p_error *err);

/* Lets the writer finish what is queued, then joins it. */
void p2p__sq_writer_stop(p2p__sq_store *s);

/* Queues `op`, waits until the writer settled it, and returns its result. */
int p2p__sq_submit(p2p__sq_store *s, p2p__sq_op *op, p2p_error *err);

/* Notes a change of the call at `seq` for on_change (a no-op without one).
 * A deletion is noted just before the row is deleted, with `deleted` set. */
int p2p__sq_note_change(p2p__sq_store *s, sqlite3_int64 seq, bool deleted, p2p_error *err);

/* --- store_sqlite_ops.c --- */

/* Runs `op` on the writer connection, inside the batch's transaction. */
int p2p__sq_op_run(p2p__sq_store *s, p2p__sq_op *op);

#endif
