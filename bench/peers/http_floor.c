/* The HTTP floor of the benchmarks: one trivial libmicrohttpd route
 * (GET anything -> 200 "ok"), served on 127.0.0.1 by MHD's own epoll thread,
 * as the p2prpc broker's server is set up (common/http_server.c). wrk
 * measures it: the cost of one HTTP exchange with nothing behind it.
 *
 *   http_floor [--threads N]
 *
 * Binds an ephemeral port, prints `port N` on stdout, and serves until
 * SIGTERM or SIGINT. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls) {
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req_cls;
    static char body[] = "ok";
    struct MHD_Response *r = MHD_create_response_from_buffer(2, body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv) {
    unsigned threads = 1;
    if (argc == 3 && strcmp(argv[1], "--threads") == 0) {
        char *end = NULL;
        long v = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || v < 1 || v > 64) {
            fprintf(stderr, "http_floor: --threads takes 1..64\n");
            return 2;
        }
        threads = (unsigned)v;
    } else if (argc != 1) {
        fprintf(stderr, "usage: http_floor [--threads N]\n");
        return 2;
    }
    /* Block the stop signals before MHD starts its threads, so that only
     * sigwait below receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    struct MHD_Daemon *d =
        MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                         MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "http_floor: cannot start the server\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port %u\n", info ? (unsigned)info->port : 0u);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
