/* The runtime of generated code: schemas and the worker adapters' helpers
 * (the client side is in stub_client.c). */
#include "stub.h"

#include "p2prpc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int p2p_stub_schemas_new(const p2p_stub_function *fns, size_t n, p2p_schema ***out,
                         p2p_error *err) {
    p2p_schema **schemas = calloc(n > 0 ? n : 1, sizeof(*schemas));
    if (schemas == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        p2p_error e = {0};
        int rc = p2p_schema_build(fns[i].name, fns[i].inputs, fns[i].n_inputs, fns[i].outputs,
                                  fns[i].n_outputs, &schemas[i], &e);
        if (rc != 0) {
            p2p_stub_schemas_free(schemas, i);
            return p2p_error_set(err, rc, "%s: %s", fns[i].name, e.msg);
        }
    }
    *out = schemas;
    return 0;
}

void p2p_stub_schemas_free(p2p_schema **schemas, size_t n) {
    if (schemas == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        p2p_schema_free(schemas[i]);
    free(schemas);
}

p2p_file p2p_stub_in_file(const p2p_value *v) {
    p2p_file f = {.path = v->as.file.path};
    memcpy(f.hash, v->as.file.hash, sizeof(f.hash));
    return f;
}

int p2p_stub_in_int(const p2p_value *v, const char *name, int *out) {
    if (v->as.i64 < INT_MIN || v->as.i64 > INT_MAX) {
        p2p_fail("argument '%s': %lld does not fit an int", name, (long long)v->as.i64);
        return P2P_EINVAL;
    }
    *out = (int)v->as.i64;
    return 0;
}

int p2p_stub_in_long(const p2p_value *v, const char *name, long *out) {
    /* long is 64 bits on LP64 systems; elsewhere the range matters. */
    if ((long long)v->as.i64 < LONG_MIN || (long long)v->as.i64 > LONG_MAX) {
        p2p_fail("argument '%s': %lld does not fit a long", name, (long long)v->as.i64);
        return P2P_EINVAL;
    }
    *out = (long)v->as.i64;
    return 0;
}

int p2p_stub_out_double(p2p_value *v, const char *name, double x) {
    p2p_error e = {0};
    if (p2p_value_set_double(v, x, &e) != 0) {
        p2p_fail("output '%s': %s", name, e.msg);
        return P2P_EINVAL;
    }
    return 0;
}

int p2p_stub_out_string(p2p_value *v, const char *name, const char *s) {
    p2p_error e = {0};
    if (s == NULL) {
        p2p_fail("output '%s' was not set", name);
        return P2P_EINVAL;
    }
    if (p2p_value_set_string(v, s, &e) != 0) {
        p2p_fail("output '%s': %s", name, e.msg);
        return e.code != 0 ? e.code : P2P_EINVAL;
    }
    return 0;
}

int p2p_stub_out_file(p2p_value *v, const char *name, const p2p_file *f) {
    if (f->path == NULL || f->path[0] == '\0') {
        p2p_fail("output '%s' was not set to a file", name);
        return P2P_EINVAL;
    }
    char *path = strdup(f->path);
    if (path == NULL) {
        p2p_fail("output '%s': out of memory", name);
        return P2P_ENOMEM;
    }
    /* By hand rather than p2p_value_set_file: an empty hash is allowed here,
     * the worker hashes the file (worker.h, p2p_worker_invoke_fn). */
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

int p2p_stub_parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "1", "yes"};
    static const char *const no[] = {"false", "0", "no"};
    for (size_t i = 0; s != NULL && i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            return 0;
        }
    }
    return P2P_EINVAL;
}
