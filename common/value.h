/* Typed values: what a remote function takes and returns.
 *
 * Five types, with stable names used on the wire and in schemas: int64, double,
 * bool, string, file. A p2p_value holds one of them; it converts to and from
 * JSON (jansson) with strict type checking, so that a client, a broker and a
 * worker never disagree on what an argument is. The exact JSON forms are in
 * docs/protocol.md, section "values". */
#ifndef P2PRPC_VALUE_H
#define P2PRPC_VALUE_H

#include "error.h"
#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The numbers are part of the wire contract: they are the type tags of the
 * call identifier (docs/protocol.md, "identifier"). Never renumber. */
typedef enum p2p_type {
    P2P_TYPE_INT64 = 1,
    P2P_TYPE_DOUBLE,
    P2P_TYPE_BOOL,
    P2P_TYPE_STRING,
    P2P_TYPE_FILE,
} p2p_type;

/* A file as the user's functions see it (DESIGN §1): passed by value, a local
 * path and the SHA-256 hex of its content. The path is never sent. */
typedef struct p2p_file {
    const char *path;
    char hash[P2P_HASH_HEX_LEN + 1];
} p2p_file;

/* One named, typed parameter of a function. `name` is borrowed from whoever
 * owns the list (a schema, or static data in generated code). */
typedef struct p2p_param {
    const char *name;
    p2p_type type;
} p2p_param;

/* A tagged value, owned by the caller (p2p_value_init, p2p_value_cleanup).
 * Read the member of `as` that matches `type`; `type` is 0 while the value is
 * empty. Set it through the setters only: they validate and copy. */
typedef struct p2p_value {
    p2p_type type;
    union {
        int64_t i64;
        double f64; /* always finite */
        bool boolean;
        char *str; /* owned; valid UTF-8, no NUL inside */
        struct {
            char *path; /* owned; NULL when the file is not local */
            char hash[P2P_HASH_HEX_LEN + 1];
            int64_t size; /* bytes, >= 0 */
        } file;
    } as;
} p2p_value;

/* Returns the stable name of `t` ("int64", "double", "bool", "string",
 * "file"), or "unknown" for anything else. Never NULL. */
const char *p2p_type_name(p2p_type t);

/* True when `t` is one of the five types. */
bool p2p_type_valid(int t);

/* Parses a stable type name into `*out`. Returns 0, or P2P_EINVAL (naming the
 * accepted names) for NULL or anything else, leaving `*out` untouched. */
int p2p_type_parse(const char *name, p2p_type *out, p2p_error *err) P2P_NODISCARD;

/* Makes `v` empty (type 0). Call before first use. */
void p2p_value_init(p2p_value *v);

/* Frees what `v` owns and makes it empty again. Safe on an empty value. */
void p2p_value_cleanup(p2p_value *v);

/* Setters. Each one replaces the previous content of `v` (freeing it) only on
 * success; on error `v` is untouched. */
void p2p_value_set_int64(p2p_value *v, int64_t x);
void p2p_value_set_bool(p2p_value *v, bool x);

/* Refuses NaN and infinities with P2P_EINVAL: JSON cannot carry them, and an
 * identifier over them would not be reproducible. */
int p2p_value_set_double(p2p_value *v, double x, p2p_error *err) P2P_NODISCARD;

/* Copies the NUL-terminated `s` (borrowed). Returns 0, P2P_EINVAL when `s` is
 * NULL or not valid UTF-8 (the message gives the byte offset), or P2P_ENOMEM. */
int p2p_value_set_string(p2p_value *v, const char *s, p2p_error *err) P2P_NODISCARD;

/* Copies `len` bytes at `s` (borrowed). Also refuses an embedded NUL, since
 * strings reach the user as `const char *`. */
int p2p_value_set_stringn(p2p_value *v, const char *s, size_t len, p2p_error *err) P2P_NODISCARD;

/* Makes `v` a file: `hash` (borrowed) must pass p2p_hash_hex_valid, `size` must
 * be >= 0, and `path` (borrowed, copied) may be NULL for a file known only by
 * its hash. Returns 0, P2P_EINVAL or P2P_ENOMEM. */
int p2p_value_set_file(p2p_value *v, const char *path, const char *hash, int64_t size,
                       p2p_error *err) P2P_NODISCARD;

/* Deep-copies `src` into `dst` (replacing its content on success). */
int p2p_value_copy(p2p_value *dst, const p2p_value *src, p2p_error *err) P2P_NODISCARD;

/* True when both have the same type and the same value as the identifier sees
 * it: doubles compare bit for bit (so -0.0 != 0.0), files by hash and size (the
 * local path is ignored). Two empty values are equal. */
bool p2p_value_equal(const p2p_value *a, const p2p_value *b);

/* Checks that `v` holds a well-formed value of type `expected`: the right type,
 * a finite double, valid UTF-8 without NUL, a valid hash and a size >= 0. The
 * setters guarantee this; this guards values whose fields were written by hand.
 * Returns 0, P2P_ETYPE or P2P_EINVAL. */
int p2p_value_check(const p2p_value *v, p2p_type expected, p2p_error *err) P2P_NODISCARD;

/* True when `len` bytes at `s` are valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). When false and `bad_offset` is not NULL,
 * it receives the offset of the first invalid byte. */
bool p2p_utf8_valid(const char *s, size_t len, size_t *bad_offset);

/* Converts `v` to its JSON form; `*out` is a new reference the caller owns
 * (json_decref). Returns 0, P2P_EINVAL (empty or malformed value) or
 * P2P_ENOMEM. A file becomes {"hash": ..., "size": ...}, without its path. */
int p2p_value_to_json(const p2p_value *v, json_t **out, p2p_error *err) P2P_NODISCARD;

/* Reads `json` (borrowed) as a value of type `expected` into `out`, which must
 * be initialised; its previous content is replaced on success only. Strict:
 * int64 takes a JSON integer only (1.0 is refused), double a real or an
 * integer of magnitude <= 2^53, bool true/false, string a JSON string (valid
 * UTF-8, no NUL), file an object with exactly "hash" and "size". Returns 0,
 * P2P_ETYPE (wrong JSON type; the message names what was expected and what was
 * found) or P2P_EINVAL (right JSON type, bad content). */
int p2p_value_from_json(const json_t *json, p2p_type expected, p2p_value *out,
                        p2p_error *err) P2P_NODISCARD;

/* Reads the JSON object `obj` (borrowed) of named values against the `n`
 * parameters `params` (borrowed) into `values[0..n-1]`, in the parameters'
 * order. `values` is overwritten as if each had been p2p_value_init'ed first.
 * On success the caller owns the values (p2p_value_list_cleanup); on error
 * they are all empty. Errors name the argument: P2P_ETYPE when `obj` is not an
 * object, P2P_EINVAL for a missing or unexpected argument, P2P_ETYPE or
 * P2P_EINVAL as from p2p_value_from_json for a bad value. Parameters are
 * checked in their order first, then unexpected members. */
int p2p_value_list_from_json(const p2p_param *params, size_t n, const json_t *obj,
                             p2p_value *values, p2p_error *err) P2P_NODISCARD;

/* Builds the JSON object {name: value, ...} of `values[0..n-1]` against
 * `params` (both borrowed); each value must have its parameter's type
 * (P2P_ETYPE otherwise, naming it). `*out` is a new reference the caller owns. */
int p2p_value_list_to_json(const p2p_param *params, size_t n, const p2p_value *values, json_t **out,
                           p2p_error *err) P2P_NODISCARD;

/* Cleans up `values[0..n-1]`. NULL `values` is a no-op. */
void p2p_value_list_cleanup(p2p_value *values, size_t n);

#endif
