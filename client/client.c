/* The client object: options, the secret, the HTTP clients, the local cache,
 * the broker list and the counters. */
#include "client_internal.h"

#include "fsutil.h"
#include "log.h"
#include "node.h"
#include "sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Most file-hash cache handles kept idle (one per concurrent submitter). */
#define MAX_IDLE_HASHERS 8

static int check_options(const p2p_client_options *o, p2p_error *err) {
    if (o->n_brokers > 0 && o->brokers == NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "client options: n_brokers is %zu but brokers is NULL", o->n_brokers);
    if (o->n_brokers == 0 && o->discovery_file == NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "client options: no broker (give brokers or a discovery_file)");
    if (o->secret_file != NULL && o->secret != NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "client options: give secret_file or secret, not both");
    if (o->secret != NULL && o->secret_len == 0)
        return p2p_error_set(err, P2P_EINVAL, "client options: secret_len is 0");
    if (o->connect_timeout_ms <= 0 || o->request_timeout_ms <= 0)
        return p2p_error_set(
            err, P2P_EINVAL,
            "client options: connect_timeout_ms and request_timeout_ms must be > 0");
    if (o->poll_wait_s < 1 || o->poll_wait_s > 300)
        return p2p_error_set(err, P2P_EINVAL, "client options: poll_wait_s %d is not in 1..300",
                             o->poll_wait_s);
    return 0;
}

static int add_brokers(p2p_client *c, const p2p_client_options *o, p2p_error *err) {
    for (size_t i = 0; i < o->n_brokers; i++) {
        char *norm = NULL;
        int rc = p2p_discovery_normalize(o->brokers[i], &norm, err);
        if (rc != 0) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s", err != NULL ? err->msg : "");
            return p2p_error_set(err, rc, "client options: broker %zu: %s", i, msg);
        }
        rc = p2p_discovery_list_add(&c->brokers, norm);
        free(norm);
        if (rc < 0)
            return p2p_error_set(err, rc, "out of memory");
    }
    if (o->discovery_file != NULL)
        return p2p_discovery_read(o->discovery_file, &c->brokers, err);
    return 0;
}

static int make_http(p2p_client *c, const p2p_client_options *o, const unsigned char *secret,
                     size_t secret_len, p2p_error *err) {
    p2p_http_client_options h;
    p2p_http_client_options_init(&h);
    h.connect_timeout_ms = (long)o->connect_timeout_ms;
    h.timeout_ms = (long)o->request_timeout_ms;
    h.secret = secret;
    h.secret_len = secret_len;
    h.ca_file = o->ca_file;
    h.ca_path = o->ca_path;
    h.insecure = o->insecure;
    c->http = p2p_http_client_new(&h, err);
    if (c->http == NULL)
        return err != NULL ? err->code : P2P_ENOMEM;
    h.max_retries = 0;
    h.pool_size = 2;
    h.timeout_ms = P2P__PROBE_TIMEOUT_MS;
    if (h.connect_timeout_ms > P2P__PROBE_TIMEOUT_MS)
        h.connect_timeout_ms = P2P__PROBE_TIMEOUT_MS;
    c->probe = p2p_http_client_new(&h, err);
    return c->probe != NULL ? 0 : (err != NULL ? err->code : P2P_ENOMEM);
}

static int open_cache(p2p_client *c, const char *cache_path, p2p_error *err) {
    char *data = NULL;
    char *dir = NULL;
    int rc = 0;
    if (cache_path == NULL) {
        rc = p2p_node_data_dir(&data, err);
        if (rc == 0 && (dir = p2p_fs_join(data, "client")) == NULL)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    } else if ((dir = strdup(cache_path)) == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = p2p__ccache_open(dir, &c->cache, err);
    if (rc == 0 && (c->filehash_path = p2p_fs_join(dir, "filehash.db")) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    free(data);
    free(dir);
    return rc;
}

int p2p_client_new(const p2p_client_options *opts, p2p_client **out, p2p_error *err) {
    *out = NULL;
    if (opts == NULL)
        return p2p_error_set(err, P2P_EINVAL, "client options are NULL");
    int rc = check_options(opts, err);
    if (rc != 0)
        return rc;
    unsigned char *loaded = NULL;
    size_t loaded_len = 0;
    p2p_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    p2p_discovery_list_init(&c->brokers);
    c->poll_wait_s = opts->poll_wait_s;
    c->request_timeout_ms = (long)opts->request_timeout_ms;
    rc = add_brokers(c, opts, err);
    if (rc == 0 && c->brokers.count == 0)
        rc = p2p_error_set(err, P2P_EINVAL, "client options: discovery file %s names no broker",
                           opts->discovery_file);
    struct stat st;
    if (rc == 0 && opts->secret_file != NULL && stat(opts->secret_file, &st) != 0 &&
        errno == ENOENT)
        rc = p2p_error_set(err, P2P_ENOTFOUND, "client options: secret file %s does not exist",
                           opts->secret_file);
    if (rc == 0 && opts->secret_file != NULL)
        rc = p2p_secret_load(opts->secret_file, &loaded, &loaded_len, err);
    if (rc == 0)
        rc = make_http(c, opts, loaded != NULL ? loaded : opts->secret,
                       loaded != NULL ? loaded_len : opts->secret_len, err);
    if (rc == 0)
        rc = open_cache(c, opts->cache_path, err);
    p2p_secret_free(loaded, loaded_len);
    if (rc != 0) {
        p2p_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void p2p_client_free(p2p_client *c) {
    if (c == NULL)
        return;
    p2p_http_client_free(c->http);
    p2p_http_client_free(c->probe);
    p2p__ccache_free(c->cache);
    p2p_discovery_list_cleanup(&c->brokers);
    for (size_t i = 0; i < c->n_hashers; i++)
        p2p_filecache_free(c->hashers[i]);
    free(c->hashers);
    free(c->filehash_path);
    free(c->last_ok);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void p2p__client_count(p2p_client *c, uint64_t *field, uint64_t delta) {
    pthread_mutex_lock(&c->lock);
    *field += delta;
    pthread_mutex_unlock(&c->lock);
}

void p2p_client_get_stats(p2p_client *c, p2p_client_stats *out) {
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

int p2p__client_hasher_take(p2p_client *c, p2p_filecache **out, p2p_error *err) {
    *out = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->n_hashers > 0)
        *out = c->hashers[--c->n_hashers];
    pthread_mutex_unlock(&c->lock);
    if (*out != NULL)
        return 0;
    return p2p_filecache_open(c->filehash_path, out, err);
}

void p2p__client_hasher_give(p2p_client *c, p2p_filecache *fc) {
    if (fc == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->n_hashers < MAX_IDLE_HASHERS) {
        if (c->hashers == NULL)
            c->hashers = calloc(MAX_IDLE_HASHERS, sizeof(*c->hashers));
        if (c->hashers != NULL) {
            c->hashers[c->n_hashers++] = fc;
            fc = NULL;
        }
    }
    pthread_mutex_unlock(&c->lock);
    p2p_filecache_free(fc);
}
