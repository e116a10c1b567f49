/* The two long-polls: pull_update (wait for a call to change) and
 * search_work (wait for work to claim).
 *
 * Neither holds a thread nor polls the store while it waits: the request is
 * parked on a topic ("call:ID", "work:FUNCTION") and the store's change
 * callback wakes the topic after each commit (broker.c). On a wake the
 * handler checks again, and parks again with the time left when there is
 * still nothing for it (another waiter won the claim, or the change did not
 * concern it).
 *
 * Lost wake-ups: a change can commit between "found nothing" and "parked",
 * and its notify then finds nobody to wake. So each check first reads the
 * change counter of its bucket (bumped by the callback before it notifies),
 * and after parking reads it again: if it moved, the handler notifies its own
 * topic, and the waiter checks once more. */
#include "broker_internal.h"

#include "hash.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pull_update ---- */

typedef struct call_wait {
    p2p_broker *b;
    const p2p_schema *schema;
    char identifier[P2P_STORE_ID_LEN + 1];
    uint64_t since;
    bool has_since;
    int64_t deadline_ms; /* p2p_http_now_ms clock */
} call_wait;

static void call_check(p2p_http_request *req, call_wait *w);

static void call_woken(p2p_http_request *req, void *ctx, p2p_http_wake why) {
    call_wait *w = ctx;
    if (why == P2P_HTTP_WAKE_CLOSED || why == P2P_HTTP_WAKE_SHUTDOWN) {
        p2p_http_respond_error(req, 503, P2P_ECANCELED, "the broker is stopping");
        free(w);
        return;
    }
    call_check(req, w);
}

/* Answers with the call when it changed past `since` or time is up; else parks. */
static void call_check(p2p_http_request *req, call_wait *w) {
    p2p_broker *b = w->b;
    unsigned bucket = p2p__broker_bucket(w->identifier);
    uint64_t seen = atomic_load(&b->call_events[bucket]);
    p2p_call call;
    p2p_call_init(&call);
    if (p2p__route_get_call(req, w->b, w->schema, w->identifier, &call) != 0) {
        free(w);
        return;
    }
    int64_t left = w->deadline_ms - p2p_http_now_ms();
    if (!w->has_since || call.version > w->since || left <= 0) {
        json_t *j = p2p__route_call_json(&call);
        p2p_call_cleanup(&call);
        free(w);
        if (j == NULL)
            p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        else
            p2p_http_respond_json(req, 200, j);
        return;
    }
    p2p_call_cleanup(&call);
    char topic[P2P__BROKER_TOPIC_MAX];
    p2p__broker_call_topic(w->identifier, topic);
    p2p_error err = {0};
    if (p2p_http_request_park(req, topic, left, call_woken, w, &err) != 0) {
        free(w);
        p2p_http_respond_error(req, 503, err.code, "%s", err.msg);
        return;
    }
    /* `w` belongs to the wake callback now: only stack copies are used. */
    if (atomic_load(&b->call_events[bucket]) != seen)
        p2p__broker_notify(b, topic);
}

static int query_wait(p2p_http_request *req, int64_t *wait_s) {
    p2p_error err = {0};
    *wait_s = 0;
    int rc = p2p_http_request_query_int(req, "wait", 0, P2P_BROKER_MAX_WAIT_S, wait_s, &err);
    if (rc != 0 && rc != P2P_ENOTFOUND) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "wait: %s", err.msg);
        return rc;
    }
    return 0;
}

void p2p__route_pull_update(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    if (schema == NULL)
        return;
    const char *id = p2p_http_request_query(req, "identifier");
    if (id == NULL || !p2p_hash_hex_valid(id)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "identifier= must be 64 lowercase hex characters");
        return;
    }
    int64_t wait_s = 0, since = 0;
    p2p_error err = {0};
    if (query_wait(req, &wait_s) != 0)
        return;
    int rc = p2p_http_request_query_int(req, "since", 0, INT64_MAX, &since, &err);
    if (rc != 0 && rc != P2P_ENOTFOUND) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "since: %s", err.msg);
        return;
    }
    call_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        return;
    }
    w->b = b;
    w->schema = schema;
    memcpy(w->identifier, id, sizeof(w->identifier));
    w->since = (uint64_t)since;
    w->has_since = rc == 0;
    w->deadline_ms = p2p_http_now_ms() + wait_s * 1000;
    call_check(req, w);
}

/* ---- search_work ---- */

typedef struct work_wait {
    p2p_broker *b;
    const p2p_schema *schema;
    char worker[P2P_STORE_NAME_MAX + 1];
    int64_t deadline_ms;
} work_wait;

static void work_check(p2p_http_request *req, work_wait *w, bool last);

static void work_woken(p2p_http_request *req, void *ctx, p2p_http_wake why) {
    work_wait *w = ctx;
    if (why == P2P_HTTP_WAKE_CLOSED || why == P2P_HTTP_WAKE_SHUTDOWN) {
        /* Nothing is claimed for a client that is gone. */
        p2p_http_respond_error(req, 503, P2P_ECANCELED, "the broker is stopping");
        free(w);
        return;
    }
    work_check(req, w, why == P2P_HTTP_WAKE_TIMEOUT);
}

static void answer_claim(p2p_http_request *req, p2p_broker *b, const p2p_call *call) {
    json_t *args = json_loads(call->args, 0, NULL);
    json_t *j = args == NULL
                    ? NULL
                    : json_pack("{s:s, s:s, s:o, s:s, s:I, s:i}", "identifier", call->identifier,
                                "function", call->function, "args", args, "lease_token",
                                call->lease_token, "lease_expires_ms",
                                (json_int_t)call->lease_expires_ms, "attempts", call->attempts);
    if (j == NULL) {
        /* The claim stands; its lease will expire and requeue the call. */
        P2P_ERROR("search_work: cannot encode claimed call %s", call->identifier);
        p2p_http_respond_error(req, 500, P2P_EINTERNAL, "cannot encode the claimed call");
        return;
    }
    p2p_metrics_add(b->metrics, P2P_METRIC_CLAIMS, 1);
    p2p_http_respond_json(req, 200, j);
}

/* Claims, or parks until the function's work topic is notified. `last`:
 * the wait is over, this is the final attempt. */
static void work_check(p2p_http_request *req, work_wait *w, bool last) {
    p2p_broker *b = w->b;
    const char *function = p2p_schema_name(w->schema);
    unsigned bucket = p2p__broker_bucket(function);
    uint64_t seen = atomic_load(&b->queued_events[bucket]);
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err = {0};
    int rc = p2p_store_claim(b->store, function, w->worker, &call, &err);
    int64_t left = w->deadline_ms - p2p_http_now_ms();
    if (rc == 0)
        answer_claim(req, b, &call);
    else if (rc != P2P_ENOTFOUND)
        p2p__route_store_error(req, &err);
    else if (last || left <= 0)
        p2p_http_respond_empty(req, 204);
    p2p_call_cleanup(&call);
    if (rc != P2P_ENOTFOUND || last || left <= 0) {
        free(w);
        return;
    }
    char topic[P2P__BROKER_TOPIC_MAX];
    p2p__broker_work_topic(function, topic);
    if (p2p_http_request_park(req, topic, left, work_woken, w, &err) != 0) {
        free(w);
        p2p_http_respond_error(req, 503, err.code, "%s", err.msg);
        return;
    }
    if (atomic_load(&b->queued_events[bucket]) != seen)
        p2p__broker_notify(b, topic);
}

/* The worker's node id from the optional body {"worker": ID}. */
static int read_worker(p2p_http_request *req, char out[P2P_STORE_NAME_MAX + 1]) {
    snprintf(out, P2P_STORE_NAME_MAX + 1, "%s", "anonymous");
    if (p2p_http_request_body_size(req) == 0)
        return 0;
    static const char *const members[] = {"worker", NULL};
    json_t *body = NULL;
    if (p2p__route_body(req, &body) != 0)
        return P2P_EINVAL;
    int rc = p2p__route_only(req, body, members);
    const json_t *wj = json_object_get(body, "worker");
    const char *worker = json_string_value(wj);
    if (rc == 0 && wj != NULL &&
        (worker == NULL || worker[0] == '\0' || strlen(worker) > P2P_STORE_NAME_MAX ||
         strspn(worker, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:") !=
             strlen(worker))) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "\"worker\" must be 1 to %d letters, digits or '_-.:'",
                               P2P_STORE_NAME_MAX);
        rc = P2P_EINVAL;
    }
    if (rc == 0 && worker != NULL)
        snprintf(out, P2P_STORE_NAME_MAX + 1, "%s", worker);
    json_decref(body);
    return rc;
}

void p2p__route_search_work(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    int64_t wait_s = 0;
    if (schema == NULL || query_wait(req, &wait_s) != 0)
        return;
    work_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        return;
    }
    if (read_worker(req, w->worker) != 0) {
        free(w);
        return;
    }
    w->b = b;
    w->schema = schema;
    w->deadline_ms = p2p_http_now_ms() + wait_s * 1000;
    work_check(req, w, false);
}
