/* The node routes: health, metrics, nodes, functions and the status page. */
#include "broker_internal.h"

#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void p2p__route_health(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    p2p_http_respond_json(
        req, 200,
        json_pack("{s:s, s:s, s:s}", "status", "ok", "node", b->node_id, "version", P2P_VERSION));
}

/* Calls per status of every registered function, into `out` (n slots). */
static int count_calls(p2p_broker *b, p2p_metrics_function *out, size_t n, p2p_error *err) {
    for (size_t i = 0; i < n; i++) {
        out[i].name = p2p_schema_name(p2p_registry_at(b->registry, i));
        int rc = p2p_store_count(b->store, out[i].name, out[i].counts, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void p2p__route_metrics(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    size_t n = p2p_registry_count(b->registry);
    p2p_metrics_function *fns = calloc(n + 1, sizeof(*fns));
    p2p_metrics_gauges g = {.functions = fns, .n_functions = n};
    p2p_error err = {0};
    char *text = NULL;
    size_t len = 0;
    int rc = fns != NULL ? count_calls(b, fns, n, &err) : p2p_error_set(&err, P2P_ENOMEM, NULL);
    if (rc == 0) {
        p2p_blobstore_totals(b->blobs, &g.blobs, &g.blob_bytes);
        g.parked = p2p_http_server_parked(atomic_load(&b->server));
        p2p_store_get_stats(b->store, &g.store);
        rc = p2p_metrics_render(b->metrics, &g, &text, &len, &err);
    }
    if (rc != 0)
        p2p_http_respond_err(req, &err);
    else
        p2p_http_respond_bytes(req, 200, text, len, "text/plain; version=0.0.4; charset=utf-8");
    free(text);
    free(fns);
}

void p2p__route_nodes(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    json_t *nodes = json_array();
    json_t *self = json_pack("{s:s, s:s}", "uuid", b->node_id, "url",
                             b->public_url != NULL ? b->public_url : b->url);
    int rc = nodes != NULL && json_array_append_new(nodes, self) == 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < b->opts.n_peers; i++)
        rc = json_array_append_new(nodes, json_pack("{s:n, s:s}", "uuid", "url", b->peers[i]));
    json_t *body = rc == 0 ? json_object() : NULL;
    if (body == NULL || json_object_set_new(body, "nodes", nodes) != 0) {
        if (body == NULL)
            json_decref(nodes);
        json_decref(body);
        p2p_http_respond_error(req, 0, P2P_ENOMEM, "out of memory");
        return;
    }
    p2p_http_respond_json(req, 200, body);
}

void p2p__route_functions(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    json_t *body = NULL;
    p2p_error err = {0};
    if (p2p_registry_to_json(b->registry, &body, &err) != 0)
        p2p_http_respond_err(req, &err);
    else
        p2p_http_respond_json(req, 200, body);
}

/* Writes `s` with the five HTML special characters escaped. */
static void html_escaped(FILE *f, const char *s) {
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static int render_page(p2p_broker *b, FILE *f, p2p_error *err) {
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>p2prpc broker</title>"
          "</head><body>\n<h1>p2prpc broker</h1>\n<p>node ",
          f);
    html_escaped(f, b->node_id);
    fputs(", version " P2P_VERSION "</p>\n<table border=\"1\">\n<tr><th>function</th>", f);
    for (int s = 0; s < P2P_CALL_STATUS_COUNT; s++)
        fprintf(f, "<th>%s</th>", p2p_call_status_name((p2p_call_status)s));
    fputs("</tr>\n", f);
    for (size_t i = 0; i < p2p_registry_count(b->registry); i++) {
        const char *name = p2p_schema_name(p2p_registry_at(b->registry, i));
        uint64_t counts[P2P_CALL_STATUS_COUNT];
        int rc = p2p_store_count(b->store, name, counts, err);
        if (rc != 0)
            return rc;
        fputs("<tr><td>", f);
        html_escaped(f, name);
        fputs("</td>", f);
        for (int s = 0; s < P2P_CALL_STATUS_COUNT; s++)
            fprintf(f, "<td>%llu</td>", (unsigned long long)counts[s]);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n</body></html>\n", f);
    return 0;
}

void p2p__route_status_page(p2p_http_request *req, void *ctx) {
    p2p_broker *b = ctx;
    char *html = NULL;
    size_t len = 0;
    p2p_error err = {0};
    FILE *f = open_memstream(&html, &len);
    int rc = f != NULL ? render_page(b, f, &err) : p2p_error_set(&err, P2P_ENOMEM, NULL);
    if (f != NULL && (fclose(f) != 0 || html == NULL) && rc == 0)
        rc = p2p_error_set(&err, P2P_ENOMEM, NULL);
    if (rc != 0)
        p2p_http_respond_err(req, &err);
    else
        p2p_http_respond_bytes(req, 200, html, len, "text/html; charset=utf-8");
    free(html);
}
