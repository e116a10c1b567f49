/* One claimed call, in its own thread: a per-call directory, the child that
 * runs it (spawn.c, child.c), the loop that watches it (watch.c), then the one
 * final push that says how it ended, and the directory removed. */
#include "worker_internal.h"

#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a final push is retried while its broker cannot be reached. */
#define FINAL_PUSH_MS (120 * 1000)
/* The shortest heartbeat interval derived from a short lease. */
#define MIN_RENEW_MS 100

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int p2p__claim_parse(const json_t *reply, const char *function, p2p__claim *out, p2p_error *err) {
    memset(out, 0, sizeof(*out));
    const char *id = json_string_value(json_object_get(reply, "identifier"));
    const char *token = json_string_value(json_object_get(reply, "lease_token"));
    const char *fn = json_string_value(json_object_get(reply, "function"));
    const json_t *args = json_object_get(reply, "args");
    if (!p2p_hash_hex_valid(id) || token == NULL || strlen(token) != 32 || !json_is_object(args))
        return p2p_error_set(err, P2P_EPROTO, "malformed search_work answer");
    if (fn != NULL && strcmp(fn, function) != 0)
        return p2p_error_set(err, P2P_EPROTO, "search_work for %s answered a call of %s", function,
                             fn);
    memcpy(out->identifier, id, sizeof(out->identifier));
    memcpy(out->token, token, sizeof(out->token));
    out->args = json_incref((json_t *)args);
    out->lease_expires_ms = json_integer_value(json_object_get(reply, "lease_expires_ms"));
    out->attempts = (int)json_integer_value(json_object_get(reply, "attempts"));
    return 0;
}

void p2p__claim_cleanup(p2p__claim *c) {
    json_decref(c->args);
    c->args = NULL;
}

void p2p__claim_release(p2p_worker *w, p2p__broker *b, const char *function, const p2p__claim *c) {
    p2p_error err = {0};
    int rc = p2p__wire_push(w->http, b->url, function, c->identifier, c->token, "release",
                            json_true(), NULL, &err);
    if (rc != 0) {
        P2P_WARN("worker: cannot give call %s back to %s (its lease will expire): %s",
                 c->identifier, b->url, err.msg);
        return;
    }
    P2P_INFO("worker: gave call %s of %s back to %s", c->identifier, function, b->url);
    p2p__worker_count(w, &w->stats.released);
}

/* Permanent: the broker refused the push and will refuse it again. */
static bool permanent(int rc) {
    return rc == P2P_ECONFLICT || rc == P2P_ENOTFOUND || rc == P2P_EINVAL || rc == P2P_ETYPE ||
           rc == P2P_ETOOBIG || rc == P2P_EAUTH || rc == P2P_ETERMINATED;
}

int p2p__run_push(p2p__run *r, const char *member, json_t *value, p2p__push_reply *reply) {
    int64_t give_up = p2p__worker_now_ms() + FINAL_PUSH_MS;
    p2p_error err = {0};
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        rc = p2p__wire_push(r->w->http, r->b->url, r->function, r->claim.identifier, r->claim.token,
                            member, json_incref(value), reply, &err);
        if (rc == 0 || permanent(rc) || atomic_load(&r->w->aborting) ||
            p2p__worker_now_ms() >= give_up)
            break;
        long delay = p2p_http_backoff_ms(P2P__BACKOFF_BASE_MS, 10000, attempt);
        P2P_WARN("worker: call %s: push %s: %s; again in %ld ms", r->claim.identifier, member,
                 err.msg, delay);
        p2p__worker_sleep(r->w->abort_fd, delay);
    }
    if (rc != 0)
        P2P_ERROR("worker: call %s: push %s failed: %s", r->claim.identifier, member, err.msg);
    json_decref(value);
    return rc;
}

static int nftw_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        P2P_WARN("worker: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void p2p__worker_remove_tree(const char *path) {
    if (path != NULL && nftw(path, nftw_remove, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        P2P_WARN("worker: cannot remove %s: %s", path, strerror(errno));
}

static void add_hex_secret(const p2p_worker *w, json_t *job) {
    if (w->secret == NULL)
        return;
    char *hex = malloc(w->opts.secret_len * 2 + 1);
    if (hex == NULL)
        return; /* the child's requests will be refused: it says so */
    for (size_t i = 0; i < w->opts.secret_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", w->secret[i]);
    json_object_set_new(job, "secret", json_string(hex));
    explicit_bzero(hex, w->opts.secret_len * 2);
    free(hex);
}

/* The job the child reads (child.c), as JSON text; caller frees. */
static char *job_text(const p2p__run *r) {
    const p2p_worker *w = r->w;
    char *in = p2p_fs_join(r->dir, "in"), *out = p2p_fs_join(r->dir, "out");
    p2p_log_level level = p2p_log_get_level();
    json_t *job = NULL;
    if (in != NULL && out != NULL)
        job =
            json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:b}", "function", r->function,
                      "identifier", r->claim.identifier, "lease_token", r->claim.token, "broker",
                      r->b->url, "args", r->claim.args, "in_dir", in, "out_dir", out, "log_level",
                      level_names[level <= P2P_LOG_OFF ? level : 1], "insecure", w->opts.insecure);
    if (job != NULL && w->ca_file != NULL)
        json_object_set_new(job, "ca_file", json_string(w->ca_file));
    if (job != NULL && w->ca_path != NULL)
        json_object_set_new(job, "ca_path", json_string(w->ca_path));
    if (job != NULL)
        add_hex_secret(w, job);
    char *text = job != NULL ? json_dumps(job, JSON_COMPACT) : NULL;
    json_decref(job);
    free(in);
    free(out);
    return text;
}

/* ---- how it ended ---- */

static void report_failed(p2p__run *r, const char *message) {
    P2P_INFO("worker: call %s of %s failed: %s", r->claim.identifier, r->function, message);
    if (p2p__run_push(r, "error", json_string(message), NULL) == 0)
        p2p__worker_count(r->w, &r->w->stats.failed);
}

static void report_signal(p2p__run *r, int sig) {
    char msg[160];
    const char *abbrev = sigabbrev_np(sig), *descr = sigdescr_np(sig);
    snprintf(msg, sizeof(msg), "%s crashed: killed by signal SIG%s (%s)", r->function,
             abbrev != NULL ? abbrev : "?", descr != NULL ? descr : "unknown signal");
    report_failed(r, msg);
}

/* What the child's result message says. */
static void report_result(p2p__run *r, const json_t *result) {
    const json_t *outputs = json_object_get(result, "outputs");
    const json_t *failed = json_object_get(result, "failed");
    char msg[4200];
    if (outputs != NULL) {
        if (p2p__run_push(r, "outputs", json_incref((json_t *)outputs), NULL) == 0) {
            P2P_INFO("worker: call %s of %s done", r->claim.identifier, r->function);
            p2p__worker_count(r->w, &r->w->stats.done);
        }
    } else if (failed != NULL) {
        const char *text = json_string_value(failed);
        int rc = (int)json_integer_value(json_object_get(result, "rc"));
        if (text == NULL)
            snprintf(msg, sizeof(msg), "%s returned %d", r->function, rc);
        report_failed(r, text != NULL ? text : msg);
    } else if (json_is_true(json_object_get(result, "retry"))) {
        P2P_WARN("worker: call %s: %s", r->claim.identifier,
                 json_string_value(json_object_get(result, "error")));
        p2p__claim_release(r->w, r->b, r->function, &r->claim);
    } else {
        const char *text = json_string_value(json_object_get(result, "error"));
        snprintf(msg, sizeof(msg), "worker: %s", text != NULL ? text : "malformed child message");
        report_failed(r, msg);
    }
}

static void report(p2p__run *r, p2p__ending *e) {
    p2p_worker *w = r->w;
    if (e->lost) {
        P2P_WARN("worker: call %s: lease lost; nothing reported", r->claim.identifier);
        p2p__worker_count(w, &w->stats.lost);
        return;
    }
    /* The last progress the function reported reaches the broker too. */
    if (e->progress.pending &&
        (e->terminate || e->result == NULL || json_object_get(e->result, "outputs") == NULL))
        p2p__run_push(r, "progress", json_real(e->progress.value), NULL);
    if (e->terminate) {
        if (p2p__run_push(r, "terminated", json_true(), NULL) == 0) {
            P2P_INFO("worker: call %s terminated", r->claim.identifier);
            p2p__worker_count(w, &w->stats.terminated);
        }
    } else if (e->result != NULL) {
        report_result(r, e->result);
    } else if (e->aborted) {
        p2p__claim_release(w, r->b, r->function, &r->claim);
    } else if (WIFSIGNALED(e->wstatus)) {
        report_signal(r, WTERMSIG(e->wstatus));
    } else {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s exited with status %d without returning", r->function,
                 WIFEXITED(e->wstatus) ? WEXITSTATUS(e->wstatus) : -1);
        report_failed(r, msg);
    }
}

/* ---- the run ---- */

/* A spare child (spares.c), or a new one. A spare that cannot take the job
 * (it died just now) is replaced by a new one. */
static int start_child(p2p__run *r, const char *job, p2p__child *child, p2p_error *err) {
    if (p2p__spare_take(r->w, child)) {
        if (p2p__child_send_job(child, job, strlen(job), err) == 0)
            return 0;
        P2P_WARN("worker: call %s: %s; starting another child", r->claim.identifier, err->msg);
        p2p__spare_give_back(r->w, child, false, 0);
    }
    int rc = p2p__child_spawn(r->w->child_program, r->w->work_dir, child, err);
    return rc != 0 ? rc : p2p__child_send_job(child, job, strlen(job), err);
}

static void run_child(p2p__run *r) {
    p2p_error err = {0};
    p2p__child child = {.pidfd = -1, .sock = -1};
    char *job = job_text(r);
    int rc = job != NULL ? 0 : p2p_error_set(&err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        rc = start_child(r, job, &child, &err);
    if (job != NULL)
        explicit_bzero(job, strlen(job)); /* it holds the secret */
    free(job);
    if (rc != 0) {
        /* Not the call's fault: another worker may run it. */
        P2P_ERROR("worker: call %s: %s", r->claim.identifier, err.msg);
        p2p__spare_give_back(r->w, &child, false, 0);
        p2p__claim_release(r->w, r->b, r->function, &r->claim);
        return;
    }
    p2p__ending ending;
    p2p__watch(r, &child, &ending);
    child.calls++;
    /* A child that waits for its next job goes back before the final push,
     * so that it is ready for the call that push may bring. */
    if (ending.reusable)
        p2p__spare_give_back(r->w, &child, true, 0);
    report(r, &ending);
    /* Otherwise it sent its result, or died: it should be gone in a moment. */
    p2p__spare_give_back(r->w, &child, false,
                         r->w->opts.grace_ms > 1000 ? r->w->opts.grace_ms : 1000);
    json_decref(ending.result);
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Heartbeats come every lease_renew_ms, or a third of the lease the broker
 * gave when that is shorter (its clock may differ from ours: the estimate is
 * used only when it looks sane, and it can only make heartbeats earlier). */
static int64_t renew_interval(const p2p_worker *w, const p2p__claim *c) {
    int64_t renew = w->opts.lease_renew_ms;
    int64_t left = c->lease_expires_ms - wall_ms();
    if (left > 0 && left < 3600 * 1000) {
        int64_t third = left / 3 < MIN_RENEW_MS ? MIN_RENEW_MS : left / 3;
        renew = third < renew ? third : renew;
    }
    return renew;
}

static void *runner_main(void *arg) {
    p2p__run *r = arg;
    p2p_error err = {0};
    P2P_INFO("worker: running call %s of %s from %s (attempt %d)", r->claim.identifier, r->function,
             r->b->url, r->claim.attempts);
    if (p2p__calldir_make(r->w, r->claim.identifier, &r->dir, &err) != 0) {
        P2P_ERROR("worker: call %s: %s", r->claim.identifier, err.msg);
        p2p__claim_release(r->w, r->b, r->function, &r->claim);
    } else {
        run_child(r);
    }
    p2p__calldir_retire(r->w, r->dir);
    p2p__claim_cleanup(&r->claim);
    p2p_worker *w = r->w;
    unsigned slot = r->slot;
    free(r);
    p2p__worker_put_slot(w, slot);
    return NULL;
}

int p2p__runner_start(p2p_worker *w, unsigned slot, p2p__broker *b, const p2p_worker_function *fn,
                      p2p__claim *claim, bool here, p2p_error *err) {
    p2p__run *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        p2p__claim_cleanup(claim);
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    *r = (p2p__run){.w = w,
                    .slot = slot,
                    .b = b,
                    .fn = fn,
                    .function = p2p_schema_name(fn->schema),
                    .claim = *claim,
                    .renew_ms = renew_interval(w, claim),
                    .abort = {.flag = &w->aborting, .fd = w->abort_fd}};
    claim->args = NULL; /* the run owns it now */
    if (here) {
        runner_main(r);
        return 0;
    }
    pthread_mutex_lock(&w->lock);
    int rc = pthread_create(&w->slots[slot].thread, NULL, runner_main, r);
    w->slots[slot].joinable = rc == 0;
    pthread_mutex_unlock(&w->lock);
    if (rc != 0) {
        p2p__claim_release(w, b, r->function, &r->claim);
        p2p__claim_cleanup(&r->claim);
        free(r);
        return p2p_error_errno(err, P2P_ENOMEM, rc, "cannot start a runner thread");
    }
    return 0;
}
