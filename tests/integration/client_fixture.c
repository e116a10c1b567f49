/* The client test fixture: see client_fixture.h. */
#include "client_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- brokers ---- */

void cf_broker_init(broker *b, const char *name, const broker_config *cfg,
                    const broker *secret_of) {
    wf_broker_init(b, name, cfg);
    if (secret_of == NULL)
        return;
    ASSERT_TRUE(secret_of->secret_len > 0 && secret_of->secret_len <= sizeof(b->secret));
    memcpy(b->secret, secret_of->secret, secret_of->secret_len);
    b->secret_len = secret_of->secret_len;
    p2p_error err;
    if (harness_write_file(b->secret_path, b->secret, b->secret_len, &err) != 0)
        TEST_FAIL_("%s", err.msg);
}

/* ---- a fake broker ---- */

#define FAKE_MAX_HELD 64

struct cf_fake {
    int lfd;
    int stop[2];
    pthread_t thread;
    atomic_int requests;
    int health_status, other_status;
    bool silent;
    int held[FAKE_MAX_HELD]; /* connections a silent fake keeps open */
    int n_held;
    char url[64];
};

static void fake_reply(cf_fake *f, int fd, const char *head) {
    bool health = strncmp(head, "GET /health", 11) == 0;
    int status = health ? f->health_status : f->other_status;
    const char *body = status == 200 && health
                           ? "{\"status\":\"ok\",\"node\":\"fake\",\"version\":\"0.1.0\"}"
                           : "{\"error\":{\"code\":\"internal\",\"message\":\"fake broker\"}}";
    char reply[512];
    int n = snprintf(reply, sizeof(reply),
                     "HTTP/1.1 %d Fake\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, strlen(body), body);
    if (n > 0 && write(fd, reply, (size_t)n) < 0)
        fprintf(stderr, "fake broker: write failed\n");
}

static void fake_serve(cf_fake *f, int fd) {
    char head[4096];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t n = poll(&pfd, 1, 2000) > 0 ? read(fd, head, sizeof(head) - 1) : -1;
    if (n > 0) {
        head[n] = '\0';
        atomic_fetch_add(&f->requests, 1);
        if (f->silent && f->n_held < FAKE_MAX_HELD) {
            f->held[f->n_held++] = fd;
            return;
        }
        fake_reply(f, fd, head);
    }
    close(fd);
}

static void *fake_main(void *arg) {
    cf_fake *f = arg;
    for (int i = 0; i < 1000000; i++) {
        struct pollfd fds[2] = {{.fd = f->lfd, .events = POLLIN},
                                {.fd = f->stop[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0 || fds[1].revents != 0)
            break;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            fake_serve(f, fd);
    }
    return NULL;
}

cf_fake *cf_fake_start(int health_status, int other_status, bool silent) {
    cf_fake *f = calloc(1, sizeof(*f));
    ASSERT_TRUE(f != NULL);
    f->health_status = health_status;
    f->other_status = other_status;
    f->silent = silent;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(f->lfd >= 0);
    ASSERT_OK(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)));
    ASSERT_OK(listen(f->lfd, 64));
    ASSERT_OK(getsockname(f->lfd, (struct sockaddr *)&a, &len));
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    ASSERT_OK(pipe2(f->stop, O_CLOEXEC));
    ASSERT_OK(pthread_create(&f->thread, NULL, fake_main, f));
    return f;
}

const char *cf_fake_url(const cf_fake *f) {
    return f->url;
}

int cf_fake_requests(cf_fake *f) {
    return atomic_load(&f->requests);
}

void cf_fake_stop(cf_fake *f) {
    if (f == NULL)
        return;
    ASSERT_EQ(write(f->stop[1], "x", 1), 1);
    pthread_join(f->thread, NULL);
    for (int i = 0; i < f->n_held; i++)
        close(f->held[i]);
    close(f->lfd);
    close(f->stop[0]);
    close(f->stop[1]);
    free(f);
}

/* ---- clients ---- */

void cf_options(p2p_client_options *o, const char *const *urls, size_t n, const char *secret_path,
                const char *cache_path) {
    p2p_client_options_init(o);
    o->brokers = urls;
    o->n_brokers = n;
    o->secret_file = secret_path;
    o->cache_path = cache_path;
    o->connect_timeout_ms = 2000;
    o->poll_wait_s = 10;
}

p2p_client *cf_client(const p2p_client_options *o) {
    p2p_client *c = NULL;
    p2p_error err = {0};
    int rc = p2p_client_new(o, &c, &err);
    if (rc != 0)
        TEST_FAIL_("p2p_client_new: %s (%s)", err.msg, p2p_error_name(rc));
    ASSERT_TRUE(c != NULL);
    return c;
}

p2p_client *cf_client_for(const broker *b, const char *cache_path) {
    const char *urls[] = {b->url};
    p2p_client_options o;
    cf_options(&o, urls, 1, b->secret_len ? b->secret_path : NULL, cache_path);
    return cf_client(&o);
}

void cf_path(char out[HARNESS_PATH_MAX], const char *dir, const char *name) {
    int n = snprintf(out, HARNESS_PATH_MAX, "%s/%s", dir, name);
    ASSERT_TRUE(n > 0 && n < HARNESS_PATH_MAX);
}

void cf_expect_broker_(const p2p_future *f, const char *url, const char *file, int line) {
    const char *got = p2p_future_broker(f);
    size_t n = strlen(url);
    if (got == NULL || strncmp(got, url, n) != 0 ||
        !(got[n] == '\0' || strcmp(got + n, "/") == 0)) {
        fprintf(stderr, "%s:%d: expected the future's broker to be %s, got %s\n", file, line, url,
                got ? got : "(null)");
        abort();
    }
}

/* ---- arguments ---- */

static void init_values(p2p_value *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        p2p_value_init(&v[i]);
}

void cf_args_add(p2p_value v[2], int64_t a, int64_t b) {
    init_values(v, 2);
    p2p_value_set_int64(&v[0], a);
    p2p_value_set_int64(&v[1], b);
}

void cf_args_slow(p2p_value v[2], double seconds, int64_t steps) {
    init_values(v, 2);
    ASSERT_OK(p2p_value_set_double(&v[0], seconds, NULL));
    p2p_value_set_int64(&v[1], steps);
}

void cf_args_copy(p2p_value v[2], const char *path, int64_t xor_byte) {
    init_values(v, 2);
    /* A file known by its path: the client computes the hash. */
    v[0].type = P2P_TYPE_FILE;
    v[0].as.file.path = strdup(path);
    ASSERT_TRUE(v[0].as.file.path != NULL);
    v[0].as.file.hash[0] = '\0';
    v[0].as.file.size = 0;
    p2p_value_set_int64(&v[1], xor_byte);
}

void cf_args_int(p2p_value v[1], int64_t x) {
    init_values(v, 1);
    p2p_value_set_int64(&v[0], x);
}

/* ---- calls ---- */

p2p_future *cf_submit(p2p_client *c, wf_fn f, const p2p_value *args, const p2p_call_options *co) {
    p2p_future *fut = NULL;
    p2p_error err = {0};
    int rc = p2p_client_submit(c, wf_schema(f), args, NULL, 0, co, &fut, &err);
    if (rc != 0)
        TEST_FAIL_("submit %s: %s (%s)", wf_name(f), err.msg, p2p_error_name(rc));
    ASSERT_TRUE(fut != NULL);
    ASSERT_TRUE(p2p_hash_hex_valid(p2p_future_identifier(fut)));
    return fut;
}

const p2p_value *cf_get(p2p_future *f, size_t n) {
    const p2p_value *out = NULL;
    size_t got = 0;
    p2p_error err = {0};
    int rc = p2p_future_get(f, CF_CALL_TIMEOUT_MS, &out, &got, &err);
    if (rc != 0)
        TEST_FAIL_("get %s: %s (%s)", p2p_future_identifier(f), err.msg, p2p_error_name(rc));
    ASSERT_EQ(got, n);
    ASSERT_TRUE(out != NULL);
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_DONE);
    return out;
}

void cf_expect_error_(int rc, const p2p_error *err, int want, const char *substr, const char *file,
                      int line) {
    fprintf(stderr, "%s:%d: got %s: \"%s\"\n", file, line, p2p_error_name(rc), err->msg);
    if (rc != want) {
        fprintf(stderr, "%s:%d: expected %s, got %s (%d): %s\n", file, line, p2p_error_name(want),
                p2p_error_name(rc), rc, err->msg);
        abort();
    }
    if (substr != NULL && strstr(err->msg, substr) == NULL) {
        fprintf(stderr, "%s:%d: expected the message to contain \"%s\", got \"%s\"\n", file, line,
                substr, err->msg);
        abort();
    }
}

/* ---- evidence ---- */

double cf_metric(broker *b, const char *name) {
    char *text = fx_metrics_text(b);
    double v = fx_metric(text, name, NULL);
    free(text);
    return v < 0 ? 0 : v;
}

void cf_calls(broker *b, wf_fn f, long long counts[6]) {
    static const char *const names[6] = {"pushed", "queued", "running",
                                         "done",   "failed", "terminated"};
    char *text = fx_metrics_text(b);
    char fn_label[160];
    snprintf(fn_label, sizeof(fn_label), "function=\"%s\"", wf_name(f));
    for (int i = 0; i < 6; i++) {
        char st_label[64];
        snprintf(st_label, sizeof(st_label), "status=\"%s\"", names[i]);
        const char *labels[] = {fn_label, st_label, NULL};
        double v = fx_metric(text, "p2prpc_calls", labels);
        counts[i] = v < 0 ? 0 : (long long)v;
    }
    free(text);
}

long long cf_calls_total(broker *b, wf_fn f) {
    long long counts[6];
    cf_calls(b, f, counts);
    long long sum = 0;
    for (int i = 0; i < 6; i++)
        sum += counts[i];
    return sum;
}

long cf_pull_status(broker *b, wf_fn f, const char *id) {
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s", wf_name(f), id);
    harness_reply r;
    harness_get(b->client, b->url, path, 0, &r);
    ASSERT_EQ(r.rc, 0);
    long status = r.status;
    harness_reply_cleanup(&r);
    return status;
}

long cf_blob_status(broker *b, const char *hash) {
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    harness_reply r;
    harness_request(b->client, b->url, "HEAD", path, NULL, NULL, 0, 0, &r);
    ASSERT_EQ(r.rc, 0);
    long status = r.status;
    harness_reply_cleanup(&r);
    return status;
}

long cf_cache_files(const char *cache_path) {
    char files[HARNESS_PATH_MAX];
    cf_path(files, cache_path, "files");
    return harness_count_files(files, true);
}

/* Cells of `table` whose text contains `text`. */
static long table_mentions(sqlite3 *db, const char *table, const char *text) {
    char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", table);
    ASSERT_TRUE(sql != NULL);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    sqlite3_free(sql);
    if (rc != SQLITE_OK)
        TEST_FAIL_("cache.db: %s", sqlite3_errmsg(db));
    long n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *cell = sqlite3_column_text(st, i);
            if (cell != NULL && strstr((const char *)cell, text) != NULL)
                n++;
        }
    }
    ASSERT_EQ(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return n;
}

long cf_cache_db_mentions(const char *cache_path, const char *text) {
    char path[HARNESS_PATH_MAX];
    cf_path(path, cache_path, "cache.db");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        TEST_FAIL_("cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &st,
                           NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", path, sqlite3_errmsg(db));
    char tables[32][128];
    int n_tables = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n_tables < 32)
        snprintf(tables[n_tables++], sizeof(tables[0]), "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    ASSERT_GT(n_tables, 0);
    long n = 0;
    for (int i = 0; i < n_tables; i++)
        n += table_mentions(db, tables[i], text);
    sqlite3_close(db);
    return n;
}

/* ---- files ---- */

void cf_write_random(const char *path, size_t size, unsigned seed) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        TEST_FAIL_("cannot create %s: %s", path, strerror(errno));
    unsigned char buf[65536];
    uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            /* xorshift64: fast, and different seeds give different files */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)(x >> 24);
        }
        ASSERT_EQ(write(fd, buf, n), (ssize_t)n);
        done += n;
    }
    ASSERT_OK(close(fd));
}

void cf_expect_xor_of(const char *got, const char *orig, unsigned char x) {
    FILE *a = fopen(got, "rb"), *b = fopen(orig, "rb");
    if (a == NULL || b == NULL)
        TEST_FAIL_("cannot open %s or %s", got, orig);
    long long at = 0;
    for (;;) {
        int ca = getc(a), cb = getc(b);
        if (ca == EOF || cb == EOF) {
            if (ca != cb)
                TEST_FAIL_("%s and %s differ in size (at byte %lld)", got, orig, at);
            break;
        }
        if ((unsigned char)ca != ((unsigned char)cb ^ x))
            TEST_FAIL_("%s byte %lld is %d, expected %d ^ %d", got, at, ca, cb, x);
        at++;
    }
    fclose(a);
    fclose(b);
}

long long cf_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

void cf_age_file(const char *path, int seconds_ago) {
    struct timespec now;
    ASSERT_OK(clock_gettime(CLOCK_REALTIME, &now));
    struct timespec t[2] = {{now.tv_sec - seconds_ago, 0}, {now.tv_sec - seconds_ago, 0}};
    ASSERT_OK(utimensat(AT_FDCWD, path, t, 0));
}
