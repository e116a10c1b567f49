/* The worker's capacity and its stops: at most --concurrency calls at once,
 * no claim while can_do_work says no, a graceful stop that lets a short call
 * finish, a stop past the grace that kills the child and releases its call
 * (queued again at once, not counted as an attempt) so that another worker
 * resumes it from its checkpoint, and a call deleted under a running child. */
#include "worker_test_util.h"

static wt_broker broker;

static void test_release_and_resume(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "first", broker.url);
    o.grace_ms = 300;
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_RESUME, "{\"ms\":100,\"steps\":300}", id);
    /* 100 ms a step: let it save a few checkpoints. */
    json_t *j = NULL;
    for (int i = 0; i < 200; i++) {
        sleep_ms(50);
        j = wt_pull(broker.url, F_RESUME, id);
        double progress = json_number_value(json_object_get(j, "progress"));
        json_decref(j);
        if (progress >= 2)
            break;
    }
    int64_t start = wt_now_ms();
    p2p_worker_stop(w);
    int64_t took = wt_now_ms() - start;
    fprintf(stderr, "stop took %lld ms with a 300 ms grace\n", (long long)took);
    ASSERT_GE(took, 250);
    ASSERT_LT(took, 5000);
    p2p_worker_stats st;
    p2p_worker_get_stats(w, &st);
    ASSERT_EQ(st.released, 1);
    ASSERT_EQ(st.running, 0);
    p2p_worker_free(w);
    /* Queued again at once, and the claim it gave back did not count. */
    j = wt_pull(broker.url, F_RESUME, id);
    ASSERT_STR_EQ(wt_str(j, "status"), "queued");
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 0);
    json_decref(j);

    /* Another worker takes it, and a quick one next to it. */
    char quick[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_RESUME, "{\"ms\":1,\"steps\":10}", quick);
    wt_worker_options(&o, "second", broker.url);
    o.concurrency = 2;
    w = wt_worker_start(&o);
    j = wt_wait(broker.url, F_RESUME, quick, "done", 20000);
    json_decref(j);
    /* The long one runs again (test_checkpoint_start checks where it
     * starts); stop it. */
    j = wt_wait(broker.url, F_RESUME, id, "running", 20000);
    json_decref(j);
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(wt_api(broker.url, "POST", "api/v1/p2prpc_resume/terminate", body, NULL), 200);
    json_decref(wt_wait(broker.url, F_RESUME, id, "terminated", 20000));
    p2p_worker_free(w);
}

/* A resumed run reports where it started: a short call shows it. */
static void test_checkpoint_start(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "third", broker.url);
    o.grace_ms = 0;
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_RESUME, "{\"ms\":200,\"steps\":40}", id);
    for (int i = 0; i < 200; i++) {
        sleep_ms(50);
        json_t *j = wt_pull(broker.url, F_RESUME, id);
        double progress = json_number_value(json_object_get(j, "progress"));
        json_decref(j);
        if (progress >= 10)
            break;
    }
    p2p_worker_free(w); /* grace 0: killed and released at once */
    wt_worker_options(&o, "fourth", broker.url);
    w = wt_worker_start(&o);
    json_t *j = wt_wait(broker.url, F_RESUME, id, "done", 30000);
    json_int_t started =
        json_integer_value(json_object_get(json_object_get(j, "outputs"), "started"));
    fprintf(stderr, "the second run started at step %lld of 40\n", (long long)started);
    ASSERT_GE(started, 4);
    ASSERT_LT(started, 40);
    json_decref(j);
    p2p_worker_free(w);
}

static void test_graceful_finish(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "graceful", broker.url);
    o.grace_ms = 10000;
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_SLOW, "{\"ms\":1500,\"steps\":3}", id);
    json_decref(wt_wait(broker.url, F_SLOW, id, "running", 20000));
    /* Running in the worker, not only claimed (a claim that lands as the
     * worker stops is given back instead). */
    p2p_worker_stats st;
    for (int i = 0; i < 500; i++) {
        p2p_worker_get_stats(w, &st);
        if (st.running > 0)
            break;
        sleep_ms(10);
    }
    ASSERT_EQ(st.running, 1);
    int64_t start = wt_now_ms();
    p2p_worker_stop(w);
    int64_t took = wt_now_ms() - start;
    fprintf(stderr, "stop waited %lld ms for the running call\n", (long long)took);
    ASSERT_LT(took, 8000);
    json_t *j = wt_pull(broker.url, F_SLOW, id);
    ASSERT_STR_EQ(wt_str(j, "status"), "done");
    json_decref(j);
    p2p_worker_free(w);
}

static void test_concurrency(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "one", broker.url);
    o.concurrency = 1;
    p2p_worker *w = wt_worker_start(&o);
    char a[P2P_HASH_HEX_LEN + 1], b[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_SLOW, "{\"ms\":800,\"steps\":2}", a);
    wt_call(broker.url, F_SLOW, "{\"ms\":801,\"steps\":2}", b);
    int both = 0, done = 0, seen_running = 0;
    for (int i = 0; i < 400 && done < 2; i++) {
        json_t *ja = wt_pull(broker.url, F_SLOW, a), *jb = wt_pull(broker.url, F_SLOW, b);
        bool ra = strcmp(wt_str(ja, "status"), "running") == 0;
        bool rb = strcmp(wt_str(jb, "status"), "running") == 0;
        both += ra && rb;
        seen_running += ra || rb;
        done = (strcmp(wt_str(ja, "status"), "done") == 0) +
               (strcmp(wt_str(jb, "status"), "done") == 0);
        json_decref(ja);
        json_decref(jb);
        sleep_ms(20);
    }
    ASSERT_EQ(done, 2);
    ASSERT_EQ(both, 0);
    ASSERT_GT(seen_running, 0);
    p2p_worker_free(w);
}

static atomic_bool willing;
static atomic_int asked;

static bool can_do(void *ctx) {
    ASSERT_TRUE(ctx == &willing);
    atomic_fetch_add(&asked, 1);
    return atomic_load(&willing);
}

static void test_can_do_work(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "picky", broker.url);
    o.can_do_work = can_do;
    o.can_do_work_ctx = &willing;
    atomic_store(&willing, false);
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_ADD, "{\"a\":100,\"b\":1}", id);
    sleep_ms(1500);
    json_t *j = wt_pull(broker.url, F_ADD, id);
    ASSERT_STR_EQ(wt_str(j, "status"), "queued");
    json_decref(j);
    ASSERT_GT(atomic_load(&asked), 0);
    int64_t yes = wt_now_ms();
    atomic_store(&willing, true);
    j = wt_wait(broker.url, F_ADD, id, "done", 10000);
    fprintf(stderr, "claimed %lld ms after can_do_work said yes\n", (long long)(wt_now_ms() - yes));
    json_decref(j);
    p2p_worker_free(w);
}

static void test_deleted_under_it(void) {
    p2p_worker_options o;
    wt_worker_options(&o, "deleted", broker.url);
    p2p_worker *w = wt_worker_start(&o);
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_SLOW, "{\"ms\":60000,\"steps\":600}", id);
    json_decref(wt_wait(broker.url, F_SLOW, id, "running", 20000));
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(wt_api(broker.url, "POST", "api/v1/p2prpc_slow/delete", body, NULL), 200);
    /* The next push learns it (404): the child is stopped, nothing reported. */
    ASSERT_EQ(WT_STAT(w, lost, 1), 1);
    p2p_worker_stats st;
    for (int i = 0; i < 500; i++) {
        p2p_worker_get_stats(w, &st);
        if (st.running == 0)
            break;
        sleep_ms(10);
    }
    ASSERT_EQ(st.running, 0);
    p2p_worker_free(w);
}

int main(int argc, char **argv) {
    WT_CHILD_MAIN(argc, argv);
    wt_setup("worker_shutdown");
    wt_broker_start(&broker, "broker", 0, 60000, NULL);
    TEST_RUN(test_release_and_resume);
    TEST_RUN(test_checkpoint_start);
    TEST_RUN(test_graceful_finish);
    TEST_RUN(test_concurrency);
    TEST_RUN(test_can_do_work);
    TEST_RUN(test_deleted_under_it);
    wt_broker_stop(&broker);
    return wt_teardown();
}
