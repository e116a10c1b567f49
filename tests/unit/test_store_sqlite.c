/* White-box checks of the SQLite backend: the file's header (WAL, schema
 * version, application id) and the query plans that keep the hot operations
 * O(log n) as the queue grows: each must search an index, never scan the
 * table or sort. */
#include "store_sqlite.h"
#include "store_sqlite_internal.h"
#include "store_test_util.h"

#include <sqlite3.h>
#include <sys/stat.h>

static char dir[512];

/* Returns the whole EXPLAIN QUERY PLAN of statement `id` as one string. */
static void query_plan(sqlite3 *db, p2p__sq_stmt_id id, char *out, size_t size) {
    char sql[2048];
    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", p2p__sq_sql(id));
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, sqlite3_errmsg(db));
    size_t len = 0;
    out[0] = '\0';
    while (sqlite3_step(stmt) == SQLITE_ROW && len < size) {
        int n = snprintf(out + len, size - len, "%s; ", (const char *)sqlite3_column_text(stmt, 3));
        len += n > 0 ? (size_t)n : 0;
    }
    sqlite3_finalize(stmt);
}

static void expect_plan(sqlite3 *db, p2p__sq_stmt_id id, const char *index) {
    char plan[1024];
    query_plan(db, id, plan, sizeof(plan));
    fprintf(stderr, "   %s\n      -> %s\n", p2p__sq_sql(id), plan);
    ASSERT_STR_CONTAINS(plan, index);
    ASSERT_TRUE(strstr(plan, "SCAN calls") == NULL);
    ASSERT_TRUE(strstr(plan, "TEMP B-TREE FOR ORDER BY") == NULL);
}

static void check_plans(sqlite3 *db) {
    expect_plan(db, SQ_CLAIM_FIND, "INDEX calls_claim (function=? AND status=?)");
    expect_plan(db, SQ_EXPIRED_LEASES, "INDEX calls_lease (lease_expires<?)");
    expect_plan(db, SQ_EXPIRE_FIND, "INDEX calls_expiry (expires_at<?)");
    expect_plan(db, SQ_REFCOUNT, "COVERING INDEX call_blobs_hash (hash=?)");
    expect_plan(db, SQ_REFCOUNT, "COVERING INDEX checkpoints_hash (hash=?)");
    expect_plan(db, SQ_GET_BY_ID, "sqlite_autoindex_calls_1 (identifier=?)");
    expect_plan(db, SQ_COUNT_FUNCTION, "COVERING INDEX calls_claim (function=?)");
    expect_plan(db, SQ_LIST_FUNCTION_STATUS, "calls_claim (function=? AND status=?)");
    expect_plan(db, SQ_CHECKPOINT_GET, "PRIMARY KEY (seq=? AND name=?)");
    /* Walks the partial index of pushed calls only: a scan, but not of `calls`. */
    char plan[1024];
    query_plan(db, SQ_WAITING, plan, sizeof(plan));
    fprintf(stderr, "   %s\n      -> %s\n", p2p__sq_sql(SQ_WAITING), plan);
    ASSERT_STR_CONTAINS(plan, "USING INDEX calls_pushed");
}

static int64_t pragma(sqlite3 *db, const char *sql) {
    sqlite3_stmt *stmt = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

static void test_header_and_plans(void) {
    char *path = p2p_fs_join(dir, "plans.db");
    p2p_store *store = NULL;
    ASSERT_OK(p2p_store_sqlite_open(path, NULL, &store, NULL));
    /* Some rows, so that the planner has something to weigh. */
    for (unsigned i = 0; i < 200; i++)
        st_create(store, "p2prpc_plan", i, i % 2 == 0);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ASSERT_EQ(pragma(db, "PRAGMA user_version"), P2P_STORE_SQLITE_SCHEMA);
    ASSERT_EQ(pragma(db, "PRAGMA application_id"), 0x50325053);
    sqlite3_stmt *stmt = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(stmt, 0), "wal");
    sqlite3_finalize(stmt);
    /* The store never runs ANALYZE; the plans must hold with and without it. */
    check_plans(db);
    ASSERT_EQ(sqlite3_exec(db, "ANALYZE", NULL, NULL, NULL), SQLITE_OK);
    check_plans(db);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    p2p_store_free(store);
    free(path);
}

/* The file is created private to its owner, in a directory created 0700. */
static void test_file_modes(void) {
    char *path = p2p_fs_join(dir, "private/calls.db");
    p2p_store *store = NULL;
    ASSERT_OK(p2p_store_sqlite_open(path, NULL, &store, NULL));
    st_create(store, "p2prpc_mode", 1, true);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    char wal[700];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    ASSERT_EQ(stat(wal, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    snprintf(wal, sizeof(wal), "%s/private", dir);
    ASSERT_EQ(stat(wal, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0700);
    p2p_store_free(store);
    /* Closing checkpoints the WAL into the database and removes it. */
    snprintf(wal, sizeof(wal), "%s-wal", path);
    ASSERT_TRUE(stat(wal, &st) != 0);
    free(path);
}

int main(void) {
    st_make_dir(dir, sizeof(dir), "test_store_sqlite");
    TEST_RUN(test_header_and_plans);
    TEST_RUN(test_file_modes);
    st_remove_dir(dir);
    return 0;
}
