/* The process harness of the integration tests: see harness.h. The HTTP and
 * socket helpers are in harness_http.c. */
#include "harness.h"

#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define LISTEN_PREFIX "listening on "
/* How many live children the abort handler knows about. */
#define CRASH_SLOTS 32
/* Bytes of each child's log printed when the test aborts. */
#define CRASH_TAIL 12000

struct harness_proc {
    pid_t pid;
    int pidfd;   /* -1 when pidfd_open is unavailable */
    bool reaped; /* waitpid collected it */
    int wstatus;
    int out_fd; /* read end of the child's stdout */
    int log_fd; /* where its stdout is copied; 2 without a log */
    pthread_t reader;
    bool reader_started;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* `ready` or `eof` changed */
    bool ready;
    bool eof;
    int lines;
    int slot; /* in the crash registry, or -1 */
    char url[HARNESS_URL_MAX];
    char line[HARNESS_URL_MAX + 64];
    char ready_prefix[128]; /* "" = the listening line */
    char log[HARNESS_PATH_MAX];
};

int64_t harness_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double harness_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the abort handler: show the children's logs, then kill them ---- */

typedef struct crash_slot {
    volatile sig_atomic_t used;
    pid_t pid;
    char log[HARNESS_PATH_MAX];
} crash_slot;

static crash_slot crash_slots[CRASH_SLOTS];
static pthread_mutex_t crash_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

static void write_all_fd(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Async-signal-safe: open, lseek, read, write and kill only. */
static void dump_tail(const char *log) {
    static char buf[CRASH_TAIL];
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
    if (lseek(fd, from, SEEK_SET) == from) {
        static const char head[] = "\n---- tail of child log ";
        write_all_fd(2, head, sizeof(head) - 1);
        write_all_fd(2, log, strlen(log));
        write_all_fd(2, " ----\n", 6);
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            write_all_fd(2, buf, (size_t)n);
        write_all_fd(2, "---- end of log ----\n", 21);
    }
    close(fd);
}

static void on_abort(int sig) {
    for (int i = 0; i < CRASH_SLOTS; i++) {
        if (!crash_slots[i].used)
            continue;
        if (crash_slots[i].log[0] != '\0')
            dump_tail(crash_slots[i].log);
        kill(crash_slots[i].pid, SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_abort_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_abort;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGABRT, &sa, NULL);
}

static int crash_register(pid_t pid, const char *log) {
    pthread_once(&crash_once, install_abort_handler);
    pthread_mutex_lock(&crash_lock);
    int slot = -1;
    for (int i = 0; i < CRASH_SLOTS && slot < 0; i++) {
        if (!crash_slots[i].used) {
            slot = i;
            crash_slots[i].pid = pid;
            snprintf(crash_slots[i].log, sizeof(crash_slots[i].log), "%s", log ? log : "");
            crash_slots[i].used = 1;
        }
    }
    pthread_mutex_unlock(&crash_lock);
    return slot;
}

static void crash_unregister(int slot) {
    if (slot < 0)
        return;
    pthread_mutex_lock(&crash_lock);
    crash_slots[slot].used = 0;
    pthread_mutex_unlock(&crash_lock);
}

/* ---- the stdout reader ---- */

/* Takes the URL out of a `listening on URL` line; false when it is not one. */
static bool parse_listening(const char *line, char *url, size_t url_len) {
    const char *at = strstr(line, LISTEN_PREFIX);
    if (at == NULL)
        return false;
    at += strlen(LISTEN_PREFIX);
    if (strncmp(at, "http://", 7) != 0 && strncmp(at, "https://", 8) != 0)
        return false;
    size_t n = strcspn(at, " \t\r\n");
    if (n == 0 || n >= url_len)
        return false;
    memcpy(url, at, n);
    url[n] = '\0';
    return true;
}

/* True when `line` is the one the start waits for. */
static bool is_ready_line(harness_proc *p, const char *line) {
    if (p->ready_prefix[0] != '\0')
        return strncmp(line, p->ready_prefix, strlen(p->ready_prefix)) == 0;
    return parse_listening(line, p->url, sizeof(p->url));
}

static void on_line(harness_proc *p, const char *line) {
    pthread_mutex_lock(&p->lock);
    p->lines++;
    if (!p->ready && is_ready_line(p, line)) {
        /* A longer line would not hold a URL that fits: it was refused above. */
        size_t n = strnlen(line, sizeof(p->line) - 1);
        memcpy(p->line, line, n);
        p->line[n] = '\0';
        p->ready = true;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
}

/* Splits the child's stdout into lines and copies every byte to the log. */
static void *reader_main(void *arg) {
    harness_proc *p = arg;
    char buf[4096], line[1024];
    size_t len = 0;
    ssize_t n;
    while ((n = read(p->out_fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        write_all_fd(p->log_fd, buf, (size_t)n);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || len == sizeof(line) - 1) {
                line[len] = '\0';
                on_line(p, line);
                len = 0;
            }
            if (buf[i] != '\n')
                line[len++] = buf[i];
        }
    }
    pthread_mutex_lock(&p->lock);
    p->eof = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- start ---- */

/* environ with `extra` ("NAME=VALUE") replacing or adding entries. The array
 * is the caller's to free(); its strings are borrowed. */
static char **build_env(const char *const *extra) {
    size_t n_env = 0, n_extra = 0;
    while (environ[n_env] != NULL)
        n_env++;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **env = calloc(n_env + n_extra + 1, sizeof(*env));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        bool replaced = false;
        for (size_t j = 0; j < n_extra && !replaced; j++) {
            size_t name_len = strcspn(extra[j], "=");
            replaced = strncmp(environ[i], extra[j], name_len + 1) == 0;
        }
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        env[k++] = (char *)extra[j];
    return env;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void exec_child(const harness_proc_options *o, char **env, int out_w, int log_fd,
                       int null_fd, pid_t parent) {
    if (dup2(null_fd, 0) < 0 || dup2(out_w, 1) < 0 || (log_fd >= 0 && dup2(log_fd, 2) < 0))
        _exit(126);
    /* The child must not outlive a test that aborted. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(126);
    execve(o->argv[0], (char *const *)o->argv, env);
    static const char msg[] = "harness: execve failed\n";
    write_all_fd(2, msg, sizeof(msg) - 1);
    _exit(127);
}

static harness_proc *proc_alloc(const harness_proc_options *o) {
    harness_proc *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->pid = -1;
    p->pidfd = -1;
    p->out_fd = -1;
    p->log_fd = 2;
    p->slot = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(p->log, sizeof(p->log), "%s", o->log_path ? o->log_path : "");
    snprintf(p->ready_prefix, sizeof(p->ready_prefix), "%s",
             o->ready_prefix ? o->ready_prefix : "");
    return p;
}

/* Forks and execs; on success the child runs and p->out_fd reads its stdout. */
static int spawn(harness_proc *p, const harness_proc_options *o, p2p_error *err) {
    int pipefd[2] = {-1, -1}, null_fd = -1, rc = 0;
    char **env = build_env(o->env);
    if (env == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "harness: environment");
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "harness: pipe");
        goto cleanup;
    }
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        rc = p2p_error_errno(err, P2P_EIO, errno, "harness: fork");
        goto cleanup;
    }
    if (p->pid == 0)
        exec_child(o, env, pipefd[1], o->log_path ? p->log_fd : -1, null_fd, parent);
    p->out_fd = pipefd[0];
    pipefd[0] = -1;
    p->pidfd = pidfd_open(p->pid, 0);
    p->slot = crash_register(p->pid, p->log);
cleanup:
    free(env);
    if (null_fd >= 0)
        close(null_fd);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    return rc;
}

/* Waits for the listening line, bounded by `timeout_ms`. */
static int await_ready(harness_proc *p, long timeout_ms, p2p_error *err) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->ready && !p->eof && rc == 0)
        rc = pthread_cond_timedwait(&p->cond, &p->lock, &deadline);
    bool ready = p->ready, eof = p->eof;
    pthread_mutex_unlock(&p->lock);
    if (ready)
        return 0;
    if (eof)
        return p2p_error_set(err, P2P_EPROTO, "harness: %s closed stdout before listening (log %s)",
                             "child", p->log[0] ? p->log : "stderr");
    return p2p_error_set(err, P2P_ETIMEDOUT, "harness: no listening line within %ld ms (log %s)",
                         timeout_ms, p->log[0] ? p->log : "stderr");
}

int harness_proc_start(const harness_proc_options *o, harness_proc **out, p2p_error *err) {
    if (o == NULL || o->argv == NULL || o->argv[0] == NULL || out == NULL)
        return p2p_error_set(err, P2P_EINVAL, "harness: no program to start");
    harness_proc *p = proc_alloc(o);
    if (p == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "harness: out of memory");
    int rc = 0;
    if (o->log_path != NULL) {
        p->log_fd = open(o->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (p->log_fd < 0) {
            rc = p2p_error_errno(err, P2P_EIO, errno, "harness: cannot open log %s", o->log_path);
            goto fail;
        }
    }
    rc = spawn(p, o, err);
    if (rc != 0)
        goto fail;
    if (pthread_create(&p->reader, NULL, reader_main, p) != 0) {
        rc = p2p_error_set(err, P2P_ENOMEM, "harness: cannot start the stdout reader");
        goto fail;
    }
    p->reader_started = true;
    if (o->wait_listening) {
        rc = await_ready(p, o->ready_timeout_ms > 0 ? o->ready_timeout_ms : 30000, err);
        if (rc != 0)
            goto fail;
    }
    *out = p;
    return 0;
fail:
    harness_proc_free(p);
    return rc;
}

/* ---- accessors ---- */

const char *harness_proc_url(const harness_proc *p) {
    return p->url;
}

const char *harness_proc_listening_line(const harness_proc *p) {
    return p->line;
}

int harness_proc_stdout_lines(harness_proc *p) {
    pthread_mutex_lock(&p->lock);
    int n = p->lines;
    pthread_mutex_unlock(&p->lock);
    return n;
}

pid_t harness_proc_pid(const harness_proc *p) {
    return p->pid;
}

const char *harness_proc_log(const harness_proc *p) {
    return p->log;
}

bool harness_proc_running(const harness_proc *p) {
    return p->pid > 0 && !p->reaped;
}

/* ---- signals and waiting ---- */

int harness_proc_signal(harness_proc *p, int sig, p2p_error *err) {
    if (!harness_proc_running(p))
        return p2p_error_set(err, P2P_ECONFLICT, "harness: process %d already reaped", (int)p->pid);
    if (kill(p->pid, sig) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "harness: kill(%d, %d)", (int)p->pid, sig);
    return 0;
}

/* Sleeps until the pidfd is readable (the child exited) or the deadline. */
static bool wait_exit_event(harness_proc *p, int64_t deadline) {
    for (int i = 0; i < 100000; i++) {
        int64_t left = deadline - harness_now_ms();
        if (left < 0)
            left = 0;
        if (p->pidfd >= 0) {
            struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
            int n = poll(&pfd, 1, (int)left);
            if (n > 0)
                return true;
            if (n == 0 || errno != EINTR)
                return false;
        } else {
            /* No pidfd (old kernel): check every 5 ms, still bounded. */
            int st;
            pid_t r = waitpid(p->pid, &st, WNOHANG);
            if (r == p->pid) {
                p->reaped = true;
                p->wstatus = st;
                return true;
            }
            if (left == 0)
                return false;
            nanosleep(&(struct timespec){0, 5000000}, NULL);
        }
    }
    return false;
}

int harness_proc_wait(harness_proc *p, long timeout_ms, int *wstatus, p2p_error *err) {
    if (p->reaped) {
        if (wstatus)
            *wstatus = p->wstatus;
        return p2p_error_set(err, P2P_ECONFLICT, "harness: process %d already reaped", (int)p->pid);
    }
    if (!wait_exit_event(p, harness_now_ms() + timeout_ms))
        return p2p_error_set(err, P2P_ETIMEDOUT, "harness: process %d still running after %ld ms",
                             (int)p->pid, timeout_ms);
    if (!p->reaped) {
        int st = 0;
        pid_t r;
        do
            r = waitpid(p->pid, &st, 0);
        while (r < 0 && errno == EINTR);
        if (r != p->pid)
            return p2p_error_errno(err, P2P_EIO, errno, "harness: waitpid(%d)", (int)p->pid);
        p->reaped = true;
        p->wstatus = st;
    }
    crash_unregister(p->slot);
    p->slot = -1;
    if (wstatus)
        *wstatus = p->wstatus;
    return 0;
}

int harness_proc_kill(harness_proc *p, p2p_error *err) {
    int rc = harness_proc_signal(p, SIGKILL, err);
    if (rc != 0)
        return rc;
    /* SIGKILL cannot be caught: the wait is short unless the machine stalls. */
    return harness_proc_wait(p, 60000, NULL, err);
}

int harness_proc_stop(harness_proc *p, long timeout_ms, int *wstatus, p2p_error *err) {
    int rc = harness_proc_signal(p, SIGTERM, err);
    if (rc != 0)
        return rc;
    rc = harness_proc_wait(p, timeout_ms, wstatus, err);
    if (rc != P2P_ETIMEDOUT)
        return rc;
    p2p_error ignored;
    if (harness_proc_kill(p, &ignored) == 0 && wstatus)
        *wstatus = p->wstatus;
    return p2p_error_set(err, P2P_ETIMEDOUT,
                         "harness: process %d ignored SIGTERM for %ld ms; killed", (int)p->pid,
                         timeout_ms);
}

void harness_proc_free(harness_proc *p) {
    if (p == NULL)
        return;
    if (harness_proc_running(p)) {
        p2p_error ignored;
        if (kill(p->pid, SIGKILL) == 0 && harness_proc_wait(p, 60000, NULL, &ignored) != 0)
            fprintf(stderr, "%s\n", ignored.msg);
    }
    crash_unregister(p->slot);
    if (p->reader_started) {
        /* The child is gone, so its stdout hits EOF; a grandchild holding it
         * would block the reader, hence the bound and the cancel. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        if (pthread_timedjoin_np(p->reader, NULL, &ts) != 0) {
            pthread_cancel(p->reader);
            pthread_join(p->reader, NULL);
        }
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->log_fd > 2)
        close(p->log_fd);
    if (p->pidfd >= 0)
        close(p->pidfd);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Sums "Name: N" lines of a /proc status text. */
static long long status_field(const char *text, const char *name) {
    const char *at = strstr(text, name);
    return at ? strtoll(at + strlen(name), NULL, 10) : 0;
}

int harness_proc_sched(const harness_proc *p, long *threads, long long *ctx_switches,
                       p2p_error *err) {
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)p->pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return p2p_error_errno(err, P2P_EIO, errno, "harness: %s", path);
    long n = 0;
    long long sw = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 100000) {
        if (e->d_name[0] == '.')
            continue;
        char file[300], *text = NULL;
        size_t len = 0;
        snprintf(file, sizeof(file), "/proc/%d/task/%s/status", (int)p->pid, e->d_name);
        if (p2p_fs_read_file(file, 1 << 16, &text, &len, NULL) != 0)
            continue; /* the thread ended meanwhile */
        n++;
        sw += status_field(text, "\nvoluntary_ctxt_switches:");
        sw += status_field(text, "\nnonvoluntary_ctxt_switches:");
        free(text);
    }
    closedir(d);
    if (threads)
        *threads = n;
    if (ctx_switches)
        *ctx_switches = sw;
    return 0;
}

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int harness_rmtree(const char *path, p2p_error *err) {
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
        return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "harness: cannot remove %s", path);
    return 0;
}

int harness_scratch_dir(const char *name, char *out, size_t out_len, p2p_error *err) {
    const char *root = getenv("P2PRPC_TEST_TMP");
    if (root == NULL || root[0] == '\0')
        root = getenv("TMPDIR");
    if (root == NULL || root[0] == '\0')
        root = "/tmp";
    int n = snprintf(out, out_len, "%s/%s.%d", root, name, (int)getpid());
    if (n < 0 || (size_t)n >= out_len)
        return p2p_error_set(err, P2P_EINVAL, "harness: scratch path too long");
    int rc = harness_rmtree(out, err);
    if (rc == 0)
        rc = p2p_fs_mkdirs(out, 0700, err);
    return rc;
}

int harness_write_file(const char *path, const void *data, size_t len, p2p_error *err) {
    return p2p_fs_write_atomic(path, data, len, 0600, err);
}

int harness_write_secret(const char *path, unsigned char *secret, size_t len, p2p_error *err) {
    static const char hex[] = "0123456789abcdef";
    if (len == 0 || RAND_bytes(secret, (int)len) != 1)
        return p2p_error_set(err, P2P_EINVAL, "harness: cannot draw a secret");
    for (size_t i = 0; i < len; i++)
        secret[i] = (unsigned char)hex[secret[i] & 15];
    return harness_write_file(path, secret, len, err);
}

static long count_in(const char *path, bool recursive, int depth) {
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[HARNESS_PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (recursive && depth < 16)
                n += count_in(sub, recursive, depth + 1);
            else if (!recursive)
                n++;
        } else {
            n++;
        }
    }
    closedir(d);
    return n;
}

long harness_count_files(const char *path, bool recursive) {
    return count_in(path, recursive, 0);
}

int harness_bin_path(const char *name, const char *default_dir, char *out, size_t out_len,
                     p2p_error *err) {
    const char *dir = getenv("P2PRPC_BIN");
    if (dir == NULL || dir[0] == '\0')
        dir = default_dir ? default_dir : ".";
    int n = snprintf(out, out_len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= out_len)
        return p2p_error_set(err, P2P_EINVAL, "harness: program path too long");
    return 0;
}
