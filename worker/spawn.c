/* The parent side of a child process: start it, talk to it, kill and reap it.
 *
 * The worker is multi-threaded (libcurl, pollers), so a forked copy of it
 * must not run user code: another thread may hold a lock (malloc's, curl's)
 * at the fork. The child is therefore the same program executed again
 * (posix_spawn, which glibc implements with a vfork-like clone: no copy of
 * the address space), with P2P_WORKER_CHILD_FLAG as its first argument.
 * The child is a process group of its own, so that a kill reaches whatever it
 * started; it is always reaped, and it dies with its parent (PR_SET_PDEATHSIG,
 * set by the child itself first thing, see child.c). */
#include "worker_internal.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int make_actions(posix_spawn_file_actions_t *fa, int child_end, const char *cwd) {
    int rc = posix_spawn_file_actions_init(fa);
    if (rc != 0)
        return rc;
    rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    /* The worker's stdout carries its one "worker ... serving" line. */
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(fa, 2, 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(fa, child_end, P2P__CHILD_FD);
    /* Whatever a library opened without O_CLOEXEC stays in the parent. */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(fa, P2P__CHILD_FD + 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_addchdir_np(fa, cwd);
    if (rc != 0)
        posix_spawn_file_actions_destroy(fa);
    return rc;
}

static int make_attr(posix_spawnattr_t *attr) {
    int rc = posix_spawnattr_init(attr);
    if (rc != 0)
        return rc;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    /* The worker blocks SIGTERM and ignores SIGPIPE; user code gets the
     * defaults. Its own process group: kill(-pid) reaches its children. */
    rc = posix_spawnattr_setsigmask(attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(attr, &all);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(attr, 0);
    if (rc == 0)
        rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
    if (rc != 0)
        posix_spawnattr_destroy(attr);
    return rc;
}

/* Starts the program with `child_end` as its control socket. */
static int start(const char *program, const char *cwd, int child_end, pid_t *pid, p2p_error *err) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char ppid[24];
    snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
    char *argv[] = {(char *)program, (char *)P2P_WORKER_CHILD_FLAG, ppid, NULL};
    int rc = make_actions(&fa, child_end, cwd);
    if (rc != 0)
        return p2p_error_errno(err, P2P_EIO, rc, "cannot prepare a child process");
    rc = make_attr(&attr);
    if (rc == 0) {
        rc = posix_spawn(pid, program, &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return p2p_error_errno(err, P2P_EIO, rc, "cannot start %s", program);
    return 0;
}

int p2p__child_spawn(const char *program, const char *cwd, p2p__child *out, p2p_error *err) {
    *out = (p2p__child){.pid = 0, .pidfd = -1, .sock = -1, .pooled = false, .calls = 0};
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot make a control socket");
    /* Well above P2P__CHILD_FD, so that the dup2 in the child always copies
     * (a dup2 onto itself would keep FD_CLOEXEC). */
    int child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, P2P__CHILD_FD + 1);
    close(sv[1]);
    if (child_end < 0) {
        close(sv[0]);
        return p2p_error_errno(err, P2P_EIO, errno, "cannot make a control socket");
    }
    pid_t pid = 0;
    int rc = start(program, cwd, child_end, &pid, err);
    close(child_end);
    if (rc != 0) {
        close(sv[0]);
        return rc;
    }
    out->pid = pid;
    out->sock = sv[0];
    /* The child cannot be reaped by anyone else, so its pid stays valid. */
    out->pidfd = pidfd_open(pid, 0);
    if (out->pidfd < 0) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "pidfd_open");
        p2p__child_cleanup(out);
    }
    return rc;
}

int p2p__child_send_job(p2p__child *c, const char *job, size_t len, p2p_error *err) {
    for (size_t done = 0; done < len;) {
        ssize_t n = send(c->sock, job + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot send the job to the child");
        done += (size_t)n;
    }
    while (send(c->sock, "\n", 1, MSG_NOSIGNAL) != 1) {
        if (errno != EINTR)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot send the job to the child");
    }
    return 0;
}

void p2p__child_kill(p2p__child *c, int sig) {
    if (c->pid <= 0 || c->reaped)
        return;
    /* Until it is reaped the pid (and so the group id) cannot be reused. */
    kill(-c->pid, sig);
    kill(c->pid, sig); /* in case it left its group */
}

bool p2p__child_reap(p2p__child *c, bool wait) {
    if (c->pid <= 0 || c->reaped)
        return true;
    int status = 0;
    pid_t r;
    do {
        r = waitpid(c->pid, &status, wait ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == c->pid) {
        c->reaped = true;
        c->wstatus = status;
    } else if (r < 0) {
        P2P_ERROR("worker: waitpid %ld: %s", (long)c->pid, strerror(errno));
        c->reaped = true; /* nothing more can be done with it */
        c->wstatus = 0;
    }
    return c->reaped;
}

void p2p__child_finish(p2p__child *c, int64_t wait_ms) {
    if (c->sock >= 0) {
        close(c->sock);
        c->sock = -1;
    }
    if (c->pid <= 0 || c->reaped)
        return;
    struct pollfd pfd = {.fd = c->pidfd, .events = POLLIN};
    int64_t deadline = p2p__worker_now_ms() + wait_ms;
    for (int64_t left = wait_ms; left > 0; left = deadline - p2p__worker_now_ms()) {
        if (poll(&pfd, 1, left > 60000 ? 60000 : (int)left) != 0)
            break;
    }
    p2p__child_kill(c, SIGKILL); /* its own children, or itself if it hangs */
    p2p__child_reap(c, true);
}

void p2p__child_cleanup(p2p__child *c) {
    if (c->pid > 0 && !c->reaped) {
        p2p__child_kill(c, SIGKILL);
        p2p__child_reap(c, true);
    }
    if (c->pidfd >= 0)
        close(c->pidfd);
    if (c->sock >= 0)
        close(c->sock);
    c->pidfd = c->sock = -1;
}
