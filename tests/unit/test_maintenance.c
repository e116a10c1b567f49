/* The maintenance timer: passes at the interval, one at a time, none after
 * stop, and a stop that does not wait for the next tick. */
#include "maintenance.h"
#include "test.h"

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct counter {
    atomic_int passes;
    atomic_int inside; /* passes running now */
    atomic_int overlap;
    int sleep_ms;
} counter;

static void pass(void *ctx) {
    counter *c = ctx;
    if (atomic_fetch_add(&c->inside, 1) != 0)
        atomic_store(&c->overlap, 1);
    if (c->sleep_ms > 0)
        usleep((useconds_t)c->sleep_ms * 1000);
    atomic_fetch_add(&c->passes, 1);
    atomic_fetch_sub(&c->inside, 1);
}

static void test_runs_at_interval(void) {
    counter c = {0};
    p2p_maintenance *m = NULL;
    ASSERT_OK(p2p_maintenance_new(20, pass, &c, &m, NULL));
    usleep(100 * 1000);
    ASSERT_EQ(atomic_load(&c.passes), 0); /* not started yet */
    ASSERT_OK(p2p_maintenance_start(m, NULL));
    p2p_error err = {0};
    ASSERT_EQ(p2p_maintenance_start(m, &err), P2P_EINVAL);
    for (int i = 0; i < 500 && atomic_load(&c.passes) < 5; i++)
        usleep(10 * 1000);
    ASSERT_GE(atomic_load(&c.passes), 5);
    p2p_maintenance_stop(m);
    int after = atomic_load(&c.passes);
    ASSERT_EQ((int)p2p_maintenance_passes(m), after);
    usleep(100 * 1000);
    ASSERT_EQ(atomic_load(&c.passes), after); /* nothing after stop */
    p2p_maintenance_stop(m);                  /* idempotent */
    p2p_maintenance_free(m);
    p2p_maintenance_free(NULL);
}

static void test_stop_is_prompt_and_passes_never_overlap(void) {
    /* An hour between passes: stop must not wait for the tick. */
    counter idle = {0};
    p2p_maintenance *m = NULL;
    ASSERT_OK(p2p_maintenance_new(3600 * 1000, pass, &idle, &m, NULL));
    ASSERT_OK(p2p_maintenance_start(m, NULL));
    int64_t start = now_ms();
    p2p_maintenance_free(m);
    ASSERT_LT(now_ms() - start, 1000);
    ASSERT_EQ(atomic_load(&idle.passes), 0);
    /* Passes longer than the interval: they follow each other, never overlap. */
    counter slow = {.sleep_ms = 30};
    ASSERT_OK(p2p_maintenance_new(5, pass, &slow, &m, NULL));
    ASSERT_OK(p2p_maintenance_start(m, NULL));
    usleep(300 * 1000);
    p2p_maintenance_free(m);
    ASSERT_EQ(atomic_load(&slow.overlap), 0);
    ASSERT_GE(atomic_load(&slow.passes), 3);
    ASSERT_LE(atomic_load(&slow.passes), 11);
}

static void test_bad_arguments(void) {
    p2p_maintenance *m = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_maintenance_new(0, pass, NULL, &m, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_maintenance_new(10, NULL, NULL, &m, &err), P2P_EINVAL);
    ASSERT_TRUE(m == NULL);
}

int main(void) {
    TEST_RUN(test_runs_at_interval);
    TEST_RUN(test_stop_is_prompt_and_passes_never_overlap);
    TEST_RUN(test_bad_arguments);
    return 0;
}
