#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct errinfo {
    const char *name;
    const char *text;
    int http_status;
} errinfo;

/* Indexed by -code. */
static const errinfo table[] = {
    [0] = {"ok", "success", 200},
    [-P2P_EINVAL] = {"invalid", "invalid argument or input", 400},
    [-P2P_ENOMEM] = {"no_memory", "out of memory", 500},
    [-P2P_EIO] = {"io", "input/output error", 500},
    [-P2P_ENOTFOUND] = {"not_found", "not found", 404},
    [-P2P_ECONFLICT] = {"conflict", "conflicting state", 409},
    [-P2P_ETIMEDOUT] = {"timeout", "timed out", 504},
    [-P2P_EPROTO] = {"protocol", "protocol error", 502},
    [-P2P_EAUTH] = {"unauthorized", "authentication failed", 401},
    [-P2P_ETOOBIG] = {"too_large", "too large", 413},
    [-P2P_EUNAVAIL] = {"unavailable", "service unavailable", 503},
    [-P2P_EHASH] = {"hash_mismatch", "content does not match its hash", 422},
    [-P2P_ETYPE] = {"type", "wrong type", 400},
    [-P2P_ESTORE] = {"store", "store error", 503},
    [-P2P_EFAILED] = {"failed", "the function failed", 500},
    [-P2P_ETERMINATED] = {"terminated", "the call was terminated", 409},
    [-P2P_EEXIST] = {"exists", "already exists", 409},
    [-P2P_ECANCELED] = {"canceled", "canceled", 503},
    [-P2P_EINTERNAL] = {"internal", "internal error", 500},
};

static const errinfo *lookup(int code) {
    if (code > 0 || code < P2P_ERRCODE_MIN)
        return NULL;
    return &table[-code];
}

const char *p2p_strerror(int code) {
    const errinfo *e = lookup(code);
    return e ? e->text : "unknown error";
}

const char *p2p_error_name(int code) {
    const errinfo *e = lookup(code);
    return e ? e->name : "unknown";
}

int p2p_error_http_status(int code) {
    const errinfo *e = lookup(code);
    return e ? e->http_status : 500;
}

static void vset(p2p_error *err, int code, const char *fmt, va_list ap) P2P_PRINTF(3, 0);

static void vset(p2p_error *err, int code, const char *fmt, va_list ap) {
    err->code = code;
    if (fmt == NULL) {
        snprintf(err->msg, sizeof(err->msg), "%s", p2p_strerror(code));
        return;
    }
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int p2p_error_set(p2p_error *err, int code, const char *fmt, ...) {
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int p2p_error_errno(p2p_error *err, int code, int errnum, const char *fmt, ...) {
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, fmt, ap);
    va_end(ap);
    size_t len = strnlen(err->msg, sizeof(err->msg));
    char buf[128];
    /* The GNU strerror_r returns the message, which may not be `buf`. */
    const char *text = strerror_r(errnum, buf, sizeof(buf));
    snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", text);
    return code;
}

void p2p_error_clear(p2p_error *err) {
    if (err == NULL)
        return;
    err->code = P2P_OK;
    err->msg[0] = '\0';
}
