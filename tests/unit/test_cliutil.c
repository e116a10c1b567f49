#include "cliutil.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static void test_number(void) {
    double d = -1;
    ASSERT_OK(p2p_cli_number("prog", "--x", "0.5", 0, 1, &d));
    ASSERT_TRUE(d == 0.5);
    ASSERT_OK(p2p_cli_number("prog", "--x", "1e2", 0, 100, &d));
    ASSERT_TRUE(d == 100);
    const char *bad[] = {"", "abc", "1x", "101", "-0.1", "nan", "inf", "1e999", " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = 42;
        ASSERT_EQ(p2p_cli_number("prog", "--x", bad[i], 0, 100, &d), P2P_EINVAL);
        ASSERT_TRUE(d == 42);
    }
}

static void test_integer(void) {
    long long n = -1;
    ASSERT_OK(p2p_cli_integer("prog", "--n", "65535", 0, 65535, &n));
    ASSERT_EQ(n, 65535);
    ASSERT_OK(p2p_cli_integer("prog", "--n", "-3", -5, 5, &n));
    ASSERT_EQ(n, -3);
    const char *bad[] = {"", "1.5", "0x10", "65536", "-6", "99999999999999999999", "7 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 42;
        ASSERT_EQ(p2p_cli_integer("prog", "--n", bad[i], -5, 65535, &n), P2P_EINVAL);
        ASSERT_EQ(n, 42);
    }
}

static void *send_later(void *arg) {
    (void)arg;
    usleep(20000);
    kill(getpid(), SIGUSR1);
    return NULL;
}

static void test_wait_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, send_later, NULL), 0);
    ASSERT_EQ(p2p_cli_wait_signal(&set), SIGUSR1);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

int main(void) {
    TEST_RUN(test_number);
    TEST_RUN(test_integer);
    TEST_RUN(test_wait_signal);
    return 0;
}
