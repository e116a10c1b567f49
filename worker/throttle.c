/* Progress coalescing: a function may report progress millions of times; the
 * broker hears of it a few times a second, and always of the latest value. */
#include "worker_internal.h"

#include <stdint.h>

void p2p__throttle_init(p2p__throttle *t, int64_t interval_ms) {
    t->interval_ms = interval_ms > 0 ? interval_ms : 0;
    t->last_ms = INT64_MIN;
    t->pending = false;
    t->value = 0;
}

void p2p__throttle_update(p2p__throttle *t, double value) {
    t->value = value;
    t->pending = true;
}

int64_t p2p__throttle_deadline(const p2p__throttle *t) {
    if (!t->pending)
        return INT64_MAX;
    if (t->last_ms == INT64_MIN || t->last_ms > INT64_MAX - t->interval_ms)
        return INT64_MIN; /* never sent: due at once */
    return t->last_ms + t->interval_ms;
}

bool p2p__throttle_due(const p2p__throttle *t, int64_t now) {
    return t->pending && now >= p2p__throttle_deadline(t);
}

double p2p__throttle_take(p2p__throttle *t, int64_t now) {
    t->pending = false;
    t->last_ms = now;
    return t->value;
}
