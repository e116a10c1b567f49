#include "hash.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* FIPS 180-2 examples, and `sha256sum` of an empty file. */
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_TWO_BLOCKS "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define TWO_BLOCKS "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
/* python3 -c "import hashlib;print(hashlib.sha256(bytes(64<<20)).hexdigest())" */
#define SHA_64MIB_ZEROS "3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351"

static char tmp_dir[512];

static void make_tmp_dir(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/hash_%d", base ? base : "/tmp", (int)getpid());
    if (base != NULL)
        mkdir(base, 0700);
    ASSERT_EQ(mkdir(tmp_dir, 0700), 0);
}

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    ASSERT_EQ(fclose(f), 0);
}

static void test_known_vectors(void) {
    char hex[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex("", 0, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_EMPTY);
    ASSERT_OK(p2p_hash_bytes_hex(NULL, 0, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_EMPTY);
    ASSERT_OK(p2p_hash_bytes_hex("abc", 3, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_ABC);
    ASSERT_OK(p2p_hash_bytes_hex(TWO_BLOCKS, strlen(TWO_BLOCKS), hex, NULL));
    ASSERT_STR_EQ(hex, SHA_TWO_BLOCKS);
    uint8_t raw[P2P_HASH_LEN];
    ASSERT_OK(p2p_hash_bytes("abc", 3, raw, NULL));
    ASSERT_EQ(raw[0], 0xba);
    ASSERT_EQ(raw[31], 0xad);
}

static void test_streaming_matches_one_shot_and_resets(void) {
    p2p_hasher *h = NULL;
    ASSERT_OK(p2p_hasher_new(&h, NULL));
    const char *msg = TWO_BLOCKS;
    /* Uneven pieces, including empty ones, across the 64-byte block boundary. */
    size_t cuts[] = {0, 1, 1, 7, 30, 55, strlen(msg)};
    for (size_t i = 1; i < sizeof(cuts) / sizeof(cuts[0]); i++)
        ASSERT_OK(p2p_hasher_update(h, msg + cuts[i - 1], cuts[i] - cuts[i - 1], NULL));
    char hex[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hasher_final_hex(h, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_TWO_BLOCKS);
    /* After final the hasher starts over. */
    ASSERT_OK(p2p_hasher_update(h, "abc", 3, NULL));
    ASSERT_OK(p2p_hasher_final_hex(h, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_ABC);
    ASSERT_OK(p2p_hasher_final_hex(h, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_EMPTY);
    p2p_hasher_free(h);
    p2p_hasher_free(NULL);
}

static void test_encoding_helpers(void) {
    p2p_hasher *h = NULL;
    ASSERT_OK(p2p_hasher_new(&h, NULL));
    ASSERT_OK(p2p_hasher_update_u8(h, 0x7f, NULL));
    ASSERT_OK(p2p_hasher_update_u64be(h, 0x0102030405060708ULL, NULL));
    ASSERT_OK(p2p_hasher_update_lp(h, "abc", 3, NULL));
    ASSERT_OK(p2p_hasher_update_lp(h, NULL, 0, NULL));
    char hex[P2P_HASH_HEX_LEN + 1], expected[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hasher_final_hex(h, hex, NULL));
    const uint8_t bytes[] = {0x7f, 1, 2, 3,   4,   5,   6, 7, 8, 0, 0, 0, 0, 0,
                             0,    0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_OK(p2p_hash_bytes_hex(bytes, sizeof(bytes), expected, NULL));
    ASSERT_STR_EQ(hex, expected);
    p2p_hasher_free(h);
}

static void test_hex_validation(void) {
    ASSERT_TRUE(p2p_hash_hex_valid(SHA_ABC));
    ASSERT_FALSE(p2p_hash_hex_valid(NULL));
    ASSERT_FALSE(p2p_hash_hex_valid(""));
    char s[80];
    snprintf(s, sizeof(s), "%s", SHA_ABC);
    s[63] = '\0';
    ASSERT_FALSE(p2p_hash_hex_valid(s)); /* 63 characters */
    snprintf(s, sizeof(s), "%s0", SHA_ABC);
    ASSERT_FALSE(p2p_hash_hex_valid(s)); /* 65 characters */
    snprintf(s, sizeof(s), "%s", SHA_ABC);
    s[0] = 'B';
    ASSERT_FALSE(p2p_hash_hex_valid(s)); /* uppercase */
    s[0] = 'g';
    ASSERT_FALSE(p2p_hash_hex_valid(s));
    s[0] = '/';
    ASSERT_FALSE(p2p_hash_hex_valid(s));
    snprintf(s, sizeof(s), "%s", SHA_ABC);
    s[40] = ' ';
    ASSERT_FALSE(p2p_hash_hex_valid(s));
    ASSERT_FALSE(p2p_hash_hex_valid("../../etc/passwd"));
}

static void test_hex_encode_decode(void) {
    uint8_t raw[P2P_HASH_LEN], back[P2P_HASH_LEN];
    for (int i = 0; i < P2P_HASH_LEN; i++)
        raw[i] = (uint8_t)(i * 37 + 5);
    char hex[P2P_HASH_HEX_LEN + 1];
    p2p_hash_hex_encode(raw, hex);
    ASSERT_TRUE(p2p_hash_hex_valid(hex));
    ASSERT_OK(p2p_hash_hex_decode(hex, back));
    ASSERT_MEM_EQ(raw, back, sizeof(raw));
    /* A refused input leaves the output alone. */
    memset(back, 0xee, sizeof(back));
    hex[10] = 'A';
    ASSERT_EQ(p2p_hash_hex_decode(hex, back), P2P_EINVAL);
    ASSERT_EQ(back[0], 0xee);
    ASSERT_EQ(p2p_hash_hex_decode(NULL, back), P2P_EINVAL);
}

/* sha256sum (coreutils) is an implementation independent of ours. */
static void sha256sum_of(const char *path, char out[P2P_HASH_HEX_LEN + 1]) {
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    ASSERT_TRUE(p != NULL);
    ASSERT_TRUE(fgets(out, P2P_HASH_HEX_LEN + 1, p) != NULL);
    ASSERT_EQ(pclose(p), 0);
}

static void test_file_larger_than_the_buffer(void) {
    char path[600], hex[P2P_HASH_HEX_LEN + 1], expected[P2P_HASH_HEX_LEN + 1];
    tmp_path(path, sizeof(path), "big.bin");
    /* 3.5 buffers: several full reads and a partial one. */
    size_t len = P2P_HASH_FILE_BUFFER * 7 / 2 + 3;
    uint8_t *data = malloc(len);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);
    write_file(path, data, len);
    ASSERT_OK(p2p_hash_file(path, hex, NULL));
    ASSERT_OK(p2p_hash_bytes_hex(data, len, expected, NULL));
    ASSERT_STR_EQ(hex, expected);
    sha256sum_of(path, expected);
    ASSERT_STR_EQ(hex, expected);

    int fd = open(path, O_RDONLY);
    ASSERT_GE(fd, 0);
    uint64_t size = 0;
    ASSERT_OK(p2p_hash_fd(fd, hex, &size, NULL));
    ASSERT_EQ(size, len);
    ASSERT_STR_EQ(hex, expected);
    close(fd);
    free(data);
    unlink(path);
}

static void test_empty_file(void) {
    char path[600], hex[P2P_HASH_HEX_LEN + 1];
    tmp_path(path, sizeof(path), "empty.bin");
    write_file(path, "", 0);
    ASSERT_OK(p2p_hash_file(path, hex, NULL));
    ASSERT_STR_EQ(hex, SHA_EMPTY);
    unlink(path);
}

/* A sparse 64 MiB file reads as zeros without using the disk; the peak RSS
 * shows the hash does not hold the file in memory. */
static void test_memory_stays_constant(void) {
    char path[600], hex[P2P_HASH_HEX_LEN + 1];
    tmp_path(path, sizeof(path), "sparse.bin");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, (off_t)64 << 20), 0);
    close(fd);
    struct rusage before, after;
    ASSERT_EQ(getrusage(RUSAGE_SELF, &before), 0);
    ASSERT_OK(p2p_hash_file(path, hex, NULL));
    ASSERT_EQ(getrusage(RUSAGE_SELF, &after), 0);
    ASSERT_STR_EQ(hex, SHA_64MIB_ZEROS);
    /* ru_maxrss is in KiB; the buffer is 1 MiB, the file 64 MiB. */
    ASSERT_LT(after.ru_maxrss - before.ru_maxrss, 16 * 1024);
    unlink(path);
}

static void test_file_errors(void) {
    char path[600], hex[P2P_HASH_HEX_LEN + 1];
    p2p_error err;
    tmp_path(path, sizeof(path), "missing.bin");
    ASSERT_EQ(p2p_hash_file(path, hex, &err), P2P_ENOTFOUND);
    ASSERT_EQ(err.code, P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "missing.bin");
    ASSERT_STR_CONTAINS(err.msg, "No such file");
    ASSERT_EQ(p2p_hash_file(tmp_dir, hex, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "not a regular file");
    ASSERT_EQ(p2p_hash_file(NULL, hex, &err), P2P_EINVAL);
    /* A FIFO with no writer must be refused, not block the open. */
    tmp_path(path, sizeof(path), "fifo");
    ASSERT_EQ(mkfifo(path, 0600), 0);
    ASSERT_EQ(p2p_hash_file(path, hex, &err), P2P_EINVAL);
    unlink(path);
    /* A read error on a valid fd: a write-only descriptor. */
    tmp_path(path, sizeof(path), "wo.bin");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(p2p_hash_fd(fd, hex, NULL, &err), P2P_EIO);
    ASSERT_STR_CONTAINS(err.msg, "read failed");
    close(fd);
    unlink(path);
}

int main(void) {
    make_tmp_dir();
    TEST_RUN(test_known_vectors);
    TEST_RUN(test_streaming_matches_one_shot_and_resets);
    TEST_RUN(test_encoding_helpers);
    TEST_RUN(test_hex_validation);
    TEST_RUN(test_hex_encode_decode);
    TEST_RUN(test_file_larger_than_the_buffer);
    TEST_RUN(test_empty_file);
    TEST_RUN(test_memory_stays_constant);
    TEST_RUN(test_file_errors);
    ASSERT_EQ(rmdir(tmp_dir), 0);
    return 0;
}
