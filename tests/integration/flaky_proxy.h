/* A TCP proxy on 127.0.0.1:0 in front of a broker that drops connections in
 * the middle of blob downloads, to test that a worker resumes them with
 * Range.
 *
 * It relays bytes both ways unchanged (signatures cover method and path, not
 * the host, so a signed client goes through). It reads the requests as they
 * pass: after a `GET /api/v1/blobs/...` request, while it still has cuts to
 * make, it relays `cut_after` bytes of the answer and then closes both sides
 * of that connection. It counts the cuts it made and the requests that
 * carried a `Range:` header. It can also flip a byte of blob answers instead
 * (flaky_proxy_corrupt). One thread accepts, one thread per connection
 * relays; every wait is a poll on the sockets and a stop pipe. */
#ifndef P2PRPC_TEST_FLAKY_PROXY_H
#define P2PRPC_TEST_FLAKY_PROXY_H

#include "error.h"
#include "harness.h"

typedef struct flaky_proxy flaky_proxy;

/* Starts relaying to the http://127.0.0.1:PORT of `upstream_url` (borrowed);
 * makes at most `cuts` cuts, each after `cut_after` bytes of a blob answer.
 * `*out` is the caller's (flaky_proxy_free). Returns 0, P2P_EINVAL, P2P_EIO
 * or P2P_ENOMEM. */
int flaky_proxy_start(const char *upstream_url, int cuts, long cut_after, flaky_proxy **out,
                      p2p_error *err) P2P_NODISCARD;

/* From now on, flips one byte of each of the next `count` blob answers, at
 * `offset` bytes from the start of the answer (status line and headers
 * included: give an offset well past them), instead of cutting. */
void flaky_proxy_corrupt(flaky_proxy *p, int count, long offset);

/* Answers corrupted so far. */
int flaky_proxy_corrupted(flaky_proxy *p);

/* "http://127.0.0.1:PORT" of the proxy; borrowed until free. */
const char *flaky_proxy_url(const flaky_proxy *p);

/* Connections cut so far. */
int flaky_proxy_cuts(flaky_proxy *p);

/* Requests seen so far with a Range header, and blob GETs. */
int flaky_proxy_range_requests(flaky_proxy *p);
int flaky_proxy_blob_gets(flaky_proxy *p);

/* Blob uploads (PUT) and existence checks (HEAD) seen so far. */
int flaky_proxy_blob_puts(flaky_proxy *p);
int flaky_proxy_blob_heads(flaky_proxy *p);

/* Closes every connection, stops the threads and frees. NULL is a no-op. */
void flaky_proxy_free(flaky_proxy *p);

#endif
