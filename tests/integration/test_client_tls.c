/* The client's TLS options against a real HTTPS broker (--tls-cert,
 * --tls-key; a self-signed certificate for 127.0.0.1 made here) and a
 * worker that trusts it (--ca-file):
 * - ca_file = the certificate: a call goes through and comes back;
 * - no CA option: the system's CAs do not vouch for it, so the broker is
 *   unreachable (P2P_EUNAVAIL naming it), nothing is created;
 * - ca_path = a directory holding the certificate under its hashed name;
 * - insecure: no verification, the call goes through. */
#include "client_fixture.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char DIR_[HARNESS_PATH_MAX];

static void add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    ASSERT_TRUE(ext != NULL);
    ASSERT_EQ(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A self-signed P-256 CA certificate for IP 127.0.0.1, valid one hour,
 * written to `cert_path` and its key to `key_path` (PEM); the subject hash
 * (for a ca_path directory name) into `hash_out`. */
static void make_cert(const char *cert_path, const char *key_path, unsigned long *hash_out) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASSERT_TRUE(key != NULL && x != NULL);
    ASSERT_EQ(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    ASSERT_EQ(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"p2prpc test", -1,
                               -1, 0);
    ASSERT_EQ(X509_set_issuer_name(x, name), 1);
    add_ext(x, NID_subject_alt_name, "IP:127.0.0.1");
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
    FILE *f = fopen(cert_path, "w");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(PEM_write_X509(f, x), 1);
    ASSERT_OK(fclose(f));
    f = fopen(key_path, "w");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    ASSERT_OK(fclose(f));
    *hash_out = X509_subject_name_hash(x);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* p2prpc_add(a, b) through a client of `url` with TLS options; returns the
 * submit's code, and checks the sum when it is 0. */
static int add_over_tls(const char *url, const char *secret_path, const char *cache,
                        const char *ca_file, const char *ca_path, bool insecure, int64_t a,
                        p2p_error *err) {
    const char *urls[] = {url};
    p2p_client_options o;
    cf_options(&o, urls, 1, secret_path, cache);
    o.ca_file = ca_file;
    o.ca_path = ca_path;
    o.insecure = insecure;
    p2p_client *c = cf_client(&o);
    p2p_value args[2];
    cf_args_add(args, a, 1);
    p2p_future *f = NULL;
    int rc = p2p_client_submit(c, wf_schema(WF_ADD), args, NULL, 0, NULL, &f, err);
    if (rc == 0) {
        CF_EXPECT_BROKER(f, url);
        ASSERT_EQ(cf_get(f, 1)[0].as.i64, a + 1);
    }
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    return rc;
}

static void test_tls(void) {
    broker b; /* its directories, secret and schema; started by hand below */
    cf_broker_init(&b, "ctls_b", NULL, NULL);
    char cert[HARNESS_PATH_MAX], key[HARNESS_PATH_MAX], ca_dir[HARNESS_PATH_MAX];
    cf_path(cert, DIR_, "cert.pem");
    cf_path(key, DIR_, "key.pem");
    cf_path(ca_dir, DIR_, "ca");
    unsigned long hash = 0;
    make_cert(cert, key, &hash);
    ASSERT_OK(mkdir(ca_dir, 0700));
    char hashed[2 * HARNESS_PATH_MAX];
    int n = snprintf(hashed, sizeof(hashed), "%s/%08lx.0", ca_dir, hash);
    ASSERT_TRUE(n > 0 && (size_t)n < sizeof(hashed));
    ASSERT_OK(symlink(cert, hashed));

    char bin[HARNESS_PATH_MAX];
    ASSERT_OK(harness_bin_path("p2prpc-broker", NULL, bin, sizeof(bin), NULL));
    const char *argv[] = {
        bin,           "--listen",   "127.0.0.1:0", "--store",   b.store,       "--blobs",
        b.blobs,       "--data-dir", b.data,        "--schema",  b.schema_path, "--secret-file",
        b.secret_path, "--tls-cert", cert,          "--tls-key", key,           NULL};
    harness_proc_options po = {
        .argv = argv, .log_path = b.log, .wait_listening = true, .ready_timeout_ms = 60000};
    harness_proc *proc = NULL;
    p2p_error err = {0};
    if (harness_proc_start(&po, &proc, &err) != 0)
        TEST_FAIL_("cannot start the HTTPS broker: %s", err.msg);
    char url[HARNESS_URL_MAX];
    snprintf(url, sizeof(url), "%s", harness_proc_url(proc));
    fprintf(stderr, "HTTPS broker at %s\n", url);
    ASSERT_TRUE(strncmp(url, "https://127.0.0.1:", 18) == 0);

    worker w;
    const char *extra[] = {"--ca-file", cert, NULL};
    worker_init(&w, "ctls_w", b.secret_path, &(worker_config){.concurrency = 1, .extra = extra});
    worker_discover(&w, (const char *[]){url, NULL});
    worker_start(&w);

    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "cache");
    ASSERT_OK(add_over_tls(url, b.secret_path, cache, cert, NULL, false, 100, &err));

    /* Without the CA the certificate is not trusted. */
    err = (p2p_error){0};
    int rc = add_over_tls(url, b.secret_path, cache, NULL, NULL, false, 200, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EUNAVAIL, "127.0.0.1");
    /* The reason says what went wrong: the certificate, not the secret. */
    ASSERT_STR_CONTAINS(err.msg, "certificate");

    ASSERT_OK(add_over_tls(url, b.secret_path, cache, NULL, ca_dir, false, 300, &err));
    ASSERT_OK(add_over_tls(url, b.secret_path, cache, NULL, NULL, true, 400, &err));

    worker_stop(&w, 30000);
    worker_cleanup(&w);
    int wstatus = 0;
    ASSERT_OK(harness_proc_stop(proc, 30000, &wstatus, NULL));
    harness_proc_free(proc);
    broker_cleanup(&b);
}

int main(void) {
    p2p_error err;
    if (harness_scratch_dir("ctls_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_tls);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
