#include "cliutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int p2p_cli_number(const char *prog, const char *flag, const char *s, double min, double max,
                   double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "%s: %s: \"%s\" is not a number from %g to %g\n", prog, flag, s, min, max);
        return P2P_EINVAL;
    }
    *out = v;
    return 0;
}

int p2p_cli_integer(const char *prog, const char *flag, const char *s, long long min, long long max,
                    long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "%s: %s: \"%s\" is not an integer from %lld to %lld\n", prog, flag, s, min,
                max);
        return P2P_EINVAL;
    }
    *out = v;
    return 0;
}

int p2p_cli_wait_signal(const sigset_t *set) {
    int sig = 0;
    /* sigwait fails only for an invalid set; there is nothing else to wait on. */
    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}
