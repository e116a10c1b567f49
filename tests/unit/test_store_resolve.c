/* p2p_store_resolve: a pushed call waiting for its inputs gets its resolved
 * arguments and blob references and is queued, or fails; nothing else
 * settles. A conformance test (store_test_util.h): SQLite, and MongoDB with
 * P2PRPC_TEST_STORE=mongodb. */
#include "store_test_util.h"

#include <stdio.h>
#include <string.h>

static void test_resolve(void) {
    char dir[512];
    st_make_dir(dir, sizeof(dir), "store_resolve");
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "s.db", &opts);
    char id1[P2P_STORE_ID_LEN + 1], id2[P2P_STORE_ID_LEN + 1], blob[P2P_STORE_ID_LEN + 1];
    st_hex(id1, 0xca11, 1);
    st_hex(id2, 0xca11, 2);
    st_hex(blob, 0xb10b, 1);
    st_create(store, "p2prpc_f", 1, false);
    st_create(store, "p2prpc_f", 2, false);

    const char *blobs[] = {blob};
    ASSERT_OK(p2p_store_resolve(store, id1, "{\"n\":{\"hash\":\"x\"}}", blobs, 1, NULL, NULL));
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_OK(p2p_store_get(store, id1, &call, NULL));
    ASSERT_EQ(call.status, P2P_CALL_QUEUED);
    ASSERT_STR_EQ(call.args, "{\"n\":{\"hash\":\"x\"}}");
    ASSERT_EQ(call.version, 2);
    p2p_call_cleanup(&call);
    uint64_t refs = 0;
    ASSERT_OK(p2p_store_blob_refcount(store, blob, &refs, NULL));
    ASSERT_EQ(refs, 1);

    /* Settled already: a second resolve is a conflict. */
    p2p_error err;
    ASSERT_EQ(p2p_store_resolve(store, id1, "{}", NULL, 0, NULL, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "queued");

    ASSERT_OK(
        p2p_store_resolve(store, id2, NULL, NULL, 0, "input x: upstream call y failed", NULL));
    p2p_call_init(&call);
    ASSERT_OK(p2p_store_get(store, id2, &call, NULL));
    ASSERT_EQ(call.status, P2P_CALL_FAILED);
    ASSERT_STR_EQ(call.error, "input x: upstream call y failed");
    ASSERT_STR_EQ(call.args, "{\"n\":1}");
    p2p_call_cleanup(&call);

    /* Bad input. */
    char id3[P2P_STORE_ID_LEN + 1];
    st_hex(id3, 0xca11, 3);
    ASSERT_EQ(p2p_store_resolve(store, id3, "{}", NULL, 0, NULL, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_store_resolve(store, id3, NULL, NULL, 0, NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_resolve(store, id3, "{}", NULL, 0, "both", &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_resolve(store, "nothex", "{}", NULL, 0, NULL, &err), P2P_EINVAL);
    const char *bad[] = {"zz"};
    ASSERT_EQ(p2p_store_resolve(store, id3, "{}", bad, 1, NULL, &err), P2P_EINVAL);
    p2p_store_free(store);
    st_remove_dir(dir);
}

/* Creates a call of `function` with `args` as its canonical args. */
static void create_with(p2p_store *store, const char *function, const char *id, const char *args,
                        bool available) {
    p2p_store_new_call in = {
        .identifier = id, .function = function, .args = args, .available = available};
    ASSERT_OK(p2p_store_create(store, &in, NULL, NULL, NULL));
}

/* p2p_store_has_waiting: true exactly while a pushed call refers to the
 * upstream, whichever function the waiting call is of. */
static void test_has_waiting(void) {
    char dir[512];
    st_make_dir(dir, sizeof(dir), "store_has_waiting");
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "s.db", &opts);
    char up[P2P_STORE_ID_LEN + 1], other[P2P_STORE_ID_LEN + 1], down[P2P_STORE_ID_LEN + 1],
        queued[P2P_STORE_ID_LEN + 1], args[256], plain[256];
    st_hex(up, 0xca11, 1);
    st_hex(other, 0xca11, 2);
    st_hex(down, 0xca11, 3);
    st_hex(queued, 0xca11, 4);
    bool waiting = true;
    ASSERT_OK(p2p_store_has_waiting(store, up, &waiting, NULL));
    ASSERT_FALSE(waiting); /* an empty store */

    st_create(store, "p2prpc_f", 1, true);
    /* The identifier inside a string argument is not a reference. */
    snprintf(plain, sizeof(plain), "{\"s\":\"\\\"identifier\\\":\\\"%s\\\"\"}", up);
    create_with(store, "p2prpc_f", queued, plain, false);
    ASSERT_OK(p2p_store_has_waiting(store, up, &waiting, NULL));
    ASSERT_FALSE(waiting);

    snprintf(args, sizeof(args), "{\"x\":{\"ref\":{\"identifier\":\"%s\",\"output\":\"y\"}}}", up);
    create_with(store, "p2prpc_g", down, args, false);
    ASSERT_OK(p2p_store_has_waiting(store, up, &waiting, NULL));
    ASSERT_TRUE(waiting);
    ASSERT_OK(p2p_store_has_waiting(store, other, &waiting, NULL));
    ASSERT_FALSE(waiting);

    /* Settled: nothing waits any more. */
    ASSERT_OK(p2p_store_resolve(store, down, "{\"x\":1}", NULL, 0, NULL, NULL));
    ASSERT_OK(p2p_store_has_waiting(store, up, &waiting, NULL));
    ASSERT_FALSE(waiting);

    p2p_error err;
    ASSERT_EQ(p2p_store_has_waiting(store, "nothex", &waiting, &err), P2P_EINVAL);
    p2p_store_free(store);
    st_remove_dir(dir);
}

int main(void) {
    TEST_RUN(test_resolve);
    TEST_RUN(test_has_waiting);
    return 0;
}
