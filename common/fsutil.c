#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_one(const char *path, mode_t mode, p2p_error *err) {
    if (mkdir(path, mode) == 0)
        return 0;
    int saved = errno;
    struct stat st;
    if (saved == EEXIST && stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return p2p_error_set(err, P2P_EIO, "%s exists and is not a directory", path);
    }
    return p2p_error_errno(err, P2P_EIO, saved, "cannot create directory %s", path);
}

int p2p_fs_mkdirs(const char *path, mode_t mode, p2p_error *err) {
    size_t len = strlen(path);
    if (len == 0 || len >= PATH_MAX)
        return p2p_error_set(err, P2P_EINVAL, "bad directory path (length %zu)", len);
    char buf[PATH_MAX];
    memcpy(buf, path, len + 1);
    /* Create each prefix that ends before a '/', then the whole path. */
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = '\0';
        int rc = mkdir_one(buf, mode, err);
        buf[i] = '/';
        if (rc != 0)
            return rc;
    }
    return mkdir_one(buf, mode, err);
}

static int fsync_parent(const char *path, p2p_error *err) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open directory %s", dir);
    int rc = fsync(fd) == 0 ? 0 : p2p_error_errno(err, P2P_EIO, errno, "fsync %s", dir);
    close(fd);
    return rc;
}

int p2p_fs_write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int p2p_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                        p2p_error *err) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return p2p_error_set(err, P2P_EINVAL, "path too long: %s", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot create temporary file for %s", path);
    int rc = 0;
    if (fchmod(fd, mode) != 0 || p2p_fs_write_all(fd, data, len) != 0 || fsync(fd) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot write %s", tmp);
    if (close(fd) != 0 && rc == 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot close %s", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot rename %s to %s", tmp, path);
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    return fsync_parent(path, err);
}

/* Reads `fd` to EOF into a buffer grown as needed. It reads at most
 * max_len + 1 bytes: the extra byte tells "too large" from "exactly max_len".
 * Files whose size stat cannot tell, such as those of /proc, work the same. */
static int read_to_end(int fd, const char *path, size_t max_len, size_t hint, char **out,
                       size_t *out_len, p2p_error *err) {
    size_t limit = max_len + 1;
    size_t cap = hint + 1 < limit ? hint + 1 : limit; /* data bytes; one more for the NUL */
    if (cap < 4096 && limit > cap)
        cap = 4096 < limit ? 4096 : limit;
    size_t used = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    while (buf != NULL) {
        if (used == cap) {
            if (cap == limit)
                break;
            cap = cap * 2 < limit ? cap * 2 : limit;
            char *grown = realloc(buf, cap + 1);
            if (grown == NULL) {
                rc = p2p_error_set(err, P2P_ENOMEM, "cannot read %s: out of memory", path);
                break;
            }
            buf = grown;
        }
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = p2p_error_errno(err, P2P_EIO, errno, "cannot read %s", path);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    if (buf == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot read %s: out of memory", path);
    if (rc == 0 && used > max_len)
        rc = p2p_error_set(err, P2P_ETOOBIG, "%s is larger than %zu bytes", path, max_len);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[used] = '\0';
    *out = buf;
    *out_len = used;
    return 0;
}

int p2p_fs_read_file(const char *path, size_t max_len, char **out, size_t *out_len,
                     p2p_error *err) {
    if (max_len > SIZE_MAX / 4)
        return p2p_error_set(err, P2P_EINVAL, "read limit too large");
    int fd = -1;
    struct stat st;
    int rc = p2p_fs_open_regular(path, &fd, &st, err);
    if (rc != 0)
        return rc;
    if ((uint64_t)st.st_size > max_len)
        rc = p2p_error_set(err, P2P_ETOOBIG, "%s is larger than %zu bytes", path, max_len);
    else
        rc = read_to_end(fd, path, max_len, (size_t)st.st_size, out, out_len, err);
    close(fd);
    return rc;
}

int p2p_fs_open_regular(const char *path, int *fd_out, struct stat *st, p2p_error *err) {
    if (path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "no file path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return p2p_error_errno(err, errno == ENOENT ? P2P_ENOTFOUND : P2P_EIO, errno,
                               "cannot open %s", path);
    struct stat local;
    struct stat *sp = st != NULL ? st : &local;
    int rc = 0;
    if (fstat(fd, sp) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot stat %s", path);
    else if (!S_ISREG(sp->st_mode))
        rc = p2p_error_set(err, P2P_EINVAL, "%s is not a regular file", path);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

char *p2p_fs_join(const char *dir, const char *name) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    size_t sep = dl == 0 || dir[dl - 1] == '/' ? 0 : 1; /* "" and "/" need none */
    size_t nl = strlen(name);
    char *out = malloc(dl + sep + nl + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, dir, dl);
    out[dl] = '/';
    memcpy(out + dl + sep, name, nl + 1);
    return out;
}
