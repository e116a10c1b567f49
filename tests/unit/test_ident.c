#include "ident.h"
#include "test.h"

#include <math.h>

/* Expected identifiers, computed independently from the byte layout in
 * docs/protocol.md by tests/unit/ident_vectors.py (python3 hashlib). They are
 * the wire contract: if one changes, every cached result in the world is
 * orphaned, so a failure here means the encoding broke, not the test. */
#define ID_ADD_1_2 "1ca1986539c97727e61343172e4af5a67555512021cb5e293f213018c63edc71"
#define ID_ANALYZE "ff46f255ff13f6e17d747e5767a92d79ea8bf12a6f3e0595cb6eaf0406bf9c1d"
#define ID_ALL_TYPES "4806d6dc1edeee7d7d975dd200e9b04a7238a5652bca1ef36ca03079be29b72f"

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_HELLO_NL "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"

static p2p_schema *build(const char *name, const p2p_param *in, size_t n_in, const p2p_param *out,
                         size_t n_out) {
    p2p_schema *s = NULL;
    p2p_error err = {0};
    if (p2p_schema_build(name, in, n_in, out, n_out, &s, &err) != 0)
        TEST_FAIL_("build %s: %s", name, err.msg);
    return s;
}

static void expect_ident(const p2p_schema *s, const p2p_value *args, const char *expected) {
    char id[P2P_HASH_HEX_LEN + 1];
    p2p_error err = {0};
    if (p2p_ident_compute(s, args, id, &err) != 0)
        TEST_FAIL_("ident of %s: %s", p2p_schema_name(s), err.msg);
    ASSERT_STR_EQ(id, expected);
}

static void test_worked_example(void) {
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"sum", P2P_TYPE_INT64}};
    p2p_schema *s = build("p2prpc_add", in, 2, out, 1);
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[0], 1);
    p2p_value_set_int64(&args[1], 2);
    expect_ident(s, args, ID_ADD_1_2);
    p2p_schema_free(s);
}

static void test_from_json(void) {
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"sum", P2P_TYPE_INT64}};
    p2p_schema *s = build("p2prpc_add", in, 2, out, 1);
    char id[P2P_HASH_HEX_LEN + 1];
    p2p_error err = {0};
    /* The worked example from its wire form; member order does not matter. */
    json_t *args = json_loads("{\"b\": 2, \"a\": 1}", 0, NULL);
    ASSERT_OK(p2p_ident_from_json(s, args, id, &err));
    ASSERT_STR_EQ(id, ID_ADD_1_2);
    json_decref(args);
    /* Arguments are checked strictly before anything is hashed. */
    args = json_loads("{\"a\": 1}", 0, NULL);
    ASSERT_EQ(p2p_ident_from_json(s, args, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "missing argument 'b'");
    json_decref(args);
    args = json_loads("{\"a\": 1, \"b\": 2.5}", 0, NULL);
    ASSERT_NE(p2p_ident_from_json(s, args, id, &err), 0);
    ASSERT_STR_CONTAINS(err.msg, "'b'");
    json_decref(args);
    p2p_schema_free(s);
}

static void test_analyze_example(void) {
    const p2p_param in[] = {{"video_handle", P2P_TYPE_FILE}, {"arg2", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"results_file1", P2P_TYPE_FILE},
                             {"results_file2", P2P_TYPE_FILE},
                             {"res_var", P2P_TYPE_INT64}};
    p2p_schema *s = build("p2prpc_analyze_large_file", in, 2, out, 3);
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    ASSERT_OK(p2p_value_set_file(&args[0], "/videos/a.mp4", SHA_HELLO_NL, 12, NULL));
    p2p_value_set_int64(&args[1], 42);
    expect_ident(s, args, ID_ANALYZE);
    /* The path and the size are not part of the identity: the content is. */
    ASSERT_OK(p2p_value_set_file(&args[0], NULL, SHA_HELLO_NL, 999, NULL));
    expect_ident(s, args, ID_ANALYZE);
    p2p_value_list_cleanup(args, 2);
    p2p_schema_free(s);
}

/* A pipeline's reference argument: the upstream identifier and output name
 * stand for the value (docs/protocol.md, "References"). */
static void test_reference_arguments(void) {
    const p2p_param in[] = {{"video_handle", P2P_TYPE_FILE}, {"arg2", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"results_file1", P2P_TYPE_FILE},
                             {"results_file2", P2P_TYPE_FILE},
                             {"res_var", P2P_TYPE_INT64}};
    p2p_schema *s = build("p2prpc_analyze_large_file", in, 2, out, 3);
    p2p_value args[2];
    p2p_value_init(&args[0]); /* ignored: the reference stands for it */
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[1], 7);
    p2p_ident_ref refs[2] = {{ID_ANALYZE, "results_file1"}, {NULL, NULL}};
    char id[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_ident_compute_refs(s, args, refs, id, NULL));
    ASSERT_STR_EQ(id, "35cce46e5bbf729e0cb2edc1b9d362020d6b343e797b6f95afb4f4d5f959e02d");
    refs[0].output = "results_file2";
    ASSERT_OK(p2p_ident_compute_refs(s, args, refs, id, NULL));
    ASSERT_STR_EQ(id, "6f11e74e1b5a55d131c74e96e5c234cbaec0dac8d55e4ef58e554dafe2e92f0f");
    /* NULL refs is p2p_ident_compute; a bad reference names its argument. */
    p2p_error err;
    ASSERT_EQ(p2p_ident_compute_refs(s, args, NULL, id, &err), P2P_ETYPE);
    refs[0].identifier = "ABC";
    ASSERT_EQ(p2p_ident_compute_refs(s, args, refs, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "'video_handle'");
    refs[0].identifier = ID_ANALYZE;
    refs[0].output = "";
    ASSERT_EQ(p2p_ident_compute_refs(s, args, refs, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "'video_handle'");
    p2p_value_list_cleanup(args, 2);
    p2p_schema_free(s);
}

static void test_all_types_through_json(void) {
    const p2p_param in[] = {{"i", P2P_TYPE_INT64},
                            {"d", P2P_TYPE_DOUBLE},
                            {"b", P2P_TYPE_BOOL},
                            {"s", P2P_TYPE_STRING},
                            {"f", P2P_TYPE_FILE}};
    const p2p_param out[] = {{"out", P2P_TYPE_STRING}};
    p2p_schema *s = build("p2prpc_all_types", in, 5, out, 1);
    /* As the broker gets them: a JSON object in any member order. */
    json_t *j = json_loads("{\"s\": \"h\\u00e9llo\", \"f\": {\"hash\": \"" SHA_ABC
                           "\", \"size\": 3}, \"b\": true, \"d\": 0.1, \"i\": -1}",
                           0, NULL);
    ASSERT_TRUE(j != NULL);
    p2p_value args[5];
    ASSERT_OK(p2p_value_list_from_json(in, 5, j, args, NULL));
    json_decref(j);
    expect_ident(s, args, ID_ALL_TYPES);
    p2p_value_list_cleanup(args, 5);
    p2p_schema_free(s);
}

/* p2prpc_one(x) -> y, with x of each type; the same list as ident_vectors.py.
 * `num` holds int64 and bool values, `real` doubles, `text` strings and file
 * hashes. */
typedef struct edge {
    const char *label;
    p2p_type type;
    int64_t num;
    double real;
    const char *text;
    const char *expected;
} edge;

static const edge edges[] = {
    {"int64 min", P2P_TYPE_INT64, INT64_MIN, 0, NULL,
     "1e045fd7adaf67ff319b5f23f80481fde4951eed9596fd2d927221dc9c315cd6"},
    {"int64 max", P2P_TYPE_INT64, INT64_MAX, 0, NULL,
     "5685462c7b0520aee8420f7df9ef0b566054e4318754b79b61e715decbe46fe9"},
    {"int64 zero", P2P_TYPE_INT64, 0, 0, NULL,
     "6a619b2488a5f843bbb80e3e7742156ff45957adc85f92cd833062f0094a5d92"},
    {"int64 minus one", P2P_TYPE_INT64, -1, 0, NULL,
     "4dd831e0f00b732c068162119d10bca766f9f1c23adf62698161dca86fda16d2"},
    {"double +0.0", P2P_TYPE_DOUBLE, 0, 0.0, NULL,
     "01079ad27bb2da69671b3428b106e413dd4aea6b44f06886eaecc88f0aa4875b"},
    {"double -0.0", P2P_TYPE_DOUBLE, 0, -0.0, NULL,
     "8cc5511888a2915f268041a8a540e962eb4d780ede986d37dd1dd9276c63247d"},
    {"double 1.5", P2P_TYPE_DOUBLE, 0, 1.5, NULL,
     "75548b9ad93b75300892c55f582117e119c49c8fdfe0ebf06ec79ece52492f42"},
    {"double smallest subnormal", P2P_TYPE_DOUBLE, 0, 5e-324, NULL,
     "8746f474afdb6d91ab1e3762297d4e38da16e5355ded6f44f71e7e50340cee8f"},
    {"bool false", P2P_TYPE_BOOL, 0, 0, NULL,
     "1e1a114370865cbc8dcc8a4950d60511cec4641b59e32f7447a1093d7cb55372"},
    {"bool true", P2P_TYPE_BOOL, 1, 0, NULL,
     "947698bda76e9da719126b98abd9b0bd2ab61871c6631b165e696132f9593e2b"},
    {"empty string", P2P_TYPE_STRING, 0, 0, "",
     "19a6d5f5c79f07508a37cf32bd62ecf3ec99807c09a4589b7eec7647e6ee2686"},
    /* "héllo ✓ 😀" */
    {"unicode string", P2P_TYPE_STRING, 0, 0, "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80",
     "cb62652f7d4cc24f7656a263798d4bfc11e53a2bc44d8838ba6c6ef1ae8d3918"},
    {"file of empty content", P2P_TYPE_FILE, 0, 0, SHA_EMPTY,
     "8794558ecd4ab6c5131698c7dbe48c2d9ff3a1907bb7d847052f98c3ae1e8489"},
};

static void set_edge_value(const edge *e, p2p_value *v) {
    switch (e->type) {
    case P2P_TYPE_INT64:
        p2p_value_set_int64(v, e->num);
        break;
    case P2P_TYPE_DOUBLE:
        ASSERT_OK(p2p_value_set_double(v, e->real, NULL));
        break;
    case P2P_TYPE_BOOL:
        p2p_value_set_bool(v, e->num != 0);
        break;
    case P2P_TYPE_STRING:
        ASSERT_OK(p2p_value_set_string(v, e->text, NULL));
        break;
    case P2P_TYPE_FILE:
        ASSERT_OK(p2p_value_set_file(v, NULL, e->text, 0, NULL));
        break;
    }
}

static void test_edge_values(void) {
    const p2p_param out[] = {{"y", P2P_TYPE_INT64}};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        fprintf(stderr, "   %s\n", edges[i].label);
        const p2p_param in[] = {{"x", edges[i].type}};
        p2p_schema *s = build("p2prpc_one", in, 1, out, 1);
        p2p_value v;
        p2p_value_init(&v);
        set_edge_value(&edges[i], &v);
        expect_ident(s, &v, edges[i].expected);
        p2p_value_cleanup(&v);
        p2p_schema_free(s);
    }
    /* All different from each other, -0.0 and +0.0 included. */
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        for (size_t j = i + 1; j < sizeof(edges) / sizeof(edges[0]); j++)
            ASSERT_TRUE(strcmp(edges[i].expected, edges[j].expected) != 0);
    }
}

#define FP_A "32ed06fe637db4e546d0e73b199b31a3553cb11db4c168342a5225e453b7599f"
#define FP_B "32ed06fe637db4e546d0e73b199b31a3553cb11db4c168342a5225e453b7599e"

/* Identifier of function(fp; name1: v1, name2: v2) with two strings. */
static void two_strings(const char *function, const char *fp, const char *n1, const char *v1,
                        const char *n2, const char *v2, char out[P2P_HASH_HEX_LEN + 1]) {
    const p2p_param params[] = {{n1, P2P_TYPE_STRING}, {n2, P2P_TYPE_STRING}};
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    ASSERT_OK(p2p_value_set_string(&args[0], v1, NULL));
    ASSERT_OK(p2p_value_set_string(&args[1], v2, NULL));
    ASSERT_OK(p2p_ident_compute_parts(function, fp, params, 2, args, out, NULL));
    p2p_value_list_cleanup(args, 2);
}

static void test_every_change_changes_the_identifier(void) {
    enum { N = 8 };
    char ids[N][P2P_HASH_HEX_LEN + 1];
    two_strings("p2prpc_f", FP_A, "a", "x", "b", "y", ids[0]);
    two_strings("p2prpc_g", FP_A, "a", "x", "b", "y", ids[1]); /* function name */
    two_strings("p2prpc_f", FP_B, "a", "x", "b", "y", ids[2]); /* fingerprint, one bit */
    two_strings("p2prpc_f", FP_A, "c", "x", "b", "y", ids[3]); /* argument name */
    two_strings("p2prpc_f", FP_A, "a", "x", "b", "z", ids[4]); /* argument value */
    /* Length prefixes keep boundaries: "ab"+"c" is not "a"+"bc". */
    two_strings("p2prpc_f", FP_A, "a", "ab", "b", "c", ids[5]);
    two_strings("p2prpc_f", FP_A, "a", "a", "b", "bc", ids[6]);
    /* Same 8 value bytes, another type tag: the int64 0x3ff0000000000000 and
     * the double 1.0 must not share an identifier. */
    const p2p_param as_int[] = {{"a", P2P_TYPE_INT64}}, as_double[] = {{"a", P2P_TYPE_DOUBLE}};
    p2p_value v;
    p2p_value_init(&v);
    double d = 0;
    int64_t bits = 0x3ff0000000000000; /* 1.0 */
    memcpy(&d, &bits, sizeof(d));
    p2p_value_set_int64(&v, bits);
    char id_int[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_ident_compute_parts("p2prpc_f", FP_A, as_int, 1, &v, id_int, NULL));
    ASSERT_OK(p2p_value_set_double(&v, d, NULL));
    ASSERT_OK(p2p_ident_compute_parts("p2prpc_f", FP_A, as_double, 1, &v, ids[7], NULL));
    ASSERT_TRUE(strcmp(id_int, ids[7]) != 0);
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++)
            ASSERT_TRUE(strcmp(ids[i], ids[j]) != 0);
    }
    /* And the same input gives the same identifier. */
    char again[P2P_HASH_HEX_LEN + 1];
    two_strings("p2prpc_f", FP_A, "a", "x", "b", "y", again);
    ASSERT_STR_EQ(again, ids[0]);
}

static void test_errors(void) {
    const p2p_param in[] = {{"x", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"y", P2P_TYPE_INT64}};
    p2p_schema *s = build("p2prpc_one", in, 1, out, 1);
    p2p_value v;
    p2p_value_init(&v);
    char id[P2P_HASH_HEX_LEN + 1];
    p2p_error err;
    ASSERT_EQ(p2p_ident_compute(s, &v, id, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "argument 'x': expected int64, found an empty value");
    ASSERT_OK(p2p_value_set_string(&v, "1", NULL));
    ASSERT_EQ(p2p_ident_compute(s, &v, id, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "argument 'x': expected int64, found string");
    p2p_value_cleanup(&v);
    p2p_schema_free(s);

    p2p_schema *unfinished = NULL;
    ASSERT_OK(p2p_schema_new("p2prpc_u", &unfinished, NULL));
    ASSERT_EQ(p2p_ident_compute(unfinished, NULL, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "not finished");
    p2p_schema_free(unfinished);

    ASSERT_EQ(p2p_ident_compute_parts("p2prpc_f", "ABC", NULL, 0, NULL, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "fingerprint of p2prpc_f");
    ASSERT_EQ(p2p_ident_compute_parts("", FP_A, NULL, 0, NULL, id, &err), P2P_EINVAL);
    /* A double whose fields were set by hand to NaN is refused. */
    const p2p_param dbl[] = {{"d", P2P_TYPE_DOUBLE}};
    p2p_value_init(&v);
    ASSERT_OK(p2p_value_set_double(&v, 1.0, NULL));
    v.as.f64 = NAN;
    ASSERT_EQ(p2p_ident_compute_parts("p2prpc_f", FP_A, dbl, 1, &v, id, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "argument 'd': NaN");
}

int main(void) {
    TEST_RUN(test_worked_example);
    TEST_RUN(test_from_json);
    TEST_RUN(test_analyze_example);
    TEST_RUN(test_reference_arguments);
    TEST_RUN(test_all_types_through_json);
    TEST_RUN(test_edge_values);
    TEST_RUN(test_every_change_changes_the_identifier);
    TEST_RUN(test_errors);
    return 0;
}
