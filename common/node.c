#include "node.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

static char *dup_or_null(const char *s) {
    return s == NULL ? NULL : strdup(s);
}

static const char *home_dir(void) {
    const char *home = getenv("HOME");
    if (home != NULL && home[0] == '/')
        return home;
    struct passwd *pw = getpwuid(getuid());
    return pw != NULL && pw->pw_dir != NULL && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
}

int p2p_node_data_dir(char **out, p2p_error *err) {
    const char *explicit_home = getenv("P2PRPC_HOME");
    if (explicit_home != NULL && explicit_home[0] != '\0') {
        if (explicit_home[0] != '/')
            return p2p_error_set(err, P2P_EINVAL, "P2PRPC_HOME must be an absolute path, got %s",
                                 explicit_home);
        *out = dup_or_null(explicit_home);
        return *out ? 0 : p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    const char *xdg = getenv("XDG_DATA_HOME");
    char *base = NULL;
    if (xdg != NULL && xdg[0] == '/') {
        base = dup_or_null(xdg);
    } else {
        const char *home = home_dir();
        if (home == NULL)
            return p2p_error_set(err, P2P_ENOTFOUND, "no data directory: set P2PRPC_HOME or HOME");
        base = p2p_fs_join(home, ".local/share");
    }
    if (base == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    *out = p2p_fs_join(base, "p2prpc");
    free(base);
    return *out ? 0 : p2p_error_set(err, P2P_ENOMEM, NULL);
}

/* Parses a node_id file's content: one UUID, optionally followed by a newline. */
static int parse_id(const char *path, const char *text, size_t len, char *out, p2p_error *err) {
    uuid_t uu;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    char canon[P2P_NODE_ID_LEN + 1];
    if (len != P2P_NODE_ID_LEN)
        return p2p_error_set(err, P2P_EINVAL, "%s does not hold a UUID", path);
    memcpy(canon, text, len);
    canon[len] = '\0';
    if (uuid_parse(canon, uu) != 0)
        return p2p_error_set(err, P2P_EINVAL, "%s does not hold a UUID", path);
    uuid_unparse_lower(uu, out);
    return 0;
}

static int read_id(const char *path, char *out, p2p_error *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = p2p_fs_read_file(path, 256, &text, &len, err);
    if (rc == 0)
        rc = parse_id(path, text, len, out, err);
    free(text);
    return rc;
}

/* Writes a fresh UUID to a temporary file, then link(2)s it to `path`: link
 * fails with EEXIST when another process won the race, and then its id is read. */
static int create_id(const char *path, p2p_error *err) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.new.XXXXXX", path) >= (int)sizeof(tmp))
        return p2p_error_set(err, P2P_EINVAL, "path too long: %s", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot create %s", tmp);
    uuid_t uu;
    char text[P2P_NODE_ID_LEN + 2];
    uuid_generate(uu);
    uuid_unparse_lower(uu, text);
    text[P2P_NODE_ID_LEN] = '\n';
    int rc = 0;
    if (fchmod(fd, 0644) != 0 || write(fd, text, P2P_NODE_ID_LEN + 1) != P2P_NODE_ID_LEN + 1 ||
        fsync(fd) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot write %s", tmp);
    close(fd);
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot create %s", path);
    unlink(tmp);
    return rc;
}

int p2p_node_id_load(const char *data_dir, char out[P2P_NODE_ID_LEN + 1], p2p_error *err) {
    int rc = p2p_fs_mkdirs(data_dir, 0700, err);
    if (rc != 0)
        return rc;
    char *path = p2p_fs_join(data_dir, "node_id");
    if (path == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    rc = read_id(path, out, err);
    if (rc == P2P_ENOTFOUND) {
        rc = create_id(path, err);
        if (rc == 0)
            rc = read_id(path, out, err);
    }
    free(path);
    return rc;
}
