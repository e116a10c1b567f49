/* The disk backend of the blob store: one file per blob under a directory
 * (the layout is in blobstore.h). */
#include "blobstore_internal.h"

#include "fsutil.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "ab/" + 64 hex + NUL */
#define REL_LEN (3 + P2P_HASH_HEX_LEN + 1)

typedef struct disk_store {
    p2p_blobstore base; /* first: a p2p_blobstore * points here */
    char *dir;
    int root_fd; /* the root directory, for the *at calls */
    bool fsync;
    pthread_mutex_t lock; /* guards the totals */
    uint64_t count, bytes;
} disk_store;

static disk_store *disk(p2p_blobstore *bs) {
    return (disk_store *)bs;
}

/* The path of blob `hash` relative to the root: only from a valid hash. */
static int rel_name(const char *hash, char out[REL_LEN], p2p_error *err) {
    if (!p2p_hash_hex_valid(hash))
        return p2p_error_set(err, P2P_EINVAL, "a blob hash is 64 lowercase hex characters");
    snprintf(out, REL_LEN, "%.2s/%s", hash, hash);
    return 0;
}

static void totals_add(disk_store *bs, int64_t count, int64_t bytes) {
    pthread_mutex_lock(&bs->lock);
    bs->count += (uint64_t)count;
    bs->bytes += (uint64_t)bytes;
    pthread_mutex_unlock(&bs->lock);
}

/* Removes every file left in tmp/: uploads a previous run never finished. */
static void clean_tmp(disk_store *bs) {
    DIR *d = opendir(bs->base.tmp_dir);
    if (d == NULL)
        return;
    size_t removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed > 0)
        P2P_INFO("blobs: removed %zu unfinished upload(s) from %s", removed, bs->base.tmp_dir);
}

/* Adds the blobs of one shard directory to the totals. */
static void scan_shard(disk_store *bs, const char *shard) {
    int fd = openat(bs->root_fd, shard, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        if (!p2p_hash_hex_valid(e->d_name) || strncmp(e->d_name, shard, 2) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        totals_add(bs, 1, st.st_size);
    }
    closedir(d);
}

static int open_dirs(disk_store *bs, const char *dir, p2p_error *err) {
    bs->dir = strdup(dir);
    bs->base.tmp_dir = p2p_fs_join(dir, "tmp");
    if (bs->dir == NULL || bs->base.tmp_dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory opening the blob store");
    int rc = p2p_fs_mkdirs(bs->base.tmp_dir, 0700, err);
    if (rc != 0)
        return rc;
    bs->root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bs->root_fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open the blob directory %s", dir);
    return 0;
}

static const p2p__blob_ops disk_ops;
static void disk_free(p2p_blobstore *base);

int p2p__blobstore_disk_open(const char *dir, bool fsync, p2p_blobstore **out, p2p_error *err) {
    if (dir == NULL || dir[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "the blob store needs a directory");
    disk_store *bs = calloc(1, sizeof(*bs));
    if (bs == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory opening the blob store");
    bs->base.ops = &disk_ops;
    bs->root_fd = -1;
    bs->fsync = fsync;
    pthread_mutex_init(&bs->lock, NULL);
    int rc = open_dirs(bs, dir, err);
    if (rc != 0) {
        disk_free(&bs->base);
        return rc;
    }
    clean_tmp(bs);
    for (unsigned i = 0; i < P2P_BLOBSTORE_SHARDS; i++) {
        char shard[3];
        snprintf(shard, sizeof(shard), "%02x", i);
        scan_shard(bs, shard);
    }
    *out = &bs->base;
    return 0;
}

static void disk_free(p2p_blobstore *base) {
    disk_store *bs = disk(base);
    if (bs->root_fd >= 0)
        close(bs->root_fd);
    pthread_mutex_destroy(&bs->lock);
    free(bs->dir);
    free(bs->base.tmp_dir);
    free(bs);
}

static int stat_rel(disk_store *bs, const char *rel, const char *hash, struct stat *st,
                    p2p_error *err) {
    if (fstatat(bs->root_fd, rel, st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return p2p_error_set(err, P2P_ENOTFOUND, "no blob %s", hash);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot stat blob %s", hash);
    }
    if (!S_ISREG(st->st_mode))
        return p2p_error_set(err, P2P_EIO, "blob %s is not a regular file", hash);
    return 0;
}

static int disk_stat(p2p_blobstore *base, const char *hash, uint64_t *size, p2p_error *err) {
    disk_store *bs = disk(base);
    char rel[REL_LEN];
    struct stat st;
    int rc = rel_name(hash, rel, err);
    if (rc == 0)
        rc = stat_rel(bs, rel, hash, &st, err);
    if (rc == 0)
        *size = (uint64_t)st.st_size;
    return rc;
}

static int open_fd(disk_store *bs, const char *hash, int *fd, uint64_t *size, p2p_error *err) {
    char rel[REL_LEN];
    int rc = rel_name(hash, rel, err);
    if (rc != 0)
        return rc;
    int f = openat(bs->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        if (errno == ENOENT)
            return p2p_error_set(err, P2P_ENOTFOUND, "no blob %s", hash);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open blob %s", hash);
    }
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return p2p_error_set(err, P2P_EIO, "blob %s is not a readable regular file", hash);
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int disk_touch(p2p_blobstore *base, const char *hash, p2p_error *err) {
    disk_store *bs = disk(base);
    char rel[REL_LEN];
    int rc = rel_name(hash, rel, err);
    if (rc != 0)
        return rc;
    if (utimensat(bs->root_fd, rel, NULL, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return p2p_error_set(err, P2P_ENOTFOUND, "no blob %s", hash);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot touch blob %s", hash);
    }
    return 0;
}

static int fsync_at(int dir_fd, const char *name, const char *what, p2p_error *err) {
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open %s to sync it", what);
    int rc = fsync(fd) == 0 ? 0 : p2p_error_errno(err, P2P_EIO, errno, "cannot sync %s", what);
    close(fd);
    return rc;
}

/* Creates the shard directory of `rel` when missing; in fsync mode the root
 * is synced after a creation, so the new directory entry is durable. */
static int ensure_shard(disk_store *bs, const char *rel, p2p_error *err) {
    char shard[3] = {rel[0], rel[1], '\0'};
    if (mkdirat(bs->root_fd, shard, 0700) != 0) {
        if (errno == EEXIST)
            return 0;
        return p2p_error_errno(err, P2P_EIO, errno, "cannot create the blob shard %s/%s", bs->dir,
                               shard);
    }
    return bs->fsync ? fsync_at(bs->root_fd, ".", "the blob directory", err) : 0;
}

/* Renames without ever replacing: renameat2(RENAME_NOREPLACE), or link +
 * unlink on filesystems without it. Fails with EEXIST when the blob exists. */
static int place(disk_store *bs, const char *tmp_path, const char *rel) {
    if (renameat2(AT_FDCWD, tmp_path, bs->root_fd, rel, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (linkat(AT_FDCWD, tmp_path, bs->root_fd, rel, 0) != 0)
        return -1;
    unlink(tmp_path);
    return 0;
}

/* Size of the temp file, synced first in fsync mode. */
static int prepare_tmp(disk_store *bs, const char *tmp_path, uint64_t *size, p2p_error *err) {
    int fd = open(tmp_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open the upload %s", tmp_path);
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = p2p_error_set(err, P2P_EIO, "the upload %s is not a regular file", tmp_path);
    else if (bs->fsync && fsync(fd) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot sync the upload %s", tmp_path);
    close(fd);
    *size = rc == 0 ? (uint64_t)st.st_size : 0;
    return rc;
}

static int disk_commit(p2p_blobstore *base, const char *hash, const char *tmp_path, bool *created,
                       p2p_error *err) {
    disk_store *bs = disk(base);
    char rel[REL_LEN];
    uint64_t size = 0;
    int rc = rel_name(hash, rel, err);
    if (rc == 0)
        rc = prepare_tmp(bs, tmp_path, &size, err);
    if (rc == 0)
        rc = ensure_shard(bs, rel, err);
    if (rc != 0) {
        unlink(tmp_path);
        return rc;
    }
    if (place(bs, tmp_path, rel) != 0) {
        int e = errno;
        unlink(tmp_path);
        if (e != EEXIST)
            return p2p_error_errno(err, P2P_EIO, e, "cannot move the upload into blob %s", hash);
        if (created != NULL)
            *created = false;
        if (disk_touch(base, hash, NULL) != 0)
            P2P_DEBUG("blobs: cannot touch %s", hash);
        return 0;
    }
    totals_add(bs, 1, (int64_t)size);
    if (created != NULL)
        *created = true;
    char shard[3] = {rel[0], rel[1], '\0'};
    return bs->fsync ? fsync_at(bs->root_fd, shard, "the blob shard", err) : 0;
}

static int disk_remove(p2p_blobstore *base, const char *hash, uint64_t *size, p2p_error *err) {
    disk_store *bs = disk(base);
    char rel[REL_LEN];
    struct stat st;
    int rc = rel_name(hash, rel, err);
    if (rc == 0)
        rc = stat_rel(bs, rel, hash, &st, err);
    if (rc != 0)
        return rc;
    if (unlinkat(bs->root_fd, rel, 0) != 0) {
        if (errno == ENOENT)
            return p2p_error_set(err, P2P_ENOTFOUND, "no blob %s", hash);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot remove blob %s", hash);
    }
    totals_add(bs, -1, -(int64_t)st.st_size);
    if (size != NULL)
        *size = (uint64_t)st.st_size;
    char shard[3] = {rel[0], rel[1], '\0'};
    return bs->fsync ? fsync_at(bs->root_fd, shard, "the blob shard", err) : 0;
}

static void disk_totals(p2p_blobstore *base, uint64_t *count, uint64_t *bytes) {
    disk_store *bs = disk(base);
    pthread_mutex_lock(&bs->lock);
    *count = bs->count;
    *bytes = bs->bytes;
    pthread_mutex_unlock(&bs->lock);
}

static int disk_list_old(p2p_blobstore *base, unsigned shard, int64_t cutoff_s,
                         p2p_blobstore_visit_fn visit, void *ctx, p2p_error *err) {
    disk_store *bs = disk(base);
    char name[3];
    snprintf(name, sizeof(name), "%02x", shard);
    int fd = openat(bs->root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? 0
                   : p2p_error_errno(err, P2P_EIO, errno, "cannot list blob shard %s", name);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot list blob shard %s", name);
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        struct stat st;
        if (!p2p_hash_hex_valid(e->d_name) || strncmp(e->d_name, name, 2) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_mtime > cutoff_s)
            continue;
        rc = visit(ctx, e->d_name);
    }
    closedir(d);
    return rc;
}

/* --- readers: the blob's file --- */

typedef struct disk_reader {
    p2p_blob_reader base;
    int fd;
} disk_reader;

static int64_t disk_pread(p2p_blob_reader *base, void *buf, size_t n, uint64_t offset,
                          p2p_error *err) {
    disk_reader *r = (disk_reader *)base;
    ssize_t got = pread(r->fd, buf, n, (off_t)offset);
    if (got < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot read a blob");
    return got;
}

static int disk_take_fd(p2p_blob_reader *base) {
    disk_reader *r = (disk_reader *)base;
    int fd = r->fd;
    r->fd = -1;
    return fd;
}

static void disk_reader_free(p2p_blob_reader *base) {
    disk_reader *r = (disk_reader *)base;
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

static const p2p__blob_reader_ops disk_reader_ops = {
    .pread = disk_pread,
    .take_fd = disk_take_fd,
    .free = disk_reader_free,
};

static int disk_read_open(p2p_blobstore *base, const char *hash, p2p_blob_reader **out,
                          uint64_t *size, p2p_error *err) {
    disk_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory opening a blob");
    int rc = open_fd(disk(base), hash, &r->fd, size, err);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->base.ops = &disk_reader_ops;
    r->base.size = *size;
    *out = &r->base;
    return 0;
}

static const p2p__blob_ops disk_ops = {
    .name = "disk",
    .free = disk_free,
    .stat = disk_stat,
    .read_open = disk_read_open,
    .touch = disk_touch,
    .commit = disk_commit,
    .remove = disk_remove,
    .totals = disk_totals,
    .list_old = disk_list_old,
};
