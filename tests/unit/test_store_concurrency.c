/* The store under concurrent callers: atomic claims, concurrent idempotent
 * creates, group commit, and refused operations sharing a transaction with
 * successful ones. A conformance test (store_test_util.h): on MongoDB the
 * claimers also use two store handles, as two brokers sharing a database do. */
#include "store_test_util.h"

#include <pthread.h>

#define THREADS 8
#define QUEUED 500

static char dir[512];
static const char *const FN = "p2prpc_race";

typedef struct claimer {
    p2p_store *store;
    unsigned claimed[QUEUED];
    char tokens[QUEUED][P2P_STORE_TOKEN_LEN + 1];
    size_t count;
    int unexpected; /* an error other than "nothing queued" */
} claimer;

static void *claim_all(void *arg) {
    claimer *c = arg;
    p2p_call call;
    p2p_call_init(&call);
    /* Bounded: there are QUEUED calls in all. */
    for (int i = 0; i <= QUEUED; i++) {
        int rc = p2p_store_claim(c->store, FN, "racer", &call, NULL);
        if (rc == P2P_ENOTFOUND)
            break;
        if (rc != 0 || c->count == QUEUED) {
            c->unexpected = rc != 0 ? rc : -1;
            break;
        }
        c->claimed[c->count] = (unsigned)strtoul(call.identifier + 8, NULL, 16);
        memcpy(c->tokens[c->count], call.lease_token, P2P_STORE_TOKEN_LEN + 1);
        c->count++;
    }
    p2p_call_cleanup(&call);
    return NULL;
}

static int cmp_token(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_claim_race(void) {
    if (st_skip_on_jongodb("claim race", "its concurrent findAndModify is not atomic"))
        return;
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "race.db", &opts);
    /* Half the claimers go through a second handle: on SQLite another
     * connection to the file, on MongoDB another client pool (a second broker). */
    p2p_store *second = st_open(dir, "race.db", &opts);
    for (unsigned i = 0; i < QUEUED; i++)
        st_create(store, FN, i, true);
    static claimer claimers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        claimers[t] = (claimer){.store = t % 2 == 0 ? store : second};
        ASSERT_EQ(pthread_create(&threads[t], NULL, claim_all, &claimers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        ASSERT_EQ(pthread_join(threads[t], NULL), 0);

    static int times[QUEUED];
    static const char *tokens[QUEUED];
    size_t total = 0;
    for (int t = 0; t < THREADS; t++) {
        ASSERT_EQ(claimers[t].unexpected, 0);
        for (size_t i = 0; i < claimers[t].count; i++) {
            ASSERT_LT(claimers[t].claimed[i], QUEUED);
            times[claimers[t].claimed[i]]++;
            tokens[total++] = claimers[t].tokens[i];
        }
    }
    ASSERT_EQ(total, QUEUED);
    for (unsigned i = 0; i < QUEUED; i++)
        ASSERT_EQ(times[i], 1);
    qsort(tokens, QUEUED, sizeof(tokens[0]), cmp_token);
    for (unsigned i = 1; i < QUEUED; i++)
        ASSERT_TRUE(strcmp(tokens[i - 1], tokens[i]) != 0);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_RUNNING], QUEUED);
    ASSERT_EQ(counts[P2P_CALL_QUEUED], 0);
    p2p_store_free(second);
    p2p_store_free(store);
}

typedef struct twin {
    p2p_store *store;
    unsigned created, existing, errors;
    bool mine[100];
} twin;

/* Every thread creates the same 100 calls: each is created exactly once. */
static void *create_same(void *arg) {
    twin *t = arg;
    for (unsigned i = 0; i < 100; i++) {
        char id[P2P_STORE_ID_LEN + 1];
        st_hex(id, 0x7a, i);
        p2p_store_new_call in = {.identifier = id, .function = FN, .args = "{}", .available = true};
        bool created = false;
        p2p_call call;
        p2p_call_init(&call);
        int rc = p2p_store_create(t->store, &in, &call, &created, NULL);
        t->errors += rc != 0 || strcmp(call.identifier, id) != 0;
        t->created += rc == 0 && created;
        t->existing += rc == 0 && !created;
        t->mine[i] = rc == 0 && created;
        p2p_call_cleanup(&call);
    }
    return NULL;
}

static void test_create_race(void) {
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "twins.db", &opts);
    p2p_store *second = st_open(dir, "twins.db", &opts);
    static twin twins[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        twins[t] = (twin){.store = t % 2 == 0 ? store : second};
        ASSERT_EQ(pthread_create(&threads[t], NULL, create_same, &twins[t]), 0);
    }
    unsigned created = 0;
    for (int t = 0; t < THREADS; t++) {
        ASSERT_EQ(pthread_join(threads[t], NULL), 0);
        ASSERT_EQ(twins[t].errors, 0);
        ASSERT_EQ(twins[t].created + twins[t].existing, 100);
        created += twins[t].created;
    }
    ASSERT_EQ(created, 100);
    for (unsigned i = 0; i < 100; i++) {
        int owners = 0;
        for (int t = 0; t < THREADS; t++)
            owners += twins[t].mine[i];
        ASSERT_EQ(owners, 1);
    }
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_QUEUED], 100);
    p2p_store_free(second);
    p2p_store_free(store);
}

typedef struct creator {
    p2p_store *store;
    unsigned first, count;
    int failures;
} creator;

static void *create_many(void *arg) {
    creator *c = arg;
    for (unsigned i = 0; i < c->count; i++) {
        char id[P2P_STORE_ID_LEN + 1];
        st_hex(id, 0x9c, c->first + i);
        p2p_store_new_call in = {.identifier = id, .function = FN, .args = "{}"};
        c->failures += p2p_store_create(c->store, &in, NULL, NULL, NULL) != 0;
    }
    return NULL;
}

/* In full mode each commit is an fsync; concurrent creates must share them. */
static void test_group_commit(void) {
    /* Group commit is how the SQLite backend shares fsyncs; MongoDB writes
     * each operation on its own (the server journals). */
    if (st_mongo())
        return;
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_FULL);
    p2p_store *store = st_open(dir, "group.db", &opts);
    creator creators[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        creators[t] = (creator){.store = store, .first = (unsigned)t * 1000, .count = 40};
        ASSERT_EQ(pthread_create(&threads[t], NULL, create_many, &creators[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        ASSERT_EQ(pthread_join(threads[t], NULL), 0);
        ASSERT_EQ(creators[t].failures, 0);
    }
    p2p_store_stats stats;
    p2p_store_get_stats(store, &stats);
    fprintf(stderr, "   %u creates in %llu transactions (largest: %llu)\n", THREADS * 40,
            (unsigned long long)stats.batches, (unsigned long long)stats.max_batch);
    ASSERT_EQ(stats.writes, THREADS * 40);
    ASSERT_LT(stats.batches, stats.writes);
    ASSERT_GT(stats.max_batch, 1);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_PUSHED], THREADS * 40);
    p2p_store_free(store);
}

typedef struct worker {
    p2p_store *store;
    int completed, refused, errors;
} worker;

/* Claims and completes calls, with a stale renew before each completion: the
 * refusals land in the same transactions as other threads' successes. */
static void *work(void *arg) {
    worker *w = arg;
    p2p_call call;
    p2p_call_init(&call);
    for (int i = 0; i <= QUEUED; i++) {
        int rc = p2p_store_claim(w->store, FN, "worker", &call, NULL);
        if (rc == P2P_ENOTFOUND)
            break;
        rc = rc != 0 ? rc
                     : p2p_store_renew(w->store, call.identifier,
                                       "ffffffffffffffffffffffffffffffff", NULL, NULL);
        w->refused += rc == P2P_ECONFLICT;
        rc = p2p_store_progress(w->store, call.identifier, call.lease_token, 50, NULL, NULL);
        if (rc == 0)
            rc = p2p_store_complete(w->store, call.identifier, call.lease_token, "{\"ok\":1}", NULL,
                                    0, NULL);
        w->errors += rc != 0;
        w->completed += rc == 0;
    }
    p2p_call_cleanup(&call);
    return NULL;
}

typedef struct reader {
    p2p_store *store;
    atomic_bool *stop;
    int reads, errors;
} reader;

static void *read_loop(void *arg) {
    reader *r = arg;
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    p2p_call call;
    p2p_call_init(&call);
    char id[P2P_STORE_ID_LEN + 1];
    for (int i = 0; i < 100000 && !atomic_load(r->stop); i++) {
        st_hex(id, 0xca11, (unsigned)i % QUEUED);
        r->errors += p2p_store_get(r->store, id, &call, NULL) != 0;
        r->errors += p2p_store_count(r->store, FN, counts, NULL) != 0;
        r->reads += 2;
    }
    p2p_call_cleanup(&call);
    return NULL;
}

static void test_mixed(void) {
    if (st_skip_on_jongodb("mixed workers", "its concurrent findAndModify is not atomic"))
        return;
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "mixed.db", &opts);
    for (unsigned i = 0; i < QUEUED; i++)
        st_create(store, FN, i, true);
    atomic_bool stop = false;
    worker workers[4];
    reader readers[2];
    pthread_t wt[4], rt[2];
    for (int t = 0; t < 2; t++) {
        readers[t] = (reader){.store = store, .stop = &stop};
        ASSERT_EQ(pthread_create(&rt[t], NULL, read_loop, &readers[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        workers[t] = (worker){.store = store};
        ASSERT_EQ(pthread_create(&wt[t], NULL, work, &workers[t]), 0);
    }
    int completed = 0, refused = 0;
    for (int t = 0; t < 4; t++) {
        ASSERT_EQ(pthread_join(wt[t], NULL), 0);
        ASSERT_EQ(workers[t].errors, 0);
        completed += workers[t].completed;
        refused += workers[t].refused;
    }
    atomic_store(&stop, true);
    for (int t = 0; t < 2; t++) {
        ASSERT_EQ(pthread_join(rt[t], NULL), 0);
        ASSERT_EQ(readers[t].errors, 0);
        ASSERT_GT(readers[t].reads, 0);
    }
    ASSERT_EQ(completed, QUEUED);
    ASSERT_EQ(refused, QUEUED);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_DONE], QUEUED);
    p2p_store_stats stats;
    p2p_store_get_stats(store, &stats);
    fprintf(stderr, "   %llu writes in %llu transactions, %llu reads\n",
            (unsigned long long)stats.writes, (unsigned long long)stats.batches,
            (unsigned long long)stats.reads);
    p2p_store_free(store);
}

int main(void) {
    st_make_dir(dir, sizeof(dir), "test_store_concurrency");
    TEST_RUN(test_claim_race);
    TEST_RUN(test_create_race);
    TEST_RUN(test_group_commit);
    TEST_RUN(test_mixed);
    st_remove_dir(dir);
    return st_exit_status();
}
