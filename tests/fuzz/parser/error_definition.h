P2PRPC_FUNCTION int p2prpc_f(int x, P2P_OUT int *y) {
    return 0;
}
