/* p2p_client_submit: arguments to identifier, the local cache, then a
 * broker (create or attach; with file arguments pull before push and
 * missing blobs uploaded; failover). */
#include "client_internal.h"

#include "ident.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The reasons of the brokers skipped, for the "no broker reachable" error. */
#define REASONS_MAX 1024

static int check_file_arg(p2p_client *c, const char *name, const p2p_value *arg, p2p_value *out,
                          p2p_error *err) {
    if (arg->as.file.hash[0] == '\0') {
        if (arg->as.file.path == NULL)
            return p2p_error_set(err, P2P_EINVAL, "argument \"%s\": a file needs a path or a hash",
                                 name);
        p2p_filecache *fc = NULL;
        int rc = p2p__client_hasher_take(c, &fc, err);
        if (rc == 0)
            rc = p2p_filecache_file_value(fc, arg->as.file.path, out, err);
        p2p__client_hasher_give(c, fc);
        if (rc != 0 && err != NULL) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s", err->msg);
            p2p_error_set(err, rc, "argument \"%s\": %s", name, msg);
        }
        return rc;
    }
    int64_t size = arg->as.file.size;
    struct stat st;
    /* A hash given without a size: the local file says it. */
    if (size <= 0 && arg->as.file.path != NULL && stat(arg->as.file.path, &st) == 0)
        size = (int64_t)st.st_size;
    int rc = p2p_value_set_file(out, arg->as.file.path, arg->as.file.hash, size, err);
    if (rc != 0 && err != NULL) {
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        p2p_error_set(err, rc, "argument \"%s\": %s", name, msg);
    }
    return rc;
}

/* Checks `args` against the inputs and fills `vals` (file hashes computed). */
static int prepare_args(p2p_client *c, const p2p_param *in, size_t n, const p2p_value *args,
                        const p2p_ident_ref *refs, p2p_value *vals, p2p_error *err) {
    for (size_t i = 0; i < n; i++) {
        if (refs[i].identifier != NULL)
            continue; /* another call's output stands for it */
        if (args[i].type != in[i].type)
            return p2p_error_set(err, P2P_ETYPE, "argument \"%s\" is %s, the function takes %s",
                                 in[i].name, p2p_type_name(args[i].type),
                                 p2p_type_name(in[i].type));
        int rc = in[i].type == P2P_TYPE_FILE
                     ? check_file_arg(c, in[i].name, &args[i], &vals[i], err)
                     : p2p_value_copy(&vals[i], &args[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static p2p_future *future_new(p2p_client *c, const p2p_schema *schema,
                              const p2p_call_options *copts) {
    p2p_future *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->client = c;
    f->schema = schema;
    f->version = -1;
    if (copts != NULL)
        f->opts = *copts;
    return f;
}

static int keep_paths(p2p_future *f, const p2p_value *vals, size_t n, p2p_error *err) {
    f->n_inputs = n;
    if (n == 0)
        return 0;
    f->paths = calloc(n, sizeof(*f->paths));
    if (f->paths == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (vals[i].type == P2P_TYPE_FILE && vals[i].as.file.path != NULL &&
            (f->paths[i] = strdup(vals[i].as.file.path)) == NULL)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    return 0;
}

/* Identifier, wire arguments and local paths of the call into `f`. */
static int describe_call(p2p_future *f, const p2p_value *args, const p2p_arg_ref *refs,
                         size_t n_refs, p2p_error *err) {
    size_t n = 0;
    const p2p_param *in = p2p_schema_inputs(f->schema, &n);
    p2p_value *vals = calloc(n + 1, sizeof(*vals));
    p2p_ident_ref *r = calloc(n + 1, sizeof(*r));
    int rc = vals != NULL && r != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p__refs_check(f, refs, n_refs, r, err);
    if (rc == 0 && n > n_refs && args == NULL)
        rc = p2p_error_set(err, P2P_EINVAL, "args is NULL");
    if (rc == 0)
        rc = prepare_args(f->client, in, n, args, r, vals, err);
    if (rc == 0)
        rc = p2p_ident_compute_refs(f->schema, vals, r, f->identifier, err);
    if (rc == 0)
        rc = p2p__refs_args_json(in, n, vals, r, &f->args, err);
    if (rc == 0)
        rc = keep_paths(f, vals, n, err);
    if (vals != NULL)
        p2p_value_list_cleanup(vals, n);
    free(vals);
    free(r);
    return rc;
}

/* A done entry: the outputs from disk. 0 = hit; P2P_ENOTFOUND = not a usable
 * hit (its files are gone: the entry is forgotten). */
static int answer_from_cache(p2p_future *f, const p2p__ccache_entry *e, p2p_error *err) {
    json_error_t jerr;
    json_t *outputs = json_loads(e->outputs, 0, &jerr);
    int rc = outputs != NULL ? p2p__future_take_outputs(f, outputs, true, err)
                             : p2p_error_set(err, P2P_ENOTFOUND, "cached outputs: %s", jerr.text);
    if (rc == 0) {
        f->cached = true;
        f->status = P2P_CALL_DONE;
        f->progress = 100.0;
        f->wire_outputs = outputs;
        if (e->broker != NULL)
            f->broker_hint = strdup(e->broker);
        p2p__client_count(f->client, &f->client->stats.cache_hits, 1);
        return 0;
    }
    json_decref(outputs);
    if (rc == P2P_ENOTFOUND || rc == P2P_EPROTO || rc == P2P_EINVAL || rc == P2P_ETYPE) {
        P2P_INFO("client: cached call %s is incomplete; asking a broker again", f->identifier);
        p2p__ccache_drop(f->client->cache, f->identifier);
        return P2P_ENOTFOUND;
    }
    return rc;
}

/* An in-flight entry: attach to its broker's call when it still has it.
 * Asked once, without retries: a broker that is down costs one refused
 * connection before the usual walk over the brokers. */
static int attach_in_flight(p2p_future *f, const char *broker) {
    char *url = p2p_http_api_url(broker, p2p_schema_name(f->schema), "pull_update");
    p2p_error err;
    json_t *call = NULL;
    long status = 0;
    int rc =
        url != NULL ? p2p_http_url_add_query(&url, "identifier", f->identifier, &err) : P2P_ENOMEM;
    if (rc == 0)
        rc = p2p__cwire_get(f->client->probe, url, 0, &call, &status, &err);
    if (rc == 0 && (f->broker = strdup(broker)) == NULL)
        rc = P2P_ENOMEM;
    if (rc == 0)
        p2p__future_absorb(f, call);
    if (rc == 0 && f->status == P2P_CALL_TERMINATED) {
        rc = P2P_ENOTFOUND; /* the remote path runs it again */
        free(f->broker);
        f->broker = NULL;
    } else if (rc == 0) {
        p2p__client_count(f->client, &f->client->stats.calls_attached, 1);
    } else if (status == 404) {
        p2p__ccache_drop(f->client->cache, f->identifier);
    }
    json_decref(call);
    free(url);
    return rc;
}

static int try_cache(p2p_future *f, p2p_error *err) {
    p2p__ccache_entry e;
    int rc = p2p__ccache_get(f->client->cache, f->identifier, &e, err);
    if (rc != 0)
        return rc;
    if (e.done)
        rc = answer_from_cache(f, &e, err);
    else
        rc = e.broker != NULL ? attach_in_flight(f, e.broker) : P2P_ENOTFOUND;
    if (rc != 0 && rc != P2P_ENOTFOUND && !e.done)
        rc = P2P_ENOTFOUND; /* its broker is down or lost it: ask around */
    p2p__ccache_entry_cleanup(&e);
    return rc;
}

int p2p_client_submit(p2p_client *c, const p2p_schema *schema, const p2p_value *args,
                      const p2p_arg_ref *refs, size_t n_refs, const p2p_call_options *copts,
                      p2p_future **out, p2p_error *err) {
    if (out == NULL)
        return p2p_error_set(err, P2P_EINVAL, "out is NULL");
    *out = NULL;
    if (c == NULL || schema == NULL || !p2p_schema_finished(schema))
        return p2p_error_set(err, P2P_EINVAL, "submit needs a client and a finished schema");
    p2p_future *f = future_new(c, schema, copts);
    if (f == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc = describe_call(f, args, refs, n_refs, err);
    if (rc == 0) {
        rc = try_cache(f, err);
        if (rc == P2P_ENOTFOUND)
            rc = p2p__submit_remote(f, err);
    }
    if (rc != 0) {
        p2p_future_free(f);
        return rc;
    }
    *out = f;
    return 0;
}
