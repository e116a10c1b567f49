#include "http_router.h"
#include "test.h"

static void h(p2p_http_request *req, void *ctx) {
    (void)req;
    (void)ctx;
}

static const p2p_http_route routes[] = {
    {"GET", "/health", h, P2P_HTTP_PUBLIC, 0},
    {"POST", "/api/v1/{function}/push_update", h, 0, 0},
    {"GET", "/api/v1/{function}/pull_update", h, 0, 0},
    {"PUT", "/blobs/{hash}", h, P2P_HTTP_SPOOL_TO_FILE, 0},
    {"GET", "/blobs/{hash}", h, 0, 0},
    {"HEAD", "/blobs/{hash}", h, 0, 0},
    {"GET", "/a/{x}/b/{y}", h, 0, 0},
    {"GET", "/", h, 0, 0},
};

static p2p_http_router *make(void) {
    p2p_http_router *r = NULL;
    p2p_error err;
    ASSERT_OK(p2p_http_router_new(routes, sizeof(routes) / sizeof(routes[0]), &r, &err));
    return r;
}

static int match(p2p_http_router *r, const char *method, const char *path, p2p_http_match *m,
                 char *allow) {
    return p2p_http_router_match(r, method, path, strlen(path), m, allow, 64);
}

static void test_literal_and_captures(void) {
    p2p_http_router *r = make();
    p2p_http_match m;
    char allow[64];
    ASSERT_OK(match(r, "GET", "/health", &m, allow));
    ASSERT_TRUE(m.route->handler == h);
    ASSERT_STR_EQ(m.route->pattern, "/health");
    ASSERT_EQ(m.n_params, 0);
    p2p_http_match_cleanup(&m);

    ASSERT_OK(match(r, "POST", "/api/v1/p2prpc_fn/push_update", &m, allow));
    ASSERT_STR_EQ(p2p_http_match_param(&m, "function"), "p2prpc_fn");
    ASSERT_TRUE(p2p_http_match_param(&m, "hash") == NULL);
    p2p_http_match_cleanup(&m);

    ASSERT_OK(match(r, "GET", "/a/one/b/t%20wo%2Fx", &m, allow));
    ASSERT_STR_EQ(p2p_http_match_param(&m, "x"), "one");
    ASSERT_STR_EQ(p2p_http_match_param(&m, "y"), "t wo/x"); /* decoded after splitting */
    p2p_http_match_cleanup(&m);

    ASSERT_OK(match(r, "GET", "/", &m, allow));
    ASSERT_STR_EQ(m.route->pattern, "/");
    p2p_http_match_cleanup(&m);
    p2p_http_router_free(r);
}

static void test_not_found(void) {
    p2p_http_router *r = make();
    p2p_http_match m;
    char allow[64];
    const char *misses[] = {"/healthz",
                            "/health/",
                            "/blobs",
                            "/blobs/",
                            "/blobs//",
                            "/api/v1//push_update",
                            "/api/v1/fn/push_update/x",
                            "//",
                            "health",
                            "",
                            "/a/1/b"};
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        int rc = match(r, "GET", misses[i], &m, allow);
        if (rc != P2P_ENOTFOUND)
            TEST_FAIL_("path \"%s\": expected not found, got %d", misses[i], rc);
        ASSERT_EQ(m.n_params, 0);
    }
    p2p_http_router_free(r);
}

static void test_wrong_method_lists_allowed(void) {
    p2p_http_router *r = make();
    p2p_http_match m;
    char allow[64];
    ASSERT_EQ(match(r, "DELETE", "/blobs/abc", &m, allow), P2P_ECONFLICT);
    ASSERT_STR_EQ(allow, "PUT, GET, HEAD");
    ASSERT_TRUE(m.route == NULL);
    ASSERT_EQ(match(r, "get", "/health", &m, allow), P2P_ECONFLICT); /* case-sensitive */
    ASSERT_STR_EQ(allow, "GET");
    char tiny[5];
    ASSERT_EQ(p2p_http_router_match(r, "POST", "/blobs/x", 8, &m, tiny, sizeof(tiny)),
              P2P_ECONFLICT);
    ASSERT_STR_EQ(tiny, "PUT"); /* truncated to what fits */
    p2p_http_router_free(r);
}

static void test_bad_routes(void) {
    const char *bad[] = {"blobs", "/blobs/{hash", "/blobs/{}", "/blobs/{a-b}", "/x//y",
                         "/x/",   "/{a}/{a}",     "/a{b}",     "/{a}{b}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p2p_http_route one = {"GET", bad[i], h, 0, 0};
        p2p_http_router *r = NULL;
        p2p_error err;
        int rc = p2p_http_router_new(&one, 1, &r, &err);
        if (rc != P2P_EINVAL)
            TEST_FAIL_("pattern \"%s\": expected P2P_EINVAL, got %d", bad[i], rc);
        ASSERT_STR_CONTAINS(err.msg, bad[i]);
        ASSERT_TRUE(r == NULL);
    }
    p2p_http_route nine = {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h, 0, 0};
    p2p_http_route nohandler = {"GET", "/x", NULL, 0, 0};
    p2p_http_route nomethod = {"", "/x", h, 0, 0};
    p2p_http_router *r = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_http_router_new(&nine, 1, &r, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "more than 8");
    ASSERT_EQ(p2p_http_router_new(&nohandler, 1, &r, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_http_router_new(&nomethod, 1, &r, &err), P2P_EINVAL);
    ASSERT_OK(p2p_http_router_new(NULL, 0, &r, &err));
    p2p_http_match m;
    char allow[8];
    ASSERT_EQ(p2p_http_router_match(r, "GET", "/", 1, &m, allow, sizeof(allow)), P2P_ENOTFOUND);
    p2p_http_router_free(r);
    p2p_http_router_free(NULL);
}

int main(void) {
    TEST_RUN(test_literal_and_captures);
    TEST_RUN(test_not_found);
    TEST_RUN(test_wrong_method_lists_allowed);
    TEST_RUN(test_bad_routes);
    return 0;
}
