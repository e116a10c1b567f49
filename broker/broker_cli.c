/* p2p_broker_main: the broker as a program, shared by the p2prpc-broker
 * binary (broker_main.c) and generated brokers. Flags are documented in
 * docs/cli.md, section "p2prpc-broker"; --help prints the same list. */
#include "broker.h"

#include "cliutil.h"
#include "log.h"
#include "sign.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: p2prpc-broker [FLAGS]\n"
    "  --listen HOST:PORT     address to serve on (default 127.0.0.1:8470; port 0 = any)\n"
    "  --data-dir DIR         node data directory (default $P2PRPC_HOME, $XDG_DATA_HOME/p2prpc\n"
    "                         or ~/.local/share/p2prpc)\n"
    "  --store sqlite:PATH    call store (default sqlite:DATA_DIR/broker.db)\n"
    "  --store mongodb://HOST:PORT/DB[?OPTIONS]\n"
    "                         calls and blobs (GridFS) in MongoDB, shared by brokers\n"
    "  --blobs DIR            blob directory (default DATA_DIR/blobs)\n"
    "  --schema FILE          JSON schema(s) of functions to serve (repeatable)\n"
    "  --secret-file FILE     require requests signed with this shared secret\n"
    "  --tls-cert FILE        PEM certificate: serve HTTPS (with --tls-key)\n"
    "  --tls-key FILE         PEM private key\n"
    "  --lease-seconds S      lease of a claimed call (default 60; decimals allowed)\n"
    "  --max-attempts N       claims before an expired lease fails the call (default 3)\n"
    "  --expire-hours H       remove calls and unused blobs after H hours (default 0 = never)\n"
    "  --max-blob-size SIZE   largest blob, bytes or with K/M/G/T (default 64G)\n"
    "  --sync normal|full     durability of calls and blobs (default normal)\n"
    "  --peer URL             another broker to list in nodes (repeatable)\n"
    "  --public-url URL       this broker's URL in nodes (default: the listen address)\n"
    "  --threads N            HTTP threads (default 4)\n"
    "  --log-level LEVEL      debug, info, warn, error or off (default info)\n"
    "  --version              print the version\n"
    "  --help                 print this help\n";

/* What the flags give, besides the broker options. */
typedef struct cli {
    p2p_broker_options opts;
    const char **schema_files;
    size_t n_schema_files;
    const char **peers;
    const char *secret_file;
    char *host; /* owned: from --listen */
} cli;

#define PROG "p2prpc-broker"

static int parse_double(const char *flag, const char *s, double min, double max, double *out) {
    return p2p_cli_number(PROG, flag, s, min, max, out);
}

static int parse_ll(const char *flag, const char *s, long long min, long long max, long long *out) {
    return p2p_cli_integer(PROG, flag, s, min, max, out);
}

/* "1048576", "512K", "64M", "2G", "1T" (powers of 1024). */
static int parse_size(const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (end != s && *end != '\0' && end[1] == '\0') {
        const char *units = "KMGT";
        const char *u = strchr(units, *end == 'k' ? 'K' : *end);
        shift = u != NULL && *end != '\0' ? 10u * (unsigned)(u - units + 1) : 0;
        if (shift != 0)
            end++;
    }
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 ||
        (shift != 0 && v > (UINT64_MAX >> shift))) {
        fprintf(stderr,
                "p2prpc-broker: --max-blob-size: \"%s\" is not a size (bytes, or a "
                "number with K, M, G or T)\n",
                s);
        return -1;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

/* HOST:PORT, or [V6]:PORT. */
static int parse_listen(cli *c, const char *s) {
    const char *colon = strrchr(s, ':');
    long long port = 0;
    if (colon == NULL || colon == s || parse_ll("--listen", colon + 1, 0, 65535, &port) != 0) {
        fprintf(stderr, "p2prpc-broker: --listen takes HOST:PORT, got \"%s\"\n", s);
        return -1;
    }
    const char *h = s;
    size_t len = (size_t)(colon - s);
    if (h[0] == '[' && len >= 2 && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    free(c->host);
    c->host = strndup(h, len);
    if (c->host == NULL)
        return -1;
    c->opts.host = c->host;
    c->opts.port = (uint16_t)port;
    return 0;
}

enum {
    OPT_LISTEN = 256,
    OPT_STORE,
    OPT_BLOBS,
    OPT_SECRET,
    OPT_CERT,
    OPT_KEY,
    OPT_LEASE,
    OPT_ATTEMPTS,
    OPT_EXPIRE,
    OPT_MAX_BLOB,
    OPT_SYNC,
    OPT_DATA_DIR,
    OPT_SCHEMA,
    OPT_PEER,
    OPT_PUBLIC_URL,
    OPT_LOG_LEVEL,
    OPT_THREADS,
    OPT_VERSION,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"store", required_argument, NULL, OPT_STORE},
    {"blobs", required_argument, NULL, OPT_BLOBS},
    {"secret-file", required_argument, NULL, OPT_SECRET},
    {"tls-cert", required_argument, NULL, OPT_CERT},
    {"tls-key", required_argument, NULL, OPT_KEY},
    {"lease-seconds", required_argument, NULL, OPT_LEASE},
    {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
    {"expire-hours", required_argument, NULL, OPT_EXPIRE},
    {"max-blob-size", required_argument, NULL, OPT_MAX_BLOB},
    {"sync", required_argument, NULL, OPT_SYNC},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"schema", required_argument, NULL, OPT_SCHEMA},
    {"peer", required_argument, NULL, OPT_PEER},
    {"public-url", required_argument, NULL, OPT_PUBLIC_URL},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Flags whose value is a number or a name. Returns 0, or -1 after a message. */
static int parse_value(cli *c, int opt, const char *arg) {
    double d = 0;
    long long n = 0;
    p2p_log_level level;
    switch (opt) {
    case OPT_LEASE:
        if (parse_double("--lease-seconds", arg, 0.1, 7 * 86400, &d) != 0)
            return -1;
        c->opts.lease_ms = (int64_t)(d * 1000 + 0.5);
        return 0;
    case OPT_EXPIRE:
        if (parse_double("--expire-hours", arg, 0, 24 * 365 * 100, &d) != 0)
            return -1;
        c->opts.expire_ms = (int64_t)(d * 3600 * 1000 + 0.5);
        return 0;
    case OPT_ATTEMPTS:
        if (parse_ll("--max-attempts", arg, 1, 1000, &n) != 0)
            return -1;
        c->opts.max_attempts = (int)n;
        return 0;
    case OPT_THREADS:
        if (parse_ll("--threads", arg, 1, 256, &n) != 0)
            return -1;
        c->opts.threads = (unsigned)n;
        return 0;
    case OPT_MAX_BLOB:
        return parse_size(arg, &c->opts.max_blob_size);
    case OPT_SYNC:
        if (p2p_store_sync_parse(arg, &c->opts.sync) == 0)
            return 0;
        fprintf(stderr, "p2prpc-broker: --sync takes normal or full, got \"%s\"\n", arg);
        return -1;
    case OPT_LOG_LEVEL:
        if (p2p_log_parse_level(arg, &level) != 0) {
            fprintf(stderr, "p2prpc-broker: --log-level takes debug, info, warn, error or off\n");
            return -1;
        }
        p2p_log_set_level(level);
        return 0;
    default:
        return -1;
    }
}

/* Returns 0 to go on, 1 after --help/--version (exit 0), 2 on a usage error. */
static int parse_args(cli *c, int argc, char **argv) {
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        const char *arg = optarg;
        int rc = 0;
        switch (opt) {
        case OPT_LISTEN:
            rc = parse_listen(c, arg);
            break;
        case OPT_STORE:
            c->opts.store = arg;
            break;
        case OPT_BLOBS:
            c->opts.blobs_dir = arg;
            break;
        case OPT_SECRET:
            c->secret_file = arg;
            break;
        case OPT_CERT:
            c->opts.tls_cert_file = arg;
            break;
        case OPT_KEY:
            c->opts.tls_key_file = arg;
            break;
        case OPT_DATA_DIR:
            c->opts.data_dir = arg;
            break;
        case OPT_SCHEMA:
            c->schema_files[c->n_schema_files++] = arg;
            break;
        case OPT_PEER:
            c->peers[c->opts.n_peers++] = arg;
            break;
        case OPT_PUBLIC_URL:
            c->opts.public_url = arg;
            break;
        case OPT_VERSION:
            printf("p2prpc-broker %s\n", P2P_VERSION);
            return 1;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 1;
        case '?':
            fputs("p2prpc-broker: see 'p2prpc-broker --help'\n", stderr);
            return 2;
        default:
            rc = parse_value(c, opt, arg);
            break;
        }
        if (rc != 0)
            return 2;
    }
    if (optind != argc) {
        fprintf(stderr, "p2prpc-broker: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int add_schemas(p2p_broker *b, const cli *c, const p2p_schema *const *schemas, size_t n,
                       p2p_error *err) {
    p2p_registry *r = p2p_broker_registry(b);
    for (size_t i = 0; i < n; i++) {
        int rc = p2p_registry_add(r, schemas[i], err);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < c->n_schema_files; i++) {
        int rc = p2p_registry_load_file(r, c->schema_files[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Waits for SIGTERM or SIGINT (blocked in every thread, so only here). */
static int serve(cli *c, const p2p_schema *const *schemas, size_t n, const sigset_t *set) {
    p2p_error err = {0};
    unsigned char *secret = NULL;
    size_t secret_len = 0;
    p2p_broker *b = NULL;
    int rc = 0;
    if (c->secret_file != NULL)
        rc = p2p_secret_load(c->secret_file, &secret, &secret_len, &err);
    c->opts.secret = secret;
    c->opts.secret_len = secret_len;
    if (rc == 0)
        rc = p2p_broker_new(&c->opts, &b, &err);
    if (rc == 0)
        rc = add_schemas(b, c, schemas, n, &err);
    if (rc == 0)
        rc = p2p_broker_start(b, &err);
    p2p_secret_free(secret, secret_len);
    if (rc != 0) {
        fprintf(stderr, "p2prpc-broker: %s\n", err.msg);
        p2p_broker_free(b);
        return 1;
    }
    printf("listening on %s\n", p2p_broker_url(b));
    fflush(stdout);
    int sig = p2p_cli_wait_signal(set);
    P2P_INFO("broker: %s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    p2p_broker_free(b);
    return 0;
}

int p2p_broker_main(int argc, char **argv, const p2p_schema *const *schemas, size_t n) {
    /* Blocked before any thread exists, so every thread inherits the mask and
     * the signals wait for sigwait in this one. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    cli c = {0};
    p2p_broker_options_init(&c.opts);
    size_t slots = argc > 0 ? (size_t)argc : 1;
    c.schema_files = calloc(slots, sizeof(*c.schema_files));
    c.peers = calloc(slots, sizeof(*c.peers));
    int rc = c.schema_files != NULL && c.peers != NULL ? parse_args(&c, argc, argv) : 1;
    c.opts.peers = c.peers;
    if (rc == 1 && c.schema_files != NULL && c.peers != NULL)
        rc = 0; /* --help or --version */
    else if (rc == 0)
        rc = serve(&c, schemas, n, &set);
    free(c.schema_files);
    free(c.peers);
    free(c.host);
    return rc;
}
