/* SHA-256, the one hash of p2prpc: call identifiers, blob addresses and schema
 * fingerprints are all SHA-256, written as 64 lowercase hex characters.
 *
 * SHA-256 was measured against BLAKE2b on the reference machine (2 cores with
 * SHA-NI): `openssl speed -evp sha256` gives 1.83 GB/s, BLAKE2b-512 0.96 GB/s.
 * Everything goes through OpenSSL's EVP interface; nothing is hand-written. */
#ifndef P2PRPC_HASH_H
#define P2PRPC_HASH_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes in a raw digest, and characters in its hex form (without the NUL). */
#define P2P_HASH_LEN 32
#define P2P_HASH_HEX_LEN 64

/* Size of the read buffer of p2p_hash_fd/p2p_hash_file: the memory a file
 * hash takes, whatever the file's size. */
#define P2P_HASH_FILE_BUFFER (1024 * 1024)

/* A streaming SHA-256 computation. Opaque; one owner at a time. */
typedef struct p2p_hasher p2p_hasher;

/* Creates a hasher ready for p2p_hasher_update. On success `*out` is owned by
 * the caller (p2p_hasher_free). Returns 0 or P2P_ENOMEM. */
int p2p_hasher_new(p2p_hasher **out, p2p_error *err) P2P_NODISCARD;

/* Frees `h`. NULL is a no-op. */
void p2p_hasher_free(p2p_hasher *h);

/* Feeds `len` bytes at `data` (borrowed for the call; may be NULL when `len`
 * is 0). Returns 0, or P2P_EINTERNAL when OpenSSL fails. */
int p2p_hasher_update(p2p_hasher *h, const void *data, size_t len, p2p_error *err) P2P_NODISCARD;

/* Writes the digest of everything fed since creation (or the last final) to
 * `out`, then resets `h` so it can hash a new message. Returns 0 or
 * P2P_EINTERNAL. */
int p2p_hasher_final(p2p_hasher *h, uint8_t out[P2P_HASH_LEN], p2p_error *err) P2P_NODISCARD;

/* Like p2p_hasher_final, writing 64 lowercase hex characters and a NUL. */
int p2p_hasher_final_hex(p2p_hasher *h, char out[P2P_HASH_HEX_LEN + 1],
                         p2p_error *err) P2P_NODISCARD;

/* Helpers for the canonical encodings that get hashed (schema fingerprint,
 * call identifier; docs/protocol.md). Each feeds `h` and returns 0 or
 * P2P_EINTERNAL like p2p_hasher_update. */

/* Feeds one byte. */
int p2p_hasher_update_u8(p2p_hasher *h, uint8_t x, p2p_error *err) P2P_NODISCARD;

/* Feeds `x` as 8 bytes, big-endian (most significant first). */
int p2p_hasher_update_u64be(p2p_hasher *h, uint64_t x, p2p_error *err) P2P_NODISCARD;

/* Feeds a length-prefixed byte string: u64be(len), then the `len` bytes. */
int p2p_hasher_update_lp(p2p_hasher *h, const void *data, size_t len, p2p_error *err) P2P_NODISCARD;

/* One-shot SHA-256 of `len` bytes at `data` into `out` (raw digest). Returns 0,
 * P2P_ENOMEM or P2P_EINTERNAL. */
int p2p_hash_bytes(const void *data, size_t len, uint8_t out[P2P_HASH_LEN],
                   p2p_error *err) P2P_NODISCARD;

/* One-shot SHA-256 of `len` bytes at `data`, as 64 lowercase hex and a NUL. */
int p2p_hash_bytes_hex(const void *data, size_t len, char out[P2P_HASH_HEX_LEN + 1],
                       p2p_error *err) P2P_NODISCARD;

/* Hashes everything readable from `fd` (from its current offset to EOF) with a
 * fixed P2P_HASH_FILE_BUFFER buffer, so memory stays constant. `fd` is borrowed
 * and left open. When `size` is not NULL it receives the number of bytes
 * hashed. Returns 0, P2P_EIO (read failed; the message carries errno) or
 * P2P_ENOMEM. */
int p2p_hash_fd(int fd, char out_hex[P2P_HASH_HEX_LEN + 1], uint64_t *size,
                p2p_error *err) P2P_NODISCARD;

/* Hashes the full content of the regular file at `path` (borrowed), streaming.
 * Returns 0, P2P_ENOTFOUND (no such file), P2P_EINVAL (not a regular file, or
 * `path` NULL) or P2P_EIO. */
int p2p_hash_file(const char *path, char out_hex[P2P_HASH_HEX_LEN + 1],
                  p2p_error *err) P2P_NODISCARD;

/* Writes the 64 lowercase hex characters of `digest` and a NUL to `out`. */
void p2p_hash_hex_encode(const uint8_t digest[P2P_HASH_LEN], char out[P2P_HASH_HEX_LEN + 1]);

/* Decodes a hex digest into `out`. Only what p2p_hash_hex_valid accepts is
 * decoded; anything else returns P2P_EINVAL and leaves `out` untouched. */
int p2p_hash_hex_decode(const char *hex, uint8_t out[P2P_HASH_LEN]) P2P_NODISCARD;

/* True when `s` is exactly 64 characters of [0-9a-f] followed by a NUL.
 * Uppercase, any other length and NULL are false. Every hash or identifier
 * taken from outside passes here before it reaches a store or a disk path. */
bool p2p_hash_hex_valid(const char *s);

#endif
