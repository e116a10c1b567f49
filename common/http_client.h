/* An HTTP client on libcurl, shared by the client and the worker.
 *
 * One p2p_http_client holds the options and a small pool of curl handles, so
 * that keep-alive connections are reused from one request to the next. It is
 * thread-safe: any number of threads may run requests on it at once.
 *
 * Each request may stream its body from a file and its response into a file
 * in constant memory, resume a partial download with Range, and is signed
 * (see sign.h) when the client has a secret. Idempotent requests are retried
 * with exponential backoff and full jitter on connection failures, timeouts
 * and 502/503/504. A request that is not idempotent is retried only when its
 * connection could not even be opened, so its bytes never reached a server. */
#ifndef P2PRPC_HTTP_CLIENT_H
#define P2PRPC_HTTP_CLIENT_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Client options. Fill with p2p_http_client_options_init(), then change fields. */
typedef struct p2p_http_client_options {
    long connect_timeout_ms;     /* to open a connection (TCP and TLS); default 5000 */
    long timeout_ms;             /* whole attempt; default 60000; -1 for none */
    int max_retries;             /* retries after the first attempt; default 3 */
    long backoff_base_ms;        /* first backoff cap; default 200 */
    long backoff_max_ms;         /* largest backoff cap; default 10000 */
    const unsigned char *secret; /* signs every request when not NULL; copied */
    size_t secret_len;
    const char *ca_file;    /* PEM bundle to trust instead of the system's; copied */
    const char *ca_path;    /* directory of hashed CA certificates; copied */
    bool insecure;          /* skip TLS peer and host verification; default false */
    const char *user_agent; /* copied; default "p2prpc/<version>" */
    size_t max_body;        /* largest response body kept in memory; default 16 MiB */
    int pool_size;          /* idle handles (and so connections) kept; default 8 */
} p2p_http_client_options;

/* Fills `opts` with the defaults above. */
void p2p_http_client_options_init(p2p_http_client_options *opts);

/* Called as bytes move: `done` of `total` (total is 0 while unknown). For a
 * request with a body it counts the upload, otherwise the download, and a
 * resumed download counts the bytes already on disk. Returning non-zero
 * cancels the request with P2P_ECANCELED. Runs on the requesting thread. */
typedef int (*p2p_http_progress_fn)(void *arg, int64_t done, int64_t total);

/* One request. Zero-initialise, then set what you need. Every pointer is
 * borrowed until p2p_http_client_request() returns. */
typedef struct p2p_http_call {
    const char *method; /* "GET", "POST", "PUT", "HEAD", "DELETE"...; required */
    const char *url;    /* absolute http:// or https:// URL; required */
    const void *body;   /* in-memory body, `body_len` bytes; or NULL */
    size_t body_len;
    const char *content_type;   /* of the body; default "application/octet-stream" */
    const char *upload_path;    /* stream this file as the body (instead of `body`) */
    const char *download_path;  /* stream a 2xx body here (made 0644 & ~umask); others: `body` */
    bool resume;                /* with download_path: continue the partial file there */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated; or NULL */
    bool idempotent;            /* safe to send twice (GET, HEAD, PUT of a blob...) */
    p2p_http_progress_fn progress;
    void *progress_arg;
    long timeout_ms; /* this request's whole-attempt timeout; 0 = client's, -1 = none */
} p2p_http_call;

/* What came back. Fill by p2p_http_client_request(); release with
 * p2p_http_reply_cleanup(). */
typedef struct p2p_http_reply {
    long status; /* HTTP status of the last attempt; 0 when none arrived */
    char *body;  /* NUL-terminated in-memory body (empty when streamed to a file) */
    size_t body_len;
    char content_type[128];  /* the Content-Type header, or "" */
    char content_range[128]; /* the Content-Range header, or "" */
    int attempts;            /* attempts made, 1 + retries */
    int64_t file_size;       /* with download_path: the file's size after the request */
    bool resumed;            /* with resume: a 206 continued the partial file */
    bool already_complete;   /* with resume: 416 said the partial file is the whole */
} p2p_http_reply;

typedef struct p2p_http_client p2p_http_client;

/* Creates a client. `opts` (borrowed for the call; strings and secret are
 * copied) may be NULL for the defaults. Returns NULL with `err` filled when
 * an option is out of range or memory runs out. */
p2p_http_client *p2p_http_client_new(const p2p_http_client_options *opts, p2p_error *err);

/* Frees the client and its pooled connections. NULL is a no-op. No request
 * may be running on it. */
void p2p_http_client_free(p2p_http_client *c);

/* Runs `req`, with retries as described at the top of this file, and fills
 * `*resp` (overwritten; call p2p_http_reply_cleanup() afterwards in every
 * case). Returns 0 when a response arrived, whatever its status: use
 * p2p_http_reply_check() to turn a non-2xx status into an error.
 * Otherwise returns P2P_EINVAL (bad request or URL), P2P_EUNAVAIL (cannot
 * connect, connection lost), P2P_ETIMEDOUT, P2P_ETOOBIG (in-memory body over
 * max_body), P2P_EIO (local file error), P2P_EPROTO (the server broke HTTP or
 * the Range contract), P2P_EAUTH (TLS verification failed) or P2P_ECANCELED
 * (progress callback). Thread-safe. */
int p2p_http_client_request(p2p_http_client *c, const p2p_http_call *req, p2p_http_reply *resp,
                            p2p_error *err) P2P_NODISCARD;

/* Frees the body and zeroes `*resp`. Safe on a zeroed response. */
void p2p_http_reply_cleanup(p2p_http_reply *resp);

/* Returns 0 for a 2xx status (or a resumed download already complete).
 * Otherwise returns the error the response carries: the code named by a
 * JSON body {"error": {"code": "not_found", "message": "..."}} (see
 * docs/protocol.md), or one derived from the status (401 -> P2P_EAUTH,
 * 404 -> P2P_ENOTFOUND, 503 -> P2P_EUNAVAIL...), with the server's message. */
int p2p_http_reply_check(const p2p_http_reply *resp, p2p_error *err) P2P_NODISCARD;

/* Parses the response body as JSON into `*out` (a new reference: caller
 * json_decref()s it). Returns 0, or P2P_EPROTO when the body is not JSON. */
int p2p_http_reply_json(const p2p_http_reply *resp, json_t **out, p2p_error *err) P2P_NODISCARD;

/* POSTs `body` (borrowed) as compact JSON to `url` and reads the answer, the
 * exchange every broker route but blobs uses. `*status` receives the HTTP
 * status (0 when no answer came). On a 2xx, `*reply` (may be NULL when the
 * caller wants no body) receives the parsed JSON body, or NULL when the body
 * is empty; the caller json_decref()s it. A non-2xx answer returns the error
 * it carries (p2p_http_reply_check). `idempotent` as in p2p_http_call. */
int p2p_http_client_post_json(p2p_http_client *c, const char *url, const json_t *body,
                              bool idempotent, json_t **reply, long *status,
                              p2p_error *err) P2P_NODISCARD;

/* Returns a new string "BASE" "api/v1/" "SCOPE" "/" "ROUTE" (caller frees), or
 * NULL when out of memory: a broker route of a function, or a blob
 * ("blobs", hash). `base` is a normalised broker URL, ending with '/'
 * (p2p_discovery_normalize). */
char *p2p_http_api_url(const char *base, const char *scope, const char *route);

/* Returns a random delay in [0, min(max_ms, base_ms * 2^attempt)] ms: the
 * "full jitter" backoff before retry number `attempt` (0 for the first). */
long p2p_http_backoff_ms(long base_ms, long max_ms, int attempt);

/* Resolves `ref` (an absolute URL, or a path like "/f/x" or "x") against the
 * absolute URL `base`, both borrowed, with libcurl's URL parser. Stores a new
 * string in `*out` (caller frees with free()). Returns 0 or P2P_EINVAL. */
int p2p_http_url_join(const char *base, const char *ref, char **out, p2p_error *err) P2P_NODISCARD;

/* Appends "name=value" to the query of `*url`, percent-encoding both. On
 * success replaces `*url` (freed; the new one is the caller's to free()).
 * Returns 0 or P2P_EINVAL, leaving `*url` as it was. */
int p2p_http_url_add_query(char **url, const char *name, const char *value,
                           p2p_error *err) P2P_NODISCARD;

/* Percent-encodes `s` (borrowed) for use as one path segment or query value.
 * Returns a new string (caller frees with free()), or NULL when out of memory. */
char *p2p_http_escape(const char *s);

#endif
