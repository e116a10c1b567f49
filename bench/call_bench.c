/* Benchmark of whole calls through the client library (client/client.h): a
 * real p2prpc-broker and real worker processes (tests/integration's
 * worker_testapp) on 127.0.0.1, the client in this process.
 *
 *   call_bench --mode rtt|throughput|cache|big [--calls N] [--clients C]
 *                [--workers W] [--seconds S] [--size-mib M] [--sync normal|full]
 *                [--dir DIR] [--bin DIR]
 *
 * - rtt: one worker (--concurrency 1) waits; one client makes N (default
 *   2000) p2prpc_add calls one after the other, each timed from
 *   p2p_client_submit to p2p_future_get returning the sum (20 warm-up calls
 *   first). Prints crt_calls, crt_p50_us, crt_p99_us.
 * - throughput: W worker processes (default 4, --concurrency 1 each); C
 *   threads (default 32), each its own p2p_client with its own cache, make
 *   calls (submit + get) for S seconds (default 5). Prints tp_calls,
 *   tp_calls_per_s.
 * - cache: one call made, then N submits of the same call, each answered
 *   from the client's cache (checked: p2p_future_cached). Prints
 *   cache_calls, cache_p50_us, cache_p99_us.
 * - big: an input file of M MiB (default 1024) is written on disk, then
 *   p2prpc_copy(input, xor) runs through a client twice: first with the input
 *   uploaded, then (xor changed, a new client with an empty cache) with the
 *   input already on the broker, so only hashing it is left. Each run is
 *   timed from submit to p2p_future_get returning the downloaded output
 *   (checked by hash). Prints big_mib, big0_total_ms, big1_total_ms and the
 *   peak RSS (VmHWM) of this client, the broker, the worker and its child.
 * Every wait is bounded; the scratch directory is removed at the end. */
#include "bench_util.h"
#include "client.h"
#include "fsutil.h"
#include "worker_fixture.h"

#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define MAX_WORKERS 8
#define WARMUP 20
#define GET_TIMEOUT_MS 120000

typedef struct opts {
    const char *mode, *sync;
    long calls, size_mib;
    int clients, workers;
    double seconds;
} opts;

static broker B;
static atomic_long next_arg; /* makes every call unique */

static p2p_client *client_new(const char *cache_name) {
    char cache[HARNESS_PATH_MAX + 64];
    snprintf(cache, sizeof(cache), "%s/%s", B.dir, cache_name);
    const char *urls[] = {B.url};
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.brokers = urls;
    o.n_brokers = 1;
    o.secret = B.secret;
    o.secret_len = B.secret_len;
    o.cache_path = cache;
    p2p_client *c = NULL;
    p2p_error err = {0};
    if (p2p_client_new(&o, &c, &err) != 0)
        bench_die("client", err.msg);
    return c;
}

/* One p2prpc_add(a, 1) through `c`: submit, get, check. True when it came
 * from the cache. */
static bool add_call(p2p_client *c, long long a) {
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], a);
    p2p_value_set_int64(&args[1], 1);
    p2p_future *f = NULL;
    p2p_error err = {0};
    const p2p_value *out = NULL;
    size_t n = 0;
    if (p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, &f, &err) != 0 ||
        p2p_future_get(f, GET_TIMEOUT_MS, &out, &n, &err) != 0)
        bench_die("p2prpc_add", err.msg);
    if (n != 1 || out[0].type != P2P_TYPE_INT64 || out[0].as.i64 != a + 1)
        bench_die("p2prpc_add", "wrong sum");
    bool cached = p2p_future_cached(f);
    p2p_future_free(f);
    return cached;
}

static void start_workers(worker *w, int n, const char *rss_file) {
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "call_bench_w%d", i);
        worker_start_for(
            &w[i], name, &B,
            &(worker_config){.concurrency = 1, .log_level = "warn", .rss_file = rss_file});
    }
}

static void stop_workers(worker *w, int n) {
    for (int i = 0; i < n; i++) {
        worker_stop(&w[i], 60000);
        worker_cleanup(&w[i]);
    }
}

/* ---- rtt and cache ---- */

static void run_latency(const opts *o, bool cache) {
    p2p_client *c = client_new("cache");
    double *us = calloc((size_t)o->calls, sizeof(*us));
    if (us == NULL)
        bench_die("latency", "out of memory");
    for (long i = 0; i < WARMUP; i++)
        add_call(c, -1 - i);
    for (long i = 0; i < o->calls; i++) {
        long long a = cache ? -1 : atomic_fetch_add(&next_arg, 1);
        double t = bench_now_ms();
        bool cached = add_call(c, a);
        us[i] = (bench_now_ms() - t) * 1000;
        if (cached != cache)
            bench_die("latency", cache ? "a repeated call was not answered from the cache"
                                       : "a new call was answered from the cache");
    }
    bench_sort(us, (size_t)o->calls);
    const char *k = cache ? "cache" : "crt";
    printf("%s_calls %ld\n%s_p50_us %.1f\n%s_p99_us %.1f\n", k, o->calls, k,
           bench_pct(us, (size_t)o->calls, 0.5), k, bench_pct(us, (size_t)o->calls, 0.99));
    free(us);
    p2p_client_free(c);
}

/* ---- throughput ---- */

typedef struct tp_thread {
    int index;
    double until_ms;
    long done;
} tp_thread;

static void *tp_main(void *arg) {
    tp_thread *t = arg;
    char name[32];
    snprintf(name, sizeof(name), "cache%d", t->index);
    p2p_client *c = client_new(name);
    while (bench_now_ms() < t->until_ms) {
        add_call(c, atomic_fetch_add(&next_arg, 1));
        t->done++;
    }
    p2p_client_free(c);
    return NULL;
}

static void run_throughput(const opts *o) {
    pthread_t th[MAX_CLIENTS];
    tp_thread t[MAX_CLIENTS];
    double start = bench_now_ms();
    for (int i = 0; i < o->clients; i++) {
        t[i] = (tp_thread){.index = i, .until_ms = start + o->seconds * 1000};
        if (pthread_create(&th[i], NULL, tp_main, &t[i]) != 0)
            bench_die("thread", "cannot start");
    }
    long total = 0;
    for (int i = 0; i < o->clients; i++) {
        pthread_join(th[i], NULL);
        total += t[i].done;
    }
    double secs = (bench_now_ms() - start) / 1000;
    printf("tp_calls %ld\ntp_calls_per_s %.0f\n", total, (double)total / secs);
}

/* ---- big ---- */

/* p2prpc_copy(path, x) through a new client; returns the wall time in ms. */
static double copy_call(const char *path, unsigned char x, const char *want_hash, int run) {
    char name[32];
    snprintf(name, sizeof(name), "bigcache%d", run);
    double t = bench_now_ms();
    p2p_client *c = client_new(name);
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    args[0].type = P2P_TYPE_FILE; /* the client hashes it (an empty hash) */
    args[0].as.file.path = strdup(path);
    p2p_value_set_int64(&args[1], x);
    p2p_future *f = NULL;
    p2p_error err = {0};
    const p2p_value *out = NULL;
    size_t n = 0;
    if (args[0].as.file.path == NULL ||
        p2p_client_submit(c, wf_schema(WF_COPY), args, NULL, 0, NULL, &f, &err) != 0 ||
        p2p_future_get(f, 1800000, &out, &n, &err) != 0)
        bench_die("p2prpc_copy", err.msg);
    char got[P2P_HASH_HEX_LEN + 1];
    if (n < 1 || out[0].type != P2P_TYPE_FILE || strcmp(out[0].as.file.hash, want_hash) != 0 ||
        p2p_hash_file(out[0].as.file.path, got, NULL) != 0 || strcmp(got, want_hash) != 0)
        bench_die("p2prpc_copy", "the output is not the expected file");
    double ms = bench_now_ms() - t;
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    printf("big%d_total_ms %.0f\nbig%d_uploaded_mib %.0f\n", run, ms, run,
           (double)st.bytes_uploaded / BENCH_CHUNK);
    p2p_future_free(f);
    p2p_value_cleanup(&args[0]);
    p2p_client_free(c);
    return ms;
}

static void run_big(const opts *o, worker *w, const char *rss_file) {
    char path[HARNESS_PATH_MAX + 32], in_hash[65], out_hash[2][65];
    snprintf(path, sizeof(path), "%s/input.bin", B.dir);
    const unsigned char x[2] = {0x5a, 0xa5};
    bench_generate(path, o->size_mib, x, in_hash, out_hash);
    printf("big_mib %ld\n", o->size_mib);
    for (int k = 0; k < 2; k++)
        copy_call(path, x[k], out_hash[k], k);
    (void)remove(path);
    char *text = NULL;
    size_t len = 0;
    long child = -1;
    if (p2p_fs_read_file(rss_file, 4096, &text, &len, NULL) == 0) {
        const char *at = strstr(text, "VmHWM:");
        child = at ? strtol(at + 6, NULL, 10) : -1;
        free(text);
    }
    printf("big_client_kib %ld\nbig_broker_kib %ld\nbig_worker_kib %ld\nbig_child_kib %ld\n",
           bench_status_kib(0, "VmHWM:"), bench_status_kib(harness_proc_pid(B.proc), "VmHWM:"),
           bench_status_kib(worker_pid(&w[0]), "VmHWM:"), child);
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: call_bench --mode rtt|throughput|cache|big [--calls N] "
                    "[--clients C] [--workers W] [--seconds S] [--size-mib M] "
                    "[--sync normal|full] [--dir DIR] [--bin DIR]\n");
    exit(2);
}

static long num(const char *s, long lo, long hi) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

static void parse(int argc, char **argv, opts *o) {
    static const struct option longs[] = {
        {"mode", required_argument, NULL, 'm'},    {"calls", required_argument, NULL, 'n'},
        {"clients", required_argument, NULL, 'c'}, {"workers", required_argument, NULL, 'w'},
        {"seconds", required_argument, NULL, 's'}, {"size-mib", required_argument, NULL, 'z'},
        {"sync", required_argument, NULL, 'y'},    {"dir", required_argument, NULL, 'd'},
        {"bin", required_argument, NULL, 'b'},     {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'm')
            o->mode = optarg;
        else if (c == 'n')
            o->calls = num(optarg, 10, 10000000);
        else if (c == 'c')
            o->clients = (int)num(optarg, 1, MAX_CLIENTS);
        else if (c == 'w')
            o->workers = (int)num(optarg, 1, MAX_WORKERS);
        else if (c == 's')
            o->seconds = (double)num(optarg, 1, 600);
        else if (c == 'z')
            o->size_mib = num(optarg, 1, 65536);
        else if (c == 'y' && (strcmp(optarg, "normal") == 0 || strcmp(optarg, "full") == 0))
            o->sync = optarg;
        else if (c == 'd')
            setenv("P2PRPC_TEST_TMP", optarg, 1);
        else if (c == 'b')
            setenv("P2PRPC_BIN", optarg, 1);
        else
            usage();
    }
    const char *modes[] = {"rtt", "throughput", "cache", "big"};
    bool known = false;
    for (size_t i = 0; o->mode != NULL && i < 4; i++)
        known = known || strcmp(o->mode, modes[i]) == 0;
    if (optind != argc || !known)
        usage();
}

int main(int argc, char **argv) {
    opts o = {.calls = 2000, .size_mib = 1024, .clients = 32, .workers = 0, .seconds = 5};
    char self[HARNESS_PATH_MAX] = {0};
    if (readlink("/proc/self/exe", self, sizeof(self) - 1) > 0)
        setenv("P2PRPC_BIN", dirname(self), 0);
    parse(argc, argv, &o);
    bool tp = strcmp(o.mode, "throughput") == 0;
    int nworkers = o.workers > 0 ? o.workers : (tp ? 4 : 1);

    wf_broker_init(&B, "call_bench", &(broker_config){.lease_seconds = 60, .sync = o.sync});
    broker_start(&B);
    char rss_file[HARNESS_PATH_MAX + 16];
    snprintf(rss_file, sizeof(rss_file), "%s/child_rss", B.dir);
    worker w[MAX_WORKERS];
    start_workers(w, nworkers, rss_file);
    if (tp)
        run_throughput(&o);
    else if (strcmp(o.mode, "big") == 0)
        run_big(&o, w, rss_file);
    else
        run_latency(&o, strcmp(o.mode, "cache") == 0);
    fflush(stdout);
    stop_workers(w, nworkers);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
