/* A test-only HTTP server for the HTTP client's tests, written directly on
 * libmicrohttpd (the project's own server wrapper must not be needed to test
 * the client). It listens on 127.0.0.1 on a port the kernel picks, in plain
 * HTTP and in HTTPS with a self-signed certificate made at start.
 *
 * It streams on its side too (sendfile for downloads, chunk by chunk to disk
 * for uploads), so that the memory measured in the test process is the
 * client's. Routes:
 *   /echo            JSON of the method, raw request target, body and headers
 *   /file            the file at srv.file_path; "Range: bytes=N-"; ?ignore_range=1
 *   /flaky           503 for the first srv.flaky_failures hits, then 200
 *   /slow?ms=N       answers after N ms
 *   /signed          checks the request signature (401 or 200); ?flaky=1 as /flaky
 *   /upload          streams the body to srv.upload_path; JSON {bytes, sha256}
 *   /big?n=N         N bytes of 'x'
 *   /status?code=N[&name=E]  that status, with a JSON error body when named
 *
 * Static functions in a header: it has exactly one includer per test program. */
#ifndef P2PRPC_HTTP_TEST_SERVER_H
#define P2PRPC_HTTP_TEST_SERVER_H

#include "http_client.h"
#include "sign.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define BIG_FILE_SIZE (64 << 20)
static const unsigned char SECRET[] = "shared-test-secret";
#define SECRET_LEN (sizeof(SECRET) - 1)

/* ---------------- the test server ---------------- */

typedef struct server {
    struct MHD_Daemon *d;
    int port;
    char file_path[512]; /* what /file serves */
    p2p_sign_verifier *verifier;
    atomic_int flaky_failures; /* /flaky and /signed?flaky=1 answer 503 this many times */
    atomic_int hits;
    atomic_int connections;
    atomic_long body_bytes; /* request body bytes received, all routes */
    atomic_long cut_after;  /* > 0: the next /file response breaks after this many bytes */
    char upload_path[512];
    struct MHD_Daemon *tls_d; /* the same routes over HTTPS */
    int tls_port;
    char cert_path[512]; /* its self-signed certificate, PEM */
    char key_pem[4096], cert_pem[4096];
} server;

static server srv;

typedef struct req_state {
    char *raw_uri; /* the request target as received, for the signature */
    bool started;
    int fd; /* upload sink, or -1 */
    int64_t bytes;
    EVP_MD_CTX *sha;
    char body[4096]; /* /echo keeps a small body */
    size_t len;
} req_state;

typedef struct cut_reader {
    int fd;
    int64_t offset, stop;
} cut_reader;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls;
    (void)c;
    req_state *st = calloc(1, sizeof(*st));
    ASSERT_TRUE(st != NULL);
    st->raw_uri = strdup(uri);
    st->fd = -1;
    return st;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    req_state *st = *con_cls;
    if (st == NULL)
        return;
    if (st->fd >= 0)
        close(st->fd);
    EVP_MD_CTX_free(st->sha);
    free(st->raw_uri);
    free(st);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sock_ctx,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)cls, (void)c, (void)sock_ctx;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&srv.connections, 1);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *doc) {
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int code, const char *msg) {
    return send_json(
        c, (unsigned)p2p_error_http_status(code),
        json_pack("{s:{s:s,s:s}}", "error", "code", p2p_error_name(code), "message", msg));
}

static const char *arg(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static long arg_long(struct MHD_Connection *c, const char *name, long dflt) {
    const char *v = arg(c, name);
    return v ? strtol(v, NULL, 10) : dflt;
}

static ssize_t cut_read(void *cls, uint64_t pos, char *buf, size_t max) {
    cut_reader *cr = cls;
    (void)pos;
    if (cr->offset >= cr->stop)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t want = (size_t)(cr->stop - cr->offset) < max ? (size_t)(cr->stop - cr->offset) : max;
    ssize_t n = pread(cr->fd, buf, want, cr->offset);
    if (n <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    cr->offset += n;
    return n;
}

static void cut_free(void *cls) {
    cut_reader *cr = cls;
    close(cr->fd);
    free(cr);
}

/* GET /file: the file, honouring "Range: bytes=N-" unless ?ignore_range=1. */
static enum MHD_Result serve_file(struct MHD_Connection *c) {
    int fd = open(srv.file_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    ASSERT_TRUE(fd >= 0 && fstat(fd, &st) == 0);
    int64_t size = st.st_size, from = 0;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    if (range != NULL && arg(c, "ignore_range") == NULL) {
        ASSERT_EQ(strncmp(range, "bytes=", 6), 0);
        from = strtoll(range + 6, NULL, 10);
    }
    char cr[96];
    struct MHD_Response *r;
    unsigned status = from > 0 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK;
    long cut = atomic_exchange(&srv.cut_after, 0);
    if (from >= size && from > 0) {
        close(fd);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        snprintf(cr, sizeof(cr), "bytes */%lld", (long long)size);
        status = MHD_HTTP_RANGE_NOT_SATISFIABLE;
    } else if (cut > 0) {
        cut_reader *rd = malloc(sizeof(*rd));
        *rd = (cut_reader){.fd = fd, .offset = from, .stop = from + cut};
        r = MHD_create_response_from_callback((uint64_t)(size - from), 64 * 1024, cut_read, rd,
                                              cut_free);
    } else {
        r = MHD_create_response_from_fd_at_offset64((uint64_t)(size - from), fd, (uint64_t)from);
    }
    if (status == MHD_HTTP_PARTIAL_CONTENT)
        snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from, (long long)size - 1,
                 (long long)size);
    if (status != MHD_HTTP_OK)
        MHD_add_response_header(r, "Content-Range", cr);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result serve_flaky(struct MHD_Connection *c) {
    int n = atomic_fetch_add(&srv.hits, 1) + 1;
    if (n <= atomic_load(&srv.flaky_failures))
        return send_error(c, P2P_EUNAVAIL, "try again");
    return send_json(c, 200, json_pack("{s:i}", "hits", n));
}

static enum MHD_Result serve_signed(struct MHD_Connection *c, const char *method, req_state *st) {
    p2p_error err = {0};
    int rc =
        p2p_sign_verify(srv.verifier, method, st->raw_uri,
                        MHD_lookup_connection_value(c, MHD_HEADER_KIND, P2P_SIGN_HEADER_TIME),
                        MHD_lookup_connection_value(c, MHD_HEADER_KIND, P2P_SIGN_HEADER_NONCE),
                        MHD_lookup_connection_value(c, MHD_HEADER_KIND, P2P_SIGN_HEADER_SIGNATURE),
                        (int64_t)time(NULL), &err);
    if (rc != 0)
        return send_error(c, rc, err.msg);
    if (arg(c, "flaky") != NULL)
        return serve_flaky(c);
    return send_json(c, 200, json_pack("{s:s}", "uri", st->raw_uri));
}

static enum MHD_Result serve_big(struct MHD_Connection *c) {
    size_t n = (size_t)arg_long(c, "n", 0);
    char *body = malloc(n);
    memset(body, 'x', n);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result serve_status(struct MHD_Connection *c) {
    unsigned status = (unsigned)arg_long(c, "code", 500);
    if (arg(c, "name") == NULL) {
        static char plain[] = "plain failure";
        struct MHD_Response *r =
            MHD_create_response_from_buffer(strlen(plain), plain, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
    }
    return send_json(c, status,
                     json_pack("{s:{s:s,s:s}}", "error", "code", arg(c, "name"), "message",
                               "the server says no"));
}

/* Takes one chunk of a request body: to disk for /upload, to memory for /echo. */
static void take_body(req_state *st, const char *url, const char *data, size_t n) {
    if (strcmp(url, "/upload") == 0) {
        if (st->fd < 0) {
            st->fd = open(srv.upload_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            st->sha = EVP_MD_CTX_new();
            ASSERT_TRUE(st->fd >= 0 && EVP_DigestInit_ex(st->sha, EVP_sha256(), NULL) == 1);
        }
        ASSERT_EQ(write(st->fd, data, n), (ssize_t)n);
        ASSERT_EQ(EVP_DigestUpdate(st->sha, data, n), 1);
    } else if (st->len + n < sizeof(st->body)) {
        memcpy(st->body + st->len, data, n);
        st->len += n;
    }
    st->bytes += (int64_t)n;
    atomic_fetch_add(&srv.body_bytes, (long)n);
}

static void hex(const unsigned char *in, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static enum MHD_Result serve_upload_result(struct MHD_Connection *c, req_state *st) {
    unsigned char md[32];
    char md_hex[65] = "";
    if (st->sha != NULL) {
        ASSERT_EQ(EVP_DigestFinal_ex(st->sha, md, NULL), 1);
        hex(md, sizeof(md), md_hex);
    }
    return send_json(c, 200,
                     json_pack("{s:I,s:s}", "bytes", (json_int_t)st->bytes, "sha256", md_hex));
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **con_cls) {
    (void)cls, (void)version;
    req_state *st = *con_cls;
    if (!st->started) { /* headers only; the body, if any, comes next */
        st->started = true;
        return MHD_YES;
    }
    if (*data_size > 0) {
        take_body(st, url, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/echo") == 0) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
        const char *extra = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Extra");
        return send_json(c, 200,
                         json_pack("{s:s,s:s,s:s%,s:s?,s:s?,s:s?}", "method", method, "uri",
                                   st->raw_uri, "body", st->body, st->len, "content_type", ct,
                                   "user_agent", ua, "extra", extra));
    }
    if (strcmp(url, "/upload") == 0)
        return serve_upload_result(c, st);
    if (strcmp(url, "/file") == 0)
        return serve_file(c);
    if (strcmp(url, "/flaky") == 0)
        return serve_flaky(c);
    if (strcmp(url, "/slow") == 0) {
        long ms = arg_long(c, "ms", 0);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return send_json(c, 200, json_pack("{s:i}", "slept", (int)ms));
    }
    if (strcmp(url, "/signed") == 0)
        return serve_signed(c, method, st);
    if (strcmp(url, "/big") == 0)
        return serve_big(c);
    if (strcmp(url, "/status") == 0)
        return serve_status(c);
    return send_error(c, P2P_ENOTFOUND, "no such route");
}

static const char *tmp_dir(void) {
    const char *dir = getenv("P2PRPC_TEST_TMP");
    dir = dir ? dir : "/tmp";
    mkdir(dir, 0700);
    return dir;
}

static void add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    ASSERT_TRUE(ext != NULL && X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

static void pem_to(BIO *bio, char *out, size_t cap) {
    int n = BIO_read(bio, out, (int)cap - 1);
    ASSERT_GT(n, 0);
    out[n] = '\0';
    BIO_free(bio);
}

/* A self-signed P-256 certificate for 127.0.0.1, valid for an hour. */
static void make_certificate(void) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASSERT_TRUE(key != NULL && x != NULL);
    X509_set_version(x, X509_VERSION_3); /* extensions need v3 */
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    add_ext(x, NID_subject_alt_name, "IP:127.0.0.1");
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    ASSERT_EQ(PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL), 1);
    ASSERT_EQ(PEM_write_bio_X509(cb, x), 1);
    pem_to(kb, srv.key_pem, sizeof(srv.key_pem));
    pem_to(cb, srv.cert_pem, sizeof(srv.cert_pem));
    X509_free(x);
    EVP_PKEY_free(key);
    FILE *f = fopen(srv.cert_path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(srv.cert_pem, f);
    fclose(f);
}

static struct MHD_Daemon *start_daemon(bool tls, int *port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
        tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, srv.key_pem, MHD_OPTION_HTTPS_MEM_CERT,
        srv.cert_pem, MHD_OPTION_END);
    ASSERT_TRUE(d != NULL);
    *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    ASSERT_GT(*port, 0);
    return d;
}

static void server_start(void) {
    p2p_error err;
    srv.verifier = p2p_sign_verifier_new(SECRET, SECRET_LEN, 60, &err);
    ASSERT_TRUE(srv.verifier != NULL);
    snprintf(srv.file_path, sizeof(srv.file_path), "%s/http_served.bin", tmp_dir());
    snprintf(srv.upload_path, sizeof(srv.upload_path), "%s/http_uploaded.bin", tmp_dir());
    snprintf(srv.cert_path, sizeof(srv.cert_path), "%s/http_cert.pem", tmp_dir());
    make_certificate();
    srv.d = start_daemon(false, &srv.port);
    srv.tls_d = start_daemon(true, &srv.tls_port);
}

static void server_stop(void) {
    MHD_stop_daemon(srv.d);
    MHD_stop_daemon(srv.tls_d);
    p2p_sign_verifier_free(srv.verifier);
    unlink(srv.file_path);
    unlink(srv.upload_path);
    unlink(srv.cert_path);
}

/* ---------------- files, clocks, memory ---------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long elapsed_ms(double t0) {
    return (long)((now_s() - t0) * 1000);
}

static void make_file(const char *path, int64_t size, uint64_t seed) {
    static uint64_t chunk[1 << 17]; /* 1 MiB */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    for (int64_t done = 0; done < size;) {
        for (size_t i = 0; i < sizeof(chunk) / 8; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            chunk[i] = seed;
        }
        size_t n = size - done < (int64_t)sizeof(chunk) ? (size_t)(size - done) : sizeof(chunk);
        ASSERT_EQ(write(fd, chunk, n), (ssize_t)n);
        done += (int64_t)n;
    }
    close(fd);
}

static void sha256_file(const char *path, char out[65]) {
    static unsigned char buf[1 << 16];
    unsigned char md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ASSERT_EQ(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ASSERT_EQ(EVP_DigestUpdate(ctx, buf, (size_t)n), 1);
    close(fd);
    ASSERT_EQ(EVP_DigestFinal_ex(ctx, md, NULL), 1);
    EVP_MD_CTX_free(ctx);
    hex(md, sizeof(md), out);
}

static void expect_same_file(const char *a, const char *b) {
    char ha[65], hb[65];
    sha256_file(a, ha);
    sha256_file(b, hb);
    ASSERT_STR_EQ(ha, hb);
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    ASSERT_TRUE(f != NULL);
    char line[256];
    long kb = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            kb = strtol(line + klen + 1, NULL, 10);
    }
    fclose(f);
    ASSERT_GT(kb, 0);
    return kb;
}

/* Makes VmHWM start again from the current RSS (Linux "clear_refs" 5). */
static void reset_peak_rss(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ASSERT_EQ(write(fd, "5", 1), 1);
        close(fd);
    }
}

#endif
