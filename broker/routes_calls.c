/* The per-function call routes that answer at once: push_update (a client
 * creating a call, or a worker reporting on its lease), execute_function,
 * terminate, delete and restart. The long-polls (pull_update, search_work)
 * are in routes_wait.c. */
#include "broker_internal.h"

#include "ident.h"
#include "log.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const create_members[] = {"identifier", "fingerprint", "args", "execute", NULL};
static const char *const worker_members[] = {"identifier", "lease_token", "progress",
                                             "heartbeat",  "outputs",     "error",
                                             "terminated", "release",     NULL};
static const char *const id_members[] = {"identifier", NULL};

/* The file values among `values`: each blob must be on this broker with the
 * size the value gives, else 409. Their hashes go to `hashes` (room for n).
 * Called with the blob lock held, so none can disappear before the store
 * records the reference. */
int p2p__route_check_blobs(p2p_http_request *req, p2p_broker *b, const p2p_param *params,
                           const p2p_value *values, size_t n, const char *what, const char **hashes,
                           size_t *nhashes) {
    *nhashes = 0;
    for (size_t i = 0; i < n; i++) {
        if (values[i].type != P2P_TYPE_FILE)
            continue;
        const char *hash = values[i].as.file.hash;
        uint64_t size = 0;
        p2p_error err = {0};
        int rc = p2p_blobstore_stat(b->blobs, hash, &size, &err);
        if (rc == P2P_ENOTFOUND) {
            p2p_http_respond_error(req, 409, P2P_ECONFLICT,
                                   "blob %s (%s \"%s\") is not on this broker: upload it first",
                                   hash, what, params[i].name);
            return P2P_ECONFLICT;
        }
        if (rc != 0) {
            p2p_http_respond_err(req, &err);
            return rc;
        }
        if (size != (uint64_t)values[i].as.file.size) {
            p2p_http_respond_error(req, 409, P2P_ECONFLICT,
                                   "blob %s (%s \"%s\") has %" PRIu64 " bytes, not %" PRId64, hash,
                                   what, params[i].name, size, values[i].as.file.size);
            return P2P_ECONFLICT;
        }
        hashes[(*nhashes)++] = hash;
    }
    return 0;
}

/* Reads `json` against `params` into `values` (n + 1 slots) and renders the
 * canonical JSON text (parameter order, compact) into `*text`. */
static int read_values(p2p_http_request *req, const p2p_param *params, size_t n, const json_t *json,
                       const char *what, p2p_value *values, char **text) {
    p2p_error err = {0};
    json_t *canon = NULL;
    int rc = p2p_value_list_from_json(params, n, json, values, &err);
    if (rc == 0)
        rc = p2p_value_list_to_json(params, n, values, &canon, &err);
    if (rc == 0 && (*text = json_dumps(canon, JSON_COMPACT)) == NULL)
        rc = p2p_error_set(&err, P2P_ENOMEM, "out of memory encoding the %ss", what);
    json_decref(canon);
    if (rc != 0)
        p2p_http_respond_error(req, 0, rc, "%ss: %s", what, err.msg);
    return rc;
}

/* The identifier the broker computes itself: a client cannot file a call
 * under an identifier that does not match its arguments. */
static int check_identifier(p2p_http_request *req, const p2p_schema *schema,
                            const p2p_value *values, const char *identifier) {
    char mine[P2P_HASH_HEX_LEN + 1];
    p2p_error err = {0};
    int rc = p2p_ident_compute(schema, values, mine, &err);
    if (rc != 0) {
        p2p_http_respond_err(req, &err);
        return rc;
    }
    if (strcmp(mine, identifier) != 0) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "identifier does not match the arguments (the broker computes %s)",
                               mine);
        return P2P_EINVAL;
    }
    return 0;
}

static void store_new_call(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                           const p2p_value *values, const char *identifier, const char *args,
                           bool execute) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(schema, &n);
    const char **hashes = calloc(n + 1, sizeof(*hashes));
    if (hashes == NULL) {
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        return;
    }
    p2p_call call;
    p2p_call_init(&call);
    bool created = false;
    size_t nhashes = 0;
    p2p_error err = {0};
    pthread_rwlock_rdlock(&b->blob_lock);
    int rc = p2p__route_check_blobs(req, b, params, values, n, "argument", hashes, &nhashes);
    if (rc == 0) {
        p2p_store_new_call in = {identifier, p2p_schema_name(schema), args, hashes, nhashes,
                                 execute};
        rc = p2p_store_create(b->store, &in, &call, &created, &err);
        if (rc != 0)
            p2p__route_store_error(req, &err);
    }
    pthread_rwlock_unlock(&b->blob_lock);
    if (rc == 0) {
        if (created)
            p2p_metrics_add(b->metrics, P2P_METRIC_CREATED, 1);
        p2p_http_respond_json(req, created ? 201 : 200,
                              json_pack("{s:s, s:s, s:I, s:b}", "identifier", call.identifier,
                                        "status", p2p_call_status_name(call.status), "version",
                                        (json_int_t)call.version, "created", created));
    }
    p2p_call_cleanup(&call);
    free(hashes);
}

static int read_create(p2p_http_request *req, const p2p_schema *schema, const json_t *body,
                       bool *execute) {
    const json_t *fp = json_object_get(body, "fingerprint");
    if (!json_is_string(fp)) {
        p2p_http_respond_error(req, 400, fp ? P2P_ETYPE : P2P_EINVAL,
                               "\"fingerprint\" (a string) is required");
        return P2P_EINVAL;
    }
    if (strcmp(json_string_value(fp), p2p_schema_fingerprint(schema)) != 0) {
        p2p_http_respond_error(req, 409, P2P_ECONFLICT, "fingerprint mismatch: broker serves %s",
                               p2p_schema_fingerprint(schema));
        return P2P_ECONFLICT;
    }
    const json_t *ex = json_object_get(body, "execute");
    if (ex != NULL && !json_is_boolean(ex)) {
        p2p_http_respond_error(req, 400, P2P_ETYPE, "\"execute\" must be true or false");
        return P2P_ETYPE;
    }
    *execute = json_is_true(ex);
    if (json_object_get(body, "args") == NULL) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "\"args\" (an object) is required");
        return P2P_EINVAL;
    }
    return 0;
}

static void create_call(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                        const json_t *body) {
    bool execute = false;
    if (p2p__route_only(req, body, create_members) != 0)
        return;
    const char *identifier = p2p__route_identifier(req, body);
    if (identifier == NULL || read_create(req, schema, body, &execute) != 0)
        return;
    if (p2p__pipeline_has_refs(json_object_get(body, "args"))) {
        p2p__pipeline_create(req, b, schema, json_object_get(body, "args"), identifier);
        return;
    }
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(schema, &n);
    p2p_value *values = calloc(n + 1, sizeof(*values));
    char *args = NULL;
    if (values == NULL) {
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        return;
    }
    int rc = read_values(req, params, n, json_object_get(body, "args"), "argument", values, &args);
    if (rc == 0)
        rc = check_identifier(req, schema, values, identifier);
    if (rc == 0)
        store_new_call(req, b, schema, values, identifier, args, execute);
    p2p_value_list_cleanup(values, n);
    free(values);
    free(args);
}

/* ---- worker updates ---- */

typedef enum update_kind {
    UP_HEARTBEAT,
    UP_PROGRESS,
    UP_OUTPUTS,
    UP_ERROR,
    UP_TERMINATED,
    UP_RELEASE
} update_kind;

/* Which update `body` is: exactly one of progress, outputs, error,
 * terminated and release, or a bare heartbeat (which may also ride with
 * progress). */
static int update_kind_of(p2p_http_request *req, const json_t *body, update_kind *kind) {
    static const char *const names[] = {"progress", "outputs", "error", "terminated", "release"};
    static const update_kind kinds[] = {UP_PROGRESS, UP_OUTPUTS, UP_ERROR, UP_TERMINATED,
                                        UP_RELEASE};
    const json_t *hb = json_object_get(body, "heartbeat");
    if (hb != NULL && !json_is_true(hb)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "\"heartbeat\" can only be true");
        return P2P_EINVAL;
    }
    int found = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (json_object_get(body, names[i]) != NULL) {
            *kind = kinds[i];
            found++;
        }
    }
    if (found == 0 && hb != NULL)
        *kind = UP_HEARTBEAT;
    if (found > 1 || (found == 0 && hb == NULL) ||
        (hb != NULL && found == 1 && *kind != UP_PROGRESS)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "a worker update carries exactly one of \"progress\", "
                               "\"heartbeat\", \"outputs\", \"error\", \"terminated\" or "
                               "\"release\"");
        return P2P_EINVAL;
    }
    return 0;
}

static void reply_update(p2p_http_request *req, const char *identifier, p2p_call_status status,
                         bool terminate_requested, int64_t lease_expires_ms) {
    p2p_http_respond_json(req, 200,
                          json_pack("{s:s, s:s, s:b, s:I}", "identifier", identifier, "status",
                                    p2p_call_status_name(status), "terminate_requested",
                                    terminate_requested, "lease_expires_ms",
                                    (json_int_t)lease_expires_ms));
}

static void renew(p2p_http_request *req, p2p_broker *b, const json_t *body, const char *id,
                  const char *token, update_kind kind) {
    p2p_store_lease lease = {0};
    p2p_error err = {0};
    int rc;
    if (kind == UP_HEARTBEAT) {
        rc = p2p_store_renew(b->store, id, token, &lease, &err);
    } else {
        const json_t *p = json_object_get(body, "progress");
        if (!json_is_number(p) || !(json_number_value(p) >= 0 && json_number_value(p) <= 100)) {
            p2p_http_respond_error(req, 400, json_is_number(p) ? P2P_EINVAL : P2P_ETYPE,
                                   "\"progress\" must be a number from 0 to 100");
            return;
        }
        rc = p2p_store_progress(b->store, id, token, json_number_value(p), &lease, &err);
    }
    if (rc != 0)
        p2p__route_store_error(req, &err);
    else
        reply_update(req, id, P2P_CALL_RUNNING, lease.terminate_requested, lease.expires_ms);
}

static void complete(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                     const json_t *body, const p2p_call *call, const char *token) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_outputs(schema, &n);
    p2p_value *values = calloc(n + 1, sizeof(*values));
    const char **hashes = calloc(n + 1, sizeof(*hashes));
    char *text = NULL;
    int rc = values != NULL && hashes != NULL ? 0 : P2P_ENOMEM;
    if (rc != 0)
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = read_values(req, params, n, json_object_get(body, "outputs"), "output", values, &text);
    if (rc == 0) {
        size_t nhashes = 0;
        p2p_error err = {0};
        pthread_rwlock_rdlock(&b->blob_lock);
        rc = p2p__route_check_blobs(req, b, params, values, n, "output", hashes, &nhashes);
        if (rc == 0 && (rc = p2p_store_complete(b->store, call->identifier, token, text, hashes,
                                                nhashes, &err)) != 0)
            p2p__route_store_error(req, &err);
        pthread_rwlock_unlock(&b->blob_lock);
    }
    if (rc == 0) {
        reply_update(req, call->identifier, P2P_CALL_DONE, call->terminate_requested, 0);
        p2p__pipeline_ended(b, call->identifier); /* calls waiting for its outputs */
    }
    if (values != NULL)
        p2p_value_list_cleanup(values, n);
    free(values);
    free(hashes);
    free(text);
}

static void finish(p2p_http_request *req, p2p_broker *b, const json_t *body, const p2p_call *call,
                   const char *token, update_kind kind) {
    p2p_error err = {0};
    int rc;
    p2p_call_status status;
    if (kind == UP_ERROR) {
        const char *msg = json_string_value(json_object_get(body, "error"));
        if (msg == NULL) {
            p2p_http_respond_error(req, 400, P2P_ETYPE, "\"error\" must be a string");
            return;
        }
        rc = p2p_store_fail(b->store, call->identifier, token, msg, &err);
        status = P2P_CALL_FAILED;
    } else {
        if (!json_is_true(json_object_get(body, "terminated"))) {
            p2p_http_respond_error(req, 400, P2P_EINVAL, "\"terminated\" can only be true");
            return;
        }
        rc = p2p_store_mark_terminated(b->store, call->identifier, token, &err);
        status = P2P_CALL_TERMINATED;
    }
    if (rc != 0) {
        p2p__route_store_error(req, &err);
    } else {
        reply_update(req, call->identifier, status, call->terminate_requested, 0);
        p2p__pipeline_ended(b, call->identifier); /* calls waiting for it fail */
    }
}

/* The worker gives the call back (it is shutting down): queued again at
 * once, or terminated when it was asked to stop. */
static void release(p2p_http_request *req, p2p_broker *b, const json_t *body, const p2p_call *call,
                    const char *token) {
    if (!json_is_true(json_object_get(body, "release"))) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "\"release\" can only be true");
        return;
    }
    p2p_error err = {0};
    p2p_call_status status = P2P_CALL_QUEUED;
    int rc = p2p_store_release(b->store, call->identifier, token, &status, &err);
    if (rc != 0)
        p2p__route_store_error(req, &err);
    else
        reply_update(req, call->identifier, status, call->terminate_requested, 0);
}

static void worker_update(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                          const json_t *body) {
    update_kind kind = UP_HEARTBEAT;
    if (p2p__route_only(req, body, worker_members) != 0 || update_kind_of(req, body, &kind) != 0)
        return;
    const char *id = p2p__route_identifier(req, body);
    if (id == NULL)
        return;
    const char *token = json_string_value(json_object_get(body, "lease_token"));
    if (token == NULL) {
        p2p_http_respond_error(req, 400, P2P_ETYPE, "\"lease_token\" must be a string");
        return;
    }
    p2p_call call;
    p2p_call_init(&call);
    if (p2p__route_get_call(req, b, schema, id, &call) != 0)
        return;
    if (kind == UP_HEARTBEAT || kind == UP_PROGRESS)
        renew(req, b, body, id, token, kind);
    else if (kind == UP_OUTPUTS)
        complete(req, b, schema, body, &call, token);
    else if (kind == UP_RELEASE)
        release(req, b, body, &call, token);
    else
        finish(req, b, body, &call, token, kind);
    p2p_call_cleanup(&call);
}

void p2p__route_push_update(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    const p2p_schema *schema = p2p__route_function(req, b);
    json_t *body = NULL;
    if (schema == NULL || p2p__route_body(req, &body) != 0)
        return;
    if (json_object_get(body, "lease_token") != NULL)
        worker_update(req, b, schema, body);
    else
        create_call(req, b, schema, body);
    json_decref(body);
}

/* ---- routes that take {"identifier"} ---- */

/* Function, body {"identifier": ID} and the call; answers on failure. */
static int identified_call(p2p_http_request *req, p2p_broker *b, p2p_call *call) {
    const p2p_schema *schema = p2p__route_function(req, b);
    json_t *body = NULL;
    if (schema == NULL || p2p__route_body(req, &body) != 0)
        return P2P_EINVAL;
    int rc = p2p__route_only(req, body, id_members);
    const char *id = rc == 0 ? p2p__route_identifier(req, body) : NULL;
    if (rc == 0 && id == NULL)
        rc = P2P_EINVAL;
    if (rc == 0)
        rc = p2p__route_get_call(req, b, schema, id, call);
    json_decref(body);
    return rc;
}

void p2p__route_execute_function(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    p2p_call call;
    p2p_call_init(&call);
    if (identified_call(req, b, &call) != 0)
        return;
    if (p2p__pipeline_waiting(&call)) {
        p2p_http_respond_error(
            req, 409, P2P_ECONFLICT,
            "call %s is waiting for its inputs (it is queued once they are done)", call.identifier);
        p2p_call_cleanup(&call);
        return;
    }
    bool changed = false;
    p2p_error err = {0};
    int rc = p2p_store_make_available(b->store, call.identifier, &changed, &err);
    if (rc == 0) {
        char id[P2P_STORE_ID_LEN + 1];
        memcpy(id, call.identifier, sizeof(id));
        p2p_call_cleanup(&call);
        rc = p2p_store_get(b->store, id, &call, &err);
    }
    if (rc != 0)
        p2p__route_store_error(req, &err);
    else
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:s, s:b}", "identifier", call.identifier, "status",
                                        p2p_call_status_name(call.status), "changed", changed));
    p2p_call_cleanup(&call);
}

void p2p__route_terminate(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    p2p_call call;
    p2p_call_init(&call);
    if (identified_call(req, b, &call) != 0)
        return;
    p2p_call_status status = call.status;
    p2p_error err = {0};
    int rc = p2p_store_terminate(b->store, call.identifier, &status, &err);
    if (rc != 0)
        p2p__route_store_error(req, &err);
    else
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:s, s:b}", "identifier", call.identifier, "status",
                                        p2p_call_status_name(status), "terminate_requested",
                                        status == P2P_CALL_RUNNING));
    p2p_call_cleanup(&call);
}

void p2p__route_delete(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    p2p_call call;
    p2p_call_init(&call);
    if (identified_call(req, b, &call) != 0)
        return;
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    p2p_error err = {0};
    /* Terminate first, so that a waiter on the call sees it stop before it
     * disappears; a running worker learns it at its next renew (not found). */
    int rc = p2p_store_terminate(b->store, call.identifier, NULL, &err);
    if (rc == 0 || rc == P2P_ENOTFOUND)
        rc = p2p_store_delete(b->store, call.identifier, &orphans, &err);
    if (rc != 0) {
        p2p__route_store_error(req, &err);
    } else {
        size_t removed = p2p__broker_remove_orphans(b, &orphans);
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:b, s:I}", "identifier", call.identifier, "deleted",
                                        1, "blobs_removed", (json_int_t)removed));
    }
    p2p_store_hashes_cleanup(&orphans);
    p2p_call_cleanup(&call);
}

void p2p__route_restart(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    p2p_call call;
    p2p_call_init(&call);
    if (identified_call(req, b, &call) != 0)
        return;
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    p2p_error err = {0};
    int rc = p2p_store_restart(b->store, call.identifier, &orphans, &err);
    if (rc != 0) {
        p2p__route_store_error(req, &err);
    } else {
        p2p__broker_remove_orphans(b, &orphans);
        p2p_http_respond_json(req, 200,
                              json_pack("{s:s, s:s}", "identifier", call.identifier, "status",
                                        p2p_call_status_name(P2P_CALL_QUEUED)));
    }
    p2p_store_hashes_cleanup(&orphans);
    p2p_call_cleanup(&call);
}
