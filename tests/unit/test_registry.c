/* The broker's function registry: copies, sorted lookups, duplicates, JSON
 * files (one schema or an array, all or nothing), and the functions listing. */
#include "fsutil.h"
#include "registry.h"
#include "test.h"

#include <stdio.h>
#include <unistd.h>

/* Fingerprint of p2prpc_add(int64 a, int64 b) -> int64 sum (see test_schema.c). */
#define FP_ADD "32ed06fe637db4e546d0e73b199b31a3553cb11db4c168342a5225e453b7599f"

static char dir[512];

static p2p_schema *build(const char *name, p2p_type out_type) {
    const p2p_param in[] = {{"a", P2P_TYPE_INT64}, {"b", P2P_TYPE_INT64}};
    const p2p_param out[] = {{"sum", out_type}};
    p2p_schema *s = NULL;
    ASSERT_OK(p2p_schema_build(name, in, 2, out, 1, &s, NULL));
    return s;
}

static void write_file(const char *name, const char *text, char *path, size_t size) {
    snprintf(path, size, "%s/%s", dir, name);
    ASSERT_OK(p2p_fs_write_atomic(path, text, strlen(text), 0600, NULL));
}

static void test_add_find_sorted(void) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    ASSERT_EQ(p2p_registry_count(r), 0);
    ASSERT_TRUE(p2p_registry_find(r, "p2prpc_add") == NULL);
    const char *names[] = {"p2prpc_zeta", "p2prpc_add", "p2prpc_mid"};
    for (size_t i = 0; i < 3; i++) {
        p2p_schema *s = build(names[i], P2P_TYPE_INT64);
        ASSERT_OK(p2p_registry_add(r, s, NULL));
        p2p_schema_free(s); /* the registry holds its own copy */
    }
    ASSERT_EQ(p2p_registry_count(r), 3);
    ASSERT_STR_EQ(p2p_schema_name(p2p_registry_at(r, 0)), "p2prpc_add");
    ASSERT_STR_EQ(p2p_schema_name(p2p_registry_at(r, 1)), "p2prpc_mid");
    ASSERT_STR_EQ(p2p_schema_name(p2p_registry_at(r, 2)), "p2prpc_zeta");
    ASSERT_TRUE(p2p_registry_at(r, 3) == NULL);
    const p2p_schema *add = p2p_registry_find(r, "p2prpc_add");
    ASSERT_TRUE(add != NULL);
    ASSERT_STR_EQ(p2p_schema_fingerprint(add), FP_ADD);
    ASSERT_TRUE(p2p_registry_find(r, "p2prpc_ad") == NULL);
    ASSERT_TRUE(p2p_registry_find(r, "p2prpc_addd") == NULL);
    ASSERT_TRUE(p2p_registry_find(r, NULL) == NULL);
    p2p_registry_free(r);
    p2p_registry_free(NULL);
}

static void test_duplicates(void) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    p2p_schema *s = build("p2prpc_add", P2P_TYPE_INT64);
    ASSERT_OK(p2p_registry_add(r, s, NULL));
    /* The same signature again: accepted, nothing added. */
    ASSERT_OK(p2p_registry_add(r, s, NULL));
    ASSERT_EQ(p2p_registry_count(r), 1);
    /* Same name, another signature: refused, the first one stays. */
    p2p_schema *other = build("p2prpc_add", P2P_TYPE_DOUBLE);
    p2p_error err = {0};
    ASSERT_EQ(p2p_registry_add(r, other, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "p2prpc_add");
    ASSERT_STR_CONTAINS(err.msg, "different signatures");
    ASSERT_STR_EQ(p2p_schema_fingerprint(p2p_registry_find(r, "p2prpc_add")), FP_ADD);
    /* An unfinished schema cannot be served. */
    p2p_schema *open = NULL;
    ASSERT_OK(p2p_schema_new("p2prpc_open", &open, NULL));
    ASSERT_EQ(p2p_registry_add(r, open, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_registry_add(r, NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_registry_count(r), 1);
    p2p_schema_free(open);
    p2p_schema_free(other);
    p2p_schema_free(s);
    p2p_registry_free(r);
}

static const char two[] =
    "[{\"name\":\"p2prpc_add\",\"inputs\":[{\"name\":\"a\",\"type\":\"int64\"},"
    "{\"name\":\"b\",\"type\":\"int64\"}],\"outputs\":[{\"name\":\"sum\",\"type\":\"int64\"}],"
    "\"fingerprint\":\"" FP_ADD "\"},"
    "{\"name\":\"p2prpc_cat\",\"inputs\":[{\"name\":\"f\",\"type\":\"file\"}],"
    "\"outputs\":[{\"name\":\"out\",\"type\":\"file\"}]}]";

static void test_load_files(void) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    char path[700];
    p2p_error err = {0};
    write_file("two.json", two, path, sizeof(path));
    ASSERT_OK(p2p_registry_load_file(r, path, &err));
    ASSERT_EQ(p2p_registry_count(r), 2);
    ASSERT_TRUE(p2p_registry_find(r, "p2prpc_cat") != NULL);
    /* Loading it again changes nothing. */
    ASSERT_OK(p2p_registry_load_file(r, path, &err));
    ASSERT_EQ(p2p_registry_count(r), 2);
    /* One object (not an array) is a file too. */
    write_file("one.json",
               "{\"name\":\"p2prpc_one\",\"inputs\":[],\"outputs\":[{\"name\":\"x\","
               "\"type\":\"bool\"}]}",
               path, sizeof(path));
    ASSERT_OK(p2p_registry_load_file(r, path, &err));
    ASSERT_EQ(p2p_registry_count(r), 3);
    p2p_registry_free(r);
}

/* Each bad file is refused with a message naming it, and adds nothing. */
static void expect_bad_file(const char *text, int code, const char *needle) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    char path[700];
    write_file("bad.json", text, path, sizeof(path));
    p2p_error err = {0};
    ASSERT_EQ(p2p_registry_load_file(r, path, &err), code);
    ASSERT_STR_CONTAINS(err.msg, path);
    ASSERT_STR_CONTAINS(err.msg, needle);
    ASSERT_EQ(p2p_registry_count(r), 0);
    p2p_registry_free(r);
}

static void test_bad_files(void) {
    expect_bad_file("[{\"name\":", P2P_EINVAL, "line 1");
    expect_bad_file("[]", P2P_EINVAL, "empty array");
    expect_bad_file("42", P2P_EINVAL, "expected");
    expect_bad_file("[42]", P2P_ETYPE, "JSON object");
    /* The second schema is bad: the first is not kept either. */
    expect_bad_file("[{\"name\":\"p2prpc_ok\",\"inputs\":[],\"outputs\":[{\"name\":\"x\","
                    "\"type\":\"bool\"}]},{\"name\":\"p2prpc_bad\",\"inputs\":[],\"outputs\":[]}]",
                    P2P_EINVAL, "schema 1");
    /* A fingerprint that does not match the signature: another version. */
    expect_bad_file("{\"name\":\"p2prpc_add\",\"inputs\":[],\"outputs\":[{\"name\":\"x\","
                    "\"type\":\"bool\"}],\"fingerprint\":\"" FP_ADD "\"}",
                    P2P_ECONFLICT, "fingerprint");
    /* Two signatures for one name in the same file. */
    expect_bad_file("[{\"name\":\"p2prpc_x\",\"inputs\":[],\"outputs\":[{\"name\":\"x\","
                    "\"type\":\"bool\"}]},{\"name\":\"p2prpc_x\",\"inputs\":[],\"outputs\":"
                    "[{\"name\":\"x\",\"type\":\"int64\"}]}]",
                    P2P_ECONFLICT, "p2prpc_x");
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    p2p_error err = {0};
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/none.json", dir);
    ASSERT_EQ(p2p_registry_load_file(r, missing, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, missing);
    p2p_registry_free(r);
}

static void test_conflict_with_registered(void) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    p2p_schema *s = build("p2prpc_cat", P2P_TYPE_INT64);
    ASSERT_OK(p2p_registry_add(r, s, NULL));
    json_t *json = json_loads(two, 0, NULL);
    ASSERT_TRUE(json != NULL);
    p2p_error err = {0};
    ASSERT_EQ(p2p_registry_add_json(r, json, &err), P2P_ECONFLICT);
    /* p2prpc_add, valid on its own, was not added either. */
    ASSERT_EQ(p2p_registry_count(r), 1);
    json_decref(json);
    p2p_schema_free(s);
    p2p_registry_free(r);
}

static void test_to_json(void) {
    p2p_registry *r = NULL;
    ASSERT_OK(p2p_registry_new(&r, NULL));
    json_t *in = json_loads(two, 0, NULL);
    ASSERT_OK(p2p_registry_add_json(r, in, NULL));
    json_t *out = NULL;
    ASSERT_OK(p2p_registry_to_json(r, &out, NULL));
    json_t *list = json_object_get(out, "functions");
    ASSERT_EQ(json_array_size(list), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(list, 0), "fingerprint")),
                  FP_ADD);
    /* What the route lists reads back into the same registry. */
    p2p_registry *copy = NULL;
    ASSERT_OK(p2p_registry_new(&copy, NULL));
    ASSERT_OK(p2p_registry_add_json(copy, list, NULL));
    ASSERT_EQ(p2p_registry_count(copy), 2);
    ASSERT_STR_EQ(p2p_schema_fingerprint(p2p_registry_at(copy, 1)),
                  p2p_schema_fingerprint(p2p_registry_at(r, 1)));
    p2p_registry_free(copy);
    json_decref(out);
    json_decref(in);
    /* An empty registry lists an empty array. */
    p2p_registry *empty = NULL;
    ASSERT_OK(p2p_registry_new(&empty, NULL));
    ASSERT_OK(p2p_registry_to_json(empty, &out, NULL));
    ASSERT_EQ(json_array_size(json_object_get(out, "functions")), 0);
    json_decref(out);
    p2p_registry_free(empty);
    p2p_registry_free(r);
}

int main(void) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    ASSERT_OK(p2p_fs_mkdirs(base ? base : "/tmp", 0700, NULL));
    snprintf(dir, sizeof(dir), "%s/registry.XXXXXX", base ? base : "/tmp");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    TEST_RUN(test_add_find_sorted);
    TEST_RUN(test_duplicates);
    TEST_RUN(test_load_files);
    TEST_RUN(test_bad_files);
    TEST_RUN(test_conflict_with_registered);
    TEST_RUN(test_to_json);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
