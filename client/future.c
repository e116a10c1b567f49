/* Futures: following a call with long-polls (`pull_update?since=&wait=`),
 * decoding its outputs, downloading output files into the cache. */
#include "client_internal.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Failed exchanges in a row (each already retried by the HTTP client) after
 * which a wait gives up on an unreachable broker. */
#define WAIT_MAX_FAILURES 5
#define WAIT_BACKOFF_BASE_MS 250L
#define WAIT_BACKOFF_MAX_MS 5000L
/* Download attempts in a row that add no byte before a wait gives up. */
#define DOWNLOAD_STALLS 3

void p2p__future_absorb(p2p_future *f, const json_t *call) {
    p2p_call_status s;
    bool known = p2p_call_status_parse(json_string_value(json_object_get(call, "status")), &s) == 0;
    if (known)
        f->status = s;
    const json_t *v = json_object_get(call, "version");
    if (json_is_integer(v))
        f->version = json_integer_value(v);
    const json_t *p = json_object_get(call, "progress");
    if (json_is_number(p) && json_number_value(p) != f->progress) {
        f->progress = json_number_value(p);
        if (f->opts.on_progress != NULL)
            f->opts.on_progress(f, f->progress, f->opts.progress_ctx);
    }
    const char *e = json_string_value(json_object_get(call, "error"));
    if (e != NULL && (f->error == NULL || strcmp(f->error, e) != 0)) {
        free(f->error);
        f->error = strdup(e);
    }
    const json_t *o = json_object_get(call, "outputs");
    if (json_is_object(o) && known && s == P2P_CALL_DONE) {
        json_decref(f->wire_outputs);
        f->wire_outputs = json_incref((json_t *)o);
    }
}

void p2p__future_reset(p2p_future *f) {
    p2p_value_list_cleanup(f->outputs, f->n_outputs);
    free(f->outputs);
    f->outputs = NULL;
    f->n_outputs = 0;
    f->have_outputs = false;
    json_decref(f->wire_outputs);
    f->wire_outputs = NULL;
    free(f->error);
    f->error = NULL;
    f->status = P2P_CALL_QUEUED;
    f->progress = 0.0;
    f->version = -1;
    f->cached = false;
}

typedef struct fetch_ctx {
    p2p_future *f;
    const char *hash;
} fetch_ctx;

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Downloads the blob into `tmp_path`, resuming what is there. An attempt
 * cut short (each already retried by the HTTP client) is followed by another
 * as long as the file grows; DOWNLOAD_STALLS attempts in a row that add no
 * byte give up (the partial file stays for the next wait to resume). */
static int fetch_blob(void *arg, const char *tmp_path, p2p_error *err) {
    fetch_ctx *x = arg;
    p2p_client *c = x->f->client;
    int64_t have = file_size(tmp_path);
    int rc = 0;
    for (int stalls = 0; stalls < DOWNLOAD_STALLS;) {
        rc = p2p__cwire_blob_get(c->http, x->f->broker, x->hash, tmp_path, err);
        int64_t now = file_size(tmp_path);
        if (now > have)
            p2p__client_count(c, &c->stats.bytes_downloaded, (uint64_t)(now - have));
        stalls = now > have ? 0 : stalls + 1;
        have = now;
        if (rc != P2P_EUNAVAIL && rc != P2P_ETIMEDOUT && rc != P2P_EPROTO)
            break; /* done, or an answer another attempt would not change */
    }
    return rc;
}

/* Makes the file output `v` local: in the cache (downloaded when missing). */
static int localise_file(p2p_future *f, p2p_value *v, bool from_cache, p2p_error *err) {
    p2p__ccache *cache = f->client->cache;
    const char *hash = v->as.file.hash;
    int rc = 0;
    if (from_cache) {
        if (!p2p__ccache_file_ok(cache, hash, v->as.file.size))
            return p2p_error_set(err, P2P_ENOTFOUND, "cached output file %s is missing", hash);
    } else if (f->broker == NULL) {
        return p2p_error_set(err, P2P_ENOTFOUND, "output file %s: no broker to fetch it", hash);
    } else {
        fetch_ctx x = {f, hash};
        rc = p2p__ccache_ensure_file(cache, hash, v->as.file.size, fetch_blob, &x, err);
        /* A damaged download was removed: one more try from scratch. */
        if (rc == P2P_EHASH)
            rc = p2p__ccache_ensure_file(cache, hash, v->as.file.size, fetch_blob, &x, err);
    }
    char *path = rc == 0 ? p2p__ccache_file_path(cache, hash) : NULL;
    if (rc == 0 && path == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0) {
        char h[P2P_HASH_HEX_LEN + 1];
        snprintf(h, sizeof(h), "%s", hash);
        rc = p2p_value_set_file(v, path, h, v->as.file.size, err);
    }
    free(path);
    return rc;
}

int p2p__future_take_outputs(p2p_future *f, const json_t *outputs, bool from_cache,
                             p2p_error *err) {
    size_t n = 0;
    const p2p_param *out = p2p_schema_outputs(f->schema, &n);
    p2p_value *vals = calloc(n, sizeof(*vals));
    if (vals == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc = p2p_value_list_from_json(out, n, outputs, vals, err);
    if (rc != 0 && err != NULL) {
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        rc = p2p_error_set(err, P2P_EPROTO, "call %s: outputs do not fit %s: %s", f->identifier,
                           p2p_schema_name(f->schema), msg);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (out[i].type == P2P_TYPE_FILE)
            rc = localise_file(f, &vals[i], from_cache, err);
    }
    if (rc != 0) {
        p2p_value_list_cleanup(vals, n);
        free(vals);
        return rc;
    }
    p2p_value_list_cleanup(f->outputs, f->n_outputs);
    free(f->outputs);
    f->outputs = vals;
    f->n_outputs = n;
    f->have_outputs = true;
    return 0;
}

/* Records a done call's outputs (and their files) in the cache. */
static void record_done(p2p_future *f) {
    char *text = json_dumps(f->wire_outputs, JSON_COMPACT | JSON_SORT_KEYS);
    const char **hashes = calloc(f->n_outputs + 1, sizeof(*hashes));
    size_t n = 0;
    for (size_t i = 0; hashes != NULL && i < f->n_outputs; i++) {
        if (f->outputs[i].type == P2P_TYPE_FILE)
            hashes[n++] = f->outputs[i].as.file.hash;
    }
    p2p_error err;
    if (text == NULL || hashes == NULL)
        P2P_WARN("client: out of memory recording call %s", f->identifier);
    else if (p2p__ccache_put_done(f->client->cache, f->identifier, p2p_schema_name(f->schema),
                                  f->broker, text, hashes, n, &err) != 0)
        P2P_WARN("client: cannot record call %s in the cache: %s", f->identifier, err.msg);
    free(hashes);
    free(text);
}

/* The outcome of a finished call. */
static int finished(p2p_future *f, p2p_error *err) {
    if (f->status == P2P_CALL_FAILED)
        return p2p_error_set(err, P2P_EFAILED, "%s", f->error != NULL ? f->error : "failed");
    if (f->status == P2P_CALL_TERMINATED)
        return p2p_error_set(err, P2P_ETERMINATED, "call %s was terminated", f->identifier);
    if (f->have_outputs)
        return 0;
    if (f->wire_outputs == NULL)
        return p2p_error_set(err, P2P_EPROTO, "call %s is done but has no outputs", f->identifier);
    int rc = p2p__future_take_outputs(f, f->wire_outputs, false, err);
    if (rc == 0)
        record_done(f);
    return rc;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One long-poll of at most `wait_s` seconds. */
static int poll_once(p2p_future *f, int wait_s, long *status, p2p_error *err) {
    char *url = p2p_http_api_url(f->broker, p2p_schema_name(f->schema), "pull_update");
    char since[32], wait[16];
    snprintf(since, sizeof(since), "%" PRId64, f->version);
    snprintf(wait, sizeof(wait), "%d", wait_s);
    int rc = url != NULL ? p2p_http_url_add_query(&url, "identifier", f->identifier, err)
                         : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0 && f->version >= 0 && wait_s > 0) {
        rc = p2p_http_url_add_query(&url, "since", since, err);
        if (rc == 0)
            rc = p2p_http_url_add_query(&url, "wait", wait, err);
    }
    json_t *call = NULL;
    long timeout = (long)wait_s * 1000 + f->client->request_timeout_ms;
    if (rc == 0)
        rc = p2p__cwire_get(f->client->http, url, timeout, &call, status, err);
    if (rc == 0)
        p2p__future_absorb(f, call);
    json_decref(call);
    free(url);
    return rc;
}

/* Seconds the next long-poll may wait: the time left, rounded up, capped. */
static int wait_seconds(const p2p_future *f, int64_t deadline) {
    if (deadline < 0)
        return f->client->poll_wait_s;
    int64_t left = deadline - mono_ms();
    if (left <= 0)
        return 0;
    int64_t s = (left + 999) / 1000;
    return s < f->client->poll_wait_s ? (int)s : f->client->poll_wait_s;
}

static int gone(p2p_future *f, p2p_error *err) {
    p2p__ccache_drop(f->client->cache, f->identifier);
    return p2p_error_set(err, P2P_ENOTFOUND, "call %s is not on broker %s (deleted or expired)",
                         f->identifier, f->broker);
}

/* The broker of the call stayed down: the last exchange's code says how. */
static int unreachable(const p2p_future *f, int rc, p2p_error *err) {
    return p2p_error_set(err, P2P_EUNAVAIL, "broker %s of call %s stayed unreachable (%s)",
                         f->broker, f->identifier, p2p_error_name(rc));
}

static int follow(p2p_future *f, int64_t deadline, p2p_error *err) {
    int failures = 0;
    for (;;) {
        int wait_s = wait_seconds(f, deadline);
        long status = 0;
        int rc = poll_once(f, wait_s, &status, err);
        if (rc == 0) {
            failures = 0;
            if (p2p_call_status_finished(f->status))
                return finished(f, err);
        } else if (status == 404) {
            return gone(f, err);
        } else if (!p2p__cwire_broker_fault(rc, status)) {
            return rc;
        } else if (++failures >= WAIT_MAX_FAILURES) {
            return unreachable(f, rc, err);
        }
        bool past = deadline >= 0 && mono_ms() >= deadline;
        if (past && rc != 0)
            return unreachable(f, rc, err);
        if (past)
            return p2p_error_set(err, P2P_ETIMEDOUT, "call %s is still %s", f->identifier,
                                 p2p_call_status_name(f->status));
        if (rc != 0) {
            /* The call lives in this broker's store: wait for it to return. */
            int64_t d = p2p_http_backoff_ms(WAIT_BACKOFF_BASE_MS, WAIT_BACKOFF_MAX_MS, failures);
            int64_t left = deadline >= 0 ? deadline - mono_ms() : d;
            sleep_ms(d < left ? d : (left > 0 ? left : 0));
        }
    }
}

int p2p_future_wait(p2p_future *f, int64_t timeout_ms, p2p_error *err) {
    if (f == NULL)
        return p2p_error_set(err, P2P_EINVAL, "future is NULL");
    if (f->deleted)
        return p2p_error_set(err, P2P_ENOTFOUND, "call %s was deleted", f->identifier);
    /* A push or terminate answer says failed or done without the message or
     * the outputs: one look (no since: at once) brings them. */
    if (f->broker != NULL && ((f->status == P2P_CALL_FAILED && f->error == NULL) ||
                              (f->status == P2P_CALL_DONE && f->wire_outputs == NULL)))
        f->version = -1;
    else if (p2p_call_status_finished(f->status) &&
             (f->have_outputs || f->status != P2P_CALL_DONE || f->broker == NULL))
        return finished(f, err);
    if (f->broker == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND, "call %s has no broker", f->identifier);
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    return follow(f, deadline, err);
}

int p2p_future_get(p2p_future *f, int64_t timeout_ms, const p2p_value **outputs, size_t *n,
                   p2p_error *err) {
    if (outputs == NULL || n == NULL)
        return p2p_error_set(err, P2P_EINVAL, "outputs and n must not be NULL");
    *outputs = NULL;
    *n = 0;
    int rc = p2p_future_wait(f, timeout_ms, err);
    if (rc != 0)
        return rc;
    *outputs = f->outputs;
    *n = f->n_outputs;
    return 0;
}

const char *p2p_future_identifier(const p2p_future *f) {
    return f->identifier;
}

const char *p2p_future_broker(const p2p_future *f) {
    return f->cached ? NULL : f->broker;
}

bool p2p_future_cached(const p2p_future *f) {
    return f->cached;
}

p2p_call_status p2p_future_status(const p2p_future *f) {
    return f->status;
}

double p2p_future_progress(const p2p_future *f) {
    return f->progress;
}

void p2p_future_free(p2p_future *f) {
    if (f == NULL)
        return;
    p2p_value_list_cleanup(f->outputs, f->n_outputs);
    free(f->outputs);
    json_decref(f->wire_outputs);
    json_decref(f->args);
    for (size_t i = 0; f->paths != NULL && i < f->n_inputs; i++)
        free(f->paths[i]);
    free(f->paths);
    free(f->broker);
    free(f->broker_hint);
    free(f->pinned);
    free(f->error);
    free(f);
}
