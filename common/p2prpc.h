/* The header a user's annotated function header includes (DESIGN.md §1):
 *
 *     #include <p2prpc/p2prpc.h>
 *
 *     P2PRPC_FUNCTION
 *     int p2prpc_analyze_large_file(p2p_file video_handle, int64_t arg2,
 *                                   P2P_OUT p2p_file *results_file1,
 *                                   P2P_OUT int64_t *res_var);
 *
 * The markers are plain C that expands to nothing, so the header compiles
 * untouched in the user's own program; `p2prpc generate-*` reads them. */
#ifndef P2PRPC_P2PRPC_H
#define P2PRPC_P2PRPC_H

#include "value.h"

#include <stdbool.h>
#include <stdint.h>

/* Marks a declaration as a remotely callable function. Its name must start
 * with `p2prpc_` and it must return int: 0 for success. */
#define P2PRPC_FUNCTION

/* Marks a pointer parameter as an output of the function. */
#define P2P_OUT

/* What a function may call while it runs in a worker (DESIGN §1). They are
 * meaningful only inside a worker's child process; anywhere else they are
 * harmless no-ops (the checkpoint functions then return P2P_EINVAL). */

/* Reports that `i` of `n` steps are done (n > 0; i is clamped to 0..n). The
 * worker throttles what it sends to the broker (a few updates a second), and
 * always sends the last one. Cheap enough to call in an inner loop. */
void p2p_progress_hook(int64_t i, int64_t n);

/* Sets the message of the failure (printf-style, at most 4 KiB kept); the
 * function then returns non-zero and the call fails with this message. The
 * last message set wins. */
void p2p_fail(const char *fmt, ...) P2P_PRINTF(1, 2);

/* Stores the file at `path` (borrowed) on the broker as the call's checkpoint
 * `name` (1 to 128 of [A-Za-z0-9_.-]), replacing an earlier one of that name,
 * so that a run of the call on another worker can resume from it. The file is
 * streamed, never held in memory. Returns 0, or a negative P2P_E* code:
 * P2P_EINVAL (bad name, unreadable file, not in a worker), P2P_ECONFLICT (the
 * lease was lost), P2P_EUNAVAIL (the broker cannot be reached)... */
int p2p_checkpoint_save(const char *name, const char *path);

/* Writes the call's checkpoint `name` to `path` (replaced atomically, and
 * only when the whole content arrived and matches its hash). Returns 0,
 * P2P_ENOTFOUND when none was saved, or another negative P2P_E* code. */
int p2p_checkpoint_load(const char *name, const char *path);

#endif
