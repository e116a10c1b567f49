/* What the benchmarks share: a monotonic clock, percentiles, a process's
 * memory from /proc, and the large pseudo-random input file (written and
 * hashed 1 MiB at a time, so that nothing is ever whole in memory). Each
 * helper exits the program with a message on failure: benchmarks stop at the
 * first error. */
#ifndef P2PRPC_BENCH_UTIL_H
#define P2PRPC_BENCH_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#define BENCH_CHUNK (1u << 20)

/* Prints "PROGRAM: what: msg" to stderr and exits 1. */
void bench_die(const char *what, const char *msg);

/* CLOCK_MONOTONIC in milliseconds. */
double bench_now_ms(void);

/* Sorts `v` (n values) ascending. */
void bench_sort(double *v, size_t n);

/* The value at fraction `p` (0..1) of sorted `v` (nearest rank). */
double bench_pct(const double *sorted, size_t n, double p);

/* A `Vm...:` field (such as "VmHWM:") of /proc/PID/status in KiB; pid 0 =
 * this process. -1 when it cannot be read. */
long bench_status_kib(pid_t pid, const char *field);

/* Writes `mib` MiB of xorshift bytes to `path`; `in_hash` gets the SHA-256
 * hex of the bytes, out_hash[k] that of the bytes XORed with x[k]. */
void bench_generate(const char *path, long mib, const unsigned char x[2], char in_hash[65],
                    char out_hash[2][65]);

#endif
