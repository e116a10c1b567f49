/* The `p2prpc generate-broker`, `generate-worker` and `generate-client`
 * subcommands: flags, the parser, the generators (generate.h). */
#ifndef P2PRPC_CODEGEN_CMD_GENERATE_H
#define P2PRPC_CODEGEN_CMD_GENERATE_H

/* Each runs its subcommand: argv[0] is its name, the flags follow
 * (docs/cli.md; --help prints them). Returns the exit status: 0, 1 when the
 * header is refused or a file cannot be written (the message on stderr,
 * compiler style for the header), 2 on a usage error (one line on stderr). */
int p2p_cli_generate_broker(int argc, char **argv);
int p2p_cli_generate_worker(int argc, char **argv);
int p2p_cli_generate_client(int argc, char **argv);

#endif
