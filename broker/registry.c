#include "registry.h"

#include "fsutil.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCHEMA_FILE (16u << 20)

struct p2p_registry {
    p2p_schema **items; /* owned, sorted by name */
    size_t count, capacity;
};

int p2p_registry_new(p2p_registry **out, p2p_error *err) {
    p2p_registry *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory creating the function registry");
    *out = r;
    return 0;
}

void p2p_registry_free(p2p_registry *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        p2p_schema_free(r->items[i]);
    free(r->items);
    free(r);
}

/* Index of `name` in the sorted array, or where it would go; `*found` says which. */
static size_t position(const p2p_registry *r, const char *name, bool *found) {
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p2p_schema_name(r->items[mid]), name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int copy_schema(const p2p_schema *s, p2p_schema **out, p2p_error *err) {
    size_t ni = 0, no = 0;
    const p2p_param *in = p2p_schema_inputs(s, &ni);
    const p2p_param *outp = p2p_schema_outputs(s, &no);
    return p2p_schema_build(p2p_schema_name(s), in, ni, outp, no, out, err);
}

int p2p_registry_add(p2p_registry *r, const p2p_schema *s, p2p_error *err) {
    if (s == NULL || !p2p_schema_finished(s))
        return p2p_error_set(err, P2P_EINVAL, "only a finished schema can be registered");
    bool found = false;
    size_t at = position(r, p2p_schema_name(s), &found);
    if (found) {
        const char *have = p2p_schema_fingerprint(r->items[at]);
        if (strcmp(have, p2p_schema_fingerprint(s)) == 0)
            return 0;
        return p2p_error_set(err, P2P_ECONFLICT,
                             "function %s is registered twice with different signatures "
                             "(fingerprints %.12s... and %.12s...)",
                             p2p_schema_name(s), have, p2p_schema_fingerprint(s));
    }
    if (r->count == r->capacity) {
        size_t cap = r->capacity ? r->capacity * 2 : 8;
        p2p_schema **items = realloc(r->items, cap * sizeof(*items));
        if (items == NULL)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory registering a function");
        r->items = items;
        r->capacity = cap;
    }
    p2p_schema *copy = NULL;
    int rc = copy_schema(s, &copy, err);
    if (rc != 0)
        return rc;
    memmove(&r->items[at + 1], &r->items[at], (r->count - at) * sizeof(*r->items));
    r->items[at] = copy;
    r->count++;
    return 0;
}

/* Parses every schema of `json` into `parsed` (an array of `n` slots). */
static int parse_all(const json_t *json, p2p_schema **parsed, size_t n, p2p_error *err) {
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_is_array(json) ? json_array_get(json, i) : json;
        p2p_error e = {0};
        int rc = p2p_schema_from_json(item, &parsed[i], &e);
        if (rc != 0) {
            if (json_is_array(json))
                return p2p_error_set(err, rc, "schema %zu: %s", i, e.msg);
            return p2p_error_set(err, rc, "%s", e.msg);
        }
    }
    return 0;
}

/* Checks that adding `parsed[0..n)` cannot fail for a reason other than memory:
 * no conflict with the registry nor among themselves. */
static int check_all(const p2p_registry *r, p2p_schema **parsed, size_t n, p2p_error *err) {
    for (size_t i = 0; i < n; i++) {
        const char *name = p2p_schema_name(parsed[i]);
        const p2p_schema *have = p2p_registry_find(r, name);
        for (size_t j = 0; j < i && have == NULL; j++)
            if (strcmp(p2p_schema_name(parsed[j]), name) == 0)
                have = parsed[j];
        if (have != NULL &&
            strcmp(p2p_schema_fingerprint(have), p2p_schema_fingerprint(parsed[i])) != 0)
            return p2p_error_set(err, P2P_ECONFLICT,
                                 "function %s is registered twice with different signatures", name);
    }
    return 0;
}

static void remove_name(p2p_registry *r, const char *name) {
    bool found = false;
    size_t at = position(r, name, &found);
    if (!found)
        return;
    p2p_schema_free(r->items[at]);
    memmove(&r->items[at], &r->items[at + 1], (r->count - at - 1) * sizeof(*r->items));
    r->count--;
}

int p2p_registry_add_json(p2p_registry *r, const json_t *json, p2p_error *err) {
    size_t n = json_is_array(json) ? json_array_size(json) : 1;
    if (n == 0)
        return p2p_error_set(err, P2P_EINVAL, "an empty array of schemas");
    p2p_schema **parsed = calloc(n, sizeof(*parsed));
    bool *added = calloc(n, sizeof(*added));
    int rc = parsed != NULL && added != NULL
                 ? parse_all(json, parsed, n, err)
                 : p2p_error_set(err, P2P_ENOMEM, "out of memory reading schemas");
    if (rc == 0)
        rc = check_all(r, parsed, n, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        added[i] = p2p_registry_find(r, p2p_schema_name(parsed[i])) == NULL;
        rc = p2p_registry_add(r, parsed[i], err);
        added[i] = added[i] && rc == 0;
    }
    /* After check_all only memory can fail: take back what this call added. */
    for (size_t i = 0; rc != 0 && added != NULL && i < n; i++)
        if (added[i])
            remove_name(r, p2p_schema_name(parsed[i]));
    for (size_t i = 0; parsed != NULL && i < n; i++)
        p2p_schema_free(parsed[i]);
    free(parsed);
    free(added);
    return rc;
}

int p2p_registry_load_file(p2p_registry *r, const char *path, p2p_error *err) {
    char *text = NULL;
    size_t len = 0;
    p2p_error e = {0};
    int rc = p2p_fs_read_file(path, MAX_SCHEMA_FILE, &text, &len, &e);
    if (rc != 0)
        return p2p_error_set(err, rc, "schema file %s: %s", path, e.msg);
    json_error_t jerr;
    json_t *json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (json == NULL)
        return p2p_error_set(err, P2P_EINVAL, "schema file %s: line %d: %s", path, jerr.line,
                             jerr.text);
    rc = p2p_registry_add_json(r, json, &e);
    json_decref(json);
    if (rc != 0)
        return p2p_error_set(err, rc, "schema file %s: %s", path, e.msg);
    return 0;
}

const p2p_schema *p2p_registry_find(const p2p_registry *r, const char *name) {
    if (name == NULL)
        return NULL;
    bool found = false;
    size_t at = position(r, name, &found);
    return found ? r->items[at] : NULL;
}

size_t p2p_registry_count(const p2p_registry *r) {
    return r->count;
}

const p2p_schema *p2p_registry_at(const p2p_registry *r, size_t i) {
    return i < r->count ? r->items[i] : NULL;
}

int p2p_registry_to_json(const p2p_registry *r, json_t **out, p2p_error *err) {
    json_t *list = json_array();
    json_t *body = json_object();
    int rc = list != NULL && body != NULL && json_object_set(body, "functions", list) == 0
                 ? 0
                 : p2p_error_set(err, P2P_ENOMEM, "out of memory listing the functions");
    for (size_t i = 0; i < r->count && rc == 0; i++) {
        json_t *one = NULL;
        rc = p2p_schema_to_json(r->items[i], &one, err);
        if (rc == 0 && json_array_append_new(list, one) != 0)
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory listing the functions");
    }
    json_decref(list);
    if (rc != 0) {
        json_decref(body);
        return rc;
    }
    *out = body;
    return 0;
}
