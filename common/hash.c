#include "hash.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

struct p2p_hasher {
    EVP_MD_CTX *ctx;
};

static int openssl_failed(p2p_error *err, const char *what) {
    return p2p_error_set(err, P2P_EINTERNAL, "OpenSSL %s failed for SHA-256", what);
}

int p2p_hasher_new(p2p_hasher **out, p2p_error *err) {
    p2p_hasher *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot allocate a hasher");
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL) {
        free(h);
        return p2p_error_set(err, P2P_ENOMEM, "cannot allocate an OpenSSL digest context");
    }
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        p2p_hasher_free(h);
        return openssl_failed(err, "digest init");
    }
    *out = h;
    return 0;
}

void p2p_hasher_free(p2p_hasher *h) {
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int p2p_hasher_update(p2p_hasher *h, const void *data, size_t len, p2p_error *err) {
    if (len == 0)
        return 0;
    if (EVP_DigestUpdate(h->ctx, data, len) != 1)
        return openssl_failed(err, "digest update");
    return 0;
}

int p2p_hasher_update_u8(p2p_hasher *h, uint8_t x, p2p_error *err) {
    return p2p_hasher_update(h, &x, 1, err);
}

int p2p_hasher_update_u64be(p2p_hasher *h, uint64_t x, p2p_error *err) {
    uint8_t be[8];
    for (int i = 7; i >= 0; i--) {
        be[i] = (uint8_t)(x & 0xff);
        x >>= 8;
    }
    return p2p_hasher_update(h, be, sizeof(be), err);
}

int p2p_hasher_update_lp(p2p_hasher *h, const void *data, size_t len, p2p_error *err) {
    int rc = p2p_hasher_update_u64be(h, (uint64_t)len, err);
    return rc != 0 ? rc : p2p_hasher_update(h, data, len, err);
}

int p2p_hasher_final(p2p_hasher *h, uint8_t out[P2P_HASH_LEN], p2p_error *err) {
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != P2P_HASH_LEN)
        return openssl_failed(err, "digest final");
    /* Re-arm the context so one hasher serves many messages. */
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
        return openssl_failed(err, "digest init");
    return 0;
}

int p2p_hasher_final_hex(p2p_hasher *h, char out[P2P_HASH_HEX_LEN + 1], p2p_error *err) {
    uint8_t digest[P2P_HASH_LEN];
    int rc = p2p_hasher_final(h, digest, err);
    if (rc != 0)
        return rc;
    p2p_hash_hex_encode(digest, out);
    return 0;
}

int p2p_hash_bytes(const void *data, size_t len, uint8_t out[P2P_HASH_LEN], p2p_error *err) {
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != P2P_HASH_LEN)
        return openssl_failed(err, "one-shot digest");
    return 0;
}

int p2p_hash_bytes_hex(const void *data, size_t len, char out[P2P_HASH_HEX_LEN + 1],
                       p2p_error *err) {
    uint8_t digest[P2P_HASH_LEN];
    int rc = p2p_hash_bytes(data, len, digest, err);
    if (rc != 0)
        return rc;
    p2p_hash_hex_encode(digest, out);
    return 0;
}

/* Reads up to `cap` bytes, retrying on EINTR. Returns bytes read, 0 at EOF,
 * -1 with errno set on failure. */
static ssize_t read_some(int fd, uint8_t *buf, size_t cap) {
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0 || errno != EINTR)
            return n;
    }
}

int p2p_hash_fd(int fd, char out_hex[P2P_HASH_HEX_LEN + 1], uint64_t *size, p2p_error *err) {
    p2p_hasher *h = NULL;
    uint8_t *buf = NULL;
    uint64_t total = 0;
    int rc = p2p_hasher_new(&h, err);
    if (rc != 0)
        goto cleanup;
    buf = malloc(P2P_HASH_FILE_BUFFER);
    if (buf == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, "cannot allocate the file hash buffer");
        goto cleanup;
    }
    /* Only a hint: the kernel may read ahead harder. Failure changes nothing. */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read_some(fd, buf, P2P_HASH_FILE_BUFFER);
        if (n < 0) {
            rc = p2p_error_errno(err, P2P_EIO, errno, "read failed after %llu bytes",
                                 (unsigned long long)total);
            goto cleanup;
        }
        if (n == 0)
            break;
        rc = p2p_hasher_update(h, buf, (size_t)n, err);
        if (rc != 0)
            goto cleanup;
        total += (uint64_t)n;
    }
    rc = p2p_hasher_final_hex(h, out_hex, err);
    if (rc == 0 && size != NULL)
        *size = total;
cleanup:
    free(buf);
    p2p_hasher_free(h);
    return rc;
}

int p2p_hash_file(const char *path, char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) {
    int fd = -1;
    int rc = p2p_fs_open_regular(path, &fd, NULL, err);
    if (rc != 0)
        return rc;
    rc = p2p_hash_fd(fd, out_hex, NULL, err);
    close(fd);
    return rc;
}

void p2p_hash_hex_encode(const uint8_t digest[P2P_HASH_LEN], char out[P2P_HASH_HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < P2P_HASH_LEN; i++) {
        out[2 * i] = digits[digest[i] >> 4];
        out[2 * i + 1] = digits[digest[i] & 0x0f];
    }
    out[P2P_HASH_HEX_LEN] = '\0';
}

/* Value of a lowercase hex digit, or -1. Uppercase is refused on purpose: one
 * digest must have exactly one spelling, since it names files and rows. */
static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool p2p_hash_hex_valid(const char *s) {
    if (s == NULL || strnlen(s, P2P_HASH_HEX_LEN + 1) != P2P_HASH_HEX_LEN)
        return false;
    for (size_t i = 0; i < P2P_HASH_HEX_LEN; i++) {
        if (hex_digit(s[i]) < 0)
            return false;
    }
    return true;
}

int p2p_hash_hex_decode(const char *hex, uint8_t out[P2P_HASH_LEN]) {
    if (!p2p_hash_hex_valid(hex))
        return P2P_EINVAL;
    for (size_t i = 0; i < P2P_HASH_LEN; i++)
        out[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    return 0;
}
