#include "fsutil.h"
#include "node.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[256];

static void test_data_dir_resolution(void) {
    char *dir = NULL;
    setenv("P2PRPC_HOME", "/srv/p2p", 1);
    ASSERT_OK(p2p_node_data_dir(&dir, NULL));
    ASSERT_STR_EQ(dir, "/srv/p2p");
    free(dir);

    p2p_error err;
    setenv("P2PRPC_HOME", "relative/dir", 1);
    ASSERT_EQ(p2p_node_data_dir(&dir, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "P2PRPC_HOME");

    unsetenv("P2PRPC_HOME");
    setenv("XDG_DATA_HOME", "/xdg/data", 1);
    ASSERT_OK(p2p_node_data_dir(&dir, NULL));
    ASSERT_STR_EQ(dir, "/xdg/data/p2prpc");
    free(dir);

    /* A relative XDG_DATA_HOME is ignored, as the XDG spec says. */
    setenv("XDG_DATA_HOME", "xdg", 1);
    setenv("HOME", "/home/someone", 1);
    ASSERT_OK(p2p_node_data_dir(&dir, NULL));
    ASSERT_STR_EQ(dir, "/home/someone/.local/share/p2prpc");
    free(dir);
    unsetenv("XDG_DATA_HOME");
    ASSERT_OK(p2p_node_data_dir(&dir, NULL));
    ASSERT_STR_EQ(dir, "/home/someone/.local/share/p2prpc");
    free(dir);
}

static void test_id_is_created_once_and_kept(void) {
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/node1/deeper", root);
    char a[P2P_NODE_ID_LEN + 1], b[P2P_NODE_ID_LEN + 1];
    ASSERT_OK(p2p_node_id_load(dir, a, NULL));
    ASSERT_EQ(strlen(a), P2P_NODE_ID_LEN);
    ASSERT_EQ(a[8], '-');
    ASSERT_OK(p2p_node_id_load(dir, b, NULL));
    ASSERT_STR_EQ(a, b);
    struct stat st;
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0700);
}

static void test_concurrent_first_use_agrees(void) {
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/race", root);
    enum { N = 8 };
    int fds[N][2];
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(pipe(fds[i]), 0);
        pids[i] = fork();
        ASSERT_GE(pids[i], 0);
        if (pids[i] == 0) {
            char id[P2P_NODE_ID_LEN + 1];
            if (p2p_node_id_load(dir, id, NULL) != 0)
                _exit(1);
            _exit(write(fds[i][1], id, P2P_NODE_ID_LEN) == P2P_NODE_ID_LEN ? 0 : 1);
        }
        close(fds[i][1]);
    }
    char first[P2P_NODE_ID_LEN + 1] = {0};
    for (int i = 0; i < N; i++) {
        int status = 0;
        ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        char id[P2P_NODE_ID_LEN + 1] = {0};
        ASSERT_EQ(read(fds[i][0], id, P2P_NODE_ID_LEN), P2P_NODE_ID_LEN);
        close(fds[i][0]);
        if (i == 0)
            memcpy(first, id, sizeof(id));
        ASSERT_STR_EQ(id, first);
    }
}

static void test_corrupt_id_is_refused_not_overwritten(void) {
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/bad", root);
    ASSERT_OK(p2p_fs_mkdirs(dir, 0700, NULL));
    snprintf(path, sizeof(path), "%s/node_id", dir);
    ASSERT_OK(p2p_fs_write_atomic(path, "not-a-uuid\n", 11, 0644, NULL));
    char id[P2P_NODE_ID_LEN + 1];
    p2p_error err;
    ASSERT_EQ(p2p_node_id_load(dir, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "node_id");
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(path, 100, &text, &len, NULL));
    ASSERT_STR_EQ(text, "not-a-uuid\n");
    free(text);
}

int main(void) {
    snprintf(root, sizeof(root), "/tmp/p2p_test_node_XXXXXX");
    ASSERT_TRUE(mkdtemp(root) != NULL);
    TEST_RUN(test_data_dir_resolution);
    TEST_RUN(test_id_is_created_once_and_kept);
    TEST_RUN(test_concurrent_first_use_agrees);
    TEST_RUN(test_corrupt_id_is_refused_not_overwritten);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : 1;
}
