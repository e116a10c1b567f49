/* Broker discovery: where a worker (or a client) finds its brokers.
 *
 * A discovery file holds broker URLs, one per line:
 *
 *     # the lab's brokers
 *     https://broker1.example.org:8470
 *     http://10.0.0.7:8470/p2p/     # behind a reverse proxy
 *
 * Blank lines are skipped; '#' starts a comment, at the start of a line or
 * after the URL; whitespace around a URL is ignored. Each broker's nodes route
 * (GET /api/v1/nodes) reports more brokers, which are added to the list. */
#ifndef P2PRPC_DISCOVERY_H
#define P2PRPC_DISCOVERY_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Longest broker URL accepted, in bytes. */
#define P2P_DISCOVERY_URL_MAX 2048

/* A list of distinct normalised broker URLs, in the order first seen.
 * Initialise with p2p_discovery_list_init. */
typedef struct p2p_discovery_list {
    char **items; /* owned */
    size_t count;
} p2p_discovery_list;

void p2p_discovery_list_init(p2p_discovery_list *list);
/* Frees every URL and the array. NULL is a no-op. */
void p2p_discovery_list_cleanup(p2p_discovery_list *list);
/* True when the normalised `url` is in the list. */
bool p2p_discovery_list_has(const p2p_discovery_list *list, const char *url);
/* Appends a copy of the normalised `url` unless it is there. Returns 1 when
 * added, 0 when already there, P2P_ENOMEM. */
int p2p_discovery_list_add(p2p_discovery_list *list, const char *url) P2P_NODISCARD;

/* Checks a broker URL and writes its normal form into `*out` (caller frees):
 * an absolute http or https URL with a host, no user, query or fragment;
 * scheme and host lowercase (libcurl's parser), and a path that ends with '/',
 * so that routes resolve under it ("http://h:1" gives "http://h:1/").
 * Returns 0, P2P_EINVAL (saying what is wrong) or P2P_ENOMEM. */
int p2p_discovery_normalize(const char *url, char **out, p2p_error *err) P2P_NODISCARD;

/* Parses the `len` bytes of `text` in the discovery file format and adds each
 * URL to `list` (normalised, without duplicates). `source` (a file name, for
 * messages) is borrowed. Returns 0, or P2P_EINVAL at the first bad line
 * ("SOURCE:LINE: ..."), with the URLs before it added; P2P_ENOMEM. */
int p2p_discovery_parse(const char *text, size_t len, const char *source, p2p_discovery_list *list,
                        p2p_error *err) P2P_NODISCARD;

/* Reads the discovery file at `path` (at most 1 MiB) into `list` as
 * p2p_discovery_parse does. P2P_ENOTFOUND when the file is missing, P2P_EIO
 * when it cannot be read. */
int p2p_discovery_read(const char *path, p2p_discovery_list *list, p2p_error *err) P2P_NODISCARD;

/* Reads a nodes route answer (borrowed): {"nodes": [{"uuid": U|null, "url":
 * URL}, ...]}. Adds every valid URL to `list`; entries with a malformed URL
 * are skipped (counted in `*skipped`, may be NULL). When `self_uuid` is not
 * NULL it receives the uuid of the first entry (the broker itself) or "".
 * Returns 0, P2P_EPROTO when the answer does not have this shape, P2P_ENOMEM. */
int p2p_discovery_nodes(const json_t *answer, p2p_discovery_list *list, char self_uuid[37],
                        size_t *skipped, p2p_error *err) P2P_NODISCARD;

#endif
