/* The per-call directories, WORK_DIR/w-XXXXXX/call-ID16-XXXXXX/{in,out}.
 *
 * Making three directories for each call and removing them after it costs
 * more than the rest of a no-op call on ext4 (each rmdir frees an inode and
 * journals it; strace showed about 0.3 ms a call). So a call directory left
 * clean (in/ and out/ empty, as after any call without file arguments or
 * outputs) is renamed to free-N and kept, and the next call renames it to
 * its own name: one rename each way instead of three mkdir and three rmdir.
 * A directory with anything left in it is removed as before. The kept ones
 * go with the worker's directory when it stops. */
#include "worker_internal.h"

#include "fsutil.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* Tries of a random name already taken (EEXIST) before giving up. */
#define NAME_TRIES 8

/* Replaces the trailing XXXXXX of `templ` with random letters and digits. */
static void fill_template(char *templ) {
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[6];
    size_t len = strlen(templ);
    if (len < 6 || getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return; /* the rename then fails on the literal name, or takes it */
    for (size_t i = 0; i < 6; i++)
        templ[len - 6 + i] = chars[rnd[i] % (sizeof(chars) - 1)];
}

/* Takes a kept directory and renames it to `templ` (its XXXXXX filled in).
 * False when none is kept or the rename fails (the kept one is removed). */
static bool reuse(p2p_worker *w, char *templ) {
    char *free_dir = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->nfree_dirs > 0)
        free_dir = w->free_dirs[--w->nfree_dirs];
    pthread_mutex_unlock(&w->lock);
    if (free_dir == NULL)
        return false;
    size_t len = strlen(templ);
    int rc = -1;
    for (int i = 0; i < NAME_TRIES && rc != 0; i++) {
        memcpy(templ + len - 6, "XXXXXX", 6);
        fill_template(templ);
        rc = renameat2(AT_FDCWD, free_dir, AT_FDCWD, templ, RENAME_NOREPLACE);
        if (rc != 0 && errno != EEXIST)
            break;
    }
    if (rc != 0) {
        P2P_WARN("worker: cannot rename %s: %s", free_dir, strerror(errno));
        p2p__worker_remove_tree(free_dir);
        memcpy(templ + len - 6, "XXXXXX", 6);
    }
    free(free_dir);
    return rc == 0;
}

static int make_new(char *dir, p2p_error *err) {
    if (mkdtemp(dir) == NULL)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot create %s", dir);
    char *in = p2p_fs_join(dir, "in"), *out = p2p_fs_join(dir, "out");
    int rc = 0;
    if (in == NULL || out == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    else if (mkdir(in, 0700) != 0 || mkdir(out, 0700) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot create %s/in and out", dir);
    free(in);
    free(out);
    if (rc != 0)
        p2p__worker_remove_tree(dir); /* made in part */
    return rc;
}

int p2p__calldir_make(p2p_worker *w, const char *identifier, char **out, p2p_error *err) {
    char name[64];
    snprintf(name, sizeof(name), "call-%.16s-XXXXXX", identifier);
    char *dir = p2p_fs_join(w->work_dir, name);
    if (dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc = reuse(w, dir) ? 0 : make_new(dir, err);
    if (rc != 0) {
        free(dir);
        dir = NULL;
    }
    *out = dir;
    return rc;
}

/* `parent`/`name` exists and is an empty directory. */
static bool empty_dir(const char *parent, const char *name) {
    char *path = p2p_fs_join(parent, name);
    DIR *d = path != NULL ? opendir(path) : NULL;
    free(path);
    if (d == NULL)
        return false;
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(d)) != NULL;)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

void p2p__calldir_retire(p2p_worker *w, char *dir) {
    if (dir == NULL)
        return;
    char *kept = NULL;
    if (!atomic_load(&w->stopping) && empty_dir(dir, "in") && empty_dir(dir, "out")) {
        char name[32];
        pthread_mutex_lock(&w->lock);
        bool room = w->nfree_dirs < P2P__MAX_FREE_DIRS;
        snprintf(name, sizeof(name), "free-%u", w->free_dir_seq++);
        pthread_mutex_unlock(&w->lock);
        kept = room ? p2p_fs_join(w->work_dir, name) : NULL;
    }
    if (kept != NULL && rename(dir, kept) == 0) {
        pthread_mutex_lock(&w->lock);
        bool room = w->nfree_dirs < P2P__MAX_FREE_DIRS;
        if (room)
            w->free_dirs[w->nfree_dirs++] = kept;
        pthread_mutex_unlock(&w->lock);
        if (!room) {
            p2p__worker_remove_tree(kept);
            free(kept);
        }
    } else {
        free(kept);
        p2p__worker_remove_tree(dir);
    }
    free(dir);
}

void p2p__calldirs_cleanup(p2p_worker *w) {
    for (unsigned i = 0; i < w->nfree_dirs; i++)
        free(w->free_dirs[i]);
    w->nfree_dirs = 0;
}
