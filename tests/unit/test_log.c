#include "log.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_parse_level(void) {
    p2p_log_level l = P2P_LOG_INFO;
    ASSERT_OK(p2p_log_parse_level("debug", &l));
    ASSERT_EQ(l, P2P_LOG_DEBUG);
    ASSERT_OK(p2p_log_parse_level("WARN", &l));
    ASSERT_EQ(l, P2P_LOG_WARN);
    ASSERT_EQ(p2p_log_parse_level("loud", &l), P2P_EINVAL);
    ASSERT_EQ(l, P2P_LOG_WARN);
    ASSERT_EQ(p2p_log_parse_level(NULL, &l), P2P_EINVAL);
}

static void test_levels_timestamps_and_position(void) {
    char path[] = "/tmp/p2p_test_log_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    p2p_error err;
    ASSERT_OK(p2p_log_open(path, &err));

    p2p_log_set_level(P2P_LOG_INFO);
    P2P_DEBUG("hidden %d", 1);
    P2P_INFO("shown %d", 2);
    p2p_log_set_level(P2P_LOG_DEBUG);
    P2P_DEBUG("debug with position");
    p2p_log_set_level(P2P_LOG_OFF);
    P2P_ERROR("nothing at off");
    ASSERT_OK(p2p_log_open(NULL, &err));

    const char *text = read_all(path);
    ASSERT_TRUE(strstr(text, "hidden") == NULL);
    ASSERT_TRUE(strstr(text, "nothing at off") == NULL);
    ASSERT_STR_CONTAINS(text, "INFO  shown 2\n");
    ASSERT_STR_CONTAINS(text, "DEBUG ");
    ASSERT_STR_CONTAINS(text, "test_log.c:");
    /* Timestamps are ISO 8601 UTC with milliseconds: "YYYY-MM-DDTHH:MM:SS.mmmZ ". */
    ASSERT_EQ(text[4], '-');
    ASSERT_EQ(text[10], 'T');
    ASSERT_EQ(text[23], 'Z');
    /* Only the debug line carries a position. */
    const char *info = strstr(text, "INFO");
    ASSERT_TRUE(strstr(info, "shown") - info < 10);
    unlink(path);
}

static void test_long_message_is_truncated_to_one_line(void) {
    char path[] = "/tmp/p2p_test_log_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_OK(p2p_log_open(path, NULL));
    p2p_log_set_level(P2P_LOG_INFO);
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    P2P_WARN("%s", big);
    ASSERT_OK(p2p_log_open(NULL, NULL));
    const char *text = read_all(path);
    size_t len = strlen(text);
    ASSERT_EQ(text[len - 1], '\n');
    ASSERT_TRUE(strchr(text, '\n') == text + len - 1);
    unlink(path);
}

static void test_open_failure(void) {
    p2p_error err;
    ASSERT_EQ(p2p_log_open("/nonexistent-dir/x.log", &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "/nonexistent-dir/x.log");
}

int main(void) {
    TEST_RUN(test_parse_level);
    TEST_RUN(test_levels_timestamps_and_position);
    TEST_RUN(test_long_message_is_truncated_to_one_line);
    TEST_RUN(test_open_failure);
    return 0;
}
