#include "ident.h"

#include <stdlib.h>
#include <string.h>

/* Doubles are hashed as their IEEE-754 binary64 bits, read through a uint64_t
 * of the same size, so the byte order written is the value's, not memory's. */
_Static_assert(sizeof(double) == sizeof(uint64_t), "double must be IEEE-754 binary64");

/* Writes the value bytes of one argument; the layout per type is in
 * docs/protocol.md ("identifier"). */
static int hash_value(p2p_hasher *h, const p2p_value *v, p2p_error *err) {
    uint64_t bits = 0;
    uint8_t digest[P2P_HASH_LEN];
    switch (v->type) {
    case P2P_TYPE_INT64:
        /* Conversion to unsigned is modulo 2^64: the two's complement bits. */
        return p2p_hasher_update_u64be(h, (uint64_t)v->as.i64, err);
    case P2P_TYPE_DOUBLE:
        /* Bit-exact on purpose: -0.0 and 0.0 are different arguments. */
        memcpy(&bits, &v->as.f64, sizeof(bits));
        return p2p_hasher_update_u64be(h, bits, err);
    case P2P_TYPE_BOOL:
        return p2p_hasher_update_u8(h, v->as.boolean ? 1 : 0, err);
    case P2P_TYPE_STRING:
        return p2p_hasher_update_lp(h, v->as.str, strlen(v->as.str), err);
    case P2P_TYPE_FILE:
        if (p2p_hash_hex_decode(v->as.file.hash, digest) != 0)
            return p2p_error_set(err, P2P_EINVAL, "file hash is not 64 lowercase hex characters");
        return p2p_hasher_update(h, digest, sizeof(digest), err);
    }
    return p2p_error_set(err, P2P_EINVAL, "cannot hash an empty value");
}

static int hash_argument(p2p_hasher *h, const p2p_param *param, const p2p_value *v,
                         p2p_error *err) {
    p2p_error inner = {0};
    int rc = p2p_value_check(v, param->type, &inner);
    if (rc != 0)
        return p2p_error_set(err, rc, "argument '%s': %s", param->name, inner.msg);
    rc = p2p_hasher_update_lp(h, param->name, strlen(param->name), err);
    if (rc == 0)
        rc = p2p_hasher_update_u8(h, (uint8_t)param->type, err);
    if (rc == 0)
        rc = hash_value(h, v, err);
    return rc;
}

/* lp(name) u8(0x80 | type) upstream-identifier(32 raw bytes) lp(output). */
static int hash_reference(p2p_hasher *h, const p2p_param *param, const p2p_ident_ref *ref,
                          p2p_error *err) {
    uint8_t up[P2P_HASH_LEN];
    if (p2p_hash_hex_decode(ref->identifier, up) != 0)
        return p2p_error_set(err, P2P_EINVAL,
                             "argument '%s': the upstream identifier is not 64 lowercase hex",
                             param->name);
    if (ref->output == NULL || ref->output[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "argument '%s': the upstream output has no name",
                             param->name);
    int rc = p2p_hasher_update_lp(h, param->name, strlen(param->name), err);
    if (rc == 0)
        rc = p2p_hasher_update_u8(h, (uint8_t)(P2P_IDENT_REF_TAG | (unsigned)param->type), err);
    if (rc == 0)
        rc = p2p_hasher_update(h, up, sizeof(up), err);
    if (rc == 0)
        rc = p2p_hasher_update_lp(h, ref->output, strlen(ref->output), err);
    return rc;
}

static int check_parts(const char *function, const char *fingerprint, const p2p_param *params,
                       size_t n, p2p_error *err) {
    if (function == NULL || function[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "a call identifier needs a function name");
    if (!p2p_hash_hex_valid(fingerprint))
        return p2p_error_set(err, P2P_EINVAL,
                             "the fingerprint of %s is not 64 lowercase hex characters", function);
    for (size_t i = 0; i < n; i++) {
        if (params[i].name == NULL)
            return p2p_error_set(err, P2P_EINVAL, "parameter %zu of %s has no name", i, function);
    }
    return 0;
}

static int compute(const char *function, const char *fingerprint, const p2p_param *params, size_t n,
                   const p2p_value *args, const p2p_ident_ref *refs,
                   char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) {
    uint8_t fp[P2P_HASH_LEN];
    p2p_hasher *h = NULL;
    int rc = check_parts(function, fingerprint, params, n, err);
    if (rc == 0 && p2p_hash_hex_decode(fingerprint, fp) != 0)
        rc = p2p_error_set(err, P2P_EINTERNAL, "a valid fingerprint did not decode");
    if (rc == 0)
        rc = p2p_hasher_new(&h, err);
    if (rc == 0)
        rc = p2p_hasher_update_lp(h, P2P_IDENT_FORMAT, strlen(P2P_IDENT_FORMAT), err);
    if (rc == 0)
        rc = p2p_hasher_update_lp(h, function, strlen(function), err);
    if (rc == 0)
        rc = p2p_hasher_update(h, fp, sizeof(fp), err);
    if (rc == 0)
        rc = p2p_hasher_update_u64be(h, (uint64_t)n, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (refs != NULL && refs[i].identifier != NULL)
            rc = hash_reference(h, &params[i], &refs[i], err);
        else
            rc = hash_argument(h, &params[i], &args[i], err);
    }
    if (rc == 0)
        rc = p2p_hasher_final_hex(h, out_hex, err);
    p2p_hasher_free(h);
    return rc;
}

int p2p_ident_compute_parts(const char *function, const char *fingerprint, const p2p_param *params,
                            size_t n, const p2p_value *args, char out_hex[P2P_HASH_HEX_LEN + 1],
                            p2p_error *err) {
    return compute(function, fingerprint, params, n, args, NULL, out_hex, err);
}

int p2p_ident_compute_refs(const p2p_schema *s, const p2p_value *args, const p2p_ident_ref *refs,
                           char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) {
    if (!p2p_schema_finished(s))
        return p2p_error_set(err, P2P_EINVAL, "schema of %s is not finished", p2p_schema_name(s));
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(s, &n);
    return compute(p2p_schema_name(s), p2p_schema_fingerprint(s), params, n, args, refs, out_hex,
                   err);
}

int p2p_ident_compute(const p2p_schema *s, const p2p_value *args,
                      char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) {
    return p2p_ident_compute_refs(s, args, NULL, out_hex, err);
}

int p2p_ident_from_json(const p2p_schema *s, const json_t *args, char out_hex[P2P_HASH_HEX_LEN + 1],
                        p2p_error *err) {
    size_t n = 0;
    const p2p_param *params = p2p_schema_inputs(s, &n);
    p2p_value *values = calloc(n ? n : 1, sizeof(*values));
    if (values == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    int rc = p2p_value_list_from_json(params, n, args, values, err);
    if (rc == 0) {
        rc = p2p_ident_compute(s, values, out_hex, err);
        p2p_value_list_cleanup(values, n);
    }
    free(values);
    return rc;
}
