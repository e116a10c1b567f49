/* The runtime of generated code (codegen/stub.h, stub_client.h) apart from
 * the network: schemas from a static table, the adapters' conversions and
 * their refusals, bool parsing, the client stubs' argument and result
 * helpers and the last error. The calls themselves run in
 * tests/integration/test_codegen_e2e.sh. */
#include "stub.h"
#include "stub_client.h"
#include "test.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hash_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_schemas(void) {
    static const p2p_param in[] = {{"x", P2P_TYPE_INT64}};
    static const p2p_param out[] = {{"y", P2P_TYPE_DOUBLE}};
    const p2p_stub_function fns[] = {{"p2prpc_a", in, 1, out, 1}, {"p2prpc_b", NULL, 0, out, 1}};
    p2p_schema **s = NULL;
    p2p_error err = {0};
    ASSERT_OK(p2p_stub_schemas_new(fns, 2, &s, &err));
    ASSERT_STR_EQ(p2p_schema_name(s[1]), "p2prpc_b");
    ASSERT_TRUE(p2p_schema_finished(s[0]));
    p2p_stub_schemas_free(s, 2);
    p2p_stub_schemas_free(NULL, 0);
    /* A bad signature is named. */
    static const p2p_param reserved[] = {{"status", P2P_TYPE_INT64}};
    const p2p_stub_function bad[] = {{"p2prpc_a", in, 1, out, 1}, {"p2prpc_c", in, 1, reserved, 1}};
    s = NULL;
    ASSERT_EQ(p2p_stub_schemas_new(bad, 2, &s, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "p2prpc_c");
    ASSERT_TRUE(s == NULL);
}

static void test_inputs(void) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_value_set_int64(&v, INT_MAX);
    int i = 0;
    ASSERT_OK(p2p_stub_in_int(&v, "n", &i));
    ASSERT_EQ(i, INT_MAX);
    p2p_value_set_int64(&v, (int64_t)INT_MAX + 1);
    ASSERT_EQ(p2p_stub_in_int(&v, "n", &i), P2P_EINVAL);
    p2p_value_set_int64(&v, (int64_t)INT_MIN - 1);
    ASSERT_EQ(p2p_stub_in_int(&v, "n", &i), P2P_EINVAL);
    long l = 0;
    p2p_value_set_int64(&v, -5);
    ASSERT_OK(p2p_stub_in_long(&v, "n", &l));
    ASSERT_EQ(l, -5);
    ASSERT_OK(p2p_value_set_file(&v, "/tmp/in", hash_a, 3, NULL));
    p2p_file f = p2p_stub_in_file(&v);
    ASSERT_STR_EQ(f.path, "/tmp/in");
    ASSERT_STR_EQ(f.hash, hash_a);
    p2p_value_cleanup(&v);
}

static void test_outputs(void) {
    p2p_value v;
    p2p_value_init(&v);
    ASSERT_OK(p2p_stub_out_double(&v, "d", 2.5));
    ASSERT_TRUE(v.type == P2P_TYPE_DOUBLE && v.as.f64 == 2.5);
    ASSERT_EQ(p2p_stub_out_double(&v, "d", NAN), P2P_EINVAL);
    ASSERT_EQ(p2p_stub_out_double(&v, "d", INFINITY), P2P_EINVAL);
    ASSERT_OK(p2p_stub_out_string(&v, "s", "héllo"));
    ASSERT_STR_EQ(v.as.str, "héllo");
    ASSERT_EQ(p2p_stub_out_string(&v, "s", NULL), P2P_EINVAL);
    ASSERT_EQ(p2p_stub_out_string(&v, "s", "\xff\xfe"), P2P_EINVAL);
    /* A file: its path copied, a valid hash kept, else left for the worker. */
    p2p_file f = {.path = "out.bin"};
    ASSERT_OK(p2p_stub_out_file(&v, "f", &f));
    ASSERT_EQ(v.type, P2P_TYPE_FILE);
    ASSERT_STR_EQ(v.as.file.path, "out.bin");
    ASSERT_STR_EQ(v.as.file.hash, "");
    memcpy(f.hash, hash_a, sizeof(f.hash));
    ASSERT_OK(p2p_stub_out_file(&v, "f", &f));
    ASSERT_STR_EQ(v.as.file.hash, hash_a);
    p2p_file none = {0};
    ASSERT_EQ(p2p_stub_out_file(&v, "f", &none), P2P_EINVAL);
    none.path = "";
    ASSERT_EQ(p2p_stub_out_file(&v, "f", &none), P2P_EINVAL);
    p2p_value_cleanup(&v);
}

static void test_parse_bool(void) {
    const char *yes[] = {"true", "1", "yes"}, *no[] = {"false", "0", "no"};
    for (size_t i = 0; i < 3; i++) {
        bool b = false;
        ASSERT_OK(p2p_stub_parse_bool(yes[i], &b));
        ASSERT_TRUE(b);
        ASSERT_OK(p2p_stub_parse_bool(no[i], &b));
        ASSERT_FALSE(b);
    }
    bool b = true;
    ASSERT_EQ(p2p_stub_parse_bool("TRUE", &b), P2P_EINVAL);
    ASSERT_EQ(p2p_stub_parse_bool("", &b), P2P_EINVAL);
    ASSERT_EQ(p2p_stub_parse_bool(NULL, &b), P2P_EINVAL);
    ASSERT_TRUE(b);
}

static void test_client_helpers(void) {
    p2p_value v;
    p2p_value_init(&v);
    p2p_file f = {.path = "/data/in.bin"};
    ASSERT_OK(p2p_stub_arg_file(&v, &f, NULL));
    ASSERT_STR_EQ(v.as.file.path, "/data/in.bin");
    ASSERT_STR_EQ(v.as.file.hash, "");
    p2p_file out = {0};
    p2p_stub_file_result(&v, &out);
    ASSERT_STR_EQ(out.path, "/data/in.bin");
    /* Kept paths outlive the value. */
    ASSERT_OK(p2p_stub_keep_file(&out));
    p2p_value_cleanup(&v);
    ASSERT_STR_EQ(out.path, "/data/in.bin");
    p2p_file nopath = {0};
    p2p_error err = {0};
    ASSERT_EQ(p2p_stub_arg_file(&v, &nopath, &err), P2P_EINVAL);
    ASSERT_OK(p2p_value_set_string(&v, "text", NULL));
    char *s = NULL;
    ASSERT_OK(p2p_stub_string_result(&v, &s));
    ASSERT_STR_EQ(s, "text");
    free(s);
    p2p_value_cleanup(&v);
    /* The schema of a static function, built once. */
    static const p2p_param out_params[] = {{"y", P2P_TYPE_INT64}};
    static const p2p_stub_function fn = {"p2prpc_z", NULL, 0, out_params, 1};
    const p2p_schema *a = p2p_stub_schema(&fn);
    ASSERT_TRUE(a != NULL);
    ASSERT_TRUE(p2p_stub_schema(&fn) == a);
    static const p2p_stub_function bad = {"not_p2prpc", NULL, 0, out_params, 1};
    ASSERT_TRUE(p2p_stub_schema(&bad) == NULL);
    ASSERT_EQ(p2p_stub_last_code(), P2P_EINVAL);
    ASSERT_STR_CONTAINS(p2p_stub_last_error(), "p2prpc_");
    /* A submit without any broker fails with the reason, and cleans its arguments. */
    p2p_value args[1];
    p2p_value_init(&args[0]);
    ASSERT_TRUE(p2p_stub_submit(&fn, "/nonexistent/discovery.txt", args, NULL) == NULL);
    ASSERT_EQ(p2p_stub_last_code(), P2P_ENOTFOUND);
    p2p_error e = {.code = P2P_EIO};
    snprintf(e.msg, sizeof(e.msg), "disk on fire");
    ASSERT_EQ(p2p_stub_fail(&e), P2P_EIO);
    ASSERT_STR_EQ(p2p_stub_last_error(), "disk on fire");
    p2p_stub_shutdown();
    p2p_stub_shutdown();
}

int main(void) {
    /* The default client must not touch the user's data directory. */
    const char *tmp = getenv("P2PRPC_TEST_TMP");
    char cache[512];
    snprintf(cache, sizeof(cache), "%s/codegen_stub_cache", tmp && tmp[0] ? tmp : "/tmp");
    setenv("P2PRPC_CACHE", cache, 1);
    unsetenv("P2PRPC_DISCOVERY");
    TEST_RUN(test_schemas);
    TEST_RUN(test_inputs);
    TEST_RUN(test_outputs);
    TEST_RUN(test_parse_bool);
    TEST_RUN(test_client_helpers);
    return 0;
}
