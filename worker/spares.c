/* Children started ahead of their call, and kept for the next one. Starting
 * one costs about 5 ms of CPU (posix_spawn, exec, loading the program's
 * shared libraries), against well under 1 ms for the rest of a no-op call
 * (tests/unit/test_worker_spawn.c measures both): so a spawner thread keeps
 * a few children exec'ed and waiting for a job, a runner takes one instead of
 * starting it, and gives it back when the call ended cleanly (the child sent
 * its outputs, or its function failed, and waits for the next job). A child
 * that crashed, was killed (terminate, lost lease, shutdown), said anything
 * unexpected, or ran P2P__CHILD_MAX_CALLS calls is not given back: it exits
 * and the spawner starts another. A crash still takes only its own call
 * down, and terminate still kills the process that runs the call: the
 * isolation is the same, only the child's start moved off the call's path.
 * (spare_children = 0 starts a child for each call, which then exits.)
 *
 * The spawner thread lives until the worker stops, because a child dies with
 * the thread that spawned it (PR_SET_PDEATHSIG); any thread of the process
 * may wait for it. A child a runner started itself dies with that runner, so
 * only the spawner's children are kept. */
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
            out->pooled = true;
            w->nloaned++;
            found = true;
        } else {
            P2P_WARN("worker: a spare child (pid %ld) died while waiting", (long)c.pid);
            p2p__child_cleanup(&c);
        }
    }
    if (w->nspares + w->nloaned < w->target_spares)
        pthread_cond_signal(&w->spare_cond); /* a dead one was dropped: make another */
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
        while (!w->spawner_exit &&
               (atomic_load(&w->stopping) || w->nspares + w->nloaned >= w->target_spares))
            pthread_cond_wait(&w->spare_cond, &w->lock);
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

void p2p__spare_give_back(p2p_worker *w, p2p__child *c, bool reusable, int64_t grace_ms) {
    bool kept = false;
    pthread_mutex_lock(&w->lock);
    if (c->pooled) {
        w->nloaned--;
        kept = reusable && c->calls < P2P__CHILD_MAX_CALLS && !w->spawner_exit &&
               !atomic_load(&w->stopping) && w->nspares < P2P__MAX_SPARES &&
               w->nspares < w->target_spares && alive(c);
        if (kept)
            w->spares[w->nspares++] = *c;
    }
    if (!kept)
        pthread_cond_signal(&w->spare_cond); /* the spawner makes another */
    pthread_mutex_unlock(&w->lock);
    if (!kept) {
        p2p__child_finish(c, grace_ms);
        p2p__child_cleanup(c);
    }
    *c = (p2p__child){.pid = 0, .pidfd = -1, .sock = -1};
}

void p2p__spares_cleanup(p2p_worker *w) {
    /* The spawner is gone, and with it (PR_SET_PDEATHSIG) these children. */
    for (size_t i = 0; i < w->nspares; i++)
        p2p__child_cleanup(&w->spares[i]);
    w->nspares = 0;
}
