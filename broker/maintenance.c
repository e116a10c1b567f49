#include "maintenance.h"

#include "broker_internal.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct p2p_maintenance {
    int64_t interval_ms;
    p2p_maintenance_fn pass;
    void *ctx;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    bool stopping;
    uint64_t passes;
};

int p2p_maintenance_new(int64_t interval_ms, p2p_maintenance_fn pass, void *ctx,
                        p2p_maintenance **out, p2p_error *err) {
    if (interval_ms <= 0 || pass == NULL)
        return p2p_error_set(err, P2P_EINVAL, "maintenance needs a positive interval and a pass");
    p2p_maintenance *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory creating the maintenance timer");
    m->interval_ms = interval_ms;
    m->pass = pass;
    m->ctx = ctx;
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->wake, &ca);
    pthread_condattr_destroy(&ca);
    *out = m;
    return 0;
}

static void add_ms(struct timespec *ts, int64_t ms) {
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *thread_main(void *arg) {
    p2p_maintenance *m = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&m->lock);
    for (;;) {
        add_ms(&next, m->interval_ms);
        while (!m->stopping && pthread_cond_timedwait(&m->wake, &m->lock, &next) != ETIMEDOUT)
            ;
        if (m->stopping)
            break;
        pthread_mutex_unlock(&m->lock);
        m->pass(m->ctx);
        pthread_mutex_lock(&m->lock);
        m->passes++;
        /* A pass longer than the interval does not make the next ones pile up. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
            next = now;
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

int p2p_maintenance_start(p2p_maintenance *m, p2p_error *err) {
    if (m->running)
        return p2p_error_set(err, P2P_EINVAL, "maintenance is already running");
    m->stopping = false;
    int e = pthread_create(&m->thread, NULL, thread_main, m);
    if (e != 0)
        return p2p_error_errno(err, P2P_EIO, e, "cannot start the maintenance thread");
    m->running = true;
    return 0;
}

void p2p_maintenance_stop(p2p_maintenance *m) {
    if (m == NULL || !m->running)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    m->running = false;
}

uint64_t p2p_maintenance_passes(p2p_maintenance *m) {
    pthread_mutex_lock(&m->lock);
    uint64_t n = m->passes;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void p2p_maintenance_free(p2p_maintenance *m) {
    if (m == NULL)
        return;
    p2p_maintenance_stop(m);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- the broker's pass ---- */

/* Expiry deletes at most this many calls per transaction, and this many
 * transactions per pass, so that one pass never holds the writer long. */
#define EXPIRE_BATCH 256
#define EXPIRE_ROUNDS 16
/* Unreferenced old blobs removed per pass by the sweep, at most. */
#define SWEEP_MAX 1024

static int64_t store_now_ms(const p2p_broker *b) {
    if (b->opts.clock != NULL)
        return b->opts.clock(b->opts.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int requeue(p2p_broker *b, p2p_error *err) {
    size_t requeued = 0, failed = 0;
    int rc = p2p_store_requeue_expired(b->store, &requeued, &failed, err);
    if (rc != 0)
        return rc;
    p2p_metrics_add(b->metrics, P2P_METRIC_REQUEUED, requeued);
    p2p_metrics_add(b->metrics, P2P_METRIC_LEASE_FAILED, failed);
    if (requeued + failed > 0)
        P2P_INFO("maintenance: %zu expired lease(s) requeued, %zu call(s) failed or terminated",
                 requeued, failed);
    return 0;
}

static int expire(p2p_broker *b, p2p_error *err) {
    int64_t cutoff = store_now_ms(b);
    int rc = 0;
    for (int round = 0; round < EXPIRE_ROUNDS && rc == 0; round++) {
        p2p_store_hashes orphans;
        p2p_store_hashes_init(&orphans);
        size_t deleted = 0;
        rc = p2p_store_expire(b->store, cutoff, EXPIRE_BATCH, &deleted, &orphans, err);
        if (rc == 0) {
            p2p_metrics_add(b->metrics, P2P_METRIC_EXPIRED, deleted);
            size_t removed = p2p__broker_remove_orphans(b, &orphans);
            if (deleted > 0)
                P2P_INFO("maintenance: %zu call(s) expired, %zu blob(s) removed", deleted, removed);
        }
        p2p_store_hashes_cleanup(&orphans);
        if (deleted < EXPIRE_BATCH)
            break;
    }
    return rc;
}

static int collect(void *ctx, const char *hash) {
    p2p_store_hashes *hashes = ctx;
    if (hashes->count >= SWEEP_MAX)
        return 1;
    return p2p_store_hashes_add(hashes, hash);
}

/* How many shards one pass sweeps: enough that a full round of the 256 takes
 * at most half the expiry (and at most an hour), so an unused blob lives at
 * most about 1.5 times the expiry; at least one. */
static unsigned shards_per_pass(const p2p_broker *b) {
    int64_t round_ms = b->opts.expire_ms / 2;
    if (round_ms > 3600 * 1000)
        round_ms = 3600 * 1000;
    if (round_ms < 1)
        round_ms = 1;
    int64_t n = (P2P_BLOBSTORE_SHARDS * b->maintenance_ms + round_ms - 1) / round_ms;
    return n < 1 ? 1 : n > P2P_BLOBSTORE_SHARDS ? P2P_BLOBSTORE_SHARDS : (unsigned)n;
}

/* Blobs nothing references once their mtime (last upload or HEAD) is older
 * than the expiry: uploads whose call never came, and files left by a crash
 * between a delete and its unlink. A few shards per pass. */
static int sweep(p2p_broker *b, p2p_error *err) {
    p2p_store_hashes old;
    p2p_store_hashes_init(&old);
    int64_t cutoff_s = (int64_t)time(NULL) - (b->opts.expire_ms + 999) / 1000;
    int rc = 0;
    for (unsigned i = shards_per_pass(b); i > 0 && rc == 0 && old.count < SWEEP_MAX; i--) {
        unsigned shard = b->sweep_shard;
        b->sweep_shard = (shard + 1) % P2P_BLOBSTORE_SHARDS;
        rc = p2p_blobstore_list_old(b->blobs, shard, cutoff_s, collect, &old, err);
    }
    if (rc == 1)
        rc = 0;
    if (rc == 0 && old.count > 0)
        p2p__broker_remove_orphans(b, &old);
    p2p_store_hashes_cleanup(&old);
    return rc;
}

int p2p__maintenance_pass(p2p_broker *b, p2p_error *err) {
    int rc = requeue(b, err);
    if (rc == 0 && b->opts.expire_ms > 0)
        rc = expire(b, err);
    if (rc == 0 && b->opts.expire_ms > 0)
        rc = sweep(b, err);
    if (rc == 0)
        p2p__pipeline_pass(b); /* waiting calls: at start, and when an upstream went */
    if (rc != 0)
        p2p_metrics_add(b->metrics, P2P_METRIC_MAINT_ERRORS, 1);
    return rc;
}
