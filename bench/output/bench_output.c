/* bench_output.c: drive the output pipeline for bench/output.sh.
 *   bench_output gen FILE BYTES           write BYTES of log-like text with 100 secrets in it
 *   bench_output run FILE URL [RATE_MBps] stream FILE through masking (100 secrets) and the
 *                                         shipper to URL in 64 KiB reads; RATE paces the writes.
 *                                         Prints "seconds=S bytes=N pauses=P writer_cpu=W
 *                                         shipper_cpu=C" (CPU seconds).
 *   bench_output mask FILE                masking alone: FILE through output_step_write in
 *                                         64 KiB reads, terminal output off, no processor.
 *                                         Prints "mask_cpu=S secrets=N" (user CPU seconds). */
#include "executor/output.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>

#define NSEC 100

static char secrets_buf[NSEC][33];
static const char *secrets[NSEC + 1];

static void mk_secrets(void)
{
        unsigned seed = 99;
        for (int i = 0; i < NSEC; i++) {
                for (int j = 0; j < 32; j++)
                        secrets_buf[i][j] =
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rand_r(&seed) % 36];
                secrets[i] = secrets_buf[i];
        }
        secrets[NSEC] = NULL;
}

static double now_s(void)
{
        return (double)drv_now_ns() / 1e9;
}

static int gen(const char *path, uint64_t bytes)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return 1;
        const size_t cap = 1 << 20;
        char *buf = malloc(cap);
        if (!buf) {
                close(fd);
                return 1;
        }
        unsigned seed = 7;
        uint64_t done = 0;
        while (done < bytes) {
                size_t n = 0;
                while (n < cap - 200) {
                        unsigned r = (unsigned)rand_r(&seed);
                        int w;
                        if (r % 50 == 0)
                                w = snprintf(buf + n, cap - n, "export TOKEN=%s\n",
                                             secrets[r % NSEC]);
                        else
                                w = snprintf(
                                    buf + n, cap - n,
                                    "[%08u] compiling src/module_%u.c -> obj/module_%u.o ok\n", r,
                                    r % 997, r % 997);
                        if (w < 0 || (size_t)w >= cap - n)
                                break;
                        n += (size_t)w;
                }
                if (drv_write_all(fd, buf, n) < 0)
                        return 1;
                done += n;
        }
        close(fd);
        free(buf);
        return 0;
}

static int run(const char *path, const char *url, double rate_mbps)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 1;
        struct output_config cfg = {.job_id = "bench",
                                    .url = url,
                                    .token = "bench-token",
                                    .secrets = secrets,
                                    .terminal_fd = -1};
        struct output *o;
        struct drv_error e;
        if (output_open(&cfg, &o, &e) < 0 || output_step_begin(o, 0, "bench", false, &e) < 0) {
                fprintf(stderr, "%s\n", e.message);
                return 1;
        }
        char *buf = malloc(65536);
        uint64_t total = 0, pauses = 0;
        double t0 = now_s();
        for (;;) {
                ssize_t n = read(fd, buf, 65536);
                if (n <= 0)
                        break;
                for (;;) {
                        int r = output_step_write(o, 0, buf, (size_t)n, &e);
                        if (r == 0)
                                break;
                        if (r != -EAGAIN) {
                                fprintf(stderr, "%s\n", e.message);
                                return 1;
                        }
                        pauses++;
                        struct timespec ts = {0, 1000000};
                        nanosleep(&ts, NULL);
                }
                total += (uint64_t)n;
                if (rate_mbps > 0) {
                        double due = t0 + (double)total / (rate_mbps * 1e6);
                        double d = due - now_s();
                        if (d > 0) {
                                struct timespec ts = {(time_t)d,
                                                      (long)((d - (double)(time_t)d) * 1e9)};
                                nanosleep(&ts, NULL);
                        }
                }
        }
        struct output_step_end res = {.status = "success"};
        if (output_step_end(o, 0, &res, &e) < 0 || output_close(o, 600000, &e) < 0) {
                fprintf(stderr, "%s\n", e.message);
                return 1;
        }
        double t1 = now_s();
        output_free(o);
        struct rusage self, kids;
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &kids);
#define CPU(r)                                                                                     \
        ((double)(r).ru_utime.tv_sec + (double)(r).ru_utime.tv_usec / 1e6 +                        \
         (double)(r).ru_stime.tv_sec + (double)(r).ru_stime.tv_usec / 1e6)
        printf("seconds=%.3f bytes=%llu pauses=%llu writer_cpu=%.2f shipper_cpu=%.2f\n", t1 - t0,
               (unsigned long long)total, (unsigned long long)pauses, CPU(self), CPU(kids));
        return 0;
}

static int mask_only(const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct output *o = NULL;
        struct drv_error err;
        struct output_config oc = {.job_id = "bench-mask", .secrets = secrets, .terminal_fd = -1};
        if (fd < 0 || output_open(&oc, &o, &err) < 0 ||
            output_step_begin(o, 0, "m", false, &err) < 0)
                return 1;
        static char buf[65536];
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                if (output_step_write(o, 0, buf, (size_t)n, &err) < 0)
                        return 1;
        struct output_step_end end = {.status = "success"};
        if (output_step_end(o, 0, &end, &err) < 0)
                return 1;
        getrusage(RUSAGE_SELF, &r1);
        double u = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                   (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
        printf("mask_cpu=%.3f secrets=%d\n", u, NSEC);
        output_free(o);
        close(fd);
        return 0;
}

int main(int argc, char **argv)
{
        mk_secrets();
        if (argc == 4 && strcmp(argv[1], "gen") == 0)
                return gen(argv[2], strtoull(argv[3], NULL, 10));
        if ((argc == 4 || argc == 5) && strcmp(argv[1], "run") == 0)
                return run(argv[2], argv[3], argc == 5 ? atof(argv[4]) : 0);
        if (argc == 3 && strcmp(argv[1], "mask") == 0)
                return mask_only(argv[2]);
        fprintf(stderr,
                "usage: bench_output gen FILE BYTES | run FILE URL [RATE_MBps] | mask FILE\n");
        return 2;
}
