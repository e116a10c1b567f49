#include "longpoll.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* epoll data of the eventfd; watched sockets carry (generation << 32 | slot),
 * and generations start at 1, so no socket ever carries 0. */
#define KICK_TAG 0u
#define NO_SLOT UINT32_MAX

typedef struct topic topic;

typedef struct entry {
    void *item;
    topic *topic;
    struct entry *prev, *next; /* waiters of the same topic */
    int64_t deadline;
    size_t heap_idx;
    int fd;
    uint32_t slot;
    p2p_longpoll_reason reason;
    struct entry *fire_next; /* batch being fired */
} entry;

struct topic {
    topic *chain;
    uint64_t hash;
    entry *head;
    char name[];
};

/* Watched sockets are found through a slot table rather than a pointer in
 * the epoll event, so an event read just before its waiter was fired by
 * another thread can be recognised as stale instead of touching freed memory. */
typedef struct slot {
    entry *e;
    uint32_t gen;
    uint32_t next_free;
} slot;

enum { ST_NEW, ST_RUNNING, ST_STOPPED };

struct p2p_longpoll {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when `firing` drops to 0 */
    p2p_longpoll_fire_fn fire;
    void *ctx;
    topic **buckets;
    size_t nbuckets, ntopics;
    entry **heap;
    size_t heap_len, heap_cap;
    slot *slots;
    uint32_t nslots, free_slot;
    size_t count;
    size_t firing; /* batches taken off the lot and not yet fired */
    int epfd, kickfd;
    int state;
    bool thread_started;
    pthread_t thread;
};

int64_t p2p_longpoll_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- topic map (FNV-1a, chained, power-of-two buckets) ---- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static topic **find_topic(p2p_longpoll *lp, const char *name, uint64_t h) {
    topic **pp = &lp->buckets[h & (lp->nbuckets - 1)];
    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->name, name) != 0))
        pp = &(*pp)->chain;
    return pp;
}

static void grow_buckets(p2p_longpoll *lp) {
    size_t n = lp->nbuckets * 2;
    topic **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < lp->nbuckets; i++) {
        topic *t = lp->buckets[i];
        while (t != NULL) {
            topic *next = t->chain;
            t->chain = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
            t = next;
        }
    }
    free(lp->buckets);
    lp->buckets = b;
    lp->nbuckets = n;
}

static topic *get_topic(p2p_longpoll *lp, const char *name) {
    uint64_t h = hash_str(name);
    topic **pp = find_topic(lp, name, h);
    if (*pp != NULL)
        return *pp;
    size_t len = strlen(name);
    topic *t = calloc(1, sizeof(*t) + len + 1);
    if (t == NULL)
        return NULL;
    memcpy(t->name, name, len + 1);
    t->hash = h;
    *pp = t;
    if (++lp->ntopics > lp->nbuckets)
        grow_buckets(lp);
    return t;
}

static void drop_topic(p2p_longpoll *lp, topic *t) {
    topic **pp = find_topic(lp, t->name, t->hash);
    *pp = t->chain;
    lp->ntopics--;
    free(t);
}

/* ---- deadline heap ---- */

static void heap_set(p2p_longpoll *lp, size_t i, entry *e) {
    lp->heap[i] = e;
    e->heap_idx = i;
}

static void heap_up(p2p_longpoll *lp, size_t i) {
    entry *e = lp->heap[i];
    while (i > 0 && lp->heap[(i - 1) / 2]->deadline > e->deadline) {
        heap_set(lp, i, lp->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(lp, i, e);
}

static void heap_down(p2p_longpoll *lp, size_t i) {
    entry *e = lp->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= lp->heap_len)
            break;
        if (c + 1 < lp->heap_len && lp->heap[c + 1]->deadline < lp->heap[c]->deadline)
            c++;
        if (lp->heap[c]->deadline >= e->deadline)
            break;
        heap_set(lp, i, lp->heap[c]);
        i = c;
    }
    heap_set(lp, i, e);
}

static void heap_remove(p2p_longpoll *lp, entry *e) {
    size_t i = e->heap_idx;
    entry *last = lp->heap[--lp->heap_len];
    if (i == lp->heap_len)
        return;
    heap_set(lp, i, last);
    heap_up(lp, i);
    heap_down(lp, last->heap_idx);
}

static int heap_push(p2p_longpoll *lp, entry *e) {
    if (lp->heap_len == lp->heap_cap) {
        size_t cap = lp->heap_cap ? lp->heap_cap * 2 : 64;
        entry **h = realloc(lp->heap, cap * sizeof(*h));
        if (h == NULL)
            return P2P_ENOMEM;
        lp->heap = h;
        lp->heap_cap = cap;
    }
    heap_set(lp, lp->heap_len++, e);
    heap_up(lp, e->heap_idx);
    return 0;
}

/* ---- watched sockets ---- */

static int slot_alloc(p2p_longpoll *lp, entry *e) {
    if (lp->free_slot == NO_SLOT) {
        uint32_t n = lp->nslots ? lp->nslots * 2 : 64;
        slot *s = realloc(lp->slots, (size_t)n * sizeof(*s));
        if (s == NULL)
            return P2P_ENOMEM;
        for (uint32_t i = lp->nslots; i < n; i++)
            s[i] = (slot){NULL, 1, i + 1 < n ? i + 1 : NO_SLOT};
        lp->slots = s;
        lp->free_slot = lp->nslots;
        lp->nslots = n;
    }
    e->slot = lp->free_slot;
    lp->free_slot = lp->slots[e->slot].next_free;
    lp->slots[e->slot].e = e;
    return 0;
}

static uint64_t slot_tag(p2p_longpoll *lp, const entry *e) {
    return ((uint64_t)lp->slots[e->slot].gen << 32) | e->slot;
}

static void slot_release(p2p_longpoll *lp, entry *e) {
    slot *s = &lp->slots[e->slot];
    s->e = NULL;
    s->gen = s->gen == UINT32_MAX ? 1 : s->gen + 1;
    s->next_free = lp->free_slot;
    lp->free_slot = e->slot;
    e->slot = NO_SLOT;
}

static entry *slot_lookup(p2p_longpoll *lp, uint64_t tag) {
    uint32_t i = (uint32_t)(tag & 0xffffffffu);
    if (i >= lp->nslots || lp->slots[i].gen != (uint32_t)(tag >> 32))
        return NULL;
    return lp->slots[i].e;
}

static int watch(p2p_longpoll *lp, entry *e, p2p_error *err) {
    if (slot_alloc(lp, e) != 0)
        return p2p_error_set(err, P2P_ENOMEM, "cannot grow the long-poll slot table");
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = slot_tag(lp, e)};
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, e->fd, &ev) != 0) {
        int rc = p2p_error_errno(err, P2P_EIO, errno, "cannot watch socket %d", e->fd);
        slot_release(lp, e);
        return rc;
    }
    return 0;
}

/* ---- parking and firing ---- */

/* Takes `e` off every structure; it then belongs to whoever fires it. */
static void detach(p2p_longpoll *lp, entry *e, p2p_longpoll_reason reason) {
    topic *t = e->topic;
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    if (t->head == NULL)
        drop_topic(lp, t);
    heap_remove(lp, e);
    if (e->slot != NO_SLOT) {
        epoll_ctl(lp->epfd, EPOLL_CTL_DEL, e->fd, NULL);
        slot_release(lp, e);
    }
    e->reason = reason;
    lp->count--;
}

static void fire_batch(p2p_longpoll *lp, entry *batch) {
    while (batch != NULL) {
        entry *next = batch->fire_next;
        lp->fire(lp->ctx, batch->item, batch->reason);
        free(batch);
        batch = next;
    }
    pthread_mutex_lock(&lp->lock);
    if (--lp->firing == 0)
        pthread_cond_broadcast(&lp->idle);
    pthread_mutex_unlock(&lp->lock);
}

static void kick(p2p_longpoll *lp) {
    uint64_t one = 1;
    ssize_t n = write(lp->kickfd, &one, sizeof(one));
    (void)n; /* a full counter (EAGAIN) already means "wake up" */
}

static int park(p2p_longpoll *lp, entry *e, const char *name, p2p_error *err) {
    topic *t = get_topic(lp, name);
    if (t == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot add long-poll topic");
    if (heap_push(lp, e) != 0) {
        if (t->head == NULL)
            drop_topic(lp, t);
        return p2p_error_set(err, P2P_ENOMEM, "cannot grow the long-poll heap");
    }
    if (e->fd >= 0) {
        int rc = watch(lp, e, err);
        if (rc != 0) {
            heap_remove(lp, e);
            if (t->head == NULL)
                drop_topic(lp, t);
            return rc;
        }
    }
    e->topic = t;
    e->next = t->head;
    if (t->head != NULL)
        t->head->prev = e;
    t->head = e;
    lp->count++;
    return 0;
}

int p2p_longpoll_add(p2p_longpoll *lp, void *item, const char *topic_name, int64_t deadline_ms,
                     int watch_fd, p2p_error *err) {
    if (topic_name == NULL || topic_name[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "long-poll topic is empty");
    entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    *e = (entry){.item = item, .deadline = deadline_ms, .fd = watch_fd, .slot = NO_SLOT};
    pthread_mutex_lock(&lp->lock);
    int rc = lp->state == ST_RUNNING
                 ? park(lp, e, topic_name, err)
                 : p2p_error_set(err, P2P_ECANCELED, "the long-poll lot is not running");
    bool earliest = rc == 0 && e->heap_idx == 0;
    pthread_mutex_unlock(&lp->lock);
    if (rc != 0) {
        free(e);
        return rc;
    }
    /* Only a new earliest deadline changes how long the timer must sleep. */
    if (earliest)
        kick(lp);
    return 0;
}

size_t p2p_longpoll_notify(p2p_longpoll *lp, const char *topic_name) {
    if (topic_name == NULL)
        return 0;
    uint64_t h = hash_str(topic_name);
    entry *batch = NULL;
    size_t n = 0;
    pthread_mutex_lock(&lp->lock);
    topic *t;
    while ((t = *find_topic(lp, topic_name, h)) != NULL) {
        entry *e = t->head;
        detach(lp, e, P2P_LONGPOLL_NOTIFIED);
        e->fire_next = batch;
        batch = e;
        n++;
    }
    if (n > 0)
        lp->firing++;
    pthread_mutex_unlock(&lp->lock);
    if (n > 0)
        fire_batch(lp, batch);
    return n;
}

size_t p2p_longpoll_count(p2p_longpoll *lp) {
    pthread_mutex_lock(&lp->lock);
    size_t n = lp->count;
    pthread_mutex_unlock(&lp->lock);
    return n;
}

/* ---- timer thread ---- */

static int next_timeout_ms(p2p_longpoll *lp) {
    if (lp->heap_len == 0)
        return -1;
    int64_t left = lp->heap[0]->deadline - p2p_longpoll_now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Detaches what is due: the closed sockets of `ev`, then the expired
 * deadlines. The batch keeps that order (deadlines earliest first), so calls
 * that expire together are answered in the order they were due. */
static entry *collect(p2p_longpoll *lp, const struct epoll_event *ev, int n) {
    entry *batch = NULL;
    entry **tail = &batch;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == KICK_TAG) {
            uint64_t v;
            ssize_t r = read(lp->kickfd, &v, sizeof(v));
            (void)r; /* EAGAIN: another kick was already drained */
            continue;
        }
        entry *e = slot_lookup(lp, ev[i].data.u64);
        if (e == NULL)
            continue; /* fired by another thread since epoll_wait returned */
        detach(lp, e, P2P_LONGPOLL_CLOSED);
        *tail = e;
        tail = &e->fire_next;
    }
    int64_t now = p2p_longpoll_now_ms();
    while (lp->heap_len > 0 && lp->heap[0]->deadline <= now) {
        entry *e = lp->heap[0];
        detach(lp, e, P2P_LONGPOLL_TIMEOUT);
        *tail = e;
        tail = &e->fire_next;
    }
    *tail = NULL;
    return batch;
}

static void *timer_main(void *arg) {
    p2p_longpoll *lp = arg;
    struct epoll_event ev[64];
    pthread_mutex_lock(&lp->lock);
    while (lp->state == ST_RUNNING) {
        int timeout = next_timeout_ms(lp);
        pthread_mutex_unlock(&lp->lock);
        int n = epoll_wait(lp->epfd, ev, 64, timeout);
        pthread_mutex_lock(&lp->lock);
        if (lp->state != ST_RUNNING)
            break;
        entry *batch = collect(lp, ev, n > 0 ? n : 0);
        if (batch == NULL)
            continue;
        lp->firing++;
        pthread_mutex_unlock(&lp->lock);
        fire_batch(lp, batch);
        pthread_mutex_lock(&lp->lock);
    }
    pthread_mutex_unlock(&lp->lock);
    return NULL;
}

/* ---- lifecycle ---- */

int p2p_longpoll_new(p2p_longpoll_fire_fn fire, void *ctx, p2p_longpoll **out, p2p_error *err) {
    p2p_longpoll *lp = calloc(1, sizeof(*lp));
    if (lp == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    lp->fire = fire;
    lp->ctx = ctx;
    lp->free_slot = NO_SLOT;
    lp->epfd = lp->kickfd = -1;
    pthread_mutex_init(&lp->lock, NULL);
    pthread_cond_init(&lp->idle, NULL);
    int rc = 0;
    lp->nbuckets = 64;
    lp->buckets = calloc(lp->nbuckets, sizeof(*lp->buckets));
    if (lp->buckets == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, NULL);
        goto fail;
    }
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    lp->kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = KICK_TAG};
    if (lp->epfd < 0 || lp->kickfd < 0 ||
        epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->kickfd, &ev) != 0) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot set up the long-poll timer");
        goto fail;
    }
    *out = lp;
    return 0;
fail:
    p2p_longpoll_free(lp);
    return rc;
}

int p2p_longpoll_start(p2p_longpoll *lp, p2p_error *err) {
    pthread_mutex_lock(&lp->lock);
    int rc = 0;
    if (lp->state != ST_NEW) {
        rc = p2p_error_set(err, P2P_EINVAL, "the long-poll lot was already started");
    } else {
        int e = pthread_create(&lp->thread, NULL, timer_main, lp);
        if (e != 0)
            rc = p2p_error_errno(err, P2P_EIO, e, "cannot start the long-poll timer thread");
        else
            lp->state = ST_RUNNING;
        lp->thread_started = e == 0;
    }
    pthread_mutex_unlock(&lp->lock);
    return rc;
}

void p2p_longpoll_stop(p2p_longpoll *lp) {
    entry *batch = NULL;
    pthread_mutex_lock(&lp->lock);
    lp->state = ST_STOPPED;
    while (lp->heap_len > 0) {
        entry *e = lp->heap[lp->heap_len - 1];
        detach(lp, e, P2P_LONGPOLL_SHUTDOWN);
        e->fire_next = batch;
        batch = e;
    }
    lp->firing++;
    bool join = lp->thread_started;
    lp->thread_started = false;
    pthread_mutex_unlock(&lp->lock);
    kick(lp);
    if (join)
        pthread_join(lp->thread, NULL);
    fire_batch(lp, batch);
    pthread_mutex_lock(&lp->lock);
    while (lp->firing > 0)
        pthread_cond_wait(&lp->idle, &lp->lock);
    pthread_mutex_unlock(&lp->lock);
}

void p2p_longpoll_free(p2p_longpoll *lp) {
    if (lp == NULL)
        return;
    p2p_longpoll_stop(lp);
    if (lp->epfd >= 0)
        close(lp->epfd);
    if (lp->kickfd >= 0)
        close(lp->kickfd);
    free(lp->buckets);
    free(lp->heap);
    free(lp->slots);
    pthread_cond_destroy(&lp->idle);
    pthread_mutex_destroy(&lp->lock);
    free(lp);
}
