/* Helpers shared by the route handlers: function lookup, JSON bodies,
 * identifiers, and the call's JSON form. Each answers the request itself
 * when it fails, so a handler just returns. */
#include "broker_internal.h"

#include "hash.h"

#include <string.h>

const p2p_schema *p2p__route_function(p2p_http_request *req, p2p_broker *b) {
    const char *name = p2p_http_request_param(req, "function");
    const p2p_schema *s = p2p_registry_find(b->registry, name);
    if (s == NULL)
        p2p_http_respond_error(req, 404, P2P_ENOTFOUND, "no function %.128s on this broker",
                               name != NULL ? name : "");
    return s;
}

int p2p__route_body(p2p_http_request *req, json_t **out) {
    json_t *body = NULL;
    int rc = p2p_http_request_json(req, &body);
    if (rc != 0)
        return rc;
    if (!json_is_object(body)) {
        json_decref(body);
        p2p_http_respond_error(req, 400, P2P_EINVAL, "the body must be a JSON object");
        return P2P_EINVAL;
    }
    *out = body;
    return 0;
}

const char *p2p__route_identifier(p2p_http_request *req, const json_t *body) {
    const json_t *j = json_object_get(body, "identifier");
    if (j == NULL) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "missing \"identifier\"");
        return NULL;
    }
    const char *id = json_string_value(j);
    if (id == NULL || !p2p_hash_hex_valid(id)) {
        p2p_http_respond_error(req, 400, P2P_EINVAL,
                               "\"identifier\" must be 64 lowercase hex characters");
        return NULL;
    }
    return id;
}

int p2p__route_only(p2p_http_request *req, const json_t *body, const char *const *allowed) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)body, key, value) {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            p2p_http_respond_error(req, 400, P2P_EINVAL, "unexpected member \"%.64s\" in the body",
                                   key);
            return P2P_EINVAL;
        }
    }
    return 0;
}

void p2p__route_store_error(p2p_http_request *req, const p2p_error *err) {
    p2p_http_respond_err(req, err);
}

int p2p__route_get_call(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                        const char *identifier, p2p_call *call) {
    p2p_error err = {0};
    int rc = p2p_store_get(b->store, identifier, call, &err);
    if (rc == 0 && strcmp(call->function, p2p_schema_name(schema)) != 0) {
        p2p_call_cleanup(call);
        rc = p2p_error_set(&err, P2P_ENOTFOUND, "no call %s", identifier);
    }
    if (rc == P2P_ENOTFOUND)
        p2p_http_respond_error(req, 404, P2P_ENOTFOUND, "no call %s for %s", identifier,
                               p2p_schema_name(schema));
    else if (rc != 0)
        p2p__route_store_error(req, &err);
    return rc;
}

json_t *p2p__route_call_json(const p2p_call *c) {
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:f, s:i, s:I, s:I, s:I, s:b}", "identifier", c->identifier,
                  "function", c->function, "status",
                  p2p__pipeline_waiting(c) ? "waiting" : p2p_call_status_name(c->status),
                  "progress", c->progress, "attempts", c->attempts, "version",
                  (json_int_t)c->version, "created_ms", (json_int_t)c->created_ms, "updated_ms",
                  (json_int_t)c->updated_ms, "terminate_requested", c->terminate_requested);
    if (j == NULL)
        return NULL;
    int rc = 0;
    if (c->error != NULL)
        rc = json_object_set_new(j, "error", json_string(c->error));
    if (rc == 0 && c->status == P2P_CALL_DONE && c->outputs != NULL)
        rc = json_object_set_new(j, "outputs", json_loads(c->outputs, 0, NULL));
    if (rc != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}
