#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* -1 until the first use reads $P2PRPC_LOG. */
static atomic_int current_level = -1;
/* The fd lines go to; swapped under `fd_lock` so a line never hits a closed fd. */
static int log_fd = STDERR_FILENO;
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

int p2p_log_parse_level(const char *name, p2p_log_level *out) {
    static const char *const lower[] = {"debug", "info", "warn", "error", "off"};
    if (name == NULL)
        return P2P_EINVAL;
    for (int i = 0; i <= P2P_LOG_OFF; i++) {
        if (strcasecmp(name, lower[i]) == 0) {
            *out = (p2p_log_level)i;
            return 0;
        }
    }
    return P2P_EINVAL;
}

p2p_log_level p2p_log_get_level(void) {
    int level = atomic_load(&current_level);
    if (level >= 0)
        return (p2p_log_level)level;
    p2p_log_level parsed = P2P_LOG_INFO;
    const char *env = getenv("P2PRPC_LOG");
    if (env != NULL && p2p_log_parse_level(env, &parsed) != 0)
        parsed = P2P_LOG_INFO;
    int expected = -1;
    atomic_compare_exchange_strong(&current_level, &expected, (int)parsed);
    return (p2p_log_level)atomic_load(&current_level);
}

void p2p_log_set_level(p2p_log_level level) {
    atomic_store(&current_level, (int)level);
}

int p2p_log_open(const char *path, p2p_error *err) {
    int fd = STDERR_FILENO;
    if (path != NULL) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
            return p2p_error_errno(err, P2P_EIO, errno, "cannot open log file %s", path);
    }
    pthread_mutex_lock(&fd_lock);
    int old = log_fd;
    log_fd = fd;
    pthread_mutex_unlock(&fd_lock);
    if (old != STDERR_FILENO)
        close(old);
    return 0;
}

/* Formats the current UTC time as 2026-11-21T09:30:00.123Z. */
static void format_time(char *buf, size_t size) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

void p2p_log_write(p2p_log_level level, const char *file, int line, const char *fmt, ...) {
    if (level < p2p_log_get_level() || level >= P2P_LOG_OFF)
        return;
    char line_buf[2048];
    char when[40];
    format_time(when, sizeof(when));
    int n;
    if (level == P2P_LOG_DEBUG)
        n = snprintf(line_buf, sizeof(line_buf), "%s %-5s %s:%d ", when, level_names[level], file,
                     line);
    else
        n = snprintf(line_buf, sizeof(line_buf), "%s %-5s ", when, level_names[level]);
    if (n < 0)
        return;
    size_t used = (size_t)n < sizeof(line_buf) ? (size_t)n : sizeof(line_buf) - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line_buf + used, sizeof(line_buf) - used, fmt, ap);
    va_end(ap);
    if (m > 0)
        used += (size_t)m < sizeof(line_buf) - used ? (size_t)m : sizeof(line_buf) - used - 1;
    /* Keep one byte for the newline even when the message was truncated. */
    if (used >= sizeof(line_buf) - 1)
        used = sizeof(line_buf) - 2;
    line_buf[used++] = '\n';
    pthread_mutex_lock(&fd_lock);
    ssize_t w;
    do {
        w = write(log_fd, line_buf, used);
    } while (w < 0 && errno == EINTR);
    pthread_mutex_unlock(&fd_lock);
}
