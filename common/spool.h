/* A body sink for streamed uploads: bytes are kept in memory while the body is
 * small and moved to a temporary file once it grows past a threshold, so a
 * multi-gigabyte upload costs constant memory. A size limit is enforced while
 * the bytes arrive, and the SHA-256 of the body can be computed on the way in.
 *
 * Temporary files are created with mkostemp(O_CLOEXEC) in the configured
 * directory and unlinked by p2p_spool_free(), unless the owner took them with
 * p2p_spool_take_file() (for example to rename a verified blob into place).
 *
 * A spool is not thread-safe: one writer at a time. */
#ifndef P2PRPC_SPOOL_H
#define P2PRPC_SPOOL_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct p2p_spool p2p_spool;

typedef struct p2p_spool_options {
    const char *tmp_dir;    /* directory for temp files; borrowed for the call to
                               p2p_spool_new only (it is copied). NULL = "/tmp". */
    uint64_t max_size;      /* bytes accepted; more gives P2P_ETOOBIG. 0 = no limit. */
    size_t mem_threshold;   /* bodies larger than this go to a file. */
    bool to_file;           /* always use a file, whatever the size. */
    bool hash;              /* compute the SHA-256 of the body. */
    uint64_t expected_size; /* announced size (Content-Length), or UINT64_MAX when
                               unknown; a known size over the threshold goes to a
                               file from the first byte. */
} p2p_spool_options;

/* Creates an empty spool. `*out` is set on success (caller frees with
 * p2p_spool_free). Returns 0, P2P_ENOMEM, or P2P_EIO when the temp file
 * cannot be created. */
int p2p_spool_new(const p2p_spool_options *opts, p2p_spool **out, p2p_error *err) P2P_NODISCARD;

/* Appends `len` bytes (borrowed). Returns 0; P2P_ETOOBIG when the total goes
 * over max_size, in which case everything stored so far is dropped (the temp
 * file is closed and removed) and every later write only counts bytes and
 * returns P2P_ETOOBIG again; P2P_EIO when the file cannot be written (the
 * spool is then failed too). */
int p2p_spool_write(p2p_spool *sp, const void *data, size_t len, p2p_error *err) P2P_NODISCARD;

/* Ends the body: finalises the hash and NUL-terminates the memory copy.
 * Returns 0, or the error that failed the spool earlier (P2P_ETOOBIG or
 * P2P_EIO). No write is allowed afterwards. */
int p2p_spool_finish(p2p_spool *sp, p2p_error *err) P2P_NODISCARD;

/* Number of bytes written so far, counting dropped ones after P2P_ETOOBIG. */
uint64_t p2p_spool_size(const p2p_spool *sp);

/* The body when it is held in memory: a pointer valid until p2p_spool_free,
 * NUL-terminated after p2p_spool_finish, with its length in `*len` (may be
 * NULL). Returns NULL when the body is in a file. */
const char *p2p_spool_data(const p2p_spool *sp, size_t *len);

/* The temp file holding the body, or -1 / NULL when the body is in memory.
 * The descriptor stays owned by the spool; use pread() on it. The path is
 * borrowed until p2p_spool_free (or p2p_spool_take_file). */
int p2p_spool_fd(const p2p_spool *sp);
const char *p2p_spool_path(const p2p_spool *sp);

/* The SHA-256 of the body as 64 lowercase hex characters, after a successful
 * p2p_spool_finish of a spool created with `hash`; NULL otherwise. Borrowed. */
const char *p2p_spool_sha256(const p2p_spool *sp);

/* Takes over the temp file: `*path` receives a copy of its path (caller frees
 * with free()) and p2p_spool_free will no longer unlink it; the caller must
 * rename or unlink it. The descriptor is still closed by p2p_spool_free.
 * Returns 0, P2P_ENOTFOUND when the body is not in a file (or was already
 * taken), P2P_ENOMEM. */
int p2p_spool_take_file(p2p_spool *sp, char **path, p2p_error *err) P2P_NODISCARD;

/* Closes the temp file and unlinks it unless taken; frees everything.
 * NULL is a no-op. */
void p2p_spool_free(p2p_spool *sp);

#endif
