/* Broker URLs: the discovery file and the nodes route. URLs are checked and
 * normalised with libcurl's URL parser (CURLU), never by hand. */
#include "discovery.h"

#include "fsutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define DISCOVERY_FILE_MAX (1u << 20)

void p2p_discovery_list_init(p2p_discovery_list *list) {
    list->items = NULL;
    list->count = 0;
}

void p2p_discovery_list_cleanup(p2p_discovery_list *list) {
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    p2p_discovery_list_init(list);
}

bool p2p_discovery_list_has(const p2p_discovery_list *list, const char *url) {
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->items[i], url) == 0)
            return true;
    }
    return false;
}

int p2p_discovery_list_add(p2p_discovery_list *list, const char *url) {
    if (p2p_discovery_list_has(list, url))
        return 0;
    char **grown = realloc(list->items, (list->count + 1) * sizeof(*grown));
    if (grown == NULL)
        return P2P_ENOMEM;
    list->items = grown;
    if ((list->items[list->count] = strdup(url)) == NULL)
        return P2P_ENOMEM;
    list->count++;
    return 1;
}

/* True when `part` of `u` is absent. */
static bool part_absent(CURLU *u, CURLUPart part) {
    char *value = NULL;
    CURLUcode uc = curl_url_get(u, part, &value, 0);
    curl_free(value);
    return uc != CURLUE_OK;
}

static int check_parts(CURLU *u, const char *url, p2p_error *err) {
    char *scheme = NULL;
    bool web = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
               (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    if (!web)
        return p2p_error_set(err, P2P_EINVAL, "\"%s\" is not an http:// or https:// URL", url);
    if (part_absent(u, CURLUPART_HOST))
        return p2p_error_set(err, P2P_EINVAL, "\"%s\" has no host", url);
    if (!part_absent(u, CURLUPART_USER) || !part_absent(u, CURLUPART_PASSWORD))
        return p2p_error_set(err, P2P_EINVAL, "\"%s\": a broker URL takes no user or password",
                             url);
    if (!part_absent(u, CURLUPART_QUERY) || !part_absent(u, CURLUPART_FRAGMENT))
        return p2p_error_set(err, P2P_EINVAL, "\"%s\": a broker URL takes no query or fragment",
                             url);
    return 0;
}

/* Host names are case-insensitive: one spelling, so that a broker is not
 * polled twice under two. */
static int lower_host(CURLU *u, p2p_error *err) {
    char *host = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory reading a URL");
    for (char *c = host; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    int rc = curl_url_set(u, CURLUPART_HOST, host, 0) == CURLUE_OK
                 ? 0
                 : p2p_error_set(err, P2P_ENOMEM, "out of memory writing a URL");
    curl_free(host);
    return rc;
}

/* Makes the path end with '/', so that "api/v1/..." resolves under it. */
static int slash_path(CURLU *u, p2p_error *err) {
    char *path = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory reading a URL");
    size_t len = strlen(path);
    int rc = 0;
    if (len == 0 || path[len - 1] != '/') {
        char *slashed = malloc(len + 2);
        if (slashed == NULL) {
            rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
        } else {
            memcpy(slashed, path, len);
            memcpy(slashed + len, "/", 2);
            if (curl_url_set(u, CURLUPART_PATH, slashed, 0) != CURLUE_OK)
                rc = p2p_error_set(err, P2P_ENOMEM, "out of memory writing a URL");
            free(slashed);
        }
    }
    curl_free(path);
    return rc;
}

int p2p_discovery_normalize(const char *url, char **out, p2p_error *err) {
    *out = NULL;
    if (url == NULL || url[0] == '\0')
        return p2p_error_set(err, P2P_EINVAL, "empty broker URL");
    if (strlen(url) > P2P_DISCOVERY_URL_MAX)
        return p2p_error_set(err, P2P_EINVAL, "broker URL longer than %d bytes",
                             P2P_DISCOVERY_URL_MAX);
    CURLU *u = curl_url();
    char *text = NULL;
    if (u == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    int rc = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK)
        rc = p2p_error_set(err, P2P_EINVAL, "\"%s\" is not a URL: %s", url, curl_url_strerror(uc));
    if (rc == 0)
        rc = check_parts(u, url, err);
    if (rc == 0)
        rc = lower_host(u, err);
    if (rc == 0)
        rc = slash_path(u, err);
    if (rc == 0 && curl_url_get(u, CURLUPART_URL, &text, 0) != CURLUE_OK)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory writing a URL");
    if (rc == 0 && (*out = strdup(text)) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    curl_free(text);
    curl_url_cleanup(u);
    return rc;
}

/* The URL of one line: what is left without the comment and the blanks
 * around. Writes a NUL-terminated copy into `buf`; false when too long. */
static bool line_url(const char *line, size_t len, char *buf, size_t size) {
    const char *hash = memchr(line, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - line);
    while (len > 0 && isspace((unsigned char)line[0])) {
        line++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        len--;
    if (len >= size)
        return false;
    memcpy(buf, line, len);
    buf[len] = '\0';
    return true;
}

static int parse_line(const char *line, size_t len, const char *source, size_t lineno,
                      p2p_discovery_list *list, p2p_error *err) {
    char url[P2P_DISCOVERY_URL_MAX + 1];
    if (!line_url(line, len, url, sizeof(url)))
        return p2p_error_set(err, P2P_EINVAL, "%s:%zu: line longer than %d bytes", source, lineno,
                             P2P_DISCOVERY_URL_MAX);
    if (url[0] == '\0')
        return 0;
    if (memchr(line, '\0', len) != NULL)
        return p2p_error_set(err, P2P_EINVAL, "%s:%zu: NUL byte in the line", source, lineno);
    char *normal = NULL;
    p2p_error e = {0};
    int rc = p2p_discovery_normalize(url, &normal, &e);
    if (rc != 0)
        return p2p_error_set(err, rc, "%s:%zu: %s", source, lineno, e.msg);
    rc = p2p_discovery_list_add(list, normal);
    free(normal);
    return rc < 0 ? p2p_error_set(err, rc, "out of memory") : 0;
}

int p2p_discovery_parse(const char *text, size_t len, const char *source, p2p_discovery_list *list,
                        p2p_error *err) {
    size_t lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - start) : len - pos;
        lineno++;
        int rc = parse_line(start, line_len, source, lineno, list, err);
        if (rc != 0)
            return rc;
        pos += line_len + 1;
    }
    return 0;
}

int p2p_discovery_read(const char *path, p2p_discovery_list *list, p2p_error *err) {
    char *text = NULL;
    size_t len = 0;
    p2p_error e = {0};
    int rc = p2p_fs_read_file(path, DISCOVERY_FILE_MAX, &text, &len, &e);
    if (rc != 0)
        return p2p_error_set(err, rc, "discovery file %s: %s", path, e.msg);
    rc = p2p_discovery_parse(text, len, path, list, err);
    free(text);
    return rc;
}

static int nodes_entry(const json_t *node, p2p_discovery_list *list, size_t *skipped) {
    const char *url = json_string_value(json_object_get(node, "url"));
    char *normal = NULL;
    if (url == NULL || p2p_discovery_normalize(url, &normal, NULL) != 0) {
        (*skipped)++;
        return 0;
    }
    int rc = p2p_discovery_list_add(list, normal);
    free(normal);
    return rc < 0 ? rc : 0;
}

int p2p_discovery_nodes(const json_t *answer, p2p_discovery_list *list, char self_uuid[37],
                        size_t *skipped, p2p_error *err) {
    size_t ignored = 0;
    skipped = skipped != NULL ? skipped : &ignored;
    *skipped = 0;
    if (self_uuid != NULL)
        self_uuid[0] = '\0';
    const json_t *nodes = json_object_get(answer, "nodes");
    if (!json_is_array(nodes))
        return p2p_error_set(err, P2P_EPROTO, "nodes answer without a \"nodes\" array");
    size_t i;
    const json_t *node;
    json_array_foreach(nodes, i, node) {
        if (!json_is_object(node)) {
            (*skipped)++;
            continue;
        }
        const char *uuid = json_string_value(json_object_get(node, "uuid"));
        if (i == 0 && self_uuid != NULL && uuid != NULL && strlen(uuid) == 36)
            memcpy(self_uuid, uuid, 37);
        if (nodes_entry(node, list, skipped) != 0)
            return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    }
    return 0;
}
