/* See bench_util.h. */
#include "bench_util.h"

#include "fsutil.h"
#include "hash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char *program_invocation_short_name;

void bench_die(const char *what, const char *msg) {
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, msg ? msg : "failed");
    exit(1);
}

double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort(double *v, size_t n) {
    qsort(v, n, sizeof(*v), cmp_double);
}

double bench_pct(const double *sorted, size_t n, double p) {
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

long bench_status_kib(pid_t pid, const char *field) {
    char path[64], *text = NULL;
    size_t len = 0;
    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/status");
    else
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (p2p_fs_read_file(path, 1 << 16, &text, &len, NULL) != 0)
        return -1;
    const char *at = strstr(text, field);
    long kib = at ? strtol(at + strlen(field), NULL, 10) : -1;
    free(text);
    return kib;
}

void bench_generate(const char *path, long mib, const unsigned char x[2], char in_hash[65],
                    char out_hash[2][65]) {
    static unsigned char buf[BENCH_CHUNK], xbuf[BENCH_CHUNK];
    p2p_hasher *hi = NULL, *ho[2] = {NULL, NULL};
    FILE *f = fopen(path, "wb");
    if (f == NULL || p2p_hasher_new(&hi, NULL) != 0 || p2p_hasher_new(&ho[0], NULL) != 0 ||
        p2p_hasher_new(&ho[1], NULL) != 0)
        bench_die("generate", path);
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (long m = 0; m < mib; m++) {
        for (size_t i = 0; i < BENCH_CHUNK; i += 8) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            uint64_t v = s * 0x2545F4914F6CDD1DULL;
            memcpy(buf + i, &v, 8);
        }
        if (fwrite(buf, 1, BENCH_CHUNK, f) != BENCH_CHUNK ||
            p2p_hasher_update(hi, buf, BENCH_CHUNK, NULL) != 0)
            bench_die("generate", "write or hash failed");
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < BENCH_CHUNK; i++)
                xbuf[i] = buf[i] ^ x[k];
            if (p2p_hasher_update(ho[k], xbuf, BENCH_CHUNK, NULL) != 0)
                bench_die("generate", "hash failed");
        }
    }
    if (fclose(f) != 0 || p2p_hasher_final_hex(hi, in_hash, NULL) != 0 ||
        p2p_hasher_final_hex(ho[0], out_hash[0], NULL) != 0 ||
        p2p_hasher_final_hex(ho[1], out_hash[1], NULL) != 0)
        bench_die("generate", "close or hash failed");
    p2p_hasher_free(hi);
    p2p_hasher_free(ho[0]);
    p2p_hasher_free(ho[1]);
}
