/* The worker: the node behind NAT that pulls calls from brokers, runs the
 * user's functions in child processes, and pushes progress and results back
 * (DESIGN §6; how it speaks to a broker is in docs/protocol.md, "Worker").
 *
 * It opens only outbound connections. For every broker it knows (the
 * discovery file, plus the brokers their nodes route reports) and every
 * function of its dispatch table it keeps one long-poll search_work open,
 * while it has a free slot (--concurrency) and the user's can_do_work
 * predicate says yes. Each claimed call runs in a child process: the same
 * program, executed again with P2P_WORKER_CHILD_FLAG as its first argument,
 * so user code never runs in a copy of this multi-threaded process. A crash
 * or a non-zero return fails the call; the worker goes on.
 *
 * Life: p2p_worker_options_init, set fields, p2p_worker_new,
 * p2p_worker_start; ...; p2p_worker_stop (graceful: stops claiming, lets
 * running calls finish within the grace period, then kills and releases
 * them); p2p_worker_free. p2p_worker_main() wraps all of it as a program for
 * generated workers (flags in docs/cli.md, "worker programs"). */
#ifndef P2PRPC_WORKER_H
#define P2PRPC_WORKER_H

#include "error.h"
#include "schema.h"
#include "value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The hidden first argument that makes p2p_worker_main() run one call as a
 * child process. A program whose main() is not p2p_worker_main() must pass
 * such an argv to it before doing anything else (the in-process tests do). */
#define P2P_WORKER_CHILD_FLAG "--p2p-child"

/* Defaults of the options (and of the program's flags). */
#define P2P_WORKER_DEFAULT_CONCURRENCY 1
#define P2P_WORKER_DEFAULT_LEASE_RENEW_MS 10000
#define P2P_WORKER_DEFAULT_GRACE_MS 10000
#define P2P_WORKER_DEFAULT_POLL_WAIT_S 30
#define P2P_WORKER_DEFAULT_GOSSIP_MS 60000
#define P2P_WORKER_DEFAULT_PROGRESS_MS 250
/* Most brokers one worker polls; gossip beyond this is ignored (logged). */
#define P2P_WORKER_MAX_BROKERS 64
/* Most calls one worker runs at once. */
#define P2P_WORKER_MAX_CONCURRENCY 1024

/* Runs in the child. `inputs` are decoded in schema input order; file inputs
 * have as.file.path = the downloaded local file. The adapter fills `outputs`
 * (schema output order, initialised with p2p_value_init); a file output is a
 * path the function wrote (inside `out_dir`, which is also the working
 * directory, or anywhere readable), and its hash may be left empty: the
 * worker hashes it. Returns the user function's int: 0 success, else failure
 * (with the message given to p2p_fail(), if any). */
typedef int (*p2p_worker_invoke_fn)(const p2p_value *inputs, p2p_value *outputs,
                                    const char *out_dir);

/* One entry of the dispatch table: what generated code fills (tests fill it
 * by hand). */
typedef struct p2p_worker_function {
    const p2p_schema *schema; /* borrowed; finished */
    p2p_worker_invoke_fn invoke;
} p2p_worker_function;

/* Asked before every claim, for example "is a GPU free?". When it returns
 * false the worker does not claim, and asks again about every 500 ms. Calls
 * are serialised (never two at once), from the worker's polling threads. */
typedef bool (*p2p_worker_can_do_work_fn)(void *ctx);

/* Every pointer is borrowed until p2p_worker_new returns (it copies them),
 * except can_do_work_ctx, borrowed until p2p_worker_free. */
typedef struct p2p_worker_options {
    const char *const *brokers; /* broker URLs (http or https), with the discovery file's */
    size_t n_brokers;
    /* A file of broker URLs, one per line; '#' starts a comment. Read at
     * start (a bad line is an error) and again at each gossip round. */
    const char *discovery_file;
    const char *data_dir;        /* node_id and default work dir; NULL = p2p_node_data_dir() */
    const char *work_dir;        /* per-call directories go under it; NULL = DATA_DIR/work */
    const unsigned char *secret; /* signs every request; NULL = unsigned */
    size_t secret_len;
    const char *ca_file;          /* TLS: PEM bundle to trust instead of the system's */
    const char *ca_path;          /* TLS: directory of hashed CA certificates */
    bool insecure;                /* TLS: skip peer and host verification */
    unsigned concurrency;         /* calls at once, 1..P2P_WORKER_MAX_CONCURRENCY; default 1 */
    int64_t lease_renew_ms;       /* heartbeat when silent this long; default 10 s */
    int64_t grace_ms;             /* terminate and shutdown grace; default 10 s; 0 = none */
    int poll_wait_s;              /* search_work long-poll wait, 1..300; default 30 */
    int64_t gossip_interval_ms;   /* nodes route and discovery file again; default 60 s */
    int64_t progress_interval_ms; /* at most one progress push per this; default 250 */
    const char *child_program;    /* what runs a call; default "/proc/self/exe" */
    /* Children kept started (exec'ed, waiting for a job) ahead of their
     * call: it saves the ~5 ms of CPU a start costs. A child that ended its
     * call with a result runs the next one (up to 1,000 calls); one that
     * crashed or was killed is replaced. They see the environment of the
     * worker when they started, and a function's global state lives on
     * from one call to the next in the same child. -1 (the default) =
     * concurrency, at most 4; 0 = start a fresh child for each call. */
    int spare_children;
    p2p_worker_can_do_work_fn can_do_work; /* NULL = always yes */
    void *can_do_work_ctx;
} p2p_worker_options;

/* Fills `opts` with the defaults above. */
void p2p_worker_options_init(p2p_worker_options *opts);

typedef struct p2p_worker p2p_worker;

/* Checks and copies `opts`. `fns` (n entries, each a finished schema with a
 * distinct name and an invoke function) is borrowed until p2p_worker_free,
 * schemas included. Nothing is opened yet. `*out` is the caller's
 * (p2p_worker_free). Returns 0, P2P_EINVAL (which option and why in `err`) or
 * P2P_ENOMEM. */
int p2p_worker_new(const p2p_worker_options *opts, const p2p_worker_function *fns, size_t n,
                   p2p_worker **out, p2p_error *err) P2P_NODISCARD;

/* Loads the node identity, prepares the work directory (removing what dead
 * workers left there), reads the discovery file and starts polling every
 * broker. Returns 0; P2P_EINVAL (already started, no broker at all, a bad URL
 * or discovery line), P2P_ENOTFOUND (discovery file missing), P2P_EIO,
 * P2P_ENOMEM. A broker that is down is not an error: it is polled with
 * backoff until it answers. On error nothing is left running. */
int p2p_worker_start(p2p_worker *w, p2p_error *err) P2P_NODISCARD;

/* This node's UUID once started, else NULL. Borrowed until p2p_worker_free. */
const char *p2p_worker_node_id(const p2p_worker *w);

/* How many brokers the worker polls now (grows with gossip). */
size_t p2p_worker_broker_count(p2p_worker *w);

/* What the worker did since it started. */
typedef struct p2p_worker_stats {
    uint64_t claimed;    /* calls claimed (over-claims given back included) */
    uint64_t done;       /* calls completed with outputs */
    uint64_t failed;     /* calls reported failed (crash, non-zero return, bad input) */
    uint64_t terminated; /* calls stopped on request and reported terminated */
    uint64_t released;   /* calls given back to their broker */
    uint64_t lost;       /* calls whose lease was lost (nothing reported) */
    unsigned running;    /* calls running now */
} p2p_worker_stats;

/* Copies the counters into `out`. Thread-safe. */
void p2p_worker_get_stats(p2p_worker *w, p2p_worker_stats *out);

/* Graceful stop: stops claiming at once (open long-polls are dropped), waits
 * up to grace_ms for running calls to finish, then kills the children still
 * running and releases their calls, so their brokers queue them again at once.
 * Returns once every thread and child is gone. Idempotent. */
void p2p_worker_stop(p2p_worker *w);

/* Stops (as above) and frees. NULL is a no-op. */
void p2p_worker_free(p2p_worker *w);

/* A whole worker program for the `n` functions of `fns` (borrowed): parses
 * the flags of `argv` (docs/cli.md, "worker programs"), prints
 * "worker NODE_UUID serving N function(s) from M broker(s)" on stdout once
 * polling, and runs until SIGTERM or SIGINT, then stops gracefully.
 * `--dump-schemas FILE` writes the functions' schemas as a JSON array instead.
 * When argv[1] is P2P_WORKER_CHILD_FLAG it runs one call as a child process
 * instead and returns its exit status. Returns the exit status: 0 after a
 * signal (or --help, --version, --dump-schemas), 1 when the worker cannot
 * start, 2 on a usage error. Call from main() before any other thread exists:
 * it blocks SIGTERM and SIGINT in the process. `can_do_work` (may be NULL) is
 * called with `ctx` as in p2p_worker_options. */
int p2p_worker_main(int argc, char **argv, const p2p_worker_function *fns, size_t n,
                    p2p_worker_can_do_work_fn can_do_work, void *ctx);

#endif
