#include <p2prpc/p2prpc.h>

/* Greets someone; fails on an empty name. */
P2PRPC_FUNCTION
int p2prpc_greet(const char *who, P2P_OUT char **greeting);

P2PRPC_FUNCTION
int p2prpc_stats(p2p_file data, int64_t column, bool skip_header, P2P_OUT double *mean,
                 P2P_OUT double *stddev, P2P_OUT long *count);

P2PRPC_FUNCTION extern int p2prpc_all(int a, long int b, _Bool c, char const *d, const int64_t e,
                                      P2P_OUT int *o1, P2P_OUT bool *o2, P2P_OUT p2p_file *o3,
                                      P2P_OUT int64_t *const o4);
