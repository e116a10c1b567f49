/* Progress throttling: a value is due at once the first time, then at most
 * once per interval; newer values replace pending ones; nothing is lost, and
 * a flush takes the last one whenever asked. */
#include "test.h"
#include "worker_internal.h"

#include <stdint.h>

static void test_first_and_interval(void) {
    p2p__throttle t;
    p2p__throttle_init(&t, 250);
    ASSERT_FALSE(p2p__throttle_due(&t, 0));
    ASSERT_EQ(p2p__throttle_deadline(&t), INT64_MAX);
    p2p__throttle_update(&t, 1.5);
    ASSERT_TRUE(p2p__throttle_due(&t, -1000000)); /* the first one goes at once */
    ASSERT_TRUE(p2p__throttle_take(&t, 1000) == 1.5);
    ASSERT_FALSE(p2p__throttle_due(&t, 1000));
    p2p__throttle_update(&t, 2);
    p2p__throttle_update(&t, 3); /* replaces 2 */
    ASSERT_EQ(p2p__throttle_deadline(&t), 1250);
    ASSERT_FALSE(p2p__throttle_due(&t, 1249));
    ASSERT_TRUE(p2p__throttle_due(&t, 1250));
    ASSERT_TRUE(p2p__throttle_take(&t, 1300) == 3);
    ASSERT_EQ(p2p__throttle_deadline(&t), INT64_MAX);
    /* A flush takes a pending value before its time, and restarts the clock. */
    p2p__throttle_update(&t, 4);
    ASSERT_FALSE(p2p__throttle_due(&t, 1400));
    ASSERT_TRUE(p2p__throttle_take(&t, 1400) == 4);
    p2p__throttle_update(&t, 5);
    ASSERT_EQ(p2p__throttle_deadline(&t), 1650);
}

/* A function reporting every millisecond for 2 s: at most one push per
 * 250 ms, and the last value always reaches the broker. */
static void test_stream(void) {
    p2p__throttle t;
    p2p__throttle_init(&t, 250);
    int pushes = 0;
    double last_pushed = -1;
    for (int64_t now = 0; now < 2000; now++) {
        p2p__throttle_update(&t, (double)now / 20.0);
        if (p2p__throttle_due(&t, now)) {
            last_pushed = p2p__throttle_take(&t, now);
            pushes++;
        }
    }
    ASSERT_LE(pushes, 2000 / 250 + 1);
    ASSERT_GE(pushes, 2000 / 250);
    ASSERT_TRUE(t.pending);
    ASSERT_TRUE(last_pushed < 1999 / 20.0);
    /* At the end, the flush sends the final value. */
    ASSERT_TRUE(p2p__throttle_take(&t, 2000) == 1999 / 20.0);
    ASSERT_FALSE(t.pending);
}

static void test_no_interval(void) {
    p2p__throttle t;
    p2p__throttle_init(&t, 0);
    for (int i = 0; i < 10; i++) {
        p2p__throttle_update(&t, i);
        ASSERT_TRUE(p2p__throttle_due(&t, 5));
        ASSERT_TRUE(p2p__throttle_take(&t, 5) == i);
    }
    p2p__throttle_init(&t, -7); /* negative: treated as none */
    p2p__throttle_update(&t, 1);
    ASSERT_TRUE(p2p__throttle_due(&t, 0));
    ASSERT_TRUE(p2p__throttle_take(&t, INT64_MAX) == 1);
    p2p__throttle_update(&t, 2);
    ASSERT_TRUE(p2p__throttle_due(&t, INT64_MAX));
}

int main(void) {
    TEST_RUN(test_first_and_interval);
    TEST_RUN(test_stream);
    TEST_RUN(test_no_interval);
    return 0;
}
