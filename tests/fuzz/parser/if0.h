#if 0
P2PRPC_FUNCTION int p2prpc_old(int x); don't "
#ifdef X
#else
#endif
/* #endif */ // #endif
#endif
#if 0 /* disabled */
P2PRPC_FUNCTION int p2prpc_old2(void);
#else
P2PRPC_FUNCTION int p2prpc_new(P2P_OUT int *y);
#endif
