#include "metrics.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Upper bounds of the latency buckets, in microseconds. Long-polls of up to
 * 300 s land in the top buckets; the rest tell apart store-bound requests
 * (sub-millisecond) from slow ones. */
static const int64_t bucket_us[] = {
    250,    500,     1000,    2500,    5000,     10000,    25000,    50000,     100000,    250000,
    500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000, 300000000,
};
#define N_BUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static const char *const counter_names[P2P_METRIC_COUNTER_COUNT] = {
    [P2P_METRIC_CLAIMS] = "claims",
    [P2P_METRIC_CREATED] = "calls_created",
    [P2P_METRIC_REQUEUED] = "lease_requeued",
    [P2P_METRIC_LEASE_FAILED] = "lease_failed",
    [P2P_METRIC_EXPIRED] = "calls_expired",
    [P2P_METRIC_BLOBS_REMOVED] = "blobs_removed",
    [P2P_METRIC_MAINT_ERRORS] = "maintenance_errors",
    [P2P_METRIC_BLOB_GETS] = "blob_gets",
    [P2P_METRIC_PIPELINE_RESOLVED] = "pipeline_resolved",
};

static const char *const counter_help[P2P_METRIC_COUNTER_COUNT] = {
    [P2P_METRIC_CLAIMS] = "Calls handed to a worker by search_work.",
    [P2P_METRIC_CREATED] = "Calls created by push_update.",
    [P2P_METRIC_REQUEUED] = "Running calls queued again after their lease expired.",
    [P2P_METRIC_LEASE_FAILED] = "Calls failed or terminated when their lease expired.",
    [P2P_METRIC_EXPIRED] = "Calls removed by expiry.",
    [P2P_METRIC_BLOBS_REMOVED] = "Blob files removed once no call referenced them.",
    [P2P_METRIC_MAINT_ERRORS] = "Maintenance passes that failed.",
    [P2P_METRIC_BLOB_GETS] = "Blob downloads answered (GET of a blob, any Range).",
    [P2P_METRIC_PIPELINE_RESOLVED] = "Waiting calls queued with their upstream calls' outputs.",
};

/* Status classes 1xx..5xx, for p2prpc_http_responses_total. */
#define N_CLASSES 5

struct p2p_metrics {
    _Atomic uint64_t counters[P2P_METRIC_COUNTER_COUNT];
    _Atomic uint64_t buckets[N_BUCKETS]; /* not cumulative: rendered as running sums */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
    _Atomic uint64_t classes[N_CLASSES];
};

int p2p_metrics_new(p2p_metrics **out, p2p_error *err) {
    p2p_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory creating the metrics");
    *out = m;
    return 0;
}

void p2p_metrics_free(p2p_metrics *m) {
    free(m);
}

void p2p_metrics_add(p2p_metrics *m, p2p_metric_counter which, uint64_t n) {
    if ((unsigned)which < P2P_METRIC_COUNTER_COUNT)
        atomic_fetch_add_explicit(&m->counters[which], n, memory_order_relaxed);
}

uint64_t p2p_metrics_get(p2p_metrics *m, p2p_metric_counter which) {
    if ((unsigned)which >= P2P_METRIC_COUNTER_COUNT)
        return 0;
    return atomic_load_explicit(&m->counters[which], memory_order_relaxed);
}

void p2p_metrics_observe_request(p2p_metrics *m, unsigned status, int64_t duration_us) {
    if (duration_us < 0)
        duration_us = 0;
    size_t i = 0;
    while (i < N_BUCKETS && duration_us > bucket_us[i])
        i++;
    if (i < N_BUCKETS)
        atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us, (uint64_t)duration_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&m->classes[status / 100 - 1], 1, memory_order_relaxed);
}

static void render_calls(FILE *f, const p2p_metrics_gauges *g) {
    fprintf(f, "# HELP p2prpc_calls Calls in the store, by function and status.\n"
               "# TYPE p2prpc_calls gauge\n");
    for (size_t i = 0; i < g->n_functions; i++)
        for (int s = 0; s < P2P_CALL_STATUS_COUNT; s++)
            fprintf(f, "p2prpc_calls{function=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                    g->functions[i].name, p2p_call_status_name((p2p_call_status)s),
                    g->functions[i].counts[s]);
}

static void render_counters(FILE *f, p2p_metrics *m) {
    for (int i = 0; i < P2P_METRIC_COUNTER_COUNT; i++)
        fprintf(
            f,
            "# HELP p2prpc_%s_total %s\n# TYPE p2prpc_%s_total counter\np2prpc_%s_total %" PRIu64
            "\n",
            counter_names[i], counter_help[i], counter_names[i], counter_names[i],
            p2p_metrics_get(m, (p2p_metric_counter)i));
}

static void render_histogram(FILE *f, p2p_metrics *m) {
    fprintf(f, "# HELP p2prpc_http_request_duration_seconds Time from request line to answer, "
               "long-poll waits included.\n"
               "# TYPE p2prpc_http_request_duration_seconds histogram\n");
    /* The count is read first: buckets and sum may then run a little ahead of
     * it, never behind, so +Inf (the count) is never below the last bucket. */
    uint64_t count = atomic_load(&m->count);
    uint64_t running = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        running += atomic_load(&m->buckets[i]);
        fprintf(f, "p2prpc_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                (double)bucket_us[i] / 1e6, running < count ? running : count);
    }
    fprintf(f, "p2prpc_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
    fprintf(f, "p2prpc_http_request_duration_seconds_sum %.6f\n",
            (double)atomic_load(&m->sum_us) / 1e6);
    fprintf(f, "p2prpc_http_request_duration_seconds_count %" PRIu64 "\n", count);
    fprintf(f, "# HELP p2prpc_http_responses_total Answered requests by status class.\n"
               "# TYPE p2prpc_http_responses_total counter\n");
    for (int c = 0; c < N_CLASSES; c++)
        fprintf(f, "p2prpc_http_responses_total{class=\"%dxx\"} %" PRIu64 "\n", c + 1,
                atomic_load(&m->classes[c]));
}

static void render_gauges(FILE *f, const p2p_metrics_gauges *g) {
    fprintf(f,
            "# HELP p2prpc_blobs Blobs stored.\n# TYPE p2prpc_blobs gauge\np2prpc_blobs %" PRIu64
            "\n# HELP p2prpc_blob_bytes Bytes of blobs stored.\n# TYPE p2prpc_blob_bytes "
            "gauge\np2prpc_blob_bytes %" PRIu64 "\n# HELP p2prpc_longpoll_waiting Requests "
            "parked in a long-poll.\n# TYPE p2prpc_longpoll_waiting gauge\n"
            "p2prpc_longpoll_waiting %" PRIu64 "\n",
            g->blobs, g->blob_bytes, g->parked);
}

static void render_store(FILE *f, const p2p_store_stats *st) {
    fprintf(f,
            "# HELP p2prpc_store_reads_total Store read operations.\n"
            "# TYPE p2prpc_store_reads_total counter\np2prpc_store_reads_total %" PRIu64 "\n"
            "# HELP p2prpc_store_writes_total Store write operations.\n"
            "# TYPE p2prpc_store_writes_total counter\np2prpc_store_writes_total %" PRIu64 "\n"
            "# HELP p2prpc_store_commits_total Store transactions (one fsync each with "
            "--sync full).\n"
            "# TYPE p2prpc_store_commits_total counter\np2prpc_store_commits_total %" PRIu64 "\n",
            st->reads, st->writes, st->batches);
}

int p2p_metrics_render(p2p_metrics *m, const p2p_metrics_gauges *gauges, char **out, size_t *len,
                       p2p_error *err) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory rendering the metrics");
    render_calls(f, gauges);
    render_counters(f, m);
    render_histogram(f, m);
    render_gauges(f, gauges);
    render_store(f, &gauges->store);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed || buf == NULL) {
        free(buf);
        return p2p_error_set(err, P2P_ENOMEM, "out of memory rendering the metrics");
    }
    *out = buf;
    *len = size;
    return 0;
}
