/* The SQLite backend of the call store (store.h): one database file per
 * broker, in WAL mode.
 *
 * One writer thread owns the only write connection. Callers queue their
 * changes and wait; the writer runs everything queued in one transaction, each
 * change inside its own savepoint (so that one refused change does not undo
 * the others), commits once, and wakes every caller with its own result. With
 * P2P_STORE_SYNC_FULL that commit is one fsync for the whole batch: group
 * commit. Reads run in parallel on a pool of read-only connections. See
 * docs/store.md for the schema, the indexes and the durability levels. */
#ifndef P2PRPC_STORE_SQLITE_H
#define P2PRPC_STORE_SQLITE_H

#include "store.h"

/* The schema version this build writes (PRAGMA user_version). */
#define P2P_STORE_SQLITE_SCHEMA 1

/* Opens (creating when missing, mode 0600, parent directories 0700) the
 * SQLite store at `path`. `opts` is copied; NULL means the defaults. On
 * success `*out` is a new store the caller frees with p2p_store_free().
 * Errors: P2P_EINVAL (bad options), P2P_ESTORE with SQLite's message (the file
 * cannot be opened, is not a database, is not a p2prpc store, or has a schema
 * newer than P2P_STORE_SQLITE_SCHEMA). The file is never modified when opening
 * fails. */
int p2p_store_sqlite_open(const char *path, const p2p_store_options *opts, p2p_store **out,
                          p2p_error *err) P2P_NODISCARD;

#endif
