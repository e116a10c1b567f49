/* The parts of http_client.h that need no curl handle: reading a reply
 * (status and JSON error bodies to p2p error codes) and URL helpers over
 * libcurl's URL parser. */
#include "http_client.h"

#include "http_client_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void p2p_http_reply_cleanup(p2p_http_reply *resp) {
    if (resp == NULL)
        return;
    free(resp->body);
    *resp = (p2p_http_reply){0};
}

/* ---- reading responses ---- */

static const struct {
    long status;
    int code;
} status_codes[] = {
    {400, P2P_EINVAL},    {401, P2P_EAUTH},    {403, P2P_EAUTH},     {404, P2P_ENOTFOUND},
    {409, P2P_ECONFLICT}, {413, P2P_ETOOBIG},  {422, P2P_EHASH},     {500, P2P_EINTERNAL},
    {502, P2P_EPROTO},    {503, P2P_EUNAVAIL}, {504, P2P_ETIMEDOUT},
};

/* The code for a status when the body does not name one. */
static int status_to_code(long status) {
    for (size_t i = 0; i < sizeof(status_codes) / sizeof(status_codes[0]); i++) {
        if (status_codes[i].status == status)
            return status_codes[i].code;
    }
    return status >= 400 && status < 500 ? P2P_EINVAL : P2P_EPROTO;
}

static int name_to_code(const char *name) {
    for (int c = 0; c >= P2P_ERRCODE_MIN; c--) {
        if (strcmp(p2p_error_name(c), name) == 0)
            return c;
    }
    return 1; /* not a known name */
}

int p2p_http_reply_check(const p2p_http_reply *resp, p2p_error *err) {
    if (resp->status / 100 == 2 || resp->already_complete)
        return 0;
    int code = status_to_code(resp->status);
    json_t *root = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    const char *name = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int named = name ? name_to_code(name) : 1;
    if (named < 0)
        code = named;
    if (msg != NULL)
        p2p_error_set(err, code, "HTTP %ld: %s", resp->status, msg);
    else
        p2p_error_set(err, code, "HTTP %ld: %.120s", resp->status,
                      resp->body && resp->body_len ? resp->body : p2p_strerror(code));
    json_decref(root);
    return code;
}

int p2p_http_reply_json(const p2p_http_reply *resp, json_t **out, p2p_error *err) {
    json_error_t jerr;
    json_t *root = resp->body ? json_loadb(resp->body, resp->body_len, 0, &jerr) : NULL;
    if (root == NULL)
        return p2p_error_set(err, P2P_EPROTO, "response body is not JSON: %s",
                             resp->body ? jerr.text : "no body");
    *out = root;
    return 0;
}

/* ---- URLs ---- */

static int url_result(CURLU *u, char **out, const char *what, p2p_error *err) {
    char *s = NULL;
    if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
        return p2p_error_set(err, P2P_EINVAL, "http: cannot build a URL from %s", what);
    *out = strdup(s);
    curl_free(s);
    return *out ? 0 : p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
}

int p2p_http_url_join(const char *base, const char *ref, char **out, p2p_error *err) {
    if (base == NULL || ref == NULL || out == NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: base, reference and output are required");
    CURLU *u = curl_url();
    int rc = 0;
    if (u == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, base, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_set(u, CURLUPART_URL, ref, 0); /* relative to what is set */
    if (uc != CURLUE_OK)
        rc = p2p_error_set(err, P2P_EINVAL, "http: cannot join \"%s\" to \"%s\": %s", ref, base,
                           curl_url_strerror(uc));
    else
        rc = url_result(u, out, ref, err);
    curl_url_cleanup(u);
    return rc;
}

int p2p_http_url_add_query(char **url, const char *name, const char *value, p2p_error *err) {
    if (url == NULL || *url == NULL || name == NULL || value == NULL)
        return p2p_error_set(err, P2P_EINVAL, "http: URL, name and value are required");
    /* curl_easy_escape writes a space as %20, as every server decodes it. */
    char *ename = p2p_http_escape(name), *evalue = p2p_http_escape(value), *pair = NULL;
    char *joined = NULL;
    CURLU *u = curl_url();
    size_t n = (ename ? strlen(ename) : 0) + (evalue ? strlen(evalue) : 0) + 2;
    int rc = 0;
    if (ename == NULL || evalue == NULL || u == NULL || (pair = malloc(n)) == NULL) {
        rc = p2p_error_set(err, P2P_ENOMEM, "http: out of memory");
        goto cleanup;
    }
    snprintf(pair, n, "%s=%s", ename, evalue);
    if (curl_url_set(u, CURLUPART_URL, *url, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_QUERY, pair, CURLU_APPENDQUERY) != CURLUE_OK) {
        rc = p2p_error_set(err, P2P_EINVAL, "http: cannot add %s to %s", name, *url);
        goto cleanup;
    }
    rc = url_result(u, &joined, *url, err);
    if (rc == 0) {
        free(*url);
        *url = joined;
    }
cleanup:
    free(ename);
    free(evalue);
    free(pair);
    curl_url_cleanup(u);
    return rc;
}

char *p2p_http_escape(const char *s) {
    if (s == NULL)
        return NULL;
    if (!p2p__http_client_global_init())
        return NULL;
    char *e = curl_easy_escape(NULL, s, 0);
    if (e == NULL)
        return NULL;
    char *copy = strdup(e);
    curl_free(e);
    return copy;
}

int p2p_http_client_post_json(p2p_http_client *c, const char *url, const json_t *body,
                              bool idempotent, json_t **reply, long *status, p2p_error *err) {
    if (reply != NULL)
        *reply = NULL;
    *status = 0;
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory encoding a request");
    p2p_http_call req = {.method = "POST",
                         .url = url,
                         .body = text,
                         .body_len = strlen(text),
                         .content_type = "application/json",
                         .idempotent = idempotent};
    p2p_http_reply resp;
    int rc = p2p_http_client_request(c, &req, &resp, err);
    *status = resp.status;
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, err);
    if (rc == 0 && reply != NULL && resp.body_len > 0)
        rc = p2p_http_reply_json(&resp, reply, err);
    p2p_http_reply_cleanup(&resp);
    free(text);
    return rc;
}

char *p2p_http_api_url(const char *base, const char *scope, const char *route) {
    size_t len = strlen(base) + strlen(scope) + strlen(route) + 16;
    char *url = malloc(len);
    if (url != NULL)
        snprintf(url, len, "%sapi/v1/%s/%s", base, scope, route);
    return url;
}
