/* A small leveled logger shared by every role.
 *
 * Lines look like `2026-11-21T09:30:00.123Z INFO  message`; at debug level the
 * source position is added: `... DEBUG common/http_server.c:120 message`.
 * Output goes to stderr unless p2p_log_open() names a file. Thread-safe: each
 * line is written with one write(2) call. */
#ifndef P2PRPC_LOG_H
#define P2PRPC_LOG_H

#include "error.h"

typedef enum p2p_log_level {
    P2P_LOG_DEBUG = 0,
    P2P_LOG_INFO = 1,
    P2P_LOG_WARN = 2,
    P2P_LOG_ERROR = 3,
    P2P_LOG_OFF = 4,
} p2p_log_level;

/* Sets the lowest level that is written. The default is P2P_LOG_INFO, or the
 * level named by $P2PRPC_LOG ("debug", "info", "warn", "error", "off") when set
 * at the first log call. */
void p2p_log_set_level(p2p_log_level level);

/* Returns the current level. */
p2p_log_level p2p_log_get_level(void);

/* Parses "debug", "info", "warn", "error" or "off" into `*out`. Returns 0, or
 * P2P_EINVAL for anything else (leaving `*out` untouched). */
int p2p_log_parse_level(const char *name, p2p_log_level *out) P2P_NODISCARD;

/* Sends log lines to the file at `path` (appending, created 0600 if missing)
 * instead of stderr. NULL goes back to stderr. Returns 0 or P2P_EIO. */
int p2p_log_open(const char *path, p2p_error *err) P2P_NODISCARD;

/* Writes one line when `level` is enabled. `file` and `line` are printed at
 * debug level only. Use the macros below rather than calling this. */
void p2p_log_write(p2p_log_level level, const char *file, int line, const char *fmt, ...)
    P2P_PRINTF(4, 5);

#define P2P_DEBUG(...) p2p_log_write(P2P_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define P2P_INFO(...) p2p_log_write(P2P_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define P2P_WARN(...) p2p_log_write(P2P_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define P2P_ERROR(...) p2p_log_write(P2P_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
