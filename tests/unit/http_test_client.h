/* A small raw-libcurl client for the HTTP server tests: one request, its
 * status, headers and body, with a bounded timeout. Header-only, static. */
#ifndef P2PRPC_HTTP_TEST_CLIENT_H
#define P2PRPC_HTTP_TEST_CLIENT_H

#include "test.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct http_req {
    const char *method; /* NULL = GET */
    const char *url;
    const void *body; /* sent when body_len > 0 or chunked */
    size_t body_len;
    bool chunked;           /* no Content-Length: Transfer-Encoding: chunked */
    const char *headers[8]; /* "Name: value", NULL-terminated */
    long timeout_ms;        /* 0 = 10 s */
    const char *cainfo;     /* for https */
    CURL *reuse;            /* a handle to reuse (keep-alive), or NULL */
} http_req;

typedef struct http_resp {
    CURLcode rc;
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    curl_off_t uploaded;
    long new_connects;
    int64_t done_ms; /* CLOCK_MONOTONIC ms when the transfer ended */
} http_resp;

typedef struct body_reader {
    const char *data;
    size_t len, pos;
} body_reader;

static inline int64_t test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline size_t http_on_body(char *p, size_t size, size_t n, void *arg) {
    http_resp *r = arg;
    char *grown = realloc(r->body, r->len + size * n + 1);
    ASSERT_TRUE(grown != NULL);
    r->body = grown;
    memcpy(r->body + r->len, p, size * n);
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static inline size_t http_on_header(char *p, size_t size, size_t n, void *arg) {
    http_resp *r = arg;
    size_t k = size * n;
    /* A new status line (after 100 Continue) starts a new header block. */
    if (k > 5 && strncmp(p, "HTTP/", 5) == 0)
        r->hlen = 0;
    if (r->hlen + k < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

static inline size_t http_on_read(char *p, size_t size, size_t n, void *arg) {
    body_reader *b = arg;
    size_t k = b->len - b->pos < size * n ? b->len - b->pos : size * n;
    memcpy(p, b->data + b->pos, k);
    b->pos += k;
    return k;
}

static inline void http_setup(CURL *c, const http_req *q, http_resp *r, body_reader *br,
                              struct curl_slist **hl) {
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (q->cainfo != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, q->cainfo);
    const char *method = q->method ? q->method : "GET";
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    for (int i = 0; i < 8 && q->headers[i] != NULL; i++)
        *hl = curl_slist_append(*hl, q->headers[i]);
    if (q->body_len > 0 || q->chunked) {
        *br = (body_reader){q->body, q->body_len, 0};
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, http_on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, br);
        if (!q->chunked)
            curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
        else
            *hl = curl_slist_append(*hl, "Transfer-Encoding: chunked");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
}

/* Runs one request; `r` is filled (clean it with http_resp_cleanup). */
static inline void http_do(const http_req *q, http_resp *r) {
    memset(r, 0, sizeof(*r));
    CURL *c = q->reuse ? q->reuse : curl_easy_init();
    ASSERT_TRUE(c != NULL);
    body_reader br;
    struct curl_slist *hl = NULL;
    http_setup(c, q, r, &br, &hl);
    r->rc = curl_easy_perform(c);
    r->done_ms = test_now_ms();
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &r->uploaded);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->new_connects);
    curl_slist_free_all(hl);
    if (q->reuse == NULL)
        curl_easy_cleanup(c);
    else
        curl_easy_reset(c);
}

static inline void http_resp_cleanup(http_resp *r) {
    free(r->body);
    r->body = NULL;
}

/* The value of response header `name` (case-insensitive), copied to a static
 * buffer; NULL when absent. */
static inline const char *http_header(const http_resp *r, const char *name) {
    static char value[512];
    size_t n = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(value, sizeof(value), "%.*s", (int)len, v);
            return value;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return NULL;
}

static inline json_t *http_json(const http_resp *r) {
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, &je);
    if (j == NULL)
        TEST_FAIL_("response is not JSON (%s): \"%.200s\"", je.text, r->body ? r->body : "");
    return j;
}

/* Asserts `r` is exactly {"error":{"code":code,"message":"..."}} with `status`. */
static inline void assert_json_error(const http_resp *r, long status, const char *code) {
    ASSERT_EQ(r->rc, CURLE_OK);
    ASSERT_EQ(r->status, status);
    ASSERT_STR_EQ(http_header(r, "Content-Type"), "application/json");
    json_t *j = http_json(r);
    ASSERT_EQ(json_object_size(j), 1);
    json_t *e = json_object_get(j, "error");
    ASSERT_EQ(json_object_size(e), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "code")), code);
    ASSERT_TRUE(json_string_length(json_object_get(e, "message")) > 0);
    json_decref(j);
}

/* Counts the entries of `dir` other than "." and "..". */
static inline int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Waits (sleeping 2 ms steps) until `*value == want`, at most `ms`. The
 * server frees a request after the client saw its answer, so tests that
 * check for cleanup need a bounded wait. */
static inline bool wait_size(size_t (*get)(void *), void *arg, size_t want, int ms) {
    int64_t until = test_now_ms() + ms;
    while (get(arg) != want && test_now_ms() < until)
        usleep(2000);
    return get(arg) == want;
}

static inline size_t get_dir_entries(void *dir) {
    return (size_t)dir_entries(dir);
}

/* A request running in its own thread. */
typedef struct http_bg {
    pthread_t thread;
    http_req req;
    http_resp resp;
} http_bg;

static inline void *http_bg_main(void *arg) {
    http_bg *b = arg;
    http_do(&b->req, &b->resp);
    return NULL;
}

static inline void http_bg_start(http_bg *b) {
    ASSERT_EQ(pthread_create(&b->thread, NULL, http_bg_main, b), 0);
}

static inline void http_bg_join(http_bg *b) {
    ASSERT_EQ(pthread_join(b->thread, NULL), 0);
}

static inline void make_test_dir(char *out, size_t size, const char *name) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    base = base != NULL ? base : "/tmp";
    mkdir(base, 0700);
    snprintf(out, size, "%s/%s_%d", base, name, (int)getpid());
    ASSERT_TRUE(mkdir(out, 0700) == 0 || errno == EEXIST);
}

#endif
