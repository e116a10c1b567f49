/* Broker discovery: URL normalisation, the discovery file format (comments,
 * blanks, whitespace, duplicates, errors with their line), and the nodes
 * route's answer. */
#include "discovery.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void expect_normal(const char *in, const char *want) {
    char *out = NULL;
    p2p_error err = {0};
    int rc = p2p_discovery_normalize(in, &out, &err);
    if (rc != 0)
        TEST_FAIL_("normalize \"%s\": %s", in, err.msg);
    ASSERT_STR_EQ(out, want);
    free(out);
}

static void expect_refused(const char *in, const char *needle) {
    char *out = NULL;
    p2p_error err = {0};
    ASSERT_EQ(p2p_discovery_normalize(in, &out, &err), P2P_EINVAL);
    ASSERT_TRUE(out == NULL);
    ASSERT_STR_CONTAINS(err.msg, needle);
}

static void test_normalize(void) {
    expect_normal("http://127.0.0.1:8470", "http://127.0.0.1:8470/");
    expect_normal("http://127.0.0.1:8470/", "http://127.0.0.1:8470/");
    expect_normal("HTTPS://Broker.Example.ORG", "https://broker.example.org/");
    expect_normal("http://10.0.0.7:8470/p2p", "http://10.0.0.7:8470/p2p/");
    expect_normal("http://10.0.0.7/p2p/", "http://10.0.0.7/p2p/");
    expect_normal("http://[::1]:8470", "http://[::1]:8470/");
    expect_refused("", "empty");
    expect_refused(NULL, "empty");
    expect_refused("127.0.0.1:8470", "not");
    expect_refused("ftp://127.0.0.1/", "not an http");
    expect_refused("file:///etc/passwd", "not an http");
    expect_refused("http://user:pw@127.0.0.1/", "user");
    expect_refused("http://127.0.0.1/?x=1", "query");
    expect_refused("http://127.0.0.1/#top", "fragment");
    expect_refused("http://127.0.0.1 /", "not a URL");
    char *long_url = malloc(P2P_DISCOVERY_URL_MAX + 32);
    ASSERT_TRUE(long_url != NULL);
    memcpy(long_url, "http://h/", 9);
    memset(long_url + 9, 'a', P2P_DISCOVERY_URL_MAX);
    long_url[P2P_DISCOVERY_URL_MAX + 9] = '\0';
    expect_refused(long_url, "longer");
    free(long_url);
}

static void test_parse(void) {
    const char text[] = "# the lab's brokers\n"
                        "http://127.0.0.1:8470\n"
                        "\n"
                        "   \t\n"
                        "  https://b.example.org:8471/   # the second one\n"
                        "#http://commented.example.org/\n"
                        "http://127.0.0.1:8470/\r\n"
                        "http://10.0.0.7/p2p";
    p2p_discovery_list list;
    p2p_discovery_list_init(&list);
    p2p_error err = {0};
    ASSERT_OK(p2p_discovery_parse(text, strlen(text), "discovery.txt", &list, &err));
    ASSERT_EQ(list.count, 3);
    ASSERT_STR_EQ(list.items[0], "http://127.0.0.1:8470/");
    ASSERT_STR_EQ(list.items[1], "https://b.example.org:8471/");
    ASSERT_STR_EQ(list.items[2], "http://10.0.0.7/p2p/");
    ASSERT_TRUE(p2p_discovery_list_has(&list, "https://b.example.org:8471/"));
    ASSERT_FALSE(p2p_discovery_list_has(&list, "http://commented.example.org/"));
    p2p_discovery_list_cleanup(&list);
    /* Nothing but comments: an empty list, not an error. */
    ASSERT_OK(p2p_discovery_parse("# none\n\n", 8, "f", &list, &err));
    ASSERT_EQ(list.count, 0);
    ASSERT_OK(p2p_discovery_parse("", 0, "f", &list, &err));
    ASSERT_EQ(list.count, 0);
    p2p_discovery_list_cleanup(&list);
    p2p_discovery_list_cleanup(NULL);
}

static void test_parse_errors(void) {
    p2p_discovery_list list;
    p2p_discovery_list_init(&list);
    p2p_error err = {0};
    const char bad[] = "http://127.0.0.1:1/\n# fine\nbroker.example.org:8470\nhttp://x/\n";
    ASSERT_EQ(p2p_discovery_parse(bad, strlen(bad), "conf/discovery.txt", &list, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "conf/discovery.txt:3:");
    ASSERT_STR_CONTAINS(err.msg, "broker.example.org:8470");
    ASSERT_EQ(list.count, 1); /* the lines before it */
    p2p_discovery_list_cleanup(&list);
    const char nul[] = "http://a/\nhttp://b/\0x\n";
    ASSERT_EQ(p2p_discovery_parse(nul, sizeof(nul) - 1, "f", &list, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "f:2:");
    p2p_discovery_list_cleanup(&list);
    ASSERT_EQ(p2p_discovery_read("/nonexistent/discovery.txt", &list, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "/nonexistent/discovery.txt");
    ASSERT_EQ(p2p_discovery_read("/", &list, &err), P2P_EINVAL);
}

static void test_nodes(void) {
    json_t *answer = json_loads("{\"nodes\":["
                                "{\"uuid\":\"3f2a6c1e-9d7b-4c1a-8e2f-0123456789ab\","
                                "\"url\":\"http://127.0.0.1:8470\"},"
                                "{\"uuid\":null,\"url\":\"http://127.0.0.1:8471/\"},"
                                "{\"uuid\":null,\"url\":\"gopher://x/\"},"
                                "{\"uuid\":null},"
                                "7,"
                                "{\"uuid\":null,\"url\":\"http://127.0.0.1:8470/\"}]}",
                                0, NULL);
    ASSERT_TRUE(answer != NULL);
    p2p_discovery_list list;
    p2p_discovery_list_init(&list);
    char self[37];
    size_t skipped = 0;
    p2p_error err = {0};
    ASSERT_OK(p2p_discovery_nodes(answer, &list, self, &skipped, &err));
    ASSERT_STR_EQ(self, "3f2a6c1e-9d7b-4c1a-8e2f-0123456789ab");
    ASSERT_EQ(list.count, 2);
    ASSERT_STR_EQ(list.items[0], "http://127.0.0.1:8470/");
    ASSERT_STR_EQ(list.items[1], "http://127.0.0.1:8471/");
    ASSERT_EQ(skipped, 3);
    json_decref(answer);
    answer = json_loads("{\"nodes\":{}}", 0, NULL);
    ASSERT_EQ(p2p_discovery_nodes(answer, &list, self, NULL, &err), P2P_EPROTO);
    json_decref(answer);
    answer = json_loads("{\"nodes\":[{\"uuid\":null,\"url\":\"http://127.0.0.1:1/\"}]}", 0, NULL);
    ASSERT_OK(p2p_discovery_nodes(answer, &list, self, NULL, &err));
    ASSERT_STR_EQ(self, "");
    ASSERT_EQ(list.count, 3);
    json_decref(answer);
    p2p_discovery_list_cleanup(&list);
}

int main(void) {
    TEST_RUN(test_normalize);
    TEST_RUN(test_parse);
    TEST_RUN(test_parse_errors);
    TEST_RUN(test_nodes);
    return 0;
}
