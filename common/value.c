#include "value.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integers of larger magnitude do not all have an exact double. */
#define MAX_EXACT_DOUBLE_INT ((json_int_t)1 << 53)

static const char *const type_names[] = {
    [P2P_TYPE_INT64] = "int64",   [P2P_TYPE_DOUBLE] = "double", [P2P_TYPE_BOOL] = "bool",
    [P2P_TYPE_STRING] = "string", [P2P_TYPE_FILE] = "file",
};

/* What each type needs on the wire, for error messages. */
static const char *const type_wire_forms[] = {
    [P2P_TYPE_INT64] = "a JSON integer",
    [P2P_TYPE_DOUBLE] = "a JSON number",
    [P2P_TYPE_BOOL] = "true or false",
    [P2P_TYPE_STRING] = "a JSON string",
    [P2P_TYPE_FILE] = "an object {\"hash\", \"size\"}",
};

bool p2p_type_valid(int t) {
    return t >= P2P_TYPE_INT64 && t <= P2P_TYPE_FILE;
}

const char *p2p_type_name(p2p_type t) {
    return p2p_type_valid((int)t) ? type_names[t] : "unknown";
}

int p2p_type_parse(const char *name, p2p_type *out, p2p_error *err) {
    for (int t = P2P_TYPE_INT64; name != NULL && t <= P2P_TYPE_FILE; t++) {
        if (strcmp(name, type_names[t]) == 0) {
            *out = (p2p_type)t;
            return 0;
        }
    }
    return p2p_error_set(err, P2P_EINVAL,
                         "unknown type \"%.64s\" (expected int64, double, bool, string or file)",
                         name ? name : "(null)");
}

void p2p_value_init(p2p_value *v) {
    memset(v, 0, sizeof(*v));
}

void p2p_value_cleanup(p2p_value *v) {
    if (v->type == P2P_TYPE_STRING)
        free(v->as.str);
    else if (v->type == P2P_TYPE_FILE)
        free(v->as.file.path);
    p2p_value_init(v);
}

void p2p_value_set_int64(p2p_value *v, int64_t x) {
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_INT64;
    v->as.i64 = x;
}

void p2p_value_set_bool(p2p_value *v, bool x) {
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_BOOL;
    v->as.boolean = x;
}

static int check_double(double x, p2p_error *err) {
    if (isnan(x))
        return p2p_error_set(err, P2P_EINVAL, "NaN is not a valid double value");
    if (isinf(x))
        return p2p_error_set(err, P2P_EINVAL, "%s is not a valid double value",
                             x > 0 ? "infinity" : "-infinity");
    return 0;
}

int p2p_value_set_double(p2p_value *v, double x, p2p_error *err) {
    int rc = check_double(x, err);
    if (rc != 0)
        return rc;
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_DOUBLE;
    v->as.f64 = x;
    return 0;
}

/* Length of the valid UTF-8 sequence at `p` (`avail` bytes left), 0 when it
 * is invalid. The ranges are those of RFC 3629, section 4, which excludes
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_sequence_len(const unsigned char *p, size_t avail) {
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++) {
        if (p[k] < 0x80 || p[k] > 0xBF)
            return 0;
    }
    return n;
}

bool p2p_utf8_valid(const char *s, size_t len, size_t *bad_offset) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_sequence_len(p + i, len - i);
        if (n == 0) {
            if (bad_offset != NULL)
                *bad_offset = i;
            return false;
        }
        i += n;
    }
    return true;
}

static int check_string(const char *s, size_t len, p2p_error *err) {
    size_t bad = 0;
    if (s == NULL)
        return p2p_error_set(err, P2P_EINVAL, "a string value cannot be NULL");
    const char *nul = memchr(s, '\0', len);
    if (nul != NULL)
        return p2p_error_set(err, P2P_EINVAL, "string contains a NUL character at byte %zu",
                             (size_t)(nul - s));
    if (!p2p_utf8_valid(s, len, &bad))
        return p2p_error_set(err, P2P_EINVAL, "string is not valid UTF-8 (bad byte 0x%02x at %zu)",
                             (unsigned)(unsigned char)s[bad], bad);
    return 0;
}

int p2p_value_set_stringn(p2p_value *v, const char *s, size_t len, p2p_error *err) {
    int rc = check_string(s, len, err);
    if (rc != 0)
        return rc;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a string of %zu bytes", len);
    memcpy(copy, s, len);
    copy[len] = '\0';
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_STRING;
    v->as.str = copy;
    return 0;
}

int p2p_value_set_string(p2p_value *v, const char *s, p2p_error *err) {
    if (s == NULL)
        return p2p_error_set(err, P2P_EINVAL, "a string value cannot be NULL");
    return p2p_value_set_stringn(v, s, strlen(s), err);
}

static int check_file(const char *hash, int64_t size, p2p_error *err) {
    if (!p2p_hash_hex_valid(hash))
        return p2p_error_set(err, P2P_EINVAL,
                             "file hash must be 64 lowercase hex characters (SHA-256)");
    if (size < 0)
        return p2p_error_set(err, P2P_EINVAL, "file size must be >= 0, got %" PRId64, size);
    return 0;
}

int p2p_value_set_file(p2p_value *v, const char *path, const char *hash, int64_t size,
                       p2p_error *err) {
    int rc = check_file(hash, size, err);
    if (rc != 0)
        return rc;
    char *copy = NULL;
    if (path != NULL && (copy = strdup(path)) == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot copy a file path");
    /* `hash` may point into `v` itself, which the cleanup below wipes. */
    char hash_copy[P2P_HASH_HEX_LEN + 1];
    memcpy(hash_copy, hash, sizeof(hash_copy));
    p2p_value_cleanup(v);
    v->type = P2P_TYPE_FILE;
    v->as.file.path = copy;
    memcpy(v->as.file.hash, hash_copy, sizeof(hash_copy));
    v->as.file.size = size;
    return 0;
}

int p2p_value_copy(p2p_value *dst, const p2p_value *src, p2p_error *err) {
    if (dst == src)
        return 0;
    switch (src->type) {
    case P2P_TYPE_INT64:
        p2p_value_set_int64(dst, src->as.i64);
        return 0;
    case P2P_TYPE_DOUBLE:
        return p2p_value_set_double(dst, src->as.f64, err);
    case P2P_TYPE_BOOL:
        p2p_value_set_bool(dst, src->as.boolean);
        return 0;
    case P2P_TYPE_STRING:
        return p2p_value_set_string(dst, src->as.str, err);
    case P2P_TYPE_FILE:
        return p2p_value_set_file(dst, src->as.file.path, src->as.file.hash, src->as.file.size,
                                  err);
    default:
        p2p_value_cleanup(dst);
        return 0;
    }
}

bool p2p_value_equal(const p2p_value *a, const p2p_value *b) {
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case P2P_TYPE_INT64:
        return a->as.i64 == b->as.i64;
    case P2P_TYPE_DOUBLE:
        return memcmp(&a->as.f64, &b->as.f64, sizeof(double)) == 0;
    case P2P_TYPE_BOOL:
        return a->as.boolean == b->as.boolean;
    case P2P_TYPE_STRING:
        return strcmp(a->as.str, b->as.str) == 0;
    case P2P_TYPE_FILE:
        return strcmp(a->as.file.hash, b->as.file.hash) == 0 && a->as.file.size == b->as.file.size;
    default:
        return true;
    }
}

int p2p_value_check(const p2p_value *v, p2p_type expected, p2p_error *err) {
    if (v->type != expected)
        return p2p_error_set(err, P2P_ETYPE, "expected %s, found %s", p2p_type_name(expected),
                             p2p_type_valid((int)v->type) ? p2p_type_name(v->type)
                                                          : "an empty value");
    switch (v->type) {
    case P2P_TYPE_DOUBLE:
        return check_double(v->as.f64, err);
    case P2P_TYPE_STRING:
        return v->as.str == NULL ? check_string(NULL, 0, err)
                                 : check_string(v->as.str, strlen(v->as.str), err);
    case P2P_TYPE_FILE:
        return check_file(v->as.file.hash, v->as.file.size, err);
    default:
        return 0;
    }
}

static json_t *file_to_json(const p2p_value *v) {
    return json_pack("{s:s, s:I}", "hash", v->as.file.hash, "size", (json_int_t)v->as.file.size);
}

int p2p_value_to_json(const p2p_value *v, json_t **out, p2p_error *err) {
    if (!p2p_type_valid((int)v->type))
        return p2p_error_set(err, P2P_EINVAL, "cannot convert an empty value to JSON");
    int rc = p2p_value_check(v, v->type, err);
    if (rc != 0)
        return rc;
    json_t *j = NULL;
    switch (v->type) {
    case P2P_TYPE_INT64:
        j = json_integer((json_int_t)v->as.i64);
        break;
    case P2P_TYPE_DOUBLE:
        j = json_real(v->as.f64);
        break;
    case P2P_TYPE_BOOL:
        j = json_boolean(v->as.boolean);
        break;
    case P2P_TYPE_STRING:
        j = json_string(v->as.str);
        break;
    case P2P_TYPE_FILE:
        j = file_to_json(v);
        break;
    }
    if (j == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot build the JSON of a %s value",
                             p2p_type_name(v->type));
    *out = j;
    return 0;
}

/* The shortest %g form that reads back as `x`, always with a '.' or an
 * exponent, so 1.0 shows as "1.0" and not as the integer 1. */
static void format_real(double x, char *buf, size_t size) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    if (strpbrk(buf, ".en") == NULL) {
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, ".0");
    }
}

/* Describes what a JSON value is, for "expected X, found Y" messages. */
static void describe_json(const json_t *j, char *buf, size_t size) {
    switch (j == NULL ? -1 : (int)json_typeof(j)) {
    case JSON_OBJECT:
        snprintf(buf, size, "an object");
        break;
    case JSON_ARRAY:
        snprintf(buf, size, "an array");
        break;
    case JSON_STRING:
        snprintf(buf, size, "a string");
        break;
    case JSON_INTEGER:
        snprintf(buf, size, "the integer %" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL: {
        char real[40];
        format_real(json_real_value(j), real, sizeof(real));
        snprintf(buf, size, "the real number %s", real);
        break;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        snprintf(buf, size, "%s", json_is_true(j) ? "true" : "false");
        break;
    case JSON_NULL:
        snprintf(buf, size, "null");
        break;
    default:
        snprintf(buf, size, "nothing");
        break;
    }
}

static int wrong_json_type(const json_t *j, p2p_type expected, p2p_error *err) {
    char found[64];
    describe_json(j, found, sizeof(found));
    return p2p_error_set(err, P2P_ETYPE, "expected %s (%s), found %s", p2p_type_name(expected),
                         type_wire_forms[expected], found);
}

static int double_from_json(const json_t *j, p2p_value *out, p2p_error *err) {
    if (json_is_real(j))
        return p2p_value_set_double(out, json_real_value(j), err);
    json_int_t i = json_integer_value(j);
    if (i > MAX_EXACT_DOUBLE_INT || i < -MAX_EXACT_DOUBLE_INT)
        return p2p_error_set(err, P2P_EINVAL,
                             "the integer %" JSON_INTEGER_FORMAT
                             " has no exact double (magnitude over 2^53); send it as a real",
                             i);
    return p2p_value_set_double(out, (double)i, err);
}

/* A file's only wire members are "hash" and "size"; the path stays local. */
static int file_from_json(const json_t *j, p2p_value *out, p2p_error *err) {
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)j, key, member) {
        if (strcmp(key, "hash") != 0 && strcmp(key, "size") != 0)
            return p2p_error_set(err, P2P_EINVAL,
                                 "file object has an unexpected member \"%.64s\" (only \"hash\" "
                                 "and \"size\" are allowed)",
                                 key);
    }
    const json_t *hash = json_object_get(j, "hash");
    const json_t *size = json_object_get(j, "size");
    if (!json_is_string(hash))
        return p2p_error_set(err, P2P_EINVAL,
                             "file object needs \"hash\", a string of 64 "
                             "lowercase hex characters");
    if (!json_is_integer(size))
        return p2p_error_set(err, P2P_EINVAL, "file object needs \"size\", an integer >= 0");
    return p2p_value_set_file(out, NULL, json_string_value(hash), json_integer_value(size), err);
}

int p2p_value_from_json(const json_t *json, p2p_type expected, p2p_value *out, p2p_error *err) {
    if (!p2p_type_valid((int)expected))
        return p2p_error_set(err, P2P_EINVAL, "unknown expected type %d", (int)expected);
    switch (expected) {
    case P2P_TYPE_INT64:
        if (!json_is_integer(json))
            break;
        p2p_value_set_int64(out, (int64_t)json_integer_value(json));
        return 0;
    case P2P_TYPE_DOUBLE:
        if (!json_is_number(json))
            break;
        return double_from_json(json, out, err);
    case P2P_TYPE_BOOL:
        if (!json_is_boolean(json))
            break;
        p2p_value_set_bool(out, json_is_true(json));
        return 0;
    case P2P_TYPE_STRING:
        if (!json_is_string(json))
            break;
        return p2p_value_set_stringn(out, json_string_value(json), json_string_length(json), err);
    case P2P_TYPE_FILE:
        if (!json_is_object(json))
            break;
        return file_from_json(json, out, err);
    }
    return wrong_json_type(json, expected, err);
}

void p2p_value_list_cleanup(p2p_value *values, size_t n) {
    for (size_t i = 0; values != NULL && i < n; i++)
        p2p_value_cleanup(&values[i]);
}

static bool param_named(const p2p_param *params, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(params[i].name, name) == 0)
            return true;
    }
    return false;
}

/* Finds a member of `obj` that is no parameter. */
static int check_no_extra(const p2p_param *params, size_t n, const json_t *obj, p2p_error *err) {
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)obj, key, member) {
        if (!param_named(params, n, key))
            return p2p_error_set(err, P2P_EINVAL, "unexpected argument '%.64s'", key);
    }
    return 0;
}

int p2p_value_list_from_json(const p2p_param *params, size_t n, const json_t *obj,
                             p2p_value *values, p2p_error *err) {
    for (size_t i = 0; i < n; i++)
        p2p_value_init(&values[i]);
    if (!json_is_object(obj)) {
        char found[64];
        describe_json(obj, found, sizeof(found));
        return p2p_error_set(err, P2P_ETYPE, "arguments must be a JSON object, found %s", found);
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const json_t *member = json_object_get(obj, params[i].name);
        p2p_error inner = {0};
        if (member == NULL)
            rc = p2p_error_set(err, P2P_EINVAL, "missing argument '%s' (%s)", params[i].name,
                               p2p_type_name(params[i].type));
        else if ((rc = p2p_value_from_json(member, params[i].type, &values[i], &inner)) != 0)
            p2p_error_set(err, rc, "argument '%s': %s", params[i].name, inner.msg);
    }
    if (rc == 0 && json_object_size(obj) != n)
        rc = check_no_extra(params, n, obj, err);
    if (rc != 0)
        p2p_value_list_cleanup(values, n);
    return rc;
}

int p2p_value_list_to_json(const p2p_param *params, size_t n, const p2p_value *values, json_t **out,
                           p2p_error *err) {
    json_t *obj = json_object();
    if (obj == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "cannot allocate a JSON object");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        p2p_error inner = {0};
        json_t *j = NULL;
        rc = p2p_value_check(&values[i], params[i].type, &inner);
        if (rc == 0)
            rc = p2p_value_to_json(&values[i], &j, &inner);
        if (rc != 0)
            p2p_error_set(err, rc, "argument '%s': %s", params[i].name, inner.msg);
        else if (json_object_set_new(obj, params[i].name, j) != 0)
            rc = p2p_error_set(err, P2P_EINVAL, "cannot add argument '%s' to a JSON object",
                               params[i].name);
    }
    if (rc != 0) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return 0;
}
