/* The per-call directories (calldir.c): a new one has in/ and out/; a clean
 * one is kept and becomes the next call's directory (the same inode, under
 * the new call's name); one with anything left in it is removed, and so is
 * any while the worker stops; bad paths are errors, not crashes. */
#include "fsutil.h"
#include "test.h"
#include "worker_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const ID1 = "1111111111111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *const ID2 = "2222222222222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static char root[600];

static bool is_dir(const char *dir, const char *name) {
    char path[900];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s%s", dir, name[0] ? "/" : "", name);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static ino_t inode(const char *path) {
    struct stat st;
    ASSERT_OK(stat(path, &st));
    return st.st_ino;
}

/* A call directory of `id` under the worker's directory, in/ and out/ there. */
static char *make(p2p_worker *w, const char *id) {
    char *dir = NULL;
    p2p_error err = {0};
    ASSERT_OK(p2p__calldir_make(w, id, &dir, &err));
    char want[700];
    snprintf(want, sizeof(want), "%s/call-%.16s-", root, id);
    ASSERT_TRUE(strncmp(dir, want, strlen(want)) == 0);
    ASSERT_EQ(strlen(dir), strlen(want) + 6);
    ASSERT_TRUE(is_dir(dir, "in") && is_dir(dir, "out"));
    return dir;
}

static void test_kept_and_reused(void) {
    p2p_worker w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.lock, NULL);
    w.work_dir = root;
    char *d1 = make(&w, ID1);
    ino_t ino = inode(d1);
    char path1[900];
    snprintf(path1, sizeof(path1), "%s", d1);
    p2p__calldir_retire(&w, d1);
    ASSERT_EQ(w.nfree_dirs, 1);
    ASSERT_FALSE(is_dir(path1, ""));
    /* The next call gets it, under its own name. */
    char *d2 = make(&w, ID2);
    ASSERT_EQ(w.nfree_dirs, 0);
    ASSERT_EQ(inode(d2), ino);
    /* Something left in out/: removed, not kept. */
    char file[900], path2[900];
    snprintf(file, sizeof(file), "%s/out/result.bin", d2);
    ASSERT_OK(p2p_fs_write_atomic(file, "x", 1, 0600, NULL));
    snprintf(path2, sizeof(path2), "%s", d2);
    p2p__calldir_retire(&w, d2);
    ASSERT_EQ(w.nfree_dirs, 0);
    ASSERT_FALSE(is_dir(path2, ""));
    /* A new one again; retired while the worker stops: removed. */
    char *d3 = make(&w, ID1);
    atomic_store(&w.stopping, true);
    snprintf(path1, sizeof(path1), "%s", d3);
    p2p__calldir_retire(&w, d3);
    ASSERT_EQ(w.nfree_dirs, 0);
    ASSERT_FALSE(is_dir(path1, ""));
    p2p__calldir_retire(&w, NULL); /* no-op */
    p2p__calldirs_cleanup(&w);
    pthread_mutex_destroy(&w.lock);
}

/* At most P2P__MAX_FREE_DIRS are kept; cleanup frees their names. */
static void test_bounded(void) {
    p2p_worker w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.lock, NULL);
    w.work_dir = root;
    char *dirs[P2P__MAX_FREE_DIRS + 2];
    for (int i = 0; i < P2P__MAX_FREE_DIRS + 2; i++)
        dirs[i] = make(&w, ID1);
    for (int i = 0; i < P2P__MAX_FREE_DIRS + 2; i++)
        p2p__calldir_retire(&w, dirs[i]);
    ASSERT_EQ(w.nfree_dirs, P2P__MAX_FREE_DIRS);
    p2p__calldirs_cleanup(&w);
    ASSERT_EQ(w.nfree_dirs, 0);
    pthread_mutex_destroy(&w.lock);
}

/* A work directory that does not exist: an error naming it. */
static void test_missing_work_dir(void) {
    p2p_worker w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.lock, NULL);
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/not-there", root);
    w.work_dir = missing;
    char *dir = (char *)"untouched";
    p2p_error err = {0};
    ASSERT_EQ(p2p__calldir_make(&w, ID1, &dir, &err), P2P_EIO);
    ASSERT_TRUE(dir == NULL);
    ASSERT_STR_CONTAINS(err.msg, "not-there");
    pthread_mutex_destroy(&w.lock);
}

int main(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    base = base != NULL ? base : "/tmp";
    ASSERT_OK(p2p_fs_mkdirs(base, 0700, NULL));
    snprintf(root, sizeof(root), "%s/worker_calldir.%d", base, (int)getpid());
    ASSERT_OK(p2p_fs_mkdirs(root, 0700, NULL));
    TEST_RUN(test_kept_and_reused);
    TEST_RUN(test_bounded);
    TEST_RUN(test_missing_work_dir);
    p2p__worker_remove_tree(root);
    return 0;
}
