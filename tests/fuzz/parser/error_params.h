P2PRPC_FUNCTION int p2prpc_f(int status, P2P_OUT int (*cb)(int), ...);
