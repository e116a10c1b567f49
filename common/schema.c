#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct param_list {
    p2p_param items[P2P_SCHEMA_MAX_PARAMS]; /* names owned by the list */
    size_t count;
} param_list;

struct p2p_schema {
    char *name;
    param_list inputs;
    param_list outputs;
    bool finished;
    char fingerprint[P2P_HASH_HEX_LEN + 1];
};

/* Members of call documents and wire bodies, which a parameter must never
 * shadow (DESIGN §1). docs/protocol.md, section "values", repeats the list. */
static const char *const reserved_names[] = {
    "_id",        "args",          "attempts",    "checkpoint", "created_at", "error",
    "expires_at", "expiry",        "fingerprint", "function",   "identifier", "inputs",
    "lease",      "lease_expires", "lease_token", "nodes",      "outputs",    "progress",
    "status",     "terminate",     "timestamp",   "updated_at", "worker",     NULL,
};

/* C11 and C23 keywords, and the type names generated prototypes need: a
 * parameter named like one of them would not compile. Names starting with "_"
 * and a capital (_Bool...) are refused by a separate rule. */
static const char *const c_keywords[] = {
    "alignas",       "alignof",   "auto",     "bool",         "break",    "case",    "char",
    "const",         "constexpr", "continue", "default",      "do",       "double",  "else",
    "enum",          "extern",    "false",    "float",        "for",      "goto",    "if",
    "inline",        "int",       "int64_t",  "long",         "NULL",     "nullptr", "register",
    "restrict",      "return",    "short",    "signed",       "size_t",   "sizeof",  "static",
    "static_assert", "struct",    "switch",   "thread_local", "true",     "typedef", "typeof",
    "typeof_unqual", "union",     "unsigned", "void",         "volatile", "while",   NULL,
};

static bool in_list(const char *const *list, const char *name) {
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], name) == 0)
            return true;
    }
    return false;
}

bool p2p_schema_reserved_name(const char *name) {
    return name != NULL && in_list(reserved_names, name);
}

const char *const *p2p_schema_reserved_names(void) {
    return reserved_names;
}

static bool is_ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* The checks every name shares: present, bounded, a C identifier. */
static int check_identifier(const char *what, const char *name, p2p_error *err) {
    if (name == NULL || name[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "%s name is empty", what);
    size_t len = strnlen(name, P2P_SCHEMA_NAME_MAX + 1);
    if (len > P2P_SCHEMA_NAME_MAX)
        return p2p_error_set(err, P2P_EINVAL, "%s name \"%.32s...\" is longer than %d bytes", what,
                             name, P2P_SCHEMA_NAME_MAX);
    if (!is_ident_start(name[0]))
        return p2p_error_set(err, P2P_EINVAL,
                             "%s name \"%s\" is not a C identifier (it must start with a letter "
                             "or '_')",
                             what, name);
    for (size_t i = 1; i < len; i++) {
        if (!is_ident_char(name[i]))
            return p2p_error_set(err, P2P_EINVAL,
                                 "%s name \"%s\" is not a C identifier (character %zu is not a "
                                 "letter, digit or '_')",
                                 what, name, i + 1);
    }
    return 0;
}

int p2p_schema_check_function_name(const char *name, p2p_error *err) {
    int rc = check_identifier("function", name, err);
    if (rc != 0)
        return rc;
    size_t plen = strlen(P2P_SCHEMA_PREFIX);
    if (strncmp(name, P2P_SCHEMA_PREFIX, plen) != 0 || name[plen] == '\0')
        return p2p_error_set(err, P2P_EINVAL,
                             "function name \"%s\" must start with \"" P2P_SCHEMA_PREFIX
                             "\" followed by at least one character",
                             name);
    return 0;
}

int p2p_schema_check_param_name(const char *name, p2p_error *err) {
    int rc = check_identifier("parameter", name, err);
    if (rc != 0)
        return rc;
    if (in_list(c_keywords, name))
        return p2p_error_set(err, P2P_EINVAL, "parameter name \"%s\" is a C keyword or type name",
                             name);
    if (name[0] == '_' && (name[1] == '_' || (name[1] >= 'A' && name[1] <= 'Z')))
        return p2p_error_set(err, P2P_EINVAL,
                             "parameter name \"%s\" is reserved by the C standard (leading \"__\" "
                             "or \"_\" and a capital)",
                             name);
    if (strncasecmp(name, "p2p", 3) == 0)
        return p2p_error_set(err, P2P_EINVAL,
                             "parameter name \"%s\" is in the framework's namespace (\"p2p\" "
                             "prefix)",
                             name);
    if (p2p_schema_reserved_name(name))
        return p2p_error_set(err, P2P_EINVAL,
                             "parameter name \"%s\" is reserved by p2prpc (it names a member of "
                             "calls)",
                             name);
    return 0;
}

int p2p_schema_new(const char *name, p2p_schema **out, p2p_error *err) {
    int rc = p2p_schema_check_function_name(name, err);
    if (rc != 0)
        return rc;
    p2p_schema *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        return p2p_error_set(err, P2P_ENOMEM, "cannot allocate a schema");
    }
    *out = s;
    return 0;
}

static void param_list_cleanup(param_list *list) {
    for (size_t i = 0; i < list->count; i++)
        free((char *)list->items[i].name); /* owned by the list; const only for readers */
    list->count = 0;
}

void p2p_schema_free(p2p_schema *s) {
    if (s == NULL)
        return;
    param_list_cleanup(&s->inputs);
    param_list_cleanup(&s->outputs);
    free(s->name);
    free(s);
}

static bool list_has(const param_list *list, const char *name) {
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->items[i].name, name) == 0)
            return true;
    }
    return false;
}

static int add_param(p2p_schema *s, param_list *list, const char *what, const char *name,
                     p2p_type type, p2p_error *err) {
    if (s->finished)
        return p2p_error_set(err, P2P_ECONFLICT, "schema of %s is finished; it cannot change",
                             s->name);
    int rc = p2p_schema_check_param_name(name, err);
    if (rc != 0)
        return rc;
    if (!p2p_type_valid((int)type))
        return p2p_error_set(err, P2P_EINVAL, "%s \"%s\" of %s has an unknown type %d", what, name,
                             s->name, (int)type);
    if (list_has(&s->inputs, name) || list_has(&s->outputs, name))
        return p2p_error_set(err, P2P_EINVAL,
                             "%s \"%s\" of %s: the name is already used by another parameter", what,
                             name, s->name);
    if (list->count == P2P_SCHEMA_MAX_PARAMS)
        return p2p_error_set(err, P2P_EINVAL, "%s has more than %d %ss", s->name,
                             P2P_SCHEMA_MAX_PARAMS, what);
    char *copy = strdup(name);
    if (copy == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a parameter name");
    list->items[list->count].name = copy;
    list->items[list->count].type = type;
    list->count++;
    return 0;
}

int p2p_schema_add_input(p2p_schema *s, const char *name, p2p_type type, p2p_error *err) {
    return add_param(s, &s->inputs, "input", name, type, err);
}

int p2p_schema_add_output(p2p_schema *s, const char *name, p2p_type type, p2p_error *err) {
    return add_param(s, &s->outputs, "output", name, type, err);
}

static int hash_params(p2p_hasher *h, const param_list *list, p2p_error *err) {
    int rc = p2p_hasher_update_u64be(h, list->count, err);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        const p2p_param *p = &list->items[i];
        rc = p2p_hasher_update_lp(h, p->name, strlen(p->name), err);
        if (rc == 0)
            rc = p2p_hasher_update_u8(h, (uint8_t)p->type, err);
    }
    return rc;
}

/* The encoding is documented byte for byte in docs/protocol.md ("values");
 * tests/unit/ident_vectors.py rebuilds it independently. */
static int compute_fingerprint(p2p_schema *s, p2p_error *err) {
    p2p_hasher *h = NULL;
    int rc = p2p_hasher_new(&h, err);
    if (rc == 0)
        rc = p2p_hasher_update_lp(h, P2P_SCHEMA_FORMAT, strlen(P2P_SCHEMA_FORMAT), err);
    if (rc == 0)
        rc = p2p_hasher_update_lp(h, s->name, strlen(s->name), err);
    if (rc == 0)
        rc = hash_params(h, &s->inputs, err);
    if (rc == 0)
        rc = hash_params(h, &s->outputs, err);
    if (rc == 0)
        rc = p2p_hasher_final_hex(h, s->fingerprint, err);
    p2p_hasher_free(h);
    return rc;
}

int p2p_schema_finish(p2p_schema *s, p2p_error *err) {
    if (s->finished)
        return p2p_error_set(err, P2P_ECONFLICT, "schema of %s is already finished", s->name);
    if (s->outputs.count == 0)
        return p2p_error_set(err, P2P_EINVAL, "%s has no output; a function needs at least one",
                             s->name);
    int rc = compute_fingerprint(s, err);
    if (rc != 0)
        return rc;
    s->finished = true;
    return 0;
}

int p2p_schema_build(const char *name, const p2p_param *inputs, size_t n_inputs,
                     const p2p_param *outputs, size_t n_outputs, p2p_schema **out, p2p_error *err) {
    p2p_schema *s = NULL;
    int rc = p2p_schema_new(name, &s, err);
    for (size_t i = 0; i < n_inputs && rc == 0; i++)
        rc = p2p_schema_add_input(s, inputs[i].name, inputs[i].type, err);
    for (size_t i = 0; i < n_outputs && rc == 0; i++)
        rc = p2p_schema_add_output(s, outputs[i].name, outputs[i].type, err);
    if (rc == 0)
        rc = p2p_schema_finish(s, err);
    if (rc != 0) {
        p2p_schema_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

bool p2p_schema_finished(const p2p_schema *s) {
    return s->finished;
}

const char *p2p_schema_name(const p2p_schema *s) {
    return s->name;
}

const char *p2p_schema_fingerprint(const p2p_schema *s) {
    return s->finished ? s->fingerprint : NULL;
}

const p2p_param *p2p_schema_inputs(const p2p_schema *s, size_t *count) {
    *count = s->inputs.count;
    return s->inputs.items;
}

const p2p_param *p2p_schema_outputs(const p2p_schema *s, size_t *count) {
    *count = s->outputs.count;
    return s->outputs.items;
}

static json_t *params_to_json(const param_list *list) {
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < list->count; i++) {
        const p2p_param *p = &list->items[i];
        json_t *item = json_pack("{s:s, s:s}", "name", p->name, "type", p2p_type_name(p->type));
        if (json_array_append_new(arr, item) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int p2p_schema_to_json(const p2p_schema *s, json_t **out, p2p_error *err) {
    if (!s->finished)
        return p2p_error_set(err, P2P_EINVAL, "schema of %s is not finished", s->name);
    json_t *j =
        json_pack("{s:s, s:o*, s:o*, s:s}", "name", s->name, "inputs", params_to_json(&s->inputs),
                  "outputs", params_to_json(&s->outputs), "fingerprint", s->fingerprint);
    if (j == NULL || json_object_size(j) != 4) {
        json_decref(j);
        return p2p_error_set(err, P2P_ENOMEM, "cannot build the JSON of schema %s", s->name);
    }
    *out = j;
    return 0;
}

/* Refuses any member of `obj` not in the NULL-terminated `allowed`. */
static int only_members(const json_t *obj, const char *const *allowed, const char *where,
                        p2p_error *err) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (!in_list(allowed, key))
            return p2p_error_set(err, P2P_EINVAL, "%s has an unexpected member \"%.64s\"", where,
                                 key);
    }
    return 0;
}

static int param_from_json(p2p_schema *s, bool output, const json_t *item, size_t index,
                           p2p_error *err) {
    static const char *const allowed[] = {"name", "type", NULL};
    const char *list = output ? "outputs" : "inputs";
    if (!json_is_object(item))
        return p2p_error_set(err, P2P_ETYPE, "%s[%zu] must be an object {\"name\", \"type\"}", list,
                             index);
    char where[32];
    snprintf(where, sizeof(where), "%s[%zu]", list, index);
    int rc = only_members(item, allowed, where, err);
    if (rc != 0)
        return rc;
    const char *name = json_string_value(json_object_get(item, "name"));
    const char *type_name = json_string_value(json_object_get(item, "type"));
    if (name == NULL || type_name == NULL)
        return p2p_error_set(err, P2P_ETYPE, "%s needs \"name\" and \"type\", both strings", where);
    p2p_type type;
    rc = p2p_type_parse(type_name, &type, err);
    if (rc != 0)
        return rc;
    return output ? p2p_schema_add_output(s, name, type, err)
                  : p2p_schema_add_input(s, name, type, err);
}

static int params_from_json(p2p_schema *s, bool output, const json_t *arr, p2p_error *err) {
    if (!json_is_array(arr))
        return p2p_error_set(err, P2P_ETYPE, "schema of %s: \"%s\" must be an array", s->name,
                             output ? "outputs" : "inputs");
    int rc = 0;
    for (size_t i = 0; i < json_array_size(arr) && rc == 0; i++)
        rc = param_from_json(s, output, json_array_get(arr, i), i, err);
    return rc;
}

static int check_fingerprint(const p2p_schema *s, const json_t *fp, p2p_error *err) {
    if (fp == NULL)
        return 0;
    if (!json_is_string(fp))
        return p2p_error_set(err, P2P_ETYPE, "schema of %s: \"fingerprint\" must be a string",
                             s->name);
    if (strcmp(json_string_value(fp), s->fingerprint) != 0)
        return p2p_error_set(err, P2P_ECONFLICT,
                             "schema of %s: fingerprint %.64s does not match the signature "
                             "(computed %s); the two sides have different versions",
                             s->name, json_string_value(fp), s->fingerprint);
    return 0;
}

int p2p_schema_from_json(const json_t *json, p2p_schema **out, p2p_error *err) {
    static const char *const allowed[] = {"name", "inputs", "outputs", "fingerprint", NULL};
    if (!json_is_object(json))
        return p2p_error_set(err, P2P_ETYPE, "a schema must be a JSON object");
    int rc = only_members(json, allowed, "schema", err);
    if (rc != 0)
        return rc;
    const char *name = json_string_value(json_object_get(json, "name"));
    if (name == NULL)
        return p2p_error_set(err, P2P_ETYPE, "schema needs \"name\", a string");
    p2p_schema *s = NULL;
    rc = p2p_schema_new(name, &s, err);
    if (rc == 0)
        rc = params_from_json(s, false, json_object_get(json, "inputs"), err);
    if (rc == 0)
        rc = params_from_json(s, true, json_object_get(json, "outputs"), err);
    if (rc == 0)
        rc = p2p_schema_finish(s, err);
    if (rc == 0)
        rc = check_fingerprint(s, json_object_get(json, "fingerprint"), err);
    if (rc != 0) {
        p2p_schema_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
