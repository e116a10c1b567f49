/* The example function of the README: the same one the Python P2P-RPC
 * documents, as an annotated C header. `p2prpc generate-*` reads this file. */
#ifndef EXAMPLE_ANALYZE_FUNCTION_H
#define EXAMPLE_ANALYZE_FUNCTION_H

#include <p2prpc/p2prpc.h>

/* Reads the video, reports progress, and returns two files and a number:
 * results_file1 is a copy of the input, results_file2 a small report, and
 * res_var is 10 * arg2. */
P2PRPC_FUNCTION
int p2prpc_analyze_large_file(p2p_file video_handle, int64_t arg2, P2P_OUT p2p_file *results_file1,
                              P2P_OUT p2p_file *results_file2, P2P_OUT int64_t *res_var);

#endif
