/* The call identifier: SHA-256 over a canonical, length-prefixed encoding of
 * the format version, the function name, its schema fingerprint and every
 * argument's name, type tag and value (DESIGN §2). Same call, same identifier,
 * on every machine and every release: the byte layout is a wire contract,
 * written in docs/protocol.md (section "identifier") and pinned by unit tests
 * with fixed expected values. Files count by the hash of their full content;
 * nothing is sampled and no number is narrowed. */
#ifndef P2PRPC_IDENT_H
#define P2PRPC_IDENT_H

#include "error.h"
#include "hash.h"
#include "schema.h"
#include "value.h"

#include <stddef.h>

/* First field of the encoding. A new layout gets a new string, so identifiers
 * of two layouts can never be equal. */
#define P2P_IDENT_FORMAT "p2prpc-call-v1"

/* Computes the identifier of a call to the function of `s` (borrowed; must be
 * finished) with `args` (borrowed): one value per input of `s`, in declared
 * order (as p2p_value_list_from_json fills them). Writes 64 lowercase hex and
 * a NUL to `out_hex`. Returns 0; P2P_EINVAL (schema not finished, malformed
 * value), P2P_ETYPE (a value does not have its parameter's type; the message
 * names the argument) or P2P_ENOMEM/P2P_EINTERNAL. */
int p2p_ident_compute(const p2p_schema *s, const p2p_value *args,
                      char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) P2P_NODISCARD;

/* The same from parts, for callers holding a name and fingerprint without a
 * schema object: `function` (non-empty), `fingerprint` (64 hex, as
 * p2p_hash_hex_valid), the `n` `params` and their `args`, all borrowed. */
int p2p_ident_compute_parts(const char *function, const char *fingerprint, const p2p_param *params,
                            size_t n, const p2p_value *args, char out_hex[P2P_HASH_HEX_LEN + 1],
                            p2p_error *err) P2P_NODISCARD;

/* The same from a JSON object of named arguments in their wire form (as
 * push_update carries them), checked strictly against the inputs of `s` first
 * (p2p_value_list_from_json: a missing, extra or mistyped argument is
 * P2P_EINVAL/P2P_ETYPE naming it). This is what a client computes before it
 * pushes a call. All borrowed. */
int p2p_ident_from_json(const p2p_schema *s, const json_t *args, char out_hex[P2P_HASH_HEX_LEN + 1],
                        p2p_error *err) P2P_NODISCARD;

/* A reference argument (a pipeline, DESIGN §7): the input is the output
 * `output` of the call `identifier` (64 lowercase hex), and the upstream's
 * identifier and output name stand for its value in the encoding, under the
 * tag P2P_IDENT_REF_TAG | the input's type tag (docs/protocol.md, "Call
 * identifier", "References"). A NULL `identifier` means "by value". */
#define P2P_IDENT_REF_TAG 0x80

typedef struct p2p_ident_ref {
    const char *identifier;
    const char *output;
} p2p_ident_ref;

/* As p2p_ident_compute, with `refs` (borrowed; one entry per input, or NULL
 * for none): an input whose refs[i].identifier is not NULL is encoded as a
 * reference and its args[i] is ignored (it may be empty). A malformed
 * reference (identifier not 64 lowercase hex, empty output name) is
 * P2P_EINVAL naming the argument. */
int p2p_ident_compute_refs(const p2p_schema *s, const p2p_value *args, const p2p_ident_ref *refs,
                           char out_hex[P2P_HASH_HEX_LEN + 1], p2p_error *err) P2P_NODISCARD;

#endif
