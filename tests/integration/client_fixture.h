/* What the client's integration tests share: real brokers and workers
 * (broker_fixture.h, worker_fixture.h: the broker serves the worker test
 * app's functions), a client library handle built for them
 * (client/client.h), typed argument lists for the test app's functions, and
 * the evidence the tests check: broker metrics, raw pull_update/HEAD answers,
 * files on disk, the rows of the client's cache database.
 *
 * Every helper asserts (test.h style) unless it returns an error code. Every
 * wait is bounded. */
#ifndef P2PRPC_TEST_CLIENT_FIXTURE_H
#define P2PRPC_TEST_CLIENT_FIXTURE_H

#include "broker_fixture.h"
#include "client.h"
#include "harness.h"
#include "test.h"
#include "value.h"
#include "worker_fixture.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A generous bound for one call through a loaded machine. */
#define CF_CALL_TIMEOUT_MS 120000

/* ---- brokers ---- */

/* wf_broker_init (the broker serves the test app's functions) whose secret
 * is `secret_of`'s (NULL = its own): several brokers one client and one
 * worker can talk to with a single secret file. */
void cf_broker_init(broker *b, const char *name, const broker_config *cfg, const broker *secret_of);

/* A fake broker on 127.0.0.1:0 for failover tests: answers GET /health
 * with `health_status` ({"status":"ok",...} when 200) and every other request
 * with `other_status` and a JSON error body, one request per connection; or,
 * when `silent`, reads requests and never answers (until stopped). Counts
 * the requests it got. */
typedef struct cf_fake cf_fake;
cf_fake *cf_fake_start(int health_status, int other_status, bool silent);
const char *cf_fake_url(const cf_fake *f);
int cf_fake_requests(cf_fake *f);
void cf_fake_stop(cf_fake *f);

/* ---- clients ---- */

/* Options for a client of `n` brokers `urls` (borrowed until the client is
 * made), signed with the secret file `secret_path` (NULL = unsigned), whose
 * cache is `cache_path`; short connect timeouts so that failover tests do
 * not wait on the defaults. */
void cf_options(p2p_client_options *o, const char *const *urls, size_t n, const char *secret_path,
                const char *cache_path);

/* p2p_client_new that asserts. */
p2p_client *cf_client(const p2p_client_options *o);

/* A client of broker `b` alone (its URL and secret) with cache `cache_path`. */
p2p_client *cf_client_for(const broker *b, const char *cache_path);

/* `DIR/NAME` into `out` (HARNESS_PATH_MAX bytes). */
void cf_path(char out[HARNESS_PATH_MAX], const char *dir, const char *name);

/* Asserts that the future's broker is `url`, allowing the one trailing '/'
 * of the normalised form (p2p_discovery_normalize). */
void cf_expect_broker_(const p2p_future *f, const char *url, const char *file, int line);
#define CF_EXPECT_BROKER(f, url) cf_expect_broker_((f), (url), __FILE__, __LINE__)

/* ---- arguments of the test app's functions (values owned by the caller:
 * p2p_value_list_cleanup) ---- */

void cf_args_add(p2p_value v[2], int64_t a, int64_t b);
void cf_args_slow(p2p_value v[2], double seconds, int64_t steps);
/* p2prpc_copy(input = the file at `path`, hash left empty, xor). */
void cf_args_copy(p2p_value v[2], const char *path, int64_t xor_byte);
void cf_args_int(p2p_value v[1], int64_t x);

/* ---- calls ---- */

/* p2p_client_submit without refs that asserts success. */
p2p_future *cf_submit(p2p_client *c, wf_fn f, const p2p_value *args, const p2p_call_options *co);

/* p2p_future_get that asserts success and `n` outputs. */
const p2p_value *cf_get(p2p_future *f, size_t n);

/* Asserts `rc` == `want` and, when `substr` is not NULL, that the error's
 * message contains it; prints the message. */
void cf_expect_error_(int rc, const p2p_error *err, int want, const char *substr, const char *file,
                      int line);
#define CF_EXPECT_ERROR(rc, err, want, substr)                                                     \
    cf_expect_error_((rc), (err), (want), (substr), __FILE__, __LINE__)

/* ---- evidence ---- */

/* The value of the metric `name` (no labels) of broker `b`; 0 when absent. */
double cf_metric(broker *b, const char *name);

/* p2prpc_calls{function=F} per status (pushed..terminated), as fx_counts. */
void cf_calls(broker *b, wf_fn f, long long counts[6]);

/* The sum of the six counts of cf_calls. */
long long cf_calls_total(broker *b, wf_fn f);

/* pull_update?identifier=ID on the broker now: the HTTP status. */
long cf_pull_status(broker *b, wf_fn f, const char *id);

/* HEAD /api/v1/blobs/HASH: the HTTP status. */
long cf_blob_status(broker *b, const char *hash);

/* The output files of the cache `cache_path` (files/ recursively, tmp/
 * included: nothing may stay there). */
long cf_cache_files(const char *cache_path);

/* How many cells of the cache database `cache_path`/cache.db, over every
 * table, contain `text` (an identifier, a hash). Independent of the core's
 * table layout on purpose. */
long cf_cache_db_mentions(const char *cache_path, const char *text);

/* ---- files ---- */

/* Writes `size` pseudo-random bytes made from `seed` to `path`. */
void cf_write_random(const char *path, size_t size, unsigned seed);

/* Asserts the file `got` holds the bytes of `orig` each XORed with `x`. */
void cf_expect_xor_of(const char *got, const char *orig, unsigned char x);

/* The size of the file at `path`, -1 when missing. */
long long cf_file_size(const char *path);

/* Sets the file's mtime `seconds_ago` seconds into the past (so that the
 * file-hash cache may keep it: see P2P_FILECACHE_RACY_SECONDS). */
void cf_age_file(const char *path, int seconds_ago);

#endif
