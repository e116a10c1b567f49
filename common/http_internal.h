/* Shared between the HTTP server's own files (http_server.c,
 * http_response.c). Not part of the public API: nothing outside common/http_*
 * may include it. */
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

#endif
