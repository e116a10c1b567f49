#include "test.h"
#include "value.h"

#include <math.h>

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* Parses `text` with jansson; the caller json_decref's the result. */
static json_t *parse(const char *text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (j == NULL)
        TEST_FAIL_("cannot parse %s: %s", text, jerr.text);
    return j;
}

/* Reads `text` as `type`; returns the code and leaves the message in `err`. */
static int from_text(const char *text, p2p_type type, p2p_value *out, p2p_error *err) {
    json_t *j = parse(text);
    int rc = p2p_value_from_json(j, type, out, err);
    json_decref(j);
    return rc;
}

/* Serializes `v` to JSON text and back, as the wire does. */
static void round_trip(const p2p_value *v, p2p_value *back) {
    json_t *j = NULL;
    ASSERT_OK(p2p_value_to_json(v, &j, NULL));
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    ASSERT_TRUE(text != NULL);
    json_decref(j);
    p2p_error err = {0};
    int rc = from_text(text, v->type, back, &err);
    if (rc != 0)
        TEST_FAIL_("%s did not read back: %s", text, err.msg);
    free(text);
}

static void test_type_names(void) {
    const char *names[] = {"int64", "double", "bool", "string", "file"};
    for (int t = P2P_TYPE_INT64; t <= P2P_TYPE_FILE; t++) {
        p2p_type parsed;
        ASSERT_STR_EQ(p2p_type_name((p2p_type)t), names[t - 1]);
        ASSERT_OK(p2p_type_parse(names[t - 1], &parsed, NULL));
        ASSERT_EQ(parsed, t);
        ASSERT_TRUE(p2p_type_valid(t));
    }
    ASSERT_EQ(P2P_TYPE_INT64, 1);
    ASSERT_EQ(P2P_TYPE_FILE, 5);
    ASSERT_FALSE(p2p_type_valid(0));
    ASSERT_FALSE(p2p_type_valid(6));
    ASSERT_STR_EQ(p2p_type_name((p2p_type)0), "unknown");
    p2p_type t = P2P_TYPE_BOOL;
    p2p_error err;
    ASSERT_EQ(p2p_type_parse("int", &t, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "unknown type \"int\"");
    ASSERT_STR_CONTAINS(err.msg, "int64, double, bool, string or file");
    ASSERT_EQ(p2p_type_parse("INT64", &t, NULL), P2P_EINVAL);
    ASSERT_EQ(p2p_type_parse(NULL, &t, NULL), P2P_EINVAL);
    ASSERT_EQ(t, P2P_TYPE_BOOL);
}

static void test_double_refuses_nan_and_infinity(void) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_error err;
    ASSERT_OK(p2p_value_set_double(&v, 2.5, &err));
    ASSERT_EQ(p2p_value_set_double(&v, NAN, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "NaN is not a valid double");
    ASSERT_EQ(p2p_value_set_double(&v, INFINITY, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "infinity is not a valid double");
    ASSERT_EQ(p2p_value_set_double(&v, -INFINITY, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "-infinity");
    /* The refused setters left the value as it was. */
    ASSERT_EQ(v.type, P2P_TYPE_DOUBLE);
    ASSERT_TRUE(v.as.f64 == 2.5);
    /* A NaN written by hand into the fields is caught before it goes out. */
    v.as.f64 = NAN;
    json_t *j = NULL;
    ASSERT_EQ(p2p_value_to_json(&v, &j, &err), P2P_EINVAL);
    ASSERT_TRUE(j == NULL);
    p2p_value_cleanup(&v);
}

static void test_strings_must_be_utf8_without_nul(void) {
    const char *bad[] = {
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, three bytes */
        "\xed\xa0\x80",     /* UTF-16 surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xe2\x82",         /* truncated euro sign */
        "\x80",             /* lone continuation */
        "\xff",
    };
    p2p_value v;
    p2p_value_init(&v);
    p2p_error err;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ(p2p_value_set_string(&v, bad[i], &err), P2P_EINVAL);
        ASSERT_STR_CONTAINS(err.msg, "not valid UTF-8");
        ASSERT_EQ(v.type, 0);
    }
    size_t bad_at = 0;
    ASSERT_FALSE(p2p_utf8_valid("ok \xe2\x82 no", 8, &bad_at));
    ASSERT_EQ(bad_at, 3);
    ASSERT_OK(p2p_value_set_string(&v, "", NULL));
    ASSERT_STR_EQ(v.as.str, "");
    ASSERT_OK(p2p_value_set_string(&v, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", NULL));
    ASSERT_EQ(strlen(v.as.str), 15);
    ASSERT_EQ(p2p_value_set_stringn(&v, "a\0b", 3, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "NUL character at byte 1");
    ASSERT_EQ(p2p_value_set_string(&v, NULL, &err), P2P_EINVAL);
    /* Still the last good string. */
    ASSERT_EQ(v.type, P2P_TYPE_STRING);
    ASSERT_EQ(strlen(v.as.str), 15);
    ASSERT_OK(p2p_value_set_stringn(&v, "abcdef", 3, NULL));
    ASSERT_STR_EQ(v.as.str, "abc");
    p2p_value_cleanup(&v);
    ASSERT_EQ(v.type, 0);
    p2p_value_cleanup(&v);
}

static void test_files(void) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_error err;
    ASSERT_OK(p2p_value_set_file(&v, "/data/in.mp4", SHA_ABC, 3, &err));
    ASSERT_STR_EQ(v.as.file.path, "/data/in.mp4");
    ASSERT_STR_EQ(v.as.file.hash, SHA_ABC);
    ASSERT_EQ(v.as.file.size, 3);
    ASSERT_EQ(p2p_value_set_file(&v, NULL,
                                 "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF6"
                                 "1F20015AD",
                                 3, &err),
              P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "64 lowercase hex");
    ASSERT_EQ(p2p_value_set_file(&v, NULL, SHA_ABC, -1, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "size must be >= 0, got -1");
    /* Setting from its own hash field survives the cleanup of the old value. */
    ASSERT_OK(p2p_value_set_file(&v, NULL, v.as.file.hash, 4, &err));
    ASSERT_STR_EQ(v.as.file.hash, SHA_ABC);
    ASSERT_TRUE(v.as.file.path == NULL);
    p2p_value_cleanup(&v);
}

static void test_json_round_trips(void) {
    p2p_value v, back;
    p2p_value_init(&v);
    p2p_value_init(&back);
    int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        p2p_value_set_int64(&v, ints[i]);
        round_trip(&v, &back);
        ASSERT_EQ(back.as.i64, ints[i]);
    }
    double reals[] = {0.1, -0.0, 0.0, 1e300, -5e-324, 3.0, 1.0 / 3};
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        ASSERT_OK(p2p_value_set_double(&v, reals[i], NULL));
        round_trip(&v, &back);
        /* Bit for bit, so -0.0 stays -0.0. */
        ASSERT_TRUE(p2p_value_equal(&v, &back));
    }
    p2p_value_set_bool(&v, false);
    round_trip(&v, &back);
    ASSERT_EQ(back.as.boolean, false);
    ASSERT_OK(p2p_value_set_string(&v, "tab\t \"quote\" \xe6\x97\xa5\xe6\x9c\xac", NULL));
    round_trip(&v, &back);
    ASSERT_STR_EQ(back.as.str, v.as.str);
    ASSERT_OK(p2p_value_set_file(&v, "/local/only", SHA_ABC, 1234567890123, NULL));
    round_trip(&v, &back);
    ASSERT_TRUE(p2p_value_equal(&v, &back));
    ASSERT_TRUE(back.as.file.path == NULL);
    p2p_value_cleanup(&v);
    p2p_value_cleanup(&back);
}

static void test_file_wire_form_has_no_path(void) {
    p2p_value v;
    p2p_value_init(&v);
    ASSERT_OK(p2p_value_set_file(&v, "/secret/path.bin", SHA_ABC, 3, NULL));
    json_t *j = NULL;
    ASSERT_OK(p2p_value_to_json(&v, &j, NULL));
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    ASSERT_STR_EQ(text, "{\"hash\":\"" SHA_ABC "\",\"size\":3}");
    free(text);
    json_decref(j);
    p2p_value_cleanup(&v);
}

static void expect_refused(const char *text, p2p_type type, int code, const char *msg_part) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_value_set_int64(&v, 777);
    p2p_error err = {0};
    int rc = from_text(text, type, &v, &err);
    if (rc != code)
        TEST_FAIL_("%s as %s: expected %d, got %d (%s)", text, p2p_type_name(type), code, rc,
                   err.msg);
    ASSERT_STR_CONTAINS(err.msg, msg_part);
    /* A refused input leaves the output as it was. */
    ASSERT_EQ(v.type, P2P_TYPE_INT64);
    ASSERT_EQ(v.as.i64, 777);
}

static void test_strict_type_checking(void) {
    expect_refused("1.5", P2P_TYPE_INT64, P2P_ETYPE,
                   "expected int64 (a JSON integer), found the real number 1.5");
    expect_refused("1.0", P2P_TYPE_INT64, P2P_ETYPE, "found the real number 1.0");
    expect_refused("0.1", P2P_TYPE_INT64, P2P_ETYPE, "found the real number 0.1");
    expect_refused("1e300", P2P_TYPE_INT64, P2P_ETYPE, "found the real number 1e+300");
    expect_refused("\"1\"", P2P_TYPE_INT64, P2P_ETYPE, "found a string");
    expect_refused("true", P2P_TYPE_INT64, P2P_ETYPE, "found true");
    expect_refused("null", P2P_TYPE_INT64, P2P_ETYPE, "found null");
    expect_refused("\"2.5\"", P2P_TYPE_DOUBLE, P2P_ETYPE, "expected double (a JSON number)");
    expect_refused("9007199254740993", P2P_TYPE_DOUBLE, P2P_EINVAL, "no exact double");
    expect_refused("0", P2P_TYPE_BOOL, P2P_ETYPE,
                   "expected bool (true or false), found the "
                   "integer 0");
    expect_refused("5", P2P_TYPE_STRING, P2P_ETYPE, "expected string (a JSON string)");
    expect_refused("[\"a\"]", P2P_TYPE_STRING, P2P_ETYPE, "found an array");
    expect_refused("\"a\\u0000b\"", P2P_TYPE_STRING, P2P_EINVAL, "NUL character");
    expect_refused("\"" SHA_ABC "\"", P2P_TYPE_FILE, P2P_ETYPE, "expected file (an object");
    expect_refused("{\"hash\": \"" SHA_ABC "\", \"size\": 3, \"path\": \"/etc/passwd\"}",
                   P2P_TYPE_FILE, P2P_EINVAL, "unexpected member \"path\"");
    expect_refused("{\"size\": 3}", P2P_TYPE_FILE, P2P_EINVAL, "needs \"hash\"");
    expect_refused("{\"hash\": \"" SHA_ABC "\"}", P2P_TYPE_FILE, P2P_EINVAL, "needs \"size\"");
    expect_refused("{\"hash\": \"../x\", \"size\": 3}", P2P_TYPE_FILE, P2P_EINVAL,
                   "64 lowercase hex");
    expect_refused("{\"hash\": \"" SHA_ABC "\", \"size\": -3}", P2P_TYPE_FILE, P2P_EINVAL,
                   "size must be >= 0");
    expect_refused("{\"hash\": \"" SHA_ABC "\", \"size\": 3.0}", P2P_TYPE_FILE, P2P_EINVAL,
                   "needs \"size\"");
    p2p_value v;
    p2p_value_init(&v);
    p2p_error err;
    ASSERT_EQ(p2p_value_from_json(NULL, P2P_TYPE_INT64, &v, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "found nothing");
    json_t *j = json_integer(1);
    ASSERT_EQ(p2p_value_from_json(j, (p2p_type)9, &v, &err), P2P_EINVAL);
    json_decref(j);
}

static void test_accepted_conversions(void) {
    p2p_value v;
    p2p_value_init(&v);
    ASSERT_OK(from_text("3", P2P_TYPE_DOUBLE, &v, NULL));
    ASSERT_EQ(v.type, P2P_TYPE_DOUBLE);
    ASSERT_TRUE(v.as.f64 == 3.0);
    ASSERT_OK(from_text("-9007199254740992", P2P_TYPE_DOUBLE, &v, NULL));
    ASSERT_TRUE(v.as.f64 == -9007199254740992.0);
    ASSERT_OK(from_text("-9223372036854775808", P2P_TYPE_INT64, &v, NULL));
    ASSERT_EQ(v.as.i64, INT64_MIN);
    ASSERT_OK(from_text("true", P2P_TYPE_BOOL, &v, NULL));
    ASSERT_EQ(v.as.boolean, true);
    ASSERT_OK(from_text("\"\\u00e9\"", P2P_TYPE_STRING, &v, NULL));
    ASSERT_STR_EQ(v.as.str, "\xc3\xa9");
    p2p_value_cleanup(&v);
}

static void test_copy_and_equal(void) {
    p2p_value a, b;
    p2p_value_init(&a);
    p2p_value_init(&b);
    ASSERT_TRUE(p2p_value_equal(&a, &b));
    ASSERT_OK(p2p_value_set_double(&a, 0.0, NULL));
    ASSERT_OK(p2p_value_set_double(&b, -0.0, NULL));
    ASSERT_FALSE(p2p_value_equal(&a, &b));
    ASSERT_OK(p2p_value_set_string(&a, "x", NULL));
    ASSERT_OK(p2p_value_copy(&b, &a, NULL));
    ASSERT_TRUE(p2p_value_equal(&a, &b));
    ASSERT_TRUE(a.as.str != b.as.str);
    ASSERT_OK(p2p_value_copy(&a, &a, NULL));
    ASSERT_OK(p2p_value_set_file(&a, "/one", SHA_ABC, 3, NULL));
    ASSERT_OK(p2p_value_copy(&b, &a, NULL));
    ASSERT_STR_EQ(b.as.file.path, "/one");
    ASSERT_OK(p2p_value_set_file(&b, "/two", SHA_ABC, 3, NULL));
    ASSERT_TRUE(p2p_value_equal(&a, &b)); /* the path is not part of the value */
    ASSERT_OK(p2p_value_set_file(&b, "/one", SHA_ABC, 4, NULL));
    ASSERT_FALSE(p2p_value_equal(&a, &b));
    p2p_value_set_int64(&b, 3);
    ASSERT_FALSE(p2p_value_equal(&a, &b));
    p2p_value_cleanup(&a);
    p2p_value_cleanup(&b);
}

static void test_check_and_empty_values(void) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_error err;
    json_t *j = NULL;
    ASSERT_EQ(p2p_value_to_json(&v, &j, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "empty value");
    ASSERT_EQ(p2p_value_check(&v, P2P_TYPE_BOOL, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "expected bool, found an empty value");
    p2p_value_set_bool(&v, true);
    ASSERT_OK(p2p_value_check(&v, P2P_TYPE_BOOL, NULL));
    ASSERT_EQ(p2p_value_check(&v, P2P_TYPE_STRING, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "expected string, found bool");
}

static const p2p_param params[] = {
    {"video", P2P_TYPE_FILE},
    {"count", P2P_TYPE_INT64},
    {"label", P2P_TYPE_STRING},
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static int list_from_text(const char *text, p2p_value *values, p2p_error *err) {
    json_t *j = parse(text);
    int rc = p2p_value_list_from_json(params, NPARAMS, j, values, err);
    json_decref(j);
    return rc;
}

static void test_argument_lists(void) {
    p2p_value values[NPARAMS];
    p2p_error err;
    ASSERT_OK(list_from_text("{\"label\": \"x\", \"count\": 7, \"video\": {\"hash\": \"" SHA_ABC
                             "\", \"size\": 3}}",
                             values, &err));
    ASSERT_EQ(values[0].type, P2P_TYPE_FILE);
    ASSERT_EQ(values[1].as.i64, 7);
    ASSERT_STR_EQ(values[2].as.str, "x");
    json_t *j = NULL;
    ASSERT_OK(p2p_value_list_to_json(params, NPARAMS, values, &j, NULL));
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    ASSERT_STR_EQ(text,
                  "{\"count\":7,\"label\":\"x\",\"video\":{\"hash\":\"" SHA_ABC "\",\"size\":3}}");
    free(text);
    json_decref(j);
    /* A value of the wrong type is refused on the way out too. */
    p2p_value_set_bool(&values[1], true);
    ASSERT_EQ(p2p_value_list_to_json(params, NPARAMS, values, &j, &err), P2P_ETYPE);
    ASSERT_STR_CONTAINS(err.msg, "argument 'count': expected int64, found bool");
    p2p_value_list_cleanup(values, NPARAMS);
    p2p_value_list_cleanup(NULL, 3);
}

static void expect_list_refused(const char *text, int code, const char *msg_part) {
    p2p_value values[NPARAMS];
    p2p_error err = {0};
    int rc = list_from_text(text, values, &err);
    if (rc != code)
        TEST_FAIL_("%s: expected %d, got %d (%s)", text, code, rc, err.msg);
    ASSERT_STR_CONTAINS(err.msg, msg_part);
    /* Everything decoded before the error was freed (LeakSanitizer checks). */
    for (size_t i = 0; i < NPARAMS; i++)
        ASSERT_EQ(values[i].type, 0);
}

static void test_argument_list_errors(void) {
    const char *file = "{\"hash\": \"" SHA_ABC "\", \"size\": 3}";
    char text[512];
    snprintf(text, sizeof(text), "{\"video\": %s, \"label\": \"x\"}", file);
    expect_list_refused(text, P2P_EINVAL, "missing argument 'count' (int64)");
    snprintf(text, sizeof(text), "{\"video\": %s, \"count\": 1, \"label\": \"x\", \"extra\": 1}",
             file);
    expect_list_refused(text, P2P_EINVAL, "unexpected argument 'extra'");
    snprintf(text, sizeof(text), "{\"video\": %s, \"count\": \"1\", \"label\": \"x\"}", file);
    expect_list_refused(text, P2P_ETYPE,
                        "argument 'count': expected int64 (a JSON integer), found a string");
    snprintf(text, sizeof(text), "{\"video\": %s, \"count\": 1, \"label\": \"\\u0000\"}", file);
    expect_list_refused(text, P2P_EINVAL, "argument 'label': string contains a NUL");
    expect_list_refused("[1, 2, 3]", P2P_ETYPE, "arguments must be a JSON object, found an array");
    /* An empty parameter list takes only an empty object. */
    p2p_value none[1];
    json_t *empty = parse("{}"), *one = parse("{\"a\": 1}");
    ASSERT_OK(p2p_value_list_from_json(params, 0, empty, none, NULL));
    p2p_error err;
    ASSERT_EQ(p2p_value_list_from_json(params, 0, one, none, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "unexpected argument 'a'");
    json_decref(empty);
    json_decref(one);
}

int main(void) {
    TEST_RUN(test_type_names);
    TEST_RUN(test_double_refuses_nan_and_infinity);
    TEST_RUN(test_strings_must_be_utf8_without_nul);
    TEST_RUN(test_files);
    TEST_RUN(test_json_round_trips);
    TEST_RUN(test_file_wire_form_has_no_path);
    TEST_RUN(test_strict_type_checking);
    TEST_RUN(test_accepted_conversions);
    TEST_RUN(test_copy_and_equal);
    TEST_RUN(test_check_and_empty_values);
    TEST_RUN(test_argument_lists);
    TEST_RUN(test_argument_list_errors);
    return 0;
}
