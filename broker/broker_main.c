/* The p2prpc-broker program: a broker serving the functions named by its
 * --schema files. Everything is in p2p_broker_main (broker_cli.c), which
 * generated brokers call with their compiled-in schemas. */
#include "broker.h"

int main(int argc, char **argv) {
    return p2p_broker_main(argc, argv, NULL, 0);
}
