/* Children started ahead of their call. Starting one costs about 5 ms
 * (posix_spawn, exec, loading the program's shared libraries), against under
 * 1 ms for the rest of a no-op call (tests/unit/test_worker_spawn.c measures
 * both): so a spawner thread keeps a few children exec'ed and waiting for
 * their job, and a runner takes one instead of starting it. Each child still
 * runs exactly one call and is then reaped: the isolation is the same as a
 * child started for the call, only its start moved earlier.
 *
 * The spawner thread lives until the worker stops, because a child dies with
 * the thread that spawned it (PR_SET_PDEATHSIG); any thread of the process
 * may wait for it. */
#include "worker_internal.h"

#include "log.h"

#include <poll.h>
#include <stdlib.h>

/* The spare is still alive (not a crashed or killed idle child). */
static bool alive(const p2p__child *c) {
    struct pollfd pfd = {.fd = c->pidfd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

bool p2p__spare_take(p2p_worker *w, p2p__child *out) {
    bool found = false;
    pthread_mutex_lock(&w->lock);
    while (!found && w->nspares > 0) {
        p2p__child c = w->spares[--w->nspares];
        if (alive(&c)) {
            *out = c;
            found = true;
        } else {
            P2P_WARN("worker: a spare child (pid %ld) died while waiting", (long)c.pid);
            p2p__child_cleanup(&c);
        }
    }
    pthread_cond_broadcast(&w->cond); /* the spawner makes another */
    pthread_mutex_unlock(&w->lock);
    return found;
}

void *p2p__spawner_main(void *arg) {
    p2p_worker *w = arg;
    int failures = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        /* Stopping, it makes no more, but lives on until no call runs: the
         * children it started die with it. */
        while (!w->spawner_exit && (atomic_load(&w->stopping) || w->nspares >= w->target_spares))
            pthread_cond_wait(&w->cond, &w->lock);
        bool stop = w->spawner_exit;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;
        p2p__child c;
        p2p_error err = {0};
        if (p2p__child_spawn(w->child_program, w->work_dir, &c, &err) != 0) {
            if (failures++ % 60 == 0)
                P2P_ERROR("worker: cannot start a spare child: %s", err.msg);
            p2p__worker_wait_until(w, p2p__worker_now_ms() + 1000);
            continue;
        }
        failures = 0;
        pthread_mutex_lock(&w->lock);
        w->spares[w->nspares++] = c;
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

void p2p__spares_cleanup(p2p_worker *w) {
    /* The spawner is gone, and with it (PR_SET_PDEATHSIG) these children. */
    for (size_t i = 0; i < w->nspares; i++)
        p2p__child_cleanup(&w->spares[i]);
    w->nspares = 0;
}
