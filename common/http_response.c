/* Answers and request helpers of the HTTP server, written only with the
 * public request API plus p2p__http_finish. */
#include "http_server.h"
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void p2p_http_respond_json(p2p_http_request *req, unsigned status, json_t *body) {
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    struct MHD_Response *resp = NULL;
    if (text != NULL) {
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            free(text);
    }
    p2p__http_finish(req, status, resp, "application/json");
}

static void respond_verror(p2p_http_request *req, unsigned status, int code, const char *fmt,
                           va_list ap) P2P_PRINTF(4, 0);

static void respond_verror(p2p_http_request *req, unsigned status, int code, const char *fmt,
                           va_list ap) {
    char msg[512];
    if (fmt != NULL)
        vsnprintf(msg, sizeof(msg), fmt, ap);
    else
        snprintf(msg, sizeof(msg), "%s", p2p_strerror(code));
    p2p_http_respond_json(req, status != 0 ? status : (unsigned)p2p_error_http_status(code),
                          p2p__http_error_json(code, msg));
}

json_t *p2p__http_error_json(int code, const char *msg) {
    json_t *m = json_string(msg);
    if (m == NULL)
        m = json_string("(the message was not valid UTF-8)");
    return json_pack("{s:{s:s,s:o}}", "error", "code", p2p_error_name(code), "message", m);
}

void p2p_http_respond_error(p2p_http_request *req, unsigned status, int code, const char *fmt,
                            ...) {
    va_list ap;
    va_start(ap, fmt);
    respond_verror(req, status, code, fmt, ap);
    va_end(ap);
}

void p2p_http_respond_err(p2p_http_request *req, const p2p_error *err) {
    int code = err->code != 0 ? err->code : P2P_EINTERNAL;
    const char *msg = err->msg[0] != '\0' ? err->msg : p2p_strerror(code);
    p2p_http_respond_error(req, 0, code, "%s", msg);
}

void p2p_http_respond_bytes(p2p_http_request *req, unsigned status, const void *data, size_t len,
                            const char *content_type) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    p2p__http_finish(req, status, resp,
                     content_type != NULL ? content_type : "application/octet-stream");
}

void p2p_http_respond_empty(p2p_http_request *req, unsigned status) {
    p2p__http_finish(req, status,
                     MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT), NULL);
}

void p2p_http_respond_file(p2p_http_request *req, unsigned status, int fd, uint64_t offset,
                           uint64_t length, const char *content_type) {
    struct MHD_Response *resp = NULL;
    if (offset <= INT64_MAX && length <= INT64_MAX - offset)
        resp = MHD_create_response_from_fd_at_offset64(length, fd, offset);
    if (resp == NULL)
        close(fd);
    p2p__http_finish(req, status, resp,
                     content_type != NULL ? content_type : "application/octet-stream");
}

bool p2p__http_parse_u64(const char *s, size_t len, uint64_t *out) {
    char buf[24];
    if (len == 0 || len >= sizeof(buf) || strspn(s, "0123456789") < len)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno != 0 || end != buf + len)
        return false;
    *out = v;
    return true;
}

p2p_http_range_result p2p_http_range_parse(const char *value, uint64_t size, uint64_t *offset,
                                           uint64_t *length) {
    if (value == NULL || strncmp(value, "bytes=", 6) != 0 || strchr(value, ',') != NULL)
        return P2P_HTTP_RANGE_NONE;
    const char *spec = value + 6, *dash = strchr(spec, '-');
    if (dash == NULL)
        return P2P_HTTP_RANGE_NONE;
    uint64_t first = 0, last = 0;
    bool has_first = dash != spec, has_last = dash[1] != '\0';
    if ((has_first && !p2p__http_parse_u64(spec, (size_t)(dash - spec), &first)) ||
        (has_last && !p2p__http_parse_u64(dash + 1, strlen(dash + 1), &last)) ||
        (!has_first && !has_last))
        return P2P_HTTP_RANGE_NONE;
    if (!has_first) { /* suffix: the last `last` bytes */
        if (last == 0 || size == 0)
            return P2P_HTTP_RANGE_UNSATISFIABLE;
        *length = last < size ? last : size;
        *offset = size - *length;
        return P2P_HTTP_RANGE_PARTIAL;
    }
    if (has_last && last < first)
        return P2P_HTTP_RANGE_NONE;
    if (first >= size)
        return P2P_HTTP_RANGE_UNSATISFIABLE;
    uint64_t end = (has_last && last < size - 1) ? last : size - 1;
    *offset = first;
    *length = end - first + 1;
    return P2P_HTTP_RANGE_PARTIAL;
}

/* Sets Accept-Ranges and, for a range, Content-Range for a body of `size`
 * bytes. Returns the part to send in `*off`, `*len` and the status in
 * `*status`, or false after answering (416, or out of memory). */
static bool range_prepare(p2p_http_request *req, uint64_t size, uint64_t *off, uint64_t *len,
                          unsigned *status) {
    *off = 0;
    *len = size;
    p2p_http_range_result r =
        p2p_http_range_parse(p2p_http_request_header(req, "Range"), size, off, len);
    char cr[96] = "";
    if (r == P2P_HTTP_RANGE_PARTIAL)
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, *off, *off + *len - 1,
                 size);
    else if (r == P2P_HTTP_RANGE_UNSATISFIABLE)
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
    int rc = p2p_http_response_header(req, "Accept-Ranges", "bytes");
    if (rc == 0 && cr[0] != '\0')
        rc = p2p_http_response_header(req, "Content-Range", cr);
    if (rc != 0) {
        p2p_http_respond_error(req, 0, rc, "cannot build the response headers");
        return false;
    }
    if (r == P2P_HTTP_RANGE_UNSATISFIABLE) {
        p2p_http_respond_error(req, 416, P2P_EINVAL, "range not satisfiable for %" PRIu64 " bytes",
                               size);
        return false;
    }
    *status = r == P2P_HTTP_RANGE_PARTIAL ? 206 : 200;
    return true;
}

void p2p_http_respond_file_range(p2p_http_request *req, int fd, const char *content_type) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        p2p_http_respond_error(req, 0, P2P_EIO, "the file to send is not a regular file");
        return;
    }
    uint64_t off = 0, len = 0;
    unsigned status = 200;
    if (!range_prepare(req, (uint64_t)st.st_size, &off, &len, &status)) {
        close(fd);
        return;
    }
    p2p_http_respond_file(req, status, fd, off, len, content_type);
}

/* Pieces of a streamed body asked for per read callback. */
#define STREAM_BLOCK (64u << 10)

typedef struct stream_body {
    p2p_http_read_fn read;
    void (*free_ctx)(void *ctx);
    void *ctx;
    uint64_t offset; /* of the first byte sent, in the source */
} stream_body;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_body *sb = cls;
    int64_t got = sb->read(sb->ctx, sb->offset + pos, buf, max);
    /* A source that fails or ends early cuts the connection: the client sees
     * a short body, never a wrong one. */
    return got > 0 ? (ssize_t)got : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls) {
    stream_body *sb = cls;
    if (sb->free_ctx != NULL)
        sb->free_ctx(sb->ctx);
    free(sb);
}

void p2p_http_respond_stream_range(p2p_http_request *req, uint64_t size, p2p_http_read_fn read,
                                   void *ctx, void (*free_ctx)(void *ctx),
                                   const char *content_type) {
    uint64_t off = 0, len = 0;
    unsigned status = 200;
    stream_body *sb = NULL;
    if (!range_prepare(req, size, &off, &len, &status)) {
        if (free_ctx != NULL)
            free_ctx(ctx);
        return;
    }
    sb = malloc(sizeof(*sb));
    struct MHD_Response *resp = NULL;
    if (sb != NULL) {
        *sb = (stream_body){.read = read, .free_ctx = free_ctx, .ctx = ctx, .offset = off};
        resp = MHD_create_response_from_callback(len, STREAM_BLOCK, stream_read, sb, stream_free);
        if (resp == NULL)
            free(sb);
    }
    if (resp == NULL && free_ctx != NULL)
        free_ctx(ctx);
    p2p__http_finish(req, status, resp,
                     content_type != NULL ? content_type : "application/octet-stream");
}

int p2p_http_request_query_int(const p2p_http_request *req, const char *name, int64_t min,
                               int64_t max, int64_t *out, p2p_error *err) {
    const char *v = p2p_http_request_query(req, name);
    if (v == NULL)
        return P2P_ENOTFOUND;
    errno = 0;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n < min || n > max)
        return p2p_error_set(err, P2P_EINVAL,
                             "query argument %s=\"%.64s\" is not an integer in [%" PRId64
                             ", %" PRId64 "]",
                             name, v, min, max);
    *out = n;
    return 0;
}

int p2p_http_request_json(p2p_http_request *req, json_t **out) {
    json_error_t je;
    json_t *j = NULL;
    size_t len = 0;
    const char *data = p2p_http_request_body(req, &len);
    if (data != NULL && len == 0) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "a JSON body is required");
        return P2P_EINVAL;
    }
    if (data != NULL) {
        j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    } else if (lseek(p2p_http_request_body_fd(req), 0, SEEK_SET) == 0) {
        j = json_loadfd(p2p_http_request_body_fd(req), JSON_REJECT_DUPLICATES, &je);
    } else {
        snprintf(je.text, sizeof(je.text), "cannot rewind the spooled body");
        je.line = je.column = 0;
    }
    if (j == NULL) {
        p2p_http_respond_error(req, 400, P2P_EINVAL, "malformed JSON body: %s (line %d, column %d)",
                               je.text, je.line, je.column);
        return P2P_EINVAL;
    }
    *out = j;
    return 0;
}
