/* The client's brokers: those given, then the discovery file's, then those a
 * broker's nodes route reports (gossip, read the first time a broker is
 * needed and again on failover). A submit walks a snapshot of the list, so
 * each broker is tried at most once per submit. */
#include "client_internal.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Most brokers a client keeps: gossip only ever adds, so it is bounded. */
#define MAX_BROKERS 64

char *p2p__brokers_at(p2p_client *c, size_t i) {
    char *url = NULL;
    pthread_mutex_lock(&c->lock);
    if (i < c->brokers.count)
        url = strdup(c->brokers.items[i]);
    pthread_mutex_unlock(&c->lock);
    return url;
}

size_t p2p__brokers_count(p2p_client *c) {
    pthread_mutex_lock(&c->lock);
    size_t n = c->brokers.count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int p2p__brokers_probe(p2p_client *c, const char *url, p2p_error *err) {
    size_t len = strlen(url) + 8;
    char *health = malloc(len);
    if (health == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    snprintf(health, len, "%shealth", url);
    json_t *reply = NULL;
    long status = 0;
    int rc = p2p__cwire_get(c->probe, health, 0, &reply, &status, err);
    const char *s = json_string_value(json_object_get(reply, "status"));
    if (rc == 0 && (s == NULL || strcmp(s, "ok") != 0))
        rc = p2p_error_set(err, P2P_EPROTO, "%s: not a p2prpc broker's health answer", health);
    json_decref(reply);
    free(health);
    return rc;
}

void p2p__brokers_gossip(p2p_client *c, const char *url) {
    size_t len = strlen(url) + 16;
    char *nodes = malloc(len);
    if (nodes == NULL)
        return;
    snprintf(nodes, len, "%sapi/v1/nodes", url);
    p2p_discovery_list found;
    p2p_discovery_list_init(&found);
    json_t *reply = NULL;
    long status = 0;
    p2p_error err;
    int rc = p2p__cwire_get(c->http, nodes, 0, &reply, &status, &err);
    if (rc == 0)
        rc = p2p_discovery_nodes(reply, &found, NULL, NULL, &err);
    if (rc != 0)
        P2P_INFO("client: no gossip from %s: %s", url, err.msg);
    pthread_mutex_lock(&c->lock);
    c->gossiped = true;
    for (size_t i = 0; rc == 0 && i < found.count && c->brokers.count < MAX_BROKERS; i++) {
        if (p2p_discovery_list_add(&c->brokers, found.items[i]) == 1)
            P2P_INFO("client: broker %s (reported by %s)", found.items[i], url);
    }
    pthread_mutex_unlock(&c->lock);
    p2p_discovery_list_cleanup(&found);
    json_decref(reply);
    free(nodes);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool p2p__brokers_fresh(p2p_client *c, const char *url) {
    pthread_mutex_lock(&c->lock);
    bool fresh = c->last_ok != NULL && strcmp(c->last_ok, url) == 0 &&
                 mono_ms() - c->last_ok_ms < P2P__HEALTH_TTL_MS;
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

void p2p__brokers_mark(p2p_client *c, const char *url, bool ok) {
    pthread_mutex_lock(&c->lock);
    if (ok && (c->last_ok == NULL || strcmp(c->last_ok, url) != 0)) {
        free(c->last_ok);
        c->last_ok = strdup(url);
    } else if (!ok && c->last_ok != NULL && strcmp(c->last_ok, url) == 0) {
        free(c->last_ok);
        c->last_ok = NULL;
    }
    if (ok)
        c->last_ok_ms = mono_ms();
    pthread_mutex_unlock(&c->lock);
}
