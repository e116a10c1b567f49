/* Lingering close of the HTTP server (see http_internal.h): an answer
 * written straight to the socket, then a bounded read-and-discard of what
 * the client still sends, in one epoll thread for every such socket. */
#include "http_internal.h"

#include "log.h"
#include "longpoll.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* epoll data of the eventfd; sockets carry their slot index. */
#define KICK_TAG UINT64_MAX
#define READ_BUF_SIZE (64 * 1024)
/* Read at most this much per socket and wake-up, so that one fast client
 * cannot starve the others (epoll is level-triggered: the rest comes next). */
#define READ_BUDGET (1024 * 1024)

typedef struct lsock {
    int fd;           /* the duplicate; -1 when the slot is free */
    int64_t until_ms; /* the total deadline */
    int64_t idle_ms;  /* the deadline for more data */
    uint64_t bytes;   /* read and dropped so far */
} lsock;

struct p2p__http_linger {
    p2p__http_linger_limits lim;
    pthread_mutex_t lock;
    lsock *socks; /* lim.max_sockets slots */
    size_t count;
    int epfd, kickfd;
    bool running, thread_started;
    pthread_t thread;
    char *buf; /* the thread's read buffer */
};

/* ---- the answer ---- */

/* One sendmsg of the head and the body: never blocks, never raises SIGPIPE. */
static bool send_answer(int fd, unsigned status, const char *body) {
    size_t body_len = strlen(body);
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n",
                     status, MHD_get_reason_phrase_for(status), body_len);
    if (n < 0 || (size_t)n >= sizeof(head))
        return false;
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, body_len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w;
    do
        w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    /* The send buffer of a connection that is only receiving is empty, so a
     * short write does not happen in practice; if it did, the rest could not
     * follow (libmicrohttpd shuts the socket down as soon as we return). */
    return w >= 0 && (size_t)w == (size_t)n + body_len;
}

static void kick(p2p__http_linger *lg) {
    uint64_t one = 1;
    ssize_t n = write(lg->kickfd, &one, sizeof(one));
    (void)n; /* a full counter (EAGAIN) already means "wake up" */
}

/* Takes a free slot for a duplicate of `fd` (lg->lock held). */
static bool keep_locked(p2p__http_linger *lg, int fd) {
    if (!lg->running || lg->count >= lg->lim.max_sockets)
        return false;
    size_t i = 0;
    while (lg->socks[i].fd >= 0)
        i++;
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return false;
    /* The FIN goes right after the answer: the client reads the answer, then
     * end of stream. */
    shutdown(dup, SHUT_WR);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = i};
    if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, dup, &ev) != 0) {
        close(dup);
        return false;
    }
    int64_t now = p2p_longpoll_now_ms();
    lg->socks[i] = (lsock){dup, now + lg->lim.total_ms, now + lg->lim.idle_ms, 0};
    lg->count++;
    return true;
}

bool p2p__http_linger_answer(p2p__http_linger *lg, int fd, unsigned status, const json_t *json) {
    char *body = json != NULL ? json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    bool sent = body != NULL && send_answer(fd, status, body);
    free(body);
    if (!sent)
        return false;
    pthread_mutex_lock(&lg->lock);
    bool kept = keep_locked(lg, fd);
    pthread_mutex_unlock(&lg->lock);
    if (kept)
        kick(lg); /* its deadlines may be the earliest */
    else
        P2P_DEBUG("http: lingering set full or stopped: socket %d closes at once", fd);
    return true;
}

size_t p2p__http_linger_count(p2p__http_linger *lg) {
    pthread_mutex_lock(&lg->lock);
    size_t n = lg->count;
    pthread_mutex_unlock(&lg->lock);
    return n;
}

/* ---- the thread ---- */

static void release_locked(p2p__http_linger *lg, size_t i, const char *why) {
    lsock *ls = &lg->socks[i];
    P2P_DEBUG("http: lingering socket %d closed (%s) after %llu bytes", ls->fd, why,
              (unsigned long long)ls->bytes);
    epoll_ctl(lg->epfd, EPOLL_CTL_DEL, ls->fd, NULL);
    close(ls->fd);
    ls->fd = -1;
    lg->count--;
}

static int next_timeout_ms(const p2p__http_linger *lg) {
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < lg->lim.max_sockets; i++) {
        const lsock *ls = &lg->socks[i];
        if (ls->fd >= 0) {
            int64_t d = ls->until_ms < ls->idle_ms ? ls->until_ms : ls->idle_ms;
            first = d < first ? d : first;
        }
    }
    if (first == INT64_MAX)
        return -1;
    int64_t left = first - p2p_longpoll_now_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static void expire_locked(p2p__http_linger *lg) {
    int64_t now = p2p_longpoll_now_ms();
    for (size_t i = 0; i < lg->lim.max_sockets; i++) {
        const lsock *ls = &lg->socks[i];
        if (ls->fd >= 0 && now >= ls->until_ms)
            release_locked(lg, i, "time cap");
        else if (ls->fd >= 0 && now >= ls->idle_ms)
            release_locked(lg, i, "idle");
    }
}

/* Reads and drops what socket `i` has. Only this thread closes sockets, so
 * the descriptor stays valid while it is read without the lock. */
static void drain(p2p__http_linger *lg, size_t i) {
    pthread_mutex_lock(&lg->lock);
    int fd = lg->socks[i].fd;
    pthread_mutex_unlock(&lg->lock);
    if (fd < 0)
        return;
    uint64_t got = 0;
    const char *end = NULL;
    while (end == NULL && got < READ_BUDGET) {
        ssize_t n = recv(fd, lg->buf, READ_BUF_SIZE, MSG_DONTWAIT);
        if (n > 0)
            got += (uint64_t)n;
        else if (n == 0)
            end = "client closed";
        else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            end = "read error";
        else if (errno != EINTR)
            break;
    }
    pthread_mutex_lock(&lg->lock);
    lsock *ls = &lg->socks[i];
    ls->bytes += got;
    if (got > 0)
        ls->idle_ms = p2p_longpoll_now_ms() + lg->lim.idle_ms;
    if (end == NULL && ls->bytes >= lg->lim.max_bytes)
        end = "byte cap";
    if (end != NULL)
        release_locked(lg, i, end);
    pthread_mutex_unlock(&lg->lock);
}

static void *linger_main(void *arg) {
    p2p__http_linger *lg = arg;
    struct epoll_event ev[64];
    pthread_mutex_lock(&lg->lock);
    while (lg->running) {
        int timeout = next_timeout_ms(lg);
        pthread_mutex_unlock(&lg->lock);
        int n = epoll_wait(lg->epfd, ev, 64, timeout);
        for (int k = 0; k < n; k++) {
            if (ev[k].data.u64 != KICK_TAG) {
                drain(lg, (size_t)ev[k].data.u64);
                continue;
            }
            uint64_t v;
            ssize_t r = read(lg->kickfd, &v, sizeof(v));
            (void)r; /* EAGAIN: another kick was already drained */
        }
        pthread_mutex_lock(&lg->lock);
        expire_locked(lg);
    }
    pthread_mutex_unlock(&lg->lock);
    return NULL;
}

/* ---- lifecycle ---- */

int p2p__http_linger_new(const p2p__http_linger_limits *lim, p2p__http_linger **out,
                         p2p_error *err) {
    p2p__http_linger *lg = calloc(1, sizeof(*lg));
    if (lg == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    lg->lim = *lim;
    lg->epfd = lg->kickfd = -1;
    pthread_mutex_init(&lg->lock, NULL);
    int rc = 0;
    lg->socks = calloc(lim->max_sockets, sizeof(*lg->socks));
    lg->buf = malloc(READ_BUF_SIZE);
    if (lg->socks == NULL || lg->buf == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, NULL);
        goto fail;
    }
    for (size_t i = 0; i < lim->max_sockets; i++)
        lg->socks[i].fd = -1;
    lg->epfd = epoll_create1(EPOLL_CLOEXEC);
    lg->kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = KICK_TAG};
    if (lg->epfd < 0 || lg->kickfd < 0 ||
        epoll_ctl(lg->epfd, EPOLL_CTL_ADD, lg->kickfd, &ev) != 0) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot set up the lingering-close thread");
        goto fail;
    }
    *out = lg;
    return 0;
fail:
    p2p__http_linger_free(lg);
    return rc;
}

int p2p__http_linger_start(p2p__http_linger *lg, p2p_error *err) {
    pthread_mutex_lock(&lg->lock);
    int rc = 0;
    if (lg->thread_started || lg->running) {
        rc = p2p_error_set(err, P2P_EINVAL, "the lingering-close thread was already started");
    } else {
        int e = pthread_create(&lg->thread, NULL, linger_main, lg);
        if (e != 0)
            rc = p2p_error_errno(err, P2P_EIO, e, "cannot start the lingering-close thread");
        lg->running = lg->thread_started = e == 0;
    }
    pthread_mutex_unlock(&lg->lock);
    return rc;
}

void p2p__http_linger_stop(p2p__http_linger *lg) {
    pthread_mutex_lock(&lg->lock);
    lg->running = false;
    bool join = lg->thread_started;
    lg->thread_started = false;
    pthread_mutex_unlock(&lg->lock);
    if (join) {
        kick(lg);
        pthread_join(lg->thread, NULL);
    }
    pthread_mutex_lock(&lg->lock);
    for (size_t i = 0; lg->socks != NULL && i < lg->lim.max_sockets; i++) {
        if (lg->socks[i].fd >= 0)
            release_locked(lg, i, "server stopping");
    }
    pthread_mutex_unlock(&lg->lock);
}

void p2p__http_linger_free(p2p__http_linger *lg) {
    if (lg == NULL)
        return;
    p2p__http_linger_stop(lg);
    if (lg->epfd >= 0)
        close(lg->epfd);
    if (lg->kickfd >= 0)
        close(lg->kickfd);
    free(lg->socks);
    free(lg->buf);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}
