/* GET /api/v1/{function}/calls: a read-only view of a function's calls (the
 * counts by status, and a page of calls newest first), for `p2prpc status`
 * and operators. It reads the store only through p2p_store_count and
 * p2p_store_list, which every backend implements. */
#include "broker_internal.h"

#include <string.h>

/* Calls a page holds by default, and at most (p2p_store_list's bound). */
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
/* Largest offset: the store's cost grows with it. */
#define LIST_MAX_OFFSET 1000000

/* One call as the list shows it: no arguments or outputs (they may be large),
 * but who runs it and how far it is. */
static json_t *list_item_json(const p2p_call *c) {
    json_t *j =
        json_pack("{s:s, s:s, s:f, s:i, s:I, s:I, s:I, s:b}", "identifier", c->identifier, "status",
                  p2p_call_status_name(c->status), "progress", c->progress, "attempts", c->attempts,
                  "created_ms", (json_int_t)c->created_ms, "updated_ms", (json_int_t)c->updated_ms,
                  "lease_expires_ms", (json_int_t)c->lease_expires_ms, "terminate_requested",
                  c->terminate_requested);
    if (j == NULL)
        return NULL;
    json_t *worker = c->worker != NULL ? json_string(c->worker) : json_null();
    int rc = json_object_set_new(j, "worker", worker);
    if (rc == 0 && c->error != NULL)
        rc = json_object_set_new(j, "error", json_string(c->error));
    if (rc != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Reads status=, limit= and offset= into `q`; answers 400 on a bad one. */
static int read_query(p2p_http_request *req, p2p_store_query *q) {
    const char *status = p2p_http_request_query(req, "status");
    p2p_call_status s;
    q->status = -1;
    if (status != NULL) {
        if (p2p_call_status_parse(status, &s) != 0) {
            p2p_http_respond_error(req, 400, P2P_EINVAL,
                                   "status= must be pushed, queued, running, done, failed or "
                                   "terminated");
            return P2P_EINVAL;
        }
        q->status = (int)s;
    }
    int64_t limit = LIST_DEFAULT_LIMIT, offset = 0;
    p2p_error err = {0};
    int rc = p2p_http_request_query_int(req, "limit", 1, LIST_MAX_LIMIT, &limit, &err);
    if (rc == 0 || rc == P2P_ENOTFOUND)
        rc = p2p_http_request_query_int(req, "offset", 0, LIST_MAX_OFFSET, &offset, &err);
    if (rc != 0 && rc != P2P_ENOTFOUND) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "%s", err.msg);
        return rc;
    }
    q->limit = (size_t)limit;
    q->offset = (size_t)offset;
    return 0;
}

/* {"pushed": N, ..., "terminated": N} of the function `name`. */
static int counts_json(p2p_broker *b, const char *name, json_t **out, p2p_error *err) {
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    int rc = p2p_store_count(b->store, name, counts, err);
    if (rc != 0)
        return rc;
    json_t *j = json_object();
    for (int s = 0; j != NULL && s < P2P_CALL_STATUS_COUNT; s++) {
        if (json_object_set_new(j, p2p_call_status_name((p2p_call_status)s),
                                json_integer((json_int_t)counts[s])) != 0) {
            json_decref(j);
            j = NULL;
        }
    }
    if (j == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory counting calls");
    *out = j;
    return 0;
}

/* The answer's body: function, counts, the page of calls, offset, limit. */
static int list_body(p2p_broker *b, const char *name, const p2p_store_query *q, json_t **out,
                     p2p_error *err) {
    p2p_call_list list;
    p2p_call_list_init(&list);
    json_t *counts = NULL, *calls = NULL, *body = NULL;
    int rc = counts_json(b, name, &counts, err);
    if (rc == 0)
        rc = p2p_store_list(b->store, q, &list, err);
    if (rc == 0 && (calls = json_array()) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory listing calls");
    for (size_t i = 0; rc == 0 && i < list.count; i++) {
        if (json_array_append_new(calls, list_item_json(&list.items[i])) != 0)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory listing calls");
    }
    if (rc == 0) {
        body = json_pack("{s:s, s:O, s:O, s:I, s:I}", "function", name, "counts", counts, "calls",
                         calls, "offset", (json_int_t)q->offset, "limit", (json_int_t)q->limit);
        if (body == NULL)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory listing calls");
    }
    json_decref(counts);
    json_decref(calls);
    p2p_call_list_cleanup(&list);
    *out = body;
    return rc;
}

void p2p__route_calls(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    if (schema == NULL)
        return;
    p2p_store_query q = {0};
    if (read_query(req, &q) != 0)
        return;
    q.function = p2p_schema_name(schema);
    json_t *body = NULL;
    p2p_error err = {0};
    if (list_body(b, q.function, &q, &body, &err) != 0)
        p2p__route_store_error(req, &err);
    else
        p2p_http_respond_json(req, 200, body);
}
