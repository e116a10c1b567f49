/* Shared between the files of the worker library; not installed.
 *
 *   worker.c       the object: options, brokers, slots, start/stop, gossip thread
 *   worker_cli.c   p2p_worker_main: flags, --dump-schemas, signals
 *   poller.c       one thread per broker x function: capacity, can_do_work, search_work
 *   runner.c       one thread per running call: directory, job, child, the final push
 *   watch.c        the runner's loop over a running child: progress, heartbeats, kills
 *   wire.c         requests to a broker: pushes, blobs with HEAD and Range
 *   spawn.c        the parent side of a child: posix_spawn, pidfd, socket, reaping
 *   spares.c       children started ahead of their call, by a spawner thread
 *   calldir.c      the per-call directories, clean ones kept for the next call
 *   child.c        the child side: job, input blobs, the adapter, output blobs
 *   runtime.c      p2p_progress_hook, p2p_fail, p2p_checkpoint_save/load
 *   throttle.c     coalescing progress updates to a few a second */
#ifndef P2PRPC_WORKER_INTERNAL_H
#define P2PRPC_WORKER_INTERNAL_H

#include "worker.h"

#include "hash.h"
#include "http_client.h"
#include "node.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* The child's end of its control socket: fd 3 in the child. */
#define P2P__CHILD_FD 3
/* Longest message a child sends (its outputs); the broker takes 4 MiB. */
#define P2P__CHILD_MAX_MESSAGE (8u << 20)
/* Longest job sent to a child (arguments and paths). */
#define P2P__CHILD_MAX_JOB (16u << 20)
/* Calls one child runs before it is replaced: what user code leaks (memory,
 * descriptors) between calls stays bounded. */
#define P2P__CHILD_MAX_CALLS 1000
/* How often an unwilling can_do_work is asked again. */
#define P2P__CAN_DO_RECHECK_MS 500
/* Backoff of a broker that cannot be reached: base and cap, in ms. */
#define P2P__BACKOFF_BASE_MS 500
#define P2P__BACKOFF_MAX_MS 10000
/* How long a poller waits before asking a broker again about a function it
 * does not serve (or serves in another version). */
#define P2P__MISMATCH_RETRY_MS 60000

/* Milliseconds of CLOCK_MONOTONIC: every deadline of the worker. */
int64_t p2p__worker_now_ms(void);

/* Sleeps `ms` or until `fd` (an eventfd; -1 = none) becomes readable.
 * Returns false when woken by the fd. */
bool p2p__worker_sleep(int fd, int64_t ms);

/* ---- throttle.c ---- */

/* Coalesces updates: the latest value is kept, and is due once `interval_ms`
 * passed since the last one taken. Nothing is ever dropped, only replaced by
 * a newer value. Not thread-safe. */
typedef struct p2p__throttle {
    int64_t interval_ms;
    int64_t last_ms; /* when a value was last taken; INT64_MIN = never */
    bool pending;
    double value;
} p2p__throttle;

void p2p__throttle_init(p2p__throttle *t, int64_t interval_ms);
/* Records `value` as the latest one (pending). */
void p2p__throttle_update(p2p__throttle *t, double value);
/* When the pending value is due: INT64_MAX when nothing is pending. */
int64_t p2p__throttle_deadline(const p2p__throttle *t);
/* True when a value is pending and due at `now`. */
bool p2p__throttle_due(const p2p__throttle *t, int64_t now);
/* Takes the pending value at `now` (due or not: a flush) and returns it. */
double p2p__throttle_take(p2p__throttle *t, int64_t now);

/* ---- wire.c ---- */

/* What a broker answers to a worker's push. */
typedef struct p2p__push_reply {
    bool terminate_requested;
    int64_t lease_expires_ms;
    char status[16]; /* the call's status afterwards */
} p2p__push_reply;

/* What interrupts a transfer: `flag` (may be NULL) once set, checked as
 * bytes move; `fd` (an eventfd, -1 = none) once readable, waited on between
 * attempts. Both borrowed. */
typedef struct p2p__abort {
    const atomic_bool *flag;
    int fd;
} p2p__abort;

/* POSTs the JSON `body` (borrowed) to `url`. Returns 0 with `*reply` (new
 * reference, caller decrefs) when a 2xx JSON answer arrived; otherwise the
 * error the answer carries (P2P_ECONFLICT for a stale lease, P2P_ENOTFOUND
 * for a deleted call...) or a transport error. `*status` (may be NULL)
 * receives the HTTP status, 0 when none arrived. */
int p2p__wire_post(p2p_http_client *c, const char *url, const json_t *body, json_t **reply,
                   long *status, p2p_error *err) P2P_NODISCARD;

/* A worker update on a lease: {"identifier", "lease_token", member: value}.
 * `value` is stolen (even on error). `out` (may be NULL) gets the reply. */
int p2p__wire_push(p2p_http_client *c, const char *base, const char *function,
                   const char *identifier, const char *token, const char *member, json_t *value,
                   p2p__push_reply *out, p2p_error *err) P2P_NODISCARD;

/* Downloads blob `hash` of `size` bytes (-1 = unknown) into `path`, in
 * constant memory, resuming with Range after a dropped connection, then
 * verifies its size and hash (a mismatch starts over once, then gives
 * P2P_EHASH). Gives up after several attempts in a row without progress, or
 * when `abort` (may be NULL) says so (P2P_ECANCELED). P2P_ENOTFOUND when the
 * broker has no such blob. */
int p2p__wire_download(p2p_http_client *c, const char *base, const char *hash, int64_t size,
                       const char *path, const p2p__abort *abort, p2p_error *err) P2P_NODISCARD;

/* Makes sure the broker has blob `hash` (`size` bytes, the content of
 * `path`): HEAD first, so that known content is never sent again, then a
 * streamed PUT. `abort` (may be NULL) cancels it. */
int p2p__wire_upload(p2p_http_client *c, const char *base, const char *path, const char *hash,
                     int64_t size, const p2p__abort *abort, p2p_error *err) P2P_NODISCARD;

/* Hashes the regular file at `path` in constant memory. */
int p2p__wire_hash_file(const char *path, char hash[P2P_HASH_HEX_LEN + 1], int64_t *size,
                        p2p_error *err) P2P_NODISCARD;

/* ---- spawn.c ---- */

/* A running child process, as the parent sees it. */
typedef struct p2p__child {
    pid_t pid; /* also its process group; 0 when none */
    int pidfd; /* readable once the child exited */
    int sock;  /* the parent's end of the control socket */
    bool reaped;
    int wstatus;    /* once reaped */
    bool pooled;    /* started by the spawner thread: may go back among the spares */
    unsigned calls; /* calls it ran */
} p2p__child;

/* Starts `program` with argv {program, P2P_WORKER_CHILD_FLAG, PARENT_PID}, in
 * its own process group, with `cwd` as its working directory (until it
 * reads its job: then the call's out_dir), stdin from
 * /dev/null, stdout on stderr, signals at their defaults, and the control
 * socket as fd P2P__CHILD_FD. Must be called from the thread that will reap
 * it (the child dies with that thread: PR_SET_PDEATHSIG). */
int p2p__child_spawn(const char *program, const char *cwd, p2p__child *out,
                     p2p_error *err) P2P_NODISCARD;

/* Writes `len` bytes of `job` (one JSON text, no newline in it) and the
 * newline that ends it: the child reads one job per line, and another one
 * after it sent its result, until its socket is closed. */
int p2p__child_send_job(p2p__child *c, const char *job, size_t len, p2p_error *err) P2P_NODISCARD;

/* Sends `sig` to the child's whole process group (its own children too). */
void p2p__child_kill(p2p__child *c, int sig);

/* Reaps the child if it exited (blocking when `wait`). Returns true once it
 * is reaped. */
bool p2p__child_reap(p2p__child *c, bool wait);

/* Closes the control socket (a child waiting for another job exits on that
 * EOF), gives the child up to `wait_ms` to exit, then kills its process
 * group (what it started dies with it) and reaps it. */
void p2p__child_finish(p2p__child *c, int64_t wait_ms);

/* Kills and reaps the child if still there, and closes its descriptors. */
void p2p__child_cleanup(p2p__child *c);

/* ---- calldir.c ---- */

/* Most clean call directories kept for the next calls. */
#define P2P__MAX_FREE_DIRS 8

/* The directory of a call of `identifier`: WORK_DIR/call-ID16-XXXXXX with
 * in/ and out/ (empty), a kept one renamed or a new one. `*out` is the
 * caller's (p2p__calldir_retire). Returns 0, P2P_EIO or P2P_ENOMEM. */
int p2p__calldir_make(p2p_worker *w, const char *identifier, char **out,
                      p2p_error *err) P2P_NODISCARD;
/* The call is over: `dir` (taken; NULL is a no-op) is kept for another call
 * when in/ and out/ are empty, else removed. */
void p2p__calldir_retire(p2p_worker *w, char *dir);
/* Frees the names of the kept directories (they go with the work dir). */
void p2p__calldirs_cleanup(p2p_worker *w);

/* ---- spares.c ---- */

/* Most children kept started ahead of their call. */
#define P2P__MAX_SPARES 4

/* Takes a spare child, alive and waiting for its job, into `*out`; false
 * when there is none. */
bool p2p__spare_take(p2p_worker *w, p2p__child *out);
/* The child of a call that is over (`*c`, taken: reset to none). When
 * `reusable` (it sent its result cleanly and is waiting for another job),
 * it came from the spawner, it ran fewer than P2P__CHILD_MAX_CALLS, and
 * the worker is not stopping, it goes back among the spares. Otherwise it is
 * told to exit (EOF on its socket), given `grace_ms`, killed and reaped. */
void p2p__spare_give_back(p2p_worker *w, p2p__child *c, bool reusable, int64_t grace_ms);
/* The spawner thread: keeps target_spares children started. */
void *p2p__spawner_main(void *arg);
/* Kills and reaps the spares left (the spawner has stopped). */
void p2p__spares_cleanup(p2p_worker *w);

/* ---- child.c ---- */

/* The child side of a call: reads the job from P2P__CHILD_FD, runs the
 * function of `fns` it names, sends the result. Returns the exit status. */
int p2p__child_main(int argc, char **argv, const p2p_worker_function *fns, size_t n);

/* ---- runtime.c ---- */

/* What the runtime API needs in the child (all borrowed until leave). */
typedef struct p2p__runtime_cfg {
    int fd;                /* control socket */
    p2p_http_client *http; /* for checkpoints */
    const char *base;      /* broker URL */
    const char *function;
    const char *identifier;
    const char *token;
    int64_t progress_interval_ms;
} p2p__runtime_cfg;

void p2p__runtime_enter(const p2p__runtime_cfg *cfg);
/* Sends the progress still held back, if any. */
void p2p__runtime_flush(void);
/* The message given to p2p_fail, or NULL. Valid until leave. */
const char *p2p__runtime_fail_message(void);
void p2p__runtime_leave(void);

/* Sends one JSON message (a line) on the control socket. */
int p2p__runtime_send(int fd, const json_t *msg) P2P_NODISCARD;

/* ---- worker.c, poller.c, runner.c ---- */

typedef struct p2p__poller p2p__poller;

/* A broker the worker polls. `url` ends with '/'. */
typedef struct p2p__broker {
    char *url;
    char uuid[P2P_NODE_ID_LEN + 1]; /* "" until known */
    /* Backoff while it cannot be reached; under the worker's lock. */
    int failures;
    int64_t retry_at_ms;
    p2p__poller **pollers; /* one per function */
} p2p__broker;

/* A call slot (concurrency): the runner thread that used it last. */
typedef struct p2p__slot {
    pthread_t thread;
    bool joinable; /* a thread ran here and was not joined yet */
    bool busy;
} p2p__slot;

struct p2p_worker {
    p2p_worker_options opts; /* its strings point at the copies below */
    char *discovery_file, *data_dir, *work_root, *ca_file, *ca_path, *child_program;
    unsigned char *secret;
    char **seeds; /* broker URLs of the options */
    size_t nseeds;
    const p2p_worker_function *fns;
    size_t nfns;

    char node_id[P2P_NODE_ID_LEN + 1];
    char *work_dir; /* this process's own directory under work_root */
    int work_lock_fd;
    p2p_http_client *http; /* pushes, gossip (the children transfer the blobs) */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC: capacity, stop */
    /* Timed waits (gossip, backoff) that only the stop ends early: apart
     * from `cond`, so that a call ending does not wake them. */
    pthread_cond_t stop_cond;
    pthread_cond_t spare_cond; /* the spawner: a spare to make, or its exit */
    bool sync_ready;           /* lock, cond and can_lock are initialised */
    bool started;
    atomic_bool stopping; /* no more claims; set under `lock` */
    atomic_bool aborting; /* the grace is over: kill what runs */
    int stop_fd;          /* eventfd readable once stopping */
    int abort_fd;         /* eventfd readable once aborting */
    p2p__broker *brokers[P2P_WORKER_MAX_BROKERS];
    size_t nbrokers;
    p2p__slot *slots;
    unsigned busy;
    pthread_t gossip;
    bool gossip_started;
    pthread_t spawner;
    bool spawner_started;
    p2p__child spares[P2P__MAX_SPARES]; /* under lock */
    unsigned nspares, target_spares;
    unsigned nloaned;                    /* under lock: spares out running a call, back after it */
    char *free_dirs[P2P__MAX_FREE_DIRS]; /* under lock: clean call directories kept */
    unsigned nfree_dirs, free_dir_seq;
    bool spawner_exit;      /* under lock: no call runs any more, the spawner may go */
    p2p_http_client *quick; /* gossip and probes: short timeouts, no retries */
    char **aliases;         /* URLs found to name a broker already polled */
    size_t naliases;
    pthread_mutex_t can_lock; /* serialises can_do_work */
    p2p_worker_stats stats;   /* under lock */
    /* Fairness between brokers (poller.c): the broker whose call took the
     * last slot, and how many calls took a slot so far; under lock. */
    const p2p__broker *last_served;
    uint64_t served;
};

/* Waits until a slot is free (true) or the worker stops (false). */
bool p2p__worker_wait_capacity(p2p_worker *w);
/* Takes a free slot into `*slot`; false when none is free or stopping. A
 * thread that ran there before must be joined by the caller (`*join`). */
bool p2p__worker_take_slot(p2p_worker *w, unsigned *slot, bool *join);
/* Gives a slot back (without a thread having run on it). */
void p2p__worker_put_slot(p2p_worker *w, unsigned slot);
/* True when every slot is taken. */
bool p2p__worker_full(p2p_worker *w);
/* Asks the user's predicate (serialised); true without one. */
bool p2p__worker_can_do_work(p2p_worker *w);
/* Sleeps until `deadline_ms` or the worker stops. False when stopping. */
bool p2p__worker_wait_until(p2p_worker *w, int64_t deadline_ms);
/* Records a failure or a success of a request to `b` (backoff, logs). */
void p2p__broker_failed(p2p_worker *w, p2p__broker *b, const p2p_error *err);
void p2p__broker_ok(p2p_worker *w, p2p__broker *b);
/* Adds one to a counter of the stats, under the lock. */
void p2p__worker_count(p2p_worker *w, uint64_t *counter);
/* Removes a directory tree (nftw), logging what cannot be removed. */
void p2p__worker_remove_tree(const char *path);

/* ---- gossip.c ---- */

/* Adds broker `url` (normalised; `uuid` may be "" when unknown) and starts
 * its pollers, unless it is known, the worker is stopping or full. Returns 1
 * when added, 0 when not, or an error. */
int p2p__gossip_add(p2p_worker *w, const char *url, const char *uuid, p2p_error *err) P2P_NODISCARD;
/* The gossip thread: every gossip_interval_ms, the discovery file again and
 * each broker's nodes route; new brokers are added. */
void *p2p__gossip_main(void *arg);

/* A claim, as search_work answers it. */
typedef struct p2p__claim {
    char identifier[P2P_HASH_HEX_LEN + 1];
    char token[33];
    json_t *args; /* owned */
    int64_t lease_expires_ms;
    int attempts;
} p2p__claim;

/* Reads a search_work answer (borrowed) for `function`. */
int p2p__claim_parse(const json_t *reply, const char *function, p2p__claim *out,
                     p2p_error *err) P2P_NODISCARD;
void p2p__claim_cleanup(p2p__claim *c);

/* Gives a claimed call back to its broker (logged; failures only logged). */
void p2p__claim_release(p2p_worker *w, p2p__broker *b, const char *function, const p2p__claim *c);

/* Starts a poller thread for (b, fn). */
int p2p__poller_start(p2p_worker *w, p2p__broker *b, const p2p_worker_function *fn,
                      p2p__poller **out, p2p_error *err) P2P_NODISCARD;
/* Wakes the poller out of a long-poll (the worker is stopping). */
void p2p__poller_wake(p2p__poller *p);
/* Joins the thread and frees. */
void p2p__poller_free(p2p__poller *p);

/* One call being run (runner.c); watch.c borrows it. */
typedef struct p2p__run {
    p2p_worker *w;
    unsigned slot;
    p2p__broker *b;
    const p2p_worker_function *fn;
    const char *function; /* the schema's name */
    p2p__claim claim;
    char *dir;        /* the per-call directory, removed at the end */
    int64_t renew_ms; /* heartbeat when silent this long */
    p2p__abort abort;
} p2p__run;

/* How a child ended, as watch.c saw it. */
typedef struct p2p__ending {
    json_t *result;         /* the child's last message (outputs, failed, error), or NULL */
    bool terminate;         /* stopped on the broker's request */
    bool lost;              /* the lease was lost: report nothing */
    bool aborted;           /* killed because the shutdown grace was over */
    int wstatus;            /* from waitpid */
    p2p__throttle progress; /* what is still to be pushed */
    bool exited;            /* reaped (else it sent its result and may still be exiting) */
    bool reusable;          /* it sent outputs or failed, nothing else, and waits for a job */
} p2p__ending;

/* Watches the running `child` of `r` until it sent its result, or exited and
 * is reaped: relays
 * its progress (throttled), heartbeats when it is silent, kills it when the
 * broker asks (SIGTERM, then SIGKILL after the grace), when the lease is
 * lost, or when the worker aborts. Fills `out` (its result is the caller's
 * to decref). */
void p2p__watch(p2p__run *r, p2p__child *child, p2p__ending *out);

/* Pushes `member`: `value` (stolen) for `r`, retrying transient failures
 * until it gets through, the lease is lost, or it is time to give up.
 * Returns 0 or the last error (logged). */
int p2p__run_push(p2p__run *r, const char *member, json_t *value, p2p__push_reply *reply);

/* Runs `claim` (taken over, even on error) of `fn` from `b` on `slot`, and
 * gives the slot back when the call is over: in a new thread, or when
 * `here`, in the calling thread, returning once the call is over (a poller
 * whose call took the last free slot would only wait for one meanwhile:
 * running it itself saves a thread's start on the call's path). */
int p2p__runner_start(p2p_worker *w, unsigned slot, p2p__broker *b, const p2p_worker_function *fn,
                      p2p__claim *claim, bool here, p2p_error *err) P2P_NODISCARD;

#endif
