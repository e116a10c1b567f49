/* The broker's blob routes in-process: upload, HEAD, Range, the bad uploads
 * of the spec (hash mismatch, malformed hash, over the size limit with and
 * without Content-Length), the rule that a referenced blob stays, and expiry
 * of calls and unused blobs with a driven clock. A conformance test
 * (store_test_util.h): the same routes over SQLite and the disk, and
 * (P2PRPC_TEST_STORE=mongodb) over MongoDB and GridFS. */
#include "broker_test_util.h"

#include <stdatomic.h>

/* ---- the driven clock of the expiry test ---- */

static _Atomic int64_t clock_offset_ms;

static int64_t test_clock(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&clock_offset_ms);
}

static void test_blobs(void) {
    static char data[300000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + i / 1000);
    char hash[P2P_HASH_HEX_LEN + 1], path[200];
    ASSERT_EQ(put_blob(data, sizeof(data), hash), 201);
    ASSERT_EQ(put_blob(data, sizeof(data), hash), 200);
    blob_path(hash, path, sizeof(path));
    http_resp r;
    /* Even when the blob exists, a body that is not its content is refused. */
    request(&main_h, "PUT", path, data, 10, &r);
    assert_json_error(&r, 422, "hash_mismatch");
    http_resp_cleanup(&r);

    /* HEAD: the size, no body. */
    request(&main_h, "HEAD", path, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(http_header(&r, "Content-Length"), "300000");
    ASSERT_EQ(r.len, 0);
    http_resp_cleanup(&r);
    /* GET with a Range: 206 and exactly those bytes. */
    char url[400];
    snprintf(url, sizeof(url), "%s%s", main_h.base, path);
    http_req q = {.url = url, .headers = {"Range: bytes=1000-1999"}};
    signed_headers sh;
    sign_into(&q, &sh, main_h.base);
    http_do(&q, &r);
    ASSERT_EQ(r.status, 206);
    ASSERT_EQ(r.len, 1000);
    ASSERT_MEM_EQ(r.body, data + 1000, 1000);
    ASSERT_STR_EQ(http_header(&r, "Content-Range"), "bytes 1000-1999/300000");
    http_resp_cleanup(&r);
    request(&main_h, "GET", path, NULL, 0, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.len, sizeof(data));
    ASSERT_MEM_EQ(r.body, data, sizeof(data));
    http_resp_cleanup(&r);

    /* Unknown blob: 404 on HEAD, GET and DELETE. */
    char absent[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex("absent", 6, absent, NULL));
    blob_path(absent, path, sizeof(path));
    request(&main_h, "HEAD", path, NULL, 0, &r);
    ASSERT_EQ(r.status, 404);
    http_resp_cleanup(&r);
    expect_error("GET", path, NULL, 404, "not_found", absent);
    expect_error("DELETE", path, NULL, 404, "not_found", absent);
}

static void test_blob_bad_uploads(void) {
    char *before = snapshot();
    char hash[P2P_HASH_HEX_LEN + 1], path[200];
    /* The body does not hash to the address: 422, nothing stored. */
    ASSERT_OK(p2p_hash_bytes_hex("the real content", 16, hash, NULL));
    blob_path(hash, path, sizeof(path));
    expect_error("PUT", path, NULL, 422, "hash_mismatch", hash);
    http_resp r;
    request(&main_h, "PUT", path, "other content", 13, &r);
    assert_json_error(&r, 422, "hash_mismatch");
    http_resp_cleanup(&r);
    /* A malformed hash: 400 before the body is read. */
    request(&main_h, "PUT", "/api/v1/blobs/ABCDEF", "x", 1, &r);
    assert_json_error(&r, 400, "invalid");
    http_resp_cleanup(&r);
    request(&main_h, "GET", "/api/v1/blobs/..%2F..%2Fetc%2Fpasswd", NULL, 0, &r);
    assert_json_error(&r, 400, "invalid");
    http_resp_cleanup(&r);
    /* Over --max-blob-size (512 KiB here), announced: 413 before reading. */
    static char big[800000];
    memset(big, 'b', sizeof(big));
    ASSERT_OK(p2p_hash_bytes_hex(big, sizeof(big), hash, NULL));
    blob_path(hash, path, sizeof(path));
    request(&main_h, "PUT", path, big, sizeof(big), &r);
    assert_json_error(&r, 413, "too_large");
    ASSERT_LT(r.uploaded, (curl_off_t)sizeof(big));
    http_resp_cleanup(&r);
    /* The same without Content-Length (chunked): 413 while streaming. */
    char url[400];
    snprintf(url, sizeof(url), "%s%s", main_h.base, path);
    http_req q = {
        .method = "PUT", .url = url, .body = big, .body_len = sizeof(big), .chunked = true};
    signed_headers sh;
    sign_into(&q, &sh, main_h.base);
    http_do(&q, &r);
    assert_json_error(&r, 413, "too_large");
    http_resp_cleanup(&r);
    /* Nothing was left in the upload directory. */
    char tmp[800];
    snprintf(tmp, sizeof(tmp), "%s/blobs/tmp", main_h.data);
    ASSERT_TRUE(wait_size(get_dir_entries, tmp, 0, 5000));
    assert_unchanged(before);
    free(before);
}

static void test_blob_references(void) {
    drain("p2prpc_cat");
    char id[P2P_HASH_HEX_LEN + 1], in_hash[P2P_HASH_HEX_LEN + 1], path[200], body[600];
    create_cat("input of cat", id, in_hash);
    /* Referenced by a call: DELETE refuses. */
    blob_path(in_hash, path, sizeof(path));
    expect_error("DELETE", path, NULL, 409, "conflict", "referenced");
    /* The worker's output file must be uploaded before the outputs. */
    json_t *c = claim("p2prpc_cat", 0);
    ASSERT_TRUE(c != NULL);
    char out_hash[P2P_HASH_HEX_LEN + 1], fields[300];
    ASSERT_OK(p2p_hash_bytes_hex("output of cat", 13, out_hash, NULL));
    snprintf(fields, sizeof(fields), "\"outputs\":{\"out\":{\"hash\":\"%s\",\"size\":13}}",
             out_hash);
    json_t *j = NULL;
    ASSERT_EQ(worker_push("p2prpc_cat", c, fields, &j), 409);
    ASSERT_STR_CONTAINS(str(json_object_get(j, "error"), "message"), "upload it first");
    json_decref(j);
    ASSERT_EQ(put_blob("output of cat", 13, out_hash), 201);
    ASSERT_EQ(worker_push("p2prpc_cat", c, fields, NULL), 200);
    json_decref(c);
    /* The input is shared with a second call: deleting the first keeps it. */
    char id2[P2P_HASH_HEX_LEN + 1], args[300];
    snprintf(args, sizeof(args), "{\"f\":{\"hash\":\"%s\",\"size\":12},\"s\":\"y\"}", in_hash);
    ident_of(cat_schema, args, id2);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_cat/push_update",
                  create_body(cat_schema, id2, args, false), NULL),
              201);
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_cat/delete", body, &j), 200);
    ASSERT_TRUE(json_is_true(json_object_get(j, "deleted")));
    ASSERT_EQ(num(j, "blobs_removed"), 1); /* the output only */
    json_decref(j);
    blob_path(out_hash, path, sizeof(path));
    expect_error("GET", path, NULL, 404, "not_found", NULL);
    blob_path(in_hash, path, sizeof(path));
    expect_error("DELETE", path, NULL, 409, "conflict", NULL);
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id2);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_cat/delete", body, &j), 200);
    ASSERT_EQ(num(j, "blobs_removed"), 1);
    json_decref(j);
    expect_error("DELETE", path, NULL, 404, "not_found", NULL);
    /* An unreferenced blob goes with DELETE: 204. */
    char hash[P2P_HASH_HEX_LEN + 1];
    ASSERT_EQ(put_blob("lonely", 6, hash), 201);
    blob_path(hash, path, sizeof(path));
    http_resp r;
    request(&main_h, "DELETE", path, NULL, 0, &r);
    ASSERT_EQ(r.status, 204);
    http_resp_cleanup(&r);
}

/* Makes blob `hash` of broker `h` (started as `name`) look last used
 * `seconds` ago: its file's mtime on disk, metadata.touched_ms in GridFS. */
/* The blobs.files collection of the database of broker `name` (GridFS). */
static mongoc_collection_t *gridfs_files(const char *name, mongoc_client_t **client) {
    char uri[1024];
    st_location(root, name, uri, sizeof(uri));
    mongoc_uri_t *u = mongoc_uri_new(uri);
    ASSERT_TRUE(u != NULL);
    *client = mongoc_client_new_from_uri(u);
    mongoc_collection_t *files =
        mongoc_client_get_collection(*client, mongoc_uri_get_database(u), "blobs.files");
    mongoc_uri_destroy(u);
    return files;
}

/* True when blob `hash` of broker `h` (started as `name`) is stored: its
 * file, or its GridFS files document. Not through the routes: HEAD would
 * count as a use. */
static bool blob_exists(const harness *h, const char *name, const char *hash) {
    if (!st_mongo()) {
        char file[900];
        snprintf(file, sizeof(file), "%s/blobs/%.2s/%s", h->data, hash, hash);
        return access(file, F_OK) == 0;
    }
    mongoc_client_t *client = NULL;
    mongoc_collection_t *files = gridfs_files(name, &client);
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(hash));
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(files, filter, NULL, NULL, NULL, &error);
    if (n < 0)
        TEST_FAIL_("counting blob %s: %s", hash, error.message);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    mongoc_client_destroy(client);
    return n > 0;
}

static void age_blob(const harness *h, const char *name, const char *hash, long seconds) {
    int64_t then = (int64_t)time(NULL) - seconds;
    if (!st_mongo()) {
        char file[900];
        snprintf(file, sizeof(file), "%s/blobs/%.2s/%s", h->data, hash, hash);
        struct timespec old[2] = {{(time_t)then, 0}, {(time_t)then, 0}};
        ASSERT_EQ(utimensat(AT_FDCWD, file, old, 0), 0);
        return;
    }
    mongoc_client_t *client = NULL;
    mongoc_collection_t *files = gridfs_files(name, &client);
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(hash));
    bson_t *update = BCON_NEW("$set", "{", "metadata.touched_ms", BCON_INT64(then * 1000), "}");
    bson_t reply;
    bson_error_t error;
    if (!mongoc_collection_update_many(files, filter, update, NULL, &reply, &error))
        TEST_FAIL_("ageing blob %s: %s", hash, error.message);
    bson_iter_t it;
    ASSERT_TRUE(bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) > 0);
    bson_destroy(&reply);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    mongoc_client_destroy(client);
}

static void test_expiry(void) {
    harness h;
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    o.expire_ms = 3600 * 1000;
    o.maintenance_interval_ms = 3600 * 1000; /* passes run by hand below */
    o.clock = test_clock;
    start_broker(&h, "expiry", &o);
    harness saved = main_h;
    main_h = h; /* the helpers talk to main_h */
    char id[P2P_HASH_HEX_LEN + 1], hash[P2P_HASH_HEX_LEN + 1], lonely[P2P_HASH_HEX_LEN + 1];
    create_cat("expiring input", id, hash);
    ASSERT_EQ(put_blob("never used", 10, lonely), 201);
    json_t *j = pull("p2prpc_cat", id, NULL);
    json_decref(j);
    p2p_error err = {0};
    ASSERT_OK(p2p_broker_maintain(h.b, &err));
    j = pull("p2prpc_cat", id, NULL); /* not yet */
    json_decref(j);
    /* Two hours later the call and its blob go. */
    atomic_store(&clock_offset_ms, 2 * 3600 * 1000);
    ASSERT_OK(p2p_broker_maintain(h.b, &err));
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/p2prpc_cat/pull_update?identifier=%s", id);
    expect_error("GET", path, NULL, 404, "not_found", NULL);
    blob_path(hash, path, sizeof(path));
    expect_error("GET", path, NULL, 404, "not_found", NULL);
    /* The blob nobody used goes once it was last used longer ago than the
     * expiry (the sweep visits one shard per pass). */
    age_blob(&h, "expiry", lonely, 7200);
    ASSERT_TRUE(blob_exists(&h, "expiry", lonely));
    for (int i = 0; i < 256 && blob_exists(&h, "expiry", lonely); i++)
        ASSERT_OK(p2p_broker_maintain(h.b, &err));
    ASSERT_FALSE(blob_exists(&h, "expiry", lonely));
    http_resp r;
    request(&h, "GET", "/metrics", NULL, 0, &r);
    ASSERT_STR_CONTAINS(r.body, "p2prpc_calls_expired_total 1\n");
    ASSERT_STR_CONTAINS(r.body, "p2prpc_blobs_removed_total 2\n");
    ASSERT_STR_CONTAINS(r.body, "p2prpc_blobs 0\n");
    http_resp_cleanup(&r);
    main_h = saved;
    atomic_store(&clock_offset_ms, 0);
    p2p_broker_free(h.b);
}

static long checkpoint_put(const json_t *c, const char *name, const char *hash, json_t **out) {
    char body[600];
    snprintf(body, sizeof(body),
             "{\"identifier\":\"%s\",\"lease_token\":\"%s\",\"name\":\"%s\",\"hash\":\"%s\"}",
             str(c, "identifier"), str(c, "lease_token"), name, hash);
    return api("POST", "/api/v1/p2prpc_cat/checkpoint", body, out);
}

static void test_checkpoints(void) {
    drain("p2prpc_cat");
    char id[P2P_HASH_HEX_LEN + 1], in_hash[P2P_HASH_HEX_LEN + 1], path[300];
    create_cat("checkpointed input", id, in_hash);
    json_t *c = claim("p2prpc_cat", 0);
    ASSERT_TRUE(c != NULL);
    char h1[P2P_HASH_HEX_LEN + 1], h2[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex("state one", 9, h1, NULL));
    /* A malformed name is refused before the blob is even looked up. */
    ASSERT_EQ(checkpoint_put(c, "../state", h1, NULL), 400);
    /* The state blob must be uploaded first. */
    json_t *j = NULL;
    ASSERT_EQ(checkpoint_put(c, "epoch", h1, &j), 409);
    ASSERT_STR_CONTAINS(str(json_object_get(j, "error"), "message"), "upload it first");
    json_decref(j);
    ASSERT_EQ(put_blob("state one", 9, h1), 201);
    ASSERT_EQ(checkpoint_put(c, "epoch", h1, &j), 200);
    ASSERT_EQ(num(j, "size"), 9);
    json_decref(j);
    snprintf(path, sizeof(path), "/api/v1/p2prpc_cat/checkpoint?identifier=%s&name=epoch", id);
    ASSERT_EQ(api("GET", path, NULL, &j), 200);
    ASSERT_STR_EQ(str(j, "hash"), h1);
    json_decref(j);
    /* A new state replaces the old one, whose blob nothing references now. */
    ASSERT_EQ(put_blob("state two!", 10, h2), 201);
    ASSERT_EQ(checkpoint_put(c, "epoch", h2, NULL), 200);
    ASSERT_EQ(api("GET", path, NULL, &j), 200);
    ASSERT_STR_EQ(str(j, "hash"), h2);
    ASSERT_EQ(num(j, "size"), 10);
    json_decref(j);
    char blob[200];
    blob_path(h1, blob, sizeof(blob));
    expect_error("GET", blob, NULL, 404, "not_found", NULL);
    /* Errors: bad name, unknown name, stale lease, malformed hash. */
    ASSERT_EQ(checkpoint_put(c, "a/b", h2, NULL), 400);
    ASSERT_EQ(checkpoint_put(c, "epoch", "ABC", NULL), 400);
    snprintf(path, sizeof(path), "/api/v1/p2prpc_cat/checkpoint?identifier=%s&name=other", id);
    expect_error("GET", path, NULL, 404, "not_found", NULL);
    expect_error("GET", "/api/v1/p2prpc_cat/checkpoint?identifier=x&name=epoch", NULL, 400,
                 "invalid", NULL);
    json_t *stale = json_pack("{s:s, s:s}", "identifier", id, "lease_token",
                              "00000000000000000000000000000000");
    ASSERT_EQ(checkpoint_put(stale, "epoch", h2, NULL), 409);
    json_decref(stale);
    /* Referenced by the checkpoint: the blob stays until the call goes. */
    blob_path(h2, blob, sizeof(blob));
    expect_error("DELETE", blob, NULL, 409, "conflict", "referenced");
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    ASSERT_EQ(api("POST", "/api/v1/p2prpc_cat/delete", body, &j), 200);
    ASSERT_EQ(num(j, "blobs_removed"), 2); /* the input and the checkpoint */
    json_decref(j);
    json_decref(c);
}

int main(void) {
    p2p_broker_options o;
    p2p_broker_options_init(&o);
    o.max_blob_size = 512 * 1024;
    broker_test_setup("broker_blobs", &o);
    TEST_RUN(test_blobs);
    TEST_RUN(test_blob_bad_uploads);
    TEST_RUN(test_blob_references);
    TEST_RUN(test_checkpoints);
    TEST_RUN(test_expiry);
    return broker_test_teardown();
}
