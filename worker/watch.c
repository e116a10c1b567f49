/* The runner's loop over a running child. One poll() waits for whatever comes
 * first: a message from the child, its exit (pidfd), the worker aborting
 * (eventfd), or the next deadline (progress push, heartbeat, SIGKILL). No
 * busy polling: the timeout is always computed from those deadlines. */
#include "worker_internal.h"

#include "log.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* After a failed heartbeat, the next one comes this much sooner. */
#define RETRY_PUSH_MS 2000

typedef struct watch {
    p2p__run *r;
    p2p__child *child;
    p2p__ending *out;
    char *buf; /* an incomplete line from the child */
    size_t len, cap;
    bool sock_open, exited;
    int64_t next_beat_ms; /* when a heartbeat is due */
    int64_t kill_at_ms;   /* when SIGKILL is due; INT64_MAX = not */
    bool killed;
} watch;

static void stop_child(watch *x, const char *why) {
    int64_t grace = x->r->w->opts.grace_ms;
    P2P_INFO("worker: call %s: %s; SIGTERM, SIGKILL in %lld ms", x->r->claim.identifier, why,
             (long long)grace);
    p2p__child_kill(x->child, grace > 0 ? SIGTERM : SIGKILL);
    x->killed = grace <= 0;
    x->kill_at_ms = p2p__worker_now_ms() + grace;
}

static void on_message(watch *x, json_t *msg) {
    const json_t *p = json_object_get(msg, "progress");
    if (p != NULL) {
        json_int_t i = json_integer_value(json_array_get(p, 0));
        json_int_t n = json_integer_value(json_array_get(p, 1));
        if (n > 0 && i >= 0 && i <= n)
            p2p__throttle_update(&x->out->progress, 100.0 * (double)i / (double)n);
        json_decref(msg);
        return;
    }
    if (x->out->result == NULL) {
        x->out->result = msg; /* the first result counts */
        return;
    }
    json_decref(msg);
}

/* Splits what arrived into lines; each is one JSON message. */
static void parse_lines(watch *x) {
    size_t start = 0;
    for (char *nl; (nl = memchr(x->buf + start, '\n', x->len - start)) != NULL;) {
        size_t end = (size_t)(nl - x->buf);
        json_t *msg = json_loadb(x->buf + start, end - start, 0, NULL);
        if (json_is_object(msg))
            on_message(x, msg);
        else {
            P2P_WARN("worker: call %s: malformed message from the child", x->r->claim.identifier);
            json_decref(msg);
        }
        start = end + 1;
    }
    memmove(x->buf, x->buf + start, x->len - start);
    x->len -= start;
}

static bool grow(watch *x) {
    if (x->len < x->cap)
        return true;
    size_t cap = x->cap ? x->cap * 2 : 64 * 1024;
    if (cap > P2P__CHILD_MAX_MESSAGE + 1)
        return false;
    char *grown = realloc(x->buf, cap);
    if (grown == NULL)
        return false;
    x->buf = grown;
    x->cap = cap;
    return true;
}

/* Reads what the child sent, without blocking. */
static void read_child(watch *x) {
    while (x->sock_open) {
        if (!grow(x)) {
            P2P_ERROR("worker: call %s: the child sent a message over %u bytes",
                      x->r->claim.identifier, P2P__CHILD_MAX_MESSAGE);
            p2p__child_kill(x->child, SIGKILL);
            x->killed = true;
            x->sock_open = false;
            return;
        }
        ssize_t n = recv(x->child->sock, x->buf + x->len, x->cap - x->len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            x->sock_open = false; /* EOF, or a broken socket: nothing more will come */
            return;
        }
        x->len += (size_t)n;
        parse_lines(x);
    }
}

static void on_push_reply(watch *x, int rc, const p2p__push_reply *reply, const p2p_error *err,
                          int64_t now) {
    if (rc == P2P_ECONFLICT || rc == P2P_ENOTFOUND) {
        x->out->lost = true;
        P2P_WARN("worker: call %s: %s", x->r->claim.identifier, err->msg);
        stop_child(x, "the lease is lost");
        return;
    }
    if (rc != 0) {
        P2P_WARN("worker: call %s: cannot renew the lease: %s", x->r->claim.identifier, err->msg);
        x->next_beat_ms = now + (x->r->renew_ms < RETRY_PUSH_MS ? x->r->renew_ms : RETRY_PUSH_MS);
        return;
    }
    x->next_beat_ms = now + x->r->renew_ms;
    if (reply->terminate_requested && !x->out->terminate && x->out->result == NULL) {
        x->out->terminate = true;
        stop_child(x, "termination requested");
    }
}

/* Progress when due (it renews the lease too), else a heartbeat when due. */
static void maybe_push(watch *x) {
    if (x->out->lost || x->out->aborted)
        return;
    int64_t now = p2p__worker_now_ms();
    json_t *value;
    const char *member;
    bool progress = p2p__throttle_due(&x->out->progress, now);
    if (progress) {
        member = "progress";
        value = json_real(p2p__throttle_take(&x->out->progress, now));
    } else if (now >= x->next_beat_ms) {
        member = "heartbeat";
        value = json_true();
    } else {
        return;
    }
    p2p__push_reply reply = {0};
    p2p_error err = {0};
    p2p__run *r = x->r;
    int rc = p2p__wire_push(r->w->http, r->b->url, r->function, r->claim.identifier, r->claim.token,
                            member, value, &reply, &err);
    if (rc != 0 && progress && !x->out->progress.pending)
        p2p__throttle_update(&x->out->progress, x->out->progress.value); /* again later */
    on_push_reply(x, rc, &reply, &err, p2p__worker_now_ms());
}

static int64_t next_deadline(const watch *x) {
    int64_t d = x->killed ? INT64_MAX : x->kill_at_ms;
    if (!x->out->lost && !x->out->aborted) {
        int64_t p = p2p__throttle_deadline(&x->out->progress);
        d = p < d ? p : d;
        d = x->next_beat_ms < d ? x->next_beat_ms : d;
    }
    return d;
}

static void on_abort(watch *x) {
    x->out->aborted = true;
    P2P_WARN("worker: call %s: the shutdown grace is over; killing it", x->r->claim.identifier);
    p2p__child_kill(x->child, SIGKILL);
    x->killed = true;
}

static void on_child_exit(watch *x) {
    read_child(x); /* what it wrote before exiting */
    /* Its own children, if any, go with it: none outlives the call. */
    p2p__child_kill(x->child, SIGKILL);
    p2p__child_reap(x->child, true);
    x->out->wstatus = x->child->wstatus;
    x->exited = true;
}

static void wait_once(watch *x) {
    struct pollfd fds[3];
    nfds_t n = 0;
    fds[n++] = (struct pollfd){.fd = x->child->pidfd, .events = POLLIN};
    int sock_at = -1, abort_at = -1;
    if (x->sock_open) {
        sock_at = (int)n;
        fds[n++] = (struct pollfd){.fd = x->child->sock, .events = POLLIN};
    }
    if (!x->out->aborted) {
        abort_at = (int)n;
        fds[n++] = (struct pollfd){.fd = x->r->w->abort_fd, .events = POLLIN};
    }
    int64_t wait = next_deadline(x) - p2p__worker_now_ms();
    int timeout = wait <= 0 ? 0 : (wait > 60000 ? 60000 : (int)wait);
    if (poll(fds, n, timeout) < 0)
        return; /* EINTR: the loop computes again */
    if (sock_at >= 0 && fds[sock_at].revents != 0)
        read_child(x);
    if (abort_at >= 0 && fds[abort_at].revents != 0)
        on_abort(x);
    if (fds[0].revents != 0)
        on_child_exit(x);
}

void p2p__watch(p2p__run *r, p2p__child *child, p2p__ending *out) {
    memset(out, 0, sizeof(*out));
    p2p__throttle_init(&out->progress, r->w->opts.progress_interval_ms);
    watch x = {.r = r,
               .child = child,
               .out = out,
               .sock_open = true,
               .next_beat_ms = p2p__worker_now_ms() + r->renew_ms,
               .kill_at_ms = INT64_MAX};
    if (atomic_load(&r->w->aborting))
        on_abort(&x);
    /* Once the result is in, the call can be reported: the child's exit is
     * awaited afterwards (p2p__child_finish), off the call's latency. */
    while (!x.exited && out->result == NULL) {
        wait_once(&x);
        if (!x.killed && p2p__worker_now_ms() >= x.kill_at_ms) {
            P2P_WARN("worker: call %s: still running after the grace; SIGKILL",
                     r->claim.identifier);
            p2p__child_kill(child, SIGKILL);
            x.killed = true;
        }
        if (!x.exited && out->result == NULL)
            maybe_push(&x);
    }
    out->exited = x.exited;
    /* A child whose call ended cleanly waits for its next job (child.c):
     * nothing left unread, not killed, and its last word a result. */
    const json_t *res = out->result;
    out->reusable =
        res != NULL && !x.exited && !x.killed && x.sock_open && x.len == 0 &&
        x.kill_at_ms == INT64_MAX && !out->lost && !out->terminate && !out->aborted &&
        (json_object_get(res, "outputs") != NULL || json_object_get(res, "failed") != NULL);
    free(x.buf);
}
