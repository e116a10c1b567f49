#include "fsutil.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void make_root(void) {
    snprintf(root, sizeof(root), "/tmp/p2p_test_fsutil_XXXXXX");
    ASSERT_TRUE(mkdtemp(root) != NULL);
}

static void test_mkdirs(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/a/b/c", root);
    ASSERT_OK(p2p_fs_mkdirs(path, 0700, NULL));
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    /* Existing directories are fine, trailing slash too. */
    ASSERT_OK(p2p_fs_mkdirs(path, 0700, NULL));
    snprintf(path, sizeof(path), "%s/a/b/c/", root);
    ASSERT_OK(p2p_fs_mkdirs(path, 0700, NULL));
    /* A file in the way is an error that names it. */
    snprintf(path, sizeof(path), "%s/file", root);
    ASSERT_OK(p2p_fs_write_atomic(path, "x", 1, 0600, NULL));
    snprintf(path, sizeof(path), "%s/file/sub", root);
    p2p_error err;
    ASSERT_EQ(p2p_fs_mkdirs(path, 0700, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "/file");
    ASSERT_EQ(p2p_fs_mkdirs("", 0700, &err), P2P_EINVAL);
}

static void test_write_atomic_and_read(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/data", root);
    ASSERT_OK(p2p_fs_write_atomic(path, "hello", 5, 0640, NULL));
    ASSERT_OK(p2p_fs_write_atomic(path, "bye", 3, 0640, NULL));
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0640);
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(path, 100, &text, &len, NULL));
    ASSERT_EQ(len, 3);
    ASSERT_STR_EQ(text, "bye");
    free(text);
    /* No temporary file is left behind. */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c tmp) -eq 0", root);
    ASSERT_EQ(system(cmd), 0);
}

static void test_read_limits(void) {
    char path[512];
    p2p_error err;
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/missing", root);
    ASSERT_EQ(p2p_fs_read_file(path, 10, &text, &len, &err), P2P_ENOTFOUND);
    snprintf(path, sizeof(path), "%s/big", root);
    ASSERT_OK(p2p_fs_write_atomic(path, "0123456789A", 11, 0600, NULL));
    ASSERT_EQ(p2p_fs_read_file(path, 10, &text, &len, &err), P2P_ETOOBIG);
    ASSERT_OK(p2p_fs_read_file(path, 11, &text, &len, &err));
    ASSERT_EQ(len, 11);
    free(text);
    /* A directory is not a file to read. */
    ASSERT_EQ(p2p_fs_read_file(root, 10, &text, &len, &err), P2P_EINVAL);
    /* Files of /proc report size 0 to stat: they are still read to the end. */
    ASSERT_OK(p2p_fs_read_file("/proc/self/status", 1 << 16, &text, &len, &err));
    ASSERT_GT(len, 100);
    ASSERT_STR_CONTAINS(text, "VmHWM:");
    free(text);
    ASSERT_EQ(p2p_fs_read_file("/proc/self/status", 10, &text, &len, &err), P2P_ETOOBIG);
    /* A file larger than the first buffer grows it, up to the limit exactly. */
    static char big[10000];
    memset(big, 'b', sizeof(big));
    ASSERT_OK(p2p_fs_write_atomic(path, big, sizeof(big), 0600, NULL));
    ASSERT_OK(p2p_fs_read_file(path, sizeof(big), &text, &len, &err));
    ASSERT_EQ(len, sizeof(big));
    ASSERT_EQ(text[len], '\0');
    free(text);
    ASSERT_EQ(p2p_fs_read_file(path, sizeof(big) - 1, &text, &len, &err), P2P_ETOOBIG);
    ASSERT_OK(p2p_fs_read_file(path, 1 << 20, &text, &len, &err));
    ASSERT_EQ(len, sizeof(big));
    free(text);
}

static void test_join(void) {
    char *p = p2p_fs_join("/a/b//", "c");
    ASSERT_STR_EQ(p, "/a/b/c");
    free(p);
    p = p2p_fs_join("/", "c");
    ASSERT_STR_EQ(p, "/c");
    free(p);
}

int main(void) {
    make_root();
    TEST_RUN(test_mkdirs);
    TEST_RUN(test_write_atomic_and_read);
    TEST_RUN(test_read_limits);
    TEST_RUN(test_join);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : 1;
}
