/* The watcher of the MongoDB store: reports to on_change the changes that
 * other brokers made to the shared database, so that a long-poll parked on
 * this broker (search_work, pull_update) learns of a call pushed, requeued
 * or finished through another one.
 *
 * Every P2P_STORE_MONGO_WATCH_MS it asks each function's collection, through
 * the `changes` index on updated_ms, for the calls changed in the last
 * WINDOW_MS before the newest change it saw, and reports those whose version
 * differs from the one it saw last time. That is one indexed query per
 * function and period, whatever the number of waiters; nothing polls per
 * request. The window absorbs clocks of brokers that differ by up to
 * WINDOW_MS. Changes made by this process are reported at once by the
 * operations themselves; they note the version they reported
 * (p2p__mg_watch_local), and the watcher skips a call whose version this
 * process already reported, so that on_change is called once per change.
 * Deletions by other brokers are not reported: a pull_update parked on a
 * deleted call answers 404 at its deadline. */
#include "store_mongo.h"

#include "log.h"
#include "store_mongo_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How far back, before the newest change seen, each look goes. */
#define WINDOW_MS 5000
/* At most this many changed calls are remembered per look. */
#define MAX_SEEN 20000

/* Local reports are forgotten after this long (ms): the window and then
 * some, so a look always finds the ones it needs. */
#define LOCAL_KEEP_MS (2 * WINDOW_MS)

typedef struct p2p__mg_seen {
    char id[P2P_STORE_ID_LEN + 1];
    int64_t version;
    int64_t at_ms; /* local reports: when (monotonic) */
} p2p__mg_seen;

/* A call found by a look, to report once the look is over. */
typedef struct found {
    p2p__mg_seen seen;
    p2p_call_status status;
    char function[P2P_STORE_NAME_MAX + 1];
} found;

static int by_id(const void *a, const void *b) {
    return strcmp(((const p2p__mg_seen *)a)->id, ((const p2p__mg_seen *)b)->id);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The version of `id` in the sorted array `list`, or -1. */
static int64_t version_in(const p2p__mg_seen *list, size_t n, const char *id) {
    p2p__mg_seen key;
    memcpy(key.id, id, sizeof(key.id));
    const p2p__mg_seen *hit = n > 0 ? bsearch(&key, list, n, sizeof(*list), by_id) : NULL;
    return hit != NULL ? hit->version : -1;
}

void p2p__mg_watch_local(p2p__mg_store *s, const char *id, int64_t version) {
    if (!s->watcher_started || strlen(id) != P2P_STORE_ID_LEN)
        return;
    pthread_mutex_lock(&s->local_lock);
    if (s->npending == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 256;
        p2p__mg_seen *grown = realloc(s->pending, cap * sizeof(*grown));
        /* Without memory the watcher reports it once more: harmless. */
        if (grown != NULL) {
            s->pending = grown;
            s->pending_cap = cap;
        }
    }
    if (s->npending < s->pending_cap) {
        p2p__mg_seen *e = &s->pending[s->npending++];
        memcpy(e->id, id, P2P_STORE_ID_LEN + 1);
        e->version = version;
        e->at_ms = mono_ms();
    }
    pthread_mutex_unlock(&s->local_lock);
}

/* Merges the pending local reports into `local` (sorted by id, the highest
 * version of each), dropping those older than LOCAL_KEEP_MS. */
static void merge_local(p2p__mg_store *s) {
    pthread_mutex_lock(&s->local_lock);
    size_t n = s->nlocal + s->npending;
    p2p__mg_seen *all = n > 0 ? malloc(n * sizeof(*all)) : NULL;
    if (all != NULL) {
        if (s->nlocal > 0)
            memcpy(all, s->local, s->nlocal * sizeof(*all));
        if (s->npending > 0)
            memcpy(all + s->nlocal, s->pending, s->npending * sizeof(*all));
        s->npending = 0;
    }
    pthread_mutex_unlock(&s->local_lock);
    if (all == NULL)
        return;
    qsort(all, n, sizeof(*all), by_id);
    int64_t old = mono_ms() - LOCAL_KEEP_MS;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && strcmp(all[kept - 1].id, all[i].id) == 0) {
            if (all[i].version > all[kept - 1].version)
                all[kept - 1].version = all[i].version;
            if (all[i].at_ms > all[kept - 1].at_ms)
                all[kept - 1].at_ms = all[i].at_ms;
        } else {
            all[kept++] = all[i];
        }
    }
    size_t fresh = 0;
    for (size_t i = 0; i < kept; i++)
        if (all[i].at_ms >= old)
            all[fresh++] = all[i];
    free(s->local);
    s->local = all;
    s->nlocal = fresh;
}

typedef struct look {
    found *calls; /* what this look found */
    size_t n, cap;
    int64_t newest; /* the newest updated_ms seen */
} look;

static void look_doc(look *l, const bson_t *doc) {
    const char *id = p2p__mg_str(doc, "_id"), *function = p2p__mg_str(doc, "function");
    int64_t updated = p2p__mg_int(doc, "updated_ms");
    p2p_call_status status;
    if (id == NULL || strlen(id) != P2P_STORE_ID_LEN || function == NULL ||
        strlen(function) > P2P_STORE_NAME_MAX || p2p__mg_status(doc, &status) != 0 ||
        l->n >= MAX_SEEN)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        found *grown = realloc(l->calls, cap * sizeof(*grown));
        if (grown == NULL)
            return;
        l->calls = grown;
        l->cap = cap;
    }
    found *f = &l->calls[l->n++];
    memcpy(f->seen.id, id, P2P_STORE_ID_LEN + 1);
    f->seen.version = p2p__mg_int(doc, "version");
    f->status = status;
    snprintf(f->function, sizeof(f->function), "%s", function);
    if (updated > l->newest)
        l->newest = updated;
}

/* Reports what the look found that is new since the last look and is not a
 * change this process reported itself. */
static void report(p2p__mg_store *s, const look *l) {
    for (size_t i = 0; i < l->n; i++) {
        const found *f = &l->calls[i];
        if (version_in(s->seen, s->nseen, f->seen.id) == f->seen.version ||
            version_in(s->local, s->nlocal, f->seen.id) >= f->seen.version)
            continue;
        p2p_store_change ch = {.identifier = f->seen.id,
                               .function = f->function,
                               .status = f->status,
                               .version = (uint64_t)f->seen.version};
        s->base.opts.on_change(s->base.opts.on_change_ctx, &ch);
    }
}

static int look_function(p2p__mg_conn *c, const char *function, int64_t since, look *l,
                         p2p_error *err) {
    mongoc_collection_t *coll = NULL;
    int rc = p2p__mg_calls(c, function, &coll, err);
    if (rc != 0)
        return rc;
    bson_t *filter = BCON_NEW("updated_ms", "{", "$gte", BCON_INT64(since), "}");
    bson_t *opts =
        BCON_NEW("projection", "{", "_id", BCON_INT32(1), "function", BCON_INT32(1), "status",
                 BCON_INT32(1), "version", BCON_INT32(1), "updated_ms", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    while (mongoc_cursor_next(cur, &doc))
        look_doc(l, doc);
    if (mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot look for changes");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return rc;
}

/* One look at every function; keeps what it saw for the next. The first
 * look reports every change of the window too: one may have happened after
 * the store opened, and a spurious wake-up only costs the waiter a check.
 * Local reports are merged after the queries, so that a change this process
 * made while they ran is known as its own. */
static int look_once(p2p__mg_store *s, int64_t *newest, p2p_error *err) {
    p2p__mg_conn c;
    char **names = NULL;
    look l = {.newest = *newest};
    int64_t since = *newest - WINDOW_MS;
    p2p__mg_acquire(s, &c);
    int rc = p2p__mg_functions(&c, &names, err);
    for (size_t i = 0; rc == 0 && names[i] != NULL; i++)
        rc = look_function(&c, names[i], since, &l, err);
    p2p__mg_names_free(names);
    p2p__mg_release(&c);
    if (rc != 0) {
        free(l.calls);
        return rc;
    }
    merge_local(s);
    report(s, &l);
    p2p__mg_seen *seen = l.n > 0 ? malloc(l.n * sizeof(*seen)) : NULL;
    size_t n = seen != NULL ? l.n : 0;
    for (size_t i = 0; i < n; i++)
        seen[i] = l.calls[i].seen;
    if (n > 0)
        qsort(seen, n, sizeof(*seen), by_id);
    free(l.calls);
    free(s->seen);
    s->seen = seen;
    s->nseen = n;
    *newest = l.newest;
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

static void *watch_main(void *arg) {
    p2p__mg_store *s = arg;
    int64_t newest = p2p__store_now(&s->base);
    bool failing = false;
    pthread_mutex_lock(&s->watch_lock);
    while (!s->watch_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        add_ms(&until, s->watch_interval_ms);
        while (!s->watch_stopping &&
               pthread_cond_timedwait(&s->watch_wake, &s->watch_lock, &until) != ETIMEDOUT)
            ;
        if (s->watch_stopping)
            break;
        pthread_mutex_unlock(&s->watch_lock);
        p2p_error err = {0};
        int rc = look_once(s, &newest, &err);
        /* Said once when it starts failing and once when it recovers. */
        if (rc != 0 && !failing)
            P2P_WARN("store watcher: %s", err.msg);
        else if (rc == 0 && failing)
            P2P_INFO("store watcher: the database answers again");
        failing = rc != 0;
        pthread_mutex_lock(&s->watch_lock);
    }
    pthread_mutex_unlock(&s->watch_lock);
    return NULL;
}

int p2p__mg_watch_start(p2p__mg_store *s, p2p_error *err) {
    if (s->base.opts.on_change == NULL)
        return 0;
    s->watch_interval_ms = P2P_STORE_MONGO_WATCH_MS;
    s->watch_stopping = false;
    int e = pthread_create(&s->watcher, NULL, watch_main, s);
    if (e != 0)
        return p2p_error_errno(err, P2P_EIO, e, "cannot start the store watcher");
    s->watcher_started = true;
    return 0;
}

void p2p__mg_watch_stop(p2p__mg_store *s) {
    if (!s->watcher_started)
        return;
    pthread_mutex_lock(&s->watch_lock);
    s->watch_stopping = true;
    pthread_cond_signal(&s->watch_wake);
    pthread_mutex_unlock(&s->watch_lock);
    pthread_join(s->watcher, NULL);
    s->watcher_started = false;
    free(s->seen);
    s->seen = NULL;
    s->nseen = 0;
    free(s->local);
    s->local = NULL;
    s->nlocal = 0;
    free(s->pending);
    s->pending = NULL;
    s->npending = s->pending_cap = 0;
}
