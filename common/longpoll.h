/* A parking lot for long-poll waiters: items wait on a string topic until a
 * notify on that topic, their deadline, the close of a watched socket, or
 * shutdown — whichever comes first — and are then "fired" exactly once.
 *
 * Cost per waiter is one small allocation; there is no thread per waiter and
 * no polling. One timer thread sleeps in epoll_wait() until the earliest
 * deadline (a binary heap), an eventfd kick, or a watched socket reporting
 * EPOLLRDHUP/EPOLLHUP (the peer went away). Topics live in a hash map, so
 * notify costs O(waiters on that topic).
 *
 * The fire callback runs without any lock of this module held: in the thread
 * that called p2p_longpoll_notify (NOTIFIED), in the timer thread (TIMEOUT,
 * CLOSED), or in the thread that called p2p_longpoll_stop (SHUTDOWN). Once it
 * has been called for an item, the module never touches that item again. */
#ifndef P2PRPC_LONGPOLL_H
#define P2PRPC_LONGPOLL_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct p2p_longpoll p2p_longpoll;

typedef enum p2p_longpoll_reason {
    P2P_LONGPOLL_NOTIFIED = 0, /* p2p_longpoll_notify named the item's topic */
    P2P_LONGPOLL_TIMEOUT = 1,  /* the deadline passed */
    P2P_LONGPOLL_CLOSED = 2,   /* the watched socket was closed by the peer */
    P2P_LONGPOLL_SHUTDOWN = 3, /* p2p_longpoll_stop */
} p2p_longpoll_reason;

/* Called exactly once per successfully added item. `ctx` is the one given to
 * p2p_longpoll_new; `item` the one given to p2p_longpoll_add. */
typedef void (*p2p_longpoll_fire_fn)(void *ctx, void *item, p2p_longpoll_reason reason);

/* Milliseconds of CLOCK_MONOTONIC: the clock of every deadline here. */
int64_t p2p_longpoll_now_ms(void);

/* Creates a stopped parking lot firing through `fire` (with `ctx`, borrowed
 * until p2p_longpoll_free). `*out` is set on success; caller frees with
 * p2p_longpoll_free. Returns 0, P2P_ENOMEM or P2P_EIO (epoll/eventfd). */
int p2p_longpoll_new(p2p_longpoll_fire_fn fire, void *ctx, p2p_longpoll **out,
                     p2p_error *err) P2P_NODISCARD;

/* Starts the timer thread. Returns 0, P2P_EINVAL when already started or
 * stopped, P2P_EIO when the thread cannot be created. */
int p2p_longpoll_start(p2p_longpoll *lp, p2p_error *err) P2P_NODISCARD;

/* Parks `item` (borrowed until it is fired) on `topic` (copied) until
 * `deadline_ms` (p2p_longpoll_now_ms clock; a deadline already past fires at
 * once, from the timer thread). When `watch_fd` >= 0, the item also fires
 * with P2P_LONGPOLL_CLOSED when the peer of that socket hangs up; the caller
 * keeps the descriptor open until the item is fired. Callable from any thread.
 * Returns 0 (the item will be fired exactly once), P2P_ECANCELED when the lot
 * is not running, P2P_EINVAL for an empty topic, P2P_ENOMEM, P2P_EIO; on error
 * the item is never fired. */
int p2p_longpoll_add(p2p_longpoll *lp, void *item, const char *topic, int64_t deadline_ms,
                     int watch_fd, p2p_error *err) P2P_NODISCARD;

/* Fires every item parked on `topic` with P2P_LONGPOLL_NOTIFIED, in the
 * calling thread, and returns how many. Callable from any thread, including
 * from inside a fire callback. */
size_t p2p_longpoll_notify(p2p_longpoll *lp, const char *topic);

/* Number of items currently parked. */
size_t p2p_longpoll_count(p2p_longpoll *lp);

/* Stops the timer thread and fires every parked item with
 * P2P_LONGPOLL_SHUTDOWN. When it returns, no fire callback is running or will
 * run (it waits for notifies in progress in other threads), and later adds
 * fail with P2P_ECANCELED. Idempotent. */
void p2p_longpoll_stop(p2p_longpoll *lp);

/* Stops (see above) and frees. NULL is a no-op. */
void p2p_longpoll_free(p2p_longpoll *lp);

#endif
