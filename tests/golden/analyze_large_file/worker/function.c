/* The example function: one pass over the input in 64 KiB chunks (constant
 * memory whatever the file's size), progress after each chunk, two output
 * files in the call's directory (the working directory in a worker) and a
 * count. */
#include "function.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CHUNK (64 * 1024)

/* Stands for the heavy part of a real analysis (a video decoder, a model):
 * 2 ms a chunk, so that the progress of a demo can be watched. */
static void heavy_work(void) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Copies `in` to `out`, counting its lines and the bytes equal to `byte`. */
static int scan(FILE *in, FILE *out, int64_t size, unsigned char byte, int64_t *lines,
                int64_t *matches) {
    static unsigned char buf[CHUNK];
    int64_t done = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        for (size_t i = 0; i < n; i++) {
            *lines += buf[i] == '\n';
            *matches += buf[i] == byte;
        }
        if (fwrite(buf, 1, n, out) != n) {
            p2p_fail("cannot write results_file1: %s", strerror(errno));
            return 1;
        }
        done += (int64_t)n;
        heavy_work();
        p2p_progress_hook(done, size > done ? size : done);
    }
    if (ferror(in)) {
        p2p_fail("cannot read the input: %s", strerror(errno));
        return 1;
    }
    return 0;
}

static int write_report(const char *path, int64_t size, int64_t lines, int64_t byte,
                        int64_t matches) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        p2p_fail("cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    fprintf(f, "size %" PRId64 "\nlines %" PRId64 "\nbyte %" PRId64 " occurs %" PRId64 " times\n",
            size, lines, byte, matches);
    if (fclose(f) != 0) {
        p2p_fail("cannot write %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

int p2prpc_analyze_large_file(p2p_file video_handle, int64_t arg2, p2p_file *results_file1,
                              p2p_file *results_file2, int64_t *res_var) {
    if (arg2 < 0 || arg2 > 255) {
        p2p_fail("arg2 must be a byte value, 0 to 255, not %" PRId64, arg2);
        return 1;
    }
    struct stat st;
    FILE *in = fopen(video_handle.path, "rb");
    if (in == NULL || fstat(fileno(in), &st) != 0) {
        p2p_fail("cannot open the input: %s", strerror(errno));
        if (in != NULL)
            fclose(in);
        return 1;
    }
    FILE *out = fopen("results_file1.bin", "wb");
    int64_t lines = 0, matches = 0;
    int rc = out ? scan(in, out, (int64_t)st.st_size, (unsigned char)arg2, &lines, &matches) : 1;
    if (out == NULL)
        p2p_fail("cannot create results_file1.bin: %s", strerror(errno));
    if (out != NULL && fclose(out) != 0 && rc == 0) {
        p2p_fail("cannot write results_file1.bin: %s", strerror(errno));
        rc = 1;
    }
    fclose(in);
    if (rc == 0)
        rc = write_report("results_file2.txt", (int64_t)st.st_size, lines, arg2, matches);
    if (rc == 0) {
        results_file1->path = "results_file1.bin";
        results_file2->path = "results_file2.txt";
        *res_var = matches;
    }
    return rc;
}
