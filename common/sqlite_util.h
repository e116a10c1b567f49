/* What the SQLite databases several processes share (the client's cache, the
 * file-hash cache) need when they are opened. */
#ifndef P2PRPC_SQLITE_UTIL_H
#define P2PRPC_SQLITE_UTIL_H

#include <sqlite3.h>

/* Puts the database `db` (borrowed) in WAL mode, so that readers of other
 * processes never block the one writer. Changing the journal mode needs the
 * file to itself, and SQLite then answers SQLITE_BUSY at once, without
 * calling the busy handler, when another connection opens the same new
 * database at that moment. So this retries every 5 ms, for at most `busy_ms`
 * in all. Returns SQLITE_OK or the last SQLite result code. */
int p2p_sqlite_set_wal(sqlite3 *db, int busy_ms);

#endif
