/* What user code calls while it runs in a worker's child (common/p2prpc.h):
 * progress, the failure message, checkpoints. The child talks to its parent
 * over the control socket (progress) and to the broker itself (checkpoints),
 * with its own HTTP client, the call's lease token and the shared secret it
 * got in its job. Outside a child every function here is a harmless no-op. */
#include "p2prpc.h"
#include "worker_internal.h"

#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAIL_MAX 4096

/* The child's state; one function runs per child, but it may use threads. */
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime {
    bool active;
    p2p__runtime_cfg cfg;
    p2p__throttle throttle;
    int64_t i, n; /* the latest progress */
    char fail[FAIL_MAX];
    bool failed;
} rt;

void p2p__runtime_enter(const p2p__runtime_cfg *cfg) {
    pthread_mutex_lock(&rt_lock);
    rt.active = true;
    rt.cfg = *cfg;
    rt.failed = false;
    rt.fail[0] = '\0';
    p2p__throttle_init(&rt.throttle, cfg->progress_interval_ms);
    pthread_mutex_unlock(&rt_lock);
}

void p2p__runtime_leave(void) {
    pthread_mutex_lock(&rt_lock);
    rt.active = false;
    memset(&rt.cfg, 0, sizeof(rt.cfg));
    pthread_mutex_unlock(&rt_lock);
}

const char *p2p__runtime_fail_message(void) {
    return rt.failed ? rt.fail : NULL;
}

int p2p__runtime_send(int fd, const json_t *msg) {
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text == NULL)
        return P2P_ENOMEM;
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL becomes the line's end: one write per message */
    int rc = 0;
    for (size_t done = 0; done < len + 1;) {
        ssize_t n = send(fd, text + done, len + 1 - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = P2P_EIO;
            break;
        }
        done += (size_t)n;
    }
    free(text);
    return rc;
}

/* Under rt_lock. */
static void send_progress(int64_t now) {
    p2p__throttle_take(&rt.throttle, now);
    json_t *msg = json_pack("{s:[I,I]}", "progress", (json_int_t)rt.i, (json_int_t)rt.n);
    if (msg != NULL && p2p__runtime_send(rt.cfg.fd, msg) != 0)
        P2P_DEBUG("worker child: cannot send progress: %s", strerror(errno));
    json_decref(msg);
}

void p2p_progress_hook(int64_t i, int64_t n) {
    if (n <= 0)
        return;
    i = i < 0 ? 0 : (i > n ? n : i);
    pthread_mutex_lock(&rt_lock);
    if (rt.active) {
        rt.i = i;
        rt.n = n;
        p2p__throttle_update(&rt.throttle, (double)i / (double)n);
        int64_t now = p2p__worker_now_ms();
        /* The last step always goes at once; the others a few times a second:
         * a hot loop must not become a syscall per iteration. */
        if (i == n || p2p__throttle_due(&rt.throttle, now))
            send_progress(now);
    }
    pthread_mutex_unlock(&rt_lock);
}

void p2p__runtime_flush(void) {
    pthread_mutex_lock(&rt_lock);
    if (rt.active && rt.throttle.pending)
        send_progress(p2p__worker_now_ms());
    pthread_mutex_unlock(&rt_lock);
}

void p2p_fail(const char *fmt, ...) {
    if (fmt == NULL)
        return;
    pthread_mutex_lock(&rt_lock);
    if (rt.active) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rt.fail, sizeof(rt.fail), fmt, ap);
        va_end(ap);
        rt.failed = true;
    }
    pthread_mutex_unlock(&rt_lock);
}

/* A copy of the configuration, or false outside a child. The strings stay
 * valid while the function runs (they belong to the child's job). */
static bool current(p2p__runtime_cfg *cfg) {
    pthread_mutex_lock(&rt_lock);
    bool active = rt.active;
    if (active)
        *cfg = rt.cfg;
    pthread_mutex_unlock(&rt_lock);
    return active;
}

static bool valid_name(const char *name) {
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int checkpoint_args(const char *name, const char *path, p2p__runtime_cfg *cfg,
                           const char *what) {
    if (!current(cfg)) {
        P2P_WARN("%s(\"%s\") outside a worker does nothing", what, name ? name : "");
        return P2P_EINVAL;
    }
    if (!valid_name(name) || path == NULL) {
        P2P_ERROR("%s: a checkpoint name is 1 to 128 of [A-Za-z0-9_.-], and a path is needed",
                  what);
        return P2P_EINVAL;
    }
    return 0;
}

static int record_checkpoint(const p2p__runtime_cfg *cfg, const char *name, const char *hash,
                             p2p_error *err) {
    char *url = p2p_http_api_url(cfg->base, cfg->function, "checkpoint");
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "identifier", cfg->identifier, "lease_token",
                             cfg->token, "name", name, "hash", hash);
    json_t *reply = NULL;
    int rc = url != NULL && body != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p__wire_post(cfg->http, url, body, &reply, NULL, err);
    json_decref(reply);
    json_decref(body);
    free(url);
    return rc;
}

int p2p_checkpoint_save(const char *name, const char *path) {
    p2p__runtime_cfg cfg;
    int rc = checkpoint_args(name, path, &cfg, "p2p_checkpoint_save");
    if (rc != 0)
        return rc;
    char hash[P2P_HASH_HEX_LEN + 1];
    int64_t size = 0;
    p2p_error err = {0};
    rc = p2p__wire_hash_file(path, hash, &size, &err);
    if (rc == 0)
        rc = p2p__wire_upload(cfg.http, cfg.base, path, hash, size, NULL, &err);
    if (rc == 0)
        rc = record_checkpoint(&cfg, name, hash, &err);
    if (rc != 0)
        P2P_ERROR("p2p_checkpoint_save(\"%s\"): %s", name, err.msg);
    return rc;
}

/* Asks the broker which blob holds checkpoint `name`. */
static int find_checkpoint(const p2p__runtime_cfg *cfg, const char *name,
                           char hash[P2P_HASH_HEX_LEN + 1], int64_t *size, p2p_error *err) {
    char *url = p2p_http_api_url(cfg->base, cfg->function, "checkpoint");
    int rc = url != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = p2p_http_url_add_query(&url, "identifier", cfg->identifier, err);
    if (rc == 0)
        rc = p2p_http_url_add_query(&url, "name", name, err);
    p2p_http_reply resp = {0};
    json_t *reply = NULL;
    if (rc == 0) {
        p2p_http_call req = {.method = "GET", .url = url, .idempotent = true};
        rc = p2p_http_client_request(cfg->http, &req, &resp, err);
    }
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, err);
    if (rc == 0)
        rc = p2p_http_reply_json(&resp, &reply, err);
    const char *h = json_string_value(json_object_get(reply, "hash"));
    if (rc == 0 && !p2p_hash_hex_valid(h))
        rc = p2p_error_set(err, P2P_EPROTO, "checkpoint answer without a valid hash");
    if (rc == 0) {
        memcpy(hash, h, P2P_HASH_HEX_LEN + 1);
        json_t *s = json_object_get(reply, "size");
        *size = json_is_integer(s) ? (int64_t)json_integer_value(s) : -1;
    }
    json_decref(reply);
    p2p_http_reply_cleanup(&resp);
    free(url);
    return rc;
}

int p2p_checkpoint_load(const char *name, const char *path) {
    p2p__runtime_cfg cfg;
    int rc = checkpoint_args(name, path, &cfg, "p2p_checkpoint_load");
    if (rc != 0)
        return rc;
    char hash[P2P_HASH_HEX_LEN + 1];
    int64_t size = -1;
    p2p_error err = {0};
    rc = find_checkpoint(&cfg, name, hash, &size, &err);
    if (rc == P2P_ENOTFOUND)
        return rc; /* nothing saved yet: the usual first run */
    size_t len = strlen(path) + 16;
    char *part = rc == 0 ? malloc(len) : NULL;
    if (rc == 0 && part == NULL)
        rc = p2p_error_set(&err, P2P_ENOMEM, "out of memory");
    if (rc == 0) {
        snprintf(part, len, "%s.p2p-part", path);
        rc = p2p__wire_download(cfg.http, cfg.base, hash, size, part, NULL, &err);
        if (rc == 0 && rename(part, path) != 0)
            rc = p2p_error_errno(&err, P2P_EIO, errno, "cannot rename %s", part);
        if (rc != 0)
            unlink(part);
    }
    if (rc != 0)
        P2P_ERROR("p2p_checkpoint_load(\"%s\"): %s", name, err.msg);
    free(part);
    return rc;
}
