/* The broker's blob store: file contents addressed by their SHA-256. One
 * interface, two backends:
 *
 *   - the disk (p2p_blobstore_open), the default with the SQLite store: one
 *     file per blob under a directory that one broker owns;
 *   - GridFS (p2p_blobstore_open_gridfs), with the MongoDB store: the bucket
 *     "blobs" of the database, so that every broker sharing the database
 *     serves every blob.
 *
 * Both stream in constant memory: an upload arrives in a temp file under
 * p2p_blobstore_tmp_dir() (where the HTTP server hashes it) and is committed
 * from there; a download is read piece by piece (p2p_blob_reader).
 *
 * The disk backend's layout under the root directory DIR:
 *
 *     DIR/tmp/            uploads being received (same filesystem: renames are atomic)
 *     DIR/ab/abcdef...    the blob whose hash is "abcdef...", in a two-hex shard
 *
 * Every path is built from a hash that passed p2p_hash_hex_valid, never from
 * anything else a request carries. A blob path never holds partial data: a
 * blob enters the store by an atomic rename of a complete, verified temp file
 * that does not replace an existing blob. With `fsync` set, the file is
 * fsynced before the rename and the shard directory after, so a blob that was
 * reported stored survives power loss.
 *
 * The store keeps running totals (number of blobs, bytes) for metrics: they
 * are computed once at open by scanning the shards, then kept up to date by
 * commit and remove. Several processes must not share one directory.
 *
 * Thread-safe: every function may be called from any thread. Whether a blob
 * may be removed (no call references it) is the caller's business. */
#ifndef P2PRPC_BLOBSTORE_H
#define P2PRPC_BLOBSTORE_H

#include "error.h"
#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct p2p_blobstore p2p_blobstore;

/* A blob open for reading (p2p_blobstore_read). */
typedef struct p2p_blob_reader p2p_blob_reader;

/* Opens (creating it and tmp/ with mode 0700 when missing) the blob store at
 * `dir` (borrowed, copied). Files left in tmp/ by an earlier run are removed.
 * `*out` is the caller's (p2p_blobstore_free). Returns 0, P2P_EIO, P2P_ENOMEM. */
int p2p_blobstore_open(const char *dir, bool fsync, p2p_blobstore **out,
                       p2p_error *err) P2P_NODISCARD;

/* Opens the GridFS blob store in the bucket "blobs" (collections
 * blobs.files and blobs.chunks) of the database of the MongoDB URI `uri`
 * (as for p2p_store_open), with uploads received in `tmp_dir` (created 0700
 * when missing; files left there are removed). A blob is a GridFS file whose
 * filename is its hash; its metadata.touched_ms is when it was last uploaded
 * or asked for. With `durable`, writes wait for journaled majority
 * acknowledgement (unless the URI sets w). `*out` is the caller's. Returns 0,
 * P2P_EINVAL (bad URI), P2P_EUNAVAIL (no server answers), P2P_EIO,
 * P2P_ENOMEM. */
int p2p_blobstore_open_gridfs(const char *uri, const char *tmp_dir, bool durable,
                              p2p_blobstore **out, p2p_error *err) P2P_NODISCARD;

/* The backend's name: "disk" or "gridfs". */
const char *p2p_blobstore_backend(const p2p_blobstore *bs);

/* Frees the handle (the blobs stay). NULL is a no-op. */
void p2p_blobstore_free(p2p_blobstore *bs);

/* The directory for uploads in progress ("DIR/tmp"); borrowed until free. Temp
 * files handed to p2p_blobstore_commit must be created here. */
const char *p2p_blobstore_tmp_dir(const p2p_blobstore *bs);

/* The size of blob `hash` into `*size`. Returns 0, P2P_ENOTFOUND when there is
 * no such blob, P2P_EINVAL for a malformed hash, P2P_EIO. */
int p2p_blobstore_stat(p2p_blobstore *bs, const char *hash, uint64_t *size,
                       p2p_error *err) P2P_NODISCARD;

/* Opens blob `hash` for reading: `*fd` (the caller closes it) and its size.
 * The disk backend opens the blob's file; GridFS copies the blob into an
 * unlinked temp file in the tmp directory first. Errors as
 * p2p_blobstore_stat. */
int p2p_blobstore_open_blob(p2p_blobstore *bs, const char *hash, int *fd, uint64_t *size,
                            p2p_error *err) P2P_NODISCARD;

/* Opens blob `hash` for reading piece by piece: `*out` (the caller frees it
 * with p2p_blob_reader_free) and its size. Errors as p2p_blobstore_stat. */
int p2p_blobstore_read(p2p_blobstore *bs, const char *hash, p2p_blob_reader **out, uint64_t *size,
                       p2p_error *err) P2P_NODISCARD;

/* Reads up to `n` bytes of the blob at `offset` into `buf`: returns the
 * number read (0 only at or past the end), or a negative P2P_E* code
 * (P2P_EIO, P2P_EUNAVAIL, P2P_ESTORE: the blob changed or vanished). Reading
 * forward in order is the fast path. */
int64_t p2p_blob_reader_pread(p2p_blob_reader *r, void *buf, size_t n, uint64_t offset,
                              p2p_error *err);

/* The blob's file descriptor, for zero-copy sending, when the backend keeps
 * blobs in files (disk): the caller owns and closes it, and the reader must
 * still be freed. -1 otherwise (read with p2p_blob_reader_pread). */
int p2p_blob_reader_take_fd(p2p_blob_reader *r);

/* Closes the reader. NULL is a no-op. */
void p2p_blob_reader_free(p2p_blob_reader *r);

/* Marks blob `hash` as used now (its mtime), so that a sweep of unreferenced
 * blobs spares it for another full period. Returns 0, P2P_ENOTFOUND, P2P_EINVAL. */
int p2p_blobstore_touch(p2p_blobstore *bs, const char *hash, p2p_error *err) P2P_NODISCARD;

/* Moves the complete temp file at `tmp_path` (borrowed; in the tmp directory;
 * its content must already be verified to hash to `hash`) into place as blob
 * `hash`. Takes ownership of the file in every case: it is renamed or
 * unlinked. `*created` (may be NULL) is false when the blob already existed
 * (the file is then dropped and the existing blob touched). Returns 0,
 * P2P_EINVAL (malformed hash), P2P_EIO. */
int p2p_blobstore_commit(p2p_blobstore *bs, const char *hash, const char *tmp_path, bool *created,
                         p2p_error *err) P2P_NODISCARD;

/* Removes blob `hash`. `*size` (may be NULL) receives the bytes freed.
 * Returns 0, P2P_ENOTFOUND when there is no such blob, P2P_EINVAL, P2P_EIO. */
int p2p_blobstore_remove(p2p_blobstore *bs, const char *hash, uint64_t *size,
                         p2p_error *err) P2P_NODISCARD;

/* The number of blobs and their total size in bytes. */
void p2p_blobstore_totals(p2p_blobstore *bs, uint64_t *count, uint64_t *bytes);

/* Number of shard directories: p2p_blobstore_list_old takes 0..this-1. */
#define P2P_BLOBSTORE_SHARDS 256

/* Called by p2p_blobstore_list_old for each old blob; returning non-zero stops
 * the listing. `hash` is borrowed for the call. */
typedef int (*p2p_blobstore_visit_fn)(void *ctx, const char *hash);

/* Calls `visit` for each blob of shard `shard` (0..255, the first byte of the
 * hash) whose mtime is at or before `cutoff_s` (unix seconds). Entries whose
 * name is not a valid hash are ignored. Returns 0, what `visit` returned, or
 * P2P_EIO. */
int p2p_blobstore_list_old(p2p_blobstore *bs, unsigned shard, int64_t cutoff_s,
                           p2p_blobstore_visit_fn visit, void *ctx, p2p_error *err) P2P_NODISCARD;

#endif
