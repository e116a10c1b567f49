/* Function schemas: a remote function's name, its typed inputs and outputs,
 * and the fingerprint that identifies this exact signature.
 *
 * The rules (DESIGN §1) live here once, for codegen, the broker and tests:
 * the name starts with "p2prpc_" and is a C identifier; parameter names are C
 * identifiers, not C keywords, not reserved by the framework, all distinct
 * (inputs and outputs together); at least one output. The fingerprint is the
 * SHA-256 of a canonical encoding (docs/protocol.md, section "values"), so a
 * client and a broker that disagree on a signature never share calls. */
#ifndef P2PRPC_SCHEMA_H
#define P2PRPC_SCHEMA_H

#include "error.h"
#include "hash.h"
#include "value.h"

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Every function name starts with this. */
#define P2P_SCHEMA_PREFIX "p2prpc_"
/* Longest function or parameter name, in bytes. */
#define P2P_SCHEMA_NAME_MAX 128
/* Most inputs, and most outputs, a function may have. */
#define P2P_SCHEMA_MAX_PARAMS 64
/* First field of the fingerprint's encoding; changes with the encoding. */
#define P2P_SCHEMA_FORMAT "p2prpc-schema-v1"

/* Opaque; built with p2p_schema_new + add_input/add_output + finish, with
 * p2p_schema_build, or read with p2p_schema_from_json. */
typedef struct p2p_schema p2p_schema;

/* Starts a schema for the function `name` (borrowed, copied), which must pass
 * p2p_schema_check_function_name. On success `*out` is owned by the caller
 * (p2p_schema_free). Returns 0, P2P_EINVAL or P2P_ENOMEM. */
int p2p_schema_new(const char *name, p2p_schema **out, p2p_error *err) P2P_NODISCARD;

/* Frees `s`. NULL is a no-op. */
void p2p_schema_free(p2p_schema *s);

/* Appends an input (then an output) parameter; `name` is borrowed and copied.
 * The order of calls is the declared order, which the fingerprint and the call
 * identifier follow. Returns 0; P2P_EINVAL for a bad or reserved name, a name
 * already used by any parameter, an unknown type or too many parameters;
 * P2P_ECONFLICT when `s` is already finished; P2P_ENOMEM. */
int p2p_schema_add_input(p2p_schema *s, const char *name, p2p_type type,
                         p2p_error *err) P2P_NODISCARD;
int p2p_schema_add_output(p2p_schema *s, const char *name, p2p_type type,
                          p2p_error *err) P2P_NODISCARD;

/* Checks the whole schema (at least one output) and computes its fingerprint.
 * After this `s` is read-only. Returns 0, P2P_EINVAL, or P2P_ECONFLICT when
 * already finished. */
int p2p_schema_finish(p2p_schema *s, p2p_error *err) P2P_NODISCARD;

/* new + add every input and output + finish, in one call. `name`, `inputs`
 * and `outputs` are borrowed (copied); `inputs` may be NULL when `n_inputs` is
 * 0. On success `*out` is owned by the caller; on error nothing is allocated. */
int p2p_schema_build(const char *name, const p2p_param *inputs, size_t n_inputs,
                     const p2p_param *outputs, size_t n_outputs, p2p_schema **out,
                     p2p_error *err) P2P_NODISCARD;

/* True once p2p_schema_finish (or build, or from_json) succeeded. */
bool p2p_schema_finished(const p2p_schema *s);

/* The function name; borrowed until p2p_schema_free. */
const char *p2p_schema_name(const p2p_schema *s);

/* The 64-hex fingerprint; borrowed until p2p_schema_free. NULL until the
 * schema is finished. */
const char *p2p_schema_fingerprint(const p2p_schema *s);

/* The parameters in declared order; `*count` receives their number. Borrowed
 * until p2p_schema_free or the next add to the same list. */
const p2p_param *p2p_schema_inputs(const p2p_schema *s, size_t *count);
const p2p_param *p2p_schema_outputs(const p2p_schema *s, size_t *count);

/* The JSON form {"name", "inputs": [{"name", "type"}...], "outputs": [...],
 * "fingerprint"} of a finished schema; `*out` is a new reference the caller
 * owns. Returns 0, P2P_EINVAL (not finished) or P2P_ENOMEM. */
int p2p_schema_to_json(const p2p_schema *s, json_t **out, p2p_error *err) P2P_NODISCARD;

/* Reads and validates the JSON form (borrowed). "fingerprint" may be absent;
 * when present it must equal the recomputed one (P2P_ECONFLICT otherwise: the
 * sender has another version of the function). Other members are refused.
 * On success `*out` is a finished schema owned by the caller. Returns 0,
 * P2P_EINVAL, P2P_ETYPE (a member has the wrong JSON type), P2P_ECONFLICT or
 * P2P_ENOMEM. */
int p2p_schema_from_json(const json_t *json, p2p_schema **out, p2p_error *err) P2P_NODISCARD;

/* True when `name` is reserved by the framework and cannot name a parameter:
 * the member names of calls in the store and on the wire (identifier, nodes,
 * timestamp, status, progress, error, lease, ...; the full list is in
 * schema.c and docs/protocol.md). Case-sensitive. NULL is false. */
bool p2p_schema_reserved_name(const char *name);

/* Returns the reserved names as a NULL-terminated static array, for docs and
 * for codegen's messages. */
const char *const *p2p_schema_reserved_names(void);

/* Checks a function name: a C identifier of at most P2P_SCHEMA_NAME_MAX bytes
 * that starts with P2P_SCHEMA_PREFIX and has more after it. Returns 0 or
 * P2P_EINVAL with a message saying which rule failed. */
int p2p_schema_check_function_name(const char *name, p2p_error *err) P2P_NODISCARD;

/* Checks a parameter name: a C identifier of at most P2P_SCHEMA_NAME_MAX
 * bytes, not a C keyword, not reserved by the C standard (leading "__" or "_"
 * and a capital), not starting with "p2p" in any case (the framework's
 * namespace, P2P_OUT included), and not p2p_schema_reserved_name. Returns 0 or
 * P2P_EINVAL with a message saying which rule failed. */
int p2p_schema_check_param_name(const char *name, p2p_error *err) P2P_NODISCARD;

#endif
