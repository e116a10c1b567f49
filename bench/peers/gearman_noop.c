/* The Gearman peer of the benchmarks: a no-op job through a running gearmand
 * on 127.0.0.1, with libgearman clients and workers (threads of this
 * process, each with its own connection).
 *
 *   gearman_noop --port P --mode rtt|fg|bg [--jobs N] [--seconds S]
 *                [--clients C] [--workers W]
 *
 * - rtt: W workers (default 1) wait; one client runs N (default 2000)
 *   foreground jobs one after the other (100 warm-up jobs first), each timed
 *   from submit to result. Prints rtt_p50_us, rtt_p99_us, rtt_jobs.
 * - fg:  C clients (default 32) run foreground jobs for S seconds (default
 *   5) against W workers (default 4). Prints fg_jobs_per_s.
 * - bg:  C clients submit background jobs for S seconds; the run ends when
 *   the workers have done every submitted job (at most 120 s more). Prints
 *   bg_jobs_per_s: jobs done over the time from the first submit to the last
 *   job done (with --queue-type=libsqlite3 every job is written to SQLite).
 * Output lines are `key value`, for scripts/bench.sh. Exit 1 on any error. */
#include <libgearman-1.0/gearman.h>

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define WARMUP 100
#define WORKER_POLL_MS 100
#define BG_DRAIN_S 120.0

static const char *const FN = "p2prpc_noop";

typedef struct opts {
    in_port_t port;
    const char *mode;
    long jobs;
    double seconds;
    int clients, workers;
} opts;

static opts o = {.jobs = 2000, .seconds = 5, .clients = 32, .workers = 0};
static atomic_bool stop_workers;
static atomic_long jobs_done; /* by the workers */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "gearman_noop: %s: %s\n", what, msg);
    exit(1);
}

/* ---- workers ---- */

/* The no-op: an empty result. */
static void *noop(gearman_job_st *job, void *ctx, size_t *result_size, gearman_return_t *ret) {
    (void)job;
    (void)ctx;
    *result_size = 0;
    *ret = GEARMAN_SUCCESS;
    atomic_fetch_add(&jobs_done, 1);
    return NULL;
}

static void *worker_main(void *arg) {
    (void)arg;
    gearman_worker_st *w = gearman_worker_create(NULL);
    if (w == NULL || gearman_failed(gearman_worker_add_server(w, "127.0.0.1", o.port)) ||
        gearman_failed(gearman_worker_add_function(w, FN, 0, noop, NULL)))
        die("worker", w ? gearman_worker_error(w) : "out of memory");
    /* A timeout lets the thread see the stop flag between jobs. */
    gearman_worker_set_timeout(w, WORKER_POLL_MS);
    while (!atomic_load(&stop_workers)) {
        gearman_return_t rc = gearman_worker_work(w);
        if (rc != GEARMAN_SUCCESS && rc != GEARMAN_TIMEOUT && rc != GEARMAN_NO_JOBS &&
            rc != GEARMAN_IO_WAIT && !atomic_load(&stop_workers))
            die("worker", gearman_worker_error(w));
    }
    gearman_worker_free(w);
    return NULL;
}

static gearman_client_st *client_new(void) {
    gearman_client_st *c = gearman_client_create(NULL);
    if (c == NULL || gearman_failed(gearman_client_add_server(c, "127.0.0.1", o.port)))
        die("client", c ? gearman_client_error(c) : "out of memory");
    return c;
}

static void do_job(gearman_client_st *c, bool background) {
    gearman_return_t rc;
    if (background) {
        rc = gearman_client_do_background(c, FN, NULL, "x", 1, NULL);
    } else {
        size_t size = 0;
        void *result = gearman_client_do(c, FN, NULL, "x", 1, &size, &rc);
        free(result);
    }
    if (gearman_failed(rc))
        die("job", gearman_client_error(c));
}

/* ---- rtt ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_rtt(void) {
    gearman_client_st *c = client_new();
    for (int i = 0; i < WARMUP; i++)
        do_job(c, false);
    double *us = calloc((size_t)o.jobs, sizeof(*us));
    if (us == NULL)
        die("rtt", "out of memory");
    for (long i = 0; i < o.jobs; i++) {
        double t = now_s();
        do_job(c, false);
        us[i] = (now_s() - t) * 1e6;
    }
    qsort(us, (size_t)o.jobs, sizeof(*us), cmp_double);
    printf("rtt_jobs %ld\nrtt_p50_us %.1f\nrtt_p99_us %.1f\n", o.jobs, us[o.jobs / 2],
           us[o.jobs * 99 / 100]);
    free(us);
    gearman_client_free(c);
}

/* ---- throughput ---- */

typedef struct client_thread {
    bool background;
    double until;
    long done;
} client_thread;

static void *client_main(void *arg) {
    client_thread *t = arg;
    gearman_client_st *c = client_new();
    while (now_s() < t->until) {
        do_job(c, t->background);
        t->done++;
    }
    gearman_client_free(c);
    return NULL;
}

static void run_throughput(bool background) {
    pthread_t th[MAX_THREADS];
    client_thread ct[MAX_THREADS];
    long before = atomic_load(&jobs_done);
    double start = now_s();
    for (int i = 0; i < o.clients; i++) {
        ct[i] = (client_thread){.background = background, .until = start + o.seconds};
        if (pthread_create(&th[i], NULL, client_main, &ct[i]) != 0)
            die("thread", "cannot start");
    }
    long submitted = 0;
    for (int i = 0; i < o.clients; i++) {
        pthread_join(th[i], NULL);
        submitted += ct[i].done;
    }
    double deadline = now_s() + BG_DRAIN_S;
    struct timespec nap = {0, 2000000};
    while (background && atomic_load(&jobs_done) - before < submitted && now_s() < deadline)
        nanosleep(&nap, NULL);
    long done = atomic_load(&jobs_done) - before;
    double elapsed = now_s() - start;
    if (done < submitted)
        die("background", "the workers did not finish the submitted jobs in time");
    printf("%s_jobs %ld\n%s_jobs_per_s %.0f\n", background ? "bg" : "fg", done,
           background ? "bg" : "fg", (double)done / elapsed);
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: gearman_noop --port P --mode rtt|fg|bg [--jobs N] [--seconds S] "
                    "[--clients C] [--workers W]\n");
    exit(2);
}

static long num(const char *s, long lo, long hi) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        usage();
    return v;
}

static void parse(int argc, char **argv) {
    static const struct option longs[] = {{"port", required_argument, NULL, 'p'},
                                          {"mode", required_argument, NULL, 'm'},
                                          {"jobs", required_argument, NULL, 'n'},
                                          {"seconds", required_argument, NULL, 's'},
                                          {"clients", required_argument, NULL, 'c'},
                                          {"workers", required_argument, NULL, 'w'},
                                          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'p')
            o.port = (in_port_t)num(optarg, 1, 65535);
        else if (c == 'm')
            o.mode = optarg;
        else if (c == 'n')
            o.jobs = num(optarg, 100, 10000000);
        else if (c == 's')
            o.seconds = (double)num(optarg, 1, 600);
        else if (c == 'c')
            o.clients = (int)num(optarg, 1, MAX_THREADS);
        else if (c == 'w')
            o.workers = (int)num(optarg, 1, MAX_THREADS);
        else
            usage();
    }
    if (optind != argc || o.port == 0 || o.mode == NULL ||
        (strcmp(o.mode, "rtt") != 0 && strcmp(o.mode, "fg") != 0 && strcmp(o.mode, "bg") != 0))
        usage();
    if (o.workers == 0)
        o.workers = strcmp(o.mode, "rtt") == 0 ? 1 : 4;
}

int main(int argc, char **argv) {
    parse(argc, argv);
    pthread_t w[MAX_THREADS];
    for (int i = 0; i < o.workers; i++)
        if (pthread_create(&w[i], NULL, worker_main, NULL) != 0)
            die("thread", "cannot start");
    if (strcmp(o.mode, "rtt") == 0)
        run_rtt();
    else
        run_throughput(strcmp(o.mode, "bg") == 0);
    fflush(stdout);
    atomic_store(&stop_workers, true);
    for (int i = 0; i < o.workers; i++)
        pthread_join(w[i], NULL);
    return 0;
}
