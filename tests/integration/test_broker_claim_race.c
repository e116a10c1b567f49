/* Claims race over HTTP: many workers (threads, each with its own client and
 * connections) claim from one broker at once. Every call is handed out
 * exactly once: the test collects every identifier it received and checks
 * there is no duplicate and none missing, then that the broker agrees.
 *
 * Two shapes: 500 calls queued before 10 claimers start (search_work?wait=0),
 * and 8 claimers parked in search_work?wait=2 while 200 calls are pushed
 * (every wake-up re-tries the claim; losers park again). */
#include "broker_fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define QUEUED_CALLS 500
#define QUEUED_CLAIMERS 10
#define LIVE_CALLS 200
#define LIVE_CLAIMERS 8
#define MAX_CALLS 1000

static broker B;

typedef struct claimed {
    char id[P2P_HASH_HEX_LEN + 1];
    char token[64];
    int by;
} claimed;

static claimed got[MAX_CALLS + 64];
static atomic_int n_got;
static atomic_int pushes_done; /* set when the pushers are finished */
static int total_expected;

typedef struct claimer {
    int index;
    int wait;
    int mine;
    int empty; /* 204 answers seen */
} claimer;

static void record(const harness_reply *r, int by) {
    int k = atomic_fetch_add(&n_got, 1);
    ASSERT_LT(k, MAX_CALLS + 64);
    const char *id = harness_reply_str(r, "identifier");
    const char *token = harness_reply_str(r, "lease_token");
    ASSERT_TRUE(id != NULL && token != NULL);
    snprintf(got[k].id, sizeof(got[k].id), "%s", id);
    snprintf(got[k].token, sizeof(got[k].token), "%s", token);
    got[k].by = by;
    ASSERT_EQ(harness_reply_int(r, "attempts", 0), 1);
}

/* Claims until the queue is empty (wait=0), or, with a long-poll, until every
 * call is claimed and the pushers are done. Bounded in count either way. */
static void *claim_loop(void *arg) {
    claimer *me = arg;
    p2p_http_client *c = broker_client(&B, 60000);
    char worker[64];
    snprintf(worker, sizeof(worker), "00000000-0000-4000-8000-%012d", me->index);
    for (int i = 0; i < 4 * MAX_CALLS; i++) {
        harness_reply r;
        fx_claim(&B, c, FX_ADD, me->wait, worker, &r);
        if (r.status == 200) {
            record(&r, me->index);
            me->mine++;
        } else {
            HARNESS_EXPECT(&r, 204, NULL);
            me->empty++;
        }
        harness_reply_cleanup(&r);
        bool all_in = atomic_load(&pushes_done) && atomic_load(&n_got) >= total_expected;
        if ((me->wait == 0 && r.status == 204) || all_in)
            break;
    }
    p2p_http_client_free(c);
    return NULL;
}

typedef struct pusher {
    int from, to; /* indexes into ids */
    int offset;   /* added to the index to make the call's argument */
    char (*ids)[P2P_HASH_HEX_LEN + 1];
} pusher;

static void *push_range(void *arg) {
    pusher *p = arg;
    p2p_http_client *c = broker_client(&B, 60000);
    for (int i = p->from; i < p->to; i++) {
        json_t *args = fx_add_args(i + p->offset, 1000000);
        harness_reply r;
        fx_push(&B, c, FX_ADD, args, true, p->ids[i], &r);
        HARNESS_EXPECT(&r, 201, NULL);
        harness_reply_cleanup(&r);
        json_decref(args);
    }
    p2p_http_client_free(c);
    return NULL;
}

static int cmp_id(const void *a, const void *b) {
    return strcmp(a, b);
}

/* Every pushed identifier was claimed exactly once, and nothing else was. */
static void check_exactly_once(char (*ids)[P2P_HASH_HEX_LEN + 1], int n) {
    ASSERT_EQ(atomic_load(&n_got), n);
    static char seen[MAX_CALLS][P2P_HASH_HEX_LEN + 1];
    for (int i = 0; i < n; i++)
        memcpy(seen[i], got[i].id, sizeof(seen[i]));
    qsort(seen, (size_t)n, sizeof(seen[0]), cmp_id);
    qsort(ids, (size_t)n, sizeof(ids[0]), cmp_id);
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(seen[i - 1], seen[i]) == 0)
            TEST_FAIL_("call %s was claimed twice", seen[i]);
        if (strcmp(seen[i], ids[i]) != 0)
            TEST_FAIL_("claimed set differs from pushed set at %d: %s vs %s", i, seen[i], ids[i]);
    }
    /* Lease tokens are unique too. */
    static char tokens[MAX_CALLS][64];
    for (int i = 0; i < n; i++)
        memcpy(tokens[i], got[i].token, sizeof(tokens[i]));
    qsort(tokens, (size_t)n, sizeof(tokens[0]), cmp_id);
    for (int i = 1; i < n; i++)
        ASSERT_TRUE(strcmp(tokens[i - 1], tokens[i]) != 0);
}

static void run_claimers(claimer *cl, int n, pthread_t *t) {
    for (int i = 0; i < n; i++)
        ASSERT_OK(pthread_create(&t[i], NULL, claim_loop, &cl[i]));
}

static void join_claimers(claimer *cl, int n, pthread_t *t) {
    for (int i = 0; i < n; i++) {
        ASSERT_OK(pthread_join(t[i], NULL));
        fprintf(stderr, "  claimer %d: %d calls, %d empty answers\n", i, cl[i].mine, cl[i].empty);
    }
}

static void test_500_queued_10_claimers(void) {
    static char ids[QUEUED_CALLS][P2P_HASH_HEX_LEN + 1];
    pusher p = {0, QUEUED_CALLS, 0, ids};
    push_range(&p);
    long long counts[6];
    fx_counts(&B, FX_ADD, counts);
    ASSERT_EQ(counts[1], QUEUED_CALLS);

    atomic_store(&n_got, 0);
    atomic_store(&pushes_done, 1);
    total_expected = QUEUED_CALLS;
    claimer cl[QUEUED_CLAIMERS] = {0};
    pthread_t t[QUEUED_CLAIMERS];
    for (int i = 0; i < QUEUED_CLAIMERS; i++)
        cl[i] = (claimer){.index = i, .wait = 0};
    double t0 = harness_now_s();
    run_claimers(cl, QUEUED_CLAIMERS, t);
    join_claimers(cl, QUEUED_CLAIMERS, t);
    fprintf(stderr, "%d claims by %d claimers in %.3f s\n", QUEUED_CALLS, QUEUED_CLAIMERS,
            harness_now_s() - t0);
    check_exactly_once(ids, QUEUED_CALLS);

    fx_counts(&B, FX_ADD, counts);
    ASSERT_EQ(counts[1], 0);
    ASSERT_EQ(counts[2], QUEUED_CALLS);
    char *text = fx_metrics_text(&B);
    ASSERT_EQ((long long)fx_metric(text, "p2prpc_claims_total", NULL), QUEUED_CALLS);
    free(text);
}

static void test_parked_claimers_while_pushing(void) {
    static char ids[LIVE_CALLS][P2P_HASH_HEX_LEN + 1];
    atomic_store(&n_got, 0);
    atomic_store(&pushes_done, 0);
    total_expected = LIVE_CALLS;
    claimer cl[LIVE_CLAIMERS] = {0};
    pthread_t t[LIVE_CLAIMERS];
    for (int i = 0; i < LIVE_CLAIMERS; i++)
        cl[i] = (claimer){.index = 100 + i, .wait = 2};
    run_claimers(cl, LIVE_CLAIMERS, t);
    /* Two pushers, offset so that these calls differ from the first test's. */
    pusher p[2] = {{0, LIVE_CALLS / 2, QUEUED_CALLS, ids},
                   {LIVE_CALLS / 2, LIVE_CALLS, QUEUED_CALLS, ids}};
    pthread_t pt[2];
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_create(&pt[i], NULL, push_range, &p[i]));
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_join(pt[i], NULL));
    atomic_store(&pushes_done, 1);
    join_claimers(cl, LIVE_CLAIMERS, t);
    check_exactly_once(ids, LIVE_CALLS);
    long long counts[6];
    fx_counts(&B, FX_ADD, counts);
    ASSERT_EQ(counts[1], 0);
    ASSERT_EQ(counts[2], QUEUED_CALLS + LIVE_CALLS);
}

int main(void) {
    broker_init(&B, "broker_claim_race", NULL);
    broker_start(&B);
    TEST_RUN(test_500_queued_10_claimers);
    TEST_RUN(test_parked_claimers_while_pushing);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
