#include "sqlite_util.h"

#include <stdint.h>
#include <time.h>

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int p2p_sqlite_set_wal(sqlite3 *db, int busy_ms) {
    const int64_t deadline = now_ms() + (busy_ms > 0 ? busy_ms : 0);
    for (;;) {
        int rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || now_ms() >= deadline)
            return rc;
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}
