/* The second example: several functions in one header, strings and
 * doubles, and failures a caller sees (p2p_fail). functions.c implements
 * them. */
#ifndef EXAMPLE_STATS_FUNCTIONS_H
#define EXAMPLE_STATS_FUNCTIONS_H

#include <p2prpc/p2prpc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads `numbers`, a text file of one decimal number a line (blank lines
 * skipped), and gives their mean, sample standard deviation and count. A
 * line that is not a number, or a file without numbers, fails the call with
 * a message naming the line. */
P2PRPC_FUNCTION
int p2prpc_summarize(p2p_file numbers, P2P_OUT double *mean, P2P_OUT double *stddev,
                     P2P_OUT int64_t *count);

/* Formats `value` as "LABEL: VALUE" with `decimals` digits after the point
 * (0 to 17), as a percentage when `percent`. Fails when decimals is out of
 * range or the label is empty. */
P2PRPC_FUNCTION
int p2prpc_format_value(const char *label, double value, int decimals, bool percent,
                        P2P_OUT char **text, P2P_OUT int *length);

/* numerator / denominator; a zero denominator fails the call. */
P2PRPC_FUNCTION
int p2prpc_divide(double numerator, double denominator, P2P_OUT double *quotient);

#ifdef __cplusplus
}
#endif

#endif
