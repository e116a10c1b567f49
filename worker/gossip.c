/* Brokers the worker learns of: the discovery file, read again each round,
 * and each broker's nodes route. A new URL is probed (GET /health gives the
 * broker's node UUID) so that one broker reached under two URLs is polled
 * once; such aliases are remembered and not probed again. */
#include "worker_internal.h"

#include "discovery.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

static bool valid_uuid(const char *s) {
    uuid_t u;
    return s != NULL && strlen(s) == P2P_NODE_ID_LEN && uuid_parse(s, u) == 0;
}

/* Under w->lock. */
static bool known(const p2p_worker *w, const char *url, const char *uuid) {
    for (size_t i = 0; i < w->nbrokers; i++) {
        const p2p__broker *b = w->brokers[i];
        if (strcmp(b->url, url) == 0 || (uuid[0] != '\0' && strcmp(b->uuid, uuid) == 0))
            return true;
    }
    for (size_t i = 0; i < w->naliases; i++) {
        if (strcmp(w->aliases[i], url) == 0)
            return true;
    }
    return false;
}

/* Under w->lock. Remembers that `url` names a broker already polled. */
static void add_alias(p2p_worker *w, const char *url) {
    char **grown = realloc(w->aliases, (w->naliases + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    w->aliases = grown;
    if ((w->aliases[w->naliases] = strdup(url)) != NULL)
        w->naliases++;
}

/* Under w->lock: a new broker record, or NULL (stopping, full, known). */
static p2p__broker *reserve(p2p_worker *w, const char *url, const char *uuid, p2p_error *err) {
    if (atomic_load(&w->stopping))
        return NULL;
    if (known(w, url, uuid)) {
        if (uuid[0] != '\0' && !known(w, url, ""))
            add_alias(w, url);
        return NULL;
    }
    if (w->nbrokers == P2P_WORKER_MAX_BROKERS) {
        P2P_WARN("worker: already %d brokers; not adding %s", P2P_WORKER_MAX_BROKERS, url);
        return NULL;
    }
    p2p__broker *b = calloc(1, sizeof(*b));
    if (b != NULL && ((b->url = strdup(url)) == NULL ||
                      (b->pollers = calloc(w->nfns, sizeof(*b->pollers))) == NULL)) {
        free(b->url);
        free(b);
        b = NULL;
    }
    if (b == NULL) {
        p2p_error_set(err, P2P_ENOMEM, "worker: out of memory");
        return NULL;
    }
    if (valid_uuid(uuid))
        memcpy(b->uuid, uuid, sizeof(b->uuid));
    w->brokers[w->nbrokers++] = b;
    return b;
}

int p2p__gossip_add(p2p_worker *w, const char *url, const char *uuid, p2p_error *err) {
    p2p_error e = {0};
    pthread_mutex_lock(&w->lock);
    p2p__broker *b = reserve(w, url, uuid != NULL ? uuid : "", &e);
    pthread_mutex_unlock(&w->lock);
    if (b == NULL)
        return e.code != 0 ? p2p_error_set(err, e.code, "%s", e.msg) : 0;
    /* The array holds it from now on: stop wakes and frees its pollers. Only
     * this thread (or start, before this thread exists) writes b->pollers. */
    for (size_t i = 0; i < w->nfns; i++) {
        p2p__poller *p = NULL;
        if (p2p__poller_start(w, b, &w->fns[i], &p, &e) != 0)
            P2P_ERROR("worker: %s: %s", url, e.msg);
        pthread_mutex_lock(&w->lock);
        b->pollers[i] = p;
        pthread_mutex_unlock(&w->lock);
    }
    if (w->started)
        P2P_INFO("worker: new broker %s", url);
    return 1;
}

/* GET base + path with the quick client; the JSON answer or NULL. */
static json_t *get_json(p2p_worker *w, const char *base, const char *path) {
    size_t len = strlen(base) + strlen(path) + 1;
    char *url = malloc(len);
    if (url == NULL)
        return NULL;
    snprintf(url, len, "%s%s", base, path);
    p2p_http_call req = {.method = "GET", .url = url, .idempotent = true};
    p2p_http_reply resp;
    json_t *answer = NULL;
    p2p_error err = {0};
    int rc = p2p_http_client_request(w->quick, &req, &resp, &err);
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, &err);
    if (rc == 0)
        rc = p2p_http_reply_json(&resp, &answer, &err);
    if (rc != 0)
        P2P_DEBUG("worker: gossip: %s", err.msg);
    p2p_http_reply_cleanup(&resp);
    free(url);
    return answer;
}

/* Adds what `b` reports to `found`, and learns b's own UUID. */
static void ask_nodes(p2p_worker *w, p2p__broker *b, const char *url, p2p_discovery_list *found) {
    json_t *answer = get_json(w, url, "api/v1/nodes");
    char self[P2P_NODE_ID_LEN + 1];
    p2p_error err = {0};
    if (answer != NULL && p2p_discovery_nodes(answer, found, self, NULL, &err) != 0)
        P2P_WARN("worker: %s: nodes: %s", url, err.msg);
    else if (answer != NULL && valid_uuid(self)) {
        pthread_mutex_lock(&w->lock);
        memcpy(b->uuid, self, sizeof(b->uuid));
        pthread_mutex_unlock(&w->lock);
    }
    json_decref(answer);
}

static void add_found(p2p_worker *w, const p2p_discovery_list *found) {
    for (size_t i = 0; i < found->count && !atomic_load(&w->stopping); i++) {
        const char *url = found->items[i];
        pthread_mutex_lock(&w->lock);
        bool seen = known(w, url, "");
        pthread_mutex_unlock(&w->lock);
        if (seen)
            continue;
        json_t *health = get_json(w, url, "health");
        const char *uuid = json_string_value(json_object_get(health, "node"));
        p2p_error err = {0};
        if (p2p__gossip_add(w, url, valid_uuid(uuid) ? uuid : "", &err) < 0)
            P2P_ERROR("worker: %s", err.msg);
        json_decref(health);
    }
}

static void gossip_round(p2p_worker *w) {
    p2p_discovery_list found;
    p2p_discovery_list_init(&found);
    p2p_error err = {0};
    if (w->discovery_file != NULL && p2p_discovery_read(w->discovery_file, &found, &err) != 0)
        P2P_WARN("worker: %s", err.msg);
    /* Brokers are only ever added, and only by this thread now: the ones
     * counted here stay where they are while the lock is not held. */
    pthread_mutex_lock(&w->lock);
    size_t n = w->nbrokers;
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < n && !atomic_load(&w->stopping); i++)
        ask_nodes(w, w->brokers[i], w->brokers[i]->url, &found);
    add_found(w, &found);
    p2p_discovery_list_cleanup(&found);
}

void *p2p__gossip_main(void *arg) {
    p2p_worker *w = arg;
    do {
        gossip_round(w);
    } while (p2p__worker_wait_until(w, p2p__worker_now_ms() + w->opts.gossip_interval_ms));
    return NULL;
}
