/* The p2prpc command-line program: parses the subcommand and dispatches
 * through a table. Every subcommand and flag is listed in docs/cli.md. */
#include "cmd_generate.h"
#include "cmd_status.h"
#include "error.h"
#include "filecache.h"
#include "fsutil.h"
#include "hash.h"
#include "ident.h"
#include "log.h"
#include "node.h"
#include "schema.h"
#include "version.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct subcommand {
    const char *name;
    const char *summary; /* one line for `p2prpc help` */
    /* Runs it with argv[0] = its name; "--help" prints its help on stdout. */
    int (*run)(int argc, char **argv);
} subcommand;

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_node_id(int argc, char **argv);
static int cmd_hash(int argc, char **argv);
static int cmd_ident(int argc, char **argv);

static const subcommand commands[] = {
    {"help", "show this help, or one subcommand's", cmd_help},
    {"version", "print the p2prpc version", cmd_version},
    {"generate-broker", "write a broker program for the functions of a header",
     p2p_cli_generate_broker},
    {"generate-worker", "write a worker program running the functions of a header",
     p2p_cli_generate_worker},
    {"generate-client", "write client stubs calling the functions of a header remotely",
     p2p_cli_generate_client},
    {"status", "show a broker's calls by status and the running ones' progress", p2p_cli_status},
    {"node-id", "print this node's UUID, creating it on first use", cmd_node_id},
    {"hash", "print the content hash of files, as blobs and identifiers use it", cmd_hash},
    {"ident", "print the call identifier of a function's arguments", cmd_ident},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const subcommand *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(FILE *out) {
    fprintf(out, "usage: p2prpc SUBCOMMAND [ARGS]\n\nsubcommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'p2prpc help SUBCOMMAND' for its flags. Docs: docs/cli.md\n");
}

/* One line for a flag getopt_long refused (opterr is 0), exit status 2. */
static int flag_error(const char *cmd, int ch, char **argv) {
    fprintf(stderr, "p2prpc %s: %s '%s' (see p2prpc help %s)\n", cmd,
            ch == ':' ? "missing value of" : "unknown flag", argv[optind - 1], cmd);
    return 2;
}

/* A subcommand's help: usage line, then the text. */
static int print_help(const char *cmd, const char *usage, const char *text) {
    printf("usage: p2prpc %s%s%s\n%s%s", cmd, usage[0] ? " " : "", usage, text[0] ? "\n" : "",
           text);
    return 0;
}

static const char node_id_help[] =
    "Prints this node's UUID, creating it on first use.\n"
    "\n"
    "  --data-dir DIR  the node's data directory; default $P2PRPC_HOME, else\n"
    "                  $XDG_DATA_HOME/p2prpc, else ~/.local/share/p2prpc\n"
    "  --help          print this help\n";

static const char hash_help[] =
    "Prints 'HEX  PATH' per file: its SHA-256, as blobs and call identifiers use it.\n"
    "\n"
    "  --cache FILE  the file-hash cache; default DATA_DIR/filecache.db\n"
    "  --no-cache    hash every file's full content, without the cache\n"
    "  --help        print this help\n";

static const char ident_help[] =
    "Prints the call identifier of the arguments ARGS.json (- = standard input) of\n"
    "the function SCHEMA.json, as a client computes it before pushing the call.\n";

static int cmd_help(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return print_help("help", "[SUBCOMMAND]",
                          "Lists the subcommands, or runs 'p2prpc SUBCOMMAND --help'.\n");
    if (argc > 2) {
        fprintf(stderr, "p2prpc help: unexpected argument '%s'\n", argv[2]);
        return 2;
    }
    if (argc < 2) {
        print_usage(stdout);
        return 0;
    }
    const subcommand *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "p2prpc: unknown subcommand '%s'\n", argv[1]);
        return 2;
    }
    char *help_argv[] = {(char *)c->name, "--help", NULL};
    optind = 1;
    return c->run(2, help_argv);
}

static int cmd_version(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return print_help("version", "", "Prints 'p2prpc VERSION' (also: p2prpc --version).\n");
    if (argc > 1) {
        fprintf(stderr, "p2prpc version: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    printf("p2prpc %s\n", P2P_VERSION);
    return 0;
}

static int cmd_node_id(int argc, char **argv) {
    static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *data_dir = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
        if (c == 'd')
            data_dir = optarg;
        else if (c == 'h')
            return print_help("node-id", "[--data-dir DIR]", node_id_help);
        else
            return flag_error("node-id", c, argv);
    }
    if (optind != argc) {
        fprintf(stderr, "p2prpc node-id: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    p2p_error err = {0};
    char *resolved = NULL;
    if (data_dir == NULL && p2p_node_data_dir(&resolved, &err) != 0) {
        fprintf(stderr, "p2prpc node-id: %s\n", err.msg);
        return 1;
    }
    char id[P2P_NODE_ID_LEN + 1];
    int rc = p2p_node_id_load(data_dir ? data_dir : resolved, id, &err);
    free(resolved);
    if (rc != 0) {
        fprintf(stderr, "p2prpc node-id: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", id);
    return 0;
}

/* Opens the file-hash cache at `path`, or at DATA_DIR/filecache.db when NULL. */
static int open_cache(const char *path, p2p_filecache **out, p2p_error *err) {
    char *data_dir = NULL, *default_path = NULL;
    int rc = 0;
    if (path == NULL) {
        rc = p2p_node_data_dir(&data_dir, err);
        if (rc == 0)
            rc = p2p_fs_mkdirs(data_dir, 0700, err);
        if (rc == 0 && (default_path = p2p_fs_join(data_dir, "filecache.db")) == NULL)
            rc = p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    if (rc == 0)
        rc = p2p_filecache_open(path ? path : default_path, out, err);
    free(default_path);
    free(data_dir);
    return rc;
}

static int cmd_hash(int argc, char **argv) {
    static const struct option opts[] = {{"cache", required_argument, NULL, 'c'},
                                         {"no-cache", no_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cache_path = NULL;
    bool use_cache = true;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:nh", opts, NULL)) != -1) {
        if (c == 'c')
            cache_path = optarg;
        else if (c == 'n')
            use_cache = false;
        else if (c == 'h')
            return print_help("hash", "[--cache FILE | --no-cache] FILE...", hash_help);
        else
            return flag_error("hash", c, argv);
    }
    if (optind == argc) {
        fprintf(stderr, "p2prpc hash: no file given\n");
        return 2;
    }
    p2p_error err = {0};
    p2p_filecache *cache = NULL;
    if (use_cache && open_cache(cache_path, &cache, &err) != 0) {
        fprintf(stderr, "p2prpc hash: %s\n", err.msg);
        return 1;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        char hex[P2P_HASH_HEX_LEN + 1];
        int rc = cache ? p2p_filecache_hash(cache, argv[i], hex, &err)
                       : p2p_hash_file(argv[i], hex, &err);
        if (rc != 0) {
            fprintf(stderr, "p2prpc hash: %s\n", err.msg);
            status = 1;
            continue;
        }
        printf("%s  %s\n", hex, argv[i]);
    }
    p2p_filecache_free(cache);
    return status;
}

/* Loads a JSON document from `path`, or from stdin when `path` is "-". */
static json_t *load_json(const char *path, p2p_error *err) {
    json_error_t jerr;
    json_t *doc =
        strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_load_file(path, 0, &jerr);
    if (doc == NULL)
        p2p_error_set(err, P2P_EINVAL, "%s:%d:%d: %s", strcmp(path, "-") == 0 ? "<stdin>" : path,
                      jerr.line, jerr.column, jerr.text);
    return doc;
}

/* The identifier of `args` (named arguments) for the function `schema_json`
 * describes, exactly as a client computes it before pushing. */
static int ident_of(const json_t *schema_json, const json_t *args, char *out, p2p_error *err) {
    p2p_schema *schema = NULL;
    int rc = p2p_schema_from_json(schema_json, &schema, err);
    if (rc == 0)
        rc = p2p_ident_from_json(schema, args, out, err);
    p2p_schema_free(schema);
    return rc;
}

static int cmd_ident(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return print_help("ident", "SCHEMA.json ARGS.json|-", ident_help);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "p2prpc ident: unknown flag '%s' (see p2prpc help ident)\n", argv[i]);
            return 2;
        }
    }
    if (argc != 3) {
        fprintf(stderr, "usage: p2prpc ident SCHEMA.json ARGS.json|-\n");
        return 2;
    }
    p2p_error err = {0};
    json_t *schema = load_json(argv[1], &err);
    json_t *args = schema ? load_json(argv[2], &err) : NULL;
    char id[P2P_HASH_HEX_LEN + 1];
    int rc = args ? ident_of(schema, args, id, &err) : P2P_EINVAL;
    json_decref(schema);
    json_decref(args);
    if (rc != 0) {
        fprintf(stderr, "p2prpc ident: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", id);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv);
    const subcommand *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "p2prpc: unknown %s '%s' (see p2prpc help)\n",
                argv[1][0] == '-' ? "flag" : "subcommand", argv[1]);
        return 2;
    }
    /* Each subcommand parses its own flags with getopt_long from argv[0] = name. */
    optind = 1;
    return c->run(argc - 1, argv + 1);
}
