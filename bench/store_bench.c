/* Benchmark of the SQLite call store (broker/store_sqlite.c).
 *
 *   store_bench [--dir DIR] [--seconds S] [--big N]
 *
 * Measures, on real files in DIR (default: the current directory):
 *   - creates/s with 1 and 8 threads, in sync normal and sync full;
 *   - claims/s with 1 and 8 threads;
 *   - the latency of one claim (p50, p99) with 1,000 and with N (100,000)
 *     calls queued, the queue kept at that size while measuring.
 * Prints a Markdown table. Performance goals live here, not in unit tests. */
#include "fsutil.h"
#include "store.h"

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 8
#define LATENCY_SAMPLES 2000

static const char *const FN = "p2prpc_analyze_large_file";
/* The size of a typical call's arguments: one file by hash, one integer. */
static const char *const ARGS =
    "{\"video_handle\":{\"type\":\"file\",\"hash\":"
    "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"},"
    "\"arg2\":{\"type\":\"int64\",\"value\":42}}";

typedef struct bench {
    char dir[4096];
    double seconds;
    unsigned big;
    unsigned run;    /* makes every database file name unique */
    char path[4200]; /* the database of the current measurement */
} bench;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const p2p_error *err) {
    fprintf(stderr, "store_bench: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static void remove_files(const char *path) {
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char name[4300];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", path, suffixes[i]);
        remove(name);
    }
}

/* Opens a fresh database for one measurement. */
static p2p_store *open_store(bench *b, p2p_store_sync sync) {
    snprintf(b->path, sizeof(b->path), "%s/store_bench_%d_%u.db", b->dir, (int)getpid(), b->run++);
    remove_files(b->path);
    p2p_store_options opts;
    p2p_store_options_init(&opts);
    opts.sync = sync;
    p2p_store *store = NULL;
    p2p_error err;
    if (p2p_store_open(b->path, &opts, &store, &err) != 0)
        die(b->path, &err);
    return store;
}

static void close_store(bench *b, p2p_store *store) {
    p2p_store_free(store);
    remove_files(b->path);
}

static void make_id(char id[P2P_STORE_ID_LEN + 1], unsigned thread, uint64_t n) {
    snprintf(id, P2P_STORE_ID_LEN + 1, "%08x%056" PRIx64, thread, n);
}

typedef struct worker {
    p2p_store *store;
    unsigned index;
    double deadline;
    uint64_t next, limit; /* creates: identifiers next..limit-1 */
    uint64_t done;
    bool claim; /* claim instead of create */
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err;
    while (w->next < w->limit && now_s() < w->deadline) {
        int rc;
        if (w->claim) {
            rc = p2p_store_claim(w->store, FN, "bench-worker", &call, &err);
            if (rc == P2P_ENOTFOUND)
                break;
        } else {
            char id[P2P_STORE_ID_LEN + 1];
            make_id(id, w->index, w->next);
            p2p_store_new_call in = {
                .identifier = id, .function = FN, .args = ARGS, .available = true};
            rc = p2p_store_create(w->store, &in, NULL, NULL, &err);
        }
        if (rc != 0)
            die(w->claim ? "claim" : "create", &err);
        w->next++;
        w->done++;
    }
    p2p_call_cleanup(&call);
    return NULL;
}

/* Runs `threads` workers until `seconds` pass or each did `per_thread`
 * operations; returns operations per second. */
static double run_workers(p2p_store *store, unsigned threads, bool claim, double seconds,
                          uint64_t per_thread, unsigned id_base) {
    worker workers[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    double start = now_s();
    for (unsigned t = 0; t < threads; t++) {
        workers[t] = (worker){.store = store,
                              .index = id_base + t,
                              .deadline = start + seconds,
                              .limit = per_thread,
                              .claim = claim};
        if (pthread_create(&ids[t], NULL, run_worker, &workers[t]) != 0)
            die("pthread_create", NULL);
    }
    uint64_t total = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        total += workers[t].done;
    }
    return (double)total / (now_s() - start);
}

/* Prints one throughput row; the batch size counts the measured writes only. */
static void print_row(const char *what, p2p_store_sync sync, unsigned threads, double rate,
                      p2p_store *store, const p2p_store_stats *before) {
    p2p_store_stats after;
    p2p_store_get_stats(store, &after);
    uint64_t writes = after.writes - before->writes, batches = after.batches - before->batches;
    printf("| %s | %s | %u | %.0f /s | %.1f |\n", what,
           sync == P2P_STORE_SYNC_FULL ? "full" : "normal", threads, rate,
           (double)writes / (double)(batches ? batches : 1));
    fflush(stdout);
}

static void bench_creates(bench *b, p2p_store_sync sync, unsigned threads) {
    p2p_store *store = open_store(b, sync);
    p2p_store_stats before;
    p2p_store_get_stats(store, &before);
    double rate = run_workers(store, threads, false, b->seconds, UINT64_MAX, 0);
    print_row("create", sync, threads, rate, store, &before);
    close_store(b, store);
}

/* Queues `count` calls quickly (8 threads), with identifiers of series `base`. */
static void fill(p2p_store *store, uint64_t count, unsigned base) {
    (void)run_workers(store, MAX_THREADS, false, 1e9, count / MAX_THREADS, base);
    uint64_t rest = count % MAX_THREADS;
    if (rest > 0)
        (void)run_workers(store, 1, false, 1e9, rest, base + MAX_THREADS);
}

static void bench_claims(bench *b, p2p_store_sync sync, unsigned threads) {
    p2p_store *store = open_store(b, sync);
    uint64_t queued = 60000;
    fill(store, queued, 0);
    p2p_store_stats before;
    p2p_store_get_stats(store, &before);
    double rate = run_workers(store, threads, true, b->seconds, UINT64_MAX, 0);
    print_row("claim", sync, threads, rate, store, &before);
    close_store(b, store);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Claims LATENCY_SAMPLES times with `queued` calls waiting; after each claim
 * one call is queued again (not timed) so the queue keeps its size. */
static void bench_latency(bench *b, uint64_t queued) {
    p2p_store *store = open_store(b, P2P_STORE_SYNC_NORMAL);
    fill(store, queued, 0);
    static double samples[LATENCY_SAMPLES];
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err;
    for (unsigned i = 0; i < LATENCY_SAMPLES; i++) {
        double start = now_s();
        if (p2p_store_claim(store, FN, "bench-worker", &call, &err) != 0)
            die("claim", &err);
        samples[i] = (now_s() - start) * 1e6;
        char id[P2P_STORE_ID_LEN + 1];
        make_id(id, 0xffff, i);
        p2p_store_new_call in = {.identifier = id, .function = FN, .args = ARGS, .available = true};
        if (p2p_store_create(store, &in, NULL, NULL, &err) != 0)
            die("create", &err);
    }
    p2p_call_cleanup(&call);
    qsort(samples, LATENCY_SAMPLES, sizeof(samples[0]), cmp_double);
    printf("| %" PRIu64 " | %.0f us | %.0f us |\n", queued, samples[LATENCY_SAMPLES / 2],
           samples[LATENCY_SAMPLES * 99 / 100]);
    fflush(stdout);
    close_store(b, store);
}

static void usage(FILE *out) {
    fprintf(out, "usage: store_bench [--dir DIR] [--seconds S] [--big N]\n"
                 "  --dir DIR     where the database files go (default: .); use a real disk,\n"
                 "                not tmpfs, or sync full measures nothing\n"
                 "  --seconds S   duration of each throughput run (default: 3)\n"
                 "  --big N       the large queue of the latency test (default: 100000)\n");
}

static void parse_args(int argc, char **argv, bench *b) {
    static const struct option options[] = {{"dir", required_argument, NULL, 'd'},
                                            {"seconds", required_argument, NULL, 's'},
                                            {"big", required_argument, NULL, 'b'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "d:s:b:h", options, NULL)) != -1) {
        if (c == 'd') {
            snprintf(b->dir, sizeof(b->dir), "%s", optarg);
        } else if (c == 's') {
            b->seconds = strtod(optarg, &end);
            if (*end != '\0' || !(b->seconds > 0 && b->seconds <= 600))
                die("--seconds must be a number from 0 to 600", NULL);
        } else if (c == 'b') {
            unsigned long long big = strtoull(optarg, &end, 10);
            if (*end != '\0' || big < 1000 || big > 10000000)
                die("--big must be an integer from 1000 to 10000000", NULL);
            b->big = (unsigned)big;
        } else {
            usage(c == 'h' ? stdout : stderr);
            exit(c == 'h' ? 0 : 2);
        }
    }
    if (optind != argc) {
        usage(stderr);
        exit(2);
    }
}

int main(int argc, char **argv) {
    bench b = {.dir = ".", .seconds = 3, .big = 100000};
    parse_args(argc, argv, &b);
    p2p_error err;
    if (p2p_fs_mkdirs(b.dir, 0700, &err) != 0)
        die(b.dir, &err);
    printf("| operation | sync | threads | throughput | ops per transaction |\n");
    printf("| --- | --- | --- | --- | --- |\n");
    for (int full = 0; full <= 1; full++) {
        bench_creates(&b, full ? P2P_STORE_SYNC_FULL : P2P_STORE_SYNC_NORMAL, 1);
        bench_creates(&b, full ? P2P_STORE_SYNC_FULL : P2P_STORE_SYNC_NORMAL, MAX_THREADS);
    }
    bench_claims(&b, P2P_STORE_SYNC_NORMAL, 1);
    bench_claims(&b, P2P_STORE_SYNC_NORMAL, MAX_THREADS);
    bench_claims(&b, P2P_STORE_SYNC_FULL, 1);
    bench_claims(&b, P2P_STORE_SYNC_FULL, MAX_THREADS);
    printf("\n| calls queued | claim p50 | claim p99 |\n| --- | --- | --- |\n");
    bench_latency(&b, 1000);
    bench_latency(&b, b.big);
    return 0;
}
