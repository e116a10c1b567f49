/* What the broker's integration tests share: a real p2prpc-broker process in
 * a scratch directory (its store, blobs, secret and schema files), the three
 * functions it serves, and one helper per route of docs/protocol.md.
 *
 * Every helper that can fail asserts (test.h style, aborting with the caller's
 * line through HARNESS_EXPECT) except the ones that return a harness_reply:
 * those leave the status to the test, which is the point of most tests. */
#ifndef P2PRPC_TEST_BROKER_FIXTURE_H
#define P2PRPC_TEST_BROKER_FIXTURE_H

#include "harness.h"
#include "hash.h"
#include "schema.h"
#include "test.h"

#include <jansson.h>
#include <stdbool.h>

/* The functions every test broker serves (written to its --schema file). */
typedef enum fx_fn {
    FX_ADD,     /* p2prpc_add(int64 a, int64 b) -> int64 sum */
    FX_ANALYZE, /* p2prpc_analyze_large_file(file video_handle, int64 arg2)
                   -> file results_file1, file results_file2, int64 res_var */
    FX_ECHO,    /* p2prpc_echo(string text, double scale, bool flag) -> string out */
    FX_FN_COUNT
} fx_fn;

/* The finished schema of `f`, built on first use; borrowed for the program's
 * life. */
const p2p_schema *fx_schema(fx_fn f);
const char *fx_name(fx_fn f);

/* Broker flags; zero = the broker's default. */
typedef struct broker_config {
    int lease_seconds;
    int max_attempts;
    long long max_blob_size;
    const char *sync;              /* "normal" or "full" */
    bool no_secret;                /* run without --secret-file */
    const char *const *extra_args; /* more flags, NULL-terminated */
} broker_config;

typedef struct broker {
    char dir[512];
    char store[HARNESS_PATH_MAX]; /* "sqlite:DIR/broker.db" */
    char blobs[HARNESS_PATH_MAX];
    char data[HARNESS_PATH_MAX];
    char secret_path[HARNESS_PATH_MAX];
    char schema_path[HARNESS_PATH_MAX];
    char log[HARNESS_PATH_MAX];
    unsigned char secret[32];
    size_t secret_len; /* 0 without a secret */
    broker_config cfg;
    harness_proc *proc;
    char url[HARNESS_URL_MAX];
    p2p_http_client *client; /* signed; recreated at every start */
    int starts;
} broker;

/* Makes a scratch directory $P2PRPC_TEST_TMP/NAME.PID with a secret file and
 * the schema file; nothing runs yet. `cfg` is copied (may be NULL). */
void broker_init(broker *b, const char *name, const broker_config *cfg);

/* Starts the broker on 127.0.0.1:0 over the same store and blobs as any
 * previous run and waits for its listening line (asserting it is exactly
 * "listening on http://127.0.0.1:PORT"). */
void broker_start(broker *b);

/* broker_start without the asserts on starting: returns 0, or the error of
 * harness_proc_start (the port is taken, the broker exited...) with nothing
 * left running, so that a caller may retry. */
int broker_try_start(broker *b, p2p_error *err) P2P_NODISCARD;

/* SIGTERM; asserts the broker exits with status 0 within 30 s. */
void broker_stop(broker *b);

/* SIGKILL and reap. */
void broker_kill(broker *b);

/* Kills the broker if it runs, frees the client, removes the scratch
 * directory. */
void broker_cleanup(broker *b);

/* A new client signed with the broker's secret (caller frees). */
p2p_http_client *broker_client(const broker *b, long timeout_ms);

/* ---- calls ---- */

/* The identifier of a call to `f` with `args` (borrowed), computed as a
 * client does (p2p_value_list_from_json + p2p_ident_compute). */
void fx_call_id(fx_fn f, const json_t *args, char id[P2P_HASH_HEX_LEN + 1]);

/* {"a": a, "b": b} for FX_ADD (new reference). */
json_t *fx_add_args(long long a, long long b);

/* POST /api/v1/FN/ROUTE with `body` (borrowed; NULL = none). `c` NULL = the
 * broker's client. `query` (NULL or "wait=5") is appended. */
int fx_post(broker *b, p2p_http_client *c, fx_fn f, const char *route, const char *query,
            const json_t *body, harness_reply *r);

/* Creates a call: push_update with identifier, fingerprint, `args`
 * (borrowed) and `execute`; writes the identifier to `id`. */
int fx_push(broker *b, p2p_http_client *c, fx_fn f, const json_t *args, bool execute,
            char id[P2P_HASH_HEX_LEN + 1], harness_reply *r);

/* POST execute_function / terminate / delete with {"identifier": id}. */
int fx_on_id(broker *b, p2p_http_client *c, fx_fn f, const char *route, const char *id,
             harness_reply *r);

/* search_work?wait=WAIT (no query when wait < 0) with {"worker": worker}
 * (no body when worker is NULL). */
int fx_claim(broker *b, p2p_http_client *c, fx_fn f, int wait, const char *worker,
             harness_reply *r);

/* A worker's push_update: {"identifier", "lease_token"} plus the members of
 * `extra` (taken: decref'd here). */
int fx_worker_push(broker *b, p2p_http_client *c, fx_fn f, const char *id, const char *token,
                   json_t *extra, harness_reply *r);

/* pull_update?identifier=ID[&since=S][&wait=W] (since/wait < 0: left out). */
int fx_pull(broker *b, p2p_http_client *c, fx_fn f, const char *id, long long since, int wait,
            harness_reply *r);

/* Asserts pull_update answers 200 with `status` (when not NULL); returns the
 * call's version. */
long long fx_expect_status(broker *b, fx_fn f, const char *id, const char *status);

/* PUT /api/v1/blobs/HASH of `len` bytes; writes the hash to `hash`. */
int fx_blob_put(broker *b, p2p_http_client *c, const void *data, size_t len,
                char hash[P2P_HASH_HEX_LEN + 1], harness_reply *r);

/* ---- state snapshots ---- */

/* The calls of `f` per status (indexed like p2p_call_status: pushed, queued,
 * running, done, failed, terminated), read from GET /metrics. A status the
 * metrics do not list counts 0. */
void fx_counts(broker *b, fx_fn f, long long counts[6]);

/* The value of the first metrics line whose name is `name` and whose labels
 * contain every "k=\"v\"" of `labels` (NULL = any); -1 when absent. */
double fx_metric(const char *metrics_text, const char *name, const char *const *labels);

/* GET /metrics body (caller frees). */
char *fx_metrics_text(broker *b);

/* Reads GET /metrics every 10 ms until the metric `name` (no labels) is at
 * least `min`; fails the test after `timeout_ms`. For events only the broker
 * sees, such as a long-poll being parked (p2prpc_longpoll_waiting). */
void fx_await_metric(broker *b, const char *name, double min, long timeout_ms);

#endif
