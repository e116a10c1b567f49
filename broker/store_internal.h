/* The backend side of the store interface: what a backend (SQLite, MongoDB)
 * implements. Not installed; only store.c and the backends include it.
 *
 * store.c validates every argument (identifiers, hashes, tokens, names,
 * ranges) before it calls a backend, so a backend may trust its inputs. Each
 * entry has the contract of the public function of the same name in store.h. */
#ifndef P2PRPC_STORE_INTERNAL_H
#define P2PRPC_STORE_INTERNAL_H

#include "store.h"

typedef struct p2p__store_ops {
    const char *name;
    void (*free)(p2p_store *store);
    int (*create)(p2p_store *store, const p2p_store_new_call *in, p2p_call *out, bool *created,
                  p2p_error *err);
    int (*get)(p2p_store *store, const char *identifier, p2p_call *out, p2p_error *err);
    int (*make_available)(p2p_store *store, const char *identifier, bool *changed, p2p_error *err);
    int (*claim)(p2p_store *store, const char *function, const char *worker, p2p_call *out,
                 p2p_error *err);
    /* progress < 0 means a plain renew. */
    int (*renew)(p2p_store *store, const char *identifier, const char *token, double progress,
                 p2p_store_lease *out, p2p_error *err);
    /* status is done, failed or terminated; text is the outputs or the message. */
    int (*finish)(p2p_store *store, const char *identifier, const char *token,
                  p2p_call_status status, const char *text, const char *const *blobs, size_t nblobs,
                  p2p_error *err);
    int (*terminate)(p2p_store *store, const char *identifier, p2p_call_status *status,
                     p2p_error *err);
    int (*release)(p2p_store *store, const char *identifier, const char *token,
                   p2p_call_status *status, p2p_error *err);
    int (*remove)(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                  p2p_error *err);
    int (*restart)(p2p_store *store, const char *identifier, p2p_store_hashes *orphans,
                   p2p_error *err);
    int (*requeue_expired)(p2p_store *store, size_t *requeued, size_t *failed, p2p_error *err);
    int (*expire)(p2p_store *store, int64_t cutoff_ms, size_t limit, size_t *deleted,
                  p2p_store_hashes *orphans, p2p_error *err);
    int (*count)(p2p_store *store, const char *function, uint64_t counts[P2P_CALL_STATUS_COUNT],
                 p2p_error *err);
    int (*list)(p2p_store *store, const p2p_store_query *query, p2p_call_list *out, p2p_error *err);
    int (*blob_refcount)(p2p_store *store, const char *hash, uint64_t *count, p2p_error *err);
    int (*checkpoint_put)(p2p_store *store, const char *identifier, const char *token,
                          const char *name, const char *hash, p2p_store_hashes *orphans,
                          p2p_error *err);
    int (*checkpoint_get)(p2p_store *store, const char *identifier, const char *name,
                          char hash[P2P_STORE_ID_LEN + 1], p2p_error *err);
    void (*get_stats)(p2p_store *store, p2p_store_stats *out);
    /* Added for pipelines (may be NULL in a backend that lacks it:
     * p2p_store_resolve then gives P2P_EINVAL). Exactly one of args and
     * error is set; see p2p_store_resolve. */
    int (*resolve)(p2p_store *store, const char *identifier, const char *args,
                   const char *const *blobs, size_t nblobs, const char *error, p2p_error *err);
    /* NULL exactly when resolve is. `pattern` is the text a reference to the
     * upstream has in canonical args (see p2p_store_has_waiting). */
    int (*has_waiting)(p2p_store *store, const char *pattern, bool *waiting, p2p_error *err);
} p2p__store_ops;

/* Every backend's handle begins with this, so that a p2p_store * points to it. */
struct p2p_store {
    const p2p__store_ops *ops;
    p2p_store_options opts; /* validated, clock filled in */
};

/* The current time from the store's clock. */
int64_t p2p__store_now(const p2p_store *store);

/* Fills in `opts` from `in` (NULL = defaults) and checks the values. */
int p2p__store_options_check(const p2p_store_options *in, p2p_store_options *opts,
                             p2p_error *err) P2P_NODISCARD;

/* Writes 16 random bytes as 32 lowercase hex characters and a NUL into `token`. */
int p2p__store_new_token(char token[P2P_STORE_TOKEN_LEN + 1], p2p_error *err) P2P_NODISCARD;

#endif
