/* The worker object: options, brokers, call slots, start and the graceful
 * stop. Threads: one poller per (broker, function) (poller.c), one runner per
 * running call (runner.c), one gossip thread (gossip.c). One mutex covers the
 * shared state: free slots, per-broker backoff, the stop flag, the spares.
 * Three condition variables (on CLOCK_MONOTONIC) keep each wake-up to the
 * threads it concerns: `cond` (a free slot, the stop), `stop_cond` (timed
 * waits only the stop ends early), `spare_cond` (the spawner). */
#include "worker_internal.h"

#include "discovery.h"
#include "fsutil.h"
#include "log.h"
#include "sign.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int64_t p2p__worker_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool p2p__worker_sleep(int fd, int64_t ms) {
    int64_t deadline = p2p__worker_now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        int64_t left = deadline - p2p__worker_now_ms();
        if (left <= 0)
            return true;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, fd >= 0 ? 1 : 0, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return false;
    }
}

void p2p_worker_options_init(p2p_worker_options *opts) {
    *opts = (p2p_worker_options){
        .concurrency = P2P_WORKER_DEFAULT_CONCURRENCY,
        .lease_renew_ms = P2P_WORKER_DEFAULT_LEASE_RENEW_MS,
        .grace_ms = P2P_WORKER_DEFAULT_GRACE_MS,
        .poll_wait_s = P2P_WORKER_DEFAULT_POLL_WAIT_S,
        .gossip_interval_ms = P2P_WORKER_DEFAULT_GOSSIP_MS,
        .progress_interval_ms = P2P_WORKER_DEFAULT_PROGRESS_MS,
        .spare_children = -1,
    };
}

/* ---- shared state, for the pollers and runners ---- */

static void abs_deadline(int64_t deadline_ms, struct timespec *ts) {
    ts->tv_sec = deadline_ms / 1000;
    ts->tv_nsec = (deadline_ms % 1000) * 1000000L;
}

bool p2p__worker_wait_capacity(p2p_worker *w) {
    pthread_mutex_lock(&w->lock);
    while (!atomic_load(&w->stopping) && w->busy >= w->opts.concurrency)
        pthread_cond_wait(&w->cond, &w->lock);
    bool go = !atomic_load(&w->stopping);
    pthread_mutex_unlock(&w->lock);
    return go;
}

bool p2p__worker_wait_until(p2p_worker *w, int64_t deadline_ms) {
    struct timespec ts;
    abs_deadline(deadline_ms, &ts);
    pthread_mutex_lock(&w->lock);
    while (!atomic_load(&w->stopping) && p2p__worker_now_ms() < deadline_ms)
        pthread_cond_timedwait(&w->stop_cond, &w->lock, &ts);
    bool go = !atomic_load(&w->stopping);
    pthread_mutex_unlock(&w->lock);
    return go;
}

bool p2p__worker_take_slot(p2p_worker *w, unsigned *slot, bool *join) {
    bool taken = false;
    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; !atomic_load(&w->stopping) && !taken && i < w->opts.concurrency; i++) {
        if (w->slots[i].busy)
            continue;
        w->slots[i].busy = true;
        *join = w->slots[i].joinable;
        w->slots[i].joinable = false;
        w->busy++;
        *slot = i;
        taken = true;
    }
    pthread_mutex_unlock(&w->lock);
    return taken;
}

void p2p__worker_put_slot(p2p_worker *w, unsigned slot) {
    pthread_mutex_lock(&w->lock);
    w->slots[slot].busy = false;
    w->busy--;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

bool p2p__worker_full(p2p_worker *w) {
    pthread_mutex_lock(&w->lock);
    bool full = w->busy >= w->opts.concurrency;
    pthread_mutex_unlock(&w->lock);
    return full;
}

bool p2p__worker_can_do_work(p2p_worker *w) {
    if (w->opts.can_do_work == NULL)
        return true;
    pthread_mutex_lock(&w->can_lock);
    bool yes = w->opts.can_do_work(w->opts.can_do_work_ctx);
    pthread_mutex_unlock(&w->can_lock);
    return yes;
}

void p2p__broker_failed(p2p_worker *w, p2p__broker *b, const p2p_error *err) {
    int64_t now = p2p__worker_now_ms();
    pthread_mutex_lock(&w->lock);
    /* The pollers of one broker fail together: one failure per backoff
     * period counts, so that seven functions do not back off seven times as
     * fast. */
    bool counted = now >= b->retry_at_ms;
    int failures = counted ? b->failures++ : b->failures;
    long delay = p2p_http_backoff_ms(P2P__BACKOFF_BASE_MS, P2P__BACKOFF_MAX_MS, failures);
    /* Full jitter can draw 0: keep a floor, so a dead broker is never hammered. */
    delay = delay < P2P__BACKOFF_BASE_MS / 2 ? P2P__BACKOFF_BASE_MS / 2 : delay;
    if (counted)
        b->retry_at_ms = now + delay;
    pthread_mutex_unlock(&w->lock);
    /* Logged on the first failure, then at every tenth, to keep weeks of
     * logs readable while a broker is away. */
    if (counted && failures == 0)
        P2P_WARN("worker: %s; backing off", err->msg);
    else if (counted && failures % 10 == 0)
        P2P_WARN("worker: %s (%d failures in a row; next try in %ld ms)", err->msg, failures + 1,
                 delay);
}

void p2p__broker_ok(p2p_worker *w, p2p__broker *b) {
    pthread_mutex_lock(&w->lock);
    int failures = b->failures;
    b->failures = 0;
    b->retry_at_ms = 0;
    pthread_mutex_unlock(&w->lock);
    if (failures > 0)
        P2P_INFO("worker: %s answers again", b->url);
}

void p2p__worker_count(p2p_worker *w, uint64_t *counter) {
    pthread_mutex_lock(&w->lock);
    (*counter)++;
    pthread_mutex_unlock(&w->lock);
}

void p2p_worker_get_stats(p2p_worker *w, p2p_worker_stats *out) {
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    out->running = w->busy;
    pthread_mutex_unlock(&w->lock);
}

size_t p2p_worker_broker_count(p2p_worker *w) {
    pthread_mutex_lock(&w->lock);
    size_t n = w->nbrokers;
    pthread_mutex_unlock(&w->lock);
    return n;
}

const char *p2p_worker_node_id(const p2p_worker *w) {
    return w->started ? w->node_id : NULL;
}

/* ---- new ---- */

static int check_functions(const p2p_worker_function *fns, size_t n, p2p_error *err) {
    if (fns == NULL || n == 0)
        return p2p_error_set(err, P2P_EINVAL, "worker: no function to serve");
    for (size_t i = 0; i < n; i++) {
        if (fns[i].schema == NULL || !p2p_schema_finished(fns[i].schema) || fns[i].invoke == NULL)
            return p2p_error_set(err, P2P_EINVAL,
                                 "worker: function %zu needs a finished schema and an invoke", i);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(p2p_schema_name(fns[i].schema), p2p_schema_name(fns[j].schema)) == 0)
                return p2p_error_set(err, P2P_EINVAL, "worker: function %s is there twice",
                                     p2p_schema_name(fns[i].schema));
        }
    }
    return 0;
}

static int check_options(const p2p_worker_options *o, p2p_error *err) {
    if (o->concurrency < 1 || o->concurrency > P2P_WORKER_MAX_CONCURRENCY)
        return p2p_error_set(err, P2P_EINVAL, "worker: concurrency must be 1 to %d",
                             P2P_WORKER_MAX_CONCURRENCY);
    if (o->lease_renew_ms < 10 || o->lease_renew_ms > 3600 * 1000)
        return p2p_error_set(err, P2P_EINVAL, "worker: the lease renewal must be 10 ms to 1 hour");
    if (o->grace_ms < 0 || o->grace_ms > 3600 * 1000)
        return p2p_error_set(err, P2P_EINVAL, "worker: the grace must be 0 to 1 hour");
    if (o->poll_wait_s < 1 || o->poll_wait_s > 300)
        return p2p_error_set(err, P2P_EINVAL, "worker: the poll wait must be 1 to 300 s");
    if (o->gossip_interval_ms < 100 || o->progress_interval_ms < 0 ||
        o->progress_interval_ms > 60000)
        return p2p_error_set(err, P2P_EINVAL,
                             "worker: gossip interval >= 100 ms, progress interval 0 to 60 s");
    if (o->secret != NULL && o->secret_len == 0)
        return p2p_error_set(err, P2P_EINVAL, "worker: the secret is empty");
    if (o->spare_children < -1 || o->spare_children > P2P__MAX_SPARES)
        return p2p_error_set(err, P2P_EINVAL, "worker: spare children must be -1 to %d",
                             P2P__MAX_SPARES);
    return 0;
}

static int copy_str(const char *src, char **dst) {
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst != NULL ? 0 : P2P_ENOMEM;
}

static int copy_options(p2p_worker *w, const p2p_worker_options *o, p2p_error *err) {
    w->opts = *o;
    int rc = copy_str(o->discovery_file, &w->discovery_file) | copy_str(o->data_dir, &w->data_dir) |
             copy_str(o->work_dir, &w->work_root) | copy_str(o->ca_file, &w->ca_file) |
             copy_str(o->ca_path, &w->ca_path) |
             copy_str(o->child_program ? o->child_program : "/proc/self/exe", &w->child_program);
    if (rc == 0 && o->secret != NULL && (w->secret = malloc(o->secret_len)) != NULL)
        memcpy(w->secret, o->secret, o->secret_len);
    else if (o->secret != NULL)
        rc = P2P_ENOMEM;
    if (rc == 0 && o->n_brokers > 0 && (w->seeds = calloc(o->n_brokers, sizeof(char *))) == NULL)
        rc = P2P_ENOMEM;
    for (size_t i = 0; rc == 0 && i < o->n_brokers; i++, w->nseeds++)
        rc = p2p_discovery_normalize(o->brokers[i], &w->seeds[i], err);
    if (rc == P2P_ENOMEM)
        return p2p_error_set(err, rc, "worker: out of memory");
    w->opts.discovery_file = w->discovery_file;
    w->opts.data_dir = w->data_dir;
    w->opts.work_dir = w->work_root;
    w->opts.ca_file = w->ca_file;
    w->opts.ca_path = w->ca_path;
    w->opts.child_program = w->child_program;
    w->opts.secret = w->secret;
    w->opts.brokers = NULL;
    return rc;
}

static int init_sync(p2p_worker *w, p2p_error *err) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return p2p_error_set(err, P2P_ENOMEM, "worker: cannot make a condition variable");
    bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0;
    int made = 0;
    pthread_cond_t *conds[] = {&w->cond, &w->stop_cond, &w->spare_cond};
    while (ok && made < 3 && pthread_cond_init(conds[made], &attr) == 0)
        made++;
    pthread_condattr_destroy(&attr);
    if (made < 3) {
        while (made > 0)
            pthread_cond_destroy(conds[--made]);
        return p2p_error_set(err, P2P_ENOMEM, "worker: cannot make a condition variable");
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->can_lock, NULL);
    w->sync_ready = true;
    w->stop_fd = eventfd(0, EFD_CLOEXEC);
    w->abort_fd = eventfd(0, EFD_CLOEXEC);
    if (w->stop_fd < 0 || w->abort_fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "worker: eventfd");
    return 0;
}

int p2p_worker_new(const p2p_worker_options *opts, const p2p_worker_function *fns, size_t n,
                   p2p_worker **out, p2p_error *err) {
    *out = NULL;
    p2p_worker_options defaults;
    p2p_worker_options_init(&defaults);
    const p2p_worker_options *o = opts != NULL ? opts : &defaults;
    int rc = check_functions(fns, n, err);
    if (rc == 0)
        rc = check_options(o, err);
    if (rc != 0)
        return rc;
    p2p_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "worker: out of memory");
    w->stop_fd = w->abort_fd = w->work_lock_fd = -1;
    w->fns = fns;
    w->nfns = n;
    rc = init_sync(w, err);
    if (rc == 0)
        rc = copy_options(w, o, err);
    unsigned spares = o->concurrency < P2P__MAX_SPARES ? o->concurrency : P2P__MAX_SPARES;
    w->target_spares = o->spare_children >= 0 ? (unsigned)o->spare_children : spares;
    if (rc == 0 && (w->slots = calloc(o->concurrency, sizeof(*w->slots))) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "worker: out of memory");
    if (rc != 0) {
        p2p_worker_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- start ---- */

static int load_identity(p2p_worker *w, p2p_error *err) {
    if (w->data_dir == NULL) {
        int rc = p2p_node_data_dir(&w->data_dir, err);
        if (rc != 0)
            return rc;
        w->opts.data_dir = w->data_dir;
    }
    return p2p_node_id_load(w->data_dir, w->node_id, err);
}

static int make_clients(p2p_worker *w, p2p_error *err) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.secret = w->secret;
    o.secret_len = w->opts.secret_len;
    o.ca_file = w->ca_file;
    o.ca_path = w->ca_path;
    o.insecure = w->opts.insecure;
    /* A push must not hold a runner long while its broker is away. */
    o.timeout_ms = 30000;
    o.max_retries = 2;
    o.backoff_max_ms = 2000;
    o.pool_size = w->opts.concurrency + 8 < 64 ? (int)w->opts.concurrency + 8 : 64;
    w->http = p2p_http_client_new(&o, err);
    if (w->http == NULL)
        return P2P_EINVAL;
    /* Gossip and probes wait for nobody: a stop must not wait for them. */
    o.connect_timeout_ms = 2000;
    o.timeout_ms = 5000;
    o.max_retries = 0;
    o.pool_size = 4;
    w->quick = p2p_http_client_new(&o, err);
    return w->quick != NULL ? 0 : P2P_EINVAL;
}

/* A directory w-* whose lock nobody holds belonged to a worker that died;
 * young ones are spared (their owner may be between mkdtemp and flock). */
static void sweep_one(const char *root, const char *name) {
    char *dir = p2p_fs_join(root, name);
    char *lock = dir != NULL ? p2p_fs_join(dir, "lock") : NULL;
    struct stat st;
    int fd = lock != NULL ? open(lock, O_RDWR | O_CLOEXEC) : -1;
    bool stale = fd >= 0 ? flock(fd, LOCK_EX | LOCK_NB) == 0
                         : (dir != NULL && stat(dir, &st) == 0 && time(NULL) - st.st_mtime > 60);
    if (stale) {
        P2P_INFO("worker: removing %s, left by a worker that is gone", dir);
        p2p__worker_remove_tree(dir);
    }
    if (fd >= 0)
        close(fd);
    free(lock);
    free(dir);
}

static void sweep_stale(const char *root) {
    DIR *d = opendir(root);
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "w-", 2) == 0)
            sweep_one(root, e->d_name);
    }
    closedir(d);
}

static int prepare_work_dir(p2p_worker *w, p2p_error *err) {
    if (w->work_root == NULL && (w->work_root = p2p_fs_join(w->data_dir, "work")) == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "worker: out of memory");
    w->opts.work_dir = w->work_root;
    int rc = p2p_fs_mkdirs(w->work_root, 0700, err);
    if (rc != 0)
        return rc;
    /* Absolute from here on: a child enters its call's directories from
     * another working directory than the one a relative path was given in. */
    char *abs = realpath(w->work_root, NULL);
    if (abs == NULL)
        return p2p_error_errno(err, P2P_EIO, errno, "worker: cannot resolve %s", w->work_root);
    free(w->work_root);
    w->work_root = abs;
    w->opts.work_dir = abs;
    sweep_stale(w->work_root);
    w->work_dir = p2p_fs_join(w->work_root, "w-XXXXXX");
    if (w->work_dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "worker: out of memory");
    if (mkdtemp(w->work_dir) == NULL) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "worker: cannot create %s", w->work_dir);
        free(w->work_dir);
        w->work_dir = NULL;
        return rc;
    }
    char *lock = p2p_fs_join(w->work_dir, "lock");
    w->work_lock_fd = lock != NULL ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (w->work_lock_fd < 0 || flock(w->work_lock_fd, LOCK_EX | LOCK_NB) != 0)
        rc = p2p_error_errno(err, P2P_EIO, errno, "worker: cannot lock %s", lock ? lock : "");
    free(lock);
    return rc;
}

static int add_first_brokers(p2p_worker *w, p2p_error *err) {
    p2p_discovery_list list;
    p2p_discovery_list_init(&list);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < w->nseeds; i++)
        rc = p2p_discovery_list_add(&list, w->seeds[i]) < 0 ? P2P_ENOMEM : 0;
    if (rc == P2P_ENOMEM)
        p2p_error_set(err, rc, "worker: out of memory");
    if (rc == 0 && w->discovery_file != NULL)
        rc = p2p_discovery_read(w->discovery_file, &list, err);
    if (rc == 0 && list.count == 0)
        rc = p2p_error_set(err, P2P_EINVAL, "worker: no broker URL (%s%s)",
                           w->discovery_file ? "none in " : "give a discovery file",
                           w->discovery_file ? w->discovery_file : "");
    for (size_t i = 0; rc == 0 && i < list.count; i++)
        rc = p2p__gossip_add(w, list.items[i], "", err) < 0 ? P2P_ENOMEM : 0;
    p2p_discovery_list_cleanup(&list);
    return rc;
}

static void teardown(p2p_worker *w);

int p2p_worker_start(p2p_worker *w, p2p_error *err) {
    if (w->started || atomic_load(&w->stopping))
        return p2p_error_set(err, P2P_EINVAL, "worker: already started");
    w->started = true; /* so that teardown undoes what follows */
    int rc = load_identity(w, err);
    if (rc == 0)
        rc = make_clients(w, err);
    if (rc == 0)
        rc = prepare_work_dir(w, err);
    if (rc == 0 && w->target_spares > 0 &&
        (rc = pthread_create(&w->spawner, NULL, p2p__spawner_main, w)) != 0)
        rc = p2p_error_errno(err, P2P_ENOMEM, rc, "worker: cannot start the spawner thread");
    w->spawner_started = rc == 0 && w->target_spares > 0;
    if (rc == 0)
        rc = add_first_brokers(w, err);
    if (rc == 0 && (rc = pthread_create(&w->gossip, NULL, p2p__gossip_main, w)) != 0)
        rc = p2p_error_errno(err, P2P_ENOMEM, rc, "worker: cannot start the gossip thread");
    w->gossip_started = rc == 0;
    if (rc != 0) {
        teardown(w);
        return rc;
    }
    P2P_INFO("worker %s: %zu function(s), %zu broker(s), concurrency %u, work dir %s", w->node_id,
             w->nfns, w->nbrokers, w->opts.concurrency, w->work_dir);
    return 0;
}

/* ---- stop ---- */

static void signal_fd(int fd) {
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) != sizeof(one))
        P2P_ERROR("worker: cannot write an eventfd: %s", strerror(errno));
}

/* Waits until no call runs or `deadline_ms` passes (INT64_MAX: no limit). */
static unsigned wait_runners(p2p_worker *w, int64_t deadline_ms) {
    struct timespec ts;
    abs_deadline(deadline_ms == INT64_MAX ? INT64_MAX / 2 : deadline_ms, &ts);
    pthread_mutex_lock(&w->lock);
    while (w->busy > 0 && p2p__worker_now_ms() < deadline_ms)
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    unsigned busy = w->busy;
    pthread_mutex_unlock(&w->lock);
    return busy;
}

static void stop_claiming(p2p_worker *w) {
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stopping, true);
    pthread_cond_broadcast(&w->cond);
    pthread_cond_broadcast(&w->stop_cond);
    pthread_cond_broadcast(&w->spare_cond);
    for (size_t i = 0; i < w->nbrokers; i++) {
        for (size_t f = 0; w->brokers[i]->pollers != NULL && f < w->nfns; f++)
            p2p__poller_wake(w->brokers[i]->pollers[f]);
    }
    pthread_mutex_unlock(&w->lock);
    signal_fd(w->stop_fd);
}

static void free_brokers(p2p_worker *w) {
    for (size_t i = 0; i < w->nbrokers; i++) {
        p2p__broker *b = w->brokers[i];
        for (size_t f = 0; b->pollers != NULL && f < w->nfns; f++)
            p2p__poller_free(b->pollers[f]);
        free(b->pollers);
        free(b->url);
        free(b);
    }
    w->nbrokers = 0;
    for (size_t i = 0; i < w->naliases; i++)
        free(w->aliases[i]);
    free(w->aliases);
    w->aliases = NULL;
    w->naliases = 0;
}

/* Everything start made, in reverse; the calls are over or released. */
static void teardown(p2p_worker *w) {
    stop_claiming(w);
    if (wait_runners(w, INT64_MAX) > 0)
        P2P_ERROR("worker: runners left"); /* cannot happen: no limit */
    if (w->gossip_started)
        pthread_join(w->gossip, NULL);
    w->gossip_started = false;
    pthread_mutex_lock(&w->lock);
    w->spawner_exit = true;
    pthread_cond_broadcast(&w->spare_cond);
    pthread_mutex_unlock(&w->lock);
    if (w->spawner_started)
        pthread_join(w->spawner, NULL);
    w->spawner_started = false;
    p2p__spares_cleanup(w);
    free_brokers(w);
    for (unsigned i = 0; i < w->opts.concurrency; i++) {
        if (w->slots[i].joinable)
            pthread_join(w->slots[i].thread, NULL);
        w->slots[i].joinable = false;
    }
    p2p__calldirs_cleanup(w);
    if (w->work_dir != NULL)
        p2p__worker_remove_tree(w->work_dir);
    free(w->work_dir);
    w->work_dir = NULL;
    if (w->work_lock_fd >= 0)
        close(w->work_lock_fd);
    w->work_lock_fd = -1;
    p2p_http_client_free(w->http);
    p2p_http_client_free(w->quick);
    w->http = w->quick = NULL;
    w->started = false;
}

void p2p_worker_stop(p2p_worker *w) {
    if (w == NULL || !w->started)
        return;
    stop_claiming(w);
    pthread_mutex_lock(&w->lock);
    unsigned busy = w->busy;
    pthread_mutex_unlock(&w->lock);
    if (busy > 0) {
        P2P_INFO("worker: stopping; waiting up to %lld ms for %u call(s)",
                 (long long)w->opts.grace_ms, busy);
        busy = wait_runners(w, p2p__worker_now_ms() + w->opts.grace_ms);
    }
    if (busy > 0) {
        P2P_WARN("worker: %u call(s) still running after the grace: killing and releasing them",
                 busy);
        atomic_store(&w->aborting, true);
        signal_fd(w->abort_fd);
    }
    teardown(w);
    P2P_INFO("worker: stopped");
}

void p2p_worker_free(p2p_worker *w) {
    if (w == NULL)
        return;
    p2p_worker_stop(w);
    free(w->slots);
    for (size_t i = 0; i < w->nseeds; i++)
        free(w->seeds[i]);
    free(w->seeds);
    if (w->secret != NULL)
        p2p_secret_free(w->secret, w->opts.secret_len);
    free(w->discovery_file);
    free(w->data_dir);
    free(w->work_root);
    free(w->ca_file);
    free(w->ca_path);
    free(w->child_program);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    if (w->abort_fd >= 0)
        close(w->abort_fd);
    if (w->sync_ready) {
        pthread_mutex_destroy(&w->lock);
        pthread_mutex_destroy(&w->can_lock);
        pthread_cond_destroy(&w->cond);
        pthread_cond_destroy(&w->stop_cond);
        pthread_cond_destroy(&w->spare_cond);
    }
    free(w);
}
