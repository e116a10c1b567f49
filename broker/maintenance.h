/* The broker's one timer thread: it runs a maintenance pass every interval
 * (requeue expired leases, expire calls, remove orphaned blobs; the pass
 * itself is the broker's), never one thread or timer per call.
 *
 * The thread sleeps on a condition variable between passes, so stop is
 * immediate and no pass overlaps another. */
#ifndef P2PRPC_MAINTENANCE_H
#define P2PRPC_MAINTENANCE_H

#include "error.h"

#include <stdint.h>

typedef struct p2p_maintenance p2p_maintenance;

/* One pass. Runs in the maintenance thread; `ctx` as given to new. */
typedef void (*p2p_maintenance_fn)(void *ctx);

/* Creates a stopped timer that will call `pass(ctx)` every `interval_ms`
 * (> 0) once started. `ctx` is borrowed until p2p_maintenance_free. `*out`
 * is the caller's. Returns 0, P2P_EINVAL, P2P_ENOMEM. */
int p2p_maintenance_new(int64_t interval_ms, p2p_maintenance_fn pass, void *ctx,
                        p2p_maintenance **out, p2p_error *err) P2P_NODISCARD;

/* Starts the thread; the first pass runs one interval later. Returns 0,
 * P2P_EINVAL when already started, P2P_EIO when no thread can be created. */
int p2p_maintenance_start(p2p_maintenance *m, p2p_error *err) P2P_NODISCARD;

/* Stops the thread, waiting for a pass in progress to end. When it returns,
 * `pass` does not run any more. Idempotent; never from `pass` itself. */
void p2p_maintenance_stop(p2p_maintenance *m);

/* Number of passes run so far. */
uint64_t p2p_maintenance_passes(p2p_maintenance *m);

/* Stops and frees. NULL is a no-op. */
void p2p_maintenance_free(p2p_maintenance *m);

#endif
