/* Shared between the HTTP server's own files (http_server.c,
 * http_response.c, http_linger.c). Not part of the public API: nothing
 * outside common/http_* may include it. */
#ifndef P2PRPC_HTTP_INTERNAL_H
#define P2PRPC_HTTP_INTERNAL_H

#include "http_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Response;

/* Adds the Content-Type (when not NULL) and the headers set with
 * p2p_http_response_header to `resp`, then makes it the answer of `req`.
 * Takes ownership of `resp`; NULL (out of memory) sends a 500. Any thread. */
void p2p__http_finish(p2p_http_request *req, unsigned status, struct MHD_Response *resp,
                      const char *content_type);

/* Parses exactly `len` decimal digits (no sign, no space) into `*out`.
 * Returns false on anything else, overflow included. */
bool p2p__http_parse_u64(const char *s, size_t len, uint64_t *out);

/* The error body {"error":{"code":p2p_error_name(code),"message":msg}}, the
 * one every error answer carries. Caller json_decref's; NULL when out of
 * memory. A `msg` that is not UTF-8 is replaced by a fixed message. */
json_t *p2p__http_error_json(int code, const char *msg);

/* ---- lingering close (http_linger.c) ----
 *
 * libmicrohttpd cannot answer in the middle of an upload. For a body far over
 * its limit the server writes the answer on the socket itself, then lets
 * libmicrohttpd drop the connection while a duplicate of the socket stays
 * open here: what the client still sends is read and thrown away for a
 * bounded time, so closing does not reset the connection (a reset can destroy
 * the answer before the client reads it). One thread epolls every lingering
 * socket. Plain sockets only: a TLS stream cannot be written raw. */

typedef struct p2p__http_linger p2p__http_linger;

typedef struct p2p__http_linger_limits {
    unsigned max_sockets; /* lingering at once; more are closed at once */
    unsigned total_ms;    /* a socket lingers at most this long... */
    unsigned idle_ms;     /* ...or this long without data... */
    uint64_t max_bytes;   /* ...or until this much was read from it */
} p2p__http_linger_limits;

/* Creates a stopped lingering set (limits copied, all non-zero). `*out` is
 * set on success; caller frees with p2p__http_linger_free. Returns 0,
 * P2P_ENOMEM or P2P_EIO (epoll/eventfd). */
int p2p__http_linger_new(const p2p__http_linger_limits *lim, p2p__http_linger **out,
                         p2p_error *err) P2P_NODISCARD;

/* Starts its thread. Returns 0, P2P_EINVAL when already started, P2P_EIO. */
int p2p__http_linger_start(p2p__http_linger *lg, p2p_error *err) P2P_NODISCARD;

/* Writes a complete HTTP/1.1 answer with `status`, `json` (borrowed) as its
 * body and Connection: close to the plain socket `fd` (borrowed: the caller's
 * connection still owns it), without blocking. When all of it was written,
 * shuts down a duplicate of the socket for writing and keeps it lingering
 * (or, the set being full or stopped, keeps nothing) and returns true; the
 * caller must then drop its connection at once, before sending anything.
 * Returns false when the answer could not be written whole (nothing lingers).
 * Any thread. */
bool p2p__http_linger_answer(p2p__http_linger *lg, int fd, unsigned status, const json_t *json);

/* Number of sockets lingering now. */
size_t p2p__http_linger_count(p2p__http_linger *lg);

/* Stops the thread and closes every lingering socket at once; later answers
 * linger nothing. Idempotent. */
void p2p__http_linger_stop(p2p__http_linger *lg);

/* Stops (see above) and frees. NULL is a no-op. */
void p2p__http_linger_free(p2p__http_linger *lg);

#endif
