/* Benchmark of idle waiters: N clients long-polling one broker.
 *
 *   idle_bench [--waiters N] [--seconds S] [--dir DIR] [--bin DIR]
 *
 * Starts the real p2prpc-broker (tests/integration/broker_fixture.h, no
 * secret, sync full) on 127.0.0.1, creates one call that nobody runs, and
 * opens N (default 1000) connections that each long-poll pull_update on it
 * (since its version, wait 300 s), all from one thread through a libcurl
 * multi handle. Once the broker reports N parked (p2prpc_longpoll_waiting),
 * it reads the broker's CPU time (utime + stime of /proc/PID/stat) and waits
 * S seconds (default 10) doing nothing, then reads the CPU time again and
 * the broker's RSS (VmRSS, VmHWM of /proc/PID/status).
 *
 * Output lines are `key value` (idle_waiters, idle_rss_kib, idle_hwm_kib,
 * idle_cpu_pct over the idle seconds), for scripts/bench.sh. */
#include "bench_util.h"
#include "broker_fixture.h"
#include "fsutil.h"

#include <curl/curl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAITERS 20000

/* utime + stime of `pid`, in clock ticks; fields 14 and 15 of
 * /proc/PID/stat, counted after the ')' that ends the command name. */
static long long cpu_ticks(pid_t pid) {
    char path[64], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (p2p_fs_read_file(path, 4096, &text, &len, NULL) != 0)
        bench_die("cpu", path);
    const char *p = strrchr(text, ')');
    long long ut = 0, st = 0;
    /* After ')': state(3) ppid(4) ... utime(14) stime(15). */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st) != 2)
        bench_die("cpu", "unexpected /proc/PID/stat");
    free(text);
    return ut + st;
}

static size_t discard(char *data, size_t size, size_t n, void *ctx) {
    (void)data;
    (void)ctx;
    return size * n;
}

/* Adds `n` long-polls of pull_update on `id` to `multi`. */
static void open_waiters(CURLM *multi, CURL **easy, long n, const char *url) {
    for (long i = 0; i < n; i++) {
        easy[i] = curl_easy_init();
        if (easy[i] == NULL)
            bench_die("curl", "out of memory");
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 400L);
        if (curl_multi_add_handle(multi, easy[i]) != CURLM_OK)
            bench_die("curl", "cannot add a handle");
    }
}

/* Drives the transfers for `seconds`; fails when one finishes (a long-poll
 * answered early is not idle). */
static void drive(CURLM *multi, double seconds) {
    double until = (bench_now_ms() / 1000) + seconds;
    int running = 0;
    while ((bench_now_ms() / 1000) < until) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            bench_die("curl", "multi perform failed");
        int left = 0;
        CURLMsg *m = curl_multi_info_read(multi, &left);
        if (m != NULL && m->msg == CURLMSG_DONE)
            bench_die("waiter", curl_easy_strerror(m->data.result));
        int remaining_ms = (int)((until - (bench_now_ms() / 1000)) * 1000);
        if (remaining_ms > 0 &&
            curl_multi_poll(multi, NULL, 0, remaining_ms < 200 ? remaining_ms : 200, NULL) !=
                CURLM_OK)
            bench_die("curl", "multi poll failed");
    }
}

/* The broker reports `n` parked: drives the transfers meanwhile. */
static void await_parked(broker *b, CURLM *multi, long n) {
    double until = (bench_now_ms() / 1000) + 120;
    while ((bench_now_ms() / 1000) < until) {
        drive(multi, 0.2);
        char *metrics = fx_metrics_text(b);
        double parked = fx_metric(metrics, "p2prpc_longpoll_waiting", NULL);
        free(metrics);
        if (parked >= (double)n)
            return;
    }
    bench_die("waiters", "the broker did not park them all within 120 s");
}

static void parse(int argc, char **argv, long *waiters, long *seconds) {
    static const struct option longs[] = {{"waiters", required_argument, NULL, 'n'},
                                          {"seconds", required_argument, NULL, 's'},
                                          {"dir", required_argument, NULL, 'd'},
                                          {"bin", required_argument, NULL, 'b'},
                                          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        bool ok = optarg && end != optarg && *end == '\0';
        if (c == 'n' && ok && v >= 1 && v <= MAX_WAITERS)
            *waiters = v;
        else if (c == 's' && ok && v >= 1 && v <= 600)
            *seconds = v;
        else if (c == 'd')
            setenv("P2PRPC_TEST_TMP", optarg, 1);
        else if (c == 'b')
            setenv("P2PRPC_BIN", optarg, 1);
        else {
            fprintf(stderr, "usage: idle_bench [--waiters N] [--seconds S] [--dir DIR] "
                            "[--bin DIR]\n");
            exit(2);
        }
    }
    if (optind != argc)
        bench_die("usage", "unexpected argument");
}

int main(int argc, char **argv) {
    long waiters = 1000, seconds = 10;
    char self[HARNESS_PATH_MAX] = {0};
    if (readlink("/proc/self/exe", self, sizeof(self) - 1) > 0)
        setenv("P2PRPC_BIN", dirname(self), 0);
    parse(argc, argv, &waiters, &seconds);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    broker b;
    broker_init(&b, "idle_bench", &(broker_config){.no_secret = true, .sync = "full"});
    broker_start(&b);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(1, 2);
    harness_reply r;
    fx_push(&b, NULL, FX_ADD, args, false, id, &r);
    json_decref(args);
    if (r.status != 201)
        bench_die("push", r.body);
    long long version = harness_reply_int(&r, "version", 0);
    harness_reply_cleanup(&r);

    char url[HARNESS_URL_MAX + 256];
    snprintf(url, sizeof(url), "%s/api/v1/%s/pull_update?identifier=%s&since=%lld&wait=300", b.url,
             fx_name(FX_ADD), id, version);
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)waiters, sizeof(*easy));
    if (multi == NULL || easy == NULL)
        bench_die("curl", "out of memory");
    pid_t pid = harness_proc_pid(b.proc);
    open_waiters(multi, easy, waiters, url);
    await_parked(&b, multi, waiters);

    long long t0 = cpu_ticks(pid);
    double s0 = (bench_now_ms() / 1000);
    drive(multi, (double)seconds);
    double cpu_s = (double)(cpu_ticks(pid) - t0) / (double)sysconf(_SC_CLK_TCK);
    double wall = (bench_now_ms() / 1000) - s0;
    printf("idle_waiters %ld\nidle_seconds %.1f\nidle_rss_kib %ld\nidle_hwm_kib %ld\n"
           "idle_cpu_pct %.2f\n",
           waiters, wall, bench_status_kib(pid, "VmRSS:"), bench_status_kib(pid, "VmHWM:"),
           100.0 * cpu_s / wall);
    fflush(stdout);

    for (long i = 0; i < waiters; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_multi_cleanup(multi);
    broker_stop(&b);
    broker_cleanup(&b);
    curl_global_cleanup();
    return 0;
}
