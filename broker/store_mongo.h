/* The MongoDB backend of the call store (store.h): one database shared by any
 * number of brokers, one collection per function, claims with findAndModify.
 *
 * Every operation takes a client from one mongoc_client_pool_t and runs one
 * or a few single-document operations whose filters state what the change
 * requires (the call is queued, the lease token is current, the lease is
 * over), so that several brokers claiming, renewing, requeueing and expiring
 * at once each change a call at most once. Changes made by other brokers are
 * reported to on_change by a watcher thread within about half a second. See
 * docs/store.md ("The MongoDB backend") for the documents, the indexes and
 * the latencies. */
#ifndef P2PRPC_STORE_MONGO_H
#define P2PRPC_STORE_MONGO_H

#include "store.h"

/* How often the watcher looks for changes made by other brokers, in ms. */
#define P2P_STORE_MONGO_WATCH_MS 500

/* Opens the MongoDB store at `uri` ("mongodb://HOST:PORT/DB?options"; the
 * database is DB, "p2prpc" when the path is empty). `opts` is copied; NULL
 * means the defaults; sync full asks every write for journal and majority
 * acknowledgement. Unless the URI says otherwise, a server that cannot be
 * reached fails an operation after 5 s (serverSelectionTimeoutMS=5000). On
 * success `*out` is a new store the caller frees with p2p_store_free().
 * Errors: P2P_EINVAL (a malformed URI or database name, bad options),
 * P2P_EUNAVAIL ("database unavailable: ...": no server answers), P2P_ESTORE
 * (the server refused to set up the collections). */
int p2p_store_mongo_open(const char *uri, const p2p_store_options *opts, p2p_store **out,
                         p2p_error *err) P2P_NODISCARD;

#endif
