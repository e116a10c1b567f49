/* The broker: the reachable node that persists calls and hands them to
 * workers. It serves the HTTP API of docs/protocol.md (section "routes") for
 * the functions in its registry, over a call store (store.h), a blob store
 * (blobstore.h), and one maintenance thread (lease expiry, call expiry,
 * orphaned blobs).
 *
 * Life: p2p_broker_options_init, set fields, p2p_broker_new; register the
 * functions through p2p_broker_registry(); p2p_broker_start; ...;
 * p2p_broker_stop (or p2p_broker_free, which stops). p2p_broker_main() wraps
 * all of it as a program (flags in docs/cli.md, "p2prpc-broker"), for the
 * p2prpc-broker binary and for generated brokers. */
#ifndef P2PRPC_BROKER_H
#define P2PRPC_BROKER_H

#include "error.h"
#include "registry.h"
#include "schema.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of the options (and of the program's flags). */
#define P2P_BROKER_DEFAULT_PORT 8470
#define P2P_BROKER_DEFAULT_LEASE_MS 60000
#define P2P_BROKER_DEFAULT_MAX_ATTEMPTS 3
#define P2P_BROKER_DEFAULT_MAX_BLOB_SIZE (64ull << 30)
/* Longest long-poll wait= accepted, in seconds. */
#define P2P_BROKER_MAX_WAIT_S 300

/* Every pointer is borrowed until p2p_broker_new returns (it copies them). */
typedef struct p2p_broker_options {
    const char *host; /* numeric address to listen on; default "127.0.0.1" */
    uint16_t port;    /* 0 = any free port (see p2p_broker_port) */
    /* The node's data directory (node_id, default store and blobs); NULL =
     * p2p_node_data_dir(). */
    const char *data_dir;
    const char *store;           /* "sqlite:PATH" or PATH; NULL = sqlite:DATA_DIR/broker.db */
    const char *blobs_dir;       /* NULL = DATA_DIR/blobs */
    const unsigned char *secret; /* requests must be signed with it; NULL = not signed */
    size_t secret_len;           /* bytes of `secret` */
    const char *tls_cert_file;   /* PEM; both or neither: HTTPS */
    const char *tls_key_file;
    int64_t lease_ms;         /* a claim's lease; default 60 s */
    int max_attempts;         /* claims before an expired lease fails the call; default 3 */
    int64_t expire_ms;        /* calls and unreferenced blobs go after this; 0 = never */
    uint64_t max_blob_size;   /* bytes; default 64 GiB */
    p2p_store_sync sync;      /* store and blob durability; default normal */
    const char *const *peers; /* other brokers' URLs, listed by the nodes route */
    size_t n_peers;
    const char *public_url;          /* this broker's URL in nodes; NULL = from the bound address */
    unsigned threads;                /* HTTP threads; 0 = 4 */
    int64_t maintenance_interval_ms; /* 0 = lease_ms / 10, between 50 ms and 1 s */
    /* The store's clock (ms since the epoch), for tests; NULL = real time. */
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
} p2p_broker_options;

/* Fills `opts` with the defaults above. */
void p2p_broker_options_init(p2p_broker_options *opts);

typedef struct p2p_broker p2p_broker;

/* Checks and copies `opts`. Nothing is opened or bound yet. `*out` is the
 * caller's (p2p_broker_free). Returns 0, P2P_EINVAL (which option and why in
 * `err`), P2P_ENOMEM. */
int p2p_broker_new(const p2p_broker_options *opts, p2p_broker **out, p2p_error *err) P2P_NODISCARD;

/* The broker's function registry: add the functions it serves before
 * p2p_broker_start (read-only afterwards). Borrowed until p2p_broker_free. */
p2p_registry *p2p_broker_registry(p2p_broker *b);

/* Opens the data directory, node identity, store and blob store, then starts
 * serving and the maintenance thread. Returns 0; P2P_EINVAL (already
 * started, bad TLS files), P2P_ESTORE, P2P_EIO (cannot bind, cannot create a
 * directory), P2P_ENOMEM. On error everything opened is closed again. */
int p2p_broker_start(p2p_broker *b, p2p_error *err) P2P_NODISCARD;

/* The bound port once started (the real one with port 0), else 0. */
uint16_t p2p_broker_port(const p2p_broker *b);

/* "http://HOST:PORT" (https with TLS) of the bound address once started,
 * else NULL. Borrowed until p2p_broker_free. */
const char *p2p_broker_url(const p2p_broker *b);

/* This node's UUID once started, else NULL. Borrowed until p2p_broker_free. */
const char *p2p_broker_node_id(const p2p_broker *b);

/* Runs one maintenance pass now, in the calling thread (tests): requeue
 * expired leases, expire calls, remove orphaned blobs. Returns 0 or the first
 * error met. Only while started. */
int p2p_broker_maintain(p2p_broker *b, p2p_error *err) P2P_NODISCARD;

/* Stops maintenance, answers parked long-polls (503), stops serving and
 * closes the store. Idempotent. */
void p2p_broker_stop(p2p_broker *b);

/* Stops and frees. NULL is a no-op. */
void p2p_broker_free(p2p_broker *b);

/* A whole broker program: parses the flags of `argv` (docs/cli.md,
 * "p2prpc-broker"; --schema files are added after `schemas`), serves the
 * `n` schemas `schemas` (borrowed; finished; may be NULL when n is 0) until
 * SIGTERM or SIGINT, then stops cleanly. Prints "listening on URL" on stdout
 * once serving. Returns the exit status: 0 after a signal, 1 when the broker
 * cannot start, 2 on a usage error. Call from main(), before any other
 * thread exists: it blocks SIGTERM and SIGINT in the process. */
int p2p_broker_main(int argc, char **argv, const p2p_schema *const *schemas, size_t n);

#endif
