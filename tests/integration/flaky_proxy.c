/* The connection-dropping proxy: see flaky_proxy.h. */
#include "flaky_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF 65536
/* Bytes of the client's stream kept to find a pattern cut in two reads. */
#define TAIL 64

static const char blob_get[] = "GET /api/v1/blobs/";
static const char blob_put[] = "PUT /api/v1/blobs/";
static const char blob_head[] = "HEAD /api/v1/blobs/";
static const char range_hdr[] = "\r\nRange: bytes=";
static const char request_end[] = " HTTP/1.1\r\n";

typedef struct conn {
    struct flaky_proxy *proxy;
    int cfd, ufd;
    pthread_t thread;
    struct conn *next;
    /* Relay state, owned by the connection's thread. */
    char tail[TAIL];
    size_t tail_len;
    bool counting; /* the answer to a blob GET is passing */
    long counted;
} conn;

struct flaky_proxy {
    int lfd;
    int stop[2]; /* readable once the proxy stops */
    pthread_t acceptor;
    bool acceptor_started;
    struct sockaddr_in upstream;
    char url[64];
    long cut_after;
    pthread_mutex_t lock; /* guards everything below */
    conn *conns;
    int cuts_left, cuts, ranges, gets, puts, heads;
    int corrupt_left, corrupted;
    long corrupt_at;
};

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Occurrences of `pat` in hay[0..len) that end past `old` (not seen before). */
static int count_new(const char *hay, size_t len, size_t old, const char *pat) {
    size_t plen = strlen(pat);
    int n = 0;
    for (const char *at = hay; at != NULL && at + plen <= hay + len;) {
        at = memmem(at, (size_t)(hay + len - at), pat, plen);
        if (at == NULL)
            break;
        n += (size_t)(at - hay) + plen > old;
        at++;
    }
    return n;
}

/* Reads the client's bytes as they pass: which request is this? */
static void scan_request(conn *c, const char *buf, size_t n) {
    static _Thread_local char scan[TAIL + RELAY_BUF];
    memcpy(scan, c->tail, c->tail_len);
    memcpy(scan + c->tail_len, buf, n);
    size_t len = c->tail_len + n;
    int gets = count_new(scan, len, c->tail_len, blob_get);
    int ranges = count_new(scan, len, c->tail_len, range_hdr);
    int puts = count_new(scan, len, c->tail_len, blob_put);
    int heads = count_new(scan, len, c->tail_len, blob_head);
    if (count_new(scan, len, c->tail_len, request_end) > 0) {
        c->counting = gets > 0;
        c->counted = 0;
    }
    pthread_mutex_lock(&c->proxy->lock);
    c->proxy->gets += gets;
    c->proxy->ranges += ranges;
    c->proxy->puts += puts;
    c->proxy->heads += heads;
    pthread_mutex_unlock(&c->proxy->lock);
    c->tail_len = len < TAIL ? len : TAIL;
    memcpy(c->tail, scan + len - c->tail_len, c->tail_len);
}

/* True when this answer is to be cut now (and takes one cut). */
static bool take_cut(flaky_proxy *p) {
    pthread_mutex_lock(&p->lock);
    bool cut = p->cuts_left > 0;
    if (cut) {
        p->cuts_left--;
        p->cuts++;
    }
    pthread_mutex_unlock(&p->lock);
    return cut;
}

/* Flips the byte at the corruption offset when it is in this piece of a
 * blob answer (buf holds answer bytes [counted, counted + n)). */
static void maybe_corrupt(conn *c, char *buf, ssize_t n) {
    flaky_proxy *p = c->proxy;
    pthread_mutex_lock(&p->lock);
    if (p->corrupt_left > 0 && c->counted <= p->corrupt_at && p->corrupt_at < c->counted + n) {
        buf[p->corrupt_at - c->counted] ^= 0x01;
        p->corrupt_left--;
        p->corrupted++;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Relays one read from `from` to `to`; false when the connection ends. */
static bool relay_once(conn *c, bool from_client) {
    static _Thread_local char buf[RELAY_BUF];
    ssize_t n = recv(from_client ? c->cfd : c->ufd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    if (from_client) {
        scan_request(c, buf, (size_t)n);
        return write_all(c->ufd, buf, (size_t)n) == 0;
    }
    if (c->counting)
        maybe_corrupt(c, buf, n);
    if (c->counting && c->counted + n > c->proxy->cut_after && take_cut(c->proxy)) {
        size_t part = (size_t)(c->proxy->cut_after - c->counted);
        (void)write_all(c->cfd, buf, part);
        return false;
    }
    c->counted += n;
    return write_all(c->cfd, buf, (size_t)n) == 0;
}

static void *relay_main(void *arg) {
    conn *c = arg;
    for (;;) {
        struct pollfd fds[3] = {{.fd = c->cfd, .events = POLLIN},
                                {.fd = c->ufd, .events = POLLIN},
                                {.fd = c->proxy->stop[0], .events = POLLIN}};
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[2].revents != 0)
            break;
        if (fds[0].revents != 0 && !relay_once(c, true))
            break;
        if (fds[1].revents != 0 && !relay_once(c, false))
            break;
    }
    shutdown(c->cfd, SHUT_RDWR);
    shutdown(c->ufd, SHUT_RDWR);
    return NULL;
}

static void accept_one(flaky_proxy *p) {
    int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    conn *c = calloc(1, sizeof(*c));
    if (ufd < 0 || c == NULL ||
        connect(ufd, (struct sockaddr *)&p->upstream, sizeof(p->upstream)) != 0) {
        close(cfd);
        if (ufd >= 0)
            close(ufd);
        free(c);
        return;
    }
    c->proxy = p;
    c->cfd = cfd;
    c->ufd = ufd;
    if (pthread_create(&c->thread, NULL, relay_main, c) != 0) {
        close(cfd);
        close(ufd);
        free(c);
        return;
    }
    pthread_mutex_lock(&p->lock);
    c->next = p->conns;
    p->conns = c;
    pthread_mutex_unlock(&p->lock);
}

static void *accept_main(void *arg) {
    flaky_proxy *p = arg;
    for (;;) {
        struct pollfd fds[2] = {{.fd = p->lfd, .events = POLLIN},
                                {.fd = p->stop[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents != 0)
            break;
        if (fds[0].revents != 0)
            accept_one(p);
    }
    return NULL;
}

/* The loopback port of an http://127.0.0.1:PORT URL. */
static int parse_upstream(const char *url, struct sockaddr_in *a, p2p_error *err) {
    static const char prefix[] = "http://127.0.0.1:";
    if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
        return p2p_error_set(err, P2P_EINVAL, "flaky_proxy: %s is not http://127.0.0.1:PORT", url);
    char *end = NULL;
    long port = strtol(url + sizeof(prefix) - 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end != '\0' && *end != '/'))
        return p2p_error_set(err, P2P_EINVAL, "flaky_proxy: bad port in %s", url);
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

static int listen_loopback(flaky_proxy *p, p2p_error *err) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "flaky_proxy: listen");
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    return 0;
}

int flaky_proxy_start(const char *upstream_url, int cuts, long cut_after, flaky_proxy **out,
                      p2p_error *err) {
    flaky_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "flaky_proxy: out of memory");
    p->lfd = -1;
    p->stop[0] = p->stop[1] = -1;
    p->cuts_left = cuts;
    p->cut_after = cut_after;
    pthread_mutex_init(&p->lock, NULL);
    int rc = parse_upstream(upstream_url, &p->upstream, err);
    if (rc == 0)
        rc = listen_loopback(p, err);
    if (rc == 0 && pipe2(p->stop, O_CLOEXEC) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "flaky_proxy: pipe");
    if (rc == 0 && pthread_create(&p->acceptor, NULL, accept_main, p) != 0)
        rc = p2p_error_set(err, P2P_ENOMEM, "flaky_proxy: thread");
    if (rc != 0) {
        flaky_proxy_free(p);
        return rc;
    }
    p->acceptor_started = true;
    *out = p;
    return 0;
}

const char *flaky_proxy_url(const flaky_proxy *p) {
    return p->url;
}

static int read_counter(flaky_proxy *p, const int *field) {
    pthread_mutex_lock(&p->lock);
    int v = *field;
    pthread_mutex_unlock(&p->lock);
    return v;
}

void flaky_proxy_corrupt(flaky_proxy *p, int count, long offset) {
    pthread_mutex_lock(&p->lock);
    p->corrupt_left = count;
    p->corrupt_at = offset;
    pthread_mutex_unlock(&p->lock);
}

int flaky_proxy_corrupted(flaky_proxy *p) {
    return read_counter(p, &p->corrupted);
}

int flaky_proxy_blob_puts(flaky_proxy *p) {
    return read_counter(p, &p->puts);
}

int flaky_proxy_blob_heads(flaky_proxy *p) {
    return read_counter(p, &p->heads);
}

int flaky_proxy_cuts(flaky_proxy *p) {
    return read_counter(p, &p->cuts);
}

int flaky_proxy_range_requests(flaky_proxy *p) {
    return read_counter(p, &p->ranges);
}

int flaky_proxy_blob_gets(flaky_proxy *p) {
    return read_counter(p, &p->gets);
}

void flaky_proxy_free(flaky_proxy *p) {
    if (p == NULL)
        return;
    /* A full pipe cannot happen: one byte is ever written. */
    if (p->stop[1] >= 0 && write(p->stop[1], "x", 1) != 1)
        fprintf(stderr, "flaky_proxy: cannot signal the stop\n");
    if (p->acceptor_started)
        pthread_join(p->acceptor, NULL);
    /* The acceptor is gone: the list no longer grows. */
    for (conn *c = p->conns, *next; c != NULL; c = next) {
        next = c->next;
        pthread_join(c->thread, NULL);
        close(c->cfd);
        close(c->ufd);
        free(c);
    }
    if (p->lfd >= 0)
        close(p->lfd);
    for (int i = 0; i < 2; i++)
        if (p->stop[i] >= 0)
            close(p->stop[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
