/* The example function of the README: the one the Python P2P-RPC documents,
 * as an annotated C header. `p2prpc generate-*` reads this file; function.c
 * implements it. */
#ifndef EXAMPLE_ANALYZE_FUNCTION_H
#define EXAMPLE_ANALYZE_FUNCTION_H

#include <p2prpc/p2prpc.h>

/* Analyses the file `video_handle` in one pass of 64 KiB chunks, in constant
 * memory, reporting progress as it goes:
 *   results_file1  a copy of the input;
 *   results_file2  a text report: size, lines, and the count of byte arg2;
 *   res_var        how many bytes of the input equal arg2.
 * arg2 must be a byte value, 0 to 255: anything else fails the call. */
P2PRPC_FUNCTION
int p2prpc_analyze_large_file(p2p_file video_handle, int64_t arg2, P2P_OUT p2p_file *results_file1,
                              P2P_OUT p2p_file *results_file2, P2P_OUT int64_t *res_var);

#endif
