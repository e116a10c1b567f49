/* The worker's blob transfers (wire.c) against a small server of this test,
 * on libmicrohttpd, that can cut a download in the middle: a download resumes
 * with Range across more cuts than the HTTP client's own retries, gives up
 * when attempts stop adding bytes, checks size and hash (starting over once),
 * stops on its abort flag; an upload asks HEAD first and sends nothing the
 * broker has. */
#include "test.h"
#include "worker_internal.h"

#include "fsutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#define BLOB_SIZE (3 * 1024 * 1024 + 17)

static struct {
    struct MHD_Daemon *d;
    char base[64];
    char file[600];
    char hash[P2P_HASH_HEX_LEN + 1];
    atomic_int cuts;     /* this many more GETs are cut */
    atomic_long cut_len; /* ... after this many bytes */
    atomic_int gets, heads, puts;
    atomic_bool have; /* HEAD answers 200 */
    atomic_long put_bytes;
} srv;

static char dir[512];

typedef struct cut {
    int fd;
    int64_t offset, stop;
} cut;

static ssize_t cut_read(void *cls, uint64_t pos, char *buf, size_t max) {
    cut *c = cls;
    (void)pos;
    if (c->offset >= c->stop)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* the connection breaks here */
    size_t want = (size_t)(c->stop - c->offset) < max ? (size_t)(c->stop - c->offset) : max;
    ssize_t n = pread(c->fd, buf, want, c->offset);
    if (n <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    c->offset += n;
    return n;
}

static void cut_free(void *cls) {
    cut *c = cls;
    close(c->fd);
    free(c);
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status) {
    static const char body[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no blob\"}}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result serve_get(struct MHD_Connection *c) {
    atomic_fetch_add(&srv.gets, 1);
    int fd = open(srv.file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    ASSERT_TRUE(fd >= 0 && fstat(fd, &st) == 0);
    int64_t size = st.st_size, from = 0;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    if (range != NULL && strncmp(range, "bytes=", 6) == 0)
        from = strtoll(range + 6, NULL, 10);
    struct MHD_Response *r;
    if (atomic_load(&srv.cuts) > 0) {
        atomic_fetch_sub(&srv.cuts, 1);
        cut *k = malloc(sizeof(*k));
        ASSERT_TRUE(k != NULL);
        *k = (cut){.fd = fd, .offset = from, .stop = from + atomic_load(&srv.cut_len)};
        r = MHD_create_response_from_callback((uint64_t)(size - from), 64 * 1024, cut_read, k,
                                              cut_free);
    } else {
        r = MHD_create_response_from_fd_at_offset64((uint64_t)(size - from), fd, (uint64_t)from);
    }
    char cr[96];
    snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from, (long long)size - 1,
             (long long)size);
    if (from > 0)
        MHD_add_response_header(r, "Content-Range", cr);
    enum MHD_Result ret = MHD_queue_response(c, from > 0 ? 206 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **con_cls) {
    (void)cls;
    (void)version;
    (void)data;
    if (*con_cls == NULL) {
        *con_cls = (void *)1; /* headers seen; the body comes next */
        return MHD_YES;
    }
    if (*data_size > 0) {
        atomic_fetch_add(&srv.put_bytes, (long)*data_size);
        *data_size = 0;
        return MHD_YES;
    }
    const char *prefix = "/api/v1/blobs/";
    if (strncmp(url, prefix, strlen(prefix)) != 0 || strcmp(url + strlen(prefix), srv.hash) != 0)
        return answer(c, 404);
    if (strcmp(method, "HEAD") == 0) {
        atomic_fetch_add(&srv.heads, 1);
        return answer(c, atomic_load(&srv.have) ? 200 : 404);
    }
    if (strcmp(method, "PUT") == 0) {
        atomic_fetch_add(&srv.puts, 1);
        atomic_store(&srv.have, true);
        return answer(c, 201);
    }
    return serve_get(c);
}

static void server_start(void) {
    srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                             NULL, NULL, handler, NULL, MHD_OPTION_END);
    ASSERT_TRUE(srv.d != NULL);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(srv.base, sizeof(srv.base), "http://127.0.0.1:%u/", (unsigned)info->port);
}

/* A blob file of BLOB_SIZE bytes whose content depends on `seed`. */
static void make_blob(const char *path, unsigned seed, char hash[P2P_HASH_HEX_LEN + 1]) {
    char *data = malloc(BLOB_SIZE);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < BLOB_SIZE; i++)
        data[i] = (char)(i * 31 + i / 1000 + seed);
    ASSERT_OK(p2p_fs_write_atomic(path, data, BLOB_SIZE, 0600, NULL));
    if (hash != NULL)
        ASSERT_OK(p2p_hash_bytes_hex(data, BLOB_SIZE, hash, NULL));
    free(data);
}

static p2p_http_client *client(void) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.max_retries = 0; /* every cut reaches wire.c's own loop */
    p2p_http_client *c = p2p_http_client_new(&o, NULL);
    ASSERT_TRUE(c != NULL);
    return c;
}

static void reset(int cuts, long cut_len) {
    atomic_store(&srv.cuts, cuts);
    atomic_store(&srv.cut_len, cut_len);
    atomic_store(&srv.gets, 0);
}

static void test_resume(void) {
    p2p_http_client *c = client();
    char dst[700];
    snprintf(dst, sizeof(dst), "%s/in.bin", dir);
    p2p_error err = {0};
    /* Five cuts, 500 KB each time: five resumed attempts, then the rest. */
    reset(5, 500 * 1000);
    ASSERT_OK(p2p__wire_download(c, srv.base, srv.hash, BLOB_SIZE, dst, NULL, &err));
    ASSERT_EQ(atomic_load(&srv.gets), 6);
    char got[P2P_HASH_HEX_LEN + 1];
    int64_t size = 0;
    ASSERT_OK(p2p__wire_hash_file(dst, got, &size, NULL));
    ASSERT_STR_EQ(got, srv.hash);
    ASSERT_EQ(size, BLOB_SIZE);
    /* Unknown size: the hash alone decides. */
    reset(1, 1000);
    ASSERT_OK(p2p__wire_download(c, srv.base, srv.hash, -1, dst, NULL, &err));
    ASSERT_EQ(atomic_load(&srv.gets), 2);
    p2p_http_client_free(c);
}

static void test_gives_up(void) {
    p2p_http_client *c = client();
    char dst[700];
    snprintf(dst, sizeof(dst), "%s/in.bin", dir);
    p2p_error err = {0};
    /* Cut before any byte, every time: attempts without progress end it. */
    reset(1000, 0);
    int rc = p2p__wire_download(c, srv.base, srv.hash, BLOB_SIZE, dst, NULL, &err);
    ASSERT_TRUE(rc == P2P_EUNAVAIL || rc == P2P_EPROTO);
    ASSERT_GE(atomic_load(&srv.gets), 6);
    ASSERT_LE(atomic_load(&srv.gets), 8);
    /* No such blob: at once. */
    reset(0, 0);
    char other[P2P_HASH_HEX_LEN + 1];
    memset(other, 'a', P2P_HASH_HEX_LEN);
    other[P2P_HASH_HEX_LEN] = '\0';
    ASSERT_EQ(p2p__wire_download(c, srv.base, other, 10, dst, NULL, &err), P2P_ENOTFOUND);
    ASSERT_EQ(atomic_load(&srv.gets), 0);
    /* Aborted: between attempts and as bytes move. */
    atomic_bool flag = true;
    p2p__abort stop = {.flag = &flag, .fd = -1};
    reset(3, 1000);
    ASSERT_EQ(p2p__wire_download(c, srv.base, srv.hash, BLOB_SIZE, dst, &stop, &err),
              P2P_ECANCELED);
    ASSERT_LE(atomic_load(&srv.gets), 1);
    p2p_http_client_free(c);
}

static void test_hash_mismatch(void) {
    p2p_http_client *c = client();
    char dst[700];
    snprintf(dst, sizeof(dst), "%s/in.bin", dir);
    p2p_error err = {0};
    /* The server's content does not match its address: downloaded twice, then refused. */
    make_blob(srv.file, 99, NULL);
    reset(0, 0);
    ASSERT_EQ(p2p__wire_download(c, srv.base, srv.hash, BLOB_SIZE, dst, NULL, &err), P2P_EHASH);
    ASSERT_STR_CONTAINS(err.msg, "hashes to");
    ASSERT_EQ(atomic_load(&srv.gets), 2);
    /* A size that is not the announced one. */
    make_blob(srv.file, 7, NULL);
    reset(0, 0);
    ASSERT_EQ(p2p__wire_download(c, srv.base, srv.hash, BLOB_SIZE + 1, dst, NULL, &err), P2P_EHASH);
    ASSERT_STR_CONTAINS(err.msg, "bytes");
    p2p_http_client_free(c);
}

static void test_upload(void) {
    p2p_http_client *c = client();
    p2p_error err = {0};
    atomic_store(&srv.have, false);
    ASSERT_OK(p2p__wire_upload(c, srv.base, srv.file, srv.hash, BLOB_SIZE, NULL, &err));
    ASSERT_EQ(atomic_load(&srv.heads), 1);
    ASSERT_EQ(atomic_load(&srv.puts), 1);
    ASSERT_EQ(atomic_load(&srv.put_bytes), BLOB_SIZE);
    /* Known content is never sent again. */
    ASSERT_OK(p2p__wire_upload(c, srv.base, srv.file, srv.hash, BLOB_SIZE, NULL, &err));
    ASSERT_EQ(atomic_load(&srv.heads), 2);
    ASSERT_EQ(atomic_load(&srv.puts), 1);
    /* A file that cannot be read: the error, and no PUT. */
    atomic_store(&srv.have, false);
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/missing.bin", dir);
    ASSERT_NE(p2p__wire_upload(c, srv.base, missing, srv.hash, 5, NULL, &err), 0);
    ASSERT_EQ(atomic_load(&srv.puts), 1);
    p2p_http_client_free(c);
}

int main(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    base = base != NULL ? base : "/tmp";
    ASSERT_OK(p2p_fs_mkdirs(base, 0700, NULL));
    snprintf(dir, sizeof(dir), "%s/worker_wire_%d", base, (int)getpid());
    ASSERT_OK(p2p_fs_mkdirs(dir, 0700, NULL));
    snprintf(srv.file, sizeof(srv.file), "%s/blob.bin", dir);
    make_blob(srv.file, 7, srv.hash);
    server_start();
    TEST_RUN(test_resume);
    TEST_RUN(test_gives_up);
    TEST_RUN(test_hash_mismatch);
    TEST_RUN(test_upload);
    MHD_stop_daemon(srv.d);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
