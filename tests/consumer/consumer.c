/* A tiny program outside the p2prpc tree, built against the installed library
 * by CMake (find_package) and by make (pkg-config): proves the install works. */
#include <p2prpc/error.h>
#include <p2prpc/node.h>
#include <p2prpc/version.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: consumer DATA_DIR\n");
        return 2;
    }
    char id[P2P_NODE_ID_LEN + 1];
    p2p_error err = {0};
    if (p2p_node_id_load(argv[1], id, &err) != 0) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        return 1;
    }
    if (P2P_VERSION[0] == '\0')
        return 1;
    printf("%s %s\n", p2p_error_name(P2P_ENOTFOUND), id);
    return 0;
}
