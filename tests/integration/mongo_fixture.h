/* A MongoDB server for the integration tests of the MongoDB backend
 * (test_mongo_*.c), and a TCP proxy in front of it that the tests can take
 * down and bring back.
 *
 * The server is the real MongoDB at $P2PRPC_TEST_MONGO_URI when that is set;
 * else jongodb, the npm test server (tests/mongo/server.sh install), started
 * by the test itself from $P2PRPC_TEST_MONGO_BIN on 127.0.0.1 with a free
 * port, and killed by PID at the end. Without either, the test is skipped
 * (exit 77), or fails when P2PRPC_TEST_MONGO_REQUIRED=1 (make test).
 *
 * Each fixture names a database of its own (p2pi_PID_NAME), so tests never
 * see each other's calls; on a real server it is dropped at cleanup.
 *
 * jongodb's known gaps (tests/mongo/README.md): its concurrent findAndModify
 * and conditional updates are not atomic, it ignores projections, and it has
 * no dropDatabase, listCollections or endSessions. A test asserts what such a
 * server cannot honour only when mongo_fixture_is_jongodb() is false, and says
 * so; everything else runs on both. */
#ifndef P2PRPC_TEST_MONGO_FIXTURE_H
#define P2PRPC_TEST_MONGO_FIXTURE_H

#include "error.h"
#include "harness.h"

#include <stdbool.h>

/* Exit status CTest reads as "skipped" (SKIP_RETURN_CODE 77). */
#define MONGO_FIXTURE_SKIP 77

typedef struct mongo_fixture {
    char base_uri[512];              /* the server, database part as given */
    char db[64];                     /* this fixture's database */
    char uri[640];                   /* base_uri with db: what --store gets */
    bool jongodb;                    /* the server says it is jongodb (buildInfo) */
    bool external;                   /* $P2PRPC_TEST_MONGO_URI */
    harness_proc *proc;              /* the jongodb we started, or NULL */
    char dir[HARNESS_PATH_MAX - 16]; /* its scratch directory, or "" */
    char log[HARNESS_PATH_MAX];
} mongo_fixture;

/* Starts (or finds) the server and names the database "p2pi_PID_NAME" (`name`
 * borrowed; letters, digits, '_'). Skips the test (exit 77) when there is no
 * server, as said above; asserts on any other failure. */
void mongo_fixture_start(mongo_fixture *m, const char *name);

/* The URI of this fixture's database through `host_port` ("127.0.0.1:PORT",
 * a mongo_proxy) instead of the server's hosts, with directConnection=true,
 * into `out`. With a replica set in $P2PRPC_TEST_MONGO_URI, name its primary
 * first: the proxy relays to the first host only. */
void mongo_fixture_uri_for(const mongo_fixture *m, const char *host_port, char *out, size_t size);

/* "127.0.0.1:PORT" of the server (the first host of the URI) into `out`. */
void mongo_fixture_host_port(const mongo_fixture *m, char *out, size_t size);

/* Runs `ping`: true when the server answers within 5 s. */
bool mongo_fixture_ping(const mongo_fixture *m);

/* Drops the database on a real server, stops the jongodb we started. NULL-safe
 * (a zeroed fixture is fine). */
void mongo_fixture_cleanup(mongo_fixture *m);

/* Prints "SKIPPED on jongodb: WHAT: WHY", cleans `m` up and exits 77. For
 * checks a test server cannot honour, once the test asserted everything else. */
void mongo_fixture_skip_jongodb(mongo_fixture *m, const char *what, const char *why)
    __attribute__((noreturn));

/* ---- a TCP proxy that can take the database "down" ---- */

typedef struct mongo_proxy mongo_proxy;

/* Relays 127.0.0.1:PORT (a free port, kept for the proxy's life) to the
 * server `host_port` ("127.0.0.1:PORT", borrowed). Returns 0, P2P_EIO or
 * P2P_ENOMEM. */
int mongo_proxy_start(const char *host_port, mongo_proxy **out, p2p_error *err) P2P_NODISCARD;

/* "127.0.0.1:PORT" of the proxy; borrowed until free. */
const char *mongo_proxy_host_port(const mongo_proxy *p);

/* Down: closes every relayed connection, and from now on closes each new one
 * at once (the port stays bound, so clients see a server that resets them).
 * Up: relays again. */
void mongo_proxy_set_down(mongo_proxy *p, bool down);

/* Connections accepted so far (relayed or refused). */
int mongo_proxy_accepted(mongo_proxy *p);

/* Closes everything and stops the threads. NULL is a no-op. */
void mongo_proxy_free(mongo_proxy *p);

#endif
