/* Shared by the broker's own files (broker.c, routes_*.c, maintenance.c).
 * Not installed, not for other modules. */
#ifndef P2PRPC_BROKER_INTERNAL_H
#define P2PRPC_BROKER_INTERNAL_H

#include "blobstore.h"
#include "broker.h"
#include "http_server.h"
#include "maintenance.h"
#include "metrics.h"
#include "node.h"
#include "registry.h"
#include "sign.h"
#include "store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Change counters are spread over this many buckets (by a hash of the
 * function name or identifier), so that a long-poll re-checks only when a
 * change may concern it. */
#define P2P__BROKER_EVENT_BUCKETS 64

struct p2p_broker {
    p2p_broker_options opts; /* strings below are owned copies */
    char *host, *data_dir, *store_loc, *blobs_dir, *public_url, *tls_cert, *tls_key;
    unsigned char *secret;
    char **peers;
    p2p_registry *registry;
    /* Set by start, cleared by stop. */
    bool started;
    char node_id[P2P_NODE_ID_LEN + 1];
    char url[300];
    p2p_store *store;
    p2p_blobstore *blobs;
    p2p_sign_verifier *verifier;
    p2p_metrics *metrics;
    p2p_maintenance *maintenance;
    /* Read by the store's change callback from a store thread: NULL while
     * the server does not exist. */
    _Atomic(p2p_http_server *) server;
    /* Taken shared by "check the blobs exist, then reference them" (create,
     * complete) and exclusive by "no reference left, then unlink": a call
     * can never reference a blob that is being removed. */
    pthread_rwlock_t blob_lock;
    /* Bumped by every committed change, before the wake-up is sent: a long-poll
     * reads its bucket before checking and again after parking, and wakes
     * itself if it moved (the change may have been announced in between). */
    _Atomic uint64_t queued_events[P2P__BROKER_EVENT_BUCKETS]; /* by function */
    _Atomic uint64_t call_events[P2P__BROKER_EVENT_BUCKETS];   /* by identifier */
    /* One maintenance pass at a time; it guards the two fields after it. */
    pthread_mutex_t maintain_lock;
    int64_t maintenance_ms; /* time between two passes, set by start */
    unsigned sweep_shard;   /* next blob shard the sweep visits */
};

/* The bucket of a function name or identifier. */
unsigned p2p__broker_bucket(const char *s);

/* Long-poll topics: "work:FUNCTION" and "call:IDENTIFIER". */
#define P2P__BROKER_TOPIC_MAX (8 + P2P_STORE_NAME_MAX)
void p2p__broker_work_topic(const char *function, char out[P2P__BROKER_TOPIC_MAX]);
void p2p__broker_call_topic(const char *identifier, char out[P2P__BROKER_TOPIC_MAX]);

/* Wakes the waiters of `topic`, if the server runs. Any thread. */
void p2p__broker_notify(p2p_broker *b, const char *topic);

/* Removes those of `hashes` that no call references, each under the blob
 * lock taken exclusive. Returns how many files went; failures are logged. */
size_t p2p__broker_remove_orphans(p2p_broker *b, const p2p_store_hashes *hashes);

/* One maintenance pass (maintenance.c): requeue expired leases, expire calls
 * and their blobs, sweep one shard of unreferenced old blobs. The caller holds
 * maintain_lock. Returns 0 or the first error. */
int p2p__maintenance_pass(p2p_broker *b, p2p_error *err) P2P_NODISCARD;

/* ---- helpers for route handlers: each answers the request on failure ---- */

/* The schema of the {function} of the path; NULL after answering 404. */
const p2p_schema *p2p__route_function(p2p_http_request *req, p2p_broker *b);

/* Parses the JSON object body into `*out` (caller json_decref's); answers
 * 400 and returns an error otherwise. */
int p2p__route_body(p2p_http_request *req, json_t **out) P2P_NODISCARD;

/* Reads member "identifier" of `body`: a valid identifier or a 400 answer. */
const char *p2p__route_identifier(p2p_http_request *req, const json_t *body);

/* Refuses (400) any member of `body` outside the NULL-terminated `allowed`. */
int p2p__route_only(p2p_http_request *req, const json_t *body,
                    const char *const *allowed) P2P_NODISCARD;

/* Reads call `identifier` of the function of `schema` into `call`
 * (initialised): 404 when it does not exist or belongs to another function. */
int p2p__route_get_call(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                        const char *identifier, p2p_call *call) P2P_NODISCARD;

/* Answers with the store's error `err` (its code picks the status). */
void p2p__route_store_error(p2p_http_request *req, const p2p_error *err);

/* The JSON of a call for pull_update; NULL when out of memory. */
json_t *p2p__route_call_json(const p2p_call *call);

/* Route handlers (one table in broker.c). */
void p2p__route_push_update(p2p_http_request *req, void *ctx);
void p2p__route_pull_update(p2p_http_request *req, void *ctx);
void p2p__route_execute_function(p2p_http_request *req, void *ctx);
void p2p__route_search_work(p2p_http_request *req, void *ctx);
void p2p__route_terminate(p2p_http_request *req, void *ctx);
void p2p__route_delete(p2p_http_request *req, void *ctx);
void p2p__route_restart(p2p_http_request *req, void *ctx);
void p2p__route_checkpoint_put(p2p_http_request *req, void *ctx);
void p2p__route_checkpoint_get(p2p_http_request *req, void *ctx);
void p2p__route_calls(p2p_http_request *req, void *ctx);
void p2p__route_blob_put(p2p_http_request *req, void *ctx);
void p2p__route_blob_head(p2p_http_request *req, void *ctx);
void p2p__route_blob_get(p2p_http_request *req, void *ctx);
void p2p__route_blob_delete(p2p_http_request *req, void *ctx);
void p2p__route_health(p2p_http_request *req, void *ctx);
void p2p__route_metrics(p2p_http_request *req, void *ctx);
void p2p__route_nodes(p2p_http_request *req, void *ctx);
void p2p__route_functions(p2p_http_request *req, void *ctx);
void p2p__route_status_page(p2p_http_request *req, void *ctx);

/* Checks that each file value among `values` has its blob on this broker
 * with the value's size (else answers 409); their hashes go to `hashes`
 * (room for n). Called with the blob lock held (routes_calls.c). */
int p2p__route_check_blobs(p2p_http_request *req, p2p_broker *b, const p2p_param *params,
                           const p2p_value *values, size_t n, const char *what, const char **hashes,
                           size_t *nhashes);

/* Pipelines (pipeline.c): an argument {"ref": {"identifier", "output"}}. */
bool p2p__pipeline_is_ref(const json_t *v);
bool p2p__pipeline_has_refs(const json_t *args);
/* A pushed call whose stored args hold a reference: shown as "waiting". */
bool p2p__pipeline_waiting(const p2p_call *call);
/* push_update creating a call with references (answers the request). */
void p2p__pipeline_create(p2p_http_request *req, p2p_broker *b, const p2p_schema *schema,
                          const json_t *args, const char *identifier);
/* Queues the waiting call when its upstreams are done, fails it when one
 * failed; leaves it waiting otherwise. */
void p2p__pipeline_settle(p2p_broker *b, const char *identifier);
/* Settles every waiting call (maintenance, and after a call finishes). */
void p2p__pipeline_pass(p2p_broker *b);
/* After call `identifier` finished (done, failed or terminated): the pass,
 * when some waiting call refers to it. */
void p2p__pipeline_ended(p2p_broker *b, const char *identifier);

#endif
