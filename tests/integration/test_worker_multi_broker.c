/* Brokers as a worker finds and loses them:
 * - the discovery file takes comments (whole lines and after a URL), blank
 *   lines and whitespace around a URL;
 * - with two brokers in it, one of them down, the work of the other is done;
 * - a broker the discovery file does not name, but that a known broker lists
 *   in its nodes route (--peer), gets its work done too, fairly with the
 *   first one's;
 * - a "broker" that answers everything with 200 and broken JSON does not stop
 *   the worker or make it spin;
 * - two brokers with a queue each and one slot: served in turn, not one
 *   queue after the other;
 * - the broker stops for 5 s while the worker idles, and starts again on the
 *   same port: the same worker process picks up new work, without a restart
 *   of its own;
 * - the broker goes away for 3 s in the middle of a call: the call still
 *   completes, on its first attempt. */
#include "worker_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Runs p2prpc_add(a, b) on `b` and checks the sum. */
static void expect_add_done(broker *b, long long x, long long y, long timeout_ms) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(x, y);
    wf_push(b, WF_ADD, args, id);
    json_decref(args);
    json_t *call = wf_await_status(b, WF_ADD, id, "done|failed|terminated", timeout_ms);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), x + y);
    json_decref(call);
}

static void test_discovery_comments_and_blank_lines(void) {
    broker b;
    wf_broker_init(&b, "wbrk_comments_b", NULL);
    broker_start(&b);
    worker w;
    worker_init(&w, "wbrk_comments_w", b.secret_path, &(worker_config){0});
    char text[1024];
    snprintf(text, sizeof(text),
             "# brokers of the test\n"
             "\n"
             "   \n"
             "\t# an indented comment\n"
             "  %s   # the test broker, after a comment of its own\n"
             "\n"
             "# the end\n",
             b.url);
    worker_set_discovery(&w, text);
    worker_start(&w);
    ASSERT_EQ(w.brokers, 1);
    expect_add_done(&b, 1, 2, 60000);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

static void test_one_broker_down(void) {
    broker b;
    wf_broker_init(&b, "wbrk_down_b", NULL);
    broker_start(&b);
    char down[64];
    snprintf(down, sizeof(down), "http://127.0.0.1:%d", wf_free_port());
    worker w;
    worker_init(&w, "wbrk_down_w", b.secret_path, &(worker_config){.concurrency = 1});
    /* The dead one first, so a worker that waits on it in turn is caught. */
    worker_discover(&w, (const char *[]){down, b.url, NULL});
    worker_start(&w);
    ASSERT_EQ(w.brokers, 2);
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 5; i++)
        expect_add_done(&b, 100 + i, 1, 60000);
    fprintf(stderr, "5 calls with one of two brokers down: %lld ms\n",
            (long long)(harness_now_ms() - t0));
    ASSERT_TRUE(harness_proc_running(w.proc));
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

static void test_brokers_from_nodes(void) {
    broker b1, b2;
    wf_broker_init(&b2, "wbrk_nodes_b2", NULL);
    broker_start(&b2);
    const char *peer[] = {"--peer", b2.url, NULL};
    wf_broker_init(&b1, "wbrk_nodes_b1", &(broker_config){.extra_args = peer});
    /* Both brokers share one secret, as a deployment does. */
    ASSERT_OK(harness_write_file(b1.secret_path, b2.secret, b2.secret_len, NULL));
    memcpy(b1.secret, b2.secret, b2.secret_len);
    broker_start(&b1);

    worker w;
    worker_init(&w, "wbrk_nodes_w", b1.secret_path, &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){b1.url, NULL});
    worker_start(&w);
    /* Work on the broker the worker only heard of. */
    expect_add_done(&b2, 7, 8, 90000);
    /* Fairly: calls queued on both at once are all done. */
    char ids[2][6][P2P_HASH_HEX_LEN + 1];
    broker *bs[2] = {&b1, &b2};
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 2; k++) {
            json_t *args = fx_add_args(1000 * (k + 1) + i, 1);
            wf_push(bs[k], WF_ADD, args, ids[k][i]);
            json_decref(args);
        }
    }
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 2; k++) {
            json_t *call =
                wf_await_status(bs[k], WF_ADD, ids[k][i], "done|failed|terminated", 90000);
            wf_expect_status(call, "done");
            ASSERT_EQ(wf_output_int(call, "sum"), 1000 * (k + 1) + i + 1);
            json_decref(call);
        }
    }
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b1);
    broker_stop(&b2);
    broker_cleanup(&b1);
    broker_cleanup(&b2);
}

/* ---- a "broker" that answers every request with 200 and junk ---- */

typedef struct junk_server {
    int lfd;
    int stop[2];
    pthread_t thread;
    atomic_int requests;
    char url[64];
} junk_server;

static void junk_answer(junk_server *j, int fd) {
    char buf[8192];
    /* One read holds the request head of these small requests. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) > 0 && read(fd, buf, sizeof(buf)) > 0) {
        static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 9\r\nConnection: close\r\n\r\n{\"junk\":[";
        atomic_fetch_add(&j->requests, 1);
        if (write(fd, reply, sizeof(reply) - 1) < 0)
            fprintf(stderr, "junk server: write failed\n");
    }
    close(fd);
}

static void *junk_main(void *arg) {
    junk_server *j = arg;
    for (int i = 0; i < 1000000; i++) {
        struct pollfd fds[2] = {{.fd = j->lfd, .events = POLLIN},
                                {.fd = j->stop[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0 || fds[1].revents != 0)
            break;
        int fd = accept4(j->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            junk_answer(j, fd);
    }
    return NULL;
}

static void junk_start(junk_server *j) {
    memset(j, 0, sizeof(*j));
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    j->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(j->lfd >= 0);
    ASSERT_OK(bind(j->lfd, (struct sockaddr *)&a, sizeof(a)));
    ASSERT_OK(listen(j->lfd, 64));
    ASSERT_OK(getsockname(j->lfd, (struct sockaddr *)&a, &len));
    snprintf(j->url, sizeof(j->url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    ASSERT_OK(pipe2(j->stop, O_CLOEXEC));
    ASSERT_OK(pthread_create(&j->thread, NULL, junk_main, j));
}

static void junk_stop(junk_server *j) {
    ASSERT_EQ(write(j->stop[1], "x", 1), 1);
    pthread_join(j->thread, NULL);
    close(j->lfd);
    close(j->stop[0]);
    close(j->stop[1]);
}

/* A "broker" that answers everything with 200 and broken JSON, listed before
 * a real one: the worker keeps going, serves the real broker, and does not
 * spin on the junk (requests to it over 5 s stay few). */
static void test_broker_speaking_junk(void) {
    junk_server junk;
    junk_start(&junk);
    broker b;
    wf_broker_init(&b, "wbrk_junk_b", NULL);
    broker_start(&b);
    worker w;
    worker_init(&w, "wbrk_junk_w", b.secret_path, &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){junk.url, b.url, NULL});
    worker_start(&w);
    ASSERT_EQ(w.brokers, 2);
    for (int i = 0; i < 3; i++)
        expect_add_done(&b, 500 + i, 1, 60000);
    /* Settle, then count the junk server's requests over 5 s. */
    nanosleep(&(struct timespec){2, 0}, NULL);
    int before = atomic_load(&junk.requests);
    nanosleep(&(struct timespec){5, 0}, NULL);
    int n = atomic_load(&junk.requests) - before;
    fprintf(stderr, "junk broker: %d requests in all, %d in 5 s after settling\n",
            atomic_load(&junk.requests), n);
    ASSERT_GT(atomic_load(&junk.requests), 0);
    ASSERT_LE(n, 40);
    expect_add_done(&b, 600, 1, 60000);
    ASSERT_TRUE(harness_proc_running(w.proc));
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
    junk_stop(&junk);
}

/* Fairness: one worker (--concurrency 1), two brokers with ten queued calls
 * each. Neither waits for the other's queue to drain: among the first ten
 * calls done, each broker has at least three. Completion order from the
 * calls' updated_ms (one clock: same machine). */
typedef struct done_at {
    long long ms;
    int broker;
} done_at;

static int by_ms(const void *a, const void *b) {
    long long x = ((const done_at *)a)->ms, y = ((const done_at *)b)->ms;
    return (x > y) - (x < y);
}

static void test_two_brokers_fairly(void) {
    broker b[2];
    wf_broker_init(&b[0], "wbrk_fair_b0", NULL);
    broker_start(&b[0]);
    wf_broker_init(&b[1], "wbrk_fair_b1", NULL);
    ASSERT_OK(harness_write_file(b[1].secret_path, b[0].secret, b[0].secret_len, NULL));
    memcpy(b[1].secret, b[0].secret, b[0].secret_len);
    broker_start(&b[1]);
    char ids[2][10][P2P_HASH_HEX_LEN + 1];
    for (int i = 0; i < 10; i++) {
        for (int k = 0; k < 2; k++) {
            json_t *args = json_pack("{s:f, s:i}", "seconds", 0.2 + 0.001 * i, "steps", 1);
            wf_push(&b[k], WF_SLOW, args, ids[k][i]);
            json_decref(args);
        }
    }
    worker w;
    worker_init(&w, "wbrk_fair_w", b[0].secret_path, &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){b[0].url, b[1].url, NULL});
    worker_start(&w);
    done_at order[20];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 10; i++) {
            json_t *call =
                wf_await_status(&b[k], WF_SLOW, ids[k][i], "done|failed|terminated", 120000);
            wf_expect_status(call, "done");
            order[k * 10 + i] = (done_at){wf_int(call, "updated_ms", 0), k};
            json_decref(call);
        }
    }
    qsort(order, 20, sizeof(order[0]), by_ms);
    int first_half[2] = {0, 0};
    fprintf(stderr, "completion order by broker:");
    for (int i = 0; i < 20; i++) {
        fprintf(stderr, " %d", order[i].broker);
        if (i < 10)
            first_half[order[i].broker]++;
    }
    fprintf(stderr, "\n");
    ASSERT_GE(first_half[0], 3);
    ASSERT_GE(first_half[1], 3);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    for (int k = 0; k < 2; k++) {
        broker_stop(&b[k]);
        broker_cleanup(&b[k]);
    }
}

static void test_broker_restart(void) {
    broker b;
    wf_broker_init(&b, "wbrk_restart_b", NULL);
    broker_start(&b);
    worker w;
    worker_start_for(&w, "wbrk_restart_w", &b,
                     &(worker_config){.concurrency = 1, .poll_wait = "5"});
    pid_t pid = worker_pid(&w);
    expect_add_done(&b, 1, 1, 60000);
    char url[HARNESS_URL_MAX];
    snprintf(url, sizeof(url), "%s", b.url);

    wf_broker_restart_same_port(&b, 5000);
    ASSERT_STR_EQ(b.url, url);
    int64_t t0 = harness_now_ms();
    expect_add_done(&b, 2, 2, 120000);
    fprintf(stderr, "after a 5 s outage: first call done %lld ms after the broker came back\n",
            (long long)(harness_now_ms() - t0));
    ASSERT_TRUE(harness_proc_running(w.proc));
    ASSERT_EQ(worker_pid(&w), pid);
    ASSERT_EQ(w.starts, 1);
    expect_add_done(&b, 3, 3, 60000);

    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

/* The broker goes away for 3 s in the middle of a 6 s call (lease 60 s):
 * the worker keeps the call, its pushes fail and are retried, and once the
 * broker is back the call completes on its first attempt. */
static void test_broker_restart_during_a_call(void) {
    broker b;
    wf_broker_init(&b, "wbrk_midcall_b", NULL);
    broker_start(&b);
    worker w;
    worker_start_for(&w, "wbrk_midcall_w", &b,
                     &(worker_config){.concurrency = 1, .lease_renew = "0.5"});
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 6.0, "steps", 12);
    wf_push(&b, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&b, WF_SLOW, id, 10, 30000));
    wf_broker_restart_same_port(&b, 3000);
    json_t *call = wf_await_status(&b, WF_SLOW, id, "done|failed|terminated", 90000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "done"), 12);
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    expect_add_done(&b, 4, 4, 60000);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
}

int main(void) {
    TEST_RUN(test_discovery_comments_and_blank_lines);
    TEST_RUN(test_one_broker_down);
    TEST_RUN(test_brokers_from_nodes);
    TEST_RUN(test_two_brokers_fairly);
    TEST_RUN(test_broker_speaking_junk);
    TEST_RUN(test_broker_restart);
    TEST_RUN(test_broker_restart_during_a_call);
    return 0;
}
