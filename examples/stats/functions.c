/* The second example's functions. A failure says why through p2p_fail: the
 * caller gets the message back as the call's error. */
#include "functions.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest line of the numbers file. */
#define LINE_MAX_LEN 256

/* Parses one line; false when it holds something else than one number. */
static bool parse_number(char *line, double *out) {
    line[strcspn(line, "\r\n")] = '\0';
    char *end = NULL;
    errno = 0;
    *out = strtod(line, &end);
    while (end != NULL && (*end == ' ' || *end == '\t'))
        end++;
    return end != line && errno == 0 && *end == '\0' && isfinite(*out);
}

static bool blank(const char *line) {
    return line[strspn(line, " \t\r\n")] == '\0';
}

int p2prpc_summarize(p2p_file numbers, double *mean, double *stddev, int64_t *count) {
    FILE *f = fopen(numbers.path, "r");
    if (f == NULL) {
        p2p_fail("cannot open the numbers: %s", strerror(errno));
        return 1;
    }
    /* Welford's running mean and variance: one pass, constant memory. */
    char line[LINE_MAX_LEN];
    double m = 0, m2 = 0;
    int64_t n = 0, line_no = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        double x;
        if (blank(line))
            continue;
        if (!parse_number(line, &x)) {
            p2p_fail("line %lld: '%.40s' is not a number", (long long)line_no, line);
            rc = 1;
            break;
        }
        n++;
        double delta = x - m;
        m += delta / (double)n;
        m2 += delta * (x - m);
    }
    fclose(f);
    if (rc == 0 && n == 0) {
        p2p_fail("the file holds no number");
        rc = 1;
    }
    if (rc == 0) {
        *mean = m;
        *stddev = n > 1 ? sqrt(m2 / (double)(n - 1)) : 0.0;
        *count = n;
    }
    return rc;
}

int p2prpc_format_value(const char *label, double value, int decimals, bool percent, char **text,
                        int *length) {
    if (decimals < 0 || decimals > 17) {
        p2p_fail("decimals must be 0 to 17, not %d", decimals);
        return 1;
    }
    if (label[0] == '\0') {
        p2p_fail("the label is empty");
        return 1;
    }
    double shown = percent ? value * 100.0 : value;
    const char *unit = percent ? "%" : "";
    int n = snprintf(NULL, 0, "%s: %.*f%s", label, decimals, shown, unit);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s == NULL) {
        p2p_fail("out of memory");
        return 1;
    }
    snprintf(s, (size_t)n + 1, "%s: %.*f%s", label, decimals, shown, unit);
    *text = s; /* the framework frees it */
    *length = n;
    return 0;
}

int p2prpc_divide(double numerator, double denominator, double *quotient) {
    if (denominator == 0.0) {
        p2p_fail("division by zero");
        return 1;
    }
    *quotient = numerator / denominator;
    return 0;
}
