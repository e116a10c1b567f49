/* `p2prpc status` (cmd_status.h): two read-only routes of the broker
 * (GET /api/v1/functions, GET /api/v1/{function}/calls), printed as tables. */
#include "cmd_status.h"

#include "error.h"
#include "http_client.h"
#include "sign.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define PROG "p2prpc status"
/* Running calls listed per function; the counts say how many there are. */
#define SHOWN_RUNNING 100
#define REQUEST_TIMEOUT_MS 15000

/* The call statuses in the order of the protocol's "counts" (docs/protocol.md). */
static const char *const status_names[] = {"pushed", "queued", "running",
                                           "done",   "failed", "terminated"};
static const char *const status_headers[] = {"PUSHED", "QUEUED", "RUNNING",
                                             "DONE",   "FAILED", "TERMINATED"};
#define N_STATUS (sizeof(status_names) / sizeof(status_names[0]))
#define RUNNING_INDEX 2

typedef struct status_args {
    const char *url;
    const char *function;    /* NULL = every function */
    const char *secret_file; /* NULL = unsigned */
} status_args;

/* What the broker said about one function. */
typedef struct fn_status {
    const char *name; /* borrowed from the functions answer */
    json_int_t counts[N_STATUS];
    json_t *running; /* owned: the "calls" array of running calls */
} fn_status;

static void print_help(FILE *out) {
    fprintf(out, "usage: p2prpc " P2P_CLI_STATUS_USAGE "\n"
                 "  Show what a broker is doing: per function the number of calls in each\n"
                 "  status, then each running call with its progress.\n"
                 "  --function F        only the function F\n"
                 "  --secret-file FILE  sign requests with the broker's secret\n"
                 "                      (default: $P2PRPC_SECRET_FILE; none: unsigned)\n"
                 "  -h, --help          show this help\n");
}

/* The flag getopt_long refused, as the user wrote it. */
static void bad_flag(int argc, char **argv, const char *why) {
    if (optopt != 0 && (optind > argc || strncmp(argv[optind - 1], "--", 2) != 0))
        fprintf(stderr, PROG ": %s '-%c' (see p2prpc help status)\n", why, optopt);
    else
        fprintf(stderr, PROG ": %s '%s' (see p2prpc help status)\n", why, argv[optind - 1]);
}

/* Returns -1 to go on, or the exit status to return at once. */
static int parse_args(int argc, char **argv, status_args *a) {
    static const struct option opts[] = {{"function", required_argument, NULL, 'f'},
                                         {"secret-file", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof(*a));
    optind = 0; /* a full reset: this may run more than once in a process */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":f:s:h", opts, NULL)) != -1) {
        if (c == 'f') {
            a->function = optarg;
        } else if (c == 's') {
            a->secret_file = optarg;
        } else if (c == 'h') {
            print_help(stdout);
            return 0;
        } else {
            bad_flag(argc, argv, c == ':' ? "missing value for" : "unknown flag");
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, PROG ": %s (usage: p2prpc " P2P_CLI_STATUS_USAGE ")\n",
                argc == optind ? "no BROKER_URL given" : "more than one BROKER_URL given");
        return 2;
    }
    a->url = argv[optind];
    if (strncmp(a->url, "http://", 7) != 0 && strncmp(a->url, "https://", 8) != 0) {
        fprintf(stderr, PROG ": BROKER_URL must start with http:// or https://, not '%s'\n",
                a->url);
        return 2;
    }
    if (a->secret_file == NULL) {
        const char *env = getenv("P2PRPC_SECRET_FILE");
        a->secret_file = env != NULL && env[0] != '\0' ? env : NULL;
    }
    return -1;
}

static int open_client(const status_args *a, p2p_http_client **out, p2p_error *err) {
    unsigned char *secret = NULL;
    size_t secret_len = 0;
    if (a->secret_file != NULL && p2p_secret_load(a->secret_file, &secret, &secret_len, err) != 0)
        return err->code;
    p2p_http_client_options o;
    p2p_http_client_options_init(&o);
    o.timeout_ms = REQUEST_TIMEOUT_MS;
    o.max_retries = 0; /* a status is asked again by hand; no retry lines on stderr */
    o.secret = secret;
    o.secret_len = secret_len;
    *out = p2p_http_client_new(&o, err);
    p2p_secret_free(secret, secret_len);
    return *out != NULL ? 0 : err->code;
}

/* GET base + `rel` (a relative reference), parsed as JSON into `*out`. */
static int get_json(p2p_http_client *client, const char *base, const char *rel, json_t **out,
                    p2p_error *err) {
    char *url = NULL;
    p2p_http_reply reply = {0};
    int rc = p2p_http_url_join(base, rel, &url, err);
    if (rc != 0)
        return rc;
    p2p_http_call call = {.method = "GET", .url = url, .idempotent = true};
    /* The transport's messages name the URL already; the answer's do not. */
    rc = p2p_http_client_request(client, &call, &reply, err);
    int answer_rc = rc == 0 ? p2p_http_reply_check(&reply, err) : 0;
    if (rc == 0 && answer_rc == 0)
        answer_rc = p2p_http_reply_json(&reply, out, err);
    if (answer_rc != 0) {
        rc = answer_rc;
        p2p_error why = *err;
        p2p_error_set(err, rc, "GET %s: %s%s", url, why.msg,
                      rc == P2P_EAUTH ? " (give the broker's secret with --secret-file FILE)" : "");
    }
    p2p_http_reply_cleanup(&reply);
    free(url);
    return rc;
}

/* The URL with a final '/', so that "api/v1/..." resolves under its path. */
static char *base_url(const char *url) {
    size_t len = strlen(url);
    char *base = malloc(len + 2);
    if (base != NULL)
        snprintf(base, len + 2, "%s%s", url, len > 0 && url[len - 1] == '/' ? "" : "/");
    return base;
}

/* The functions to show, from the broker's {"functions": [{"name"...}...]}
 * (borrowed), into `*out` (caller frees the array). */
static int select_functions(const json_t *answer, const status_args *a, fn_status **out, size_t *n,
                            p2p_error *err) {
    const json_t *list = json_object_get(answer, "functions");
    if (!json_is_array(list))
        return p2p_error_set(err, P2P_EPROTO, "%s does not answer like a p2prpc broker", a->url);
    fn_status *fns = calloc(json_array_size(list) + 1, sizeof(*fns));
    if (fns == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    size_t count = 0, i;
    const json_t *one;
    json_array_foreach(list, i, one) {
        const char *name = json_string_value(json_object_get(one, "name"));
        if (name == NULL) {
            free(fns);
            return p2p_error_set(err, P2P_EPROTO, "%s lists a function without a name", a->url);
        }
        if (a->function == NULL || strcmp(a->function, name) == 0)
            fns[count++].name = name;
    }
    if (a->function != NULL && count == 0) {
        free(fns);
        return p2p_error_set(err, P2P_ENOTFOUND, "no function %s on %s", a->function, a->url);
    }
    *out = fns;
    *n = count;
    return 0;
}

/* Reads the counts and the running calls of `fs` from its calls route. */
static int fetch_function(p2p_http_client *client, const char *base, fn_status *fs,
                          p2p_error *err) {
    char *name = p2p_http_escape(fs->name);
    char rel[512];
    json_t *answer = NULL;
    int rc = name == NULL ? p2p_error_set(err, P2P_ENOMEM, NULL) : 0;
    if (rc == 0 && (size_t)snprintf(rel, sizeof(rel), "api/v1/%s/calls?status=running&limit=%d",
                                    name, SHOWN_RUNNING) >= sizeof(rel))
        rc = p2p_error_set(err, P2P_EINVAL, "function name too long: %.64s", fs->name);
    free(name);
    if (rc == 0)
        rc = get_json(client, base, rel, &answer, err);
    const json_t *counts = json_object_get(answer, "counts");
    json_t *calls = json_object_get(answer, "calls");
    if (rc == 0 && (!json_is_object(counts) || !json_is_array(calls)))
        rc = p2p_error_set(err, P2P_EPROTO, "the broker's calls of %s lack counts or calls",
                           fs->name);
    for (size_t s = 0; rc == 0 && s < N_STATUS; s++) {
        const json_t *c = json_object_get(counts, status_names[s]);
        if (!json_is_integer(c) || json_integer_value(c) < 0)
            rc = p2p_error_set(err, P2P_EPROTO, "the broker's count of %s calls of %s is missing",
                               status_names[s], fs->name);
        else
            fs->counts[s] = json_integer_value(c);
    }
    if (rc == 0)
        fs->running = json_incref(calls);
    json_decref(answer);
    return rc;
}

static int digits(json_int_t v) {
    int d = 1;
    for (; v >= 10; v /= 10)
        d++;
    return d;
}

static int name_width(const fn_status *fns, size_t n) {
    int w = (int)strlen("FUNCTION");
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(fns[i].name);
        w = len > w ? len : w;
    }
    return w;
}

/* FUNCTION PUSHED QUEUED ... with one row per function. */
static void print_counts(FILE *out, const fn_status *fns, size_t n) {
    int nw = name_width(fns, n), w[N_STATUS];
    fprintf(out, "%-*s", nw, "FUNCTION");
    for (size_t s = 0; s < N_STATUS; s++) {
        w[s] = (int)strlen(status_headers[s]);
        for (size_t i = 0; i < n; i++)
            w[s] = digits(fns[i].counts[s]) > w[s] ? digits(fns[i].counts[s]) : w[s];
        fprintf(out, "  %*s", w[s], status_headers[s]);
    }
    fputc('\n', out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%-*s", nw, fns[i].name);
        for (size_t s = 0; s < N_STATUS; s++)
            fprintf(out, "  %*lld", w[s], (long long)fns[i].counts[s]);
        fputc('\n', out);
    }
}

/* "42s ago", "3m05s ago", "2h10m ago". */
static void format_age(char *buf, size_t size, long long ms) {
    long long s = ms > 0 ? ms / 1000 : 0;
    if (s < 60)
        snprintf(buf, size, "%llds ago", s);
    else if (s < 3600)
        snprintf(buf, size, "%lldm%02llds ago", s / 60, s % 60);
    else
        snprintf(buf, size, "%lldh%02lldm ago", s / 3600, s / 60 % 60);
}

/* "[####------]  42.0%": a bar of ten steps and the percentage. */
static void format_progress(char *buf, size_t size, double progress) {
    double p = progress < 0 ? 0 : progress > 100 ? 100 : progress;
    char bar[11];
    int filled = (int)(p / 10);
    for (int i = 0; i < 10; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[10] = '\0';
    snprintf(buf, size, "[%s] %5.1f%%", bar, p);
}

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_running_call(FILE *out, int nw, const char *fn, const json_t *call,
                               long long now) {
    char progress[32], age[32];
    const char *worker = json_string_value(json_object_get(call, "worker"));
    const char *id = json_string_value(json_object_get(call, "identifier"));
    format_progress(progress, sizeof(progress),
                    json_number_value(json_object_get(call, "progress")));
    format_age(age, sizeof(age),
               now - (long long)json_integer_value(json_object_get(call, "updated_ms")));
    fprintf(out, "%-*s  %-19s  %8lld  %-10s  %s  %s%s\n", nw, fn, progress,
            (long long)json_integer_value(json_object_get(call, "attempts")), age,
            id != NULL ? id : "?", worker != NULL ? worker : "-",
            json_is_true(json_object_get(call, "terminate_requested")) ? " (stopping)" : "");
}

/* Each running call of every function, with its progress. */
static void print_running(FILE *out, const fn_status *fns, size_t n) {
    int nw = name_width(fns, n);
    long long now = wall_ms();
    size_t shown = 0;
    fprintf(out, "\nRUNNING CALLS\n");
    for (size_t i = 0; i < n; i++) {
        size_t j;
        const json_t *call;
        json_array_foreach(fns[i].running, j, call) {
            if (shown++ == 0)
                fprintf(out, "%-*s  %-19s  %8s  %-10s  %-64s  %s\n", nw, "FUNCTION", "PROGRESS",
                        "ATTEMPTS", "UPDATED", "IDENTIFIER", "WORKER");
            print_running_call(out, nw, fns[i].name, call, now);
        }
        json_int_t total = fns[i].counts[RUNNING_INDEX];
        if ((json_int_t)json_array_size(fns[i].running) < total)
            fprintf(out, "(%zu of the %lld running calls of %s shown)\n",
                    json_array_size(fns[i].running), (long long)total, fns[i].name);
    }
    if (shown == 0)
        fprintf(out, "none\n");
}

int p2p_cli_status(int argc, char **argv) {
    status_args a;
    int status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    p2p_error err = {0};
    p2p_http_client *client = NULL;
    json_t *functions = NULL;
    fn_status *fns = NULL;
    size_t n = 0;
    char *base = base_url(a.url);
    int rc = base == NULL ? p2p_error_set(&err, P2P_ENOMEM, NULL) : 0;
    if (rc == 0)
        rc = open_client(&a, &client, &err);
    if (rc == 0)
        rc = get_json(client, base, "api/v1/functions", &functions, &err);
    if (rc == 0)
        rc = select_functions(functions, &a, &fns, &n, &err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = fetch_function(client, base, &fns[i], &err);
    if (rc == 0) {
        printf("BROKER %s\n\n", a.url);
        print_counts(stdout, fns, n);
        print_running(stdout, fns, n);
        fflush(stdout);
    } else {
        fprintf(stderr, PROG ": %s\n", err.msg);
    }
    for (size_t i = 0; fns != NULL && i < n; i++)
        json_decref(fns[i].running);
    free(fns);
    json_decref(functions);
    p2p_http_client_free(client);
    free(base);
    return rc == 0 ? 0 : 1;
}
