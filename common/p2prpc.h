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

#endif
