/* The blob store interface: checks every hash, then calls the backend
 * (blobstore_disk.c, blobstore_gridfs.c). */
#include "blobstore.h"

#include "blobstore_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Copy buffer of p2p_blobstore_open_blob for backends without files. */
#define COPY_CHUNK (256u << 10)

static int check_hash(const char *hash, p2p_error *err) {
    if (p2p_hash_hex_valid(hash))
        return 0;
    return p2p_error_set(err, P2P_EINVAL, "a blob hash is 64 lowercase hex characters");
}

int p2p_blobstore_open(const char *dir, bool fsync, p2p_blobstore **out, p2p_error *err) {
    return p2p__blobstore_disk_open(dir, fsync, out, err);
}

const char *p2p_blobstore_backend(const p2p_blobstore *bs) {
    return bs->ops->name;
}

void p2p_blobstore_free(p2p_blobstore *bs) {
    if (bs != NULL)
        bs->ops->free(bs);
}

const char *p2p_blobstore_tmp_dir(const p2p_blobstore *bs) {
    return bs->tmp_dir;
}

int p2p_blobstore_stat(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err) {
    int rc = check_hash(hash, err);
    return rc != 0 ? rc : bs->ops->stat(bs, hash, size, err);
}

int p2p_blobstore_read(p2p_blobstore *bs, const char *hash, p2p_blob_reader **out, uint64_t *size,
                       p2p_error *err) {
    *out = NULL;
    int rc = check_hash(hash, err);
    return rc != 0 ? rc : bs->ops->read_open(bs, hash, out, size, err);
}

int64_t p2p_blob_reader_pread(p2p_blob_reader *r, void *buf, size_t n, uint64_t offset,
                              p2p_error *err) {
    if (offset >= r->size || n == 0)
        return 0;
    if (n > r->size - offset)
        n = (size_t)(r->size - offset);
    return r->ops->pread(r, buf, n, offset, err);
}

int p2p_blob_reader_take_fd(p2p_blob_reader *r) {
    return r->ops->take_fd(r);
}

void p2p_blob_reader_free(p2p_blob_reader *r) {
    if (r != NULL)
        r->ops->free(r);
}

/* Copies the whole blob of `r` into the file `fd`. */
static int copy_out(p2p_blob_reader *r, int fd, p2p_error *err) {
    char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory copying a blob");
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < r->size;) {
        int64_t got = p2p_blob_reader_pread(r, buf, COPY_CHUNK, off, err);
        if (got <= 0) {
            rc = got < 0 ? (int)got : p2p_error_set(err, P2P_ESTORE, "a blob ended early");
            break;
        }
        for (int64_t done = 0; rc == 0 && done < got;) {
            ssize_t w = write(fd, buf + done, (size_t)(got - done));
            if (w < 0 && errno != EINTR)
                rc = p2p_error_errno(err, P2P_EIO, errno, "cannot copy a blob");
            done += w > 0 ? w : 0;
        }
        off += (uint64_t)got;
    }
    free(buf);
    return rc;
}

int p2p_blobstore_open_blob(p2p_blobstore *bs, const char *hash, int *fd, uint64_t *size,
                            p2p_error *err) {
    p2p_blob_reader *r = NULL;
    int rc = p2p_blobstore_read(bs, hash, &r, size, err);
    if (rc != 0)
        return rc;
    int f = p2p_blob_reader_take_fd(r);
    if (f < 0) {
        /* No file to hand out: a private copy that vanishes when closed. */
        f = open(bs->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (f < 0)
            rc = p2p_error_errno(err, P2P_EIO, errno, "cannot create a temp file in %s",
                                 bs->tmp_dir);
        if (rc == 0)
            rc = copy_out(r, f, err);
        if (rc == 0 && lseek(f, 0, SEEK_SET) != 0)
            rc = p2p_error_errno(err, P2P_EIO, errno, "cannot rewind a blob copy");
        if (rc != 0 && f >= 0)
            close(f);
    }
    p2p_blob_reader_free(r);
    if (rc == 0)
        *fd = f;
    return rc;
}

int p2p_blobstore_touch(p2p_blobstore *bs, const char *hash, p2p_error *err) {
    int rc = check_hash(hash, err);
    return rc != 0 ? rc : bs->ops->touch(bs, hash, err);
}

int p2p_blobstore_commit(p2p_blobstore *bs, const char *hash, const char *tmp_path, bool *created,
                         p2p_error *err) {
    int rc = check_hash(hash, err);
    if (rc != 0) {
        unlink(tmp_path);
        return rc;
    }
    bool ignored;
    return bs->ops->commit(bs, hash, tmp_path, created != NULL ? created : &ignored, err);
}

int p2p_blobstore_remove(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err) {
    int rc = check_hash(hash, err);
    return rc != 0 ? rc : bs->ops->remove(bs, hash, size, err);
}

void p2p_blobstore_totals(p2p_blobstore *bs, uint64_t *count, uint64_t *bytes) {
    *count = *bytes = 0;
    bs->ops->totals(bs, count, bytes);
}

int p2p_blobstore_list_old(p2p_blobstore *bs, unsigned shard, int64_t cutoff_s,
                           p2p_blobstore_visit_fn visit, void *ctx, p2p_error *err) {
    if (shard >= P2P_BLOBSTORE_SHARDS)
        return p2p_error_set(err, P2P_EINVAL, "shard %u out of range", shard);
    return bs->ops->list_old(bs, shard, cutoff_s, visit, ctx, err);
}
