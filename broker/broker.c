#include "broker.h"
#include "broker_internal.h"

#include "fsutil.h"
#include "hash.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest JSON body of the call routes: arguments travel inline (files go as
 * blobs), so 4 MiB is generous. */
#define JSON_BODY_MAX (4u << 20)
/* Bodies of the routes that take only an identifier. */
#define SMALL_BODY_MAX (64u << 10)

static const p2p_http_route route_table[] = {
    {"GET", "/health", p2p__route_health, P2P_HTTP_PUBLIC, 0},
    {"GET", "/metrics", p2p__route_metrics, 0, 0},
    {"GET", "/", p2p__route_status_page, 0, 0},
    {"GET", "/api/v1/nodes", p2p__route_nodes, 0, 0},
    {"GET", "/api/v1/functions", p2p__route_functions, 0, 0},
    /* max_body of the blob PUT is --max-blob-size, set at start. */
    {"PUT", "/api/v1/blobs/{hash}", p2p__route_blob_put,
     P2P_HTTP_SPOOL_TO_FILE | P2P_HTTP_HASH_BODY, 0},
    {"HEAD", "/api/v1/blobs/{hash}", p2p__route_blob_head, 0, 0},
    {"GET", "/api/v1/blobs/{hash}", p2p__route_blob_get, 0, 0},
    {"DELETE", "/api/v1/blobs/{hash}", p2p__route_blob_delete, 0, 0},
    {"POST", "/api/v1/{function}/push_update", p2p__route_push_update, 0, JSON_BODY_MAX},
    {"GET", "/api/v1/{function}/pull_update", p2p__route_pull_update, 0, 0},
    {"POST", "/api/v1/{function}/execute_function", p2p__route_execute_function, 0, SMALL_BODY_MAX},
    {"POST", "/api/v1/{function}/search_work", p2p__route_search_work, 0, SMALL_BODY_MAX},
    {"POST", "/api/v1/{function}/terminate", p2p__route_terminate, 0, SMALL_BODY_MAX},
    {"POST", "/api/v1/{function}/delete", p2p__route_delete, 0, SMALL_BODY_MAX},
    {"POST", "/api/v1/{function}/restart", p2p__route_restart, 0, SMALL_BODY_MAX},
    {"POST", "/api/v1/{function}/checkpoint", p2p__route_checkpoint_put, 0, SMALL_BODY_MAX},
    {"GET", "/api/v1/{function}/checkpoint", p2p__route_checkpoint_get, 0, 0},
    {"GET", "/api/v1/{function}/calls", p2p__route_calls, 0, 0},
};
#define N_ROUTES (sizeof(route_table) / sizeof(route_table[0]))
#define BLOB_PUT_ROUTE 5

void p2p_broker_options_init(p2p_broker_options *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->host = "127.0.0.1";
    opts->port = P2P_BROKER_DEFAULT_PORT;
    opts->lease_ms = P2P_BROKER_DEFAULT_LEASE_MS;
    opts->max_attempts = P2P_BROKER_DEFAULT_MAX_ATTEMPTS;
    opts->max_blob_size = P2P_BROKER_DEFAULT_MAX_BLOB_SIZE;
    opts->sync = P2P_STORE_SYNC_NORMAL;
}

/* ---- small shared helpers ---- */

unsigned p2p__broker_bucket(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % P2P__BROKER_EVENT_BUCKETS;
}

void p2p__broker_work_topic(const char *function, char out[P2P__BROKER_TOPIC_MAX]) {
    snprintf(out, P2P__BROKER_TOPIC_MAX, "work:%s", function);
}

void p2p__broker_call_topic(const char *identifier, char out[P2P__BROKER_TOPIC_MAX]) {
    snprintf(out, P2P__BROKER_TOPIC_MAX, "call:%s", identifier);
}

void p2p__broker_notify(p2p_broker *b, const char *topic) {
    p2p_http_server *server = atomic_load(&b->server);
    if (server != NULL)
        p2p_http_server_notify(server, topic);
}

/* The store's change callback (a store thread, after the commit): counters
 * first, then the wake-ups, in that order (see broker_internal.h). */
static void on_store_change(void *ctx, const p2p_store_change *change) {
    p2p_broker *b = ctx;
    char topic[P2P__BROKER_TOPIC_MAX];
    if (!change->deleted && change->status == P2P_CALL_QUEUED) {
        atomic_fetch_add(&b->queued_events[p2p__broker_bucket(change->function)], 1);
        p2p__broker_work_topic(change->function, topic);
        p2p__broker_notify(b, topic);
    }
    atomic_fetch_add(&b->call_events[p2p__broker_bucket(change->identifier)], 1);
    p2p__broker_call_topic(change->identifier, topic);
    p2p__broker_notify(b, topic);
}

size_t p2p__broker_remove_orphans(p2p_broker *b, const p2p_store_hashes *hashes) {
    size_t removed = 0;
    for (size_t i = 0; i < hashes->count; i++) {
        const char *hash = hashes->items[i];
        p2p_error err = {0};
        uint64_t refs = 0;
        pthread_rwlock_wrlock(&b->blob_lock);
        int rc = p2p_store_blob_refcount(b->store, hash, &refs, &err);
        if (rc == 0 && refs == 0)
            rc = p2p_blobstore_remove(b->blobs, hash, NULL, &err);
        pthread_rwlock_unlock(&b->blob_lock);
        if (rc == 0 && refs == 0)
            removed++;
        else if (rc != 0 && rc != P2P_ENOTFOUND)
            P2P_WARN("blobs: cannot remove orphan %s: %s", hash, err.msg);
    }
    p2p_metrics_add(b->metrics, P2P_METRIC_BLOBS_REMOVED, removed);
    return removed;
}

/* Runs before any byte of a body is read (on every route but /health): the
 * signature when a secret is configured, then the {hash} and {function} of
 * the path, so that a bad address costs no upload. */
static int admit(void *ctx, const p2p_http_request *req, p2p_error *err) {
    p2p_broker *b = ctx;
    if (b->verifier != NULL) {
        int rc = p2p_sign_verify(
            b->verifier, p2p_http_request_method(req), p2p_http_request_target(req),
            p2p_http_request_header(req, P2P_SIGN_HEADER_TIME),
            p2p_http_request_header(req, P2P_SIGN_HEADER_NONCE),
            p2p_http_request_header(req, P2P_SIGN_HEADER_SIGNATURE), (int64_t)time(NULL), err);
        if (rc != 0)
            return rc;
    }
    const char *hash = p2p_http_request_param(req, "hash");
    if (hash != NULL && !p2p_hash_hex_valid(hash))
        return p2p_error_set(err, P2P_EINVAL, "a blob hash is 64 lowercase hex characters");
    const char *function = p2p_http_request_param(req, "function");
    if (function != NULL && p2p_registry_find(b->registry, function) == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND, "no function %.128s on this broker", function);
    return 0;
}

static void on_complete(void *ctx, const p2p_http_request *req, unsigned status,
                        int64_t duration_us) {
    (void)req;
    p2p_broker *b = ctx;
    p2p_metrics_observe_request(b->metrics, status, duration_us);
}

static void maintenance_pass(void *ctx) {
    p2p_broker *b = ctx;
    p2p_error err = {0};
    pthread_mutex_lock(&b->maintain_lock);
    int rc = p2p__maintenance_pass(b, &err);
    pthread_mutex_unlock(&b->maintain_lock);
    if (rc != 0)
        P2P_WARN("maintenance: %s", err.msg);
}

int p2p_broker_maintain(p2p_broker *b, p2p_error *err) {
    if (!b->started)
        return p2p_error_set(err, P2P_EINVAL, "the broker is not started");
    pthread_mutex_lock(&b->maintain_lock);
    int rc = p2p__maintenance_pass(b, err);
    pthread_mutex_unlock(&b->maintain_lock);
    return rc;
}

/* ---- options ---- */

static int check_options(const p2p_broker_options *o, p2p_error *err) {
    if (o->lease_ms < 100 || o->lease_ms > 7 * 86400000LL)
        return p2p_error_set(err, P2P_EINVAL, "the lease must be between 0.1 s and 7 days");
    if (o->max_attempts < 1 || o->max_attempts > 1000)
        return p2p_error_set(err, P2P_EINVAL, "max attempts must be between 1 and 1000");
    if (o->expire_ms < 0)
        return p2p_error_set(err, P2P_EINVAL, "the expiry must not be negative");
    if (o->max_blob_size == 0)
        return p2p_error_set(err, P2P_EINVAL, "the maximum blob size must be positive");
    if ((o->tls_cert_file == NULL) != (o->tls_key_file == NULL))
        return p2p_error_set(err, P2P_EINVAL, "TLS needs both a cert file and a key file");
    if (o->secret != NULL && o->secret_len == 0)
        return p2p_error_set(err, P2P_EINVAL, "the secret is empty");
    if (o->maintenance_interval_ms < 0)
        return p2p_error_set(err, P2P_EINVAL, "the maintenance interval must not be negative");
    for (size_t i = 0; i < o->n_peers; i++)
        if (o->peers == NULL || o->peers[i] == NULL || o->peers[i][0] == '\0')
            return p2p_error_set(err, P2P_EINVAL, "peer %zu has no URL", i);
    return 0;
}

/* strdup of an optional string: true when it worked (NULL stays NULL). */
static bool dup_opt(char **dst, const char *src) {
    *dst = src != NULL ? strdup(src) : NULL;
    return src == NULL || *dst != NULL;
}

static int copy_options(p2p_broker *b, const p2p_broker_options *o, p2p_error *err) {
    b->opts = *o;
    bool ok = dup_opt(&b->host, o->host != NULL ? o->host : "127.0.0.1") &&
              dup_opt(&b->data_dir, o->data_dir) && dup_opt(&b->store_loc, o->store) &&
              dup_opt(&b->blobs_dir, o->blobs_dir) && dup_opt(&b->public_url, o->public_url) &&
              dup_opt(&b->tls_cert, o->tls_cert_file) && dup_opt(&b->tls_key, o->tls_key_file);
    if (ok && o->secret != NULL) {
        b->secret = malloc(o->secret_len);
        ok = b->secret != NULL;
        if (ok)
            memcpy(b->secret, o->secret, o->secret_len);
    }
    if (ok && o->n_peers > 0) {
        b->peers = calloc(o->n_peers, sizeof(*b->peers));
        ok = b->peers != NULL;
        for (size_t i = 0; ok && i < o->n_peers; i++)
            ok = dup_opt(&b->peers[i], o->peers[i]);
    }
    /* The copies replace the borrowed pointers; nothing borrowed is kept. */
    b->opts.host = b->opts.data_dir = b->opts.store = b->opts.blobs_dir = NULL;
    b->opts.public_url = b->opts.tls_cert_file = b->opts.tls_key_file = NULL;
    b->opts.secret = NULL;
    b->opts.peers = NULL;
    return ok ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory copying the broker options");
}

int p2p_broker_new(const p2p_broker_options *opts, p2p_broker **out, p2p_error *err) {
    int rc = check_options(opts, err);
    if (rc != 0)
        return rc;
    p2p_broker *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory creating the broker");
    pthread_rwlock_init(&b->blob_lock, NULL);
    pthread_mutex_init(&b->maintain_lock, NULL);
    atomic_init(&b->server, NULL);
    rc = copy_options(b, opts, err);
    if (rc == 0)
        rc = p2p_registry_new(&b->registry, err);
    if (rc != 0) {
        p2p_broker_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

p2p_registry *p2p_broker_registry(p2p_broker *b) {
    return b->registry;
}

uint16_t p2p_broker_port(const p2p_broker *b) {
    p2p_http_server *server = atomic_load(&((p2p_broker *)b)->server);
    return b->started && server != NULL ? p2p_http_server_port(server) : 0;
}

const char *p2p_broker_url(const p2p_broker *b) {
    return b->started ? b->url : NULL;
}

const char *p2p_broker_node_id(const p2p_broker *b) {
    return b->started ? b->node_id : NULL;
}

/* ---- start and stop ---- */

/* Data directory, node id, default store and blob locations. */
static int open_identity(p2p_broker *b, p2p_error *err) {
    int rc = 0;
    if (b->data_dir == NULL)
        rc = p2p_node_data_dir(&b->data_dir, err);
    if (rc == 0)
        rc = p2p_fs_mkdirs(b->data_dir, 0700, err);
    if (rc == 0)
        rc = p2p_node_id_load(b->data_dir, b->node_id, err);
    if (rc == 0 && b->store_loc == NULL) {
        char *path = p2p_fs_join(b->data_dir, "broker.db");
        size_t n = path != NULL ? strlen(path) + 8 : 0;
        b->store_loc = path != NULL ? malloc(n) : NULL;
        if (b->store_loc != NULL)
            snprintf(b->store_loc, n, "sqlite:%s", path);
        free(path);
        if (b->store_loc == NULL)
            rc = p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    if (rc == 0 && b->blobs_dir == NULL &&
        (b->blobs_dir = p2p_fs_join(b->data_dir, "blobs")) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, NULL);
    return rc;
}

/* The blob backend goes with the store: GridFS in the MongoDB database that
 * the brokers share (uploads are received in BLOBS_DIR/tmp), else the disk. */
static int open_blobs(p2p_broker *b, p2p_error *err) {
    bool durable = b->opts.sync == P2P_STORE_SYNC_FULL;
    if (strcmp(p2p_store_backend(b->store), "mongodb") != 0)
        return p2p_blobstore_open(b->blobs_dir, durable, &b->blobs, err);
    char *tmp = p2p_fs_join(b->blobs_dir, "tmp");
    int rc = tmp != NULL ? p2p_blobstore_open_gridfs(b->store_loc, tmp, durable, &b->blobs, err)
                         : p2p_error_set(err, P2P_ENOMEM, NULL);
    free(tmp);
    return rc;
}

static int open_storage(p2p_broker *b, p2p_error *err) {
    p2p_store_options so;
    p2p_store_options_init(&so);
    so.sync = b->opts.sync;
    so.lease_ms = b->opts.lease_ms;
    so.max_attempts = b->opts.max_attempts;
    so.call_ttl_ms = b->opts.expire_ms;
    so.clock = b->opts.clock;
    so.clock_ctx = b->opts.clock_ctx;
    so.on_change = on_store_change;
    so.on_change_ctx = b;
    int rc = p2p_store_open(b->store_loc, &so, &b->store, err);
    if (rc == 0)
        rc = open_blobs(b, err);
    if (rc == 0 && b->secret != NULL) {
        p2p_error e = {0};
        b->verifier =
            p2p_sign_verifier_new(b->secret, b->opts.secret_len, P2P_SIGN_DEFAULT_SKEW, &e);
        if (b->verifier == NULL)
            rc = p2p_error_set(err, e.code != 0 ? e.code : P2P_ENOMEM, "%s", e.msg);
    }
    if (rc == 0)
        rc = p2p_metrics_new(&b->metrics, err);
    return rc;
}

static int start_server(p2p_broker *b, p2p_error *err) {
    p2p_http_route routes[N_ROUTES];
    memcpy(routes, route_table, sizeof(routes));
    routes[BLOB_PUT_ROUTE].max_body = b->opts.max_blob_size;
    p2p_http_server_options so = {0};
    so.host = b->host;
    so.port = b->opts.port;
    so.threads = b->opts.threads != 0 ? b->opts.threads : 4;
    so.max_body = SMALL_BODY_MAX;
    so.tmp_dir = p2p_blobstore_tmp_dir(b->blobs);
    so.tls_cert_file = b->tls_cert;
    so.tls_key_file = b->tls_key;
    so.routes = routes;
    so.n_routes = N_ROUTES;
    so.handler_ctx = b;
    so.authorize = admit;
    so.authorize_ctx = b;
    so.on_complete = on_complete;
    so.on_complete_ctx = b;
    p2p_http_server *server = NULL;
    int rc = p2p_http_server_new(&so, &server, err);
    if (rc != 0)
        return rc;
    atomic_store(&b->server, server);
    rc = p2p_http_server_start(server, err);
    if (rc != 0)
        return rc;
    bool v6 = strchr(b->host, ':') != NULL;
    snprintf(b->url, sizeof(b->url), "%s://%s%s%s:%u", b->tls_cert ? "https" : "http",
             v6 ? "[" : "", b->host, v6 ? "]" : "", (unsigned)p2p_http_server_port(server));
    return 0;
}

static int64_t maintenance_interval(const p2p_broker *b) {
    if (b->opts.maintenance_interval_ms > 0)
        return b->opts.maintenance_interval_ms;
    int64_t ms = b->opts.lease_ms / 10;
    return ms < 50 ? 50 : ms > 1000 ? 1000 : ms;
}

/* Closes what start opened, in reverse order; safe on a partial start. */
static void close_all(p2p_broker *b) {
    p2p_maintenance_free(b->maintenance);
    b->maintenance = NULL;
    p2p_http_server *server = atomic_load(&b->server);
    /* Stopped first (parked requests answered, handlers done), and only then
     * hidden from the store's change callback and freed. */
    p2p_http_server_stop(server);
    atomic_store(&b->server, NULL);
    p2p_http_server_free(server);
    p2p_store_free(b->store);
    b->store = NULL;
    p2p_blobstore_free(b->blobs);
    b->blobs = NULL;
    p2p_sign_verifier_free(b->verifier);
    b->verifier = NULL;
    p2p_metrics_free(b->metrics);
    b->metrics = NULL;
}

int p2p_broker_start(p2p_broker *b, p2p_error *err) {
    if (b->started)
        return p2p_error_set(err, P2P_EINVAL, "the broker is already started");
    if (p2p_registry_count(b->registry) == 0)
        P2P_WARN("broker: no function registered; only blobs and node routes will work");
    int rc = open_identity(b, err);
    if (rc == 0)
        rc = open_storage(b, err);
    if (rc == 0)
        rc = start_server(b, err);
    b->maintenance_ms = maintenance_interval(b);
    if (rc == 0)
        rc = p2p_maintenance_new(b->maintenance_ms, maintenance_pass, b, &b->maintenance, err);
    b->started = rc == 0;
    if (rc == 0)
        rc = p2p_maintenance_start(b->maintenance, err);
    if (rc != 0) {
        b->started = false;
        close_all(b);
        return rc;
    }
    P2P_INFO("broker %s: %zu function(s), store %s, blobs %s (%s), lease %lld ms", b->node_id,
             p2p_registry_count(b->registry),
             /* A MongoDB URI may carry a password: only its backend is said. */
             strcmp(p2p_store_backend(b->store), "mongodb") == 0 ? "mongodb" : b->store_loc,
             b->blobs_dir, p2p_blobstore_backend(b->blobs), (long long)b->opts.lease_ms);
    return 0;
}

void p2p_broker_stop(p2p_broker *b) {
    if (b == NULL || !b->started)
        return;
    close_all(b);
    b->started = false;
}

void p2p_broker_free(p2p_broker *b) {
    if (b == NULL)
        return;
    p2p_broker_stop(b);
    p2p_registry_free(b->registry);
    free(b->host);
    free(b->data_dir);
    free(b->store_loc);
    free(b->blobs_dir);
    free(b->public_url);
    free(b->tls_cert);
    free(b->tls_key);
    if (b->secret != NULL)
        p2p_secret_free(b->secret, b->opts.secret_len);
    for (size_t i = 0; b->peers != NULL && i < b->opts.n_peers; i++)
        free(b->peers[i]);
    free(b->peers);
    pthread_rwlock_destroy(&b->blob_lock);
    pthread_mutex_destroy(&b->maintain_lock);
    free(b);
}
