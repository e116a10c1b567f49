/* Helpers shared by the store's test programs (test_store*.c): a scratch
 * directory, a clock the tests drive, identifiers and hashes from numbers. */
#ifndef P2PRPC_STORE_TEST_UTIL_H
#define P2PRPC_STORE_TEST_UTIL_H

#include "fsutil.h"
#include "store.h"
#include "test.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Creates a fresh directory under $P2PRPC_TEST_TMP (or /tmp) into `out`. */
static inline void st_make_dir(char *out, size_t size, const char *tag) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    ASSERT_OK(p2p_fs_mkdirs(base, 0700, NULL));
    snprintf(out, size, "%s/%s.XXXXXX", base, tag);
    ASSERT_TRUE(mkdtemp(out) != NULL);
}

static inline void st_remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* The tests' clock, in ms; starts at an arbitrary fixed time. */
static atomic_llong st_now = 1700000000000LL;

static inline int64_t st_clock(void *ctx) {
    (void)ctx;
    return (int64_t)atomic_load(&st_now);
}

static inline void st_advance(int64_t ms) {
    atomic_fetch_add(&st_now, ms);
}

/* A 64-hex identifier (or blob hash) made from `tag` and `n`. */
static inline void st_hex(char out[P2P_STORE_ID_LEN + 1], unsigned tag, unsigned n) {
    snprintf(out, P2P_STORE_ID_LEN + 1, "%08x%056x", tag, n);
}

/* Options with the test clock, a 10 s lease and 3 attempts. */
static inline void st_options(p2p_store_options *opts, p2p_store_sync sync) {
    p2p_store_options_init(opts);
    opts->sync = sync;
    opts->clock = st_clock;
    opts->lease_ms = 10000;
    opts->max_attempts = 3;
}

static inline p2p_store *st_open(const char *dir, const char *name, const p2p_store_options *opts) {
    char *path = p2p_fs_join(dir, name);
    ASSERT_TRUE(path != NULL);
    p2p_store *store = NULL;
    p2p_error err;
    int rc = p2p_store_open(path, opts, &store, &err);
    if (rc != 0)
        TEST_FAIL_("cannot open %s: %s", path, err.msg);
    free(path);
    return store;
}

/* Creates call `n` of `function` with no blobs; `available` queues it. */
static inline void st_create(p2p_store *store, const char *function, unsigned n, bool available) {
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, n);
    p2p_store_new_call in = {
        .identifier = id, .function = function, .args = "{\"n\":1}", .available = available};
    p2p_error err;
    int rc = p2p_store_create(store, &in, NULL, NULL, &err);
    if (rc != 0)
        TEST_FAIL_("create %u: %s", n, err.msg);
}

#endif
