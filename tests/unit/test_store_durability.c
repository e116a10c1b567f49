/* What the store promises when things go wrong: a broker killed with SIGKILL
 * keeps every change it acknowledged (both sync levels; a conformance test,
 * run on SQLite and MongoDB, see store_test_util.h), and SQLite failures give
 * P2P_ESTORE with SQLite's message while the data stays intact (SQLite only:
 * MongoDB's failure, a server that is down, is in test_store_mongo.c). */
#include "store_test_util.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[512];
static const char *const FN = "p2prpc_durable";

/* --- kill -9 in the middle of a stream of writes --- */

enum { REC_CREATE = 1, REC_CLAIM = 2, REC_COMPLETE = 3 };

/* One acknowledged operation, written to the pipe after the store returned 0.
 * Smaller than PIPE_BUF, so each write is atomic. */
typedef struct record {
    int op;
    unsigned n;
    char token[P2P_STORE_TOKEN_LEN + 1];
} record;

typedef struct child_thread {
    p2p_store *store;
    int fd;
    unsigned first;
} child_thread;

static void report(int fd, int op, unsigned n, const char *token) {
    record rec = {.op = op, .n = n};
    if (token != NULL)
        memcpy(rec.token, token, sizeof(rec.token));
    if (write(fd, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
        _exit(3);
}

/* Each thread claims only calls of its own function, so it knows which one. */
static void *child_work(void *arg) {
    child_thread *t = arg;
    char fn[64], outputs[64];
    snprintf(fn, sizeof(fn), "%s_%u", FN, t->first);
    p2p_call call;
    p2p_call_init(&call);
    for (unsigned n = t->first; n < t->first + 100000; n++) {
        char id[P2P_STORE_ID_LEN + 1];
        st_hex(id, 0xd0, n);
        p2p_store_new_call in = {.identifier = id, .function = fn, .args = "{}", .available = true};
        if (p2p_store_create(t->store, &in, NULL, NULL, NULL) != 0)
            _exit(4);
        report(t->fd, REC_CREATE, n, NULL);
        if (p2p_store_claim(t->store, fn, "child", &call, NULL) != 0)
            _exit(5);
        report(t->fd, REC_CLAIM, n, call.lease_token);
        snprintf(outputs, sizeof(outputs), "{\"n\":%u}", n);
        if (p2p_store_complete(t->store, id, call.lease_token, outputs, NULL, 0, NULL) != 0)
            _exit(6);
        report(t->fd, REC_COMPLETE, n, call.lease_token);
    }
    p2p_call_cleanup(&call);
    return NULL;
}

static void child_main(const char *path, p2p_store_sync sync, int fd) {
    p2p_store_options opts;
    p2p_store_options_init(&opts);
    opts.sync = sync;
    p2p_store *store = NULL;
    if (p2p_store_open(path, &opts, &store, NULL) != 0)
        _exit(2);
    child_thread threads[2] = {{store, fd, 0}, {store, fd, 1000000}};
    pthread_t ids[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&ids[i], NULL, child_work, &threads[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(ids[i], NULL);
    _exit(0);
}

/* Reads records until `want` arrived, kills the child, then drains the pipe. */
static record *collect(pid_t pid, int fd, size_t want, size_t *count) {
    size_t cap = 4096;
    record *recs = malloc(cap * sizeof(*recs));
    ASSERT_TRUE(recs != NULL);
    *count = 0;
    bool killed = false;
    for (;;) {
        if (!killed && *count >= want) {
            ASSERT_EQ(kill(pid, SIGKILL), 0);
            killed = true;
        }
        if (*count == cap) {
            cap *= 2;
            recs = realloc(recs, cap * sizeof(*recs));
            ASSERT_TRUE(recs != NULL);
        }
        ssize_t got = read(fd, &recs[*count], sizeof(record));
        if (got == 0)
            break;
        ASSERT_EQ(got, sizeof(record));
        (*count)++;
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!killed || !WIFSIGNALED(status))
        TEST_FAIL_("the child ended on its own (status %d) before being killed", status);
    return recs;
}

static void check_record(p2p_store *store, const record *rec) {
    char id[P2P_STORE_ID_LEN + 1], outputs[64];
    st_hex(id, 0xd0, rec->n);
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err;
    int rc = p2p_store_get(store, id, &call, &err);
    if (rc != 0)
        TEST_FAIL_("acknowledged call %u lost: %s", rec->n, err.msg);
    if (rec->op == REC_CLAIM) {
        ASSERT_TRUE(call.status == P2P_CALL_RUNNING || call.status == P2P_CALL_DONE);
        ASSERT_STR_EQ(call.lease_token, rec->token);
        ASSERT_EQ(call.attempts, 1);
    } else if (rec->op == REC_COMPLETE) {
        snprintf(outputs, sizeof(outputs), "{\"n\":%u}", rec->n);
        ASSERT_EQ(call.status, P2P_CALL_DONE);
        ASSERT_STR_EQ(call.lease_token, rec->token);
        ASSERT_STR_EQ(call.outputs, outputs);
    }
    p2p_call_cleanup(&call);
}

static void kill_mid_stream(p2p_store_sync sync, const char *name) {
    char path[1024];
    st_location(dir, name, path, sizeof(path));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_main(path, sync, fds[1]);
    }
    close(fds[1]);
    size_t count = 0;
    record *recs = collect(pid, fds[0], 1500, &count);
    close(fds[0]);
    fprintf(stderr, "   %zu acknowledged operations before SIGKILL\n", count);
    ASSERT_GE(count, 1500);

    p2p_store_options opts;
    p2p_store_options_init(&opts);
    p2p_store *store = NULL;
    p2p_error err;
    if (p2p_store_open(path, &opts, &store, &err) != 0)
        TEST_FAIL_("reopening after SIGKILL: %s", err.msg);
    size_t creates = 0;
    for (size_t i = 0; i < count; i++) {
        check_record(store, &recs[i]);
        creates += recs[i].op == REC_CREATE;
    }
    /* Nothing beyond what was acknowledged, except each thread's call in flight. */
    uint64_t counts[P2P_CALL_STATUS_COUNT], total = 0;
    ASSERT_OK(p2p_store_count(store, NULL, counts, NULL));
    for (int s = 0; s < P2P_CALL_STATUS_COUNT; s++)
        total += counts[s];
    ASSERT_GE(total, creates);
    ASSERT_LE(total, creates + 2);
    ASSERT_EQ(counts[P2P_CALL_PUSHED] + counts[P2P_CALL_FAILED] + counts[P2P_CALL_TERMINATED], 0);
    p2p_store_free(store);
    free(recs);
}

static void test_kill_normal(void) {
    kill_mid_stream(P2P_STORE_SYNC_NORMAL, "kill_normal.db");
}

static void test_kill_full(void) {
    kill_mid_stream(P2P_STORE_SYNC_FULL, "kill_full.db");
}

/* --- store errors --- */

static char *read_all(const char *path, size_t *len) {
    char *data = NULL;
    ASSERT_OK(p2p_fs_read_file(path, 1 << 20, &data, len, NULL));
    return data;
}

/* Opening `path` fails with P2P_ESTORE naming `expect`, and leaves it as it was. */
static void expect_refused(const char *path, const char *expect) {
    size_t before_len = 0, after_len = 0;
    char *before = read_all(path, &before_len);
    p2p_store *store = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_store_open(path, NULL, &store, &err), P2P_ESTORE);
    ASSERT_TRUE(store == NULL);
    ASSERT_STR_CONTAINS(err.msg, expect);
    char *after = read_all(path, &after_len);
    ASSERT_EQ(after_len, before_len);
    ASSERT_MEM_EQ(after, before, before_len);
    free(before);
    free(after);
}

static void raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, msg);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

static void test_bad_files(void) {
    char *path = p2p_fs_join(dir, "garbage.db");
    char garbage[8192];
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)('a' + i % 26);
    ASSERT_OK(p2p_fs_write_atomic(path, garbage, sizeof(garbage), 0600, NULL));
    expect_refused(path, "not a database");
    free(path);

    path = p2p_fs_join(dir, "foreign.db");
    raw_exec(path, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT);"
                   "INSERT INTO accounts (owner) VALUES ('alice');");
    expect_refused(path, "not a p2prpc store");
    free(path);

    path = p2p_fs_join(dir, "future.db");
    p2p_store *store = NULL;
    ASSERT_OK(p2p_store_open(path, NULL, &store, NULL));
    st_create(store, FN, 1, false);
    p2p_store_free(store);
    raw_exec(path, "PRAGMA user_version = 99");
    expect_refused(path, "schema version 99");
    free(path);

    p2p_error err;
    ASSERT_EQ(p2p_store_open(dir, NULL, &store, &err), P2P_ESTORE);
    ASSERT_STR_CONTAINS(err.msg, dir);
}

typedef struct refuser {
    p2p_store *store;
    const char *function;
    unsigned first;
    int ok, refused, other;
    char msg[256];
} refuser;

static void *create_some(void *arg) {
    refuser *r = arg;
    for (unsigned i = 0; i < 50; i++) {
        char id[P2P_STORE_ID_LEN + 1];
        st_hex(id, 0xe0, r->first + i);
        p2p_store_new_call in = {.identifier = id, .function = r->function, .args = "{}"};
        p2p_error err;
        int rc = p2p_store_create(r->store, &in, NULL, NULL, &err);
        r->ok += rc == 0;
        r->refused += rc == P2P_ESTORE;
        r->other += rc != 0 && rc != P2P_ESTORE;
        if (rc != 0)
            snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    }
    return NULL;
}

/* SQLite refuses some writes (a trigger stands in for a failing disk or a
 * constraint): those get P2P_ESTORE with SQLite's message, and the writes that
 * share their transaction commit anyway. To make sure they do share one, a
 * second connection holds the write lock while the four threads queue their
 * first create: the writer waits on the lock with the first one, and the
 * other three (at least one of each kind) make the next batch. */
static void test_failed_writes_are_isolated(void) {
    char *path = p2p_fs_join(dir, "trigger.db");
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.busy_timeout_ms = 20000;
    p2p_store *store = NULL;
    ASSERT_OK(p2p_store_open(path, &opts, &store, NULL));
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TRIGGER refuse BEFORE INSERT ON calls "
                           "WHEN NEW.function = 'p2prpc_refused' "
                           "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END;"
                           "BEGIN IMMEDIATE",
                           NULL, NULL, NULL),
              SQLITE_OK);
    refuser rs[4] = {{store, "p2prpc_refused", 0, 0, 0, 0, ""},
                     {store, FN, 100, 0, 0, 0, ""},
                     {store, "p2prpc_refused", 200, 0, 0, 0, ""},
                     {store, FN, 300, 0, 0, 0, ""}};
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&threads[i], NULL, create_some, &rs[i]), 0);
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    ASSERT_EQ(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_join(threads[i], NULL), 0);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(rs[i].other, 0);
        ASSERT_EQ(rs[i].ok, i % 2 == 1 ? 50 : 0);
        ASSERT_EQ(rs[i].refused, i % 2 == 1 ? 0 : 50);
    }
    ASSERT_STR_CONTAINS(rs[0].msg, "refused by the test trigger");
    p2p_store_stats stats;
    p2p_store_get_stats(store, &stats);
    fprintf(stderr, "   200 creates, 100 refused, in %llu transactions (largest: %llu)\n",
            (unsigned long long)stats.batches, (unsigned long long)stats.max_batch);
    ASSERT_GE(stats.max_batch, 3);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, NULL, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_PUSHED], 100);
    p2p_store_free(store);
    free(path);
}

/* Another process holds the write lock past the busy timeout: P2P_ESTORE,
 * then everything works again once it lets go. */
static void test_locked_database(void) {
    char *path = p2p_fs_join(dir, "locked.db");
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.busy_timeout_ms = 100;
    p2p_store *store = NULL;
    ASSERT_OK(p2p_store_open(path, &opts, &store, NULL));
    st_create(store, FN, 1, true);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 2);
    p2p_store_new_call in = {.identifier = id, .function = FN, .args = "{}"};
    p2p_error err;
    ASSERT_EQ(p2p_store_create(store, &in, NULL, NULL, &err), P2P_ESTORE);
    ASSERT_STR_CONTAINS(err.msg, "locked");
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_EQ(p2p_store_get(store, id, &call, &err), P2P_ENOTFOUND);
    st_hex(id, 0xca11, 1);
    ASSERT_OK(p2p_store_get(store, id, &call, NULL)); /* reads still work */
    ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    st_create(store, FN, 2, true);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_QUEUED], 2);
    p2p_call_cleanup(&call);
    p2p_store_free(store);
    free(path);
}

int main(void) {
    st_make_dir(dir, sizeof(dir), "test_store_durability");
    TEST_RUN(test_kill_normal);
    TEST_RUN(test_kill_full);
    if (!st_mongo()) {
        TEST_RUN(test_bad_files);
        TEST_RUN(test_failed_writes_are_isolated);
        TEST_RUN(test_locked_database);
    }
    st_remove_dir(dir);
    return st_exit_status();
}
