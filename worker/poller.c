/* One poller per (broker, function): a thread that keeps one long-poll
 * search_work open while the worker has a free slot and can_do_work says
 * yes, and hands each claimed call to a runner.
 *
 * search_work is not idempotent (a claim), so it does not go through
 * p2p_http_client's retries: it is one libcurl easy handle in a multi handle
 * of its own, which curl_multi_wakeup interrupts at once when the worker
 * stops (the broker then drops the wait without claiming anything). Capacity
 * is checked before claiming; when several pollers claim for the last slot
 * at once, the losers give their calls back with a release push, which
 * queues them again at once without counting an attempt. */
#include "worker_internal.h"

#include "log.h"
#include "sign.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

/* Largest search_work answer (the arguments: push_update takes 4 MiB). */
#define ANSWER_MAX (16u << 20)
/* The answer may come this long after the wait ran out. */
#define SLACK_MS 15000
/* How long a stopping worker still listens for a search_work answer. */
#define DRAIN_MS 250
/* How long the pollers of the broker served last hold back, so that the
 * claims of the other brokers reach a freed slot first. */
#define FAIR_YIELD_MS 25

struct p2p__poller {
    p2p_worker *w;
    p2p__broker *b;
    const p2p_worker_function *fn;
    const char *function;
    pthread_t thread;
    bool started;
    CURLM *multi;
    CURL *easy;
    char *url;          /* .../search_work?wait=N */
    char *target;       /* its path and query: what the signature covers */
    char *body;         /* {"worker": NODE_ID} */
    bool verified;      /* the broker serves this very function (fingerprint) */
    bool mismatch_said; /* the log said it does not */
    int64_t retry_at_ms;
    uint64_t yielded; /* the worker's `served` count this poller last held back for */
    char *buf;        /* the answer */
    size_t len;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t on_write(char *data, size_t size, size_t n, void *arg) {
    p2p__poller *p = arg;
    size_t len = size * n;
    if (len > ANSWER_MAX - p->len)
        return 0;
    char *grown = realloc(p->buf, p->len + len + 1);
    if (grown == NULL)
        return 0;
    p->buf = grown;
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    p->buf[p->len] = '\0';
    return len;
}

static struct curl_slist *make_headers(const p2p__poller *p, p2p_error *err) {
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = h != NULL ? curl_slist_append(h, "Expect:") : NULL;
    const p2p_worker *w = p->w;
    if (h == NULL || w->secret == NULL)
        return h;
    p2p_sign_headers sh;
    if (p2p_sign_request(w->secret, w->opts.secret_len, "POST", p->target, (int64_t)time(NULL), &sh,
                         err) != 0) {
        curl_slist_free_all(h);
        return NULL;
    }
    char line[3][128];
    snprintf(line[0], sizeof(line[0]), "%s: %s", P2P_SIGN_HEADER_TIME, sh.time);
    snprintf(line[1], sizeof(line[1]), "%s: %s", P2P_SIGN_HEADER_NONCE, sh.nonce);
    snprintf(line[2], sizeof(line[2]), "%s: %s", P2P_SIGN_HEADER_SIGNATURE, sh.signature);
    for (int i = 0; h != NULL && i < 3; i++) {
        struct curl_slist *grown = curl_slist_append(h, line[i]);
        if (grown == NULL)
            curl_slist_free_all(h);
        h = grown;
    }
    return h;
}

static void set_options(p2p__poller *p, struct curl_slist *headers) {
    const p2p_worker *w = p->w;
    CURL *h = p->easy;
    curl_easy_reset(h); /* keeps the connection */
    curl_easy_setopt(h, CURLOPT_URL, p->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)w->opts.poll_wait_s * 1000 + SLACK_MS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "p2prpc/" P2P_VERSION);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, p->errbuf);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, w->opts.insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, w->opts.insecure ? 0L : 2L);
    if (w->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, w->ca_file);
    if (w->ca_path != NULL)
        curl_easy_setopt(h, CURLOPT_CAPATH, w->ca_path);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, p);
}

/* Drives the transfer until it ends or the worker stops (P2P_ECANCELED).
 * A stop does not drop the long-poll at once: the broker may have claimed a
 * call for it an instant before, and that answer, dropped, would leave the
 * call to its lease's expiry. A short drain lets such an answer arrive (the
 * call is then released); past it the request is dropped, and the broker,
 * seeing the hang-up, claims nothing more for it. */
static int drive(p2p__poller *p, CURLcode *cc) {
    int running = 1;
    int64_t drain_until = 0;
    *cc = CURLE_OK;
    while (running) {
        if (curl_multi_perform(p->multi, &running) != CURLM_OK)
            return P2P_EINTERNAL;
        if (!running)
            break;
        int64_t now = p2p__worker_now_ms();
        if (atomic_load(&p->w->stopping) && drain_until == 0)
            drain_until = now + DRAIN_MS;
        if (drain_until != 0 && now >= drain_until)
            return P2P_ECANCELED;
        int timeout = drain_until != 0 ? (int)(drain_until - now) : 60000;
        /* Sleeps until data, curl's own timer, or curl_multi_wakeup. */
        if (curl_multi_poll(p->multi, NULL, 0, timeout, NULL) != CURLM_OK)
            return P2P_EINTERNAL;
    }
    int left = 0;
    CURLMsg *msg = curl_multi_info_read(p->multi, &left);
    *cc = msg != NULL && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_OK;
    return 0;
}

/* One search_work. Returns 0 with `*status` when an answer arrived (body in
 * p->buf), P2P_ECANCELED when the worker stopped, or P2P_EUNAVAIL. */
static int search_work(p2p__poller *p, long *status, p2p_error *err) {
    *status = 0;
    p->len = 0;
    p->errbuf[0] = '\0';
    struct curl_slist *headers = make_headers(p, err);
    if (headers == NULL)
        return err != NULL && err->code != 0 ? err->code : P2P_ENOMEM;
    set_options(p, headers);
    CURLcode cc = CURLE_OK;
    int rc = curl_multi_add_handle(p->multi, p->easy) == CURLM_OK ? drive(p, &cc) : P2P_EINTERNAL;
    curl_multi_remove_handle(p->multi, p->easy);
    curl_slist_free_all(headers);
    if (rc == P2P_ECANCELED)
        return p2p_error_set(err, rc, "stopping");
    if (rc != 0 || cc != CURLE_OK)
        return p2p_error_set(err, P2P_EUNAVAIL, "search_work at %s: %s", p->b->url,
                             p->errbuf[0] ? p->errbuf
                                          : curl_easy_strerror(cc != CURLE_OK ? cc : CURLE_OK));
    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* Asks the broker whether it serves this very function (same fingerprint).
 * Returns 0, P2P_ENOTFOUND, P2P_ECONFLICT, or a transport error. */
static int verify(p2p__poller *p, p2p_error *err) {
    char *url = p2p_http_api_url(p->b->url, "functions", "");
    if (url == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    url[strlen(url) - 1] = '\0'; /* .../api/v1/functions */
    p2p_http_call req = {.method = "GET", .url = url, .idempotent = true};
    p2p_http_reply resp;
    json_t *answer = NULL;
    /* The quick client: the loop retries, and a stop does not wait long. */
    int rc = p2p_http_client_request(p->w->quick, &req, &resp, err);
    if (rc == 0)
        rc = p2p_http_reply_check(&resp, err);
    if (rc == 0)
        rc = p2p_http_reply_json(&resp, &answer, err);
    p2p_http_reply_cleanup(&resp);
    free(url);
    if (rc != 0)
        return rc;
    const char *mine = p2p_schema_fingerprint(p->fn->schema);
    size_t i;
    const json_t *f;
    rc = p2p_error_set(err, P2P_ENOTFOUND, "%s does not serve %s", p->b->url, p->function);
    json_array_foreach(json_object_get(answer, "functions"), i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *fp = json_string_value(json_object_get(f, "fingerprint"));
        if (name == NULL || strcmp(name, p->function) != 0)
            continue;
        rc = fp != NULL && strcmp(fp, mine) == 0
                 ? 0
                 : p2p_error_set(err, P2P_ECONFLICT,
                                 "%s serves another version of %s (fingerprint %s, not %s)",
                                 p->b->url, p->function, fp ? fp : "none", mine);
    }
    json_decref(answer);
    return rc;
}

static bool ensure_verified(p2p__poller *p) {
    p2p_error err = {0};
    int rc = verify(p, &err);
    if (rc == 0) {
        p->verified = true;
        p->mismatch_said = false;
        p2p__broker_ok(p->w, p->b);
        P2P_INFO("worker: polling %s for %s", p->b->url, p->function);
    } else if (rc == P2P_ENOTFOUND || rc == P2P_ECONFLICT) {
        p2p__broker_ok(p->w, p->b);
        /* Said once; then quietly asked again, since a broker can change. */
        if (!p->mismatch_said)
            P2P_WARN("worker: %s; asking again every %d s", err.msg, P2P__MISMATCH_RETRY_MS / 1000);
        p->mismatch_said = true;
        p->retry_at_ms = p2p__worker_now_ms() + P2P__MISMATCH_RETRY_MS;
    } else {
        p2p__broker_failed(p->w, p->b, &err);
    }
    return p->verified;
}

/* A claimed call: to a runner when a slot is free and the predicate still
 * agrees, else straight back to the broker. */
static void take_call(p2p__poller *p, const json_t *answer) {
    p2p_worker *w = p->w;
    p2p__claim claim;
    p2p_error err = {0};
    if (p2p__claim_parse(answer, p->function, &claim, &err) != 0) {
        P2P_ERROR("worker: %s: %s", p->b->url, err.msg);
        return;
    }
    p2p__worker_count(w, &w->stats.claimed);
    unsigned slot = 0;
    bool join = false;
    if (atomic_load(&w->stopping) || !p2p__worker_take_slot(w, &slot, &join)) {
        p2p__claim_release(w, p->b, p->function, &claim);
    } else if (!p2p__worker_can_do_work(w)) {
        p2p__worker_put_slot(w, slot);
        p2p__claim_release(w, p->b, p->function, &claim);
    } else {
        if (join)
            pthread_join(w->slots[slot].thread, NULL);
        pthread_mutex_lock(&w->lock);
        w->last_served = p->b;
        w->served++;
        pthread_mutex_unlock(&w->lock);
        /* The last free slot: this poller would only wait for one, so it
         * runs the call itself. */
        bool here = p2p__worker_full(w);
        if (p2p__runner_start(w, slot, p->b, p->fn, &claim, here, &err) != 0) {
            P2P_ERROR("worker: %s", err.msg);
            p2p__worker_put_slot(w, slot);
        }
    }
    p2p__claim_cleanup(&claim);
}

/* The error a non-2xx answer carries, for the log. */
static void answer_error(const p2p__poller *p, long status, p2p_error *err) {
    json_t *j = json_loads(p->buf != NULL ? p->buf : "", 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    p2p_error_set(err, status == 401 ? P2P_EAUTH : P2P_EPROTO, "search_work at %s: HTTP %ld: %s",
                  p->b->url, status, msg != NULL ? msg : "no message");
    json_decref(j);
}

static void poll_once(p2p__poller *p) {
    long status = 0;
    p2p_error err = {0};
    int rc = search_work(p, &status, &err);
    if (rc == P2P_ECANCELED)
        return;
    if (rc != 0) {
        p2p__broker_failed(p->w, p->b, &err);
        return;
    }
    if (status == 200) {
        p2p__broker_ok(p->w, p->b);
        json_t *answer = json_loadb(p->buf != NULL ? p->buf : "", p->len, 0, NULL);
        take_call(p, answer);
        json_decref(answer);
    } else if (status == 204) {
        p2p__broker_ok(p->w, p->b);
    } else {
        answer_error(p, status, &err);
        if (status == 404)
            p->verified = false; /* the broker changed: ask what it serves */
        p2p__broker_failed(p->w, p->b, &err);
    }
}

static int64_t retry_at(p2p__poller *p) {
    pthread_mutex_lock(&p->w->lock);
    int64_t at = p->b->retry_at_ms;
    pthread_mutex_unlock(&p->w->lock);
    return at > p->retry_at_ms ? at : p->retry_at_ms;
}

/* Fairness between brokers. Every poller with work races for a freed slot,
 * and whoever answers first wins, so one broker could win many times in a
 * row. When this poller's broker took the last slot and others are known, it
 * holds back once, briefly: another broker with queued work claims first; an
 * idle one costs this broker FAIR_YIELD_MS. Returns false when stopping. */
static bool yield_to_others(p2p__poller *p) {
    p2p_worker *w = p->w;
    pthread_mutex_lock(&w->lock);
    bool hold = w->nbrokers > 1 && w->last_served == p->b && p->yielded != w->served;
    p->yielded = w->served;
    pthread_mutex_unlock(&w->lock);
    return !hold || p2p__worker_wait_until(w, p2p__worker_now_ms() + FAIR_YIELD_MS);
}

static void *poller_main(void *arg) {
    p2p__poller *p = arg;
    p2p_worker *w = p->w;
    while (p2p__worker_wait_capacity(w)) {
        int64_t at = retry_at(p);
        if (p2p__worker_now_ms() < at) {
            p2p__worker_wait_until(w, at);
            continue;
        }
        if (!p->verified && !ensure_verified(p))
            continue;
        if (!p2p__worker_can_do_work(w)) {
            p2p__worker_wait_until(w, p2p__worker_now_ms() + P2P__CAN_DO_RECHECK_MS);
            continue;
        }
        if (!yield_to_others(p))
            break;
        poll_once(p);
    }
    return NULL;
}

static int prepare(p2p__poller *p, p2p_error *err) {
    char route[64];
    snprintf(route, sizeof(route), "search_work?wait=%d", p->w->opts.poll_wait_s);
    p->url = p2p_http_api_url(p->b->url, p->function, route);
    p->multi = curl_multi_init();
    p->easy = curl_easy_init();
    json_t *body = json_pack("{s:s}", "worker", p->w->node_id);
    p->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (p->url == NULL || p->multi == NULL || p->easy == NULL || p->body == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    /* What libcurl will put on the request line, as http_client signs it. */
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    int rc = u != NULL && curl_url_set(u, CURLUPART_URL, p->url, 0) == CURLUE_OK &&
                     curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
                     curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK
                 ? 0
                 : p2p_error_set(err, P2P_EINVAL, "bad search_work URL %s", p->url);
    size_t len = rc == 0 ? strlen(path) + strlen(query) + 2 : 0;
    if (rc == 0 && (p->target = malloc(len)) == NULL)
        rc = p2p_error_set(err, P2P_ENOMEM, "out of memory");
    if (rc == 0)
        snprintf(p->target, len, "%s?%s", path, query);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

int p2p__poller_start(p2p_worker *w, p2p__broker *b, const p2p_worker_function *fn,
                      p2p__poller **out, p2p_error *err) {
    *out = NULL;
    p2p__poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return p2p_error_set(err, P2P_ENOMEM, "out of memory");
    *p = (p2p__poller){.w = w, .b = b, .fn = fn, .function = p2p_schema_name(fn->schema)};
    int rc = prepare(p, err);
    if (rc == 0 && (rc = pthread_create(&p->thread, NULL, poller_main, p)) != 0)
        rc = p2p_error_errno(err, P2P_ENOMEM, rc, "cannot start a poller thread");
    p->started = rc == 0;
    if (rc != 0) {
        p2p__poller_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void p2p__poller_wake(p2p__poller *p) {
    if (p != NULL)
        curl_multi_wakeup(p->multi);
}

void p2p__poller_free(p2p__poller *p) {
    if (p == NULL)
        return;
    if (p->started)
        pthread_join(p->thread, NULL);
    if (p->easy != NULL)
        curl_easy_cleanup(p->easy);
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi);
    free(p->url);
    free(p->target);
    free(p->body);
    free(p->buf);
    free(p);
}
