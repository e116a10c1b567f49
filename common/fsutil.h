/* Small filesystem helpers that several roles need: recursive mkdir, atomic
 * whole-file replacement, and bounded whole-file reads. */
#ifndef P2PRPC_FSUTIL_H
#define P2PRPC_FSUTIL_H

#include "error.h"

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Creates `path` and every missing parent with `mode` (like `mkdir -p`).
 * An existing directory is success; an existing non-directory is P2P_EIO. */
int p2p_fs_mkdirs(const char *path, mode_t mode, p2p_error *err) P2P_NODISCARD;

/* Replaces the file at `path` with `len` bytes of `data`, atomically: readers
 * see the old content or the new one, never a mix. The data is fsynced, then
 * renamed over `path`, then the directory is fsynced, so the new content
 * survives power loss once this returns 0. The file gets `mode`. */
int p2p_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                        p2p_error *err) P2P_NODISCARD;

/* Reads the whole file at `path` into a new NUL-terminated buffer. Files over
 * `max_len` bytes give P2P_ETOOBIG, a missing file P2P_ENOTFOUND, anything but a
 * regular file P2P_EINVAL. Files that stat as empty (/proc) are read to EOF.
 * On success `*out` is owned by the caller (free()), `*out_len` excludes the NUL. */
int p2p_fs_read_file(const char *path, size_t max_len, char **out, size_t *out_len,
                     p2p_error *err) P2P_NODISCARD;

/* Opens `path` read-only and checks that it is a regular file; a FIFO is
 * refused without blocking in open(). On success `*fd_out` is the caller's to
 * close and `*st` (may be NULL) holds its fstat. Returns 0, P2P_ENOTFOUND,
 * P2P_EINVAL (not a regular file, or NULL path) or P2P_EIO. */
int p2p_fs_open_regular(const char *path, int *fd_out, struct stat *st,
                        p2p_error *err) P2P_NODISCARD;

/* Writes all `len` bytes of `data` to `fd`, retrying short writes and EINTR.
 * Returns 0, or -1 with errno set. */
int p2p_fs_write_all(int fd, const void *data, size_t len) P2P_NODISCARD;

/* Joins `dir` and `name` with one '/' into a new string the caller frees.
 * Returns NULL when out of memory. */
char *p2p_fs_join(const char *dir, const char *name);

#endif
