/* kill -9 of the broker in the middle of work, then a restart on the same
 * store (--store sqlite:PATH) and blob directory (--blobs DIR).
 *
 * Two pushers create 200 calls (with execute), two workers claim and
 * complete them, and an uploader stores blobs, all at once; the broker gets
 * SIGKILL while they run. Every thread records what the broker acknowledged
 * (a 2xx answer). After the restart, every acknowledged change is there and
 * every call is in a state its history allows:
 *   - a create answered 201 exists;
 *   - a completion answered 200 is done, with exactly those outputs;
 *   - a claim answered 200 is running (its lease still valid) or done with
 *     the outputs the worker sent (the answer to the completion was lost);
 *   - a call never claimed by us is queued or running (claim committed, its
 *     answer lost), never done;
 *   - a blob answered 201 is stored whole; no blob file holds partial data.
 * Then the work resumes: every call ends done. Run in --sync normal and full. */
#include "broker_fixture.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define CALLS 200
#define B_ARG 5000
#define BLOBS 400

static broker B;

typedef struct call_rec {
    char id[P2P_HASH_HEX_LEN + 1];
    atomic_int created;   /* push answered 2xx */
    atomic_int claimed;   /* search_work answered 200 with it */
    atomic_int completed; /* outputs answered 200 */
    char token[64];
} call_rec;

static call_rec recs[CALLS];
static atomic_int n_created, n_completed;
static atomic_int blob_ok[BLOBS];

static void reset_records(void) {
    for (int i = 0; i < CALLS; i++) {
        atomic_store(&recs[i].created, 0);
        atomic_store(&recs[i].claimed, 0);
        atomic_store(&recs[i].completed, 0);
        recs[i].token[0] = '\0';
        json_t *args = fx_add_args(i, B_ARG);
        fx_call_id(FX_ADD, args, recs[i].id);
        json_decref(args);
    }
    for (int i = 0; i < BLOBS; i++)
        atomic_store(&blob_ok[i], 0);
    atomic_store(&n_created, 0);
    atomic_store(&n_completed, 0);
}

/* Pushes calls from..to-1; stops at the first request without an answer. */
typedef struct range {
    int from, to;
} range;

static void *pusher_main(void *arg) {
    range *rg = arg;
    p2p_http_client *c = broker_client(&B, 10000);
    for (int i = rg->from; i < rg->to; i++) {
        json_t *args = fx_add_args(i, B_ARG);
        char id[P2P_HASH_HEX_LEN + 1];
        harness_reply r;
        fx_push(&B, c, FX_ADD, args, true, id, &r);
        json_decref(args);
        bool answered = r.rc == 0;
        if (answered) {
            HARNESS_EXPECT(&r, 201, NULL);
            atomic_store(&recs[i].created, 1);
            atomic_fetch_add(&n_created, 1);
        }
        harness_reply_cleanup(&r);
        if (!answered)
            break;
    }
    p2p_http_client_free(c);
    return NULL;
}

/* The index of a claimed call, from its arguments. */
static int index_of(const harness_reply *r) {
    json_t *a = json_object_get(json_object_get(r->json, "args"), "a");
    int i = (int)json_integer_value(a);
    ASSERT_TRUE(i >= 0 && i < CALLS);
    ASSERT_STR_EQ(harness_reply_str(r, "identifier"), recs[i].id);
    return i;
}

static void *worker_main(void *arg) {
    (void)arg;
    p2p_http_client *c = broker_client(&B, 10000);
    for (int k = 0; k < 4 * CALLS; k++) {
        harness_reply r;
        if (fx_claim(&B, c, FX_ADD, 1, NULL, &r) != 0) {
            harness_reply_cleanup(&r);
            break;
        }
        if (r.status == 204) {
            harness_reply_cleanup(&r);
            continue;
        }
        HARNESS_EXPECT(&r, 200, NULL);
        int i = index_of(&r);
        snprintf(recs[i].token, sizeof(recs[i].token), "%s", harness_reply_str(&r, "lease_token"));
        atomic_store(&recs[i].claimed, 1);
        harness_reply_cleanup(&r);
        fx_worker_push(&B, c, FX_ADD, recs[i].id, recs[i].token,
                       json_pack("{s:{s:i}}", "outputs", "sum", i + B_ARG), &r);
        bool answered = r.rc == 0;
        if (answered) {
            HARNESS_EXPECT(&r, 200, NULL);
            atomic_store(&recs[i].completed, 1);
            atomic_fetch_add(&n_completed, 1);
        }
        harness_reply_cleanup(&r);
        if (!answered)
            break;
    }
    p2p_http_client_free(c);
    return NULL;
}

/* Blob number i: unique per i (its number leads), 40 kB. */
static void blob_content(int i, char *buf, size_t len) {
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (i + (int)k) % 26);
    snprintf(buf, 16, "blob %d.", i);
}

static void *uploader_main(void *arg) {
    (void)arg;
    p2p_http_client *c = broker_client(&B, 10000);
    static char buf[40000];
    for (int i = 0; i < BLOBS; i++) {
        blob_content(i, buf, sizeof(buf));
        char hash[P2P_HASH_HEX_LEN + 1];
        harness_reply r;
        fx_blob_put(&B, c, buf, sizeof(buf), hash, &r);
        bool answered = r.rc == 0;
        if (answered) {
            HARNESS_EXPECT(&r, 201, NULL);
            atomic_store(&blob_ok[i], 1);
        }
        harness_reply_cleanup(&r);
        if (!answered)
            break;
    }
    p2p_http_client_free(c);
    return NULL;
}

/* Kills the broker once work is well under way, bounded in time. */
static void kill_mid_flight(void) {
    int64_t deadline = harness_now_ms() + 60000;
    while (harness_now_ms() < deadline) {
        int created = atomic_load(&n_created), completed = atomic_load(&n_completed);
        if ((created >= CALLS / 2 && completed >= 10) || created == CALLS || completed >= 50)
            break;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    fprintf(stderr, "SIGKILL with %d calls created and %d completed\n", atomic_load(&n_created),
            atomic_load(&n_completed));
    broker_kill(&B);
}

/* Checks one call against what the broker acknowledged before the crash. */
static void check_call(int i, int *done, int *running, int *queued, int *absent) {
    harness_reply r;
    fx_pull(&B, NULL, FX_ADD, recs[i].id, -1, -1, &r);
    if (r.status == 404 && !atomic_load(&recs[i].created)) {
        (*absent)++; /* its push never got an answer: either way is right */
        harness_reply_cleanup(&r);
        return;
    }
    HARNESS_EXPECT(&r, 200, NULL);
    const char *st = harness_reply_str(&r, "status");
    ASSERT_TRUE(st != NULL);
    json_t *sum = json_object_get(json_object_get(r.json, "outputs"), "sum");
    if (strcmp(st, "done") == 0) {
        /* Only our worker completes calls, and only after a claim. */
        ASSERT_EQ(json_integer_value(sum), i + B_ARG);
        (*done)++;
    } else if (strcmp(st, "running") == 0) {
        if (atomic_load(&recs[i].completed))
            TEST_FAIL_("call %d: completion answered 200 but the call is running", i);
        (*running)++;
    } else if (strcmp(st, "queued") == 0) {
        if (atomic_load(&recs[i].claimed))
            TEST_FAIL_("call %d: claim answered 200 but the call is queued", i);
        (*queued)++;
    } else {
        TEST_FAIL_("call %d: impossible status %s", i, st);
    }
    harness_reply_cleanup(&r);
}

/* Every blob file is whole: its content hashes to its name. */
static int check_blob_files(void) {
    int n = 0;
    DIR *top = opendir(B.blobs);
    ASSERT_TRUE(top != NULL);
    struct dirent *e;
    while ((e = readdir(top)) != NULL) {
        if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
            continue; /* tmp/, "." and ".." */
        char shard[HARNESS_PATH_MAX + 300];
        snprintf(shard, sizeof(shard), "%s/%s", B.blobs, e->d_name);
        DIR *d = opendir(shard);
        ASSERT_TRUE(d != NULL);
        struct dirent *f;
        while ((f = readdir(d)) != NULL) {
            if (f->d_name[0] == '.')
                continue;
            char path[HARNESS_PATH_MAX + 600], got[P2P_HASH_HEX_LEN + 1];
            snprintf(path, sizeof(path), "%s/%s", shard, f->d_name);
            ASSERT_OK(p2p_hash_file(path, got, NULL));
            ASSERT_STR_EQ(got, f->d_name);
            n++;
        }
        closedir(d);
    }
    closedir(top);
    return n;
}

static void check_after_restart(void) {
    int done = 0, running = 0, queued = 0, absent = 0;
    for (int i = 0; i < CALLS; i++)
        check_call(i, &done, &running, &queued, &absent);
    fprintf(stderr,
            "after restart: %d done, %d running, %d queued, %d never acknowledged and "
            "absent\n",
            done, running, queued, absent);
    long long counts[6];
    fx_counts(&B, FX_ADD, counts);
    ASSERT_EQ(counts[3], done);
    ASSERT_EQ(counts[2], running);
    ASSERT_EQ(counts[1], queued);
    ASSERT_EQ(counts[0] + counts[4] + counts[5], 0);

    static char buf[40000];
    int acked = 0;
    for (int i = 0; i < BLOBS; i++) {
        if (!atomic_load(&blob_ok[i]))
            continue;
        acked++;
        blob_content(i, buf, sizeof(buf));
        char hash[P2P_HASH_HEX_LEN + 1], path[128];
        ASSERT_OK(p2p_hash_bytes_hex(buf, sizeof(buf), hash, NULL));
        snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
        harness_reply r;
        harness_get(B.client, B.url, path, 0, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        ASSERT_EQ(r.body_len, sizeof(buf));
        ASSERT_MEM_EQ(r.body, buf, sizeof(buf));
        harness_reply_cleanup(&r);
    }
    int files = check_blob_files();
    fprintf(stderr, "blobs: %d acknowledged, %d whole files on disk\n", acked, files);
    ASSERT_GE(files, acked);
}

/* Finishes the work: running calls with the tokens we hold (the leases
 * survived), the rest by claiming; then everything created is done. */
static void resume_work(void) {
    for (int i = 0; i < CALLS; i++) {
        harness_reply r;
        fx_pull(&B, NULL, FX_ADD, recs[i].id, -1, -1, &r);
        bool running = r.status == 200 && strcmp(harness_reply_str(&r, "status"), "running") == 0;
        harness_reply_cleanup(&r);
        if (!running)
            continue;
        if (!atomic_load(&recs[i].claimed))
            continue; /* claimed by the broker, answer lost: nobody holds its lease */
        fx_worker_push(&B, NULL, FX_ADD, recs[i].id, recs[i].token,
                       json_pack("{s:{s:i}}", "outputs", "sum", i + B_ARG), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        harness_reply_cleanup(&r);
    }
    for (int k = 0; k < CALLS; k++) {
        harness_reply r;
        fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
        if (r.status == 204) {
            harness_reply_cleanup(&r);
            break;
        }
        HARNESS_EXPECT(&r, 200, NULL);
        int i = index_of(&r);
        char token[64];
        snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
        harness_reply_cleanup(&r);
        fx_worker_push(&B, NULL, FX_ADD, recs[i].id, token,
                       json_pack("{s:{s:i}}", "outputs", "sum", i + B_ARG), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        harness_reply_cleanup(&r);
    }
    long long counts[6];
    fx_counts(&B, FX_ADD, counts);
    fprintf(stderr, "after resuming: %lld done, %lld running (lease lost with the crash)\n",
            counts[3], counts[2]);
    ASSERT_EQ(counts[1], 0);
}

static void crash_once(const char *sync) {
    broker_config cfg = {.sync = sync};
    broker_init(&B, "broker_crash", &cfg);
    broker_start(&B);
    reset_records();
    pthread_t t[5];
    range ranges[2] = {{0, CALLS / 2}, {CALLS / 2, CALLS}};
    ASSERT_OK(pthread_create(&t[0], NULL, pusher_main, &ranges[0]));
    ASSERT_OK(pthread_create(&t[1], NULL, pusher_main, &ranges[1]));
    ASSERT_OK(pthread_create(&t[2], NULL, worker_main, NULL));
    ASSERT_OK(pthread_create(&t[3], NULL, worker_main, NULL));
    ASSERT_OK(pthread_create(&t[4], NULL, uploader_main, NULL));
    kill_mid_flight();
    for (int i = 0; i < 5; i++)
        ASSERT_OK(pthread_join(t[i], NULL));
    broker_start(&B);
    check_after_restart();
    resume_work();
    broker_stop(&B);
    broker_cleanup(&B);
}

static void test_kill9_sync_normal(void) {
    crash_once("normal");
}

static void test_kill9_sync_full(void) {
    crash_once("full");
}

int main(void) {
    TEST_RUN(test_kill9_sync_normal);
    TEST_RUN(test_kill9_sync_full);
    return 0;
}
