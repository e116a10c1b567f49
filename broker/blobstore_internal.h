/* The backend side of the blob store interface (blobstore.h): what a backend
 * (the disk, GridFS) implements. Not installed; only blobstore.c and the
 * backends include it.
 *
 * blobstore.c validates every hash before it calls a backend. Each entry has
 * the contract of the public function of the same name in blobstore.h. */
#ifndef P2PRPC_BLOBSTORE_INTERNAL_H
#define P2PRPC_BLOBSTORE_INTERNAL_H

#include "blobstore.h"

typedef struct p2p__blob_ops {
    const char *name;
    void (*free)(p2p_blobstore *bs);
    int (*stat)(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err);
    int (*read_open)(p2p_blobstore *bs, const char *hash, p2p_blob_reader **out, uint64_t *size,
                     p2p_error *err);
    int (*touch)(p2p_blobstore *bs, const char *hash, p2p_error *err);
    int (*commit)(p2p_blobstore *bs, const char *hash, const char *tmp_path, bool *created,
                  p2p_error *err);
    int (*remove)(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err);
    void (*totals)(p2p_blobstore *bs, uint64_t *count, uint64_t *bytes);
    int (*list_old)(p2p_blobstore *bs, unsigned shard, int64_t cutoff_s,
                    p2p_blobstore_visit_fn visit, void *ctx, p2p_error *err);
} p2p__blob_ops;

/* Every backend's handle begins with this. */
struct p2p_blobstore {
    const p2p__blob_ops *ops;
    char *tmp_dir; /* owned; uploads being received */
};

/* What a reader does; each backend's reader begins with p2p_blob_reader. */
typedef struct p2p__blob_reader_ops {
    /* Reads up to `n` bytes at `offset` (< size): the count read, 0 at the
     * end, or a negative P2P_E* code. */
    int64_t (*pread)(p2p_blob_reader *r, void *buf, size_t n, uint64_t offset, p2p_error *err);
    /* The file descriptor of the blob, given away (the reader no longer uses
     * it), or -1 when the backend has none. */
    int (*take_fd)(p2p_blob_reader *r);
    void (*free)(p2p_blob_reader *r);
} p2p__blob_reader_ops;

struct p2p_blob_reader {
    const p2p__blob_reader_ops *ops;
    uint64_t size;
};

/* Opens the disk backend (blobstore_disk.c). */
int p2p__blobstore_disk_open(const char *dir, bool fsync, p2p_blobstore **out,
                             p2p_error *err) P2P_NODISCARD;

#endif
