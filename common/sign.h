/* Request signing: every request carries an HMAC-SHA256, made with a shared
 * secret, over its method, its request target, a timestamp and a nonce.
 *
 * The signed string is
 *
 *     "p2prpc-v1\n" METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" NONCE
 *
 * where PATH_WITH_QUERY is the request target exactly as it appears on the
 * request line (path, then "?" and the query when there is one; not decoded,
 * not normalised), TIMESTAMP is unix seconds in decimal and NONCE is 32
 * lowercase hex characters. Three headers carry the result (names below).
 *
 * The server side is a p2p_sign_verifier: it refuses missing or malformed
 * headers, timestamps outside +-skew of its clock, bad signatures (compared in
 * constant time) and nonces it has already accepted. See docs/protocol.md,
 * section "Request signing", for the rules and the behaviour under load. */
#ifndef P2PRPC_SIGN_H
#define P2PRPC_SIGN_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define P2P_SIGN_HEADER_TIME "X-P2P-Time"
#define P2P_SIGN_HEADER_NONCE "X-P2P-Nonce"
#define P2P_SIGN_HEADER_SIGNATURE "X-P2P-Signature"

/* Lengths of the hex header values, without the NUL. */
#define P2P_SIGN_NONCE_HEX_LEN 32
#define P2P_SIGN_SIGNATURE_HEX_LEN 64

/* Default and largest allowed clock skew, in seconds. */
#define P2P_SIGN_DEFAULT_SKEW 300
#define P2P_SIGN_MAX_SKEW 3600

/* Default bound on the nonces a verifier remembers (at most about 45 MB). */
#define P2P_SIGN_DEFAULT_MAX_NONCES (1u << 20)

/* The three header values of one signed request, NUL-terminated. A value type:
 * embed it, copy it, no cleanup. */
typedef struct p2p_sign_headers {
    char time[24];                                  /* X-P2P-Time */
    char nonce[P2P_SIGN_NONCE_HEX_LEN + 1];         /* X-P2P-Nonce */
    char signature[P2P_SIGN_SIGNATURE_HEX_LEN + 1]; /* X-P2P-Signature */
} p2p_sign_headers;

/* Signs one request. `secret` (borrowed, `secret_len` > 0 bytes), `method`
 * (e.g. "GET") and `path_and_query` (starts with '/', e.g. "/f/x?wait=5") are
 * borrowed for the call; neither may contain a newline. `now` is the unix time
 * in seconds to put in the request. A fresh random nonce is drawn for each
 * call. Fills `*out` and returns 0, or P2P_EINVAL for bad arguments, or
 * P2P_EINTERNAL when OpenSSL fails. */
int p2p_sign_request(const unsigned char *secret, size_t secret_len, const char *method,
                     const char *path_and_query, int64_t now, p2p_sign_headers *out,
                     p2p_error *err) P2P_NODISCARD;

typedef struct p2p_sign_verifier p2p_sign_verifier;

/* Creates a verifier for `secret` (copied; the caller keeps its buffer) that
 * accepts timestamps within +-`skew_seconds` (1..P2P_SIGN_MAX_SKEW) of the
 * `now` given to p2p_sign_verify(). It remembers at most
 * P2P_SIGN_DEFAULT_MAX_NONCES nonces. Returns NULL on bad arguments or
 * allocation failure, with `err` filled. Free with p2p_sign_verifier_free(). */
p2p_sign_verifier *p2p_sign_verifier_new(const unsigned char *secret, size_t secret_len,
                                         int skew_seconds, p2p_error *err);

/* Frees the verifier and wipes its copy of the secret. NULL is a no-op. No
 * p2p_sign_verify() call may be running on it. */
void p2p_sign_verifier_free(p2p_sign_verifier *v);

/* Changes the bound on remembered nonces (at least 1). When more are held, the
 * oldest go at once, as described under p2p_sign_verify(). Thread-safe. */
void p2p_sign_verifier_set_max_nonces(p2p_sign_verifier *v, size_t max_nonces);

/* Verifies one request. `method` and `path_and_query` are as in
 * p2p_sign_request() (the request target as received, before any decoding);
 * the three header values may be NULL when the header is absent. All borrowed
 * for the call. `now` is the server's unix time in seconds.
 *
 * Returns 0 when the signature is good, the timestamp is within +-skew and the
 * nonce was never accepted before; the nonce is then remembered until its
 * timestamp leaves the window. Otherwise returns P2P_EAUTH with a message
 * naming the reason (missing header, malformed header, stale timestamp, bad
 * signature, replayed nonce), or P2P_EINVAL when `method` or `path_and_query`
 * is NULL. Answer with p2p_error_http_status() of the code (401 for EAUTH).
 *
 * Under load, when the bound on nonces is reached, the oldest second of
 * nonces is forgotten and every timestamp up to that second is refused from
 * then on with P2P_EUNAVAIL (503, so that the sender retries with a new
 * time): the window shrinks, replays stay impossible. P2P_ENOMEM when the
 * cache cannot grow. Thread-safe: may be called from many threads at once. */
int p2p_sign_verify(p2p_sign_verifier *v, const char *method, const char *path_and_query,
                    const char *time_hdr, const char *nonce_hdr, const char *sig_hdr, int64_t now,
                    p2p_error *err) P2P_NODISCARD;

/* A snapshot of a verifier's replay cache, for metrics and tests. */
typedef struct p2p_sign_stats {
    size_t nonces;      /* nonces remembered now */
    size_t bytes;       /* heap bytes held by the replay cache */
    uint64_t evictions; /* seconds of nonces forgotten early because of the bound */
    int64_t floor;      /* timestamps <= floor are refused; INT64_MIN when none */
} p2p_sign_stats;

/* Fills `*out` with the verifier's current figures. Thread-safe. */
void p2p_sign_verifier_stats(p2p_sign_verifier *v, p2p_sign_stats *out);

/* Reads a secret file at `path` (borrowed): the whole content, less trailing
 * "\n" and "\r\n", must be 1..65536 bytes. Logs a warning when group or others
 * may read the file. On success stores a new buffer in `*secret` (caller frees
 * it with p2p_secret_free()) and its length in `*len`, and returns 0. Returns
 * P2P_EIO when the file cannot be read, P2P_EINVAL when it is empty or too
 * large; `*secret` is then untouched. */
int p2p_secret_load(const char *path, unsigned char **secret, size_t *len,
                    p2p_error *err) P2P_NODISCARD;

/* Wipes and frees a secret from p2p_secret_load(). NULL is a no-op. */
void p2p_secret_free(unsigned char *secret, size_t len);

#endif
