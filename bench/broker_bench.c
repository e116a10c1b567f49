/* Benchmark of the broker over HTTP: the real p2prpc-broker process on
 * 127.0.0.1:0, signed requests from the project's HTTP client.
 *
 *   broker_bench [--broker PATH] [--dir DIR] [--seconds S] [--push-threads N]
 *                [--claim-threads M] [--big N] [--samples K] [--sync normal|full|both]
 *                [--latency-only]
 *
 * For each durability level (--sync, default both):
 *   - pushes/s: N threads (default 4) create calls with execute as fast as
 *     they can for S seconds (default 2);
 *   - claims/s: M threads (default 4) claim those calls (search_work?wait=0)
 *     for S seconds or until the queue is empty;
 *   - claim latency p50/p99 over K claims (default 1000), one client, with
 *     1,000 and with N (--big, default 100,000) calls queued. The queue is
 *     filled before the broker starts, straight through the store library
 *     (fast), and kept at its size while measuring: each timed claim is
 *     followed by an untimed push.
 * --latency-only skips the pushes/s and claims/s (printed as "-"): what
 * scripts/bench.sh's queue depth part needs.
 * Prints a Markdown table. The broker binary defaults to p2prpc-broker next
 * to this program. Performance goals live here, not in the tests. */
#include "fsutil.h"
#include "harness.h"
#include "ident.h"
#include "schema.h"
#include "store.h"

#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_THREADS 32
#define FILL_THREADS 8

typedef struct bench {
    char broker_bin[HARNESS_PATH_MAX];
    char root[HARNESS_PATH_MAX];
    double seconds;
    int push_threads, claim_threads;
    long big, samples;
    const char *sync;
    bool latency_only;
    /* the current broker */
    char dir[HARNESS_PATH_MAX + 64];
    char schema_path[HARNESS_PATH_MAX + 128], secret_path[HARNESS_PATH_MAX + 128];
    unsigned char secret[32];
    harness_proc *proc;
    char url[HARNESS_URL_MAX];
} bench;

static p2p_schema *schema;
static const char *fingerprint;
static atomic_long next_arg; /* makes every pushed call unique */

static void die(const char *what, const char *msg) {
    fprintf(stderr, "broker_bench: %s: %s\n", what, msg);
    exit(1);
}

/* ---- calls ---- */

/* The identifier of p2prpc_add(a, 0), and its arguments as JSON text (caller
 * frees). */
static char *call_id(long long a, char id[P2P_HASH_HEX_LEN + 1]) {
    p2p_value v[2];
    p2p_value_init(&v[0]);
    p2p_value_init(&v[1]);
    p2p_value_set_int64(&v[0], a);
    p2p_value_set_int64(&v[1], 0);
    p2p_error err;
    if (p2p_ident_compute(schema, v, id, &err) != 0)
        die("identifier", err.msg);
    json_t *args = json_pack("{s:I, s:I}", "a", (json_int_t)a, "b", (json_int_t)0);
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (text == NULL)
        die("arguments", "out of memory");
    return text;
}

static int push(bench *b, p2p_http_client *c) {
    char id[P2P_HASH_HEX_LEN + 1];
    char *args = call_id(atomic_fetch_add(&next_arg, 1), id);
    json_t *body = json_pack("{s:s, s:s, s:o, s:b}", "identifier", id, "fingerprint", fingerprint,
                             "args", json_loads(args, 0, NULL), "execute", 1);
    harness_reply r;
    harness_post_json(c, b->url, "/api/v1/p2prpc_add/push_update", body, &r);
    json_decref(body);
    free(args);
    int status = (int)r.status;
    if (status != 201)
        die("push", r.rc ? r.err.msg : r.body);
    harness_reply_cleanup(&r);
    return status;
}

/* Returns 200 (claimed) or 204 (queue empty). */
static int claim(bench *b, p2p_http_client *c) {
    harness_reply r;
    harness_request(c, b->url, "POST", "/api/v1/p2prpc_add/search_work?wait=0", NULL, NULL, 0, 0,
                    &r);
    int status = (int)r.status;
    if (status != 200 && status != 204)
        die("claim", r.rc ? r.err.msg : r.body);
    harness_reply_cleanup(&r);
    return status;
}

/* ---- the broker ---- */

static void prepare_dir(bench *b, const char *name) {
    p2p_error err;
    snprintf(b->dir, sizeof(b->dir), "%s/%s", b->root, name);
    if (harness_rmtree(b->dir, &err) != 0 || p2p_fs_mkdirs(b->dir, 0700, &err) != 0)
        die(b->dir, err.msg);
    snprintf(b->schema_path, sizeof(b->schema_path), "%s/schema.json", b->dir);
    snprintf(b->secret_path, sizeof(b->secret_path), "%s/secret", b->dir);
    json_t *j = NULL;
    if (p2p_schema_to_json(schema, &j, &err) != 0)
        die("schema", err.msg);
    char *text = json_dumps(j, 0);
    json_decref(j);
    if (text == NULL || harness_write_file(b->schema_path, text, strlen(text), &err) != 0 ||
        harness_write_secret(b->secret_path, b->secret, sizeof(b->secret), &err) != 0)
        die("files", err.msg);
    free(text);
}

static void start_broker(bench *b) {
    char store[HARNESS_PATH_MAX + 128], blobs[HARNESS_PATH_MAX + 128], log[HARNESS_PATH_MAX + 128];
    snprintf(store, sizeof(store), "sqlite:%s/broker.db", b->dir);
    snprintf(blobs, sizeof(blobs), "%s/blobs", b->dir);
    snprintf(log, sizeof(log), "%s/broker.log", b->dir);
    const char *argv[] = {b->broker_bin,  "--listen",      "127.0.0.1:0",  "--store",
                          store,          "--blobs",       blobs,          "--schema",
                          b->schema_path, "--secret-file", b->secret_path, "--sync",
                          b->sync,        "--log-level",   "warn",         NULL};
    harness_proc_options o = {
        .argv = argv, .log_path = log, .wait_listening = true, .ready_timeout_ms = 60000};
    p2p_error err;
    if (harness_proc_start(&o, &b->proc, &err) != 0)
        die("start", err.msg);
    snprintf(b->url, sizeof(b->url), "%s", harness_proc_url(b->proc));
}

static void stop_broker(bench *b) {
    int st = 0;
    p2p_error err;
    if (harness_proc_stop(b->proc, 30000, &st, &err) != 0)
        die("stop", err.msg);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("stop", "the broker did not exit 0");
    harness_proc_free(b->proc);
    b->proc = NULL;
    p2p_error ignored;
    if (harness_rmtree(b->dir, &ignored) != 0)
        fprintf(stderr, "broker_bench: %s\n", ignored.msg);
}

static p2p_http_client *client(bench *b) {
    p2p_error err;
    p2p_http_client *c = harness_client_new(b->secret, sizeof(b->secret), 60000, &err);
    if (c == NULL)
        die("client", err.msg);
    return c;
}

/* ---- throughput ---- */

typedef struct worker {
    bench *b;
    bool pushing;
    double until;
    long done;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    p2p_http_client *c = client(w->b);
    while (harness_now_s() < w->until) {
        if (w->pushing)
            push(w->b, c);
        else if (claim(w->b, c) == 204)
            break;
        w->done++;
    }
    p2p_http_client_free(c);
    return NULL;
}

/* Runs `n` threads pushing or claiming; returns operations per second. */
static double run_threads(bench *b, bool pushing, int n) {
    pthread_t t[MAX_THREADS];
    worker w[MAX_THREADS];
    double start = harness_now_s();
    for (int i = 0; i < n; i++) {
        w[i] = (worker){.b = b, .pushing = pushing, .until = start + b->seconds};
        if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
            die("thread", "cannot start");
    }
    long total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += w[i].done;
    }
    return (double)total / (harness_now_s() - start);
}

/* ---- latency ---- */

typedef struct filler {
    p2p_store *store; /* shared: the store is thread-safe and groups commits */
    long from, to;
} filler;

static void *fill_main(void *arg) {
    filler *f = arg;
    p2p_error err;
    for (long i = f->from; i < f->to; i++) {
        char id[P2P_HASH_HEX_LEN + 1];
        char *args = call_id(i, id);
        p2p_store_new_call nc = {
            .identifier = id, .function = "p2prpc_add", .args = args, .available = true};
        if (p2p_store_create(f->store, &nc, NULL, NULL, &err) != 0)
            die("fill", err.msg);
        free(args);
    }
    return NULL;
}

/* Queues `n` calls straight into the broker's store, before it starts. */
static void fill(bench *b, long n) {
    char location[HARNESS_PATH_MAX + 128];
    snprintf(location, sizeof(location), "sqlite:%s/broker.db", b->dir);
    p2p_store_options o;
    p2p_store_options_init(&o);
    p2p_store *store = NULL;
    p2p_error err;
    if (p2p_store_open(location, &o, &store, &err) != 0)
        die("store", err.msg);
    pthread_t t[FILL_THREADS];
    filler f[FILL_THREADS];
    long base = atomic_fetch_add(&next_arg, n);
    for (int i = 0; i < FILL_THREADS; i++) {
        f[i] = (filler){store, base + n * i / FILL_THREADS, base + n * (i + 1) / FILL_THREADS};
        if (pthread_create(&t[i], NULL, fill_main, &f[i]) != 0)
            die("thread", "cannot start");
    }
    for (int i = 0; i < FILL_THREADS; i++)
        pthread_join(t[i], NULL);
    p2p_store_free(store);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p50 and p99 of one claim, in ms, with `queued` calls waiting. */
static void latency(bench *b, long queued, double *p50, double *p99) {
    prepare_dir(b, "latency");
    double t0 = harness_now_s();
    fill(b, queued);
    fprintf(stderr, "  filled %ld calls in %.1f s\n", queued, harness_now_s() - t0);
    start_broker(b);
    p2p_http_client *c = client(b);
    double *ms = calloc((size_t)b->samples, sizeof(*ms));
    if (ms == NULL)
        die("latency", "out of memory");
    for (long i = 0; i < b->samples; i++) {
        double s = harness_now_s();
        if (claim(b, c) != 200)
            die("latency", "the queue ran dry");
        ms[i] = (harness_now_s() - s) * 1000;
        push(b, c); /* keeps the queue at its size; not timed */
    }
    qsort(ms, (size_t)b->samples, sizeof(*ms), cmp_double);
    *p50 = ms[b->samples / 2];
    *p99 = ms[b->samples * 99 / 100];
    free(ms);
    p2p_http_client_free(c);
    stop_broker(b);
}

/* ---- main ---- */

static void run_level(bench *b, const char *sync) {
    b->sync = sync;
    double pushes = -1, claims = -1;
    if (!b->latency_only) {
        fprintf(stderr, "sync %s: pushes and claims...\n", sync);
        prepare_dir(b, "throughput");
        start_broker(b);
        pushes = run_threads(b, true, b->push_threads);
        claims = run_threads(b, false, b->claim_threads);
        stop_broker(b);
    }
    double s50, s99, b50, b99;
    fprintf(stderr, "sync %s: claim latency with 1,000 queued...\n", sync);
    latency(b, 1000, &s50, &s99);
    fprintf(stderr, "sync %s: claim latency with %ld queued...\n", sync, b->big);
    latency(b, b->big, &b50, &b99);
    char p[32] = "-", c[32] = "-";
    if (pushes >= 0) {
        snprintf(p, sizeof(p), "%.0f", pushes);
        snprintf(c, sizeof(c), "%.0f", claims);
    }
    printf("| %s | %s | %s | %.2f / %.2f | %.2f / %.2f |\n", sync, p, c, s50, s99, b50, b99);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr, "usage: broker_bench [--broker PATH] [--dir DIR] [--seconds S] "
                    "[--push-threads N] [--claim-threads M] [--big N] [--samples K] "
                    "[--sync normal|full|both] [--latency-only]\n");
    exit(2);
}

static long num(const char *s, long lo, long hi) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

static void parse(bench *b, int argc, char **argv) {
    static const struct option opts[] = {{"broker", required_argument, NULL, 'b'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"push-threads", required_argument, NULL, 'p'},
                                         {"claim-threads", required_argument, NULL, 'c'},
                                         {"big", required_argument, NULL, 'n'},
                                         {"samples", required_argument, NULL, 'k'},
                                         {"sync", required_argument, NULL, 'y'},
                                         {"latency-only", no_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'b':
            snprintf(b->broker_bin, sizeof(b->broker_bin), "%s", optarg);
            break;
        case 'd':
            snprintf(b->root, sizeof(b->root), "%s", optarg);
            break;
        case 's':
            b->seconds = (double)num(optarg, 1, 600);
            break;
        case 'p':
            b->push_threads = (int)num(optarg, 1, MAX_THREADS);
            break;
        case 'c':
            b->claim_threads = (int)num(optarg, 1, MAX_THREADS);
            break;
        case 'n':
            b->big = num(optarg, 1000, 10000000);
            break;
        case 'k':
            b->samples = num(optarg, 10, 1000000);
            break;
        case 'y':
            b->sync = optarg;
            break;
        case 'l':
            b->latency_only = true;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || (strcmp(b->sync, "normal") != 0 && strcmp(b->sync, "full") != 0 &&
                           strcmp(b->sync, "both") != 0))
        usage();
}

static void defaults(bench *b) {
    memset(b, 0, sizeof(*b));
    b->seconds = 2;
    b->push_threads = 4;
    b->claim_threads = 4;
    b->big = 100000;
    b->samples = 1000;
    b->sync = "both";
    char self[HARNESS_PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    snprintf(b->broker_bin, sizeof(b->broker_bin), "%s/p2prpc-broker", dirname(self));
    const char *tmp = getenv("TMPDIR");
    snprintf(b->root, sizeof(b->root), "%s/broker_bench.%d", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
}

int main(int argc, char **argv) {
    bench b;
    defaults(&b);
    parse(&b, argc, argv);
    static const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    static const p2p_param out[] = {{"sum", P2P_TYPE_INT64}};
    p2p_error err;
    if (p2p_schema_build("p2prpc_add", in, 2, out, 1, &schema, &err) != 0)
        die("schema", err.msg);
    fingerprint = p2p_schema_fingerprint(schema);
    printf("| sync | pushes/s (%d threads) | claims/s (%d threads) | claim p50 / p99 ms, 1,000 "
           "queued | claim p50 / p99 ms, %ld queued |\n| --- | --- | --- | --- | --- |\n",
           b.push_threads, b.claim_threads, b.big);
    fflush(stdout);
    const char *sync = b.sync;
    if (strcmp(sync, "both") == 0 || strcmp(sync, "normal") == 0)
        run_level(&b, "normal");
    if (strcmp(sync, "both") == 0 || strcmp(sync, "full") == 0)
        run_level(&b, "full");
    if (harness_rmtree(b.root, &err) != 0)
        fprintf(stderr, "broker_bench: %s\n", err.msg);
    p2p_schema_free(schema);
    return 0;
}
