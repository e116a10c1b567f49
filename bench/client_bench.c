/* Benchmark of the client library (client/client.h).
 *
 *   client_bench [--hits N] [--file-mib M] [--dir DIR] [--bin DIR]
 *
 * - cache hit: a real p2prpc-broker and worker (the tests' worker_testapp)
 *   answer p2prpc_add(1, 2) once; the broker and the worker are then
 *   STOPPED, and N (default 10000) identical submits are timed one by one,
 *   each: p2p_client_submit (identifier, cache lookup, a finished future),
 *   p2p_future_get, p2p_future_free. Every one must be a hit with sum 3.
 *   p50, p90, p99, max, and submits per second.
 * - identifier of a file argument: a file of M MiB (default 1024) of
 *   pseudo-random bytes, its mtime set a minute back (the file-hash cache
 *   does not keep files younger than 2 s); the identifier of
 *   p2prpc_copy(input = that file, xor = 0) computed the way the client does
 *   (p2p_filecache_file_value, then p2p_ident_compute): cold (a new,
 *   empty file-hash cache: the file is read in full), twice, and warm (the
 *   same cache again: nothing is read; the median of 21). Next to it, `openssl dgst -sha256`
 *   on the same file, started with posix_spawnp and timed here; its digest
 *   must equal ours. The file was just written, so both read it from the
 *   page cache: this compares hashing, not the disk.
 * Prints a Markdown table. The scratch directory (under DIR, default
 * $TMPDIR or /tmp) is removed at the end. Programs are looked up in --bin
 * (default: the directory of this program). */
#include "cliutil.h"
#include "client_fixture.h"
#include "filecache.h"
#include "ident.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Warm identifiers timed; the median is reported. */
#define WARM_RUNS 21

typedef struct opts {
    long hits;
    long file_mib;
} opts;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "client_bench: %s: %s\n", what, msg);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, long n, double p) {
    long i = (long)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

/* ---- cache hits ---- */

typedef struct hit_result {
    double p50, p90, p99, max, mean, per_s;
    long over_1ms;
} hit_result;

/* One timed hit, in microseconds. */
static double one_hit(p2p_client *c, const p2p_value *args) {
    double t0 = now_ms();
    p2p_future *f = NULL;
    p2p_error err = {0};
    if (p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, &f, &err) != 0)
        die("submit", err.msg);
    const p2p_value *out = NULL;
    size_t n = 0;
    if (p2p_future_get(f, 0, &out, &n, &err) != 0)
        die("get", err.msg);
    double us = (now_ms() - t0) * 1000.0;
    if (!p2p_future_cached(f) || n != 1 || out[0].as.i64 != 3)
        die("hit", "not answered from the cache, or a wrong sum");
    p2p_future_free(f);
    return us;
}

static void cache_hits(const opts *o, const char *dir, hit_result *r) {
    broker b;
    cf_broker_init(&b, "client_bench_b", NULL, NULL);
    broker_start(&b);
    worker w;
    worker_start_for(&w, "client_bench_w", &b,
                     &(worker_config){.concurrency = 1, .log_level = "info"});
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, dir, "cache");
    p2p_client *c = cf_client_for(&b, cache);
    p2p_value args[2];
    cf_args_add(args, 1, 2);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    if (cf_get(f, 1)[0].as.i64 != 3)
        die("first call", "wrong sum");
    p2p_future_free(f);
    /* From here on nothing answers on the network. */
    worker_stop(&w, 60000);
    worker_cleanup(&w);
    broker_stop(&b);

    for (int i = 0; i < 100; i++)
        (void)one_hit(c, args);
    double *lat = calloc((size_t)o->hits, sizeof(*lat));
    if (lat == NULL)
        die("calloc", "out of memory");
    double t = now_ms();
    for (long i = 0; i < o->hits; i++)
        lat[i] = one_hit(c, args);
    double total = now_ms() - t;
    qsort(lat, (size_t)o->hits, sizeof(*lat), cmp_double);
    long slow = 0;
    for (long i = 0; i < o->hits; i++)
        slow += lat[i] > 1000.0;
    *r = (hit_result){pct(lat, o->hits, 0.5),
                      pct(lat, o->hits, 0.9),
                      pct(lat, o->hits, 0.99),
                      lat[o->hits - 1],
                      total * 1000.0 / (double)o->hits,
                      (double)o->hits * 1000.0 / total,
                      slow};
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    if (st.cache_hits != (uint64_t)o->hits + 100 || st.calls_created != 1)
        die("stats", "the hits were not all counted as cache hits");
    free(lat);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    broker_cleanup(&b);
}

/* ---- identifier of a large file ---- */

/* Writes `mib` MiB of pseudo-random bytes to `path` in 1 MiB pieces. */
static void write_big(const char *path, long mib) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die(path, "cannot create");
    uint64_t *buf = malloc(1u << 20);
    if (buf == NULL)
        die("malloc", "out of memory");
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (long m = 0; m < mib; m++) {
        for (size_t i = 0; i < (1u << 20) / sizeof(*buf); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        if (write(fd, buf, 1u << 20) != (ssize_t)(1u << 20))
            die(path, "short write");
    }
    free(buf);
    if (close(fd) != 0)
        die(path, "close failed");
}

/* The identifier of p2prpc_copy(path, 0) through the file-hash cache `fc`;
 * returns the time in ms and the file's hash in `hash`. */
static double ident_ms(p2p_filecache *fc, const char *path, char hash[P2P_HASH_HEX_LEN + 1]) {
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[1], 0);
    p2p_error err = {0};
    char id[P2P_HASH_HEX_LEN + 1];
    double t0 = now_ms();
    if (p2p_filecache_file_value(fc, path, &args[0], &err) != 0 ||
        p2p_ident_compute(wf_schema(WF_COPY), args, id, &err) != 0)
        die("identifier", err.msg);
    double ms = now_ms() - t0;
    snprintf(hash, P2P_HASH_HEX_LEN + 1, "%s", args[0].as.file.hash);
    p2p_value_list_cleanup(args, 2);
    return ms;
}

static double cold_ms(const char *dir, int round, const char *path,
                      char hash[P2P_HASH_HEX_LEN + 1]) {
    char db[HARNESS_PATH_MAX], name[32];
    snprintf(name, sizeof(name), "filehash-%d.db", round);
    cf_path(db, dir, name);
    p2p_filecache *fc = NULL;
    p2p_error err = {0};
    if (p2p_filecache_open(db, &fc, &err) != 0)
        die(db, err.msg);
    double ms = ident_ms(fc, path, hash);
    p2p_filecache_free(fc);
    return ms;
}

/* Runs `openssl dgst -sha256 -r PATH` with its stdout in `out_path`; returns
 * the time in ms and checks that it printed `hash` (NULL: a warm-up run,
 * not checked). */
static double openssl_ms(const char *path, const char *out_path, const char *hash) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    char *argv[] = {"openssl", "dgst", "-sha256", "-r", (char *)path, NULL};
    pid_t pid;
    double t0 = now_ms();
    int rc = posix_spawnp(&pid, "openssl", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("posix_spawnp openssl", strerror(rc));
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("openssl", "did not exit 0");
    double ms = now_ms() - t0;
    char got[P2P_HASH_HEX_LEN + 1] = {0};
    FILE *fp = fopen(out_path, "r");
    if (fp == NULL || fread(got, 1, P2P_HASH_HEX_LEN, fp) != P2P_HASH_HEX_LEN)
        die("openssl", "no digest printed");
    fclose(fp);
    if (hash != NULL && strcmp(got, hash) != 0)
        die("openssl", "its digest differs from p2p_filecache's");
    return ms;
}

/* ---- main ---- */

static void parse(int argc, char **argv, opts *o) {
    static const struct option longs[] = {
        {"hits", required_argument, NULL, 'n'}, {"file-mib", required_argument, NULL, 'm'},
        {"dir", required_argument, NULL, 'd'},  {"bin", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        long long v = 0;
        if (c == 'n' && p2p_cli_integer("client_bench", "--hits", optarg, 1, 10000000, &v) == 0)
            o->hits = (long)v;
        else if (c == 'm' &&
                 p2p_cli_integer("client_bench", "--file-mib", optarg, 1, 65536, &v) == 0)
            o->file_mib = (long)v;
        else if (c == 'd')
            setenv("P2PRPC_TEST_TMP", optarg, 1);
        else if (c == 'b')
            setenv("P2PRPC_BIN", optarg, 1);
        else {
            fprintf(stderr, "usage: client_bench [--hits N] [--file-mib M] [--dir DIR] "
                            "[--bin DIR]\n");
            exit(c == 'h' ? 0 : 2);
        }
    }
}

int main(int argc, char **argv) {
    opts o = {.hits = 10000, .file_mib = 1024};
    char self[HARNESS_PATH_MAX] = {0};
    if (readlink("/proc/self/exe", self, sizeof(self) - 1) > 0)
        setenv("P2PRPC_BIN", dirname(self), 0);
    parse(argc, argv, &o);
    char dir[HARNESS_PATH_MAX];
    p2p_error err = {0};
    if (harness_scratch_dir("client_bench", dir, sizeof(dir), &err) != 0)
        die("scratch directory", err.msg);

    hit_result hits;
    cache_hits(&o, dir, &hits);

    char big[HARNESS_PATH_MAX], out[HARNESS_PATH_MAX];
    cf_path(big, dir, "big.bin");
    cf_path(out, dir, "openssl.out");
    double t = now_ms();
    write_big(big, o.file_mib);
    double gen = now_ms() - t;
    cf_age_file(big, 60);
    char h1[P2P_HASH_HEX_LEN + 1], h2[P2P_HASH_HEX_LEN + 1], h3[P2P_HASH_HEX_LEN + 1];
    double ssl = openssl_ms(big, out, NULL);
    double cold1 = cold_ms(dir, 1, big, h1);
    ssl = openssl_ms(big, out, h1);
    double cold2 = cold_ms(dir, 2, big, h2);
    p2p_filecache *fc = NULL;
    char db[HARNESS_PATH_MAX];
    cf_path(db, dir, "filehash-2.db");
    if (p2p_filecache_open(db, &fc, &err) != 0)
        die(db, err.msg);
    double warm_runs[WARM_RUNS];
    for (int i = 0; i < WARM_RUNS; i++)
        warm_runs[i] = ident_ms(fc, big, h3);
    qsort(warm_runs, WARM_RUNS, sizeof(double), cmp_double);
    double warm = warm_runs[WARM_RUNS / 2];
    p2p_filecache_stats fs;
    p2p_filecache_get_stats(fc, &fs);
    p2p_filecache_free(fc);
    if (strcmp(h1, h2) != 0 || strcmp(h1, h3) != 0 || fs.hits != WARM_RUNS)
        die("file hash", "cold and warm disagree, or the warm one was not a cache hit");
    double mib = (double)o.file_mib;

    printf("| client_bench | value |\n| --- | --- |\n");
    printf("| cache hit (p2prpc_add, submit + get + free, broker stopped), %ld submits | p50 %.1f "
           "us, p90 %.1f us, p99 %.1f us, max %.1f us; mean %.1f us (%.0f submits/s), %ld over "
           "1 ms |\n",
           o.hits, hits.p50, hits.p90, hits.p99, hits.max, hits.mean, hits.per_s, hits.over_1ms);
    printf("| generate a %.0f MiB file | %.0f ms |\n", mib, gen);
    printf("| identifier, cold (empty file-hash cache), run 1 | %.0f ms (%.0f MiB/s) |\n", cold1,
           mib * 1000.0 / cold1);
    printf("| identifier, cold, run 2 | %.0f ms (%.0f MiB/s) |\n", cold2, mib * 1000.0 / cold2);
    printf("| identifier, warm (file-hash cache hit), median of %d | %.3f ms (min %.3f, max %.3f) "
           "|\n",
           WARM_RUNS, warm, warm_runs[0], warm_runs[WARM_RUNS - 1]);
    printf("| `openssl dgst -sha256` on the same file (posix_spawnp, same digest) | %.0f ms (%.0f "
           "MiB/s) |\n",
           ssl, mib * 1000.0 / ssl);
    fflush(stdout);
    if (harness_rmtree(dir, &err) != 0)
        die("remove the scratch directory", err.msg);
    return 0;
}
