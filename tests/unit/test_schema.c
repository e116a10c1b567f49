#include "schema.h"
#include "test.h"

/* Expected fingerprints, computed independently from the layout in
 * docs/protocol.md by tests/unit/ident_vectors.py. */
#define FP_ADD "32ed06fe637db4e546d0e73b199b31a3553cb11db4c168342a5225e453b7599f"
#define FP_ANALYZE "0b0402eb96ab0611f1123097bd9d3a558bdd3a483aa0822533c32cc9d12f307c"
#define FP_ALL "ab09580da920cdd0a7ce70c66572242f8e05c8e930749300c37bf16d8fa00bbc"
#define FP_ONE_INT64 "a097063f71fe4246840e3ea65c3fdbcc4c4000e290a35b94a9cc49ed9eb0392b"
#define FP_ONE_FILE "305317acf9b6c08a3792fcd1924e7d669e4beffaa6cfc343bebd0f800d51cdba"
#define FP_ONE_DOUBLE "b7aa60b5db7eb3572991fc6f8ce95ac430016e59af031eb36768f7570c70f513"
#define FP_ONE_BOOL "42eb5189beb3205d3364533ac5e3bd3050c641e41321d0c245f98bcb2da3abe1"
#define FP_ONE_STRING "45af585ed89df2c48c8ea748a406eb564414e9001418e6a47b97f44db3765064"

static p2p_schema *analyze_schema(void) {
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_new("p2prpc_analyze_large_file", &s, NULL));
    ASSERT_OK(p2p_schema_add_input(s, "video_handle", P2P_TYPE_FILE, NULL));
    ASSERT_OK(p2p_schema_add_input(s, "arg2", P2P_TYPE_INT64, NULL));
    ASSERT_OK(p2p_schema_add_output(s, "results_file1", P2P_TYPE_FILE, NULL));
    ASSERT_OK(p2p_schema_add_output(s, "results_file2", P2P_TYPE_FILE, NULL));
    ASSERT_OK(p2p_schema_add_output(s, "res_var", P2P_TYPE_INT64, NULL));
    return s;
}

static void expect_fingerprint(const char *name, const p2p_param *in, size_t n_in,
                               const p2p_param *out, size_t n_out, const char *expected) {
    p2p_schema *s = NULL;
    p2p_error err = {0};
    int rc = p2p_schema_build(name, in, n_in, out, n_out, &s, &err);
    if (rc != 0)
        TEST_FAIL_("build %s: %s", name, err.msg);
    ASSERT_STR_EQ(p2p_schema_fingerprint(s), expected);
    p2p_schema_free(s);
}

static void test_fingerprint_vectors(void) {
    p2p_schema *s = analyze_schema();
    ASSERT_FALSE(p2p_schema_finished(s));
    ASSERT_TRUE(p2p_schema_fingerprint(s) == NULL);
    ASSERT_OK(p2p_schema_finish(s, NULL));
    ASSERT_TRUE(p2p_schema_finished(s));
    ASSERT_STR_EQ(p2p_schema_fingerprint(s), FP_ANALYZE);
    ASSERT_STR_EQ(p2p_schema_name(s), "p2prpc_analyze_large_file");
    size_t n = 0;
    const p2p_param *in = p2p_schema_inputs(s, &n);
    ASSERT_EQ(n, 2);
    ASSERT_STR_EQ(in[1].name, "arg2");
    ASSERT_EQ(in[1].type, P2P_TYPE_INT64);
    const p2p_param *out = p2p_schema_outputs(s, &n);
    ASSERT_EQ(n, 3);
    ASSERT_STR_EQ(out[2].name, "res_var");
    p2p_schema_free(s);

    const p2p_param add_in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param add_out[] = {{"sum", P2P_TYPE_INT64}};
    expect_fingerprint("p2prpc_add", add_in, 2, add_out, 1, FP_ADD);
    const p2p_param all_in[] = {{"i", P2P_TYPE_INT64},
                                {"d", P2P_TYPE_DOUBLE},
                                {"b", P2P_TYPE_BOOL},
                                {"s", P2P_TYPE_STRING},
                                {"f", P2P_TYPE_FILE}};
    const p2p_param all_out[] = {{"out", P2P_TYPE_STRING}};
    expect_fingerprint("p2prpc_all_types", all_in, 5, all_out, 1, FP_ALL);
    const p2p_param one_out[] = {{"y", P2P_TYPE_INT64}};
    const p2p_param x_int[] = {{"x", P2P_TYPE_INT64}}, x_file[] = {{"x", P2P_TYPE_FILE}};
    const p2p_param x_double[] = {{"x", P2P_TYPE_DOUBLE}}, x_bool[] = {{"x", P2P_TYPE_BOOL}};
    const p2p_param x_string[] = {{"x", P2P_TYPE_STRING}};
    expect_fingerprint("p2prpc_one", x_int, 1, one_out, 1, FP_ONE_INT64);
    expect_fingerprint("p2prpc_one", x_double, 1, one_out, 1, FP_ONE_DOUBLE);
    expect_fingerprint("p2prpc_one", x_bool, 1, one_out, 1, FP_ONE_BOOL);
    expect_fingerprint("p2prpc_one", x_string, 1, one_out, 1, FP_ONE_STRING);
    expect_fingerprint("p2prpc_one", x_file, 1, one_out, 1, FP_ONE_FILE);
}

/* Builds p2prpc_f(inputs) -> outputs and returns its fingerprint in `fp`. */
static void fingerprint_of(const char *name, const p2p_param *in, size_t n_in, const p2p_param *out,
                           size_t n_out, char fp[P2P_HASH_HEX_LEN + 1]) {
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_build(name, in, n_in, out, n_out, &s, NULL));
    snprintf(fp, P2P_HASH_HEX_LEN + 1, "%s", p2p_schema_fingerprint(s));
    p2p_schema_free(s);
}

static void test_every_change_changes_the_fingerprint(void) {
    const p2p_param ab[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param ba[] = {{"b", P2P_TYPE_INT64}, {"a", P2P_TYPE_INT64}};
    const p2p_param ab_double[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_DOUBLE}};
    const p2p_param sum[] = {{"sum", P2P_TYPE_INT64}};
    const p2p_param a_sum[] = {{"a", P2P_TYPE_INT64}, {"sum", P2P_TYPE_INT64}};
    const p2p_param b_only[] = {{"b", P2P_TYPE_INT64}};
    char fps[6][P2P_HASH_HEX_LEN + 1];
    fingerprint_of("p2prpc_add", ab, 2, sum, 1, fps[0]);
    fingerprint_of("p2prpc_add2", ab, 2, sum, 1, fps[1]);
    fingerprint_of("p2prpc_add", ba, 2, sum, 1, fps[2]);
    fingerprint_of("p2prpc_add", ab_double, 2, sum, 1, fps[3]);
    /* "a" moved from the inputs to the outputs. */
    fingerprint_of("p2prpc_add", b_only, 1, a_sum, 2, fps[4]);
    fingerprint_of("p2prpc_add", ab, 1, sum, 1, fps[5]);
    for (int i = 0; i < 6; i++) {
        for (int j = i + 1; j < 6; j++)
            ASSERT_TRUE(strcmp(fps[i], fps[j]) != 0);
    }
}

static void expect_bad_function_name(const char *name, const char *msg_part) {
    p2p_schema *s = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_schema_new(name, &s, &err), P2P_EINVAL);
    ASSERT_TRUE(s == NULL);
    ASSERT_STR_CONTAINS(err.msg, msg_part);
}

static void test_function_names(void) {
    expect_bad_function_name("analyze", "must start with \"p2prpc_\"");
    expect_bad_function_name("P2PRPC_analyze", "must start with \"p2prpc_\"");
    expect_bad_function_name("p2prpc_", "followed by at least one character");
    expect_bad_function_name("p2prpc_bad-name", "is not a C identifier (character 11");
    expect_bad_function_name("1p2prpc_x", "must start with a letter");
    expect_bad_function_name("", "function name is empty");
    expect_bad_function_name(NULL, "function name is empty");
    char name[P2P_SCHEMA_NAME_MAX + 2];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memcpy(name, "p2prpc_", 7);
    expect_bad_function_name(name, "longer than 128 bytes");
    name[P2P_SCHEMA_NAME_MAX] = '\0';
    ASSERT_OK(p2p_schema_check_function_name(name, NULL));
    ASSERT_OK(p2p_schema_check_function_name("p2prpc_1", NULL));
}

static void expect_bad_param(const char *name, const char *msg_part) {
    p2p_error err = {0};
    int rc = p2p_schema_check_param_name(name, &err);
    if (rc != P2P_EINVAL)
        TEST_FAIL_("parameter name \"%s\" was accepted", name ? name : "(null)");
    ASSERT_STR_CONTAINS(err.msg, msg_part);
}

static void test_param_names(void) {
    const char *required[] = {"identifier",  "nodes",      "timestamp",   "status",   "progress",
                              "error",       "lease",      "lease_token", "attempts", "outputs",
                              "args",        "created_at", "updated_at",  "expiry",   "function",
                              "fingerprint", "terminate"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        ASSERT_TRUE(p2p_schema_reserved_name(required[i]));
        expect_bad_param(required[i], "reserved by p2prpc");
    }
    const char *const *all = p2p_schema_reserved_names();
    for (size_t i = 0; all[i] != NULL; i++)
        expect_bad_param(all[i], "reserved");
    ASSERT_FALSE(p2p_schema_reserved_name(NULL));
    ASSERT_FALSE(p2p_schema_reserved_name("Status"));
    expect_bad_param("int", "C keyword");
    expect_bad_param("double", "C keyword");
    expect_bad_param("bool", "C keyword");
    expect_bad_param("int64_t", "C keyword or type name");
    expect_bad_param("_Bool", "reserved by the C standard");
    expect_bad_param("__x", "reserved by the C standard");
    expect_bad_param("p2p_file", "framework's namespace");
    expect_bad_param("P2P_OUT", "framework's namespace");
    expect_bad_param("p2prpc_x", "framework's namespace");
    expect_bad_param("two words", "not a C identifier");
    expect_bad_param("caf\xc3\xa9", "not a C identifier");
    expect_bad_param("", "empty");
    expect_bad_param(NULL, "empty");
    ASSERT_OK(p2p_schema_check_param_name("_x", NULL));
    ASSERT_OK(p2p_schema_check_param_name("x1", NULL));
    ASSERT_OK(p2p_schema_check_param_name("video_handle", NULL));
    ASSERT_OK(p2p_schema_check_param_name("p2", NULL));
}

static void test_builder_rules(void) {
    p2p_schema *s = NULL;
    p2p_error err;
    ASSERT_OK(p2p_schema_new("p2prpc_f", &s, NULL));
    ASSERT_OK(p2p_schema_add_input(s, "a", P2P_TYPE_INT64, NULL));
    ASSERT_EQ(p2p_schema_add_input(s, "a", P2P_TYPE_BOOL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "input \"a\" of p2prpc_f: the name is already used");
    ASSERT_EQ(p2p_schema_add_output(s, "a", P2P_TYPE_INT64, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "output \"a\"");
    ASSERT_EQ(p2p_schema_add_output(s, "r", (p2p_type)0, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "unknown type 0");
    ASSERT_EQ(p2p_schema_add_input(s, "status", P2P_TYPE_INT64, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_schema_finish(s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "p2prpc_f has no output");
    ASSERT_TRUE(p2p_schema_fingerprint(s) == NULL);
    ASSERT_OK(p2p_schema_add_output(s, "r", P2P_TYPE_STRING, NULL));
    ASSERT_OK(p2p_schema_finish(s, NULL));
    ASSERT_EQ(p2p_schema_finish(s, &err), P2P_ECONFLICT);
    ASSERT_EQ(p2p_schema_add_input(s, "b", P2P_TYPE_INT64, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "cannot change");
    size_t n = 0;
    p2p_schema_inputs(s, &n);
    ASSERT_EQ(n, 1);
    p2p_schema_free(s);
    p2p_schema_free(NULL);
}

static void test_parameter_limit(void) {
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_new("p2prpc_many", &s, NULL));
    char name[16];
    for (int i = 0; i < P2P_SCHEMA_MAX_PARAMS; i++) {
        snprintf(name, sizeof(name), "in%d", i);
        ASSERT_OK(p2p_schema_add_input(s, name, P2P_TYPE_INT64, NULL));
    }
    p2p_error err;
    ASSERT_EQ(p2p_schema_add_input(s, "one_more", P2P_TYPE_INT64, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "more than 64 inputs");
    ASSERT_OK(p2p_schema_add_output(s, "out", P2P_TYPE_INT64, NULL));
    ASSERT_OK(p2p_schema_finish(s, NULL));
    p2p_schema_free(s);
}

static p2p_schema *from_text(const char *text, int expected_rc, const char *msg_part) {
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (j == NULL)
        TEST_FAIL_("cannot parse %s: %s", text, jerr.text);
    p2p_schema *s = NULL;
    p2p_error err = {0};
    int rc = p2p_schema_from_json(j, &s, &err);
    json_decref(j);
    if (rc != expected_rc)
        TEST_FAIL_("%s: expected %d, got %d (%s)", text, expected_rc, rc, err.msg);
    if (msg_part != NULL)
        ASSERT_STR_CONTAINS(err.msg, msg_part);
    ASSERT_TRUE((s != NULL) == (rc == 0));
    return s;
}

static void test_json_round_trip(void) {
    p2p_schema *s = analyze_schema();
    json_t *j = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_schema_to_json(s, &j, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "not finished");
    ASSERT_OK(p2p_schema_finish(s, NULL));
    ASSERT_OK(p2p_schema_to_json(s, &j, NULL));
    char *text = json_dumps(j, JSON_COMPACT);
    ASSERT_STR_EQ(text,
                  "{\"name\":\"p2prpc_analyze_large_file\",\"inputs\":[{\"name\":\"video_handle\","
                  "\"type\":\"file\"},{\"name\":\"arg2\",\"type\":\"int64\"}],\"outputs\":[{"
                  "\"name\":\"results_file1\",\"type\":\"file\"},{\"name\":\"results_file2\","
                  "\"type\":\"file\"},{\"name\":\"res_var\",\"type\":\"int64\"}],\"fingerprint\":"
                  "\"" FP_ANALYZE "\"}");
    json_decref(j);
    p2p_schema *back = from_text(text, 0, NULL);
    ASSERT_STR_EQ(p2p_schema_fingerprint(back), FP_ANALYZE);
    free(text);
    p2p_schema_free(back);
    p2p_schema_free(s);
    /* Without "fingerprint" it is computed. */
    back = from_text("{\"name\": \"p2prpc_add\", \"inputs\": [{\"name\": \"a\", \"type\": "
                     "\"int64\"}, {\"name\": \"b\", \"type\": \"int64\"}], \"outputs\": "
                     "[{\"type\": \"int64\", \"name\": \"sum\"}]}",
                     0, NULL);
    ASSERT_STR_EQ(p2p_schema_fingerprint(back), FP_ADD);
    p2p_schema_free(back);
}

static void test_json_errors(void) {
    from_text("{\"name\": \"p2prpc_add\", \"inputs\": [{\"name\": \"a\", \"type\": \"int64\"}, "
              "{\"name\": \"b\", \"type\": \"int64\"}], \"outputs\": [{\"name\": \"sum\", "
              "\"type\": \"double\"}], \"fingerprint\": \"" FP_ADD "\"}",
              P2P_ECONFLICT, "does not match the signature");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": [{\"name\": \"r\", \"type\": "
              "\"int64\"}], \"fingerprint\": 5}",
              P2P_ETYPE, "\"fingerprint\" must be a string");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": [], \"extra\": 1}", P2P_EINVAL,
              "schema has an unexpected member \"extra\"");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": []}", P2P_EINVAL,
              "has no output");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": {}, \"outputs\": []}", P2P_ETYPE,
              "\"inputs\" must be an array");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": []}", P2P_ETYPE,
              "\"outputs\" must be an array");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": [{\"name\": \"r\", \"type\": "
              "\"int\"}]}",
              P2P_EINVAL, "unknown type \"int\"");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [\"a\"], \"outputs\": []}", P2P_ETYPE,
              "inputs[0] must be an object");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": [{\"name\": \"r\", \"type\": "
              "\"int64\", \"doc\": \"x\"}]}",
              P2P_EINVAL, "outputs[0] has an unexpected member \"doc\"");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [], \"outputs\": [{\"name\": 1, \"type\": "
              "\"int64\"}]}",
              P2P_ETYPE, "outputs[0] needs \"name\" and \"type\"");
    from_text("{\"name\": \"p2prpc_f\", \"inputs\": [{\"name\": \"nodes\", \"type\": "
              "\"int64\"}], \"outputs\": []}",
              P2P_EINVAL, "reserved by p2prpc");
    from_text("{\"name\": 3}", P2P_ETYPE, "needs \"name\", a string");
    from_text("{\"name\": \"f\", \"inputs\": [], \"outputs\": []}", P2P_EINVAL, "p2prpc_");
    from_text("[]", P2P_ETYPE, "must be a JSON object");
}

int main(void) {
    TEST_RUN(test_fingerprint_vectors);
    TEST_RUN(test_every_change_changes_the_fingerprint);
    TEST_RUN(test_function_names);
    TEST_RUN(test_param_names);
    TEST_RUN(test_builder_rules);
    TEST_RUN(test_parameter_limit);
    TEST_RUN(test_json_round_trip);
    TEST_RUN(test_json_errors);
    return 0;
}
