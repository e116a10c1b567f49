/* The functions of types.h. */
#include "types.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy_marked(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[4096];
    size_t n;
    int rc = in && out ? 0 : 1;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        rc = fwrite(buf, 1, n, out) == n ? 0 : 1;
    if (rc == 0 && fputc('#', out) == EOF)
        rc = 1;
    if (out != NULL && fclose(out) != 0)
        rc = 1;
    if (in != NULL)
        fclose(in);
    if (rc != 0)
        p2p_fail("cannot copy %s: %s", from, strerror(errno));
    return rc;
}

int p2prpc_echo(int64_t a, int64_t *a1, int b, int *b2, long c, long *c1, double d, double *d2,
                bool e, bool *not_e, const char *f, char **f1, p2p_file g, p2p_file *g1) {
    size_t n = strlen(f);
    char *s = malloc(n + 2);
    if (s == NULL) {
        p2p_fail("out of memory");
        return 1;
    }
    memcpy(s, f, n);
    memcpy(s + n, "!", 2);
    if (copy_marked(g.path, "g1.bin") != 0) {
        free(s);
        return 1;
    }
    *a1 = a + 1;
    *b2 = b * 2;
    *c1 = c - 1;
    *d2 = d / 2;
    *not_e = !e;
    *f1 = s;
    g1->path = "g1.bin";
    return 0;
}

int p2prpc_names(int64_t i, int64_t argc, int64_t argv, int64_t usage, int64_t progress_bar,
                 int64_t functions, int64_t *end_progress) {
    *end_progress = i + argc + argv + usage + progress_bar + functions;
    return 0;
}

int p2prpc_answer(int64_t *answer) {
    *answer = 42;
    return 0;
}
