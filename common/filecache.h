/* A persistent cache of file content hashes, so a large input file is hashed
 * once and not at every call (DESIGN §2).
 *
 * Entries live in an SQLite file (WAL mode, busy timeout), which several
 * processes and handles may share. The key is what stat(2) says about the
 * file: (device, inode, size, mtime with nanoseconds). When any of them
 * changes the file is hashed again, in full, streaming.
 *
 * Limits, on purpose:
 * - A writer that changes the content and then restores both the size and the
 *   mtime (utimensat) defeats the cache, as it defeats make and rsync.
 * - A file whose mtime is less than P2P_FILECACHE_RACY_SECONDS old is hashed
 *   but not cached: on filesystems with coarse timestamps it could still change
 *   without its mtime changing (git's "racy clean" problem).
 * - A file that changes while it is hashed (stat before and after differ, or
 *   the bytes read differ from its size) gives P2P_ECONFLICT and is not cached:
 *   the bytes read may mix two versions, so no hash is returned.
 * - The cache is only an optimisation: when the database fails after open (for
 *   example, locked longer than the busy timeout), the file is still hashed and
 *   the hash returned; a warning is logged and stats.db_errors counts it.
 *
 * A handle is not thread-safe: use one per thread (they share the file). */
#ifndef P2PRPC_FILECACHE_H
#define P2PRPC_FILECACHE_H

#include "error.h"
#include "hash.h"
#include "value.h"

#include <stddef.h>
#include <stdint.h>

/* Entries kept after a prune; the least recently used go first. */
#define P2P_FILECACHE_DEFAULT_MAX_ENTRIES 100000
/* A prune runs at open and then after this many stores through one handle. */
#define P2P_FILECACHE_PRUNE_EVERY 64
/* Files modified more recently than this are not cached (see above). */
#define P2P_FILECACHE_RACY_SECONDS 2
/* How long a handle waits for another one's write lock. */
#define P2P_FILECACHE_DEFAULT_BUSY_MS 5000

typedef struct p2p_filecache p2p_filecache;

/* Counters of one handle since it was opened. */
typedef struct p2p_filecache_stats {
    uint64_t hits;       /* answered from the cache, nothing read */
    uint64_t misses;     /* hashed in full */
    uint64_t stored;     /* misses whose hash was stored */
    uint64_t not_stored; /* misses not stored: racy mtime, or a database error */
    uint64_t db_errors;  /* database failures after open (logged as warnings) */
} p2p_filecache_stats;

/* Opens (creating if needed) the cache database at `path` (borrowed; its
 * directory must exist). On success `*out` is owned by the caller
 * (p2p_filecache_free). Prunes to P2P_FILECACHE_DEFAULT_MAX_ENTRIES. Returns
 * 0, P2P_EIO (cannot open or set up the database), P2P_EUNAVAIL (locked by
 * another handle longer than the busy timeout), P2P_EINVAL (the file is a
 * cache of a newer format) or P2P_ENOMEM. */
int p2p_filecache_open(const char *path, p2p_filecache **out, p2p_error *err) P2P_NODISCARD;

/* Closes the database and frees `c`. NULL is a no-op. */
void p2p_filecache_free(p2p_filecache *c);

/* Writes the SHA-256 hex of the full content of the regular file at `path`
 * (borrowed) to `out_hex`: from the cache when its (device, inode, size, mtime)
 * is known, else by reading it and then storing the result. Returns 0;
 * P2P_ENOTFOUND (no such file); P2P_EINVAL (`path` NULL or not a regular
 * file); P2P_ECONFLICT (the file changed while it was hashed: retry once it is
 * complete); P2P_EIO (read failure); P2P_ENOMEM. */
int p2p_filecache_hash(p2p_filecache *c, const char *path, char out_hex[P2P_HASH_HEX_LEN + 1],
                       p2p_error *err) P2P_NODISCARD;

/* Like p2p_filecache_hash, and makes `out` (initialised; replaced on success
 * only) the file value of `path`: the path, the hash and the size. */
int p2p_filecache_file_value(p2p_filecache *c, const char *path, p2p_value *out,
                             p2p_error *err) P2P_NODISCARD;

/* Copies the handle's counters to `out`. */
void p2p_filecache_get_stats(const p2p_filecache *c, p2p_filecache_stats *out);

/* Changes the number of entries kept (at least 1) and prunes to it now.
 * Returns 0, or the database error (P2P_EIO, P2P_EUNAVAIL when locked). */
int p2p_filecache_set_max_entries(p2p_filecache *c, size_t max_entries,
                                  p2p_error *err) P2P_NODISCARD;

/* Changes how long this handle waits for a lock held by another (ms, >= 0). */
void p2p_filecache_set_busy_timeout(p2p_filecache *c, int ms);

#endif
