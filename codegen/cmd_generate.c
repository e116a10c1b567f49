/* The generate-* subcommands: flags with getopt_long, then the parser and
 * one generator. */
#include "cmd_generate.h"

#include "generate.h"
#include "parser.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One subcommand's fixed parts. */
typedef struct gen_cmd {
    const char *name;
    const char *usage;
    const char *help; /* after the usage line of --help */
    const char *default_out;
    bool discovery; /* takes DISCOVERY after FUNCTION.h */
    bool sources;   /* takes --sources */
    int (*generate)(const p2p_cg_header *h, const p2p_cg_options *opts, p2p_error *err);
} gen_cmd;

static const gen_cmd broker_cmd = {
    .name = "generate-broker",
    .usage = "FUNCTION.h [--out DIR]",
    .help =
        "Writes a broker serving the functions of FUNCTION.h into DIR (default broker/):\n"
        "  brokerapp.c                the broker program (p2prpc-broker flags, schemas built in)\n"
        "  CMakeLists.txt             builds it against the installed p2prpc\n"
        "  Dockerfile                 Debian 12 slim image of it\n"
        "  broker.docker-compose.yml  the broker over MongoDB\n"
        "\n"
        "  --out DIR   the output directory, created when missing\n"
        "  --help      print this help\n",
    .default_out = "broker",
    .discovery = false,
    .sources = false,
    .generate = p2p_cg_generate_broker,
};

static const gen_cmd worker_cmd = {
    .name = "generate-worker",
    .usage = "FUNCTION.h DISCOVERY [--sources FILE.c...] [--out DIR]",
    .help = "Writes a worker running the functions of FUNCTION.h into DIR (default worker/):\n"
            "  workerapp.c                the dispatch adapters and the worker program\n"
            "  CMakeLists.txt             builds it with the sources against the installed p2prpc\n"
            "  Dockerfile                 Debian 12 slim image of it\n"
            "  worker.docker-compose.yml  workers without inbound ports (--scale worker=N)\n"
            "and copies FUNCTION.h, DISCOVERY (as discovery.txt) and the sources into DIR.\n"
            "\n"
            "  --sources FILE.c...  the C files implementing the functions; every argument\n"
            "                       after FUNCTION.h and DISCOVERY is one too\n"
            "  --out DIR            the output directory, created when missing\n"
            "  --help               print this help\n",
    .default_out = "worker",
    .discovery = true,
    .sources = true,
    .generate = p2p_cg_generate_worker,
};

static const gen_cmd client_cmd = {
    .name = "generate-client",
    .usage = "FUNCTION.h DISCOVERY [--out DIR]",
    .help = "Writes client stubs of the functions of FUNCTION.h into DIR (default client/):\n"
            "  stubs.h, stubs.c  each function under its own name and signature, running\n"
            "                    remotely; NAME_async (returns a p2p_future *) and NAME_get\n"
            "  clientapp.c       clientapp FUNCTION ARGS...: one call with a progress bar\n"
            "  CMakeLists.txt    builds the p2prpc_stubs library and clientapp\n"
            "  Dockerfile        Debian 12 slim image of clientapp\n"
            "and copies FUNCTION.h and DISCOVERY (as discovery.txt) into DIR. At run time\n"
            "P2PRPC_DISCOVERY, P2PRPC_CACHE and P2PRPC_SECRET_FILE override the discovery\n"
            "file, the cache directory and the shared secret.\n"
            "\n"
            "  --out DIR   the output directory, created when missing\n"
            "  --help      print this help\n",
    .default_out = "client",
    .discovery = true,
    .sources = false,
    .generate = p2p_cg_generate_client,
};

static void print_help(const gen_cmd *c) {
    printf("usage: p2prpc %s %s\n\n%s", c->name, c->usage, c->help);
}

static int usage_error(const gen_cmd *c, const char *what, const char *arg) {
    fprintf(stderr, "p2prpc %s: %s '%s' (see p2prpc help %s)\n", c->name, what, arg, c->name);
    return 2;
}

/* The parsed command line; `sources` points into argv. */
typedef struct gen_args {
    const char *header, *discovery, *out;
    const char **sources;
    size_t n_sources;
    bool help;
} gen_args;

/* Reads the flags, then the positional arguments. Returns 0 or the exit
 * status of a usage error. */
static int parse_flags(const gen_cmd *c, int argc, char **argv, gen_args *a) {
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"sources", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool sources_flag = false;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":o:s:h", opts, NULL)) != -1) {
        if (ch == 'o') {
            a->out = optarg;
        } else if (ch == 's') {
            if (!c->sources)
                return usage_error(c, "unknown flag", "--sources");
            a->sources[a->n_sources++] = optarg;
            sources_flag = true;
        } else if (ch == 'h') {
            a->help = true;
            return 0;
        } else if (ch == ':') {
            return usage_error(c, "missing value of", argv[optind - 1]);
        } else {
            return usage_error(c, "unknown flag", argv[optind - 1]);
        }
    }
    int need = c->discovery ? 2 : 1;
    if (argc - optind < need)
        return usage_error(c, "missing argument",
                           c->discovery ? "FUNCTION.h DISCOVERY" : "FUNCTION.h");
    a->header = argv[optind];
    a->discovery = c->discovery ? argv[optind + 1] : NULL;
    for (int i = optind + need; i < argc; i++) {
        if (!sources_flag)
            return usage_error(c, "unexpected argument", argv[i]);
        a->sources[a->n_sources++] = argv[i];
    }
    return 0;
}

static int run(const gen_cmd *c, int argc, char **argv) {
    gen_args a = {.out = c->default_out};
    /* Every source is an argument: argc bounds their number. */
    a.sources = calloc((size_t)argc + 1, sizeof(*a.sources));
    if (a.sources == NULL) {
        fprintf(stderr, "p2prpc %s: out of memory\n", c->name);
        return 1;
    }
    int status = parse_flags(c, argc, argv, &a);
    if (status == 0 && a.help)
        print_help(c);
    if (status != 0 || a.help) {
        free(a.sources);
        return status;
    }
    p2p_cg_header h = {0};
    p2p_error err = {0};
    p2p_cg_options o = {
        .out_dir = a.out, .discovery = a.discovery, .sources = a.sources, .n_sources = a.n_sources};
    int rc = p2p_cg_parse_file(a.header, &h, &err);
    if (rc == 0)
        rc = c->generate(&h, &o, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err.msg);
    else
        printf("p2prpc %s: %zu function(s) of %s written to %s\n", c->name, h.n_functions, a.header,
               a.out);
    p2p_cg_header_cleanup(&h);
    free(a.sources);
    return rc == 0 ? 0 : 1;
}

int p2p_cli_generate_broker(int argc, char **argv) {
    return run(&broker_cmd, argc, argv);
}

int p2p_cli_generate_worker(int argc, char **argv) {
    return run(&worker_cmd, argc, argv);
}

int p2p_cli_generate_client(int argc, char **argv) {
    return run(&client_cmd, argc, argv);
}
