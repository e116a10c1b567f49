#include "http_server.h"
#include "http_internal.h"

#include "log.h"
#include "longpoll.h"
#include "spool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TLS_FILE (1024 * 1024)
#define MAX_LINGER 65536

/* Where a request is in its life. Moves only forward, except that a resumed
 * request goes back to PH_HANDLER to run its wake callback. */
typedef enum phase {
    PH_HEADERS,   /* created by the URI callback; headers not seen yet */
    PH_BODY,      /* receiving the body */
    PH_HANDLER,   /* its handler or wake callback runs in the server thread */
    PH_SUSPENDED, /* connection suspended, waiting for an answer or a wake */
    PH_RESUMING,  /* resume asked; libmicrohttpd will call us again */
    PH_QUEUED,    /* the response was handed to libmicrohttpd */
    PH_CLOSING,   /* the completion callback runs; answers are dropped */
} phase;

typedef struct header {
    struct header *next;
    char *name, *value;
} header;

struct p2p_http_request {
    p2p_http_server *server;
    struct MHD_Connection *conn;
    int fd;       /* the connection's socket, watched while parked */
    char *target; /* raw "path?query" as sent */
    char *path;   /* raw path: `target` up to '?' */
    char *method;
    p2p_http_match match;
    p2p_spool *body; /* NULL when the request has no body */
    int body_error;  /* P2P_ETOOBIG, P2P_EIO... while receiving */
    p2p_error body_err;
    uint64_t discarded; /* bytes drained after body_error */
    int64_t started_ms;
    int64_t started_us; /* CLOCK_MONOTONIC, for on_complete */
    unsigned status;
    header *resp_headers;
    /* Below: guarded by server->lock. */
    phase phase;
    bool responded;               /* an answer was given (it may not be queued yet) */
    struct MHD_Response *pending; /* the answer, until queued */
    unsigned pending_status;
    bool parked, wake_pending;
    p2p_http_wake wake;
    p2p_http_wake_fn on_wake;
    void *wake_ctx;
    bool closed;                   /* the client is gone: parks are refused */
    bool abandoned;                /* answered by stop: kept until free, late answers dropped */
    p2p_http_request *prev, *next; /* server->suspended or server->abandoned */
};

struct p2p_http_server {
    p2p_http_server_options opts; /* strings below are owned copies */
    char *host, *tmp_dir;
    char *tls_cert, *tls_key; /* PEM contents */
    p2p_http_router *router;
    p2p_longpoll *lp;
    p2p__http_linger *linger; /* sockets closed after an answer written by hand */
    struct MHD_Daemon *daemon;
    uint16_t port;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t drained; /* `live` reached 0 */
    size_t live;            /* requests between the URI and completion callbacks */
    p2p_http_request *suspended, *abandoned;
    bool force_answer; /* stop: never suspend again, answer 503 */
};

static const char oom_body[] =
    "{\"error\":{\"code\":\"no_memory\",\"message\":\"out of memory while answering\"}}";

int64_t p2p_http_now_ms(void) {
    return p2p_longpoll_now_ms();
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- list of suspended requests (server->lock held) ---- */

static void list_push(p2p_http_request **head, p2p_http_request *req) {
    req->prev = NULL;
    req->next = *head;
    if (*head != NULL)
        (*head)->prev = req;
    *head = req;
}

static void list_remove(p2p_http_request **head, p2p_http_request *req) {
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        *head = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void resume_locked(p2p_http_server *s, p2p_http_request *req) {
    list_remove(&s->suspended, req);
    req->phase = PH_RESUMING;
    MHD_resume_connection(req->conn);
}

/* ---- responses ---- */

/* Hands `resp` (may be NULL: out of memory) to the request. The only place an
 * answer enters a request, from any thread. */
static void submit(p2p_http_request *req, unsigned status, struct MHD_Response *resp) {
    p2p_http_server *s = req->server;
    pthread_mutex_lock(&s->lock);
    if (req->responded || req->parked) {
        bool bug = !req->abandoned;
        bool parked = req->parked;
        pthread_mutex_unlock(&s->lock);
        if (bug)
            P2P_ERROR("http: %s %s answered twice or while parked (%s); answer dropped",
                      req->method, req->target, parked ? "parked" : "answered");
        if (resp != NULL)
            MHD_destroy_response(resp);
        return;
    }
    req->responded = true;
    req->pending = resp;
    req->pending_status = status;
    if (req->phase == PH_SUSPENDED)
        resume_locked(s, req);
    pthread_mutex_unlock(&s->lock);
}

void p2p__http_finish(p2p_http_request *req, unsigned status, struct MHD_Response *resp,
                      const char *content_type) {
    if (resp != NULL && content_type != NULL &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    for (header *h = req->resp_headers; h != NULL && resp != NULL; h = h->next) {
        if (MHD_add_response_header(resp, h->name, h->value) != MHD_YES) {
            MHD_destroy_response(resp);
            resp = NULL;
        }
    }
    submit(req, status, resp);
}

int p2p_http_response_header(p2p_http_request *req, const char *name, const char *value) {
    if (name == NULL || value == NULL || name[0] == '\0' || strpbrk(name, "\r\n: ") != NULL ||
        strpbrk(value, "\r\n") != NULL)
        return P2P_EINVAL;
    header *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return P2P_ENOMEM;
    h->name = strdup(name);
    h->value = strdup(value);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        free(h);
        return P2P_ENOMEM;
    }
    h->next = req->resp_headers;
    req->resp_headers = h;
    return 0;
}

/* ---- request accessors ---- */

const char *p2p_http_request_method(const p2p_http_request *req) {
    return req->method;
}

const char *p2p_http_request_path(const p2p_http_request *req) {
    return req->path;
}

const char *p2p_http_request_target(const p2p_http_request *req) {
    return req->target;
}

const char *p2p_http_request_param(const p2p_http_request *req, const char *name) {
    return p2p_http_match_param(&req->match, name);
}

const char *p2p_http_request_query(const p2p_http_request *req, const char *name) {
    const char *v = NULL;
    size_t len = 0;
    /* "?flag" has no value: libmicrohttpd gives NULL, told apart from absent. */
    if (name == NULL || MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name,
                                                      strlen(name), &v, &len) != MHD_YES)
        return NULL;
    return v != NULL ? v : "";
}

const char *p2p_http_request_header(const p2p_http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

uint64_t p2p_http_request_body_size(const p2p_http_request *req) {
    return req->body != NULL ? p2p_spool_size(req->body) : 0;
}

const char *p2p_http_request_body(const p2p_http_request *req, size_t *len) {
    if (req->body == NULL) {
        if (len != NULL)
            *len = 0;
        return "";
    }
    return p2p_spool_data(req->body, len);
}

int p2p_http_request_body_fd(const p2p_http_request *req) {
    return req->body != NULL ? p2p_spool_fd(req->body) : -1;
}

const char *p2p_http_request_body_path(const p2p_http_request *req) {
    return req->body != NULL ? p2p_spool_path(req->body) : NULL;
}

const char *p2p_http_request_body_sha256(const p2p_http_request *req) {
    return req->body != NULL ? p2p_spool_sha256(req->body) : NULL;
}

int p2p_http_request_take_body_file(p2p_http_request *req, char **path, p2p_error *err) {
    if (req->body == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND, "the request has no body");
    return p2p_spool_take_file(req->body, path, err);
}

/* ---- long-poll ---- */

int p2p_http_request_park(p2p_http_request *req, const char *topic, int64_t timeout_ms,
                          p2p_http_wake_fn on_wake, void *ctx, p2p_error *err) {
    p2p_http_server *s = req->server;
    if (topic == NULL || topic[0] == '\0' || on_wake == NULL)
        return p2p_error_set(err, P2P_EINVAL, "park needs a topic and a wake callback");
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (req->closed)
        rc = p2p_error_set(err, P2P_ECANCELED, "the client is gone");
    else if (req->responded || req->parked || req->wake_pending || req->phase != PH_HANDLER)
        rc = p2p_error_set(err, P2P_EINVAL, "the request is answered, parked or not in a handler");
    if (rc == 0) {
        req->parked = true;
        req->on_wake = on_wake;
        req->wake_ctx = ctx;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        return rc;
    /* Timeouts beyond a day are clamped: no deadline arithmetic can overflow. */
    int64_t ms = timeout_ms < 0 ? 0 : timeout_ms > 86400000 ? 86400000 : timeout_ms;
    rc = p2p_longpoll_add(s->lp, req, topic, p2p_longpoll_now_ms() + ms, req->fd, err);
    if (rc != 0) {
        pthread_mutex_lock(&s->lock);
        req->parked = false;
        pthread_mutex_unlock(&s->lock);
    }
    return rc;
}

/* Fire callback of the long-poll lot: any thread, no lock held. */
static void on_fire(void *ctx, void *item, p2p_longpoll_reason why) {
    p2p_http_server *s = ctx;
    p2p_http_request *req = item;
    pthread_mutex_lock(&s->lock);
    req->parked = false;
    req->wake_pending = true;
    req->wake = (p2p_http_wake)why;
    if (why == P2P_LONGPOLL_CLOSED)
        req->closed = true;
    if (req->phase == PH_SUSPENDED)
        resume_locked(s, req);
    pthread_mutex_unlock(&s->lock);
}

size_t p2p_http_server_notify(p2p_http_server *s, const char *topic) {
    return p2p_longpoll_notify(s->lp, topic);
}

size_t p2p_http_server_parked(p2p_http_server *s) {
    return p2p_longpoll_count(s->lp);
}

size_t p2p_http_server_lingering(p2p_http_server *s) {
    return p2p__http_linger_count(s->linger);
}

size_t p2p_http_server_in_flight(p2p_http_server *s) {
    pthread_mutex_lock(&s->lock);
    size_t n = s->live;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- the request's life inside libmicrohttpd ---- */

static void request_free(p2p_http_request *req) {
    p2p_spool_free(req->body);
    p2p_http_match_cleanup(&req->match);
    while (req->resp_headers != NULL) {
        header *h = req->resp_headers;
        req->resp_headers = h->next;
        free(h->name);
        free(h->value);
        free(h);
    }
    if (req->pending != NULL)
        MHD_destroy_response(req->pending);
    free(req->target);
    free(req->path);
    free(req->method);
    free(req);
}

/* Called by libmicrohttpd with the raw request target, before the headers:
 * the request object is born here and its pointer becomes the con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)conn;
    p2p_http_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->server = cls;
    req->fd = -1;
    req->started_ms = p2p_longpoll_now_ms();
    req->started_us = now_us();
    req->target = strdup(uri);
    req->path = strndup(uri, strcspn(uri, "?"));
    if (req->target == NULL || req->path == NULL) {
        request_free(req);
        return NULL;
    }
    pthread_mutex_lock(&req->server->lock);
    req->server->live++;
    pthread_mutex_unlock(&req->server->lock);
    return req;
}

static enum MHD_Result queue(p2p_http_request *req, unsigned status, struct MHD_Response *resp) {
    if (resp == NULL) {
        status = 500;
        resp = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
                                               MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    req->status = status;
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* After a handler or wake callback returned: queue its answer, run a wake
 * that arrived meanwhile, or suspend the connection until one of them comes.
 * Runs in the connection's server thread. */
static enum MHD_Result settle(p2p_http_request *req) {
    p2p_http_server *s = req->server;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (req->responded) {
            struct MHD_Response *resp = req->pending;
            unsigned status = req->pending_status;
            req->pending = NULL;
            req->phase = PH_QUEUED;
            pthread_mutex_unlock(&s->lock);
            return queue(req, status, resp);
        }
        if (req->wake_pending) {
            req->wake_pending = false;
            req->phase = PH_HANDLER;
            p2p_http_wake why = req->wake;
            pthread_mutex_unlock(&s->lock);
            req->on_wake(req, req->wake_ctx, why);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (s->force_answer && !req->parked) {
            pthread_mutex_unlock(&s->lock);
            p2p_http_respond_error(req, 503, P2P_ECANCELED, "the server is stopping");
            pthread_mutex_lock(&s->lock);
            continue;
        }
        /* Suspending under the lock: nobody can see PH_SUSPENDED and resume
         * before the connection really is suspended. */
        req->phase = PH_SUSPENDED;
        list_push(&s->suspended, req);
        MHD_suspend_connection(req->conn);
        pthread_mutex_unlock(&s->lock);
        return MHD_YES;
    }
}

static bool has_body(struct MHD_Connection *conn) {
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    return te != NULL || (cl != NULL && strcmp(cl, "0") != 0);
}

static uint64_t body_limit(const p2p_http_request *req) {
    uint64_t lim = req->match.route->max_body;
    return lim != 0 ? lim : req->server->opts.max_body;
}

/* Route, authorization and announced size: everything decided from headers. */
static int admit(p2p_http_request *req, p2p_error *err, char *allow, size_t allow_size) {
    p2p_http_server *s = req->server;
    int rc = p2p_http_router_match(s->router, req->method, req->path, strlen(req->path),
                                   &req->match, allow, allow_size);
    if (rc == P2P_ENOTFOUND)
        return p2p_error_set(err, rc, "no route for %.200s", req->path);
    if (rc == P2P_ECONFLICT)
        return p2p_error_set(err, rc, "%.16s is not allowed on %.200s", req->method, req->path);
    if (rc != 0)
        return p2p_error_set(err, rc, "cannot route the request");
    if (!(req->match.route->flags & P2P_HTTP_PUBLIC) && s->opts.authorize != NULL) {
        p2p_error_clear(err);
        rc = s->opts.authorize(s->opts.authorize_ctx, req, err);
        if (rc != 0)
            return err->msg[0] != '\0' ? rc : p2p_error_set(err, rc, "request refused");
    }
    const char *cl = p2p_http_request_header(req, "Content-Length");
    uint64_t n = 0;
    if (cl != NULL && p2p__http_parse_u64(cl, strlen(cl), &n) && n > body_limit(req))
        return p2p_error_set(err, P2P_ETOOBIG,
                             "body of %" PRIu64 " bytes over the limit of %" PRIu64, n,
                             body_limit(req));
    return 0;
}

static int open_body(p2p_http_request *req, p2p_error *err) {
    unsigned flags = req->match.route->flags;
    if (!has_body(req->conn) && !(flags & (P2P_HTTP_HASH_BODY | P2P_HTTP_SPOOL_TO_FILE)))
        return 0;
    const char *cl = p2p_http_request_header(req, "Content-Length");
    uint64_t expected = UINT64_MAX;
    if (cl == NULL || !p2p__http_parse_u64(cl, strlen(cl), &expected))
        expected = UINT64_MAX;
    p2p_spool_options so = {
        .tmp_dir = req->server->tmp_dir,
        .max_size = body_limit(req),
        .mem_threshold = req->server->opts.spool_threshold,
        .to_file = (flags & P2P_HTTP_SPOOL_TO_FILE) != 0,
        .hash = (flags & P2P_HTTP_HASH_BODY) != 0,
        .expected_size = expected,
    };
    return p2p_spool_new(&so, &req->body, err);
}

static enum MHD_Result on_headers(p2p_http_request *req, struct MHD_Connection *conn,
                                  const char *method) {
    req->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    req->fd = ci != NULL ? ci->connect_fd : -1;
    req->method = strdup(method);
    if (req->method == NULL)
        return MHD_NO;
    req->phase = PH_BODY;
    p2p_error err = {0};
    char allow[128];
    int rc = admit(req, &err, allow, sizeof(allow));
    if (rc == 0)
        rc = open_body(req, &err);
    if (rc == 0)
        return MHD_YES;
    unsigned status = 0;
    if (rc == P2P_ECONFLICT) {
        status = 405;
        rc = p2p_http_response_header(req, "Allow", allow) == 0 ? P2P_EINVAL : P2P_ENOMEM;
        err.code = rc;
    }
    p2p_http_respond_error(req, status, rc, "%s", err.msg);
    /* Refusing before the body is read makes libmicrohttpd skip the body and
     * close the connection; a request without a body is answered at its end
     * instead, which keeps the connection alive. */
    if (has_body(conn))
        return settle(req);
    return MHD_YES;
}

/* libmicrohttpd cannot queue an answer in the middle of an upload (only at
 * its end). Past max_discard, on plain HTTP, the answer is written on the
 * socket here and the connection dropped while a duplicate of the socket
 * lingers (http_linger.c); libmicrohttpd's own close then only shuts down
 * the sending side after our bytes and closes its descriptor. TLS records
 * cannot be written by hand: such a connection is just closed. */
static enum MHD_Result answer_and_close(p2p_http_request *req) {
    p2p_http_server *s = req->server;
    int code = req->body_error;
    const char *msg = req->body_err.msg[0] != '\0' ? req->body_err.msg : p2p_strerror(code);
    unsigned status = (unsigned)p2p_error_http_status(code);
    bool answered = false;
    if (s->tls_cert == NULL && req->fd >= 0) {
        json_t *body = p2p__http_error_json(code, msg);
        answered = p2p__http_linger_answer(s->linger, req->fd, status, body);
        json_decref(body);
    }
    if (answered)
        req->status = status;
    P2P_WARN("http: %s %s: %s; %" PRIu64 " bytes read: %s", req->method, req->path, msg,
             p2p_http_request_body_size(req) + req->discarded,
             answered ? "answered on the socket, closing" : "closing without an answer");
    return MHD_NO;
}

static enum MHD_Result on_chunk(p2p_http_request *req, const char *data, size_t n) {
    if (req->body_error == 0) {
        int rc = req->body != NULL ? p2p_spool_write(req->body, data, n, &req->body_err)
                                   : p2p_error_set(&req->body_err, P2P_EPROTO, "unexpected body");
        req->body_error = rc;
        return MHD_YES;
    }
    /* A small overrun is drained, so the answer goes through libmicrohttpd at
     * the end of the body and the connection stays usable. */
    req->discarded += n;
    if (req->discarded <= req->server->opts.max_discard)
        return MHD_YES;
    return answer_and_close(req);
}

static enum MHD_Result on_body_done(p2p_http_request *req) {
    if (req->responded)
        return settle(req);
    if (req->body_error == 0 && req->body != NULL)
        req->body_error = p2p_spool_finish(req->body, &req->body_err);
    if (req->body_error != 0) {
        p2p_http_respond_err(req, &req->body_err);
        return settle(req);
    }
    pthread_mutex_lock(&req->server->lock);
    req->phase = PH_HANDLER;
    pthread_mutex_unlock(&req->server->lock);
    req->match.route->handler(req, req->server->opts.handler_ctx);
    return settle(req);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
    (void)cls;
    (void)url;
    (void)version;
    p2p_http_request *req = *con_cls;
    if (req == NULL)
        return MHD_NO; /* the URI callback ran out of memory */
    pthread_mutex_lock(&req->server->lock);
    phase ph = req->phase;
    pthread_mutex_unlock(&req->server->lock);
    if (ph == PH_HEADERS)
        return on_headers(req, conn, method);
    if (ph != PH_BODY)
        return settle(req); /* resumed */
    if (*upload_data_size == 0)
        return on_body_done(req);
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    return on_chunk(req, upload_data, n);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    p2p_http_server *s = cls;
    p2p_http_request *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    pthread_mutex_lock(&s->lock);
    req->phase = PH_CLOSING;
    req->closed = true;
    if (req->wake_pending) {
        /* Resumed by a wake, then closed before the wake callback ran (stop):
         * the callback still runs once, so its context is released. */
        req->wake_pending = false;
        pthread_mutex_unlock(&s->lock);
        req->on_wake(req, req->wake_ctx, P2P_HTTP_WAKE_CLOSED);
        pthread_mutex_lock(&s->lock);
    }
    /* A parked request cannot complete; if it ever did, the lot still holds
     * it, so it is kept (like abandoned ones) rather than freed. */
    bool keep = req->abandoned || req->parked;
    if (keep)
        list_push(&s->abandoned, req);
    pthread_mutex_unlock(&s->lock);
    P2P_DEBUG("http %s %s -> %u in %" PRId64 " ms%s", req->method ? req->method : "?", req->path,
              req->status, p2p_longpoll_now_ms() - req->started_ms,
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
    if (s->opts.on_complete != NULL && req->status != 0)
        s->opts.on_complete(s->opts.on_complete_ctx, req, req->status, now_us() - req->started_us);
    if (!keep)
        request_free(req);
    pthread_mutex_lock(&s->lock);
    if (--s->live == 0)
        pthread_cond_broadcast(&s->drained);
    pthread_mutex_unlock(&s->lock);
}

/* ---- server lifecycle ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap) P2P_PRINTF(2, 0);

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    P2P_WARN("libmicrohttpd: %s", line);
}

static int read_pem(const char *path, char **out, p2p_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open %s", path);
    char *buf = malloc(MAX_TLS_FILE + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf != NULL && len < MAX_TLS_FILE &&
           ((n = read(fd, buf + len, MAX_TLS_FILE - len)) > 0 || (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    int e = errno;
    close(fd);
    if (buf == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    if (n < 0 || len == 0 || len == MAX_TLS_FILE) {
        free(buf);
        if (n < 0)
            return p2p_error_errno(err, P2P_EIO, e, "cannot read %s", path);
        return p2p_error_set(err, P2P_EINVAL, "%s is empty or larger than %d bytes", path,
                             MAX_TLS_FILE);
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static void apply_defaults(p2p_http_server_options *o) {
    o->threads = o->threads ? o->threads : 2;
    o->max_connections = o->max_connections ? o->max_connections : 4096;
    o->idle_timeout_s = o->idle_timeout_s ? o->idle_timeout_s : 120;
    o->max_body = o->max_body ? o->max_body : 1024 * 1024;
    o->spool_threshold = o->spool_threshold ? o->spool_threshold : 256 * 1024;
    o->max_discard = o->max_discard ? o->max_discard : 1024 * 1024;
    o->stop_grace_ms = o->stop_grace_ms ? o->stop_grace_ms : 5000;
    o->linger_max = o->linger_max ? o->linger_max : 64;
    o->linger_ms = o->linger_ms ? o->linger_ms : 5000;
    o->linger_idle_ms = o->linger_idle_ms ? o->linger_idle_ms : 2000;
    o->linger_bytes = o->linger_bytes ? o->linger_bytes : 16 * 1024 * 1024;
}

static int copy_options(p2p_http_server *s, const p2p_http_server_options *opts, p2p_error *err) {
    s->opts = *opts;
    apply_defaults(&s->opts);
    const char *tmp = opts->tmp_dir != NULL ? opts->tmp_dir : getenv("TMPDIR");
    s->host = strdup(opts->host != NULL ? opts->host : "127.0.0.1");
    s->tmp_dir = strdup(tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (s->host == NULL || s->tmp_dir == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    if ((opts->tls_cert_file == NULL) != (opts->tls_key_file == NULL))
        return p2p_error_set(err, P2P_EINVAL, "TLS needs both a cert file and a key file");
    if (s->opts.linger_max > MAX_LINGER)
        return p2p_error_set(err, P2P_EINVAL, "linger_max %u is over %d", s->opts.linger_max,
                             MAX_LINGER);
    int rc = 0;
    if (opts->tls_cert_file != NULL) {
        rc = read_pem(opts->tls_cert_file, &s->tls_cert, err);
        if (rc == 0)
            rc = read_pem(opts->tls_key_file, &s->tls_key, err);
    }
    return rc;
}

int p2p_http_server_new(const p2p_http_server_options *opts, p2p_http_server **out,
                        p2p_error *err) {
    p2p_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->drained, &ca);
    pthread_condattr_destroy(&ca);
    int rc = copy_options(s, opts, err);
    if (rc == 0)
        rc = p2p_http_router_new(opts->routes, opts->n_routes, &s->router, err);
    if (rc == 0)
        rc = p2p_longpoll_new(on_fire, s, &s->lp, err);
    p2p__http_linger_limits lim = {s->opts.linger_max, s->opts.linger_ms, s->opts.linger_idle_ms,
                                   s->opts.linger_bytes};
    if (rc == 0)
        rc = p2p__http_linger_new(&lim, &s->linger, err);
    if (rc != 0) {
        p2p_http_server_free(s);
        return rc;
    }
    s->opts.routes = NULL; /* the router holds the copy */
    *out = s;
    return 0;
}

static int make_addr(const p2p_http_server *s, struct sockaddr_storage *ss, p2p_error *err) {
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s->host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(s->opts.port);
        return 0;
    }
    if (inet_pton(AF_INET6, s->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(s->opts.port);
        return 0;
    }
    return p2p_error_set(err, P2P_EINVAL, "listen host \"%.64s\" is not a numeric IP address",
                         s->host);
}

static struct MHD_Daemon *start_daemon(p2p_http_server *s, const struct sockaddr_storage *ss) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s->tls_cert != NULL)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem o[16];
    size_t n = 0;
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)ss};
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, s};
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->opts.max_connections, NULL};
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->opts.idle_timeout_s, NULL};
    if (s->opts.threads > 1)
        o[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, s->opts.threads, NULL};
    if (s->tls_cert != NULL) {
        o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
        o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
    }
    o[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_ARRAY, o,
                            MHD_OPTION_END);
}

int p2p_http_server_start(p2p_http_server *s, p2p_error *err) {
    if (s->started)
        return p2p_error_set(err, P2P_EINVAL, "the HTTP server was already started");
    struct sockaddr_storage ss;
    int rc = make_addr(s, &ss, err);
    if (rc != 0)
        return rc;
    rc = p2p_longpoll_start(s->lp, err);
    if (rc == 0 && s->tls_cert == NULL) /* over TLS nothing is answered by hand */
        rc = p2p__http_linger_start(s->linger, err);
    if (rc != 0) {
        p2p_longpoll_stop(s->lp);
        return rc;
    }
    s->started = true;
    s->daemon = start_daemon(s, &ss);
    if (s->daemon == NULL) {
        p2p_longpoll_stop(s->lp);
        p2p__http_linger_stop(s->linger);
        return p2p_error_set(err, P2P_EIO, "cannot serve HTTP%s on %s port %u (see the log)",
                             s->tls_cert ? "S" : "", s->host, (unsigned)s->opts.port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di != NULL ? di->port : s->opts.port;
    P2P_INFO("http: serving %s on %s port %u", s->tls_cert ? "HTTPS" : "HTTP", s->host,
             (unsigned)s->port);
    return 0;
}

uint16_t p2p_http_server_port(const p2p_http_server *s) {
    return s->daemon != NULL ? s->port : 0;
}

static void deadline_in(struct timespec *ts, unsigned ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Waits (s->lock held) until no request is in flight or `until` passes. */
static void wait_idle(p2p_http_server *s, const struct timespec *until) {
    while (s->live > 0 && pthread_cond_timedwait(&s->drained, &s->lock, until) == 0)
        ;
}

static const char stopping_body[] =
    "{\"error\":{\"code\":\"canceled\",\"message\":\"the server is stopping\"}}";

/* Lets requests in flight finish within the grace period; then answers the
 * ones still waiting for an async answer, and gives those answers a moment
 * to be sent before the connections are closed. */
static void drain(p2p_http_server *s) {
    struct timespec until;
    deadline_in(&until, s->opts.stop_grace_ms);
    pthread_mutex_lock(&s->lock);
    wait_idle(s, &until);
    s->force_answer = true;
    while (s->suspended != NULL) {
        p2p_http_request *req = s->suspended;
        P2P_WARN("http: %s %s still unanswered at stop: answering 503", req->method, req->path);
        req->abandoned = true;
        req->responded = true;
        req->pending_status = 503;
        req->pending = MHD_create_response_from_buffer(
            sizeof(stopping_body) - 1, (void *)stopping_body, MHD_RESPMEM_PERSISTENT);
        if (req->pending != NULL)
            MHD_add_response_header(req->pending, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        resume_locked(s, req);
    }
    deadline_in(&until, 1000);
    wait_idle(s, &until);
    pthread_mutex_unlock(&s->lock);
}

void p2p_http_server_stop(p2p_http_server *s) {
    if (s == NULL || s->daemon == NULL)
        return;
    MHD_socket listener = MHD_quiesce_daemon(s->daemon);
    /* Parked requests first: their wake callbacks answer them (SHUTDOWN). */
    p2p_longpoll_stop(s->lp);
    drain(s);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    /* After the daemon: its threads could still hand over sockets until now. */
    p2p__http_linger_stop(s->linger);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    P2P_INFO("http: stopped serving on %s port %u", s->host, (unsigned)s->port);
}

void p2p_http_server_free(p2p_http_server *s) {
    if (s == NULL)
        return;
    p2p_http_server_stop(s);
    p2p_longpoll_free(s->lp);
    p2p__http_linger_free(s->linger);
    while (s->abandoned != NULL) {
        p2p_http_request *req = s->abandoned;
        list_remove(&s->abandoned, req);
        request_free(req);
    }
    p2p_http_router_free(s->router);
    free(s->host);
    free(s->tmp_dir);
    free(s->tls_cert);
    free(s->tls_key);
    pthread_cond_destroy(&s->drained);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
