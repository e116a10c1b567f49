/* Futures as arguments (pipelines): an input given as another call's output
 * travels as {"ref": {"identifier", "output"}} and is resolved by the broker
 * that has the upstream call, with no download here (docs/protocol.md,
 * "References", "waiting"). */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

static const p2p_param *find_output(const p2p_schema *s, const char *name) {
    size_t n = 0;
    const p2p_param *out = p2p_schema_outputs(s, &n);
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(out[i].name, name) == 0)
            return &out[i];
    return NULL;
}

/* The broker of the upstream call, which must also be the others'. */
static int pin(p2p_future *f, const p2p_future *up, const char *input, p2p_error *err) {
    const char *url = up->broker != NULL ? up->broker : up->broker_hint;
    if (url == NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "argument \"%s\": call %s has no broker to resolve it on", input,
                             up->identifier);
    if (f->pinned != NULL && strcmp(f->pinned, url) != 0)
        return p2p_error_set(err, P2P_EINVAL,
                             "argument \"%s\": its call is on %s, another input's on %s", input,
                             url, f->pinned);
    if (f->pinned == NULL && (f->pinned = strdup(url)) == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    return 0;
}

static int check_one(p2p_future *f, const p2p_param *in, size_t n, const p2p_arg_ref *r,
                     p2p_ident_ref *out, p2p_error *err) {
    if (r->input >= n)
        return p2p_error_set(err, P2P_EINVAL, "reference to input %zu: %s has %zu inputs", r->input,
                             p2p_schema_name(f->schema), n);
    const char *name = in[r->input].name;
    if (r->future == NULL || r->output == NULL)
        return p2p_error_set(err, P2P_EINVAL,
                             "argument \"%s\": a reference needs a future and "
                             "an output name",
                             name);
    if (out[r->input].identifier != NULL)
        return p2p_error_set(err, P2P_EINVAL, "argument \"%s\" is referenced twice", name);
    const p2p_param *o = find_output(r->future->schema, r->output);
    if (o == NULL)
        return p2p_error_set(err, P2P_EINVAL, "argument \"%s\": %s has no output \"%s\"", name,
                             p2p_schema_name(r->future->schema), r->output);
    if (o->type != in[r->input].type)
        return p2p_error_set(err, P2P_ETYPE, "argument \"%s\" is %s; output \"%s\" of %s is %s",
                             name, p2p_type_name(in[r->input].type), r->output,
                             p2p_schema_name(r->future->schema), p2p_type_name(o->type));
    out[r->input].identifier = r->future->identifier;
    out[r->input].output = r->output;
    return pin(f, r->future, name, err);
}

int p2p__refs_check(p2p_future *f, const p2p_arg_ref *refs, size_t n_refs, p2p_ident_ref *out,
                    p2p_error *err) {
    size_t n = 0;
    const p2p_param *in = p2p_schema_inputs(f->schema, &n);
    if (n_refs > 0 && refs == NULL)
        return p2p_error_set(err, P2P_EINVAL, "n_refs is %zu but refs is NULL", n_refs);
    for (size_t i = 0; i < n_refs; i++) {
        int rc = check_one(f, in, n, &refs[i], out, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int p2p__refs_args_json(const p2p_param *in, size_t n, const p2p_value *vals,
                        const p2p_ident_ref *refs, json_t **out, p2p_error *err) {
    json_t *args = json_object();
    int rc = args != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *v = NULL;
        if (refs[i].identifier != NULL)
            v = json_pack("{s:{s:s, s:s}}", "ref", "identifier", refs[i].identifier, "output",
                          refs[i].output);
        else
            rc = p2p_value_to_json(&vals[i], &v, err);
        if (rc == 0 && (v == NULL || json_object_set_new(args, in[i].name, v) != 0))
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    if (rc != 0) {
        json_decref(args);
        args = NULL;
    }
    *out = args;
    return rc;
}
