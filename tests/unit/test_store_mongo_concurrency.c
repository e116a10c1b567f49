/* The MongoDB backend under maintenance run by two handles (two brokers) at
 * once: every expired lease is requeued by exactly one of them, every expired
 * call deleted by exactly one, and each orphaned blob returned once. Run only
 * with P2PRPC_TEST_STORE=mongodb (unit.test_store_mongo_concurrency.mongodb);
 * skipped on jongodb, whose concurrent conditional updates are not atomic
 * (measured: 206..235 requeues reported for 200 expired leases). */
#include "store_test_util.h"

#include <pthread.h>

static char dir[512];
static const char *const FN = "p2prpc_mongo";

/* ---- maintenance by two handles at once ---- */

typedef struct maint {
    p2p_store *store;
    size_t requeued, failed, deleted;
    p2p_store_hashes orphans;
    int errors;
    bool expire; /* run p2p_store_expire, else p2p_store_requeue_expired */
} maint;

static void *maint_main(void *arg) {
    maint *m = arg;
    size_t r = 0, f = 0, d = 0;
    if (m->expire)
        m->errors +=
            p2p_store_expire(m->store, atomic_load(&st_now), 0, &d, &m->orphans, NULL) != 0;
    else
        m->errors += p2p_store_requeue_expired(m->store, &r, &f, NULL) != 0;
    m->requeued += r;
    m->failed += f;
    m->deleted += d;
    return NULL;
}

/* Four threads, two per handle, run the same maintenance at once. */
static void run_maintenance(p2p_store *a, p2p_store *b, bool expire, maint ms[4]) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        ms[i] = (maint){.store = i % 2 == 0 ? a : b, .expire = expire};
        p2p_store_hashes_init(&ms[i].orphans);
        ASSERT_EQ(pthread_create(&t[i], NULL, maint_main, &ms[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        ASSERT_EQ(ms[i].errors, 0);
    }
}

#define MAINT_CALLS 200

/* MAINT_CALLS calls, each with a blob of its own, claimed through either
 * handle in turn. */
static void create_and_claim(p2p_store *a, p2p_store *b) {
    for (unsigned i = 0; i < MAINT_CALLS; i++) {
        char id[P2P_STORE_ID_LEN + 1], blob[P2P_STORE_ID_LEN + 1];
        st_hex(id, 0xca11, 1000 + i);
        st_hex(blob, 0xb10b, i);
        const char *blobs[] = {blob};
        p2p_store_new_call in = {.identifier = id,
                                 .function = FN,
                                 .args = "{}",
                                 .blobs = blobs,
                                 .nblobs = 1,
                                 .available = true};
        ASSERT_OK(p2p_store_create(a, &in, NULL, NULL, NULL));
        p2p_call call;
        p2p_call_init(&call);
        ASSERT_OK(p2p_store_claim(i % 2 == 0 ? a : b, FN, "w", &call, NULL));
        p2p_call_cleanup(&call);
    }
}

static void test_concurrent_maintenance(void) {
    if (st_skip_on_jongodb("maintenance by two handles",
                           "its conditional updates are not atomic under concurrency"))
        return;
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.call_ttl_ms = 1000000;
    p2p_store *a = st_open(dir, "maint", &opts);
    p2p_store *b = st_open(dir, "maint", &opts);
    create_and_claim(a, b);
    st_advance(10001); /* every lease is over */
    maint ms[4];
    run_maintenance(a, b, false, ms);
    size_t requeued = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        requeued += ms[i].requeued;
        failed += ms[i].failed;
        p2p_store_hashes_cleanup(&ms[i].orphans);
    }
    fprintf(stderr, "   requeued by the four: %zu %zu %zu %zu\n", ms[0].requeued, ms[1].requeued,
            ms[2].requeued, ms[3].requeued);
    ASSERT_EQ(requeued, MAINT_CALLS);
    ASSERT_EQ(failed, 0);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(a, FN, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_QUEUED], MAINT_CALLS);

    /* Past every call's expiry: each deleted once, each blob returned once. */
    st_advance(2000000);
    run_maintenance(a, b, true, ms);
    size_t deleted = 0, orphans = 0;
    static int seen[MAINT_CALLS];
    for (int i = 0; i < 4; i++) {
        deleted += ms[i].deleted;
        orphans += ms[i].orphans.count;
        for (size_t k = 0; k < ms[i].orphans.count; k++) {
            unsigned n = (unsigned)strtoul(ms[i].orphans.items[k] + 8, NULL, 16);
            ASSERT_LT(n, MAINT_CALLS);
            seen[n]++;
        }
        p2p_store_hashes_cleanup(&ms[i].orphans);
    }
    ASSERT_EQ(deleted, MAINT_CALLS);
    ASSERT_EQ(orphans, MAINT_CALLS);
    for (unsigned n = 0; n < MAINT_CALLS; n++)
        ASSERT_EQ(seen[n], 1);
    ASSERT_OK(p2p_store_count(b, NULL, counts, NULL));
    for (int s = 0; s < P2P_CALL_STATUS_COUNT; s++)
        ASSERT_EQ(counts[s], 0);
    p2p_store_free(b);
    p2p_store_free(a);
}

int main(void) {
    if (!st_mongo()) {
        fprintf(stderr, "SKIPPED: MongoDB only (P2PRPC_TEST_STORE=mongodb)\n");
        return ST_SKIP;
    }
    st_make_dir(dir, sizeof(dir), "test_store_mongo_concurrency");
    TEST_RUN(test_concurrent_maintenance);
    st_remove_dir(dir);
    return st_exit_status();
}
