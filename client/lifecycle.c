/* Terminate, restart and delete of a call (docs/protocol.md, the routes of
 * the same names). */
#include "client_internal.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* POSTs {"identifier": ID} to `route` of the call's function on `broker`. */
static int post_call(p2p_future *f, const char *broker, const char *route, json_t **reply,
                     long *status, p2p_error *err) {
    char *url = p2p_http_api_url(broker, p2p_schema_name(f->schema), route);
    json_t *body = json_pack("{s:s}", "identifier", f->identifier);
    int rc = url != NULL && body != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    /* Each of these routes gives the same result when repeated. */
    if (rc == 0)
        rc = p2p__cwire_post(f->client->http, url, body, true, reply, status, err);
    json_decref(body);
    free(url);
    return rc;
}

static const char *known_broker(const p2p_future *f) {
    return f->broker != NULL ? f->broker : f->broker_hint;
}

int p2p_future_terminate(p2p_future *f, p2p_error *err) {
    if (f == NULL)
        return p2p_error_set(err, P2P_EINVAL, "future is NULL");
    if (f->deleted)
        return p2p_error_set(err, P2P_ENOTFOUND, "call %s was deleted", f->identifier);
    if (f->cached || f->broker == NULL)
        return 0; /* answered by the cache: finished, nothing runs */
    json_t *reply = NULL;
    long status = 0;
    int rc = post_call(f, f->broker, "terminate", &reply, &status, err);
    if (rc == 0)
        p2p__future_absorb(f, reply);
    json_decref(reply);
    return rc;
}

/* Terminates a pending call and waits until it is finished. */
static int stop_run(p2p_future *f, int64_t timeout_ms, p2p_error *err) {
    if (p2p_call_status_finished(f->status))
        return 0;
    int rc = p2p_future_terminate(f, err);
    if (rc == 0)
        rc = p2p_future_wait(f, timeout_ms, err);
    if (rc == P2P_EFAILED || rc == P2P_ETERMINATED)
        rc = 0;
    return rc;
}

static void forget(p2p_future *f) {
    p2p__ccache_drop(f->client->cache, f->identifier);
}

/* Restart of an answer from the cache: find or create the call again. */
static int restart_cached(p2p_future *f, p2p_error *err) {
    forget(f);
    p2p__future_reset(f);
    free(f->broker_hint);
    f->broker_hint = NULL;
    int rc = p2p__submit_remote(f, err);
    if (rc != 0 || !p2p_call_status_finished(f->status))
        return rc; /* created anew (or running): that is the new run */
    json_t *reply = NULL;
    long status = 0;
    rc = post_call(f, f->broker, "restart", &reply, &status, err);
    json_decref(reply);
    if (rc == 0)
        p2p__future_reset(f);
    return rc;
}

int p2p_future_restart(p2p_future *f, int64_t timeout_ms, p2p_error *err) {
    if (f == NULL)
        return p2p_error_set(err, P2P_EINVAL, "future is NULL");
    if (f->deleted)
        return p2p_error_set(err, P2P_ENOTFOUND, "call %s was deleted", f->identifier);
    if (f->broker == NULL)
        return restart_cached(f, err);
    int rc = stop_run(f, timeout_ms, err);
    if (rc != 0)
        return rc;
    forget(f);
    json_t *reply = NULL;
    long status = 0;
    rc = post_call(f, f->broker, "restart", &reply, &status, err);
    json_decref(reply);
    if (rc == 0) {
        p2p__future_reset(f);
        p2p_error e;
        if (p2p__ccache_put_in_flight(f->client->cache, f->identifier, p2p_schema_name(f->schema),
                                      f->broker, &e) != 0)
            P2P_WARN("client: cannot record call %s in the cache: %s", f->identifier, e.msg);
    } else if (status == 404) {
        /* Deleted or expired meanwhile: create it again. */
        p2p__future_reset(f);
        free(f->broker);
        f->broker = NULL;
        rc = p2p__submit_remote(f, err);
    }
    return rc;
}

/* Deletes the call on `broker`; a broker that does not have it is fine. */
static int delete_on(p2p_future *f, const char *broker, p2p_error *err) {
    json_t *reply = NULL;
    long status = 0;
    int rc = post_call(f, broker, "delete", &reply, &status, err);
    json_decref(reply);
    return rc == P2P_ENOTFOUND ? 0 : rc;
}

/* No broker known (an old cache entry): ask every reachable one. */
static void delete_everywhere(p2p_future *f) {
    for (size_t i = 0; i < p2p__brokers_count(f->client); i++) {
        char *url = p2p__brokers_at(f->client, i);
        p2p_error e;
        if (url != NULL && p2p__brokers_probe(f->client, url, &e) == 0 &&
            delete_on(f, url, &e) != 0)
            P2P_INFO("client: delete of %s on %s: %s", f->identifier, url, e.msg);
        free(url);
    }
}

int p2p_future_delete(p2p_future *f, p2p_error *err) {
    if (f == NULL)
        return p2p_error_set(err, P2P_EINVAL, "future is NULL");
    if (f->deleted)
        return 0;
    int rc = 0;
    const char *broker = known_broker(f);
    if (broker != NULL)
        rc = delete_on(f, broker, err);
    else
        delete_everywhere(f);
    /* The local entry goes even when the broker cannot be reached: the next
     * identical call then asks the brokers again. */
    forget(f);
    p2p__future_reset(f);
    f->status = P2P_CALL_TERMINATED;
    f->deleted = true;
    return rc;
}
