/* The child side of a call. The worker runs its own program again with
 * P2P_WORKER_CHILD_FLAG; p2p_worker_main() comes here before anything else.
 *
 * Jobs arrive on fd P2P__CHILD_FD, one JSON object per line (a last one may
 * end at EOF instead):
 *   {"function", "identifier", "lease_token", "broker", "args": {wire form},
 *    "in_dir", "out_dir", "log_level",
 *    "secret": hex (optional), "ca_file", "ca_path", "insecure"}
 * The child decodes the arguments, downloads the file inputs into in_dir,
 * calls the function through the dispatch table, hashes and uploads the file
 * outputs, and answers on the same socket with JSON lines:
 *   {"progress": [i, n]}                   any number of times
 *   {"outputs": {wire form}}               success; the blobs are uploaded
 *   {"failed": "message" | null, "rc": N}  the function returned N != 0
 *   {"error": "message", "retry": bool}    the framework failed here; with
 *                                          retry, the broker could not be
 *                                          reached: give the call back
 * A child that dies without its last line crashed (or called exit).
 * After its result the child goes back to the directory it started in and
 * reads the next job; EOF (the worker closed the socket) ends it with 0. A
 * framework error ends it with 1: the worker does not reuse it then (nor
 * after a kill or anything unexpected, spares.c).
 *
 * Transfers happen here rather than in the parent so that the parent's one
 * loop (watch.c) keeps the lease alive however long they take. */
#include "worker_internal.h"

#include "fsutil.h"
#include "log.h"
#include "sign.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Progress the child sends its parent: at most one message per this. */
#define CHILD_PROGRESS_MS 20

/* What the job gives, decoded. */
typedef struct job {
    json_t *json; /* owns every string below */
    const p2p_worker_function *fn;
    const char *identifier, *token, *base, *out_dir;
    p2p_http_client *http;
    p2p_value *inputs, *outputs;
    size_t n_in, n_out;
} job;

/* Dies with the parent (the thread that spawned it, in fact), and makes sure
 * the parent did not die before that was set. */
static int guard_parent(const char *ppid_text) {
    char *end = NULL;
    long ppid = strtol(ppid_text, &end, 10);
    if (end == ppid_text || *end != '\0' || ppid <= 1) {
        fprintf(stderr, "worker child: bad parent pid \"%s\"\n", ppid_text);
        return -1;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)ppid)
        return -1;
    struct stat st;
    if (fstat(P2P__CHILD_FD, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "worker child: %s is only for the worker's own use\n",
                P2P_WORKER_CHILD_FLAG);
        return -1;
    }
    return 0;
}

/* The bytes read from the worker: a job line, and whatever follows it. */
typedef struct job_reader {
    char *buf;
    size_t len, cap;
} job_reader;

/* Parses the first `n` bytes as a job, then drops them (they may hold the
 * secret: wiped). */
static int take_job(job_reader *rd, size_t n, size_t skip, json_t **out) {
    *out = json_loadb(rd->buf, n, JSON_REJECT_DUPLICATES, NULL);
    explicit_bzero(rd->buf, n + skip);
    memmove(rd->buf, rd->buf + n + skip, rd->len - n - skip);
    rd->len -= n + skip;
    return *out != NULL ? 0 : P2P_EPROTO;
}

/* The next job: 0 with `*out` set; 1 at EOF before any byte of one (no more
 * jobs); P2P_ETOOBIG, P2P_EIO, P2P_EPROTO or P2P_ENOMEM. */
static int read_job(job_reader *rd, json_t **out) {
    for (size_t scanned = 0;;) {
        char *nl = rd->len > scanned ? memchr(rd->buf + scanned, '\n', rd->len - scanned) : NULL;
        if (nl != NULL)
            return take_job(rd, (size_t)(nl - rd->buf), 1, out);
        scanned = rd->len;
        if (rd->len == rd->cap) {
            size_t cap = rd->cap ? rd->cap * 2 : 64 * 1024;
            char *grown = cap <= P2P__CHILD_MAX_JOB ? realloc(rd->buf, cap) : NULL;
            if (grown == NULL)
                return rd->cap < P2P__CHILD_MAX_JOB ? P2P_ENOMEM : P2P_ETOOBIG;
            rd->buf = grown;
            rd->cap = cap;
        }
        ssize_t n = read(P2P__CHILD_FD, rd->buf + rd->len, rd->cap - rd->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return P2P_EIO;
        if (n == 0)
            return rd->len == 0 ? 1 : take_job(rd, rd->len, 0, out);
        rd->len += (size_t)n;
    }
}

static int send_error(const char *msg, bool retry) {
    P2P_ERROR("worker child: %s", msg);
    json_t *m = json_pack("{s:s, s:b}", "error", msg, "retry", retry);
    int rc = m != NULL ? p2p__runtime_send(P2P__CHILD_FD, m) : P2P_ENOMEM;
    json_decref(m);
    return rc;
}

/* A transfer error another worker, or a later try, may not meet. */
static bool transient(int rc) {
    return rc == P2P_EUNAVAIL || rc == P2P_ETIMEDOUT || rc == P2P_ESTORE || rc == P2P_ECANCELED ||
           rc == P2P_EPROTO || rc == P2P_EINTERNAL || rc == P2P_EFAILED;
}

static const char *str(const json_t *j, const char *key) {
    return json_string_value(json_object_get(j, key));
}

/* Decodes the secret's hex into bytes (caller frees with p2p_secret_free). */
static unsigned char *unhex(const char *hex, size_t *len) {
    size_t n = hex != NULL ? strlen(hex) : 0;
    unsigned char *out = n > 0 && n % 2 == 0 ? malloc(n / 2) : NULL;
    for (size_t i = 0; out != NULL && i < n / 2; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (unsigned char)v;
    }
    *len = n / 2;
    return out;
}

static int make_http(job *j, p2p_error *err) {
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    size_t secret_len = 0;
    unsigned char *secret = unhex(str(j->json, "secret"), &secret_len);
    o.secret = secret;
    o.secret_len = secret_len;
    o.ca_file = str(j->json, "ca_file");
    o.ca_path = str(j->json, "ca_path");
    o.insecure = json_is_true(json_object_get(j->json, "insecure"));
    j->http = p2p_http_client_new(&o, err);
    p2p_secret_free(secret, secret_len);
    return j->http != NULL ? 0 : P2P_EINVAL;
}

/* Downloads each file input into in_dir/NAME (the names are C identifiers)
 * and gives it its local path. */
static int fetch_inputs(job *j, const p2p_param *params, p2p_error *err) {
    const char *in_dir = str(j->json, "in_dir");
    if (in_dir == NULL)
        return p2p_error_set(err, P2P_EPROTO, "the job lacks in_dir");
    for (size_t i = 0; i < j->n_in; i++) {
        if (params[i].type != P2P_TYPE_FILE)
            continue;
        char *path = p2p_fs_join(in_dir, params[i].name);
        char hash[P2P_HASH_HEX_LEN + 1];
        memcpy(hash, j->inputs[i].as.file.hash, sizeof(hash));
        p2p_error e = {0};
        int rc = path != NULL ? 0 : p2p_error_set(&e, P2P_ENOMEM, "out of memory");
        if (rc == 0)
            rc = p2p__wire_download(j->http, j->base, hash, j->inputs[i].as.file.size, path, NULL,
                                    &e);
        if (rc == 0)
            rc = p2p_value_set_file(&j->inputs[i], path, hash, j->inputs[i].as.file.size, &e);
        free(path);
        if (rc != 0)
            return p2p_error_set(err, rc, "input '%s': %s", params[i].name, e.msg);
    }
    return 0;
}

static int decode(job *j, const p2p_worker_function *fns, size_t n, p2p_error *err) {
    const char *name = str(j->json, "function");
    for (size_t i = 0; name != NULL && i < n && j->fn == NULL; i++) {
        if (strcmp(p2p_schema_name(fns[i].schema), name) == 0)
            j->fn = &fns[i];
    }
    if (j->fn == NULL)
        return p2p_error_set(err, P2P_ENOTFOUND, "no function %s in this program",
                             name ? name : "(none)");
    j->identifier = str(j->json, "identifier");
    j->token = str(j->json, "lease_token");
    j->base = str(j->json, "broker");
    j->out_dir = str(j->json, "out_dir");
    if (j->identifier == NULL || j->token == NULL || j->base == NULL || j->out_dir == NULL)
        return p2p_error_set(err, P2P_EPROTO, "the job lacks a member");
    /* Started ahead of its call (spares.c): its directory comes with the job. */
    if (chdir(j->out_dir) != 0)
        return p2p_error_errno(err, P2P_EIO, errno, "cannot enter %s", j->out_dir);
    p2p_log_level level = P2P_LOG_INFO;
    if (p2p_log_parse_level(str(j->json, "log_level"), &level) == 0)
        p2p_log_set_level(level);
    const p2p_param *in = p2p_schema_inputs(j->fn->schema, &j->n_in);
    p2p_schema_outputs(j->fn->schema, &j->n_out);
    j->inputs = calloc(j->n_in + 1, sizeof(*j->inputs));
    j->outputs = calloc(j->n_out + 1, sizeof(*j->outputs));
    if (j->inputs == NULL || j->outputs == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc =
        p2p_value_list_from_json(in, j->n_in, json_object_get(j->json, "args"), j->inputs, err);
    if (rc == 0)
        rc = make_http(j, err);
    return rc != 0 ? rc : fetch_inputs(j, in, err);
}

/* A file output: its hash and size (computed unless the function gave a
 * valid hash), then the blob on the broker. */
static int finish_file(job *j, p2p_value *v, const char *name, p2p_error *err) {
    if (v->type != P2P_TYPE_FILE || v->as.file.path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "output '%s' was not set to a file", name);
    int64_t size = 0;
    p2p_error e = {0};
    int rc = 0;
    if (p2p_hash_hex_valid(v->as.file.hash)) {
        struct stat st;
        if (stat(v->as.file.path, &st) != 0)
            rc = p2p_error_errno(&e, P2P_EINVAL, errno, "%s", v->as.file.path);
        else
            size = st.st_size;
    } else {
        rc = p2p__wire_hash_file(v->as.file.path, v->as.file.hash, &size, &e);
    }
    v->as.file.size = size;
    if (rc == 0)
        rc = p2p__wire_upload(j->http, j->base, v->as.file.path, v->as.file.hash, size, NULL, &e);
    return rc == 0 ? 0 : p2p_error_set(err, rc, "output '%s': %s", name, e.msg);
}

static int send_outputs(job *j, p2p_error *err) {
    const p2p_param *out = p2p_schema_outputs(j->fn->schema, &j->n_out);
    json_t *values = NULL, *msg = NULL;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < j->n_out; i++) {
        if (out[i].type == P2P_TYPE_FILE)
            rc = finish_file(j, &j->outputs[i], out[i].name, err);
        else if (j->outputs[i].type == 0)
            rc = p2p_error_set(err, P2P_EINVAL, "output '%s' was not set", out[i].name);
    }
    if (rc == 0)
        rc = p2p_value_list_to_json(out, j->n_out, j->outputs, &values, err);
    if (rc == 0 && (msg = json_pack("{s:O}", "outputs", values)) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0 && p2p__runtime_send(P2P__CHILD_FD, msg) != 0)
        rc = p2p_error_set(err, P2P_EIO, "cannot send the outputs to the worker");
    json_decref(msg);
    json_decref(values);
    return rc;
}

static int send_failed(int rc) {
    const char *msg = p2p__runtime_fail_message();
    json_t *m = json_pack("{s:s?, s:i}", "failed", msg, "rc", rc);
    int sent = m != NULL ? p2p__runtime_send(P2P__CHILD_FD, m) : P2P_ENOMEM;
    json_decref(m);
    return sent;
}

static int run(job *j) {
    p2p__runtime_cfg cfg = {.fd = P2P__CHILD_FD,
                            .http = j->http,
                            .base = j->base,
                            .function = p2p_schema_name(j->fn->schema),
                            .identifier = j->identifier,
                            .token = j->token,
                            .progress_interval_ms = CHILD_PROGRESS_MS};
    p2p__runtime_enter(&cfg);
    int rc = j->fn->invoke(j->inputs, j->outputs, j->out_dir);
    p2p__runtime_flush();
    p2p_error err = {0};
    int sent;
    if (rc != 0)
        sent = send_failed(rc);
    else if ((sent = send_outputs(j, &err)) != 0)
        sent = send_error(err.msg, transient(err.code));
    p2p__runtime_leave();
    return sent == 0 ? 0 : 1;
}

static void job_cleanup(job *j) {
    if (j->inputs != NULL)
        p2p_value_list_cleanup(j->inputs, j->n_in);
    if (j->outputs != NULL)
        p2p_value_list_cleanup(j->outputs, j->n_out);
    free(j->inputs);
    free(j->outputs);
    p2p_http_client_free(j->http);
    json_decref(j->json);
}

/* Runs one job; 0 when the child may take another. */
static int one_job(json_t *text, const p2p_worker_function *fns, size_t n) {
    job j = {.json = text};
    p2p_error err = {0};
    int rc = decode(&j, fns, n, &err);
    if (rc != 0)
        send_error(err.msg, transient(err.code));
    else
        rc = run(&j);
    job_cleanup(&j);
    return rc;
}

int p2p__child_main(int argc, char **argv, const p2p_worker_function *fns, size_t n) {
    if (argc != 3 || guard_parent(argv[2]) != 0)
        return 1;
    /* Where it started: it comes back here between calls, off the call's
     * directory (which the worker removes). */
    int home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    job_reader rd = {0};
    int rc = home >= 0 ? 0 : 1;
    while (rc == 0) {
        json_t *text = NULL;
        int got = read_job(&rd, &text);
        if (got == 1)
            break; /* no more jobs */
        if (got != 0) {
            send_error(got == P2P_ETOOBIG ? "the job is too large" : "cannot read the job", false);
            rc = 1;
            break;
        }
        rc = one_job(text, fns, n);
        if (rc == 0 && fchdir(home) != 0)
            rc = 1;
    }
    if (rd.buf != NULL)
        explicit_bzero(rd.buf, rd.cap);
    free(rd.buf);
    if (home >= 0)
        close(home);
    return rc != 0 ? 1 : 0;
}
