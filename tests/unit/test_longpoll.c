#include "longpoll.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITEMS 4096

/* Records every fire: which item, why, when, and how often. */
typedef struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t fired;
    int reason[MAX_ITEMS];
    int times[MAX_ITEMS]; /* fires per item: must end at exactly 1 */
    int64_t at[MAX_ITEMS];
    int order[MAX_ITEMS];
} recorder;

static recorder rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static int items[MAX_ITEMS]; /* item i is &items[i] */

static void on_fire(void *ctx, void *item, p2p_longpoll_reason reason) {
    ASSERT_TRUE(ctx == &rec);
    int i = (int)((int *)item - items);
    pthread_mutex_lock(&rec.lock);
    rec.reason[i] = reason;
    rec.times[i]++;
    rec.at[i] = p2p_longpoll_now_ms();
    rec.order[rec.fired++] = i;
    pthread_cond_broadcast(&rec.cond);
    pthread_mutex_unlock(&rec.lock);
}

static void reset(void) {
    pthread_mutex_lock(&rec.lock);
    rec.fired = 0;
    memset(rec.times, 0, sizeof(rec.times));
    memset(rec.reason, -1, sizeof(rec.reason));
    pthread_mutex_unlock(&rec.lock);
}

/* Waits until `n` fires were recorded, at most `ms`; returns the count. */
static size_t wait_fired(size_t n, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&rec.lock);
    while (rec.fired < n && pthread_cond_timedwait(&rec.cond, &rec.lock, &until) == 0)
        ;
    size_t got = rec.fired;
    pthread_mutex_unlock(&rec.lock);
    return got;
}

static p2p_longpoll *make_lot(void) {
    p2p_longpoll *lp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_longpoll_new(on_fire, &rec, &lp, &err));
    ASSERT_OK(p2p_longpoll_start(lp, &err));
    reset();
    return lp;
}

static void test_notify_fires_its_topic_only(void) {
    p2p_longpoll *lp = make_lot();
    p2p_error err;
    int64_t far = p2p_longpoll_now_ms() + 60000;
    ASSERT_OK(p2p_longpoll_add(lp, &items[0], "work:a", far, -1, &err));
    ASSERT_OK(p2p_longpoll_add(lp, &items[1], "work:a", far, -1, &err));
    ASSERT_OK(p2p_longpoll_add(lp, &items[2], "work:b", far, -1, &err));
    ASSERT_EQ(p2p_longpoll_count(lp), 3);
    ASSERT_EQ(p2p_longpoll_notify(lp, "work:none"), 0);
    ASSERT_EQ(p2p_longpoll_notify(lp, "work:a"), 2);
    /* Fired in the calling thread, so already recorded. */
    ASSERT_EQ(rec.fired, 2);
    ASSERT_EQ(rec.reason[0], P2P_LONGPOLL_NOTIFIED);
    ASSERT_EQ(rec.reason[1], P2P_LONGPOLL_NOTIFIED);
    ASSERT_EQ(rec.times[2], 0);
    ASSERT_EQ(p2p_longpoll_notify(lp, "work:a"), 0);
    ASSERT_EQ(p2p_longpoll_count(lp), 1);
    p2p_longpoll_free(lp);
    ASSERT_EQ(rec.reason[2], P2P_LONGPOLL_SHUTDOWN);
    ASSERT_EQ(rec.times[2], 1);
}

static void test_deadlines_fire_in_order(void) {
    p2p_longpoll *lp = make_lot();
    p2p_error err;
    int64_t t0 = p2p_longpoll_now_ms();
    ASSERT_OK(p2p_longpoll_add(lp, &items[0], "t", t0 + 90, -1, &err));
    ASSERT_OK(p2p_longpoll_add(lp, &items[1], "t", t0 + 30, -1, &err));
    ASSERT_OK(p2p_longpoll_add(lp, &items[2], "u", t0 + 60, -1, &err));
    ASSERT_OK(p2p_longpoll_add(lp, &items[3], "u", t0 - 5, -1, &err)); /* already past */
    ASSERT_EQ(wait_fired(4, 3000), 4);
    ASSERT_EQ(rec.order[0], 3);
    ASSERT_EQ(rec.order[1], 1);
    ASSERT_EQ(rec.order[2], 2);
    ASSERT_EQ(rec.order[3], 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(rec.reason[i], P2P_LONGPOLL_TIMEOUT);
    /* Never early, and not much late. */
    ASSERT_GE(rec.at[1] - t0, 30);
    ASSERT_GE(rec.at[0] - t0, 90);
    ASSERT_LT(rec.at[0] - t0, 1000);
    ASSERT_EQ(p2p_longpoll_count(lp), 0);
    p2p_longpoll_free(lp);
}

static void test_closed_socket_fires(void) {
    p2p_longpoll *lp = make_lot();
    p2p_error err;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ASSERT_OK(p2p_longpoll_add(lp, &items[0], "c", p2p_longpoll_now_ms() + 60000, sv[0], &err));
    usleep(20000);
    ASSERT_EQ(rec.fired, 0); /* an open, quiet socket does not fire */
    close(sv[1]);
    ASSERT_EQ(wait_fired(1, 3000), 1);
    ASSERT_EQ(rec.reason[0], P2P_LONGPOLL_CLOSED);
    ASSERT_EQ(p2p_longpoll_count(lp), 0);
    close(sv[0]);
    p2p_longpoll_free(lp);
}

typedef struct race_arg {
    p2p_longpoll *lp;
    int n;
} race_arg;

static void *notify_all(void *arg) {
    race_arg *a = arg;
    for (int i = 0; i < a->n; i++)
        p2p_longpoll_notify(a->lp, "race");
    return NULL;
}

/* Sockets hang up while another thread notifies the same waiters: each one
 * must still fire exactly once (ASan catches a stale epoll event). */
static void test_close_and_notify_race(void) {
    p2p_longpoll *lp = make_lot();
    p2p_error err;
    enum { N = 300 };
    int sv[N][2];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
        ASSERT_OK(
            p2p_longpoll_add(lp, &items[i], "race", p2p_longpoll_now_ms() + 60000, sv[i][0], &err));
    }
    race_arg a = {lp, 50};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, notify_all, &a), 0);
    for (int i = 0; i < N; i++)
        close(sv[i][1]);
    pthread_join(t, NULL);
    ASSERT_EQ(wait_fired(N, 3000), N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(rec.times[i], 1);
        close(sv[i][0]);
    }
    ASSERT_EQ(p2p_longpoll_count(lp), 0);
    p2p_longpoll_free(lp);
}

static void test_many_waiters_and_topics(void) {
    p2p_longpoll *lp = make_lot();
    p2p_error err;
    int64_t far = p2p_longpoll_now_ms() + 60000;
    char topic[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(topic, sizeof(topic), "call:%d", i);
        ASSERT_OK(p2p_longpoll_add(lp, &items[i], i < 1000 ? "work:fn" : topic, far, -1, &err));
    }
    ASSERT_EQ(p2p_longpoll_count(lp), 2000);
    ASSERT_EQ(p2p_longpoll_notify(lp, "call:1500"), 1);
    ASSERT_EQ(rec.times[1500], 1);
    ASSERT_EQ(p2p_longpoll_notify(lp, "work:fn"), 1000);
    ASSERT_EQ(p2p_longpoll_count(lp), 999);
    p2p_longpoll_stop(lp);
    ASSERT_EQ(rec.fired, 2000);
    for (int i = 0; i < 2000; i++)
        ASSERT_EQ(rec.times[i], 1);
    ASSERT_EQ(p2p_longpoll_add(lp, &items[0], "x", far, -1, &err), P2P_ECANCELED);
    p2p_longpoll_stop(lp); /* idempotent */
    p2p_longpoll_free(lp);
}

static void test_errors(void) {
    p2p_longpoll *lp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_longpoll_new(on_fire, &rec, &lp, &err));
    ASSERT_EQ(p2p_longpoll_add(lp, &items[0], "x", 0, -1, &err), P2P_ECANCELED); /* not started */
    ASSERT_OK(p2p_longpoll_start(lp, &err));
    ASSERT_EQ(p2p_longpoll_start(lp, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_longpoll_add(lp, &items[0], "", 0, -1, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_longpoll_add(lp, &items[0], NULL, 0, -1, &err), P2P_EINVAL);
    /* A descriptor epoll cannot watch (not open) is refused cleanly. */
    ASSERT_EQ(p2p_longpoll_add(lp, &items[0], "x", 0, STDIN_FILENO + 1000, &err), P2P_EIO);
    ASSERT_EQ(p2p_longpoll_count(lp), 0);
    p2p_longpoll_free(lp);
    p2p_longpoll_free(NULL);
}

int main(void) {
    TEST_RUN(test_notify_fires_its_topic_only);
    TEST_RUN(test_deadlines_fire_in_order);
    TEST_RUN(test_closed_socket_fires);
    TEST_RUN(test_close_and_notify_race);
    TEST_RUN(test_many_waiters_and_topics);
    TEST_RUN(test_errors);
    return 0;
}
