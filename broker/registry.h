/* The function registry of a broker: the schemas of the functions it serves,
 * looked up by name on every per-function route.
 *
 * A registry is filled before the broker starts (from generated code through
 * p2p_registry_add, or from JSON files through p2p_registry_load_file) and is
 * read-only afterwards, so lookups take no lock. Schemas are kept sorted by
 * name; a lookup is a binary search. */
#ifndef P2PRPC_REGISTRY_H
#define P2PRPC_REGISTRY_H

#include "error.h"
#include "schema.h"

#include <jansson.h>
#include <stddef.h>

typedef struct p2p_registry p2p_registry;

/* Creates an empty registry. `*out` is the caller's (p2p_registry_free).
 * Returns 0 or P2P_ENOMEM. */
int p2p_registry_new(p2p_registry **out, p2p_error *err) P2P_NODISCARD;

/* Frees the registry and every schema it holds. NULL is a no-op. */
void p2p_registry_free(p2p_registry *r);

/* Adds a copy of the finished schema `s` (borrowed for the call). Adding a
 * schema whose name and fingerprint are already registered changes nothing
 * and returns 0; the same name with another fingerprint gives P2P_ECONFLICT,
 * since one broker serves one signature per function. P2P_EINVAL when `s`
 * is not finished; P2P_ENOMEM. Not thread-safe: fill before serving. */
int p2p_registry_add(p2p_registry *r, const p2p_schema *s, p2p_error *err) P2P_NODISCARD;

/* Adds the schemas in `json` (borrowed): one schema object in the form of
 * p2p_schema_to_json, or an array of them. All or nothing: on error the
 * registry is unchanged. Errors as p2p_schema_from_json and p2p_registry_add,
 * with the array index in the message; an empty array gives P2P_EINVAL. */
int p2p_registry_add_json(p2p_registry *r, const json_t *json, p2p_error *err) P2P_NODISCARD;

/* Reads the JSON file at `path` (borrowed; at most 16 MiB) and adds its
 * schemas as p2p_registry_add_json does; messages name the file. P2P_EIO or
 * P2P_ENOTFOUND when it cannot be read, P2P_EINVAL when it is not JSON. */
int p2p_registry_load_file(p2p_registry *r, const char *path, p2p_error *err) P2P_NODISCARD;

/* The schema of the function `name`, or NULL when none is registered (and
 * for a NULL name). Borrowed until p2p_registry_free. */
const p2p_schema *p2p_registry_find(const p2p_registry *r, const char *name);

/* Number of functions, and the i-th one in name order (NULL past the end). */
size_t p2p_registry_count(const p2p_registry *r);
const p2p_schema *p2p_registry_at(const p2p_registry *r, size_t i);

/* Builds {"functions": [schema JSON, ...]} in name order; `*out` is a new
 * reference the caller json_decref's. Returns 0 or P2P_ENOMEM. */
int p2p_registry_to_json(const p2p_registry *r, json_t **out, p2p_error *err) P2P_NODISCARD;

#endif
