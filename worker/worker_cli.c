/* p2p_worker_main: a worker as a program, for generated workers and the
 * tests' worker. Flags are documented in docs/cli.md ("worker programs");
 * --help prints the same list. */
#include "worker_internal.h"

#include "cliutil.h"
#include "log.h"
#include "sign.h"
#include "version.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: WORKER --discovery FILE [FLAGS]\n"
    "  --discovery FILE         broker URLs, one per line ('#' comments)\n"
    "  --secret-file FILE       sign requests with this shared secret\n"
    "  --concurrency N          calls at once (default 1)\n"
    "  --work-dir DIR           per-call directories (default DATA_DIR/work)\n"
    "  --lease-renew-seconds S  heartbeat when a call is silent this long (default 10)\n"
    "  --grace-seconds S        terminate and shutdown grace (default 10)\n"
    "  --poll-wait SECONDS      search_work long-poll wait (default 30)\n"
    "  --ca-file FILE           TLS: PEM bundle to trust instead of the system's\n"
    "  --ca-path DIR            TLS: directory of hashed CA certificates\n"
    "  --insecure               TLS: do not verify the broker's certificate\n"
    "  --data-dir DIR           node data directory (default $P2PRPC_HOME, $XDG_DATA_HOME/p2prpc\n"
    "                           or ~/.local/share/p2prpc)\n"
    "  --log-level LEVEL        debug, info, warn, error or off (default info)\n"
    "  --dump-schemas FILE      write the functions' schemas as a JSON array ('-' = stdout)\n"
    "  --version                print the version\n"
    "  --help                   print this help\n";

typedef struct cli {
    p2p_worker_options opts;
    const char *secret_file;
    const char *dump_file;
    const char *prog;
} cli;

enum {
    OPT_DISCOVERY = 256,
    OPT_SECRET,
    OPT_CONCURRENCY,
    OPT_WORK_DIR,
    OPT_RENEW,
    OPT_GRACE,
    OPT_POLL_WAIT,
    OPT_CA_FILE,
    OPT_CA_PATH,
    OPT_INSECURE,
    OPT_DATA_DIR,
    OPT_LOG_LEVEL,
    OPT_DUMP,
    OPT_VERSION,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"discovery", required_argument, NULL, OPT_DISCOVERY},
    {"secret-file", required_argument, NULL, OPT_SECRET},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"work-dir", required_argument, NULL, OPT_WORK_DIR},
    {"lease-renew-seconds", required_argument, NULL, OPT_RENEW},
    {"grace-seconds", required_argument, NULL, OPT_GRACE},
    {"poll-wait", required_argument, NULL, OPT_POLL_WAIT},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"ca-path", required_argument, NULL, OPT_CA_PATH},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"dump-schemas", required_argument, NULL, OPT_DUMP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_seconds(const cli *c, const char *flag, const char *s, double min, double max,
                         int64_t *ms) {
    double v = 0;
    if (p2p_cli_number(c->prog, flag, s, min, max, &v) != 0)
        return -1;
    *ms = (int64_t)(v * 1000 + 0.5);
    return 0;
}

static int parse_int(const cli *c, const char *flag, const char *s, long min, long max, long *out) {
    long long v = 0;
    if (p2p_cli_integer(c->prog, flag, s, min, max, &v) != 0)
        return -1;
    *out = (long)v;
    return 0;
}

/* Flags whose value is a number or a name. Returns 0, or -1 after a message. */
static int parse_value(cli *c, int opt, const char *arg) {
    long n = 0;
    p2p_log_level level;
    switch (opt) {
    case OPT_CONCURRENCY:
        if (parse_int(c, "--concurrency", arg, 1, P2P_WORKER_MAX_CONCURRENCY, &n) != 0)
            return -1;
        c->opts.concurrency = (unsigned)n;
        return 0;
    case OPT_POLL_WAIT:
        if (parse_int(c, "--poll-wait", arg, 1, 300, &n) != 0)
            return -1;
        c->opts.poll_wait_s = (int)n;
        return 0;
    case OPT_RENEW:
        return parse_seconds(c, "--lease-renew-seconds", arg, 0.01, 3600, &c->opts.lease_renew_ms);
    case OPT_GRACE:
        return parse_seconds(c, "--grace-seconds", arg, 0, 3600, &c->opts.grace_ms);
    case OPT_LOG_LEVEL:
        if (p2p_log_parse_level(arg, &level) == 0) {
            p2p_log_set_level(level);
            return 0;
        }
        fprintf(stderr, "%s: --log-level takes debug, info, warn, error or off\n", c->prog);
        return -1;
    default:
        return -1;
    }
}

/* Flags that take a path or nothing. Returns 1 when handled. */
static int parse_path(cli *c, int opt, const char *arg) {
    switch (opt) {
    case OPT_DISCOVERY:
        c->opts.discovery_file = arg;
        return 1;
    case OPT_SECRET:
        c->secret_file = arg;
        return 1;
    case OPT_WORK_DIR:
        c->opts.work_dir = arg;
        return 1;
    case OPT_CA_FILE:
        c->opts.ca_file = arg;
        return 1;
    case OPT_CA_PATH:
        c->opts.ca_path = arg;
        return 1;
    case OPT_INSECURE:
        c->opts.insecure = true;
        return 1;
    case OPT_DATA_DIR:
        c->opts.data_dir = arg;
        return 1;
    case OPT_DUMP:
        c->dump_file = arg;
        return 1;
    default:
        return 0;
    }
}

/* Returns 0 to go on, 1 after --help/--version (exit 0), 2 on a usage error. */
static int parse_args(cli *c, int argc, char **argv) {
    int opt;
    optind = 0; /* 0, not 1: glibc then resets all of its state */
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (opt == OPT_VERSION) {
            printf("%s (p2prpc worker) %s\n", c->prog, P2P_VERSION);
            return 1;
        }
        if (opt == OPT_HELP) {
            fputs(usage_text, stdout);
            return 1;
        }
        if (opt == '?') {
            fprintf(stderr, "%s: see '%s --help'\n", c->prog, c->prog);
            return 2;
        }
        if (parse_path(c, opt, optarg) == 0 && parse_value(c, opt, optarg) != 0)
            return 2;
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", c->prog, argv[optind]);
        return 2;
    }
    if (c->dump_file == NULL && c->opts.discovery_file == NULL) {
        fprintf(stderr, "%s: --discovery FILE is required (see '%s --help')\n", c->prog, c->prog);
        return 2;
    }
    return 0;
}

/* --dump-schemas: the schemas as a JSON array p2prpc-broker --schema reads. */
static int dump_schemas(const cli *c, const p2p_worker_function *fns, size_t n) {
    json_t *all = json_array();
    p2p_error err = {0};
    int rc = all != NULL ? 0 : p2p_error_set(&err, P2P_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *one = NULL;
        rc = p2p_schema_to_json(fns[i].schema, &one, &err);
        if (rc == 0 && json_array_append_new(all, one) != 0)
            rc = p2p_error_set(&err, P2P_ENOMEM, "out of memory");
    }
    int flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER;
    if (rc == 0 && strcmp(c->dump_file, "-") == 0)
        rc = json_dumpf(all, stdout, flags) == 0 && fputc('\n', stdout) != EOF
                 ? 0
                 : p2p_error_set(&err, P2P_EIO, "cannot write the schemas");
    else if (rc == 0 && json_dump_file(all, c->dump_file, flags) != 0)
        rc = p2p_error_set(&err, P2P_EIO, "cannot write %s", c->dump_file);
    json_decref(all);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", c->prog, err.msg);
    return rc != 0 ? 1 : 0;
}

static int serve(cli *c, const p2p_worker_function *fns, size_t n, const sigset_t *set) {
    p2p_error err = {0};
    unsigned char *secret = NULL;
    size_t secret_len = 0;
    p2p_worker *w = NULL;
    int rc = 0;
    if (c->secret_file != NULL)
        rc = p2p_secret_load(c->secret_file, &secret, &secret_len, &err);
    c->opts.secret = secret;
    c->opts.secret_len = secret_len;
    if (rc == 0)
        rc = p2p_worker_new(&c->opts, fns, n, &w, &err);
    p2p_secret_free(secret, secret_len);
    if (rc == 0)
        rc = p2p_worker_start(w, &err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", c->prog, err.msg);
        p2p_worker_free(w);
        return 1;
    }
    printf("worker %s serving %zu function(s) from %zu broker(s)\n", p2p_worker_node_id(w), n,
           p2p_worker_broker_count(w));
    fflush(stdout);
    int sig = p2p_cli_wait_signal(set);
    P2P_INFO("worker: %s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    p2p_worker_free(w);
    return 0;
}

static const char *program_name(const char *argv0) {
    const char *slash = argv0 != NULL ? strrchr(argv0, '/') : NULL;
    return slash != NULL ? slash + 1 : (argv0 != NULL ? argv0 : "worker");
}

int p2p_worker_main(int argc, char **argv, const p2p_worker_function *fns, size_t n,
                    p2p_worker_can_do_work_fn can_do_work, void *ctx) {
    /* First thing: a child runs one call and nothing of the worker. */
    if (argc >= 2 && strcmp(argv[1], P2P_WORKER_CHILD_FLAG) == 0)
        return p2p__child_main(argc, argv, fns, n);
    /* Blocked before any thread exists, so every thread inherits the mask
     * and the signals wait for sigwait here. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    cli c = {.prog = program_name(argc > 0 ? argv[0] : NULL)};
    p2p_worker_options_init(&c.opts);
    c.opts.can_do_work = can_do_work;
    c.opts.can_do_work_ctx = ctx;
    int rc = parse_args(&c, argc, argv);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;
    if (c.dump_file != NULL)
        return dump_schemas(&c, fns, n);
    return serve(&c, fns, n, &set);
}
