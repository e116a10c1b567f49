/* Pipelines (DESIGN §7): a call whose argument is another call's output.
 *
 * push_update may give an input as {"ref": {"identifier": UP, "output": NAME}}.
 * The call is then created `pushed` with that reference in its stored args
 * and shown as `waiting`; it is never queued as it is. Once every upstream is
 * done, the broker substitutes each output value (a file's hash and size, the
 * blob referenced by the call from then on) and queues the call
 * (p2p_store_resolve); if an upstream failed, was terminated or deleted, the
 * call fails with "input NAME: upstream call UP failed". Nothing goes through
 * the client. Settling runs when such a call is created, when a call that a
 * waiting call refers to finishes through a worker's push, and at every
 * maintenance pass (so also at start: waiting calls live in the store and
 * survive a restart). */
#include "broker_internal.h"

#include "ident.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most waiting calls one pass looks at (pages of the store's list). */
#define PASS_MAX_CALLS 10000
#define PASS_PAGE 500

/* Answers the error and yields its code, for `rc = REFUSE(...)`. */
#define REFUSE(req, status, code, ...)                                                             \
    (p2p_http_respond_error((req), (status), (code), __VA_ARGS__), (code))

static const char ZERO_HASH[] = "0000000000000000000000000000000000000000000000000000000000000000";

bool p2p__pipeline_is_ref(const json_t *v) {
    return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "ref") != NULL;
}

bool p2p__pipeline_has_refs(const json_t *args) {
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)args, name, v) {
        if (p2p__pipeline_is_ref(v))
            return true;
    }
    return false;
}

bool p2p__pipeline_waiting(const p2p_call *call) {
    /* Inside a JSON string a quote is always escaped, so this text can only
     * be the structure of a reference in the canonical args. */
    return call->status == P2P_CALL_PUSHED && call->args != NULL &&
           strstr(call->args, "{\"ref\":{") != NULL;
}

/* A value of `type` standing in for a reference while the other arguments
 * are checked: never stored, never hashed. */
static json_t *placeholder(p2p_type type) {
    switch (type) {
    case P2P_TYPE_INT64:
        return json_integer(0);
    case P2P_TYPE_DOUBLE:
        return json_real(0.0);
    case P2P_TYPE_BOOL:
        return json_false();
    case P2P_TYPE_STRING:
        return json_string("");
    case P2P_TYPE_FILE:
        return json_pack("{s:s, s:i}", "hash", ZERO_HASH, "size", 0);
    }
    return NULL;
}

/* Checks one reference of input `param` against its upstream call. */
static int check_ref(p2p_http_request *req, p2p_broker *b, const p2p_param *param, const json_t *v,
                     p2p_ident_ref *ref) {
    const json_t *r = json_object_get(v, "ref");
    const char *up = json_string_value(json_object_get(r, "identifier"));
    const char *out = json_string_value(json_object_get(r, "output"));
    if (!json_is_object(r) || json_object_size(r) != 2 || up == NULL || out == NULL ||
        !p2p_hash_hex_valid(up)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "argument \"%s\": a reference is {\"ref\": {\"identifier\": 64 "
                               "lowercase hex, \"output\": NAME}}",
                               param->name);
        return P2P_EINVAL;
    }
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err = {0};
    int rc = p2p_store_get(b->store, up, &call, &err);
    const p2p_schema *s = rc == 0 ? p2p_registry_find(b->registry, call.function) : NULL;
    size_t n = 0;
    const p2p_param *outs = s != NULL ? p2p_schema_outputs(s, &n) : NULL;
    const p2p_param *o = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(outs[i].name, out) == 0)
            o = &outs[i];
    if (rc == P2P_ENOTFOUND)
        p2p_http_respond_error(req, 409, P2P_ECONFLICT,
                               "argument \"%s\": upstream call %s is not on this broker",
                               param->name, up);
    else if (rc != 0)
        p2p__route_store_error(req, &err);
    else if (o == NULL)
        rc = REFUSE(req, 400, P2P_EINVAL, "argument \"%s\": %s has no output \"%s\"", param->name,
                    call.function, out);
    else if (o->type != param->type)
        rc = REFUSE(req, 400, P2P_ETYPE, "argument \"%s\" is %s; output \"%s\" of %s is %s",
                    param->name, p2p_type_name(param->type), out, call.function,
                    p2p_type_name(o->type));
    p2p_call_cleanup(&call);
    if (rc == 0) {
        ref->identifier = up;
        ref->output = out;
    }
    return rc != 0 ? (rc < 0 ? rc : P2P_EINVAL) : 0;
}

/* Args with placeholders for the references (new object), refs filled. */
static json_t *split_refs(p2p_http_request *req, p2p_broker *b, const p2p_param *params, size_t n,
                          const json_t *args, p2p_ident_ref *refs) {
    json_t *plain = json_deep_copy(args);
    if (plain == NULL) {
        (void)REFUSE(req, 0, P2P_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(args, params[i].name);
        if (!p2p__pipeline_is_ref(v))
            continue;
        if (check_ref(req, b, &params[i], v, &refs[i]) != 0 ||
            json_object_set_new(plain, params[i].name, placeholder(params[i].type)) != 0) {
            json_decref(plain);
            return NULL;
        }
    }
    return plain;
}

/* The canonical args: values as the schema reads them, references as given. */
static char *canonical_args(const p2p_param *params, size_t n, const p2p_value *values,
                            const p2p_ident_ref *refs) {
    json_t *canon = json_object();
    for (size_t i = 0; canon != NULL && i < n; i++) {
        json_t *v = NULL;
        if (refs[i].identifier != NULL)
            v = json_pack("{s:{s:s, s:s}}", "ref", "identifier", refs[i].identifier, "output",
                          refs[i].output);
        else if (p2p_value_to_json(&values[i], &v, NULL) != 0)
            v = NULL;
        if (v == NULL || json_object_set_new(canon, params[i].name, v) != 0) {
            json_decref(canon);
            canon = NULL;
        }
    }
    char *text = canon != NULL ? json_dumps(canon, JSON_COMPACT) : NULL;
    json_decref(canon);
    return text;
}

/* Reads the non-reference arguments, checks the identifier, renders the
 * canonical args. The reference inputs' values are left empty. */
static int read_args(p2p_http_request *req, const p2p_schema *schema, const json_t *plain,
                     const p2p_ident_ref *refs, const char *identifier, p2p_value *values,
                     char **text) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(schema, &n);
    p2p_error err = {0};
    char mine[P2P_HASH_HEX_LEN + 1];
    int rc = p2p_value_list_from_json(params, n, plain, values, &err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (refs[i].identifier != NULL)
            p2p_value_cleanup(&values[i]);
    if (rc == 0)
        rc = p2p_ident_compute_refs(schema, values, refs, mine, &err);
    if (rc != 0)
        return REFUSE(req, 0, rc, "arguments: %s", err.msg);
    if (strcmp(mine, identifier) != 0)
        return REFUSE(req, 400, P2P_EINVAL,
                      "identifier does not match the arguments (the broker computes %s)", mine);
    if ((*text = canonical_args(params, n, values, refs)) == NULL)
        return REFUSE(req, 0, P2P_ENOMEM, "out of memory");
    return 0;
}

static void respond_created(p2p_http_request *req, p2p_broker *b, const char *identifier,
                            bool created) {
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err = {0};
    if (p2p_store_get(b->store, identifier, &call, &err) != 0) {
        p2p__route_store_error(req, &err);
        return;
    }
    const char *status =
        p2p__pipeline_waiting(&call) ? "waiting" : p2p_call_status_name(call.status);
    p2p_http_respond_json(req, created ? 201 : 200,
                          json_pack("{s:s, s:s, s:I, s:b}", "identifier", identifier, "status",
                                    status, "version", (json_int_t)call.version, "created",
                                    created));
    p2p_call_cleanup(&call);
}

static int store_waiting(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                         const p2p_value *values, const char *identifier, const char *args,
                         bool *created) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(schema, &n);
    const char **hashes = calloc(n + 1, sizeof(*hashes));
    if (hashes == NULL)
        return REFUSE(req, 0, P2P_ENOMEM, "out of memory");
    size_t nhashes = 0;
    p2p_error err = {0};
    pthread_rwlock_rdlock(&b->blob_lock);
    int rc = p2p__route_check_blobs(req, b, params, values, n, "argument", hashes, &nhashes);
    if (rc == 0) {
        /* Never available as it is: resolution queues it. */
        p2p_store_new_call in = {identifier, p2p_schema_name(schema), args, hashes, nhashes, false};
        rc = p2p_store_create(b->store, &in, NULL, created, &err);
        if (rc != 0)
            p2p__route_store_error(req, &err);
    }
    pthread_rwlock_unlock(&b->blob_lock);
    free(hashes);
    return rc;
}

void p2p__pipeline_create(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                          const json_t *args, const char *identifier) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(schema, &n);
    p2p_ident_ref *refs = calloc(n + 1, sizeof(*refs));
    p2p_value *values = calloc(n + 1, sizeof(*values));
    json_t *plain = NULL;
    char *text = NULL;
    bool created = false;
    int rc = refs != NULL && values != NULL ? 0 : REFUSE(req, 0, P2P_ENOMEM, "out of memory");
    if (rc == 0 && !p2p_store_can_resolve(b->store))
        rc = REFUSE(req, 400, P2P_EINVAL,
                    "the %s store of this broker does not support "
                    "arguments given as other calls' outputs",
                    p2p_store_backend(b->store));
    if (rc == 0 && !json_is_object(args))
        rc = REFUSE(req, 400, P2P_ETYPE, "\"args\" must be an object");
    if (rc == 0 && (plain = split_refs(req, b, params, n, args, refs)) == NULL)
        rc = P2P_EINVAL;
    if (rc == 0)
        rc = read_args(req, schema, plain, refs, identifier, values, &text);
    if (rc == 0)
        rc = store_waiting(req, b, schema, values, identifier, text, &created);
    if (rc == 0) {
        if (created)
            p2p_metrics_add(b->metrics, P2P_METRIC_CREATED, 1);
        p2p__pipeline_settle(b, identifier);
        respond_created(req, b, identifier, created);
    }
    if (values != NULL)
        p2p_value_list_cleanup(values, n);
    free(values);
    free(refs);
    json_decref(plain);
    free(text);
}

/* ---- settling ---- */

typedef enum ref_state { REF_DONE, REF_PENDING, REF_FAILED } ref_state;

/* Looks at the upstream of one reference: its value into `*value` (new
 * reference) when done, or the failure message into `why`. */
static ref_state look_up(p2p_broker *b, const char *input, const json_t *ref, json_t **value,
                         char *why, size_t why_len) {
    const char *up = json_string_value(json_object_get(ref, "identifier"));
    const char *out = json_string_value(json_object_get(ref, "output"));
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err = {0};
    int rc = up != NULL && out != NULL ? p2p_store_get(b->store, up, &call, &err) : P2P_EINVAL;
    ref_state st = REF_PENDING;
    if (rc == P2P_ENOTFOUND || rc == P2P_EINVAL) {
        snprintf(why, why_len, "input %s: upstream call %s failed (it was deleted)", input,
                 up != NULL ? up : "?");
        st = REF_FAILED;
    } else if (rc != 0) {
        P2P_WARN("pipeline: input %s: %s", input, err.msg); /* the store: try again later */
    } else if (call.status == P2P_CALL_FAILED || call.status == P2P_CALL_TERMINATED) {
        snprintf(why, why_len, "input %s: upstream call %s failed (%s)", input, up,
                 call.error != NULL ? call.error : p2p_call_status_name(call.status));
        st = REF_FAILED;
    } else if (call.status == P2P_CALL_DONE) {
        json_t *outputs = call.outputs != NULL ? json_loads(call.outputs, 0, NULL) : NULL;
        *value = json_incref(json_object_get(outputs, out));
        json_decref(outputs);
        st = *value != NULL ? REF_DONE : REF_FAILED;
        if (*value == NULL)
            snprintf(why, why_len, "input %s: upstream call %s has no output %s", input, up, out);
    }
    p2p_call_cleanup(&call);
    return st;
}

/* Replaces every reference of `args` by its upstream value; file hashes go
 * to `blobs`. REF_FAILED fills `why`. */
static ref_state substitute(p2p_broker *b, json_t *args, const char **blobs, size_t *nblobs,
                            char *why, size_t why_len) {
    const char *name;
    json_t *v;
    void *tmp;
    ref_state st = REF_DONE;
    json_object_foreach_safe(args, tmp, name, v) {
        if (!p2p__pipeline_is_ref(v))
            continue;
        json_t *value = NULL;
        ref_state one = look_up(b, name, json_object_get(v, "ref"), &value, why, why_len);
        if (one == REF_FAILED)
            return REF_FAILED;
        if (one == REF_PENDING) {
            st = REF_PENDING;
            continue;
        }
        const char *hash = json_string_value(json_object_get(value, "hash"));
        if (hash != NULL && p2p_hash_hex_valid(hash))
            blobs[(*nblobs)++] = hash; /* borrowed from `value`, kept alive by `args` */
        json_object_set_new(args, name, value);
    }
    return st;
}

static void resolve(p2p_broker *b, const char *identifier, const json_t *args, const char **blobs,
                    size_t nblobs, const char *why) {
    char *text = why == NULL ? json_dumps(args, JSON_COMPACT) : NULL;
    p2p_error err = {0};
    int rc = why == NULL && text == NULL ? P2P_ENOMEM : 0;
    /* Shared blob lock: the output blobs cannot go before they are referenced. */
    pthread_rwlock_rdlock(&b->blob_lock);
    for (size_t i = 0; rc == 0 && why == NULL && i < nblobs; i++) {
        uint64_t size = 0;
        rc = p2p_blobstore_stat(b->blobs, blobs[i], &size, &err);
    }
    if (rc == 0)
        rc = p2p_store_resolve(b->store, identifier, text, blobs, nblobs, why, &err);
    pthread_rwlock_unlock(&b->blob_lock);
    if (rc == 0 && why == NULL)
        p2p_metrics_add(b->metrics, P2P_METRIC_PIPELINE_RESOLVED, 1);
    if (rc == 0)
        P2P_INFO("pipeline: call %s %s", identifier, why != NULL ? why : "has its inputs: queued");
    else if (rc != P2P_ECONFLICT) /* settled or terminated meanwhile: nothing to do */
        P2P_WARN("pipeline: call %s: %s", identifier, err.msg);
    free(text);
}

void p2p__pipeline_settle(p2p_broker *b, const char *identifier) {
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err = {0};
    if (p2p_store_get(b->store, identifier, &call, &err) != 0 || !p2p__pipeline_waiting(&call)) {
        p2p_call_cleanup(&call);
        return;
    }
    json_t *args = json_loads(call.args, 0, NULL);
    size_t n = json_object_size(args), nblobs = 0;
    const char **blobs = calloc(n + 1, sizeof(*blobs));
    char why[512] = "";
    ref_state st = args != NULL && blobs != NULL
                       ? substitute(b, args, blobs, &nblobs, why, sizeof(why))
                       : REF_PENDING;
    if (st != REF_PENDING)
        resolve(b, identifier, args, blobs, nblobs, st == REF_FAILED ? why : NULL);
    free(blobs);
    json_decref(args);
    p2p_call_cleanup(&call);
}

void p2p__pipeline_pass(p2p_broker *b) {
    for (size_t offset = 0; offset < PASS_MAX_CALLS; offset += PASS_PAGE) {
        p2p_store_query q = {NULL, P2P_CALL_PUSHED, offset, PASS_PAGE};
        p2p_call_list list;
        p2p_call_list_init(&list);
        p2p_error err = {0};
        if (p2p_store_list(b->store, &q, &list, &err) != 0) {
            P2P_WARN("pipeline: %s", err.msg);
            p2p_call_list_cleanup(&list);
            return;
        }
        size_t count = list.count;
        for (size_t i = 0; i < count; i++) {
            if (p2p__pipeline_waiting(&list.items[i]))
                p2p__pipeline_settle(b, list.items[i].identifier);
        }
        p2p_call_list_cleanup(&list);
        if (count < PASS_PAGE)
            return;
    }
}

void p2p__pipeline_ended(p2p_broker *b, const char *identifier) {
    /* One indexed query instead of a pass over every pushed call: without
     * pipelines, the pass after each finished call was a sixth of the
     * broker's CPU. The store answers for every broker sharing it. */
    bool waiting = false;
    p2p_error err = {0};
    if (p2p_store_has_waiting(b->store, identifier, &waiting, &err) != 0) {
        P2P_WARN("pipeline: %s (settling every waiting call)", err.msg);
        waiting = true;
    }
    if (waiting)
        p2p__pipeline_pass(b);
}
