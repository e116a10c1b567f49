/* Node identity and the node's data directory.
 *
 * Every broker, worker and client process is a node with a stable UUID (libuuid),
 * kept in a file `node_id` inside its data directory. The data directory is, in
 * order: $P2PRPC_HOME, else $XDG_DATA_HOME/p2prpc, else ~/.local/share/p2prpc. */
#ifndef P2PRPC_NODE_H
#define P2PRPC_NODE_H

#include "error.h"

/* Length of a UUID in its canonical text form, without the NUL. */
#define P2P_NODE_ID_LEN 36

/* Resolves the data directory from the environment (see above) into a new
 * string the caller frees, without touching the disk. Relative $P2PRPC_HOME and
 * $XDG_DATA_HOME values are refused (XDG says to ignore relative ones, so the
 * next rule applies); a missing $HOME falls back to the password database.
 * Returns 0, P2P_ENOTFOUND when no home directory can be found, or P2P_ENOMEM. */
int p2p_node_data_dir(char **out, p2p_error *err) P2P_NODISCARD;

/* Creates `data_dir` (mode 0700, parents included) when missing, then loads the
 * node's UUID from `data_dir/node_id`, creating it on first use. Concurrent
 * first uses by several processes agree on one UUID. `out` receives the
 * lowercase canonical form and a NUL. A `node_id` file that does not hold a
 * UUID gives P2P_EINVAL naming the file; it is never overwritten. */
int p2p_node_id_load(const char *data_dir, char out[P2P_NODE_ID_LEN + 1],
                     p2p_error *err) P2P_NODISCARD;

#endif
