/* Error codes shared by every p2prpc module, and the detail struct that carries
 * a human-readable message next to them.
 *
 * Convention: functions return 0 on success and a negative P2P_E* code on
 * failure. When they take a `p2p_error *err` (which may be NULL), they fill it
 * with the same code and a message that says what went wrong and where. */
#ifndef P2PRPC_ERROR_H
#define P2PRPC_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define P2P_NODISCARD __attribute__((warn_unused_result))
#define P2P_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define P2P_NODISCARD
#define P2P_PRINTF(fmt_index, first_arg)
#endif

/* Every code is negative; 0 (P2P_OK) is success. The order is part of the ABI:
 * add new codes at the end. */
typedef enum p2p_errcode {
    P2P_OK = 0,
    P2P_EINVAL = -1,       /* an argument or input is malformed */
    P2P_ENOMEM = -2,       /* an allocation failed */
    P2P_EIO = -3,          /* a file or socket operation failed */
    P2P_ENOTFOUND = -4,    /* the thing asked for does not exist */
    P2P_ECONFLICT = -5,    /* the state forbids it (stale lease, fingerprint mismatch) */
    P2P_ETIMEDOUT = -6,    /* a deadline passed */
    P2P_EPROTO = -7,       /* a peer broke the protocol (bad status, bad body) */
    P2P_EAUTH = -8,        /* a signature is missing, wrong, stale or replayed */
    P2P_ETOOBIG = -9,      /* a body or object exceeds the configured limit */
    P2P_EUNAVAIL = -10,    /* a peer or the database cannot be reached right now */
    P2P_EHASH = -11,       /* content does not match its announced hash */
    P2P_ETYPE = -12,       /* a value has the wrong type */
    P2P_ESTORE = -13,      /* the store failed; the data is intact */
    P2P_EFAILED = -14,     /* the remote function returned an error */
    P2P_ETERMINATED = -15, /* the call was terminated */
    P2P_EEXIST = -16,      /* the thing already exists */
    P2P_ECANCELED = -17,   /* the operation was cancelled (shutdown) */
    P2P_EINTERNAL = -18,   /* a bug: an invariant did not hold */
} p2p_errcode;

/* Lowest (most negative) code; for range checks and tables. */
#define P2P_ERRCODE_MIN P2P_EINTERNAL

typedef struct p2p_error {
    int code;      /* a p2p_errcode */
    char msg[256]; /* NUL-terminated; truncated when longer */
} p2p_error;

/* Returns a static, human-readable description of `code`. Unknown codes give
 * "unknown error". Never returns NULL. */
const char *p2p_strerror(int code);

/* Returns the stable snake_case name of `code` ("not_found", "conflict"...),
 * used as the "code" member of JSON error bodies. Never returns NULL. */
const char *p2p_error_name(int code);

/* Returns the HTTP status that a request failing with `code` gets
 * (P2P_ENOTFOUND -> 404, P2P_EAUTH -> 401, P2P_ESTORE -> 503...). */
int p2p_error_http_status(int code);

/* Fills `err` (when not NULL) with `code` and the formatted message, and
 * returns `code`, so that `return p2p_error_set(err, P2P_EINVAL, "...")` works.
 * A NULL `fmt` uses p2p_strerror(code) as the message. */
int p2p_error_set(p2p_error *err, int code, const char *fmt, ...) P2P_PRINTF(3, 4);

/* Like p2p_error_set, and also appends ": strerror(errnum)" to the message.
 * For failures of libc calls that set errno. */
int p2p_error_errno(p2p_error *err, int code, int errnum, const char *fmt, ...) P2P_PRINTF(4, 5);

/* Resets `err` to P2P_OK with an empty message. NULL is a no-op. */
void p2p_error_clear(p2p_error *err);

#endif
