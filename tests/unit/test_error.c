#include "error.h"
#include "test.h"

#include <errno.h>

static void test_strerror_and_names(void) {
    ASSERT_STR_EQ(p2p_strerror(P2P_OK), "success");
    ASSERT_STR_EQ(p2p_strerror(P2P_ENOTFOUND), "not found");
    ASSERT_STR_EQ(p2p_error_name(P2P_EHASH), "hash_mismatch");
    ASSERT_STR_EQ(p2p_strerror(-999), "unknown error");
    ASSERT_STR_EQ(p2p_strerror(5), "unknown error");
    ASSERT_STR_EQ(p2p_error_name(-999), "unknown");
    /* Every code in range has a name, a text and an HTTP status. */
    for (int c = 0; c >= P2P_ERRCODE_MIN; c--) {
        ASSERT_TRUE(p2p_strerror(c)[0] != '\0');
        ASSERT_TRUE(strcmp(p2p_error_name(c), "unknown") != 0);
        ASSERT_GE(p2p_error_http_status(c), 200);
    }
}

static void test_http_status(void) {
    ASSERT_EQ(p2p_error_http_status(P2P_EINVAL), 400);
    ASSERT_EQ(p2p_error_http_status(P2P_EAUTH), 401);
    ASSERT_EQ(p2p_error_http_status(P2P_ENOTFOUND), 404);
    ASSERT_EQ(p2p_error_http_status(P2P_ECONFLICT), 409);
    ASSERT_EQ(p2p_error_http_status(P2P_ETOOBIG), 413);
    ASSERT_EQ(p2p_error_http_status(P2P_EHASH), 422);
    ASSERT_EQ(p2p_error_http_status(P2P_ESTORE), 503);
    ASSERT_EQ(p2p_error_http_status(-999), 500);
}

static void test_set_formats_and_returns_code(void) {
    p2p_error err;
    ASSERT_EQ(p2p_error_set(&err, P2P_EINVAL, "bad %s at %d", "thing", 7), P2P_EINVAL);
    ASSERT_EQ(err.code, P2P_EINVAL);
    ASSERT_STR_EQ(err.msg, "bad thing at 7");
    ASSERT_EQ(p2p_error_set(&err, P2P_EIO, NULL), P2P_EIO);
    ASSERT_STR_EQ(err.msg, "input/output error");
    /* A NULL detail pointer is allowed everywhere. */
    ASSERT_EQ(p2p_error_set(NULL, P2P_ETYPE, "ignored"), P2P_ETYPE);
    p2p_error_clear(&err);
    ASSERT_EQ(err.code, 0);
    ASSERT_STR_EQ(err.msg, "");
    p2p_error_clear(NULL);
}

static void test_errno_suffix(void) {
    p2p_error err;
    ASSERT_EQ(p2p_error_errno(&err, P2P_EIO, ENOENT, "open %s", "/x"), P2P_EIO);
    ASSERT_STR_EQ(err.msg, "open /x: No such file or directory");
}

static void test_truncation(void) {
    p2p_error err;
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    p2p_error_set(&err, P2P_EINVAL, "%s", big);
    ASSERT_EQ(strlen(err.msg), sizeof(err.msg) - 1);
    p2p_error_errno(&err, P2P_EIO, EACCES, "%s", big);
    ASSERT_EQ(strlen(err.msg), sizeof(err.msg) - 1);
}

int main(void) {
    TEST_RUN(test_strerror_and_names);
    TEST_RUN(test_http_status);
    TEST_RUN(test_set_formats_and_returns_code);
    TEST_RUN(test_errno_suffix);
    TEST_RUN(test_truncation);
    return 0;
}
