/* `p2prpc generate-worker`: a worker program for the header's functions.
 * Its adapters turn the framework's p2p_value lists into the user's typed
 * arguments, call the user's function, and turn what it stored in its
 * outputs back into values (p2p_worker_invoke_fn, worker.h). */
#include "generate_internal.h"

#include <string.h>

/* The local variable holding input `p` (index `i` of the inputs). Returns
 * true when it still needs a checked conversion (int, long). */
static bool input_local(p2p__cg_buf *b, const p2p_cg_param *p, size_t i) {
    p2p__cg_printf(b, "    ");
    p2p__cg_decl(b, p, p->name);
    switch (p->type) {
    case P2P_TYPE_INT64:
        if (strcmp(p->c_type, "int64_t") != 0) {
            p2p__cg_printf(b, " = 0;\n");
            return true;
        }
        p2p__cg_printf(b, " = p2p_in[%zu].as.i64;\n", i);
        return false;
    case P2P_TYPE_DOUBLE:
        p2p__cg_printf(b, " = p2p_in[%zu].as.f64;\n", i);
        return false;
    case P2P_TYPE_BOOL:
        p2p__cg_printf(b, " = p2p_in[%zu].as.boolean;\n", i);
        return false;
    case P2P_TYPE_STRING:
        p2p__cg_printf(b, " = p2p_in[%zu].as.str;\n", i);
        return false;
    case P2P_TYPE_FILE:
        p2p__cg_printf(b, " = p2p_stub_in_file(&p2p_in[%zu]);\n", i);
        return false;
    }
    return false;
}

static void output_local(p2p__cg_buf *b, const p2p_cg_param *p) {
    p2p__cg_printf(b, "    ");
    p2p__cg_pointee(b, p->c_type, true);
    const char *zero = p->type == P2P_TYPE_STRING ? "NULL"
                       : p->type == P2P_TYPE_BOOL ? "false"
                       : p->type == P2P_TYPE_FILE ? "{0}"
                                                  : "0";
    p2p__cg_printf(b, "%s = %s;\n", p->name, zero);
}

static void output_store(p2p__cg_buf *b, const p2p_cg_param *p, size_t i) {
    p2p__cg_printf(b, "    if (p2p_rc == 0)\n        ");
    switch (p->type) {
    case P2P_TYPE_INT64:
        p2p__cg_printf(b, "p2p_value_set_int64(&p2p_out[%zu], %s);\n", i, p->name);
        break;
    case P2P_TYPE_BOOL:
        p2p__cg_printf(b, "p2p_value_set_bool(&p2p_out[%zu], %s);\n", i, p->name);
        break;
    case P2P_TYPE_DOUBLE:
        p2p__cg_printf(b, "p2p_rc = p2p_stub_out_double(&p2p_out[%zu], \"%s\", %s);\n", i, p->name,
                       p->name);
        break;
    case P2P_TYPE_STRING:
        p2p__cg_printf(b, "p2p_rc = p2p_stub_out_string(&p2p_out[%zu], \"%s\", %s);\n", i, p->name,
                       p->name);
        break;
    case P2P_TYPE_FILE:
        p2p__cg_printf(b, "p2p_rc = p2p_stub_out_file(&p2p_out[%zu], \"%s\", &%s);\n", i, p->name,
                       p->name);
        break;
    }
}

/* The call itself: the user's function with its arguments in declared order. */
static void call(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_call c = {0};
    for (size_t i = 0; i < f->n_params; i++)
        p2p__cg_call_arg(&c, "%s%s", f->params[i].output ? "&" : "", f->params[i].name);
    p2p__cg_printf(b, "    if (p2p_rc == 0)\n");
    p2p__cg_call_write(b, &c, 8, "p2p_rc = ", f->name, ";");
}

static void adapter(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b,
                   "\n/* %s: the arguments out of their values, the call, the outputs back. */\n"
                   "static int invoke_%s(",
                   f->name, f->name);
    size_t open = p2p__cg_column(b);
    p2p__cg_item(b, open, true, "const p2p_value *p2p_in");
    p2p__cg_item(b, open, false, "p2p_value *p2p_out");
    p2p__cg_item(b, open, false, "const char *p2p_dir");
    p2p__cg_printf(b, ") {\n%s    (void)p2p_dir;\n    int p2p_rc = 0;\n",
                   p2p__cg_count(f, false) ? "" : "    (void)p2p_in;\n");
    size_t n_in = 0, n_out = 0;
    bool checked[P2P_SCHEMA_MAX_PARAMS * 2] = {0};
    for (size_t i = 0; i < f->n_params && i < P2P_SCHEMA_MAX_PARAMS * 2; i++) {
        if (f->params[i].output)
            output_local(b, &f->params[i]);
        else
            checked[i] = input_local(b, &f->params[i], n_in++);
    }
    n_in = 0;
    for (size_t i = 0; i < f->n_params && i < P2P_SCHEMA_MAX_PARAMS * 2; i++) {
        const p2p_cg_param *p = &f->params[i];
        if (!p->output && checked[i])
            p2p__cg_printf(b,
                           "    if (p2p_rc == 0)\n        p2p_rc = p2p_stub_in_%s(&p2p_in[%zu], "
                           "\"%s\", &%s);\n",
                           p->c_type, n_in, p->name, p->name);
        n_in += !p->output;
    }
    call(b, f);
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output)
            output_store(b, &f->params[i], n_out++);
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output && f->params[i].type == P2P_TYPE_STRING)
            p2p__cg_printf(b, "    free(%s);\n", f->params[i].name);
    p2p__cg_printf(b, "    return p2p_rc;\n}\n");
}

static void workerapp(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_c(b, h);
    p2p__cg_printf(b,
                   "/* The worker of the functions of %s: one adapter per function, in the\n"
                   " * dispatch table of p2p_worker_main(). Flags: workerapp --help\n"
                   " * (docs/cli.md, \"Worker programs\"). */\n"
                   "#include \"%s\"\n\n"
                   "#include <p2prpc/stub.h>\n"
                   "#include <p2prpc/worker.h>\n\n"
                   "#include <stdbool.h>\n"
                   "#include <stddef.h>\n"
                   "#include <stdint.h>\n"
                   "#include <stdio.h>\n"
                   "#include <stdlib.h>\n\n",
                   p2p__cg_basename(h->path), p2p__cg_basename(h->path));
    p2p__cg_schema_table(b, h);
    for (size_t i = 0; i < h->n_functions; i++)
        adapter(b, &h->functions[i]);
    p2p__cg_printf(b, "\nstatic const p2p_worker_invoke_fn p2p_invokers[N_FUNCTIONS] = {\n");
    for (size_t i = 0; i < h->n_functions; i++)
        p2p__cg_printf(b, "    invoke_%s,\n", h->functions[i].name);
    p2p__cg_printf(b,
                   "};\n\n"
                   "int main(int argc, char **argv) {\n"
                   "    p2p_schema **schemas = NULL;\n"
                   "    p2p_worker_function fns[N_FUNCTIONS];\n"
                   "    p2p_error err = {0};\n"
                   "    if (p2p_stub_schemas_new(p2p_functions, N_FUNCTIONS, &schemas, &err) != 0) "
                   "{\n"
                   "        fprintf(stderr, \"workerapp: %%s\\n\", err.msg);\n"
                   "        return 1;\n"
                   "    }\n"
                   "    for (size_t i = 0; i < N_FUNCTIONS; i++)\n"
                   "        fns[i] = (p2p_worker_function){.schema = schemas[i], "
                   ".invoke = p2p_invokers[i]};\n"
                   "    int rc = p2p_worker_main(argc, argv, fns, N_FUNCTIONS, NULL, NULL);\n"
                   "    p2p_stub_schemas_free(schemas, N_FUNCTIONS);\n"
                   "    return rc;\n"
                   "}\n");
}

static void cmakelists(p2p__cg_buf *b, const p2p_cg_header *h, const p2p_cg_options *opts) {
    p2p__cg_cmake_prelude(b, h, "workerapp");
    p2p__cg_printf(b, "add_executable(workerapp workerapp.c");
    for (size_t i = 0; i < opts->n_sources; i++)
        p2p__cg_printf(b, "\n    %s", p2p__cg_basename(opts->sources[i]));
    p2p__cg_printf(b, ")\n"
                      "target_include_directories(workerapp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})\n"
                      "target_link_libraries(workerapp PRIVATE p2prpc::p2prpc m)\n");
}

static void compose(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_hash(b, h);
    p2p__cg_printf(
        b,
        "# Workers of %s. They open no port: they reach the brokers of\n"
        "# discovery.txt (as the containers see them, e.g. http://broker:8470) over the\n"
        "# network \"p2prpc\" that broker.docker-compose.yml creates. Scale with\n"
        "#   P2PRPC_SOURCE=PATH/TO/p2prpc docker compose -f worker.docker-compose.yml \\\n"
        "#     up -d --scale worker=4\n"
        "# Each container keeps its node identity and work files in its own /data.\n"
        "services:\n"
        "  worker:\n"
        "    image: p2prpc-workerapp\n"
        "    build:\n"
        "      context: .\n"
        "      additional_contexts:\n"
        "        p2prpc: ${P2PRPC_SOURCE:?set P2PRPC_SOURCE to the p2prpc source tree}\n"
        "    restart: unless-stopped\n"
        "    command: [\"--discovery\", \"/etc/p2prpc/discovery.txt\"]\n"
        "    volumes:\n"
        "      - ./discovery.txt:/etc/p2prpc/discovery.txt:ro\n"
        "    networks:\n"
        "      - p2prpc\n"
        "networks:\n"
        "  p2prpc:\n"
        "    name: p2prpc\n"
        "    external: true\n",
        p2p__cg_basename(h->path));
}

static const char *const worker_files[] = {"workerapp.c", "CMakeLists.txt", "Dockerfile",
                                           "worker.docker-compose.yml", "discovery.txt"};

/* A copied file may not replace a generated one, nor another copied one. */
static int check_names(const p2p_cg_header *h, const p2p_cg_options *opts, p2p_error *err) {
    size_t n = opts->n_sources + 1;
    for (size_t i = 0; i < n; i++) {
        const char *path = i == 0 ? h->path : opts->sources[i - 1];
        const char *base = p2p__cg_basename(path);
        for (size_t j = 0; j < sizeof(worker_files) / sizeof(worker_files[0]); j++)
            if (strcmp(base, worker_files[j]) == 0)
                return p2p_error_set(err, P2P_EINVAL, "%s: error: '%s' is a generated file's name",
                                     path, base);
        for (size_t j = 0; j < i; j++) {
            const char *other = j == 0 ? h->path : opts->sources[j - 1];
            if (strcmp(base, p2p__cg_basename(other)) == 0)
                return p2p_error_set(err, P2P_EINVAL, "%s: error: same file name as %s", path,
                                     other);
        }
    }
    return 0;
}

int p2p_cg_generate_worker(const p2p_cg_header *h, const p2p_cg_options *opts, p2p_error *err) {
    int rc = p2p__cg_prepare(h, opts, true, err);
    if (rc == 0)
        rc = check_names(h, opts, err);
    p2p__cg_buf b = {0};
    if (rc == 0) {
        workerapp(&b, h);
        rc = p2p__cg_write(opts->out_dir, "workerapp.c", &b, err);
    }
    if (rc == 0) {
        cmakelists(&b, h, opts);
        rc = p2p__cg_write(opts->out_dir, "CMakeLists.txt", &b, err);
    }
    if (rc == 0) {
        p2p__cg_dockerfile(&b, h, "workerapp");
        rc = p2p__cg_write(opts->out_dir, "Dockerfile", &b, err);
    }
    if (rc == 0) {
        compose(&b, h);
        rc = p2p__cg_write(opts->out_dir, "worker.docker-compose.yml", &b, err);
    }
    if (rc == 0)
        rc = p2p__cg_copy(h->path, opts->out_dir, p2p__cg_basename(h->path), err);
    if (rc == 0)
        rc = p2p__cg_copy(opts->discovery, opts->out_dir, "discovery.txt", err);
    for (size_t i = 0; rc == 0 && i < opts->n_sources; i++)
        rc = p2p__cg_copy(opts->sources[i], opts->out_dir, p2p__cg_basename(opts->sources[i]), err);
    return rc;
}
