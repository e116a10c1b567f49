/* `p2prpc generate-client`: client stubs that give every function its own
 * name and signature back, running remotely, plus NAME_async (a future) and
 * NAME_get (its typed outputs); the clientapp program (generate_clientapp.c)
 * and the CMake project. */
#include "generate_internal.h"

#include <string.h>

/* "p2p_file video_handle, int64_t arg2" and so on: the inputs (or outputs)
 * of `f` as parameters of a list opened at column `open`; `first` when none
 * precedes them. Returns whether the list is still empty. */
static bool params(p2p__cg_buf *b, const p2p_cg_function *f, bool outputs, bool first,
                   size_t open) {
    for (size_t i = 0; i < f->n_params; i++) {
        if (f->params[i].output != outputs)
            continue;
        p2p__cg_param_item(b, open, first, &f->params[i]);
        first = false;
    }
    return first;
}

static void async_proto(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b, "p2p_future *%s_async(", f->name);
    size_t open = p2p__cg_column(b);
    bool first = params(b, f, false, true, open);
    p2p__cg_item(b, open, first, "const p2p_call_options *p2p_opts");
    p2p__cg_printf(b, ")");
}

static void get_proto(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b, "int %s_get(", f->name);
    size_t open = p2p__cg_column(b);
    p2p__cg_item(b, open, true, "p2p_future *p2p_f");
    p2p__cg_item(b, open, false, "int64_t p2p_timeout_ms");
    params(b, f, true, false, open);
    p2p__cg_printf(b, ")");
}

static void stubs_h(p2p__cg_buf *b, const p2p_cg_header *h) {
    const char *base = p2p__cg_basename(h->path);
    p2p__cg_banner_c(b, h);
    p2p__cg_printf(
        b,
        "/* Client stubs of the functions of %s. Each function keeps the name and\n"
        " * signature %s declares, and runs remotely: it returns 0, or a negative\n"
        " * P2P_E* code (P2P_EFAILED: the function failed) with the message in\n"
        " * p2p_stub_last_error(). Its output files are in the client's cache (read\n"
        " * them, never write them); its output strings are the caller's to free.\n"
        " * The default client reads discovery.txt (P2PRPC_DISCOVERY overrides it),\n"
        " * P2PRPC_CACHE and P2PRPC_SECRET_FILE (stub_client.h). Call p2p_stub_shutdown()\n"
        " * once done. */\n"
        "#ifndef P2PRPC_GENERATED_STUBS_H\n#define P2PRPC_GENERATED_STUBS_H\n\n"
        "#include \"%s\"\n\n#include <p2prpc/client.h>\n#include <p2prpc/stub_client.h>\n\n"
        "#include <stdint.h>\n",
        base, base, base);
    for (size_t i = 0; i < h->n_functions; i++) {
        const p2p_cg_function *f = &h->functions[i];
        p2p__cg_printf(
            b,
            "\n/* Submits %s and returns its future at once (the caller frees it\n"
            " * with p2p_future_free), or NULL (p2p_stub_last_error() says why).\n"
            " * `p2p_opts` (progress callbacks; may be NULL) is borrowed until then. */\n",
            f->name);
        async_proto(b, f);
        p2p__cg_printf(b,
                       ";\n\n/* Waits for a future of %s_async (at most p2p_timeout_ms; < 0 = no\n"
                       " * limit) and stores its outputs; file paths are borrowed until\n"
                       " * p2p_future_free. Returns 0 or a negative P2P_E* code. */\n",
                       f->name);
        get_proto(b, f);
        p2p__cg_printf(b, ";\n");
    }
    p2p__cg_printf(b, "\n#endif\n");
}

/* Sets argument value `i` from the input `p`. */
static void set_arg(p2p__cg_buf *b, const p2p_cg_param *p, size_t i) {
    p2p__cg_printf(b, "    if (p2p_rc == 0)\n        ");
    switch (p->type) {
    case P2P_TYPE_INT64:
        p2p__cg_printf(b, "p2p_value_set_int64(&p2p_args[%zu], %s);\n", i, p->name);
        break;
    case P2P_TYPE_BOOL:
        p2p__cg_printf(b, "p2p_value_set_bool(&p2p_args[%zu], %s);\n", i, p->name);
        break;
    case P2P_TYPE_DOUBLE:
        p2p__cg_printf(b, "p2p_rc = p2p_value_set_double(&p2p_args[%zu], %s, &p2p_err);\n", i,
                       p->name);
        break;
    case P2P_TYPE_STRING:
        p2p__cg_printf(b, "p2p_rc = p2p_value_set_string(&p2p_args[%zu], %s, &p2p_err);\n", i,
                       p->name);
        break;
    case P2P_TYPE_FILE:
        p2p__cg_printf(b, "p2p_rc = p2p_stub_arg_file(&p2p_args[%zu], &%s, &p2p_err);\n", i,
                       p->name);
        break;
    }
}

static void async_def(p2p__cg_buf *b, const p2p_cg_function *f, size_t index) {
    size_t n_in = p2p__cg_count(f, false);
    async_proto(b, f);
    p2p__cg_printf(b,
                   " {\n    p2p_value p2p_args[%zu];\n    p2p_error p2p_err = {0};\n"
                   "    int p2p_rc = 0;\n"
                   "    for (size_t p2p_i = 0; p2p_i < %zu; p2p_i++)\n        "
                   "p2p_value_init(&p2p_args[p2p_i]);\n",
                   n_in ? n_in : 1, n_in ? n_in : 1);
    for (size_t i = 0, k = 0; i < f->n_params; i++)
        if (!f->params[i].output)
            set_arg(b, &f->params[i], k++);
    p2p__cg_printf(b,
                   "    if (p2p_rc != 0) {\n"
                   "        p2p_value_list_cleanup(p2p_args, %zu);\n"
                   "        p2p_stub_fail(&p2p_err);\n"
                   "        return NULL;\n"
                   "    }\n"
                   "    return p2p_stub_submit(&p2p_functions[%zu], P2PRPC_DEFAULT_DISCOVERY, "
                   "p2p_args, p2p_opts);\n}\n",
                   n_in ? n_in : 1, index);
}

static void get_result(p2p__cg_buf *b, const p2p_cg_param *p, size_t i) {
    switch (p->type) {
    case P2P_TYPE_INT64:
        p2p__cg_printf(b, "    *%s = (", p->name);
        p2p__cg_pointee(b, p->c_type, false);
        p2p__cg_printf(b, ")p2p_out[%zu].as.i64;\n", i);
        break;
    case P2P_TYPE_BOOL:
        p2p__cg_printf(b, "    *%s = p2p_out[%zu].as.boolean;\n", p->name, i);
        break;
    case P2P_TYPE_DOUBLE:
        p2p__cg_printf(b, "    *%s = p2p_out[%zu].as.f64;\n", p->name, i);
        break;
    case P2P_TYPE_STRING:
        p2p__cg_printf(b,
                       "    if (p2p_rc == 0)\n        p2p_rc = p2p_stub_string_result("
                       "&p2p_out[%zu], %s);\n",
                       i, p->name);
        break;
    case P2P_TYPE_FILE:
        p2p__cg_printf(b, "    p2p_stub_file_result(&p2p_out[%zu], %s);\n", i, p->name);
        break;
    }
}

/* On error, frees the output strings already copied, so that the caller
 * gets NULL ones. */
static void free_strings(p2p__cg_buf *b, const p2p_cg_function *f) {
    bool any = false;
    for (size_t i = 0; i < f->n_params; i++)
        any |= f->params[i].output && f->params[i].type == P2P_TYPE_STRING;
    if (!any)
        return;
    p2p__cg_printf(b, "    if (p2p_rc != 0) {\n");
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output && f->params[i].type == P2P_TYPE_STRING)
            p2p__cg_printf(b, "        free(*%s);\n        *%s = NULL;\n", f->params[i].name,
                           f->params[i].name);
    p2p__cg_printf(b, "    }\n");
}

static void get_def(p2p__cg_buf *b, const p2p_cg_function *f) {
    get_proto(b, f);
    p2p__cg_printf(b, " {\n    const p2p_value *p2p_out = NULL;\n");
    /* Strings first set to NULL: the caller may free them whatever happens. */
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output && f->params[i].type == P2P_TYPE_STRING)
            p2p__cg_printf(b, "    *%s = NULL;\n", f->params[i].name);
    p2p__cg_printf(b,
                   "    int p2p_rc = p2p_stub_get(p2p_f, p2p_timeout_ms, %zu, &p2p_out);\n"
                   "    if (p2p_rc != 0)\n        return p2p_rc;\n",
                   p2p__cg_count(f, true));
    for (size_t i = 0, k = 0; i < f->n_params; i++)
        if (f->params[i].output)
            get_result(b, &f->params[i], k++);
    free_strings(b, f);
    p2p__cg_printf(b, "    return p2p_rc;\n}\n");
}

/* The function under its own name: submit, wait without limit, keep the
 * output files' paths past the future. */
/* The function under its own name: submit, wait without limit, keep the
 * output files' paths past the future. */
static void sync_def(p2p__cg_buf *b, const p2p_cg_function *f) {
    p2p__cg_printf(b, "int %s(", f->name);
    size_t open = p2p__cg_column(b);
    for (size_t i = 0; i < f->n_params; i++)
        p2p__cg_param_item(b, open, i == 0, &f->params[i]);
    p2p__cg_printf(b, ") {\n");
    p2p__cg_async_call(b, f, "NULL");
    p2p__cg_call c = {0};
    char name[P2P_SCHEMA_NAME_MAX + 8];
    p2p__cg_printf(b, "    if (p2p_f == NULL)\n        return p2p_stub_last_code();\n");
    p2p__cg_call_arg(&c, "p2p_f");
    p2p__cg_call_arg(&c, "-1");
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output)
            p2p__cg_call_arg(&c, "%s", f->params[i].name);
    snprintf(name, sizeof(name), "%s_get", f->name);
    p2p__cg_call_write(b, &c, 4, "int p2p_rc = ", name, ";");
    for (size_t i = 0; i < f->n_params; i++)
        if (f->params[i].output && f->params[i].type == P2P_TYPE_FILE)
            p2p__cg_printf(b, "    if (p2p_rc == 0)\n        p2p_rc = p2p_stub_keep_file(%s);\n",
                           f->params[i].name);
    free_strings(b, f);
    p2p__cg_printf(b, "    p2p_future_free(p2p_f);\n    return p2p_rc;\n}\n");
}

static void stubs_c(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_banner_c(b, h);
    p2p__cg_printf(b, "/* The client stubs of stubs.h. */\n"
                      "#include \"stubs.h\"\n\n"
                      "#include <stddef.h>\n#include <stdlib.h>\n\n"
                      "/* The discovery file of the default client; CMakeLists.txt names the\n"
                      " * one next to this file, P2PRPC_DISCOVERY overrides it. */\n"
                      "#ifndef P2PRPC_DEFAULT_DISCOVERY\n"
                      "#define P2PRPC_DEFAULT_DISCOVERY \"discovery.txt\"\n#endif\n\n");
    p2p__cg_schema_table(b, h);
    for (size_t i = 0; i < h->n_functions; i++) {
        p2p__cg_printf(b, "\n/* ---- %s ---- */\n\n", h->functions[i].name);
        async_def(b, &h->functions[i], i);
        p2p__cg_printf(b, "\n");
        get_def(b, &h->functions[i]);
        p2p__cg_printf(b, "\n");
        sync_def(b, &h->functions[i]);
    }
}

static void cmakelists(p2p__cg_buf *b, const p2p_cg_header *h) {
    p2p__cg_cmake_prelude(b, h, "clientapp");
    p2p__cg_printf(b,
                   "# The stubs, for your own programs too: link p2prpc_stubs instead of the\n"
                   "# functions' implementation, and the calls run remotely.\n"
                   "add_library(p2prpc_stubs STATIC stubs.c)\n"
                   "target_include_directories(p2prpc_stubs PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})\n"
                   "target_compile_definitions(p2prpc_stubs PRIVATE\n"
                   "    P2PRPC_DEFAULT_DISCOVERY=\"${CMAKE_CURRENT_SOURCE_DIR}/discovery.txt\")\n"
                   "target_link_libraries(p2prpc_stubs PUBLIC p2prpc::p2prpc)\n\n"
                   "add_executable(clientapp clientapp.c)\n"
                   "target_link_libraries(clientapp PRIVATE p2prpc_stubs)\n");
}

/* NAME_async and NAME_get must not be another function's name, and the
 * header must not be named as a generated file. */
static int check_names(const p2p_cg_header *h, p2p_error *err) {
    static const char *const files[] = {"stubs.h",        "stubs.c",    "clientapp.c",
                                        "CMakeLists.txt", "Dockerfile", "discovery.txt"};
    const char *base = p2p__cg_basename(h->path);
    for (size_t j = 0; j < sizeof(files) / sizeof(files[0]); j++)
        if (strcmp(base, files[j]) == 0)
            return p2p_error_set(err, P2P_EINVAL, "%s: error: '%s' is a generated file's name",
                                 h->path, base);
    for (size_t i = 0; i < h->n_functions; i++) {
        for (size_t j = 0; j < h->n_functions; j++) {
            const char *a = h->functions[i].name, *other = h->functions[j].name;
            size_t n = strlen(a);
            if (strncmp(other, a, n) == 0 &&
                (strcmp(other + n, "_async") == 0 || strcmp(other + n, "_get") == 0))
                return p2p_error_set(err, P2P_EINVAL,
                                     "%s:%d:%d: error: '%s' is the name of %s's client stub",
                                     h->path, h->functions[j].line, h->functions[j].col, other, a);
        }
    }
    return 0;
}

int p2p_cg_generate_client(const p2p_cg_header *h, const p2p_cg_options *opts, p2p_error *err) {
    int rc = p2p__cg_prepare(h, opts, true, err);
    if (rc == 0)
        rc = check_names(h, err);
    p2p__cg_buf b = {0};
    if (rc == 0) {
        stubs_h(&b, h);
        rc = p2p__cg_write(opts->out_dir, "stubs.h", &b, err);
    }
    if (rc == 0) {
        stubs_c(&b, h);
        rc = p2p__cg_write(opts->out_dir, "stubs.c", &b, err);
    }
    if (rc == 0) {
        p2p__cg_clientapp(&b, h);
        rc = p2p__cg_write(opts->out_dir, "clientapp.c", &b, err);
    }
    if (rc == 0) {
        cmakelists(&b, h);
        rc = p2p__cg_write(opts->out_dir, "CMakeLists.txt", &b, err);
    }
    if (rc == 0) {
        p2p__cg_dockerfile(&b, h, "clientapp");
        rc = p2p__cg_write(opts->out_dir, "Dockerfile", &b, err);
    }
    if (rc == 0)
        rc = p2p__cg_copy(h->path, opts->out_dir, p2p__cg_basename(h->path), err);
    if (rc == 0)
        rc = p2p__cg_copy(opts->discovery, opts->out_dir, "discovery.txt", err);
    return rc;
}
