#include "http_router.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct segment {
    char *text; /* literal, or the capture's name */
    size_t len;
    bool capture;
} segment;

typedef struct compiled {
    p2p_http_route route; /* method and pattern point at owned copies */
    segment *segs;
    size_t n_segs;
} compiled;

struct p2p_http_router {
    compiled *routes;
    size_t n;
};

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int parse_segment(const char *s, size_t len, segment *out, p2p_error *err) {
    bool open = len >= 2 && s[0] == '{' && s[len - 1] == '}';
    const char *text = open ? s + 1 : s;
    size_t n = open ? len - 2 : len;
    for (size_t i = 0; i < n; i++) {
        if (open ? !name_char(text[i]) : (text[i] == '{' || text[i] == '}'))
            return p2p_error_set(err, P2P_EINVAL, "bad segment \"%.*s\"", (int)len, s);
    }
    if (open && n == 0)
        return p2p_error_set(err, P2P_EINVAL, "empty capture name");
    out->capture = open;
    out->len = n;
    out->text = strndup(text, n);
    return out->text != NULL ? 0 : p2p_error_set(err, P2P_ENOMEM, NULL);
}

static int check_captures(const compiled *c, p2p_error *err) {
    size_t captures = 0;
    for (size_t i = 0; i < c->n_segs; i++) {
        if (!c->segs[i].capture)
            continue;
        if (++captures > P2P_HTTP_MAX_PARAMS)
            return p2p_error_set(err, P2P_EINVAL, "more than %d captures", P2P_HTTP_MAX_PARAMS);
        for (size_t j = 0; j < i; j++) {
            if (c->segs[j].capture && strcmp(c->segs[j].text, c->segs[i].text) == 0)
                return p2p_error_set(err, P2P_EINVAL, "capture {%s} appears twice",
                                     c->segs[i].text);
        }
    }
    return 0;
}

/* "/" has no segment; "/a/{b}" has two. Empty segments ("//", trailing "/")
 * are refused so that a pattern reads the same as the paths it matches. */
static int compile_pattern(compiled *c, const char *pattern, p2p_error *err) {
    if (pattern[0] != '/')
        return p2p_error_set(err, P2P_EINVAL, "pattern does not start with '/'");
    if (strcmp(pattern, "/") == 0)
        return 0;
    size_t n = 0;
    for (const char *p = pattern; *p != '\0'; p++)
        n += *p == '/';
    c->segs = calloc(n, sizeof(*c->segs));
    if (c->segs == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    const char *p = pattern + 1;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, '/');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            return p2p_error_set(err, P2P_EINVAL, "empty segment");
        int rc = parse_segment(p, len, &c->segs[i], err);
        c->n_segs = i + 1;
        if (rc != 0)
            return rc;
        p += len + 1;
    }
    return check_captures(c, err);
}

static int compile_route(compiled *c, const p2p_http_route *r, p2p_error *err) {
    if (r->method == NULL || r->method[0] == '\0' || r->pattern == NULL || r->handler == NULL)
        return p2p_error_set(err, P2P_EINVAL, "route needs a method, a pattern and a handler");
    c->route = *r;
    c->route.method = strdup(r->method);
    c->route.pattern = strdup(r->pattern);
    if (c->route.method == NULL || c->route.pattern == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    return compile_pattern(c, r->pattern, err);
}

static void free_compiled(compiled *c) {
    for (size_t i = 0; i < c->n_segs; i++)
        free(c->segs[i].text);
    free(c->segs);
    free((char *)c->route.method);
    free((char *)c->route.pattern);
}

int p2p_http_router_new(const p2p_http_route *routes, size_t n, p2p_http_router **out,
                        p2p_error *err) {
    p2p_http_router *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    r->routes = calloc(n ? n : 1, sizeof(*r->routes));
    if (r->routes == NULL) {
        free(r);
        return p2p_error_set(err, P2P_ENOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        r->n = i + 1;
        int rc = compile_route(&r->routes[i], &routes[i], err);
        if (rc != 0) {
            if (err != NULL) {
                char why[sizeof(err->msg)];
                snprintf(why, sizeof(why), "%s", err->msg);
                p2p_error_set(err, rc, "route %zu (%s %s): %s", i,
                              routes[i].method ? routes[i].method : "?",
                              routes[i].pattern ? routes[i].pattern : "?", why);
            }
            p2p_http_router_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void p2p_http_router_free(p2p_http_router *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        free_compiled(&r->routes[i]);
    free(r->routes);
    free(r);
}

static bool path_matches(const compiled *c, const char *path, size_t len) {
    if (len == 0 || path[0] != '/')
        return false;
    if (c->n_segs == 0)
        return len == 1;
    const char *p = path + 1, *end = path + len;
    for (size_t i = 0; i < c->n_segs; i++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash != NULL ? slash : end;
        size_t seg_len = (size_t)(seg_end - p);
        const segment *s = &c->segs[i];
        if (seg_len == 0 || (!s->capture && (seg_len != s->len || memcmp(p, s->text, s->len))))
            return false;
        bool last = i + 1 == c->n_segs;
        if (last != (slash == NULL))
            return false;
        p = seg_end + 1;
    }
    return true;
}

static int capture(const compiled *c, const char *path, p2p_http_match *m) {
    const char *p = path + 1;
    for (size_t i = 0; i < c->n_segs; i++) {
        const char *slash = strchr(p, '/');
        size_t seg_len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (c->segs[i].capture) {
            char *v = strndup(p, seg_len);
            if (v == NULL)
                return P2P_ENOMEM;
            MHD_http_unescape(v);
            m->names[m->n_params] = c->segs[i].text;
            m->values[m->n_params++] = v;
        }
        p += seg_len + 1;
    }
    return 0;
}

/* Appends ", METHOD" when it fits whole: a cut method name would mislead. */
static void add_allow(char *allow, size_t size, const char *method) {
    size_t used = strnlen(allow, size);
    size_t need = (used > 0 ? 2 : 0) + strlen(method) + 1;
    if (used + need > size)
        return;
    snprintf(allow + used, size - used, "%s%s", used > 0 ? ", " : "", method);
}

int p2p_http_router_match(const p2p_http_router *r, const char *method, const char *path,
                          size_t path_len, p2p_http_match *m, char *allow, size_t allow_size) {
    *m = (p2p_http_match){0};
    if (allow_size > 0)
        allow[0] = '\0';
    char *copy = strndup(path, path_len);
    if (copy == NULL)
        return P2P_ENOMEM;
    int rc = P2P_ENOTFOUND;
    for (size_t i = 0; i < r->n; i++) {
        const compiled *c = &r->routes[i];
        if (!path_matches(c, copy, path_len))
            continue;
        if (strcmp(c->route.method, method) == 0) {
            m->route = &c->route;
            rc = capture(c, copy, m);
            break;
        }
        rc = P2P_ECONFLICT;
        add_allow(allow, allow_size, c->route.method);
    }
    free(copy);
    if (rc != 0)
        p2p_http_match_cleanup(m);
    return rc;
}

const char *p2p_http_match_param(const p2p_http_match *m, const char *name) {
    for (size_t i = 0; i < m->n_params; i++) {
        if (strcmp(m->names[i], name) == 0)
            return m->values[i];
    }
    return NULL;
}

void p2p_http_match_cleanup(p2p_http_match *m) {
    for (size_t i = 0; i < m->n_params; i++)
        free(m->values[i]);
    *m = (p2p_http_match){0};
}
