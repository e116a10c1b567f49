/* A call on a broker: pick a broker (health, failover, gossip), create the
 * call queued or find it there (one push_update with "execute": true); with
 * file arguments, ask first whether it has the call (pull before push) and
 * upload the blobs it lacks. */
#include "client_internal.h"

#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reasons of the brokers skipped, for the "no broker reachable" error. */
#define REASONS_MAX 1024

typedef struct upload_ctx {
    const p2p_future *f;
    const char *input;
} upload_ctx;

static int on_upload(void *arg, int64_t done, int64_t total) {
    const upload_ctx *u = arg;
    u->f->opts.on_upload(u->input, done, total, u->f->opts.upload_ctx);
    return 0;
}

static int upload_one(p2p_future *f, const char *broker, size_t i, const char *name,
                      p2p_error *err) {
    const json_t *v = json_object_get(f->args, name);
    const char *hash = json_string_value(json_object_get(v, "hash"));
    int64_t size = json_integer_value(json_object_get(v, "size"));
    if (hash == NULL)
        return 0; /* a reference: the broker has its blob already */
    int has = p2p__cwire_blob_has(f->client->http, broker, hash, size, err);
    if (has != 0)
        return has < 0 ? has : 0;
    if (f->paths == NULL || f->paths[i] == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND,
                             "argument \"%s\": blob %s is not on %s and has no local path", name,
                             hash, broker);
    upload_ctx u = {f, name};
    int rc = p2p__cwire_blob_put(f->client->http, broker, f->paths[i], hash, size,
                                 f->opts.on_upload != NULL ? on_upload : NULL, &u, err);
    if (rc == 0)
        p2p__client_count(f->client, &f->client->stats.bytes_uploaded, (uint64_t)size);
    return rc;
}

/* HEADs each file argument's blob, and PUTs those the broker lacks. */
static int upload_blobs(p2p_future *f, const char *broker, p2p_error *err) {
    size_t n = 0;
    const p2p_param *in = p2p_schema_inputs(f->schema, &n);
    for (size_t i = 0; i < n; i++) {
        int rc = in[i].type == P2P_TYPE_FILE ? upload_one(f, broker, i, in[i].name, err) : 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* GET pull_update: 0 (attached), P2P_ENOTFOUND (not there) or an error. */
static int pull(p2p_future *f, const char *broker, long *status, p2p_error *err) {
    char *url = p2p_http_api_url(broker, p2p_schema_name(f->schema), "pull_update");
    json_t *call = NULL;
    int rc = url != NULL ? p2p_http_url_add_query(&url, "identifier", f->identifier, err)
                         : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p__cwire_get(f->client->http, url, 0, &call, status, err);
    if (rc == 0)
        p2p__future_absorb(f, call);
    json_decref(call);
    free(url);
    return rc;
}

/* A 409 on create: a fingerprint mismatch names both fingerprints (the
 * broker's is the 64 hex after "serves "). */
static int conflict(const p2p_future *f, const char *broker, p2p_error *err) {
    const char *serves = err != NULL ? strstr(err->msg, "serves ") : NULL;
    if (serves == NULL)
        return P2P_ECONFLICT;
    char theirs[P2P_HASH_HEX_LEN + 1];
    snprintf(theirs, sizeof(theirs), "%s", serves + strlen("serves "));
    if (!p2p_hash_hex_valid(theirs))
        return P2P_ECONFLICT;
    return p2p_error_set(
        err, P2P_ECONFLICT, "%s: fingerprint mismatch: this client has %s, broker %s serves %s",
        p2p_schema_name(f->schema), p2p_schema_fingerprint(f->schema), broker, theirs);
}

static int push(p2p_future *f, const char *broker, long *status, p2p_error *err) {
    char *url = p2p_http_api_url(broker, p2p_schema_name(f->schema), "push_update");
    json_t *body = json_pack("{s:s, s:s, s:O, s:b}", "identifier", f->identifier, "fingerprint",
                             p2p_schema_fingerprint(f->schema), "args", f->args, "execute", 1);
    json_t *reply = NULL;
    int rc = url != NULL && body != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    /* Creating is idempotent: an existing call is never overwritten. */
    if (rc == 0)
        rc = p2p__cwire_post(f->client->http, url, body, true, &reply, status, err);
    if (rc == 0) {
        p2p__future_absorb(f, reply);
        bool created = json_is_true(json_object_get(reply, "created"));
        p2p_client *c = f->client;
        p2p__client_count(c, created ? &c->stats.calls_created : &c->stats.calls_attached, 1);
    } else if (*status == 409) {
        rc = conflict(f, broker, err);
    }
    json_decref(reply);
    json_decref(body);
    free(url);
    return rc;
}

/* A terminated call found by a new submit runs again: someone stopped that
 * run, and this caller asks for its result. (A failed call is not: it would
 * fail again; p2p_future_restart is the explicit way.) */
static int rerun_terminated(p2p_future *f, const char *broker, long *status, p2p_error *err) {
    char *url = p2p_http_api_url(broker, p2p_schema_name(f->schema), "restart");
    json_t *body = json_pack("{s:s}", "identifier", f->identifier);
    json_t *reply = NULL;
    int rc = url != NULL && body != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p__cwire_post(f->client->http, url, body, true, &reply, status, err);
    if (rc == 0 || *status == 409) { /* 409: someone restarted it first */
        p2p__future_reset(f);
        rc = pull(f, broker, status, err);
    }
    json_decref(reply);
    json_decref(body);
    free(url);
    return rc;
}

/* Whether some argument is a file given by value (not another call's output). */
static bool has_file_args(const p2p_future *f) {
    size_t n = 0;
    const p2p_param *in = p2p_schema_inputs(f->schema, &n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(f->args, in[i].name);
        if (in[i].type == P2P_TYPE_FILE && json_object_get(v, "hash") != NULL)
            return true;
    }
    return false;
}

/* The call on one broker. `*skip` says the broker is at fault: next one.
 * Without file arguments, the push alone is the dedupe (an existing call is
 * answered with its status and version), so it saves the pull's exchange.
 * With files, the pull comes first so that an existing call costs no
 * uploads. */
static int on_broker(p2p_future *f, const char *broker, bool *skip, p2p_error *err) {
    long status = 0;
    int rc = 0;
    if (has_file_args(f)) {
        rc = pull(f, broker, &status, err);
        if (rc == 0 && f->status == P2P_CALL_TERMINATED)
            rc = rerun_terminated(f, broker, &status, err);
        if (rc == 0) {
            p2p__client_count(f->client, &f->client->stats.calls_attached, 1);
            return 0;
        }
        if (status == 404)
            rc = upload_blobs(f, broker, err);
    }
    if (rc == 0 || status == 404) {
        status = 0;
        if (rc == 0)
            rc = push(f, broker, &status, err);
        if (rc == 0 && f->status == P2P_CALL_TERMINATED)
            rc = rerun_terminated(f, broker, &status, err);
    }
    /* A broker that does not serve the function (404 on create) is skipped
     * like a broker that is down: another one may serve it. */
    *skip = p2p__cwire_broker_fault(rc, status) || (rc == P2P_ENOTFOUND && status == 404);
    return rc;
}

static void add_reason(char *reasons, size_t *used, const char *url, const char *why) {
    if (*used >= REASONS_MAX)
        return;
    int n =
        snprintf(reasons + *used, REASONS_MAX - *used, "%s%s: %s", *used > 0 ? "; " : "", url, why);
    if (n > 0)
        *used += (size_t)n < REASONS_MAX - *used ? (size_t)n : REASONS_MAX - *used;
}

/* Tries `url`: 1 = the call is there now, 0 = skipped, < 0 = a final error. */
static int try_broker(p2p_future *f, const char *url, bool gossip, char *reasons, size_t *used,
                      p2p_error *err) {
    p2p_error why;
    int rc = p2p__brokers_fresh(f->client, url) ? 0 : p2p__brokers_probe(f->client, url, &why);
    if (rc == 0 && gossip)
        p2p__brokers_gossip(f->client, url);
    bool skip = true;
    if (rc == 0)
        rc = on_broker(f, url, &skip, &why);
    p2p__brokers_mark(f->client, url, rc == 0 || !skip);
    if (rc == 0) {
        f->broker = strdup(url);
        return f->broker != NULL ? 1 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    if (!skip) {
        if (err != NULL)
            *err = why;
        return rc;
    }
    P2P_INFO("client: broker %s skipped: %s", url, why.msg);
    /* The error's name is short enough for several brokers in one message;
     * a TLS failure keeps its reason, which "unauthorized" would hide. */
    const char *tls = strstr(why.msg, "SSL");
    if (tls == NULL)
        tls = strstr(why.msg, "certificate");
    char reason[P2P_SCHEMA_NAME_MAX + 32];
    if (why.code == P2P_ENOTFOUND)
        snprintf(reason, sizeof(reason), "does not serve %s", p2p_schema_name(f->schema));
    else
        snprintf(reason, sizeof(reason), "%s", tls != NULL ? tls : p2p_error_name(why.code));
    add_reason(reasons, used, url, reason);
    p2p__client_count(f->client, &f->client->stats.failovers, 1);
    return 0;
}

int p2p__submit_remote(p2p_future *f, p2p_error *err) {
    char reasons[REASONS_MAX + 1] = "";
    size_t used = 0, i = 0;
    int rc = 0;
    for (;; i++) {
        /* A pipeline lives where its upstream calls are: that broker only. */
        char *url =
            f->pinned == NULL ? p2p__brokers_at(f->client, i) : (i == 0 ? strdup(f->pinned) : NULL);
        if (url == NULL)
            break;
        pthread_mutex_lock(&f->client->lock);
        bool gossip = !f->client->gossiped || i > 0; /* first use, or failover */
        pthread_mutex_unlock(&f->client->lock);
        rc = try_broker(f, url, gossip, reasons, &used, err);
        free(url);
        if (rc != 0)
            break;
    }
    if (rc < 0)
        return rc;
    if (rc == 0)
        return p2p_error_set(err, P2P_EUNAVAIL, "no broker reachable (tried %zu: %s)", i, reasons);
    p2p_error ignored;
    if (p2p__ccache_put_in_flight(f->client->cache, f->identifier, p2p_schema_name(f->schema),
                                  f->broker, &ignored) != 0)
        P2P_WARN("client: cannot record call %s in the cache: %s", f->identifier, ignored.msg);
    return 0;
}
