/* Everything a header holds around the declarations. */
#ifndef MY_H
#define MY_H
#include <stdint.h>
#include "p2prpc/p2prpc.h" // the markers
#define LONG_MACRO(a, b) P2PRPC_FUNCTION int p2prpc_not_me(int x, P2P_OUT int *y);
#ifdef __cplusplus
extern "C" {
#endif
typedef struct point {
    int x, y;
} point;
enum color { RED = 1, GREEN = '}' };
extern int other_function(int a, char *b);
static inline int helper(int x) {
    if (x) {
        return 1;
    }
    return "}"[0];
}
typedef int (*callback)(void *, ...);
P2PRPC_FUNCTION int p2prpc_first(double ratio, P2P_OUT double *scaled);
#ifdef __cplusplus
}
#endif
#endif /* MY_H */
