#include "http_client.h"
#include "http_client_internal.h"

#include "log.h"
#include "sign.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#define USER_AGENT_DEFAULT "p2prpc/" P2P_VERSION
#define POOL_MAX 64
#define TRANSFER_BUFFER (128 * 1024)

struct p2p_http_client {
    p2p_http_client_options opts; /* its pointers point at the copies below */
    unsigned char *secret;
    char *ca_file, *ca_path, *user_agent;
    pthread_mutex_t lock; /* guards the pool */
    CURL *idle[POOL_MAX];
    int nidle;
};

/* The state of one request, shared with curl's callbacks. */
typedef struct xfer {
    p2p_http_client *c;
    const p2p_http_call *req;
    p2p_http_reply *resp;
    CURL *h;
    CURLU *url;
    char errbuf[CURL_ERROR_SIZE];
    p2p_error cb_err; /* set by a callback that stopped the transfer; code 0 otherwise */
    int up_fd;        /* upload file, or -1 */
    int64_t up_size, up_off;
    int dl_fd;       /* download file, or -1 */
    int64_t dl_from; /* the offset asked for with Range, or -1 */
    int64_t dl_off;  /* where the next downloaded byte goes */
    int64_t progress_base;
    int64_t last_done, last_total;
    bool sink_ready, sink_file;
    char *buf; /* the in-memory body, NUL-terminated */
    size_t len, cap;
} xfer;

/* ---- options and lifecycle ---- */

void p2p_http_client_options_init(p2p_http_client_options *opts) {
    *opts = (p2p_http_client_options){
        .connect_timeout_ms = 5000,
        .timeout_ms = 60000,
        .max_retries = 3,
        .backoff_base_ms = 200,
        .backoff_max_ms = 10000,
        .max_body = 16u << 20,
        .pool_size = 8,
    };
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool p2p__http_client_global_init(void) {
    pthread_once(&curl_once, curl_init);
    return curl_init_rc == CURLE_OK;
}

static int copy_str(const char *src, char **dst) {
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst == NULL ? P2P_ENOMEM : 0;
}

static int check_options(const p2p_http_client_options *o, p2p_error *err) {
    if (o->connect_timeout_ms <= 0 || o->timeout_ms == 0 || o->timeout_ms < -1)
        return p2p_error_set(err, P2P_EINVAL, "http: timeouts must be > 0 (total may be -1)");
    if (o->max_retries < 0 || o->max_retries > 100)
        return p2p_error_set(err, P2P_EINVAL, "http: max_retries must be 0..100");
    if (o->backoff_base_ms < 0 || o->backoff_max_ms < o->backoff_base_ms)
        return p2p_error_set(err, P2P_EINVAL, "http: want 0 <= backoff_base_ms <= backoff_max_ms");
    if (o->pool_size < 0 || o->pool_size > POOL_MAX)
        return p2p_error_set(err, P2P_EINVAL, "http: pool_size must be 0..%d", POOL_MAX);
    if (o->max_body == 0)
        return p2p_error_set(err, P2P_EINVAL, "http: max_body must be > 0");
    if (o->secret != NULL && o->secret_len == 0)
        return p2p_error_set(err, P2P_EINVAL, "http: the secret is empty");
    return 0;
}

p2p_http_client *p2p_http_client_new(const p2p_http_client_options *opts, p2p_error *err) {
    p2p_http_client_options defaults;
    p2p_http_client_options_init(&defaults);
    const p2p_http_client_options *o = opts ? opts : &defaults;
    if (check_options(o, err) != 0)
        return NULL;
    if (!p2p__http_client_global_init()) {
        p2p_error_set(err, P2P_EINTERNAL, "http: curl_global_init failed");
        return NULL;
    }
    p2p_http_client *c = calloc(1, sizeof(*c));
    if (c == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
        return NULL;
    }
    c->opts = *o;
    int rc = copy_str(o->ca_file, &c->ca_file) | copy_str(o->ca_path, &c->ca_path) |
             copy_str(o->user_agent ? o->user_agent : USER_AGENT_DEFAULT, &c->user_agent);
    if (rc == 0 && o->secret != NULL) {
        c->secret = malloc(o->secret_len);
        if (c->secret != NULL)
            memcpy(c->secret, o->secret, o->secret_len);
        rc = c->secret == NULL ? P2P_ENOMEM : 0;
    }
    if (rc != 0) {
        p2p_http_client_free(c);
        p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
        return NULL;
    }
    c->opts.secret = c->secret; /* never the caller's buffers after this call */
    c->opts.ca_file = c->ca_file;
    c->opts.ca_path = c->ca_path;
    c->opts.user_agent = c->user_agent;
    return c;
}

void p2p_http_client_free(p2p_http_client *c) {
    if (c == NULL)
        return;
    for (int i = 0; i < c->nidle; i++)
        curl_easy_cleanup(c->idle[i]);
    p2p_secret_free(c->secret, c->opts.secret_len);
    free(c->ca_file);
    free(c->ca_path);
    free(c->user_agent);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* A pooled handle keeps its connection open, so the next request to the same
 * host skips the TCP (and TLS) handshake. */
static CURL *pool_get(p2p_http_client *c) {
    CURL *h = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->nidle > 0)
        h = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->lock);
    return h ? h : curl_easy_init();
}

static void pool_put(p2p_http_client *c, CURL *h) {
    if (h == NULL)
        return;
    curl_easy_reset(h); /* keeps the live connections */
    pthread_mutex_lock(&c->lock);
    if (c->nidle < c->opts.pool_size) {
        c->idle[c->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    curl_easy_cleanup(h);
}

/* ---- the one CURLcode adapter ---- */

static const struct {
    CURLcode cc;
    int code;
} curl_codes[] = {
    {CURLE_COULDNT_RESOLVE_HOST, P2P_EUNAVAIL},
    {CURLE_COULDNT_RESOLVE_PROXY, P2P_EUNAVAIL},
    {CURLE_COULDNT_CONNECT, P2P_EUNAVAIL},
    {CURLE_SEND_ERROR, P2P_EUNAVAIL},
    {CURLE_RECV_ERROR, P2P_EUNAVAIL},
    {CURLE_GOT_NOTHING, P2P_EUNAVAIL},
    {CURLE_PARTIAL_FILE, P2P_EUNAVAIL},
    {CURLE_SSL_CONNECT_ERROR, P2P_EUNAVAIL},
    {CURLE_OPERATION_TIMEDOUT, P2P_ETIMEDOUT},
    {CURLE_URL_MALFORMAT, P2P_EINVAL},
    {CURLE_UNSUPPORTED_PROTOCOL, P2P_EINVAL},
    {CURLE_BAD_FUNCTION_ARGUMENT, P2P_EINVAL},
    {CURLE_SSL_CACERT_BADFILE, P2P_EINVAL},
    {CURLE_SSL_CERTPROBLEM, P2P_EINVAL},
    {CURLE_PEER_FAILED_VERIFICATION, P2P_EAUTH},
    {CURLE_OUT_OF_MEMORY, P2P_ENOMEM},
    {CURLE_WRITE_ERROR, P2P_EIO},
    {CURLE_READ_ERROR, P2P_EIO},
    {CURLE_ABORTED_BY_CALLBACK, P2P_ECANCELED},
    {CURLE_FILESIZE_EXCEEDED, P2P_ETOOBIG},
};

/* The one place where a CURLcode becomes a p2p code. Anything not listed is
 * the peer or the protocol misbehaving. */
static int curl_code_to_p2p(CURLcode cc) {
    for (size_t i = 0; i < sizeof(curl_codes) / sizeof(curl_codes[0]); i++) {
        if (curl_codes[i].cc == cc)
            return curl_codes[i].code;
    }
    return P2P_EPROTO;
}

/* Turns a failed attempt into the error to return. A callback that stopped
 * the transfer said why; that reason wins over curl's generic code. */
static int attempt_error(const xfer *x, CURLcode cc, p2p_error *err) {
    if (x->cb_err.code != 0)
        return p2p_error_set(err, x->cb_err.code, "%s", x->cb_err.msg);
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);
    return p2p_error_set(err, curl_code_to_p2p(cc), "%s %s: %s", x->req->method, x->req->url,
                         detail);
}

static size_t cb_fail(xfer *x, int code, const char *msg) {
    p2p_error_set(&x->cb_err, code, "%s %s: %s", x->req->method, x->req->url, msg);
    return 0; /* any short count makes curl stop with a write/read error */
}

/* ---- response sink: memory or file ---- */

static bool mem_append(xfer *x, const char *data, size_t len) {
    if (len > x->c->opts.max_body - x->len) {
        cb_fail(x, P2P_ETOOBIG, "response body over the in-memory limit");
        return false;
    }
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + len + 1)
            cap *= 2;
        char *grown = realloc(x->buf, cap);
        if (grown == NULL) {
            cb_fail(x, P2P_ENOMEM, "out of memory for the response body");
            return false;
        }
        x->buf = grown;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, len);
    x->len += len;
    x->buf[x->len] = '\0';
    return true;
}

/* Reads the three numbers of "bytes FIRST-LAST/TOTAL" or "bytes * /TOTAL"
 * (first and last -1 then). */
static bool parse_content_range(const char *v, int64_t *first, int64_t *total) {
    if (strncmp(v, "bytes ", 6) != 0)
        return false;
    v += 6;
    char *end = NULL;
    *first = -1;
    if (*v == '*') {
        end = (char *)v + 1;
    } else {
        errno = 0;
        *first = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '-' || *first < 0)
            return false;
        end = strchr(end, '/');
        if (end == NULL)
            return false;
    }
    if (*end != '/')
        return false;
    const char *t = end + 1;
    errno = 0;
    *total = strtoll(t, &end, 10);
    if (*t == '*')
        *total = -1;
    return *t == '*' || (errno == 0 && end != t && *end == '\0' && *total >= 0);
}

static const char *header_value(CURL *h, const char *name) {
    struct curl_header *hdr = NULL;
    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK)
        return NULL;
    return hdr->value;
}

/* Decides where the body goes once the status is known: a 2xx body of a
 * download goes to the file (continuing it for 206, from zero for 200);
 * anything else goes to memory, so an error body never lands in the file. */
static bool sink_prepare(xfer *x) {
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    x->sink_ready = true;
    x->sink_file = x->dl_fd >= 0 && status / 100 == 2;
    if (!x->sink_file)
        return true;
    x->dl_off = 0;
    if (status == 206) {
        const char *range = header_value(x->h, "Content-Range");
        int64_t first = -1, total = -1;
        if (x->dl_from < 0 || range == NULL || !parse_content_range(range, &first, &total) ||
            first != x->dl_from) {
            cb_fail(x, P2P_EPROTO, "206 does not continue the partial file");
            return false;
        }
        x->dl_off = first;
        x->resp->resumed = true;
    } else if (ftruncate(x->dl_fd, 0) != 0) {
        p2p_error_errno(&x->cb_err, P2P_EIO, errno, "cannot truncate %s", x->req->download_path);
        return false;
    }
    x->progress_base = x->dl_off;
    return true;
}

static size_t on_write(char *data, size_t size, size_t n, void *arg) {
    xfer *x = arg;
    size_t len = size * n;
    if (!x->sink_ready && !sink_prepare(x))
        return 0;
    if (!x->sink_file)
        return mem_append(x, data, len) ? len : 0;
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(x->dl_fd, data + done, len - done, (off_t)x->dl_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            p2p_error_errno(&x->cb_err, P2P_EIO, errno, "cannot write %s", x->req->download_path);
            return 0;
        }
        done += (size_t)w;
        x->dl_off += w;
    }
    return len;
}

/* ---- upload and progress ---- */

static size_t on_read(char *buf, size_t size, size_t n, void *arg) {
    xfer *x = arg;
    for (;;) {
        ssize_t r = pread(x->up_fd, buf, size * n, (off_t)x->up_off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            p2p_error_errno(&x->cb_err, P2P_EIO, errno, "cannot read %s", x->req->upload_path);
            return CURL_READFUNC_ABORT;
        }
        x->up_off += r;
        return (size_t)r;
    }
}

/* curl rewinds the body itself when it must send it again on a new connection. */
static int on_seek(void *arg, curl_off_t offset, int origin) {
    xfer *x = arg;
    if (origin != SEEK_SET || offset < 0 || offset > x->up_size)
        return CURL_SEEKFUNC_CANTSEEK;
    x->up_off = offset;
    return CURL_SEEKFUNC_OK;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    xfer *x = arg;
    bool upload = x->up_fd >= 0 || x->req->body != NULL;
    int64_t done = upload ? ulnow : x->progress_base + dlnow;
    int64_t total = upload ? ultotal : (dltotal > 0 ? x->progress_base + dltotal : 0);
    if (done == x->last_done && total == x->last_total)
        return 0; /* curl also calls while idle; the user hears only of changes */
    x->last_done = done;
    x->last_total = total;
    if (x->req->progress(x->req->progress_arg, done, total) == 0)
        return 0;
    cb_fail(x, P2P_ECANCELED, "cancelled by the progress callback");
    return 1;
}

/* ---- one attempt ---- */

static int add_header(struct curl_slist **list, const char *name, const char *value) {
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof(line))
        return P2P_EINVAL;
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (grown == NULL)
        return P2P_ENOMEM;
    *list = grown;
    return 0;
}

/* Signs what curl will put on the request line: the path and query of the
 * parsed URL, so that the server, reading its request line, signs the same. */
static int add_signature(xfer *x, struct curl_slist **list, p2p_error *err) {
    char *path = NULL, *query = NULL, target[4096];
    p2p_sign_headers sh;
    int rc = 0;
    if (curl_url_get(x->url, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        rc = p2p_error_set(err, P2P_EINVAL, "http: no path in %s", x->req->url);
        goto cleanup;
    }
    if (curl_url_get(x->url, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
        query = NULL;
    int n = snprintf(target, sizeof(target), "%s%s%s", path, query ? "?" : "", query ? query : "");
    if (n < 0 || (size_t)n >= sizeof(target)) {
        rc = p2p_error_set(err, P2P_EINVAL, "http: request target too long to sign");
        goto cleanup;
    }
    rc = p2p_sign_request(x->c->secret, x->c->opts.secret_len, x->req->method, target,
                          (int64_t)time(NULL), &sh, err);
    if (rc == 0)
        rc = add_header(list, P2P_SIGN_HEADER_TIME, sh.time);
    if (rc == 0)
        rc = add_header(list, P2P_SIGN_HEADER_NONCE, sh.nonce);
    if (rc == 0)
        rc = add_header(list, P2P_SIGN_HEADER_SIGNATURE, sh.signature);
    if (rc == P2P_ENOMEM)
        p2p_error_set(err, rc, "http: out of memory");
cleanup:
    curl_free(path);
    curl_free(query);
    return rc;
}

static int build_headers(xfer *x, struct curl_slist **list, p2p_error *err) {
    const p2p_http_call *r = x->req;
    for (const char *const *h = r->headers; h != NULL && *h != NULL; h++) {
        struct curl_slist *grown = curl_slist_append(*list, *h);
        if (grown == NULL)
            return p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
        *list = grown;
    }
    const char *type = r->content_type ? r->content_type : "application/octet-stream";
    /* Without a body the empty value drops the form type curl gives a POST. */
    if (add_header(list, "Content-Type", r->body || x->up_fd >= 0 ? type : "") != 0)
        return p2p_error_set(err, P2P_EINVAL, "http: bad content type");
    if (x->c->secret != NULL)
        return add_signature(x, list, err);
    return 0;
}

static void set_method(xfer *x) {
    const p2p_http_call *r = x->req;
    CURL *h = x->h;
    if (x->up_fd >= 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->up_size);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)TRANSFER_BUFFER);
    } else if (r->body != NULL || strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    /* The calls above pick PUT, POST, HEAD or GET; any other verb is named. */
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
}

static void set_transport(xfer *x) {
    const p2p_http_client *c = x->c;
    CURL *h = x->h;
    long timeout = x->req->timeout_ms ? x->req->timeout_ms : c->opts.timeout_ms;
    curl_easy_setopt(h, CURLOPT_CURLU, x->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: thread-safe */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout > 0 ? timeout : 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)TRANSFER_BUFFER);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->opts.insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->opts.insecure ? 0L : 2L);
    if (c->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (c->ca_path != NULL)
        curl_easy_setopt(h, CURLOPT_CAPATH, c->ca_path);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    if (x->req->progress != NULL) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
}

/* Resets the per-attempt state; a resumed download asks for what is missing. */
static int attempt_reset(xfer *x, bool ranged, p2p_error *err) {
    x->errbuf[0] = '\0';
    p2p_error_clear(&x->cb_err);
    x->up_off = 0;
    x->len = 0;
    x->sink_ready = x->sink_file = false;
    x->dl_from = -1;
    x->progress_base = 0;
    x->last_done = x->last_total = -1;
    x->resp->resumed = false;
    if (x->dl_fd < 0 || !ranged)
        return 0;
    struct stat st;
    if (fstat(x->dl_fd, &st) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot stat %s", x->req->download_path);
    if (st.st_size > 0)
        x->dl_from = st.st_size;
    return 0;
}

/* Runs one attempt. Returns 0 when a response arrived, or the error. */
static int attempt_run(xfer *x, bool ranged, CURLcode *cc, p2p_error *err) {
    struct curl_slist *headers = NULL;
    curl_easy_reset(x->h);
    int rc = attempt_reset(x, ranged, err);
    rc = rc ? rc : build_headers(x, &headers, err);
    if (rc != 0)
        goto cleanup;
    set_transport(x);
    set_method(x);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, headers);
    char range[32];
    if (x->dl_from > 0) {
        snprintf(range, sizeof(range), "%" PRId64 "-", x->dl_from);
        curl_easy_setopt(x->h, CURLOPT_RANGE, range);
    }
    *cc = curl_easy_perform(x->h);
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->resp->status);
    if (*cc == CURLE_OK && !x->sink_ready && !sink_prepare(x))
        *cc = CURLE_WRITE_ERROR; /* an empty 2xx body still truncates or checks the file */
    if (*cc != CURLE_OK)
        rc = attempt_error(x, *cc, err);
cleanup:
    curl_slist_free_all(headers);
    return rc;
}

/* A request may go again when the server never saw it (no connection), or
 * when it is idempotent and the failure looks transient. */
static bool may_retry(const xfer *x, int rc, CURLcode cc) {
    if (rc == 0) {
        long s = x->resp->status;
        return x->req->idempotent && (s == 502 || s == 503 || s == 504);
    }
    if (x->cb_err.code != 0)
        return false; /* our own decision (too big, cancelled, disk error) */
    long sent = 0;
    curl_easy_getinfo(x->h, CURLINFO_REQUEST_SIZE, &sent);
    if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
        (cc == CURLE_OPERATION_TIMEDOUT && sent == 0))
        return true;
    return x->req->idempotent && (rc == P2P_EUNAVAIL || rc == P2P_ETIMEDOUT);
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

long p2p_http_backoff_ms(long base_ms, long max_ms, int attempt) {
    long cap = base_ms;
    for (int i = 0; i < attempt && cap < max_ms; i++)
        cap = cap > max_ms / 2 ? max_ms : cap * 2;
    if (cap > max_ms)
        cap = max_ms;
    if (cap <= 0)
        return 0;
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        return cap / 2;
    return (long)(r % ((uint64_t)cap + 1));
}

/* ---- the request ---- */

static int check_request(const p2p_http_call *r, p2p_error *err) {
    if (r == NULL || r->method == NULL || r->method[0] == '\0' || r->url == NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: a request needs a method and a URL");
    if (r->body != NULL && r->upload_path != NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: body and upload_path are exclusive");
    if (r->resume && r->download_path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: resume needs a download_path");
    if (r->timeout_ms < -1)
        return p2p_error_set(err, P2P_EINVAL, "http: timeout_ms must be -1, 0 or > 0");
    return 0;
}

static int parse_url(xfer *x, p2p_error *err) {
    x->url = curl_url();
    if (x->url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
    CURLUcode uc = curl_url_set(x->url, CURLUPART_URL, x->req->url, 0);
    if (uc != CURLUE_OK)
        return p2p_error_set(err, P2P_EINVAL, "http: bad URL \"%s\": %s", x->req->url,
                             curl_url_strerror(uc));
    char *scheme = NULL;
    bool ok = curl_url_get(x->url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    if (!ok)
        return p2p_error_set(err, P2P_EINVAL, "http: %s is not an http(s) URL", x->req->url);
    return 0;
}

static int open_files(xfer *x, p2p_error *err) {
    const p2p_http_call *r = x->req;
    if (r->upload_path != NULL) {
        struct stat st;
        x->up_fd = open(r->upload_path, O_RDONLY | O_CLOEXEC);
        if (x->up_fd < 0 || fstat(x->up_fd, &st) != 0)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot open %s", r->upload_path);
        if (!S_ISREG(st.st_mode))
            return p2p_error_set(err, P2P_EINVAL, "%s is not a regular file", r->upload_path);
        x->up_size = st.st_size;
    }
    if (r->download_path != NULL) {
        x->dl_fd = open(r->download_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (x->dl_fd < 0)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot open %s", r->download_path);
    }
    return 0;
}

/* A 416 to a ranged request: when the server's total is the partial file's
 * size the file is complete; otherwise it is no prefix of this object. */
static bool range_complete(xfer *x) {
    const char *cr = header_value(x->h, "Content-Range");
    int64_t first = -1, total = -1;
    return cr != NULL && parse_content_range(cr, &first, &total) && total == x->dl_from;
}

static int run_attempts(xfer *x, p2p_error *err) {
    const p2p_http_client_options *o = &x->c->opts;
    bool ranged = x->req->resume, restarted = false;
    p2p_error e = {0}; /* the caller's `err` may be NULL; the retry log needs the text */
    for (int retries = 0;;) {
        CURLcode cc = CURLE_OK;
        x->resp->attempts++;
        int rc = attempt_run(x, ranged, &cc, &e);
        if (rc == 0 && x->resp->status == 416 && x->dl_from > 0) {
            if (range_complete(x)) {
                x->resp->already_complete = true;
                return 0;
            }
            if (!restarted) { /* start over once, from byte zero */
                restarted = true;
                ranged = false;
                continue;
            }
        }
        if (retries >= o->max_retries || !may_retry(x, rc, cc))
            return rc ? p2p_error_set(err, rc, "%s", e.msg) : 0;
        long delay = p2p_http_backoff_ms(o->backoff_base_ms, o->backoff_max_ms, retries);
        if (rc == 0)
            snprintf(e.msg, sizeof(e.msg), "%s %s: HTTP %ld", x->req->method, x->req->url,
                     x->resp->status);
        P2P_INFO("%s; retry %d of %d in %ld ms", e.msg, retries + 1, o->max_retries, delay);
        retries++;
        sleep_ms(delay);
    }
}

static int finish_response(xfer *x, p2p_error *err) {
    p2p_http_reply *resp = x->resp;
    char *ct = NULL;
    if (curl_easy_getinfo(x->h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
        snprintf(resp->content_type, sizeof(resp->content_type), "%s", ct);
    const char *cr = header_value(x->h, "Content-Range");
    if (cr != NULL)
        snprintf(resp->content_range, sizeof(resp->content_range), "%s", cr);
    struct stat st;
    if (x->dl_fd >= 0 && fstat(x->dl_fd, &st) == 0)
        resp->file_size = st.st_size;
    if (x->buf == NULL && (x->buf = calloc(1, 1)) == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
    resp->body = x->buf;
    resp->body_len = x->len;
    x->buf = NULL;
    return 0;
}

int p2p_http_client_request(p2p_http_client *c, const p2p_http_call *req, p2p_http_reply *resp,
                            p2p_error *err) {
    if (c == NULL || resp == NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: client and response are required");
    *resp = (p2p_http_reply){0};
    int rc = check_request(req, err);
    if (rc != 0)
        return rc;
    /* errbuf alone is 256 bytes: keep the state off small thread stacks. */
    xfer *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
    *x = (xfer){.c = c, .req = req, .resp = resp, .up_fd = -1, .dl_fd = -1};
    rc = parse_url(x, err);
    if (rc == 0)
        rc = open_files(x, err);
    if (rc == 0 && (x->h = pool_get(c)) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "http: curl_easy_init failed");
    if (rc == 0)
        rc = run_attempts(x, err);
    if (x->h != NULL) {
        int frc = finish_response(x, err);
        rc = rc ? rc : frc;
    }
    pool_put(c, x->h);
    if (x->up_fd >= 0)
        close(x->up_fd);
    if (x->dl_fd >= 0)
        close(x->dl_fd);
    curl_url_cleanup(x->url);
    free(x->buf);
    free(x);
    return rc;
}
