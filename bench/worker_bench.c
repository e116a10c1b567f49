/* Benchmark of the worker: a real p2prpc-broker and one real worker process
 * (tests/integration/worker_testapp.c) on 127.0.0.1, driven over HTTP.
 *
 *   worker_bench [--size-mib N] [--calls K] [--xor X] [--dir DIR] [--bin DIR] [--kv]
 *                [--sync normal|full]
 *
 * - round trip: K (default 300) p2prpc_add calls one after the other, each
 *   timed on the client from its push (with execute) to the pull_update
 *   long-poll that shows it done; 10 warm-up calls first. p50/p90/p99/max.
 *   This is what a call costs in the worker beyond the function itself:
 *   claim, child start (fork + exec, or a pre-forked child), outputs, push.
 * - large file: an input of N MiB (default 1024) of pseudo-random bytes is
 *   generated on disk in 1 MiB pieces (hashed as it is written, so nothing is
 *   ever whole in memory), uploaded as a blob (streamed), then
 *   p2prpc_copy(input, xor X) (default 0x5a: a new 1 GiB output the worker
 *   must hash and upload; 0: an output the broker already has) runs; the
 *   output is downloaded (streamed) and its hash checked. Reported: wall
 *   times, the worker parent's peak RSS (VmHWM of /proc/PID/status read just
 *   before it is stopped) and the child's (the test function writes its own
 *   VmHWM when done), and the broker's.
 *   Then the same call again with another xor value, the input now on the
 *   broker: hashing it again (as a client without a file-hash cache does)
 *   and a HEAD are all that is left of the upload.
 * --calls 0 or --size-mib 0 leaves that part out. Prints a Markdown table,
 * or with --kv `key value` lines for scripts/bench.sh. Every wait is bounded; the scratch directory
 * (DIR, default $TMPDIR or /tmp) is removed at the end. Programs are looked
 * up in --bin (default: the directory of this program). */
#include "bench_util.h"
#include "fsutil.h"
#include "hash.h"
#include "worker_fixture.h"

#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 10

typedef struct opts {
    long size_mib;
    long calls;
    int xor_byte;
    bool kv;
    const char *sync; /* the broker's --sync; NULL = its default */
} opts;

/* ---- round trip ---- */

/* One p2prpc_add(a, 1): push with execute, then long-poll until done. */
static double roundtrip(broker *b, long long a) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(a, 1);
    harness_reply r;
    double t0 = bench_now_ms();
    fx_push(b, NULL, FX_ADD, args, true, id, &r);
    json_decref(args);
    if (r.status != 201)
        bench_die("push", r.body);
    long long version = harness_reply_int(&r, "version", 0);
    harness_reply_cleanup(&r);
    for (int i = 0; i < 100; i++) {
        fx_pull(b, NULL, FX_ADD, id, version, 30, &r);
        if (r.status != 200)
            bench_die("pull_update", r.body);
        const char *status = harness_reply_str(&r, "status");
        if (status != NULL && strcmp(status, "done") == 0) {
            if (harness_reply_int(&r, "version", 0) <= version ||
                json_integer_value(json_object_get(json_object_get(r.json, "outputs"), "sum")) !=
                    a + 1)
                bench_die("p2prpc_add", r.body);
            harness_reply_cleanup(&r);
            return bench_now_ms() - t0;
        }
        if (status == NULL || strcmp(status, "failed") == 0 || strcmp(status, "terminated") == 0)
            bench_die("p2prpc_add", r.body);
        version = harness_reply_int(&r, "version", version);
        harness_reply_cleanup(&r);
    }
    bench_die("p2prpc_add", "not done after 100 long-polls");
    return 0;
}

/* ---- large file ---- */

/* PUT (upload `path`), GET (download to `path`) or HEAD of blob `hash`,
 * streamed. */
static void blob_transfer(broker *b, const char *method, const char *hash, const char *path) {
    char url[HARNESS_URL_MAX + 128];
    snprintf(url, sizeof(url), "%s/api/v1/blobs/%s", b->url, hash);
    bool put = strcmp(method, "PUT") == 0, get = strcmp(method, "GET") == 0;
    p2p_http_call call = {.method = method,
                          .url = url,
                          .upload_path = put ? path : NULL,
                          .download_path = get ? path : NULL,
                          .idempotent = true,
                          .timeout_ms = -1};
    p2p_http_reply reply;
    p2p_error err;
    int rc = p2p_http_client_request(b->client, &call, &reply, &err);
    if (rc == 0)
        rc = p2p_http_reply_check(&reply, &err);
    p2p_http_reply_cleanup(&reply);
    if (rc != 0)
        bench_die(method, err.msg);
}

/* One run of the large file call; times in ms. */
typedef struct big_result {
    double hash_ms, upload_ms, call_ms, download_ms, total_ms;
} big_result;

typedef struct big_files {
    char dir[HARNESS_PATH_MAX];
    char in_path[HARNESS_PATH_MAX + 16], out_path[HARNESS_PATH_MAX + 16];
    char in_hash[65], out_hash[2][65];
    unsigned char xor_byte[2];
    double gen_ms;
} big_files;

static long child_rss_from(const char *rss_file) {
    char *text = NULL;
    size_t len = 0;
    if (p2p_fs_read_file(rss_file, 4096, &text, &len, NULL) != 0)
        return -1;
    const char *at = strstr(text, "VmHWM:");
    long kib = at ? strtol(at + 6, NULL, 10) : -1;
    free(text);
    return kib;
}

/* Run `k` (0: the input is uploaded; 1: it is on the broker already) of
 * p2prpc_copy(input, xor_byte[k]): hash the input as a client would, upload
 * it (or HEAD it), push, wait for done, download and verify the output. */
static void large_file(broker *b, const opts *o, big_files *f, int k, big_result *res) {
    char got_hash[65];
    double start = bench_now_ms(), t = start;
    if (p2p_hash_file(f->in_path, got_hash, NULL) != 0 || strcmp(got_hash, f->in_hash) != 0)
        bench_die("hash", "the input does not hash as it did when written");
    res->hash_ms = bench_now_ms() - t;
    t = bench_now_ms();
    blob_transfer(b, k == 0 ? "PUT" : "HEAD", f->in_hash, f->in_path);
    res->upload_ms = bench_now_ms() - t;

    json_t *args = json_pack("{s:{s:s, s:I}, s:i}", "input", "hash", f->in_hash, "size",
                             (json_int_t)o->size_mib * BENCH_CHUNK, "xor", f->xor_byte[k]);
    char id[P2P_HASH_HEX_LEN + 1];
    t = bench_now_ms();
    wf_push(b, WF_COPY, args, id);
    json_decref(args);
    json_t *call = wf_await_status(b, WF_COPY, id, "done|failed|terminated", 1800000);
    res->call_ms = bench_now_ms() - t;
    wf_expect_status(call, "done");
    const char *h = json_string_value(
        json_object_get(json_object_get(json_object_get(call, "outputs"), "output"), "hash"));
    if (h == NULL || strcmp(h, f->out_hash[k]) != 0)
        bench_die("p2prpc_copy", "the output hash is not the expected one");
    json_decref(call);

    t = bench_now_ms();
    blob_transfer(b, "GET", f->out_hash[k], f->out_path);
    if (p2p_hash_file(f->out_path, got_hash, NULL) != 0 || strcmp(got_hash, f->out_hash[k]) != 0)
        bench_die("download", "the downloaded output does not hash to its address");
    res->download_ms = bench_now_ms() - t;
    res->total_ms = bench_now_ms() - start;
    (void)remove(f->out_path);
}

/* ---- main ---- */

static void parse(int argc, char **argv, opts *o) {
    static const struct option longs[] = {{"size-mib", required_argument, NULL, 's'},
                                          {"calls", required_argument, NULL, 'c'},
                                          {"xor", required_argument, NULL, 'x'},
                                          {"dir", required_argument, NULL, 'd'},
                                          {"bin", required_argument, NULL, 'b'},
                                          {"kv", no_argument, NULL, 'k'},
                                          {"sync", required_argument, NULL, 'y'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 0) : 0;
        bool num_ok = optarg && end != optarg && *end == '\0';
        if (c == 's' && num_ok && v >= 0 && v <= 65536)
            o->size_mib = v;
        else if (c == 'c' && num_ok && v >= 0 && v <= 100000)
            o->calls = v;
        else if (c == 'x' && num_ok && v >= 0 && v <= 255)
            o->xor_byte = (int)v;
        else if (c == 'd')
            setenv("P2PRPC_TEST_TMP", optarg, 1);
        else if (c == 'b')
            setenv("P2PRPC_BIN", optarg, 1);
        else if (c == 'k')
            o->kv = true;
        else if (c == 'y' && (strcmp(optarg, "normal") == 0 || strcmp(optarg, "full") == 0))
            o->sync = optarg;
        else {
            fprintf(stderr, "usage: worker_bench [--size-mib N] [--calls K] [--xor X] "
                            "[--dir DIR] [--bin DIR] [--kv] [--sync normal|full]\n");
            exit(c == 'h' ? 0 : 2);
        }
    }
}

static void print_roundtrip(const opts *o, const double *lat, double total_ms) {
    long n = o->calls;
    if (o->kv) {
        printf("wrt_calls %ld\nwrt_p50_us %.1f\nwrt_p90_us %.1f\nwrt_p99_us %.1f\n"
               "wrt_calls_per_s %.1f\n",
               n, 1000 * bench_pct(lat, (size_t)n, 0.5), 1000 * bench_pct(lat, (size_t)n, 0.9),
               1000 * bench_pct(lat, (size_t)n, 0.99), (double)n * 1000.0 / total_ms);
        return;
    }
    printf("| no-op round trip (p2prpc_add, push -> done seen), %ld calls | p50 %.2f ms, p90 "
           "%.2f ms, p99 %.2f ms, max %.2f ms (%.1f calls/s) |\n",
           n, bench_pct(lat, (size_t)n, 0.5), bench_pct(lat, (size_t)n, 0.9),
           bench_pct(lat, (size_t)n, 0.99), lat[n - 1], (double)n * 1000.0 / total_ms);
}

static void print_big(const opts *o, const big_files *f, const big_result r[2], const long kib[3]) {
    double mib = (double)o->size_mib;
    if (o->kv) {
        printf("big_mib %ld\n", o->size_mib);
        for (int k = 0; k < 2; k++)
            printf("big%d_total_ms %.0f\nbig%d_hash_ms %.0f\nbig%d_upload_ms %.0f\n"
                   "big%d_call_ms %.0f\nbig%d_download_ms %.0f\n",
                   k, r[k].total_ms, k, r[k].hash_ms, k, r[k].upload_ms, k, r[k].call_ms, k,
                   r[k].download_ms);
        printf("big_worker_kib %ld\nbig_child_kib %ld\nbig_broker_kib %ld\n", kib[0], kib[1],
               kib[2]);
        return;
    }
    printf("| input: generate + hash %.0f MiB on disk | %.0f ms |\n", mib, f->gen_ms);
    for (int k = 0; k < 2; k++)
        printf("| p2prpc_copy (xor 0x%02x), input %s: hash %.0f + %s %.0f + push -> done %.0f + "
               "download and verify %.0f | %.0f ms (%.0f MiB/s) |\n",
               f->xor_byte[k], k == 0 ? "uploaded" : "on the broker", r[k].hash_ms,
               k == 0 ? "PUT" : "HEAD", r[k].upload_ms, r[k].call_ms, r[k].download_ms,
               r[k].total_ms, mib * 1000.0 / r[k].total_ms);
    printf("| worker parent peak RSS (VmHWM) | %.1f MiB |\n", (double)kib[0] / 1024.0);
    printf("| worker child peak RSS (VmHWM, p2prpc_copy) | %.1f MiB |\n", (double)kib[1] / 1024.0);
    printf("| broker peak RSS (VmHWM) | %.1f MiB |\n", (double)kib[2] / 1024.0);
}

static void run_roundtrip(broker *b, const opts *o) {
    for (long i = 0; i < WARMUP; i++)
        roundtrip(b, -1 - i);
    double *lat = calloc((size_t)o->calls, sizeof(*lat));
    if (lat == NULL)
        bench_die("round trip", "out of memory");
    double t = bench_now_ms();
    for (long i = 0; i < o->calls; i++)
        lat[i] = roundtrip(b, i);
    double total = bench_now_ms() - t;
    bench_sort(lat, (size_t)o->calls);
    print_roundtrip(o, lat, total);
    free(lat);
}

/* Both large file runs; returns the worker parent's peak RSS in KiB. */
static long run_big(broker *b, worker *w, const opts *o, const char *rss_file) {
    big_files f = {.xor_byte = {(unsigned char)o->xor_byte, (unsigned char)(o->xor_byte ^ 0xff)}};
    snprintf(f.in_path, sizeof(f.in_path), "%s/input.bin", b->dir);
    snprintf(f.out_path, sizeof(f.out_path), "%s/output.bin", b->dir);
    double t = bench_now_ms();
    bench_generate(f.in_path, o->size_mib, f.xor_byte, f.in_hash, f.out_hash);
    f.gen_ms = bench_now_ms() - t;
    big_result r[2];
    for (int k = 0; k < 2; k++)
        large_file(b, o, &f, k, &r[k]);
    (void)remove(f.in_path);
    long kib[3] = {bench_status_kib(worker_pid(w), "VmHWM:"), child_rss_from(rss_file),
                   bench_status_kib(harness_proc_pid(b->proc), "VmHWM:")};
    print_big(o, &f, r, kib);
    return kib[0];
}

int main(int argc, char **argv) {
    opts o = {.size_mib = 1024, .calls = 300, .xor_byte = 0x5a};
    char self[HARNESS_PATH_MAX] = {0};
    if (readlink("/proc/self/exe", self, sizeof(self) - 1) > 0)
        setenv("P2PRPC_BIN", dirname(self), 0);
    parse(argc, argv, &o);

    broker b;
    wf_broker_init(&b, "worker_bench", &(broker_config){.lease_seconds = 60, .sync = o.sync});
    broker_start(&b);
    char rss_file[HARNESS_PATH_MAX + 16];
    snprintf(rss_file, sizeof(rss_file), "%s/child_rss", b.dir);
    worker w;
    worker_start_for(&w, "worker_bench_w", &b,
                     &(worker_config){.concurrency = 1, .log_level = "info", .rss_file = rss_file});

    if (!o.kv)
        printf("| worker_bench | value |\n| --- | --- |\n");
    if (o.calls > 0)
        run_roundtrip(&b, &o);
    long parent_kib = o.size_mib > 0 ? run_big(&b, &w, &o, rss_file) : 1;
    fflush(stdout);

    worker_stop(&w, 60000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
    return parent_kib > 0 && parent_kib < 64 * 1024 ? 0 : 1;
}
