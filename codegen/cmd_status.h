/* `p2prpc status`: what a broker is doing, as a table. For codegen/main.c's
 * subcommand table; docs/cli.md documents the flags. */
#ifndef P2PRPC_CODEGEN_CMD_STATUS_H
#define P2PRPC_CODEGEN_CMD_STATUS_H

/* The usage line after "p2prpc " (for help listings). */
#define P2P_CLI_STATUS_USAGE "status BROKER_URL [--function F] [--secret-file FILE]"

/* Runs `status BROKER_URL [--function F] [--secret-file FILE]` with `argv`
 * (borrowed; argv[0] is the subcommand's name, as main passes it): reads GET
 * /api/v1/functions, then per function GET /api/v1/{function}/calls, and
 * prints on stdout the calls of each function by status, then each running
 * call with its progress. --secret-file defaults to $P2PRPC_SECRET_FILE; with
 * neither, requests are not signed. --help prints the usage on stdout.
 * Resets getopt (optind) itself. Errors go to stderr as one line. Returns the
 * process exit status: 0, 1 (the broker could not be read, or has no function
 * F), or 2 (bad usage: unknown flag, missing or extra argument, a URL that is
 * not http(s)). */
int p2p_cli_status(int argc, char **argv);

#endif
