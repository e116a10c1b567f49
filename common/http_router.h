/* The route table of the HTTP server: patterns compiled once, matched per
 * request against the raw path.
 *
 * A pattern is "/" or a list of "/segment" parts, each either a literal or a
 * whole-segment capture "{name}" (name: letters, digits, '_'). Captures match
 * one non-empty segment and are percent-decoded. Literals compare exactly, so
 * "/blobs/" does not match "/blobs". The first route in table order whose
 * pattern and method match wins. */
#ifndef P2PRPC_HTTP_ROUTER_H
#define P2PRPC_HTTP_ROUTER_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_http_request p2p_http_request;

/* Handles one request. Contract: exactly one p2p_http_respond_* call for
 * `req`, either before returning or later from any thread; or one successful
 * p2p_http_request_park, after which the wake callback takes over. `ctx` is
 * the server's `handler_ctx`. Runs in a server thread: do not block long. */
typedef void (*p2p_http_handler_fn)(p2p_http_request *req, void *ctx);

/* Route flags. */
enum {
    P2P_HTTP_PUBLIC = 1u << 0,        /* the authorize hook is not run */
    P2P_HTTP_SPOOL_TO_FILE = 1u << 1, /* the body always goes to a temp file */
    P2P_HTTP_HASH_BODY = 1u << 2,     /* compute the body's SHA-256 on the way in */
};

typedef struct p2p_http_route {
    const char *method;  /* "GET", "PUT"...: exact, case-sensitive */
    const char *pattern; /* "/api/v1/{function}/push_update" */
    p2p_http_handler_fn handler;
    unsigned flags;    /* P2P_HTTP_* */
    uint64_t max_body; /* bytes; 0 = the server's max_body */
} p2p_http_route;

#define P2P_HTTP_MAX_PARAMS 8

typedef struct p2p_http_router p2p_http_router;

/* The result of a match: the route and its captures. */
typedef struct p2p_http_match {
    const p2p_http_route *route; /* borrowed from the router */
    size_t n_params;
    const char *names[P2P_HTTP_MAX_PARAMS]; /* borrowed from the router */
    char *values[P2P_HTTP_MAX_PARAMS];      /* owned: p2p_http_match_cleanup */
} p2p_http_match;

/* Copies and compiles `n` routes (`routes` is borrowed for the call). `*out`
 * is set on success; caller frees with p2p_http_router_free. Returns 0,
 * P2P_EINVAL for a bad route (which one and why in `err`), P2P_ENOMEM. */
int p2p_http_router_new(const p2p_http_route *routes, size_t n, p2p_http_router **out,
                        p2p_error *err) P2P_NODISCARD;

/* Frees the router. NULL is a no-op. */
void p2p_http_router_free(p2p_http_router *r);

/* Matches `method` and the raw `path` (`path_len` bytes, no query). Returns
 * 0 and fills `m` (clean it with p2p_http_match_cleanup); P2P_ENOTFOUND when
 * no pattern matches the path; P2P_ECONFLICT when patterns match but not with
 * this method, with the allowed methods written to `allow` as "GET, PUT"
 * (truncated to `allow_size`); P2P_ENOMEM. On error `m` holds nothing. */
int p2p_http_router_match(const p2p_http_router *r, const char *method, const char *path,
                          size_t path_len, p2p_http_match *m, char *allow,
                          size_t allow_size) P2P_NODISCARD;

/* The value of capture `name` in `m`, or NULL. */
const char *p2p_http_match_param(const p2p_http_match *m, const char *name);

/* Frees the captured values and empties `m`. */
void p2p_http_match_cleanup(p2p_http_match *m);

#endif
