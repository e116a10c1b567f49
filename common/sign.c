#include "sign.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SIGN_PREFIX "p2prpc-v1\n"
#define NONCE_BYTES (P2P_SIGN_NONCE_HEX_LEN / 2)
#define SIG_BYTES (P2P_SIGN_SIGNATURE_HEX_LEN / 2)
#define SECRET_MAX 65536
#define TIME_MAX_DIGITS 19
#define SET_MIN_SLOTS 16

/* The nonces accepted with one timestamp. Because the timestamp is signed, a
 * replay carries the same timestamp as the original, so one open-addressing
 * set per second is enough, and a whole second expires by freeing one array. */
typedef struct nonce_set {
    int64_t ts;    /* the second these nonces carry; meaningful when in_use */
    bool in_use;   /* holds at least one nonce */
    bool has_zero; /* the all-zero nonce, which cannot live in `slots` (it marks empty) */
    size_t count;  /* nonces in `slots` */
    size_t cap;    /* slots; a power of two, 0 while unallocated */
    unsigned char (*slots)[NONCE_BYTES];
} nonce_set;

struct p2p_sign_verifier {
    EVP_MAC_CTX *keyed; /* HMAC keyed once, duplicated for each request; read-only */
    int skew;
    size_t nsets;    /* 2 * skew + 1: one set per second of the window */
    nonce_set *sets; /* indexed by timestamp modulo nsets */
    uint64_t hash_key[2];
    pthread_mutex_t lock; /* guards everything below */
    int64_t swept;        /* seconds below this hold no set */
    size_t total, max_nonces, bytes;
    uint64_t evictions;
    int64_t floor;
};

/* ---- HMAC ---- */

/* The HMAC implementation, fetched once per process: an OpenSSL 3 fetch is a
 * provider lookup under a lock, dearer than the HMAC of a request line, and
 * p2p_sign_request() runs for every signed request. An EVP_MAC is reference
 * counted and may be shared by threads; each signature still makes its own
 * EVP_MAC_CTX. NULL if the fetch failed (callers then report an error). */
static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

/* Registered after OpenSSL's own exit handler (the fetch initialises
 * OpenSSL first), so it runs before OpenSSL cleans up. */
static void hmac_release(void) {
    EVP_MAC_free(hmac_impl);
    hmac_impl = NULL;
}

static void hmac_fetch(void) {
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac_impl != NULL && atexit(hmac_release) != 0)
        P2P_WARN("signing: cannot register the HMAC release at exit");
}

static EVP_MAC_CTX *mac_new_keyed(const unsigned char *secret, size_t len) {
    if (pthread_once(&hmac_once, hmac_fetch) != 0 || hmac_impl == NULL)
        return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl); /* takes its own reference */
    if (ctx == NULL)
        return NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(ctx, secret, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool mac_update_str(EVP_MAC_CTX *ctx, const char *s, bool newline) {
    if (EVP_MAC_update(ctx, (const unsigned char *)s, strlen(s)) != 1)
        return false;
    return !newline || EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) == 1;
}

/* Computes the signature of one request with a copy of `keyed`, so that one
 * keyed context serves every thread without being written to. */
static int mac_compute(const EVP_MAC_CTX *keyed, const char *method, const char *path,
                       const char *ts, const char *nonce, unsigned char out[SIG_BYTES]) {
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(keyed);
    if (ctx == NULL)
        return P2P_EINTERNAL;
    size_t outlen = 0;
    bool ok = mac_update_str(ctx, SIGN_PREFIX, false) && mac_update_str(ctx, method, true) &&
              mac_update_str(ctx, path, true) && mac_update_str(ctx, ts, true) &&
              mac_update_str(ctx, nonce, false) && EVP_MAC_final(ctx, out, &outlen, SIG_BYTES) == 1;
    EVP_MAC_CTX_free(ctx);
    return ok && outlen == SIG_BYTES ? 0 : P2P_EINTERNAL;
}

/* ---- hex and argument checks ---- */

static void hex_encode(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes exactly 2*n lowercase hex digits; anything else is malformed. */
static bool hex_decode(const char *hex, size_t n, unsigned char *out) {
    if (strnlen(hex, 2 * n + 1) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* Newlines separate the fields of the signed string; refusing them keeps the
 * encoding unambiguous. */
static int check_target(const char *method, const char *path, p2p_error *err) {
    if (method == NULL || path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "signing: method and path are required");
    if (method[0] == '\0' || strpbrk(method, "\r\n") != NULL)
        return p2p_error_set(err, P2P_EINVAL, "signing: method is empty or has a newline");
    if (path[0] != '/' || strpbrk(path, "\r\n") != NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "signing: path must start with '/' and have no newline");
    return 0;
}

/* Parses a timestamp header: 1..19 decimal digits, nothing else. */
static bool parse_time(const char *s, int64_t *out) {
    size_t n = strnlen(s, TIME_MAX_DIGITS + 1);
    if (n == 0 || n > TIME_MAX_DIGITS || strspn(s, "0123456789") != n)
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end != s + n)
        return false;
    *out = (int64_t)v;
    return true;
}

int p2p_sign_request(const unsigned char *secret, size_t secret_len, const char *method,
                     const char *path_and_query, int64_t now, p2p_sign_headers *out,
                     p2p_error *err) {
    if (secret == NULL || secret_len == 0 || out == NULL || now < 0 || now > INT64_MAX / 2)
        return p2p_error_set(err, P2P_EINVAL, "signing: secret, output and time >= 0 required");
    int rc = check_target(method, path_and_query, err);
    if (rc != 0)
        return rc;
    unsigned char nonce[NONCE_BYTES], sig[SIG_BYTES];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return p2p_error_set(err, P2P_EINTERNAL, "signing: RAND_bytes failed");
    hex_encode(nonce, sizeof(nonce), out->nonce);
    snprintf(out->time, sizeof(out->time), "%" PRId64, now);
    EVP_MAC_CTX *keyed = mac_new_keyed(secret, secret_len);
    if (keyed == NULL)
        return p2p_error_set(err, P2P_EINTERNAL, "signing: cannot set up HMAC-SHA256");
    rc = mac_compute(keyed, method, path_and_query, out->time, out->nonce, sig);
    EVP_MAC_CTX_free(keyed);
    if (rc != 0)
        return p2p_error_set(err, rc, "signing: HMAC-SHA256 failed");
    hex_encode(sig, sizeof(sig), out->signature);
    return 0;
}

/* ---- the replay cache ---- */

static uint64_t mix64(uint64_t x) {
    /* The splitmix64 finaliser: cheap and well spread. Nonces reach the cache
     * only after their signature is checked, so only holders of the secret
     * choose them; the random key is there against accidental patterns. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t nonce_hash(const p2p_sign_verifier *v, const unsigned char *nonce) {
    uint64_t lo, hi;
    memcpy(&lo, nonce, 8);
    memcpy(&hi, nonce + 8, 8);
    return (size_t)(mix64(lo ^ v->hash_key[0]) ^ mix64(hi + v->hash_key[1]));
}

static bool is_zero(const unsigned char *nonce) {
    static const unsigned char zero[NONCE_BYTES];
    return memcmp(nonce, zero, NONCE_BYTES) == 0;
}

static void set_clear(p2p_sign_verifier *v, nonce_set *s) {
    v->total -= s->count + (s->has_zero ? 1 : 0);
    v->bytes -= s->cap * NONCE_BYTES;
    free(s->slots);
    *s = (nonce_set){0};
}

/* Returns the slot where `nonce` is, or the empty slot where it would go. */
static unsigned char *set_probe(const p2p_sign_verifier *v, const nonce_set *s,
                                const unsigned char *nonce) {
    size_t mask = s->cap - 1;
    for (size_t i = nonce_hash(v, nonce) & mask;; i = (i + 1) & mask) {
        if (is_zero(s->slots[i]) || memcmp(s->slots[i], nonce, NONCE_BYTES) == 0)
            return s->slots[i];
    }
}

static bool set_contains(const p2p_sign_verifier *v, const nonce_set *s,
                         const unsigned char *nonce) {
    if (is_zero(nonce))
        return s->has_zero;
    return s->cap > 0 && !is_zero(set_probe(v, s, nonce));
}

/* Grows the set so one more nonce keeps the load at or under 3/4. */
static int set_reserve(p2p_sign_verifier *v, nonce_set *s) {
    if (s->cap > 0 && (s->count + 1) * 4 <= s->cap * 3)
        return 0;
    nonce_set bigger = *s;
    bigger.cap = s->cap ? s->cap * 2 : SET_MIN_SLOTS;
    bigger.slots = calloc(bigger.cap, NONCE_BYTES);
    if (bigger.slots == NULL)
        return P2P_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!is_zero(s->slots[i]))
            memcpy(set_probe(v, &bigger, s->slots[i]), s->slots[i], NONCE_BYTES);
    }
    free(s->slots);
    v->bytes += (bigger.cap - s->cap) * NONCE_BYTES;
    *s = bigger;
    return 0;
}

static int set_insert(p2p_sign_verifier *v, nonce_set *s, int64_t ts, const unsigned char *nonce) {
    if (!is_zero(nonce)) {
        int rc = set_reserve(v, s);
        if (rc != 0)
            return rc;
        memcpy(set_probe(v, s, nonce), nonce, NONCE_BYTES);
        s->count++;
    } else {
        s->has_zero = true;
    }
    s->ts = ts;
    s->in_use = true;
    v->total++;
    return 0;
}

static nonce_set *set_for(p2p_sign_verifier *v, int64_t ts) {
    int64_t n = (int64_t)v->nsets;
    return &v->sets[((ts % n) + n) % n];
}

/* Frees every second that has left the window. Each second is visited once as
 * the clock advances, so the cost per request is constant. */
static void sweep(p2p_sign_verifier *v, int64_t now) {
    int64_t oldest_live = now - v->skew;
    int64_t from = v->swept;
    if (from < oldest_live - (int64_t)v->nsets)
        from = oldest_live - (int64_t)v->nsets;
    for (int64_t t = from; t < oldest_live; t++) {
        nonce_set *s = set_for(v, t);
        if (s->in_use && s->ts < oldest_live)
            set_clear(v, s);
    }
    if (oldest_live > v->swept)
        v->swept = oldest_live;
}

/* Forgets the oldest second held and refuses its timestamps from now on, so
 * that forgetting never lets a replay through. */
static void evict_oldest(p2p_sign_verifier *v) {
    nonce_set *oldest = NULL;
    for (size_t i = 0; i < v->nsets; i++) {
        nonce_set *s = &v->sets[i];
        if (s->in_use && (oldest == NULL || s->ts < oldest->ts))
            oldest = s;
    }
    if (oldest == NULL)
        return;
    if (oldest->ts > v->floor)
        v->floor = oldest->ts;
    v->evictions++;
    set_clear(v, oldest);
}

/* The signature was good, so this is load shedding, not an authentication
 * failure: 503 tells the sender to retry, and its retry carries a new time. */
static int refuse_under_load(const p2p_sign_verifier *v, p2p_error *err) {
    return p2p_error_set(err, P2P_EUNAVAIL,
                         "replay cache full: the server refuses timestamps up to %" PRId64
                         " for now; retry with the current time",
                         v->floor);
}

static int remember_nonce(p2p_sign_verifier *v, int64_t ts, const unsigned char *nonce, int64_t now,
                          p2p_error *err) {
    sweep(v, now);
    if (ts <= v->floor)
        return refuse_under_load(v, err);
    nonce_set *s = set_for(v, ts);
    if (s->in_use && s->ts != ts) {
        /* Only a clock that went back by more than the window gets here. */
        if (s->ts > ts)
            return p2p_error_set(err, P2P_EAUTH, "stale request: the server clock went back");
        set_clear(v, s);
    }
    if (s->in_use && set_contains(v, s, nonce))
        return p2p_error_set(err, P2P_EAUTH, "replayed nonce: this request was already accepted");
    while (v->total >= v->max_nonces && ts > v->floor)
        evict_oldest(v);
    if (ts <= v->floor)
        return refuse_under_load(v, err);
    if (set_insert(v, s, ts, nonce) != 0)
        return p2p_error_set(err, P2P_ENOMEM, "signing: cannot remember the nonce");
    return 0;
}

/* ---- the verifier ---- */

p2p_sign_verifier *p2p_sign_verifier_new(const unsigned char *secret, size_t secret_len,
                                         int skew_seconds, p2p_error *err) {
    if (secret == NULL || secret_len == 0) {
        p2p_error_set(err, P2P_EINVAL, "signing: the secret is empty");
        return NULL;
    }
    if (skew_seconds < 1 || skew_seconds > P2P_SIGN_MAX_SKEW) {
        p2p_error_set(err, P2P_EINVAL, "signing: skew must be 1..%d seconds, got %d",
                      P2P_SIGN_MAX_SKEW, skew_seconds);
        return NULL;
    }
    p2p_sign_verifier *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        p2p_error_set(err, P2P_ENOMEM, "signing: out of memory");
        return NULL;
    }
    v->skew = skew_seconds;
    v->nsets = 2 * (size_t)skew_seconds + 1;
    v->sets = calloc(v->nsets, sizeof(*v->sets));
    v->keyed = mac_new_keyed(secret, secret_len);
    v->max_nonces = P2P_SIGN_DEFAULT_MAX_NONCES;
    v->bytes = sizeof(*v) + v->nsets * sizeof(*v->sets);
    v->floor = INT64_MIN;
    v->swept = INT64_MIN;
    bool ok = v->sets != NULL && v->keyed != NULL &&
              RAND_bytes((unsigned char *)v->hash_key, sizeof(v->hash_key)) == 1 &&
              pthread_mutex_init(&v->lock, NULL) == 0;
    if (!ok) {
        EVP_MAC_CTX_free(v->keyed);
        free(v->sets);
        free(v);
        p2p_error_set(err, P2P_EINTERNAL, "signing: cannot set up the verifier");
        return NULL;
    }
    return v;
}

void p2p_sign_verifier_free(p2p_sign_verifier *v) {
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->nsets; i++)
        free(v->sets[i].slots);
    free(v->sets);
    EVP_MAC_CTX_free(v->keyed); /* OpenSSL wipes the key material */
    pthread_mutex_destroy(&v->lock);
    free(v);
}

void p2p_sign_verifier_set_max_nonces(p2p_sign_verifier *v, size_t max_nonces) {
    pthread_mutex_lock(&v->lock);
    v->max_nonces = max_nonces > 0 ? max_nonces : 1;
    while (v->total > v->max_nonces)
        evict_oldest(v);
    pthread_mutex_unlock(&v->lock);
}

void p2p_sign_verifier_stats(p2p_sign_verifier *v, p2p_sign_stats *out) {
    pthread_mutex_lock(&v->lock);
    out->nonces = v->total;
    out->bytes = v->bytes;
    out->evictions = v->evictions;
    out->floor = v->floor;
    pthread_mutex_unlock(&v->lock);
}

/* Checks the three headers' presence and shape, and the time window. */
static int check_headers(const p2p_sign_verifier *v, const char *time_hdr, const char *nonce_hdr,
                         const char *sig_hdr, int64_t now, int64_t *ts, unsigned char *nonce,
                         unsigned char *sig, p2p_error *err) {
    if (time_hdr == NULL || nonce_hdr == NULL || sig_hdr == NULL)
        return p2p_error_set(err, P2P_EAUTH, "unsigned request: missing %s header",
                             time_hdr == NULL    ? P2P_SIGN_HEADER_TIME
                             : nonce_hdr == NULL ? P2P_SIGN_HEADER_NONCE
                                                 : P2P_SIGN_HEADER_SIGNATURE);
    if (!parse_time(time_hdr, ts))
        return p2p_error_set(err, P2P_EAUTH, "malformed %s header: want unix seconds",
                             P2P_SIGN_HEADER_TIME);
    if (!hex_decode(nonce_hdr, NONCE_BYTES, nonce))
        return p2p_error_set(err, P2P_EAUTH, "malformed %s header: want %d lowercase hex digits",
                             P2P_SIGN_HEADER_NONCE, P2P_SIGN_NONCE_HEX_LEN);
    if (!hex_decode(sig_hdr, SIG_BYTES, sig))
        return p2p_error_set(err, P2P_EAUTH, "malformed %s header: want %d lowercase hex digits",
                             P2P_SIGN_HEADER_SIGNATURE, P2P_SIGN_SIGNATURE_HEX_LEN);
    if (*ts < now - v->skew || *ts > now + v->skew)
        return p2p_error_set(err, P2P_EAUTH,
                             "stale request: timestamp %" PRId64 " is %" PRId64
                             " s from the server clock (allowed +-%d s)",
                             *ts, *ts - now, v->skew);
    return 0;
}

int p2p_sign_verify(p2p_sign_verifier *v, const char *method, const char *path_and_query,
                    const char *time_hdr, const char *nonce_hdr, const char *sig_hdr, int64_t now,
                    p2p_error *err) {
    if (v == NULL || now < 0 || now > INT64_MAX / 2)
        return p2p_error_set(err, P2P_EINVAL, "signing: no verifier, or a bad clock");
    int rc = check_target(method, path_and_query, err);
    if (rc != 0)
        return rc;
    int64_t ts = 0;
    unsigned char nonce[NONCE_BYTES], sig[SIG_BYTES], expected[SIG_BYTES];
    rc = check_headers(v, time_hdr, nonce_hdr, sig_hdr, now, &ts, nonce, sig, err);
    if (rc != 0)
        return rc;
    rc = mac_compute(v->keyed, method, path_and_query, time_hdr, nonce_hdr, expected);
    if (rc != 0)
        return p2p_error_set(err, rc, "signing: HMAC-SHA256 failed");
    if (CRYPTO_memcmp(sig, expected, SIG_BYTES) != 0)
        return p2p_error_set(err, P2P_EAUTH, "bad signature: wrong secret or altered request");
    /* Only a request that proves knowledge of the secret may take room in the
     * cache, so garbage cannot fill it. */
    pthread_mutex_lock(&v->lock);
    rc = remember_nonce(v, ts, nonce, now, err);
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* ---- secret files ---- */

static int read_fd(int fd, const char *path, unsigned char *buf, size_t cap, size_t *len,
                   p2p_error *err) {
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot read secret file %s", path);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return 0;
}

int p2p_secret_load(const char *path, unsigned char **secret, size_t *len, p2p_error *err) {
    if (path == NULL || secret == NULL || len == NULL)
        return p2p_error_set(err, P2P_EINVAL, "secret: path and outputs are required");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot open secret file %s", path);
    int rc = 0;
    /* Room for the trailing newlines; a file that fills the buffer is too big. */
    size_t n = 0, cap = SECRET_MAX + 64;
    unsigned char *buf = malloc(cap), *copy = NULL;
    struct stat st;
    if (buf == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, "secret: out of memory");
        goto cleanup;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        P2P_WARN("secret file %s is readable by group or others; chmod 600 it", path);
    rc = read_fd(fd, path, buf, cap, &n, err);
    if (rc != 0)
        goto cleanup;
    size_t raw = n;
    while (n > 0 && buf[n - 1] == '\n')
        n -= (n > 1 && buf[n - 2] == '\r') ? 2 : 1;
    if (n == 0 || n > SECRET_MAX || raw == cap) {
        rc = p2p_error_set(err, P2P_EINVAL, "secret file %s is %s", path,
                           n == 0 ? "empty" : "larger than 65536 bytes");
        goto cleanup;
    }
    copy = malloc(n);
    if (copy == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, "secret: out of memory");
        goto cleanup;
    }
    memcpy(copy, buf, n);
    *secret = copy;
    *len = n;
cleanup:
    p2p_secret_free(buf, cap);
    close(fd);
    return rc;
}

void p2p_secret_free(unsigned char *secret, size_t len) {
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, len);
    free(secret);
}
