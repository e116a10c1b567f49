/* The HTTP server every p2prpc node runs, on libmicrohttpd.
 *
 * - A route table: method, pattern ("/blobs/{hash}"), handler, flags, body
 *   limit. Unknown path -> 404, known path with another method -> 405 with an
 *   Allow header; both as JSON errors.
 * - Body limits: a Content-Length over the route's limit gets 413 before one
 *   byte of the body is read. A chunked body that grows past it is no longer
 *   stored; if it ends within `max_discard` more bytes it gets its 413 at its
 *   end, through libmicrohttpd, and the connection stays open. Beyond that
 *   (libmicrohttpd cannot answer in the middle of an upload) the server
 *   writes the 413 on the socket itself, drops the connection, and keeps the
 *   socket "lingering": what the client still sends is read and dropped for
 *   a bounded time (`linger_*`), so the close does not reset the connection
 *   and destroy the answer. Over TLS the answer cannot be written by hand:
 *   such a connection is closed without an answer.
 * - Bodies larger than `spool_threshold` are streamed to a temp file; the
 *   SHA-256 of the body can be computed while it arrives.
 * - Async handlers and long-poll: a handler that returns without answering
 *   leaves its request suspended (no thread, no CPU) until it is answered
 *   from any thread, or until the long-poll park it was put in wakes up
 *   (notify, timeout, client hang-up or shutdown).
 * - Threads: libmicrohttpd's epoll thread pool (`threads`) runs handlers and
 *   wake callbacks; one more thread keeps long-poll deadlines, and one epolls
 *   the lingering sockets.
 * - Optional TLS from PEM cert and key files; an optional authorize hook run
 *   on every non-PUBLIC route before the body is read.
 *
 * Every error answer has the body {"error":{"code":"...","message":"..."}}
 * (see error.h for the codes and their HTTP statuses). */
#ifndef P2PRPC_HTTP_SERVER_H
#define P2PRPC_HTTP_SERVER_H

#include "error.h"
#include "http_router.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct p2p_http_server p2p_http_server;
typedef struct p2p_http_request p2p_http_request;

/* Decides whether a request may proceed, from its method, target and headers
 * (the body is not read yet). Returns 0 to accept, or a negative P2P_E* code
 * (P2P_EAUTH -> 401) with a message in `err` that is sent to the client. */
typedef int (*p2p_http_authorize_fn)(void *ctx, const p2p_http_request *req, p2p_error *err);

/* Zero-initialise, then set what you need: every 0/NULL field has a default. */
typedef struct p2p_http_server_options {
    const char *host;         /* numeric IPv4/IPv6 address; NULL = "127.0.0.1" */
    uint16_t port;            /* 0 = any free port; see p2p_http_server_port */
    unsigned threads;         /* event-loop threads; 0 = 2 */
    unsigned max_connections; /* 0 = 4096 (idle long-poll waiters count) */
    unsigned idle_timeout_s;  /* idle connections are closed; 0 = 120 */
    uint64_t max_body;        /* default body limit in bytes; 0 = 1 MiB */
    size_t spool_threshold;   /* bodies larger go to a file; 0 = 256 KiB */
    uint64_t max_discard;     /* over-limit chunked bytes drained to send 413; 0 = 1 MiB */
    /* Lingering close (plain HTTP): sockets answered by hand and read for a
     * while before they are closed; when `linger_max` linger already, the
     * next one is closed right after its answer. Each lingers until the
     * client closes, `linger_idle_ms` pass without data, `linger_ms` pass, or
     * `linger_bytes` were read from it, whichever comes first. */
    unsigned linger_max;       /* 0 = 64; at most 65536 */
    unsigned linger_ms;        /* 0 = 5000 */
    unsigned linger_idle_ms;   /* 0 = 2000 */
    uint64_t linger_bytes;     /* 0 = 16 MiB */
    const char *tmp_dir;       /* directory for spooled bodies; NULL = $TMPDIR or /tmp */
    const char *tls_cert_file; /* PEM files; both or neither */
    const char *tls_key_file;
    const p2p_http_route *routes; /* copied by p2p_http_server_new */
    size_t n_routes;
    void *handler_ctx;               /* passed to every handler; borrowed */
    p2p_http_authorize_fn authorize; /* NULL = every request is accepted */
    void *authorize_ctx;
    unsigned stop_grace_ms; /* how long stop waits for async answers; 0 = 5000 */
    /* Called once per answered request, when its response was sent or the
     * connection closed, with the answer's status and the time from the
     * request line to then. Any server thread; must be quick. NULL = none. */
    void (*on_complete)(void *ctx, const p2p_http_request *req, unsigned status,
                        int64_t duration_us);
    void *on_complete_ctx;
} p2p_http_server_options;

/* ---- server lifecycle ---- */

/* Validates the options, compiles the routes and reads the TLS files. Nothing
 * listens yet. `*out` is set on success; caller frees with
 * p2p_http_server_free. Returns 0, P2P_EINVAL (bad option or pattern, with
 * the reason in `err`), P2P_EIO (unreadable TLS file) or P2P_ENOMEM. */
int p2p_http_server_new(const p2p_http_server_options *opts, p2p_http_server **out,
                        p2p_error *err) P2P_NODISCARD;

/* Binds and starts serving. Returns 0, P2P_EIO when the address cannot be
 * bound or TLS cannot be set up, P2P_EINVAL when already started. */
int p2p_http_server_start(p2p_http_server *s, p2p_error *err) P2P_NODISCARD;

/* The bound port (useful with port 0), or 0 when not started. */
uint16_t p2p_http_server_port(const p2p_http_server *s);

/* Stops serving. New connections are refused at once; parked requests are
 * woken with P2P_HTTP_WAKE_SHUTDOWN; requests in flight (uploads, downloads,
 * async handlers) get `stop_grace_ms` to finish. Those still waiting for an
 * async answer then get a 503 from the server itself (a later respond on
 * such a request is ignored, until p2p_http_server_free), and after at most
 * one more second every connection is closed, lingering sockets too (at
 * once: their answers were already sent). When it returns no handler or
 * wake callback runs any more. Idempotent; must not be called from a handler
 * or wake callback. */
void p2p_http_server_stop(p2p_http_server *s);

/* Stops (see above) and frees. NULL is a no-op. */
void p2p_http_server_free(p2p_http_server *s);

/* Wakes every request parked on `topic` (P2P_HTTP_WAKE_NOTIFIED) and
 * returns how many. Callable from any thread, including handlers. */
size_t p2p_http_server_notify(p2p_http_server *s, const char *topic);

/* Number of requests currently parked. */
size_t p2p_http_server_parked(p2p_http_server *s);

/* Number of requests in flight: from their request line until they are
 * answered and sent, or their connection is gone (parked ones included). */
size_t p2p_http_server_in_flight(p2p_http_server *s);

/* Number of sockets lingering now (answered by hand, see above). Their
 * requests are no longer in flight. */
size_t p2p_http_server_lingering(p2p_http_server *s);

/* ---- request accessors (borrowed; valid until the request is answered) ---- */

/* The method as sent ("GET", "PUT"...). */
const char *p2p_http_request_method(const p2p_http_request *req);
/* The path as sent, without the query ("/blobs/ab%20c"). */
const char *p2p_http_request_path(const p2p_http_request *req);
/* The request target as sent: path and query ("/x?wait=30"). What signatures cover. */
const char *p2p_http_request_target(const p2p_http_request *req);
/* A {name} capture of the route pattern, percent-decoded; NULL if no such name. */
const char *p2p_http_request_param(const p2p_http_request *req, const char *name);
/* A query argument, percent-decoded; NULL when absent ("" for "?flag"). */
const char *p2p_http_request_query(const p2p_http_request *req, const char *name);
/* A request header, name case-insensitive; NULL when absent. */
const char *p2p_http_request_header(const p2p_http_request *req, const char *name);

/* Parses the query argument `name` as a decimal integer in [min, max].
 * Returns 0 with `*out` set, P2P_ENOTFOUND when absent (`*out` untouched),
 * P2P_EINVAL when malformed or out of range (message in `err`). */
int p2p_http_request_query_int(const p2p_http_request *req, const char *name, int64_t min,
                               int64_t max, int64_t *out, p2p_error *err) P2P_NODISCARD;

/* Size of the request body in bytes. */
uint64_t p2p_http_request_body_size(const p2p_http_request *req);
/* The body when it is in memory (NUL-terminated; length in `*len`, may be
 * NULL); "" with length 0 for no body; NULL when the body is in a file. */
const char *p2p_http_request_body(const p2p_http_request *req, size_t *len);
/* The temp file holding the body (read it with pread), or -1 / NULL. */
int p2p_http_request_body_fd(const p2p_http_request *req);
const char *p2p_http_request_body_path(const p2p_http_request *req);
/* SHA-256 of the body, 64 lowercase hex, on P2P_HTTP_HASH_BODY routes; else NULL. */
const char *p2p_http_request_body_sha256(const p2p_http_request *req);

/* Takes over the body's temp file so it survives the request: `*path`
 * receives its path (caller frees with free(), and must rename or unlink the
 * file). Returns 0, P2P_ENOTFOUND when the body is not in a file, P2P_ENOMEM. */
int p2p_http_request_take_body_file(p2p_http_request *req, char **path,
                                    p2p_error *err) P2P_NODISCARD;

/* Parses the body as JSON into `*out` (caller json_decref's). On a missing or
 * malformed body the request has ALREADY been answered with 400 and the
 * function returns P2P_EINVAL: the handler must just return. */
int p2p_http_request_json(p2p_http_request *req, json_t **out) P2P_NODISCARD;

/* ---- responses: exactly one per request, from any thread ---- */

/* Adds a header to the response that will be sent (call before responding).
 * Returns 0, P2P_EINVAL (name or value with CR/LF, or empty name), P2P_ENOMEM. */
int p2p_http_response_header(p2p_http_request *req, const char *name,
                             const char *value) P2P_NODISCARD;

/* Each respond function answers `req` and gives it back to the server: `req`
 * must not be used after the call. When the response cannot be built (out of
 * memory) a 500 is sent instead. Calling one on a parked request is a bug: it
 * is logged and ignored (the wake callback must answer). */

/* Sends `body` (takes ownership, even on error) as compact JSON. */
void p2p_http_respond_json(p2p_http_request *req, unsigned status, json_t *body);
/* Sends {"error":{"code":p2p_error_name(code),"message":...}} with `status`,
 * or p2p_error_http_status(code) when `status` is 0. */
void p2p_http_respond_error(p2p_http_request *req, unsigned status, int code, const char *fmt, ...)
    P2P_PRINTF(4, 5);
/* Same from a filled p2p_error (its code and message). */
void p2p_http_respond_err(p2p_http_request *req, const p2p_error *err);
/* Sends a copy of `len` bytes of `data` (borrowed) with `content_type`
 * (NULL = application/octet-stream). */
void p2p_http_respond_bytes(p2p_http_request *req, unsigned status, const void *data, size_t len,
                            const char *content_type);
/* Sends no body (for 204, or a 200 to HEAD). */
void p2p_http_respond_empty(p2p_http_request *req, unsigned status);
/* Streams `length` bytes of `fd` from `offset` in constant memory (sendfile
 * without TLS). Takes ownership of `fd`, even on error. */
void p2p_http_respond_file(p2p_http_request *req, unsigned status, int fd, uint64_t offset,
                           uint64_t length, const char *content_type);
/* Streams the whole regular file `fd` (takes ownership) honouring the
 * request's Range header: 200 without one (or with one this server does not
 * handle, such as several ranges), 206 with Content-Range for one satisfiable
 * range, 416 with an unsatisfied-range Content-Range giving the size
 * otherwise (RFC 9110 section 14.4). Always sends Accept-Ranges: bytes. */
void p2p_http_respond_file_range(p2p_http_request *req, int fd, const char *content_type);

/* Reads up to `max` bytes of a streamed body at `offset` (counted from the
 * start of the whole content) into `buf`: returns the count (> 0), or 0 or
 * a negative value when it cannot, which cuts the connection. */
typedef int64_t (*p2p_http_read_fn)(void *ctx, uint64_t offset, char *buf, size_t max);

/* Like p2p_http_respond_file_range for a content of `size` bytes that
 * `read` produces piece by piece (64 KiB at a time, in constant memory),
 * from a thread of the server, after this returns. `free_ctx` (may be NULL)
 * is called on `ctx` exactly once, when the response is done or could not be
 * built; `ctx` is borrowed until then. */
void p2p_http_respond_stream_range(p2p_http_request *req, uint64_t size, p2p_http_read_fn read,
                                   void *ctx, void (*free_ctx)(void *ctx),
                                   const char *content_type);

typedef enum p2p_http_range_result {
    P2P_HTTP_RANGE_NONE = 0,          /* no usable Range: send the whole content */
    P2P_HTTP_RANGE_PARTIAL = 1,       /* `*offset`, `*length` describe one range */
    P2P_HTTP_RANGE_UNSATISFIABLE = 2, /* 416 */
} p2p_http_range_result;

/* Parses one "bytes=first-last", "bytes=first-" or "bytes=-suffix" Range
 * value against a content of `size` bytes. NULL, a malformed value or a list
 * of ranges give P2P_HTTP_RANGE_NONE (RFC 9110 lets a server ignore them). */
p2p_http_range_result p2p_http_range_parse(const char *value, uint64_t size, uint64_t *offset,
                                           uint64_t *length);

/* ---- long-poll ---- */

typedef enum p2p_http_wake {
    P2P_HTTP_WAKE_NOTIFIED = 0, /* p2p_http_server_notify named the topic */
    P2P_HTTP_WAKE_TIMEOUT = 1,  /* the park's timeout passed */
    P2P_HTTP_WAKE_CLOSED = 2,   /* the client hung up: answer, but nobody may read it */
    P2P_HTTP_WAKE_SHUTDOWN = 3, /* the server is stopping; answer (503) now */
} p2p_http_wake;

/* Runs in a server thread, exactly once per successful park. It must answer
 * `req` or park it again (a park fails after CLOSED and SHUTDOWN, and then the
 * callback must answer). */
typedef void (*p2p_http_wake_fn)(p2p_http_request *req, void *ctx, p2p_http_wake why);

/* Parks `req` on `topic` (copied) for at most `timeout_ms` (<= 0 wakes with
 * TIMEOUT at once, from another thread; more than a day is cut to a day).
 * Call it from the request's handler or wake callback, then return without
 * answering. `ctx` is borrowed until `on_wake` runs. While parked, the
 * client's socket is watched: a hang-up (or a half-close of its sending side)
 * wakes the request with CLOSED at once. Returns 0 (on_wake will run exactly once), or
 * P2P_ECANCELED when the server is stopping or the client is gone, P2P_EINVAL (empty topic, already
 * answered or parked), P2P_ENOMEM; on error on_wake never runs and the caller still has to answer.
 */
int p2p_http_request_park(p2p_http_request *req, const char *topic, int64_t timeout_ms,
                          p2p_http_wake_fn on_wake, void *ctx, p2p_error *err) P2P_NODISCARD;

/* Milliseconds of CLOCK_MONOTONIC, for keeping long-poll deadlines. */
int64_t p2p_http_now_ms(void);

#endif
