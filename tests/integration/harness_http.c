/* The HTTP half of the integration harness (harness.h): a signed client,
 * JSON requests and checks, and a raw loopback socket. */
#include "harness.h"

#include "sign.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

p2p_http_client *harness_client_new(const unsigned char *secret, size_t secret_len, long timeout_ms,
                                    p2p_error *err) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.secret = secret;
    o.secret_len = secret ? secret_len : 0;
    o.max_retries = 0;
    o.connect_timeout_ms = 5000;
    o.timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    return p2p_http_client_new(&o, err);
}

void harness_reply_cleanup(harness_reply *r) {
    if (r == NULL)
        return;
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

int harness_request(p2p_http_client *c, const char *base_url, const char *method, const char *path,
                    const char *content_type, const void *body, size_t len, long timeout_ms,
                    harness_reply *out) {
    return harness_request_headers(c, base_url, method, path, NULL, content_type, body, len,
                                   timeout_ms, out);
}

int harness_request_headers(p2p_http_client *c, const char *base_url, const char *method,
                            const char *path, const char *const *headers, const char *content_type,
                            const void *body, size_t len, long timeout_ms, harness_reply *out) {
    memset(out, 0, sizeof(*out));
    char url[HARNESS_URL_MAX + HARNESS_PATH_MAX];
    int n = snprintf(url, sizeof(url), "%s%s", base_url, path);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        out->rc = p2p_error_set(&out->err, P2P_EINVAL, "harness: URL too long");
        return out->rc;
    }
    p2p_http_call call = {
        .method = method,
        .url = url,
        .body = body,
        .body_len = len,
        .content_type = content_type ? content_type : (body ? "application/json" : NULL),
        .headers = headers,
        .idempotent = false,
        .timeout_ms = timeout_ms,
    };
    p2p_http_reply reply = {0};
    int64_t start = harness_now_ms();
    out->rc = p2p_http_client_request(c, &call, &reply, &out->err);
    out->end_ms = harness_now_ms();
    out->ms = out->end_ms - start;
    out->status = reply.status;
    snprintf(out->content_type, sizeof(out->content_type), "%s", reply.content_type);
    snprintf(out->content_range, sizeof(out->content_range), "%s", reply.content_range);
    out->body = reply.body;
    out->body_len = reply.body_len;
    reply.body = NULL;
    p2p_http_reply_cleanup(&reply);
    if (out->body == NULL) {
        out->body = calloc(1, 1);
        out->body_len = 0;
    }
    if (out->body != NULL && out->body_len > 0)
        out->json = json_loadb(out->body, out->body_len, 0, NULL);
    return out->rc;
}

int harness_post_json(p2p_http_client *c, const char *base_url, const char *path,
                      const json_t *body, harness_reply *out) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body != NULL && text == NULL) {
        memset(out, 0, sizeof(*out));
        out->rc = p2p_error_set(&out->err, P2P_ENOMEM, "harness: cannot encode JSON");
        return out->rc;
    }
    int rc = harness_request(c, base_url, "POST", path, text ? "application/json" : NULL, text,
                             text ? strlen(text) : 0, 0, out);
    free(text);
    return rc;
}

int harness_get(p2p_http_client *c, const char *base_url, const char *path, long timeout_ms,
                harness_reply *out) {
    return harness_request(c, base_url, "GET", path, NULL, NULL, 0, timeout_ms, out);
}

const char *harness_reply_error_code(const harness_reply *r) {
    json_t *e = r->json ? json_object_get(r->json, "error") : NULL;
    return json_string_value(json_object_get(e, "code"));
}

const char *harness_reply_str(const harness_reply *r, const char *key) {
    return r->json ? json_string_value(json_object_get(r->json, key)) : NULL;
}

long long harness_reply_int(const harness_reply *r, const char *key, long long dflt) {
    json_t *v = r->json ? json_object_get(r->json, key) : NULL;
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

void harness_expect_(const harness_reply *r, long status, const char *code, const char *file,
                     int line) {
    const char *why = NULL;
    if (r->rc != 0)
        why = "no answer";
    else if (r->status != status)
        why = "wrong status";
    else if (code != NULL) {
        json_t *e = r->json ? json_object_get(r->json, "error") : NULL;
        const char *got = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (got == NULL || strcmp(got, code) != 0)
            why = "wrong error code";
        else if (msg == NULL || msg[0] == '\0')
            why = "error without a message";
    }
    if (why == NULL)
        return;
    fprintf(stderr, "%s:%d: %s: expected %ld%s%s, got rc %d (%s) status %ld body %.2000s\n", file,
            line, why, status, code ? " " : "", code ? code : "", r->rc, r->rc ? r->err.msg : "ok",
            r->status, r->body ? r->body : "(none)");
    abort();
}

/* ---- raw socket ---- */

int harness_connect(const char *url, int *fd, p2p_error *err) {
    static const char prefix[] = "http://127.0.0.1:";
    if (url == NULL || strncmp(url, prefix, sizeof(prefix) - 1) != 0)
        return p2p_error_set(err, P2P_EINVAL, "harness: not a loopback http URL: %s",
                             url ? url : "(null)");
    char *end = NULL;
    errno = 0;
    long port = strtol(url + sizeof(prefix) - 1, &end, 10);
    if (errno != 0 || port <= 0 || port > 65535 || (*end != '\0' && *end != '/'))
        return p2p_error_set(err, P2P_EINVAL, "harness: bad port in %s", url);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return p2p_error_errno(err, P2P_EUNAVAIL, errno, "harness: socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;
        close(s);
        return p2p_error_errno(err, P2P_EUNAVAIL, e, "harness: connect to %s", url);
    }
    *fd = s;
    return 0;
}

int harness_sign_lines(const unsigned char *secret, size_t secret_len, const char *method,
                       const char *target, char *out, size_t out_len, p2p_error *err) {
    p2p_sign_headers h;
    int rc = p2p_sign_request(secret, secret_len, method, target, (int64_t)time(NULL), &h, err);
    if (rc != 0)
        return rc;
    int n = snprintf(out, out_len, "%s: %s\r\n%s: %s\r\n%s: %s\r\n", P2P_SIGN_HEADER_TIME, h.time,
                     P2P_SIGN_HEADER_NONCE, h.nonce, P2P_SIGN_HEADER_SIGNATURE, h.signature);
    if (n < 0 || (size_t)n >= out_len)
        return p2p_error_set(err, P2P_EINVAL, "harness: signature lines too long");
    return 0;
}

/* True when `buf` holds a whole response: its header block and as many body
 * bytes as its Content-Length says (none when absent). */
static bool response_complete(const char *buf, size_t len) {
    const char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL)
        return false;
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl == NULL || cl > end)
        return true;
    long long want = strtoll(cl + 17, NULL, 10);
    return want >= 0 && len - head >= (size_t)want;
}

long harness_read_some(int fd, char *out, size_t max, long timeout_ms) {
    size_t got = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    out[0] = '\0';
    for (int i = 0; i < 100000 && got < max; i++) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t r = recv(fd, out + got, max - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return got > 0 ? (long)got : -1;
        if (r == 0)
            break;
        got += (size_t)r;
        out[got] = '\0';
        if (response_complete(out, got))
            break;
    }
    return (long)got;
}

int harness_http_status(const char *text) {
    if (text == NULL || strncmp(text, "HTTP/1.", 7) != 0 || text[7] == '\0' || text[8] != ' ')
        return 0;
    char *end = NULL;
    long status = strtol(text + 9, &end, 10);
    return status >= 100 && status <= 599 && end == text + 12 ? (int)status : 0;
}
