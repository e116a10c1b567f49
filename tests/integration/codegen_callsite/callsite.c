/* A user's own program calling the stats example's functions exactly as if
 * they were local: the call sites are those of the local functions, the
 * generated stubs (linked instead of functions.c) run them remotely. Used by
 * tests/integration/test_codegen_e2e.sh; prints one line per call. */
#include "functions.h"

#include <p2prpc/stub_client.h>

#include <stdio.h>
#include <stdlib.h>

int main(void) {
    double quotient = 0;
    int rc = p2prpc_divide(7.0, 2.0, &quotient);
    printf("divide 7 2: rc=%d quotient=%g\n", rc, quotient);
    rc = p2prpc_divide(1.0, 0.0, &quotient);
    printf("divide 1 0: rc=%d error=%s\n", rc, p2p_stub_last_error());
    char *text = NULL;
    int length = 0;
    rc = p2prpc_format_value("share", 0.25, 1, true, &text, &length);
    printf("format: rc=%d text=%s length=%d\n", rc, text ? text : "(null)", length);
    free(text);
    p2p_stub_shutdown();
    return 0;
}
