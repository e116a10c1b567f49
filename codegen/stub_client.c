/* The runtime of generated client stubs: the process-wide default client,
 * lazily built schemas, kept paths, and the calling thread's last error. */
#include "stub_client.h"

#include "client.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Something built on first use and freed by p2p_stub_shutdown: a schema
 * (keyed by its static p2p_stub_function) or a kept path. */
typedef struct kept {
    struct kept *next;
    const p2p_stub_function *fn;
    p2p_schema *schema;
    char *path;
} kept;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static p2p_client *default_client; /* guarded by lock */
static kept *kept_list;            /* guarded by lock */
static _Thread_local p2p_error last_error;

/* Records `e` as this thread's last error and returns its code. */
static int fail(const p2p_error *e, int code) {
    last_error = *e;
    last_error.code = code;
    if (last_error.msg[0] == '\0')
        p2p_error_set(&last_error, code, "%s", p2p_strerror(code));
    return code;
}

int p2p_stub_fail(const p2p_error *e) {
    return fail(e, e->code != 0 ? e->code : P2P_EINTERNAL);
}

const char *p2p_stub_last_error(void) {
    return last_error.msg;
}

int p2p_stub_last_code(void) {
    return last_error.code;
}

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The default client, made on first use. Called with `lock` held. */
static p2p_client *client_locked(const char *discovery, p2p_error *err) {
    if (default_client != NULL)
        return default_client;
    p2p_client_options o;
    p2p_client_options_init(&o);
    o.discovery_file = env("P2PRPC_DISCOVERY") ? env("P2PRPC_DISCOVERY") : discovery;
    o.cache_path = env("P2PRPC_CACHE");
    o.secret_file = env("P2PRPC_SECRET_FILE");
    if (p2p_client_new(&o, &default_client, err) != 0)
        default_client = NULL;
    return default_client;
}

const p2p_schema *p2p_stub_schema(const p2p_stub_function *fn) {
    p2p_error e = {0};
    const p2p_schema *found = NULL;
    pthread_mutex_lock(&lock);
    for (kept *k = kept_list; k != NULL && found == NULL; k = k->next)
        if (k->fn == fn)
            found = k->schema;
    kept *k = found ? NULL : calloc(1, sizeof(*k));
    if (found == NULL && k == NULL) {
        p2p_error_set(&e, P2P_ENOMEM, "out of memory");
    } else if (found == NULL) {
        int rc = p2p_schema_build(fn->name, fn->inputs, fn->n_inputs, fn->outputs, fn->n_outputs,
                                  &k->schema, &e);
        if (rc == 0) {
            k->fn = fn;
            k->next = kept_list;
            kept_list = k;
            found = k->schema;
        } else {
            free(k);
        }
    }
    pthread_mutex_unlock(&lock);
    if (found == NULL)
        fail(&e, e.code != 0 ? e.code : P2P_ENOMEM);
    return found;
}

int p2p_stub_arg_file(p2p_value *v, const p2p_file *f, p2p_error *err) {
    if (f->path == NULL)
        return p2p_error_set(err, P2P_EINVAL, "a file argument has no path");
    char *path = strdup(f->path);
    if (path == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    /* An empty hash is computed by the client (through its file-hash cache). */
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_FILE;
    v->as.file.path = path;
    v->as.file.size = 0;
    if (p2p_hash_hex_valid(f->hash))
        memcpy(v->as.file.hash, f->hash, sizeof(v->as.file.hash));
    else
        v->as.file.hash[0] = '\0';
    return 0;
}

p2p_future *p2p_stub_submit(const p2p_stub_function *fn, const char *discovery, p2p_value *args,
                            const p2p_call_options *copts) {
    p2p_error e = {0};
    p2p_future *f = NULL;
    const p2p_schema *schema = p2p_stub_schema(fn);
    if (schema != NULL) {
        pthread_mutex_lock(&lock);
        p2p_client *c = client_locked(discovery, &e);
        pthread_mutex_unlock(&lock);
        int rc = c ? p2p_client_submit(c, schema, args, NULL, 0, copts, &f, &e) : e.code;
        if (rc != 0) {
            fail(&e, rc);
            f = NULL;
        }
    }
    p2p_value_list_cleanup(args, fn->n_inputs);
    return f;
}

int p2p_stub_get(p2p_future *f, int64_t timeout_ms, size_t n_outputs, const p2p_value **outputs) {
    p2p_error e = {0};
    size_t n = 0;
    int rc = p2p_future_get(f, timeout_ms, outputs, &n, &e);
    if (rc == 0 && n != n_outputs)
        rc = p2p_error_set(&e, P2P_EPROTO, "%zu outputs instead of %zu", n, n_outputs);
    return rc == 0 ? 0 : fail(&e, rc);
}

void p2p_stub_file_result(const p2p_value *v, p2p_file *out) {
    out->path = v->as.file.path;
    memcpy(out->hash, v->as.file.hash, sizeof(out->hash));
}

int p2p_stub_string_result(const p2p_value *v, char **out) {
    p2p_error e = {0};
    *out = strdup(v->as.str);
    if (*out == NULL)
        return fail(&e, P2P_ENOMEM);
    return 0;
}

int p2p_stub_keep_file(p2p_file *out) {
    p2p_error e = {0};
    kept *k = calloc(1, sizeof(*k));
    char *path = out->path ? strdup(out->path) : NULL;
    if (k == NULL || path == NULL) {
        free(k);
        free(path);
        return fail(&e, P2P_ENOMEM);
    }
    k->path = path;
    pthread_mutex_lock(&lock);
    k->next = kept_list;
    kept_list = k;
    pthread_mutex_unlock(&lock);
    out->path = path;
    return 0;
}

void p2p_stub_shutdown(void) {
    pthread_mutex_lock(&lock);
    p2p_client_free(default_client);
    default_client = NULL;
    while (kept_list != NULL) {
        kept *k = kept_list;
        kept_list = k->next;
        p2p_schema_free(k->schema);
        free(k->path);
        free(k);
    }
    pthread_mutex_unlock(&lock);
}
