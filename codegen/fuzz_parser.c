/* libFuzzer target of the codegen parser: any bytes in, either functions
 * that satisfy DESIGN §1 or one positioned error out, and never a crash, a
 * leak or a read past the input. Built with -DP2P_FUZZ=ON and clang only
 * (codegen/CMakeLists.txt); the seed corpus is tests/fuzz/parser/. */
#include "parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What every successful parse promises its callers (the generators). */
static void check_header(const p2p_cg_header *h) {
    if (h->n_functions == 0 || strcmp(h->path, "fuzz.h") != 0)
        abort();
    for (size_t i = 0; i < h->n_functions; i++) {
        const p2p_cg_function *f = &h->functions[i];
        size_t n_in = 0, n_out = 0;
        p2p_schema_inputs(f->schema, &n_in);
        p2p_schema_outputs(f->schema, &n_out);
        if (!p2p_schema_finished(f->schema) || strcmp(p2p_schema_name(f->schema), f->name) != 0 ||
            n_out == 0 || n_in + n_out != f->n_params || f->line < 1 || f->col < 1)
            abort();
        for (size_t j = 0; j < f->n_params; j++) {
            const p2p_cg_param *p = &f->params[j];
            size_t tl = strlen(p->c_type);
            bool pointer_type = tl > 0 && p->c_type[tl - 1] == '*';
            if (!p2p_type_valid((int)p->type) || (p->output && !pointer_type) ||
                (!p->output && pointer_type && p->type != P2P_TYPE_STRING) || p->line < 1)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    p2p_cg_header h;
    p2p_error err = {0};
    int rc = p2p_cg_parse("fuzz.h", (const char *)data, size, &h, &err);
    if (rc == 0)
        check_header(&h);
    else if (rc != P2P_EINVAL && rc != P2P_ETOOBIG && rc != P2P_ENOMEM)
        abort();
    else if (rc == P2P_EINVAL &&
             (strncmp(err.msg, "fuzz.h:", 7) != 0 || strstr(err.msg, ": error: ") == NULL))
        abort();
    p2p_cg_header_cleanup(&h);
    return 0;
}
