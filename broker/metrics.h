/* The broker's metrics, rendered in the Prometheus text format 0.0.4.
 *
 * Counters and the request latency histogram live here and are updated with
 * atomics from any thread (no lock on the request path). Gauges that belong
 * to other modules (calls per status from the store, blob totals, parked
 * long-polls) are passed in by the caller at render time. */
#ifndef P2PRPC_METRICS_H
#define P2PRPC_METRICS_H

#include "error.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_metrics p2p_metrics;

/* The event counters, each exported as p2prpc_<name>_total. */
typedef enum p2p_metric_counter {
    P2P_METRIC_CLAIMS = 0,        /* calls handed to a worker by search_work */
    P2P_METRIC_CREATED,           /* calls created by push_update */
    P2P_METRIC_REQUEUED,          /* running calls queued again after their lease expired */
    P2P_METRIC_LEASE_FAILED,      /* calls failed (or terminated) when their lease expired */
    P2P_METRIC_EXPIRED,           /* calls removed by expiry */
    P2P_METRIC_BLOBS_REMOVED,     /* blob files removed (delete, expiry, sweep) */
    P2P_METRIC_MAINT_ERRORS,      /* maintenance passes that failed */
    P2P_METRIC_BLOB_GETS,         /* blob downloads answered (GET /api/v1/blobs/H, 2xx) */
    P2P_METRIC_PIPELINE_RESOLVED, /* waiting calls queued with their upstreams' outputs */
    P2P_METRIC_COUNTER_COUNT,
} p2p_metric_counter;

/* Calls of one function by status, as p2p_store_count gives them. */
typedef struct p2p_metrics_function {
    const char *name; /* borrowed */
    uint64_t counts[P2P_CALL_STATUS_COUNT];
} p2p_metrics_function;

/* What the caller measures at render time. */
typedef struct p2p_metrics_gauges {
    const p2p_metrics_function *functions; /* borrowed */
    size_t n_functions;
    uint64_t blobs, blob_bytes;
    uint64_t parked;       /* long-poll requests waiting */
    p2p_store_stats store; /* the store's counters (p2p_store_get_stats) */
} p2p_metrics_gauges;

/* Creates zeroed metrics. `*out` is the caller's (p2p_metrics_free).
 * Returns 0 or P2P_ENOMEM. */
int p2p_metrics_new(p2p_metrics **out, p2p_error *err) P2P_NODISCARD;

/* Frees `m`. NULL is a no-op. */
void p2p_metrics_free(p2p_metrics *m);

/* Adds `n` to a counter. Any thread. */
void p2p_metrics_add(p2p_metrics *m, p2p_metric_counter which, uint64_t n);

/* Reads a counter. Any thread. */
uint64_t p2p_metrics_get(p2p_metrics *m, p2p_metric_counter which);

/* Records one answered HTTP request: its status and how long it took (from
 * its request line to its answer, long-poll waits included). Any thread. */
void p2p_metrics_observe_request(p2p_metrics *m, unsigned status, int64_t duration_us);

/* Renders every metric, with the caller's `gauges`, as Prometheus text into a
 * new NUL-terminated buffer `*out` (caller frees with free()) of `*len`
 * bytes. Returns 0 or P2P_ENOMEM. */
int p2p_metrics_render(p2p_metrics *m, const p2p_metrics_gauges *gauges, char **out, size_t *len,
                       p2p_error *err) P2P_NODISCARD;

#endif
