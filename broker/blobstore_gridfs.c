/* The GridFS backend of the blob store: blobs in the bucket "blobs" of the
 * MongoDB database that the brokers share, so that any of them serves any
 * blob.
 *
 * A blob is a GridFS file (blobs.files + blobs.chunks, as the GridFS
 * specification lays them out) whose filename is its hash and whose _id is
 * an ObjectId the driver draws. The files document is written after the
 * last chunk, so a blob is visible only once complete. Two brokers that
 * receive the same blob at once may both store it; then each uploader looks
 * at the copies and deletes its own unless it is the first (by uploadDate,
 * then _id, an order every broker agrees on). Reads take that first copy,
 * remove deletes every copy. A hash is never used as the _id, because a
 * GridFS upload that fails deletes the chunks of its _id, which would be
 * another broker's chunks.
 *
 * Uploads stream from the temp file the HTTP server wrote (and hashed) with
 * mongoc_gridfs_bucket_upload_from_stream; downloads read one chunk at a
 * time from blobs.chunks ({files_id, n}, the index GridFS creates), so that
 * memory stays one chunk per download and a Range starts at its chunk. */
#include "blobstore_internal.h"
#include "fsutil.h"
#include "log.h"
#include "store_mongo_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUCKET "blobs"
#define FILES_COLL BUCKET ".files"
#define CHUNKS_COLL BUCKET ".chunks"

typedef struct gridfs_store {
    p2p_blobstore base; /* first */
    p2p__mg_link link;
} gridfs_store;

static gridfs_store *gfs(p2p_blobstore *bs) {
    return (gridfs_store *)bs;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static mongoc_collection_t *coll_of(gridfs_store *g, mongoc_client_t *client, const char *name) {
    return mongoc_client_get_collection(client, g->link.db_name, name);
}

/* The first complete copy of blob `hash` (the one that stays when racing
 * uploads are settled): its files document into `doc` (initialised here;
 * the caller destroys it). P2P_ENOTFOUND when none. */
static int find_file(gridfs_store *g, mongoc_client_t *client, const char *hash, bson_t *doc,
                     p2p_error *err) {
    mongoc_collection_t *files = coll_of(g, client, FILES_COLL);
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(hash));
    bson_t *opts = BCON_NEW("sort", "{", "uploadDate", BCON_INT32(1), "_id", BCON_INT32(1), "}",
                            "limit", BCON_INT64(1));
    int rc = p2p__mg_find_one(files, filter, opts, "blob", hash, doc, err);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    return rc;
}

static int gfs_stat(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err) {
    gridfs_store *g = gfs(bs);
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    bson_t doc;
    int rc = find_file(g, client, hash, &doc, err);
    if (rc == 0)
        *size = (uint64_t)p2p__mg_int(&doc, "length");
    bson_destroy(&doc);
    mongoc_client_pool_push(g->link.pool, client);
    return rc;
}

static int gfs_touch(p2p_blobstore *bs, const char *hash, p2p_error *err) {
    gridfs_store *g = gfs(bs);
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    mongoc_collection_t *files = coll_of(g, client, FILES_COLL);
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(hash));
    bson_t *update = BCON_NEW("$set", "{", "metadata.touched_ms", BCON_INT64(now_ms()), "}");
    bson_t reply;
    bson_error_t e;
    int rc = 0;
    if (!mongoc_collection_update_many(files, filter, update, NULL, &reply, &e))
        rc = p2p__mg_error(&e, err, "cannot touch a blob");
    else if (p2p__mg_int(&reply, "matchedCount") == 0)
        rc = p2p_error_set(err, P2P_ENOTFOUND, "no blob %s", hash);
    bson_destroy(&reply);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    mongoc_client_pool_push(g->link.pool, client);
    return rc;
}

/* After an upload: deletes the copy `id` unless it is the first of blob
 * `hash` (another broker stored the same blob at the same time). `*kept`
 * tells whether it stays. */
static int settle_copies(gridfs_store *g, mongoc_client_t *client, mongoc_gridfs_bucket_t *bucket,
                         const char *hash, const bson_value_t *id, bool *kept, p2p_error *err) {
    bson_t doc;
    bson_iter_t it;
    bson_error_t e;
    int rc = find_file(g, client, hash, &doc, err);
    *kept = true;
    if (rc == 0 && bson_iter_init_find(&it, &doc, "_id") && BSON_ITER_HOLDS_OID(&it) &&
        id->value_type == BSON_TYPE_OID && !bson_oid_equal(bson_iter_oid(&it), &id->value.v_oid)) {
        *kept = false;
        if (!mongoc_gridfs_bucket_delete_by_id(bucket, id, &e))
            P2P_DEBUG("blobs: cannot delete a second copy of %s: %s", hash, e.message);
    }
    bson_destroy(&doc);
    return rc;
}

/* Streams the file at `path` into the bucket as blob `hash`; `*created` is
 * false when another broker's copy came first. */
static int upload(gridfs_store *g, mongoc_client_t *client, const char *hash, const char *path,
                  bool *created, p2p_error *err) {
    bson_error_t e;
    mongoc_database_t *db = mongoc_client_get_database(client, g->link.db_name);
    bson_t *opts = BCON_NEW("bucketName", BCON_UTF8(BUCKET));
    mongoc_gridfs_bucket_t *bucket = mongoc_gridfs_bucket_new(db, opts, NULL, &e);
    mongoc_stream_t *source = NULL;
    int rc = bucket == NULL ? p2p__mg_error(&e, err, "cannot open the blob bucket") : 0;
    if (rc == 0 && (source = mongoc_stream_file_new_for_path(path, O_RDONLY, 0)) == NULL)
        rc = p2p_error_errno(err, P2P_EIO, errno, "cannot open the upload %s", path);
    if (rc == 0) {
        bson_t *up = BCON_NEW("metadata", "{", "touched_ms", BCON_INT64(now_ms()), "}");
        bson_value_t id;
        if (!mongoc_gridfs_bucket_upload_from_stream(bucket, hash, source, up, &id, &e)) {
            rc = p2p__mg_error(&e, err, "cannot store a blob");
        } else {
            rc = settle_copies(g, client, bucket, hash, &id, created, err);
            bson_value_destroy(&id);
        }
        bson_destroy(up);
    }
    if (source != NULL)
        mongoc_stream_destroy(source);
    mongoc_gridfs_bucket_destroy(bucket);
    bson_destroy(opts);
    mongoc_database_destroy(db);
    return rc;
}

static int gfs_commit(p2p_blobstore *bs, const char *hash, const char *tmp_path, bool *created,
                      p2p_error *err) {
    gridfs_store *g = gfs(bs);
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    bson_t doc;
    int rc = find_file(g, client, hash, &doc, err);
    bson_destroy(&doc);
    *created = rc == P2P_ENOTFOUND;
    if (rc == P2P_ENOTFOUND)
        rc = upload(g, client, hash, tmp_path, created, err);
    mongoc_client_pool_push(g->link.pool, client);
    if (rc == 0 && !*created && gfs_touch(bs, hash, NULL) != 0)
        P2P_DEBUG("blobs: cannot touch %s", hash);
    unlink(tmp_path);
    return rc;
}

/* Deletes every copy of blob `hash`; `*size` gets the size of one. */
static int gfs_remove(p2p_blobstore *bs, const char *hash, uint64_t *size, p2p_error *err) {
    gridfs_store *g = gfs(bs);
    bson_error_t e;
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    mongoc_database_t *db = mongoc_client_get_database(client, g->link.db_name);
    bson_t *bopts = BCON_NEW("bucketName", BCON_UTF8(BUCKET));
    mongoc_gridfs_bucket_t *bucket = mongoc_gridfs_bucket_new(db, bopts, NULL, &e);
    int rc = bucket == NULL ? p2p__mg_error(&e, err, "cannot open the blob bucket") : 0;
    bool any = false;
    for (int round = 0; rc == 0 && round < 16; round++) {
        bson_t doc;
        rc = find_file(g, client, hash, &doc, err);
        bson_iter_t id;
        if (rc == 0 && bson_iter_init_find(&id, &doc, "_id")) {
            if (!any && size != NULL)
                *size = (uint64_t)p2p__mg_int(&doc, "length");
            any = true;
            if (!mongoc_gridfs_bucket_delete_by_id(bucket, bson_iter_value(&id), &e) &&
                !(e.domain == MONGOC_ERROR_GRIDFS &&
                  e.code == MONGOC_ERROR_GRIDFS_BUCKET_FILE_NOT_FOUND))
                rc = p2p__mg_error(&e, err, "cannot remove a blob");
        }
        bson_destroy(&doc);
    }
    if (rc == P2P_ENOTFOUND && any)
        rc = 0;
    mongoc_gridfs_bucket_destroy(bucket);
    bson_destroy(bopts);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(g->link.pool, client);
    return rc;
}

static void gfs_totals(p2p_blobstore *bs, uint64_t *count, uint64_t *bytes) {
    gridfs_store *g = gfs(bs);
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    mongoc_collection_t *files = coll_of(g, client, FILES_COLL);
    /* Distinct blobs: copies stored by racing uploads count once. */
    bson_t *pipeline = BCON_NEW(
        "pipeline", "[", "{", "$group", "{", "_id", BCON_UTF8("$filename"), "length", "{", "$first",
        BCON_UTF8("$length"), "}", "}", "}", "{", "$group", "{", "_id", BCON_NULL, "n", "{", "$sum",
        BCON_INT32(1), "}", "bytes", "{", "$sum", BCON_UTF8("$length"), "}", "}", "}", "]");
    mongoc_cursor_t *cur =
        mongoc_collection_aggregate(files, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    const bson_t *doc;
    if (mongoc_cursor_next(cur, &doc)) {
        *count = (uint64_t)p2p__mg_int(doc, "n");
        *bytes = (uint64_t)p2p__mg_int(doc, "bytes");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(pipeline);
    mongoc_collection_destroy(files);
    mongoc_client_pool_push(g->link.pool, client);
}

static int gfs_list_old(p2p_blobstore *bs, unsigned shard, int64_t cutoff_s,
                        p2p_blobstore_visit_fn visit, void *ctx, p2p_error *err) {
    gridfs_store *g = gfs(bs);
    char low[3], high[3];
    snprintf(low, sizeof(low), "%02x", shard);
    /* The first name past the shard: hex digits sort below the next char. */
    high[0] = low[0];
    high[1] = (char)(low[1] + 1);
    high[2] = '\0';
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    mongoc_collection_t *files = coll_of(g, client, FILES_COLL);
    bson_t *filter = BCON_NEW("filename", "{", "$gte", BCON_UTF8(low), "$lt", BCON_UTF8(high), "}",
                              "metadata.touched_ms", "{", "$lte", BCON_INT64(cutoff_s * 1000), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(files, filter, NULL, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        const char *name = p2p__mg_str(doc, "filename");
        if (p2p_hash_hex_valid(name))
            rc = visit(ctx, name);
    }
    if (rc == 0 && mongoc_cursor_error(cur, &e))
        rc = p2p__mg_error(&e, err, "cannot list old blobs");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(files);
    mongoc_client_pool_push(g->link.pool, client);
    return rc;
}

/* --- readers: one chunk at a time --- */

typedef struct gfs_reader {
    p2p_blob_reader base;
    gridfs_store *g;
    bson_value_t id;    /* the file's _id */
    int64_t chunk_size; /* bytes per chunk, from the files document */
    int64_t chunk_n;    /* the chunk in `data`, or -1 */
    uint8_t *data;      /* chunk_size bytes */
    uint32_t data_len;
} gfs_reader;

/* Loads chunk `n` of the file into the reader. */
static int load_chunk(gfs_reader *r, int64_t n, p2p_error *err) {
    mongoc_client_t *client = mongoc_client_pool_pop(r->g->link.pool);
    mongoc_collection_t *chunks = coll_of(r->g, client, CHUNKS_COLL);
    bson_t *filter = bson_new();
    BSON_APPEND_VALUE(filter, "files_id", &r->id);
    BSON_APPEND_INT32(filter, "n", (int32_t)n);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    bson_iter_t it;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "data") &&
        BSON_ITER_HOLDS_BINARY(&it)) {
        const uint8_t *bytes;
        uint32_t len;
        bson_subtype_t sub;
        bson_iter_binary(&it, &sub, &len, &bytes);
        if ((int64_t)len > r->chunk_size)
            len = (uint32_t)r->chunk_size;
        memcpy(r->data, bytes, len);
        r->data_len = len;
        r->chunk_n = n;
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = p2p__mg_error(&e, err, "cannot read a blob");
    } else {
        rc = p2p_error_set(err, P2P_ESTORE, "a chunk of a blob is missing (removed meanwhile?)");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(chunks);
    mongoc_client_pool_push(r->g->link.pool, client);
    return rc;
}

static int64_t gfs_pread(p2p_blob_reader *base, void *buf, size_t n, uint64_t offset,
                         p2p_error *err) {
    gfs_reader *r = (gfs_reader *)base;
    int64_t chunk = (int64_t)(offset / (uint64_t)r->chunk_size);
    uint64_t within = offset % (uint64_t)r->chunk_size;
    if (chunk != r->chunk_n) {
        int rc = load_chunk(r, chunk, err);
        if (rc != 0)
            return rc;
    }
    if (within >= r->data_len)
        return p2p_error_set(err, P2P_ESTORE, "a chunk of a blob is short");
    size_t take = r->data_len - (size_t)within;
    take = take < n ? take : n;
    memcpy(buf, r->data + within, take);
    return (int64_t)take;
}

static int gfs_take_fd(p2p_blob_reader *base) {
    (void)base;
    return -1;
}

static void gfs_reader_free(p2p_blob_reader *base) {
    gfs_reader *r = (gfs_reader *)base;
    bson_value_destroy(&r->id);
    free(r->data);
    free(r);
}

static const p2p__blob_reader_ops gfs_reader_ops = {
    .pread = gfs_pread,
    .take_fd = gfs_take_fd,
    .free = gfs_reader_free,
};

static int gfs_read_open(p2p_blobstore *bs, const char *hash, p2p_blob_reader **out, uint64_t *size,
                         p2p_error *err) {
    gridfs_store *g = gfs(bs);
    mongoc_client_t *client = mongoc_client_pool_pop(g->link.pool);
    bson_t doc;
    bson_iter_t id;
    gfs_reader *r = NULL;
    int rc = find_file(g, client, hash, &doc, err);
    mongoc_client_pool_push(g->link.pool, client);
    int64_t chunk = rc == 0 ? p2p__mg_int(&doc, "chunkSize") : 0;
    if (rc == 0 && (chunk <= 0 || chunk > (16 << 20) || !bson_iter_init_find(&id, &doc, "_id")))
        rc = p2p_error_set(err, P2P_ESTORE, "blob %s has a malformed GridFS entry", hash);
    if (rc == 0 && ((r = calloc(1, sizeof(*r))) == NULL || (r->data = malloc(chunk)) == NULL))
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory opening a blob");
    if (rc == 0) {
        r->base.ops = &gfs_reader_ops;
        r->base.size = *size = (uint64_t)p2p__mg_int(&doc, "length");
        r->g = g;
        r->chunk_size = chunk;
        r->chunk_n = -1;
        bson_value_copy(bson_iter_value(&id), &r->id);
        *out = &r->base;
    } else if (r != NULL) {
        free(r->data);
        free(r);
    }
    bson_destroy(&doc);
    return rc;
}

/* --- opening --- */

/* Removes every file left in the tmp directory: uploads a previous run never
 * finished. */
static void clean_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            (void)unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

static void gfs_free(p2p_blobstore *bs) {
    gridfs_store *g = gfs(bs);
    p2p__mg_link_close(&g->link);
    free(g->base.tmp_dir);
    free(g);
}

static const p2p__blob_ops gridfs_ops = {
    .name = "gridfs",
    .free = gfs_free,
    .stat = gfs_stat,
    .read_open = gfs_read_open,
    .touch = gfs_touch,
    .commit = gfs_commit,
    .remove = gfs_remove,
    .totals = gfs_totals,
    .list_old = gfs_list_old,
};

int p2p_blobstore_open_gridfs(const char *uri, const char *tmp_dir, bool durable,
                              p2p_blobstore **out, p2p_error *err) {
    if (tmp_dir == NULL || tmp_dir[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "the GridFS blob store needs a temp directory");
    gridfs_store *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory opening the blob store");
    g->base.ops = &gridfs_ops;
    g->base.tmp_dir = strdup(tmp_dir);
    int rc = g->base.tmp_dir != NULL ? p2p_fs_mkdirs(tmp_dir, 0700, err)
                                     : p2p_error_set(err, P2P_ENOMEM, NULL);
    if (rc == 0)
        rc = p2p__mg_link_open(uri, durable ? P2P_STORE_SYNC_FULL : P2P_STORE_SYNC_NORMAL, &g->link,
                               err);
    if (rc != 0) {
        gfs_free(&g->base);
        return rc;
    }
    clean_tmp(tmp_dir);
    *out = &g->base;
    return 0;
}
