#include "spool.h"
#include "test.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[512];

static void setup_tmp(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/spool_%d", base ? base : "/tmp", (int)getpid());
    mkdir(base ? base : "/tmp", 0700);
    ASSERT_TRUE(mkdir(tmp_dir, 0700) == 0 || errno == EEXIST);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char d[32];
    unsigned int n = 0;
    ASSERT_EQ(EVP_Digest(data, len, d, &n, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_small_body_stays_in_memory(void) {
    p2p_spool_options o = {
        .tmp_dir = tmp_dir, .mem_threshold = 1024, .hash = true, .expected_size = UINT64_MAX};
    p2p_spool *sp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_OK(p2p_spool_write(sp, "a", 1, &err));
    ASSERT_OK(p2p_spool_write(sp, "bc", 2, &err));
    ASSERT_OK(p2p_spool_finish(sp, &err));
    size_t len = 0;
    ASSERT_STR_EQ(p2p_spool_data(sp, &len), "abc");
    ASSERT_EQ(len, 3);
    ASSERT_EQ(p2p_spool_fd(sp), -1);
    ASSERT_TRUE(p2p_spool_path(sp) == NULL);
    /* The FIPS 180-2 test vector for "abc". */
    ASSERT_STR_EQ(p2p_spool_sha256(sp),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char *taken = NULL;
    ASSERT_EQ(p2p_spool_take_file(sp, &taken, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_spool_write(sp, "x", 1, &err), P2P_EINTERNAL);
    p2p_spool_free(sp);
    p2p_spool_free(NULL);
}

static void test_growing_body_moves_to_a_file(void) {
    p2p_spool_options o = {
        .tmp_dir = tmp_dir, .mem_threshold = 10, .hash = true, .expected_size = UINT64_MAX};
    p2p_spool *sp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    const char *text = "0123456789abcdefghijklmno";
    ASSERT_OK(p2p_spool_write(sp, text, 8, &err));
    ASSERT_EQ(p2p_spool_fd(sp), -1);
    ASSERT_OK(p2p_spool_write(sp, text + 8, 17, &err));
    ASSERT_GE(p2p_spool_fd(sp), 0);
    ASSERT_OK(p2p_spool_finish(sp, &err));
    ASSERT_TRUE(p2p_spool_data(sp, NULL) == NULL);
    char buf[32] = {0};
    ASSERT_EQ(pread(p2p_spool_fd(sp), buf, sizeof(buf), 0), 25);
    ASSERT_STR_EQ(buf, text);
    char want[65];
    sha256_hex(text, 25, want);
    ASSERT_STR_EQ(p2p_spool_sha256(sp), want);
    char path[600];
    snprintf(path, sizeof(path), "%s", p2p_spool_path(sp));
    ASSERT_TRUE(strncmp(path, tmp_dir, strlen(tmp_dir)) == 0);
    ASSERT_TRUE(exists(path));
    p2p_spool_free(sp);
    ASSERT_FALSE(exists(path));
}

static void test_announced_size_and_to_file(void) {
    p2p_spool_options o = {.tmp_dir = tmp_dir, .mem_threshold = 100, .expected_size = 101};
    p2p_spool *sp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_GE(p2p_spool_fd(sp), 0); /* before any byte */
    p2p_spool_free(sp);

    /* An empty body on a to_file spool is an empty file with the empty hash. */
    o = (p2p_spool_options){.tmp_dir = tmp_dir,
                            .mem_threshold = 100,
                            .to_file = true,
                            .hash = true,
                            .expected_size = 0};
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_OK(p2p_spool_finish(sp, &err));
    ASSERT_GE(p2p_spool_fd(sp), 0);
    ASSERT_EQ(p2p_spool_size(sp), 0);
    ASSERT_STR_EQ(p2p_spool_sha256(sp),
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    p2p_spool_free(sp);
}

static void test_limit_drops_everything(void) {
    p2p_spool_options o = {.tmp_dir = tmp_dir,
                           .max_size = 100,
                           .mem_threshold = 50,
                           .hash = true,
                           .expected_size = UINT64_MAX};
    p2p_spool *sp = NULL;
    p2p_error err;
    char chunk[60];
    memset(chunk, 'x', sizeof(chunk));
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_OK(p2p_spool_write(sp, chunk, 60, &err));
    char path[600];
    snprintf(path, sizeof(path), "%s", p2p_spool_path(sp));
    ASSERT_TRUE(exists(path));
    ASSERT_EQ(p2p_spool_write(sp, chunk, 41, &err), P2P_ETOOBIG);
    ASSERT_STR_CONTAINS(err.msg, "limit of 100");
    ASSERT_FALSE(exists(path)); /* removed at once, not at free */
    ASSERT_EQ(p2p_spool_fd(sp), -1);
    ASSERT_EQ(p2p_spool_write(sp, chunk, 10, &err), P2P_ETOOBIG);
    ASSERT_EQ(p2p_spool_size(sp), 111);
    ASSERT_EQ(p2p_spool_finish(sp, &err), P2P_ETOOBIG);
    ASSERT_TRUE(p2p_spool_data(sp, NULL) == NULL);
    ASSERT_TRUE(p2p_spool_sha256(sp) == NULL);
    p2p_spool_free(sp);

    /* Exactly at the limit is fine. */
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_OK(p2p_spool_write(sp, chunk, 60, &err));
    ASSERT_OK(p2p_spool_write(sp, chunk, 40, &err));
    ASSERT_OK(p2p_spool_finish(sp, &err));
    p2p_spool_free(sp);
}

static void test_take_file(void) {
    p2p_spool_options o = {.tmp_dir = tmp_dir, .to_file = true, .expected_size = 5};
    p2p_spool *sp = NULL;
    p2p_error err;
    ASSERT_OK(p2p_spool_new(&o, &sp, &err));
    ASSERT_OK(p2p_spool_write(sp, "hello", 5, &err));
    ASSERT_OK(p2p_spool_finish(sp, &err));
    char *path = NULL;
    ASSERT_OK(p2p_spool_take_file(sp, &path, &err));
    ASSERT_TRUE(p2p_spool_path(sp) == NULL);
    char *again = NULL;
    ASSERT_EQ(p2p_spool_take_file(sp, &again, &err), P2P_ENOTFOUND);
    p2p_spool_free(sp);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, 5);
    ASSERT_EQ(unlink(path), 0);
    free(path);
}

static void test_bad_tmp_dir(void) {
    p2p_spool_options o = {
        .tmp_dir = "/nonexistent/p2p", .to_file = true, .expected_size = UINT64_MAX};
    p2p_spool *sp = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_spool_new(&o, &sp, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "/nonexistent/p2p");
    ASSERT_TRUE(sp == NULL);
}

int main(void) {
    setup_tmp();
    TEST_RUN(test_small_body_stays_in_memory);
    TEST_RUN(test_growing_body_moves_to_a_file);
    TEST_RUN(test_announced_size_and_to_file);
    TEST_RUN(test_limit_drops_everything);
    TEST_RUN(test_take_file);
    TEST_RUN(test_bad_tmp_dir);
    ASSERT_EQ(rmdir(tmp_dir), 0); /* every temp file was removed */
    return 0;
}
