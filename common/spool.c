#include "spool.h"

#include "fsutil.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct p2p_spool {
    char *tmp_dir;
    uint64_t max_size;
    size_t mem_threshold;
    uint64_t size; /* bytes written, dropped ones included */
    int failed;    /* 0, P2P_ETOOBIG or P2P_EIO: the spool stores nothing more */
    bool finished;
    char *mem; /* in-memory body (NULL once in a file) */
    size_t mem_cap;
    int fd;     /* temp file, or -1 */
    char *path; /* its path; NULL once taken */
    bool taken;
    p2p_hasher *md; /* NULL unless hashing */
    char sha256[65];
};

static int open_file(p2p_spool *sp, p2p_error *err) {
    size_t n = strlen(sp->tmp_dir) + sizeof("/p2p-body-XXXXXX");
    sp->path = malloc(n);
    if (sp->path == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    snprintf(sp->path, n, "%s/p2p-body-XXXXXX", sp->tmp_dir);
    sp->fd = mkostemp(sp->path, O_CLOEXEC);
    if (sp->fd < 0) {
        int rc =
            p2p_error_errno(err, P2P_EIO, errno, "cannot create a temp file in %s", sp->tmp_dir);
        free(sp->path);
        sp->path = NULL;
        return rc;
    }
    return 0;
}

/* Drops what was stored: memory, temp file (closed and unlinked). */
static void drop_body(p2p_spool *sp) {
    free(sp->mem);
    sp->mem = NULL;
    sp->mem_cap = 0;
    if (sp->fd >= 0)
        close(sp->fd);
    sp->fd = -1;
    if (sp->path != NULL && !sp->taken)
        unlink(sp->path);
    free(sp->path);
    sp->path = NULL;
}

int p2p_spool_new(const p2p_spool_options *opts, p2p_spool **out, p2p_error *err) {
    p2p_spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    sp->fd = -1;
    sp->max_size = opts->max_size;
    sp->mem_threshold = opts->mem_threshold;
    int rc = P2P_ENOMEM;
    sp->tmp_dir = strdup(opts->tmp_dir != NULL ? opts->tmp_dir : "/tmp");
    if (sp->tmp_dir == NULL)
        goto fail;
    if (opts->hash) {
        rc = p2p_hasher_new(&sp->md, err);
        if (rc != 0)
            goto fail;
    }
    bool big = opts->expected_size != UINT64_MAX && opts->expected_size > opts->mem_threshold;
    if (opts->to_file || big) {
        rc = open_file(sp, err);
        if (rc != 0)
            goto fail;
    }
    *out = sp;
    return 0;
fail:
    if (rc == P2P_ENOMEM)
        p2p_error_set(err, P2P_ENOMEM, "cannot set up a body spool");
    p2p_spool_free(sp);
    return rc;
}

/* Moves the in-memory bytes into a new temp file. */
static int migrate_to_file(p2p_spool *sp, p2p_error *err) {
    int rc = open_file(sp, err);
    if (rc != 0)
        return rc;
    size_t held = (size_t)sp->size;
    if (held > 0 && p2p_fs_write_all(sp->fd, sp->mem, held) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot write the temp file %s", sp->path);
    free(sp->mem);
    sp->mem = NULL;
    sp->mem_cap = 0;
    return 0;
}

static int append_mem(p2p_spool *sp, const void *data, size_t len, p2p_error *err) {
    size_t held = (size_t)sp->size;
    /* One spare byte keeps room for the NUL that p2p_spool_finish adds. */
    if (held + len + 1 > sp->mem_cap) {
        size_t cap = sp->mem_cap ? sp->mem_cap : 1024;
        while (cap < held + len + 1)
            cap *= 2;
        char *grown = realloc(sp->mem, cap);
        if (grown == NULL)
            return p2p_error_set(err, P2P_ENOMEM, "cannot grow the body buffer");
        sp->mem = grown;
        sp->mem_cap = cap;
    }
    memcpy(sp->mem + held, data, len);
    return 0;
}

static int store(p2p_spool *sp, const void *data, size_t len, p2p_error *err) {
    if (sp->fd < 0 && sp->size + len > sp->mem_threshold) {
        int rc = migrate_to_file(sp, err);
        if (rc != 0)
            return rc;
    }
    if (sp->fd < 0)
        return append_mem(sp, data, len, err);
    if (p2p_fs_write_all(sp->fd, data, len) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot write the temp file %s", sp->path);
    return 0;
}

int p2p_spool_write(p2p_spool *sp, const void *data, size_t len, p2p_error *err) {
    if (sp->finished)
        return p2p_error_set(err, P2P_EINTERNAL, "write to a finished spool");
    if (sp->failed == 0 && sp->max_size > 0 && len > sp->max_size - sp->size) {
        drop_body(sp);
        sp->failed = P2P_ETOOBIG;
    }
    if (sp->failed != 0) {
        sp->size += len;
        return p2p_error_set(err, sp->failed, "body over the limit of %llu bytes",
                             (unsigned long long)sp->max_size);
    }
    int rc = store(sp, data, len, err);
    if (rc != 0) {
        drop_body(sp);
        sp->failed = rc;
        sp->size += len;
        return rc;
    }
    if (sp->md != NULL && (rc = p2p_hasher_update(sp->md, data, len, err)) != 0) {
        drop_body(sp);
        sp->failed = rc;
        return rc;
    }
    sp->size += len;
    return 0;
}

int p2p_spool_finish(p2p_spool *sp, p2p_error *err) {
    if (sp->finished)
        return p2p_error_set(err, P2P_EINTERNAL, "spool finished twice");
    sp->finished = true;
    if (sp->failed == P2P_ETOOBIG)
        return p2p_error_set(err, P2P_ETOOBIG, "body of %llu bytes over the limit of %llu",
                             (unsigned long long)sp->size, (unsigned long long)sp->max_size);
    if (sp->failed != 0)
        return p2p_error_set(err, sp->failed, "the body could not be stored");
    if (sp->fd < 0) {
        /* An empty body still gets a valid, empty string. */
        int rc = append_mem(sp, "", 0, err);
        if (rc != 0)
            return rc;
        sp->mem[sp->size] = '\0';
    }
    if (sp->md != NULL)
        return p2p_hasher_final_hex(sp->md, sp->sha256, err);
    return 0;
}

uint64_t p2p_spool_size(const p2p_spool *sp) {
    return sp->size;
}

const char *p2p_spool_data(const p2p_spool *sp, size_t *len) {
    if (sp->fd >= 0 || sp->failed != 0)
        return NULL;
    if (len != NULL)
        *len = (size_t)sp->size;
    return sp->mem != NULL ? sp->mem : "";
}

int p2p_spool_fd(const p2p_spool *sp) {
    return sp->fd;
}

const char *p2p_spool_path(const p2p_spool *sp) {
    return sp->taken ? NULL : sp->path;
}

const char *p2p_spool_sha256(const p2p_spool *sp) {
    return (sp->finished && sp->failed == 0 && sp->sha256[0] != '\0') ? sp->sha256 : NULL;
}

int p2p_spool_take_file(p2p_spool *sp, char **path, p2p_error *err) {
    if (sp->fd < 0 || sp->taken || sp->path == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND, "the body is not in a temp file");
    char *copy = strdup(sp->path);
    if (copy == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    sp->taken = true;
    *path = copy;
    return 0;
}

void p2p_spool_free(p2p_spool *sp) {
    if (sp == NULL)
        return;
    drop_body(sp);
    p2p_hasher_free(sp->md);
    free(sp->tmp_dir);
    free(sp);
}
