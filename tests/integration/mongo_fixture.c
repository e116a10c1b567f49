/* The MongoDB server and proxy of the MongoDB integration tests: see
 * mongo_fixture.h. */
#include "mongo_fixture.h"

#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the server ---- */

static void skip_or_fail(const char *why) {
    const char *req = getenv("P2PRPC_TEST_MONGO_REQUIRED");
    if (req != NULL && strcmp(req, "1") == 0)
        TEST_FAIL_("no MongoDB server: %s (run 'bash tests/mongo/server.sh install')", why);
    fprintf(stderr, "SKIPPED: no MongoDB server: %s\n", why);
    exit(MONGO_FIXTURE_SKIP);
}

/* Replaces the hosts and the database of `base`, keeping the scheme,
 * credentials and options; `host_port` NULL keeps the hosts. Via another
 * host (the proxy), directConnection=true keeps the driver from discovering
 * the real members behind it. */
static void uri_build(const char *base, const char *host_port, const char *db, char *out,
                      size_t size) {
    const char *hosts = strstr(base, "://");
    ASSERT_TRUE(hosts != NULL);
    hosts += 3;
    const char *at = strchr(hosts, '@');
    size_t host_len = strcspn(hosts, "/?");
    if (at != NULL && at < hosts + host_len)
        hosts = at + 1; /* credentials stay in front */
    host_len = strcspn(hosts, "/?");
    const char *opts = strchr(hosts + host_len, '?');
    int n;
    if (host_port == NULL)
        n = snprintf(out, size, "%.*s/%s%s", (int)(hosts + host_len - base), base, db,
                     opts != NULL ? opts : "");
    else
        n = snprintf(out, size, "%.*s%s/%s%s%s", (int)(hosts - base), base, host_port, db,
                     opts != NULL ? opts : "?",
                     opts != NULL ? "&directConnection=true" : "directConnection=true");
    ASSERT_TRUE(n > 0 && (size_t)n < size);
}

static bool server_is_jongodb(const char *uri) {
    mongoc_client_t *client = mongoc_client_new(uri);
    ASSERT_TRUE(client != NULL);
    bson_t *cmd = BCON_NEW("buildInfo", BCON_INT32(1));
    bson_t reply;
    bson_error_t error;
    if (!mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error))
        TEST_FAIL_("buildInfo on %s: %s", uri, error.message);
    bson_iter_t it;
    bool jongodb = bson_iter_init_find(&it, &reply, "gitVersion") && BSON_ITER_HOLDS_UTF8(&it) &&
                   strcmp(bson_iter_utf8(&it, NULL), "jongodb") == 0;
    bson_destroy(&reply);
    bson_destroy(cmd);
    mongoc_client_destroy(client);
    return jongodb;
}

static void start_jongodb(mongo_fixture *m, const char *name) {
    const char *bin = getenv("P2PRPC_TEST_MONGO_BIN");
    if (bin == NULL || access(bin, X_OK) != 0)
        skip_or_fail(bin == NULL ? "P2PRPC_TEST_MONGO_BIN unset" : "the jongodb binary is missing");
    char tag[96];
    snprintf(tag, sizeof(tag), "mongo_%s", name);
    ASSERT_OK(harness_scratch_dir(tag, m->dir, sizeof(m->dir), NULL));
    snprintf(m->log, sizeof(m->log), "%s/jongodb.log", m->dir);
    const char *argv[] = {bin, "--host=127.0.0.1", "--port=0", "--database=p2prpc", NULL};
    harness_proc_options o = {.argv = argv,
                              .log_path = m->log,
                              .wait_listening = true,
                              .ready_timeout_ms = 30000,
                              .ready_prefix = "JONGODB_URI="};
    p2p_error err;
    if (harness_proc_start(&o, &m->proc, &err) != 0)
        TEST_FAIL_("starting jongodb: %s (log %s)", err.msg, m->log);
    const char *line = harness_proc_listening_line(m->proc);
    snprintf(m->base_uri, sizeof(m->base_uri), "%s", line + strlen("JONGODB_URI="));
}

void mongo_fixture_start(mongo_fixture *m, const char *name) {
    memset(m, 0, sizeof(*m));
    mongoc_init();
    const char *env = getenv("P2PRPC_TEST_MONGO_URI");
    if (env != NULL && env[0] != '\0') {
        snprintf(m->base_uri, sizeof(m->base_uri), "%s", env);
        m->external = true;
    } else {
        start_jongodb(m, name);
    }
    int n = snprintf(m->db, sizeof(m->db), "p2pi_%ld_%s", (long)getpid(), name);
    ASSERT_TRUE(n > 0 && (size_t)n < sizeof(m->db));
    uri_build(m->base_uri, NULL, m->db, m->uri, sizeof(m->uri));
    m->jongodb = server_is_jongodb(m->base_uri);
    fprintf(stderr, "MongoDB server: %s (%s), database %s\n", m->jongodb ? "jongodb" : "MongoDB",
            m->external ? "P2PRPC_TEST_MONGO_URI" : "started", m->db);
}

void mongo_fixture_uri_for(const mongo_fixture *m, const char *host_port, char *out, size_t size) {
    uri_build(m->base_uri, host_port, m->db, out, size);
}

void mongo_fixture_host_port(const mongo_fixture *m, char *out, size_t size) {
    mongoc_uri_t *uri = mongoc_uri_new(m->base_uri);
    ASSERT_TRUE(uri != NULL);
    const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri);
    ASSERT_TRUE(h != NULL);
    snprintf(out, size, "%s:%u", h->host, (unsigned)h->port);
    mongoc_uri_destroy(uri);
}

bool mongo_fixture_ping(const mongo_fixture *m) {
    char uri[700];
    snprintf(uri, sizeof(uri), "%s%sserverSelectionTimeoutMS=5000", m->uri,
             strchr(m->uri, '?') != NULL ? "&" : "?");
    mongoc_client_t *client = mongoc_client_new(uri);
    if (client == NULL)
        return false;
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bool ok = mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, NULL);
    bson_destroy(cmd);
    mongoc_client_destroy(client);
    return ok;
}

void mongo_fixture_cleanup(mongo_fixture *m) {
    if (m == NULL)
        return;
    if (m->external && m->db[0] != '\0' && !m->jongodb) {
        mongoc_client_t *client = mongoc_client_new(m->base_uri);
        mongoc_database_t *db = client ? mongoc_client_get_database(client, m->db) : NULL;
        bson_error_t error;
        if (db != NULL && !mongoc_database_drop(db, &error))
            fprintf(stderr, "could not drop %s: %s\n", m->db, error.message);
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
    }
    if (m->proc != NULL) {
        /* In memory only: nothing to flush, so no need to be gentle. */
        harness_proc_free(m->proc); /* kills it when it still runs */
        m->proc = NULL;
    }
    if (m->dir[0] != '\0' && harness_rmtree(m->dir, NULL) != 0)
        fprintf(stderr, "could not remove %s\n", m->dir);
    m->dir[0] = '\0';
}

void mongo_fixture_skip_jongodb(mongo_fixture *m, const char *what, const char *why) {
    mongo_fixture_cleanup(m);
    fprintf(stderr,
            "SKIPPED on jongodb: %s: %s (runs in full against a real MongoDB, "
            "P2PRPC_TEST_MONGO_URI)\n",
            what, why);
    exit(MONGO_FIXTURE_SKIP);
}

/* ---- the proxy ---- */

#define RELAY_BUF 65536

typedef struct relay {
    struct mongo_proxy *proxy;
    int cfd, ufd;
    pthread_t thread;
    struct relay *next;
} relay;

struct mongo_proxy {
    int lfd;
    int stop[2];
    pthread_t acceptor;
    struct sockaddr_in upstream;
    char host_port[64];
    pthread_mutex_t lock; /* guards everything below */
    relay *relays;
    bool down;
    int accepted;
};

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Relays both ways until either side closes or the proxy stops. The
 * descriptors stay open until mongo_proxy_free, so that set_down may shut
 * them down at any time without racing a reuse of the numbers. */
static void *relay_main(void *arg) {
    relay *r = arg;
    char *buf = malloc(RELAY_BUF);
    struct pollfd fds[3] = {{.fd = r->cfd, .events = POLLIN},
                            {.fd = r->ufd, .events = POLLIN},
                            {.fd = r->proxy->stop[0], .events = POLLIN}};
    while (buf != NULL) {
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[2].revents != 0)
            break;
        int from = (fds[0].revents != 0) ? 0 : 1;
        if (fds[from].revents == 0)
            continue;
        ssize_t n = recv(fds[from].fd, buf, RELAY_BUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || send_all(fds[1 - from].fd, buf, (size_t)n) != 0)
            break;
    }
    shutdown(r->cfd, SHUT_RDWR);
    shutdown(r->ufd, SHUT_RDWR);
    free(buf);
    return NULL;
}

static void accept_one(mongo_proxy *p, int cfd) {
    pthread_mutex_lock(&p->lock);
    p->accepted++;
    bool down = p->down;
    pthread_mutex_unlock(&p->lock);
    int ufd = down ? -1 : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ufd < 0 || connect(ufd, (struct sockaddr *)&p->upstream, sizeof(p->upstream)) != 0) {
        if (ufd >= 0)
            close(ufd);
        close(cfd); /* down: the client sees its connection reset at once */
        return;
    }
    relay *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        close(cfd);
        close(ufd);
        return;
    }
    *r = (relay){.proxy = p, .cfd = cfd, .ufd = ufd};
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        close(cfd);
        close(ufd);
        free(r);
        return;
    }
    pthread_mutex_lock(&p->lock);
    r->next = p->relays;
    p->relays = r;
    pthread_mutex_unlock(&p->lock);
}

static void *acceptor_main(void *arg) {
    mongo_proxy *p = arg;
    struct pollfd fds[2] = {{.fd = p->lfd, .events = POLLIN}, {.fd = p->stop[0], .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[1].revents != 0)
            break;
        if (fds[0].revents == 0)
            continue;
        int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd >= 0)
            accept_one(p, cfd);
    }
    return NULL;
}

static int parse_host_port(const char *host_port, struct sockaddr_in *out) {
    char host[64];
    unsigned port = 0;
    if (sscanf(host_port, "%63[^:]:%u", host, &port) != 2 || port == 0 || port > 65535)
        return -1;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

int mongo_proxy_start(const char *host_port, mongo_proxy **out, p2p_error *err) {
    mongo_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "mongo proxy: out of memory");
    p->lfd = -1;
    p->stop[0] = p->stop[1] = -1;
    pthread_mutex_init(&p->lock, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    if (parse_host_port(host_port, &p->upstream) != 0 || pipe(p->stop) != 0 ||
        (p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(p->lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(p->lfd, 64) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&addr, &len) != 0 ||
        pthread_create(&p->acceptor, NULL, acceptor_main, p) != 0) {
        int rc = p2p_error_errno(err, P2P_EIO, errno, "mongo proxy to %s", host_port);
        if (p->lfd >= 0)
            close(p->lfd);
        if (p->stop[0] >= 0) {
            close(p->stop[0]);
            close(p->stop[1]);
        }
        pthread_mutex_destroy(&p->lock);
        free(p);
        return rc;
    }
    snprintf(p->host_port, sizeof(p->host_port), "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    *out = p;
    return 0;
}

const char *mongo_proxy_host_port(const mongo_proxy *p) {
    return p->host_port;
}

void mongo_proxy_set_down(mongo_proxy *p, bool down) {
    pthread_mutex_lock(&p->lock);
    p->down = down;
    if (down) {
        for (relay *r = p->relays; r != NULL; r = r->next) {
            shutdown(r->cfd, SHUT_RDWR);
            shutdown(r->ufd, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

int mongo_proxy_accepted(mongo_proxy *p) {
    pthread_mutex_lock(&p->lock);
    int n = p->accepted;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void mongo_proxy_free(mongo_proxy *p) {
    if (p == NULL)
        return;
    if (write(p->stop[1], "x", 1) != 1)
        fprintf(stderr, "mongo proxy: cannot signal stop\n");
    pthread_join(p->acceptor, NULL);
    /* The acceptor is gone: the list no longer grows. */
    for (relay *r = p->relays, *next; r != NULL; r = next) {
        next = r->next;
        shutdown(r->cfd, SHUT_RDWR);
        pthread_join(r->thread, NULL);
        close(r->cfd);
        close(r->ufd);
        free(r);
    }
    close(p->lfd);
    close(p->stop[0]);
    close(p->stop[1]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
