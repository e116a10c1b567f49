/* Every parameter type the generators handle, in every position: the end to
 * end test (test_codegen_e2e.sh) generates, builds and calls these, so that
 * each type's adapter and stub code compiles under the project's warnings and
 * carries its value both ways. */
#ifndef CODEGEN_TYPES_H
#define CODEGEN_TYPES_H

#include <p2prpc/p2prpc.h>

/* Each output is its input changed in a way the test can check: a + 1,
 * b * 2, c - 1, d / 2, !e, f with "!" appended, g copied with "#" appended;
 * the outputs are declared between the inputs on purpose. */
P2PRPC_FUNCTION
int p2prpc_echo(int64_t a, P2P_OUT int64_t *a1, int b, P2P_OUT int *b2, long c, P2P_OUT long *c1,
                double d, P2P_OUT double *d2, bool e, P2P_OUT bool *not_e, const char *f,
                P2P_OUT char **f1, p2p_file g, P2P_OUT p2p_file *g1);

/* Parameter names the generated code must not collide with: its loop
 * variables and the clientapp's argc, argv and helpers. */
P2PRPC_FUNCTION
int p2prpc_names(int64_t i, int64_t argc, int64_t argv, int64_t usage, int64_t progress_bar,
                 int64_t functions, P2P_OUT int64_t *end_progress);

/* No input at all. */
P2PRPC_FUNCTION
int p2prpc_answer(P2P_OUT int64_t *answer);

#endif
