/* What the programs' flag parsing shares (each main over getopt_long): number
 * values checked in full with a message naming the flag, and waiting for a
 * stop signal. */
#ifndef P2PRPC_CLIUTIL_H
#define P2PRPC_CLIUTIL_H

#include "error.h"

#include <signal.h>

/* Parses `s`, the value of `flag`, as a finite number in [min, max] into
 * `*out`. On anything else prints `PROG: FLAG: "S" is not a number from MIN to
 * MAX` on stderr and returns P2P_EINVAL (`*out` untouched). All borrowed. */
int p2p_cli_number(const char *prog, const char *flag, const char *s, double min, double max,
                   double *out) P2P_NODISCARD;

/* Same for a decimal integer in [min, max] ("is not an integer from ..."). */
int p2p_cli_integer(const char *prog, const char *flag, const char *s, long long min, long long max,
                    long long *out) P2P_NODISCARD;

/* Waits until one of the signals in `set` (blocked by the caller in every
 * thread) arrives, and returns its number. */
int p2p_cli_wait_signal(const sigset_t *set);

#endif
