/* stream_test.c: the output pipeline against the strict output-processor double.
 *   stream_test kill     100 MB with secrets on two steps while the double is killed and restarted
 *                        10 times (plus lost acks, stale acks, reset connections): the bytes
 *                        received equal the bytes written with masking applied, none duplicated.
 *   stream_test stall    a stalled processor pauses the writer (-EAGAIN, output_can_accept false)
 *                        with the spool and memory bounded; after resume everything arrives.
 *   stream_test orphan   the writer dies without closing: its shipper still delivers the spool.
 *   stream_test trim     ~2500 writes 1.2 ms apart (one chunk record each): once acknowledged, the
 *                        chunk index N.ts is punched out (its disk use stays bounded) and its
 *                        cursor persisted in the state map; everything arrives.
 *   stream_test tls CERTS  an https:// double (CERTS/server.pem, server.key): with another CA
 *                        (CERTS/other-ca.pem, as a path) nothing is delivered and close times out;
 *                        with the right CA (CERTS/ca.pem, as PEM text) everything arrives. */
#include "executor/output.h"
#include "executor/output/spool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>

#define TOKEN "tok-0123456789"
#define NSEC  5

static char dir[256], port_file[300];
static int port;
static pid_t dbl;

static void die(const char *what)
{
        fprintf(stderr, "stream_test: FAIL: %s\n", what);
        if (dbl > 0)
                kill(dbl, SIGKILL);
        kill(0, SIGKILL); /* our process group: shippers left behind by a failed test, too */
        exit(1);
}

static void msleep(int ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static void start_double(const char *const *extra)
{
        char portarg[16];
        snprintf(portarg, sizeof(portarg), "%d", port);
        const char *src = getenv("DROVER_SRC");
        char script[512];
        snprintf(script, sizeof(script), "%s/tests/doubles/output_processor.py", src ? src : ".");
        const char *argv[32] = {"python3", script,   "--dir", dir,           "--token",
                                TOKEN,     "--port", portarg, "--port-file", port_file};
        int n = 10;
        for (int i = 0; extra && extra[i]; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;
        unlink(port_file);
        dbl = fork();
        if (dbl == 0) {
                execvp("python3", (char *const *)argv);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                FILE *f = fopen(port_file, "r");
                if (f) {
                        int ok = fscanf(f, "%d", &port) == 1;
                        fclose(f);
                        if (ok)
                                return;
                }
                msleep(10);
        }
        die("the double did not start");
}

static void kill_double(void)
{
        kill(dbl, SIGKILL);
        waitpid(dbl, NULL, 0);
        dbl = 0;
}

static void control(const char *what)
{
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
                die("control connect");
        char req[256];
        int n = snprintf(req, sizeof(req),
                         "POST /control/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n",
                         what);
        if (write(s, req, (size_t)n) != n)
                die("control write");
        char buf[512];
        ssize_t r = read(s, buf, sizeof(buf) - 1);
        close(s);
        if (r < 12 || memcmp(buf + 9, "200", 3) != 0)
                die("control request refused");
}

/* Deterministic generator: filler that can never form a secret (lowercase, spaces, newlines,
 * NUL, bytes >= 0x80), secrets embedded now and then, short/trivial values that stay. */
struct gen {
        unsigned seed;
        char secrets[NSEC][17];
};

static size_t gen_chunk(struct gen *g, char *in, size_t n, struct strbuf *want)
{
        size_t i = 0;
        while (i < n) {
                unsigned r = (unsigned)rand_r(&g->seed);
                if (r % 97 == 0 && n - i >= 16) {
                        memcpy(in + i, g->secrets[r % NSEC], 16);
                        strbuf_append(want, "********", 8);
                        i += 16;
                } else if (r % 89 == 0 && n - i >= 4) {
                        memcpy(in + i, r & 1 ? "ABC " : "true", 4); /* not maskable */
                        strbuf_append(want, in + i, 4);
                        i += 4;
                } else {
                        unsigned k = r >> 8;
                        char c = k % 50 == 0   ? '\n'
                                 : k % 7 == 0  ? (char)(0x80 | (k >> 8))
                                 : k % 31 == 0 ? 0
                                               : (char)('a' + k % 26);
                        in[i++] = c;
                        strbuf_putc(want, c);
                }
        }
        return n;
}

static void gen_init(struct gen *g, const char **secrets)
{
        g->seed = 4242;
        for (int s = 0; s < NSEC; s++) {
                snprintf(g->secrets[s], sizeof(g->secrets[s]), "SKEY%c%c%c%cQ%07dZZ", 'A' + s,
                         'B' + s, 'C' + s, 'D' + s, s * 7919);
                secrets[s] = g->secrets[s];
        }
        secrets[NSEC] = "ABC";
        secrets[NSEC + 1] = "true";
        secrets[NSEC + 2] = NULL;
}

static void check_file(const char *job, unsigned step, const struct strbuf *want)
{
        char path[600];
        snprintf(path, sizeof(path), "%s/%s/%u.out", dir, job, step);
        char *got = NULL;
        size_t len = 0;
        struct drv_error e;
        if (drv_read_file(path, &got, &len, 1ULL << 31, &e) < 0)
                die(e.message);
        if (len != want->len) {
                fprintf(stderr, "step %u: received %zu bytes, want %zu\n", step, len, want->len);
                die("length differs");
        }
        if (memcmp(got, want->buf, len) != 0) {
                size_t i = 0;
                while (got[i] == want->buf[i])
                        i++;
                fprintf(stderr, "step %u: first difference at byte %zu\n", step, i);
                die("content differs");
        }
        free(got);
        snprintf(path, sizeof(path), "%s/%s/%u.end.json", dir, job, step);
        if (access(path, F_OK) != 0)
                die("no end record");
}

static void write_all_retry(struct output *o, unsigned step, const char *buf, size_t n,
                            int *eagains)
{
        struct drv_error e;
        for (;;) {
                int r = output_step_write(o, step, buf, n, &e);
                if (r == 0)
                        return;
                if (r != -EAGAIN)
                        die(e.message);
                if (output_can_accept(o))
                        die("-EAGAIN while output_can_accept is true");
                (*eagains)++;
                msleep(5);
        }
}

static const char *tls_ca; /* set: the double speaks https, this is the output CA */

static struct output *open_out(const char *job, const char **secrets, uint64_t max)
{
        char url[64], spool[300];
        snprintf(url, sizeof(url), "%s://127.0.0.1:%d", tls_ca ? "https" : "http", port);
        snprintf(spool, sizeof(spool), "%s/spool-%s", dir, job);
        struct output_config cfg = {.job_id = job,
                                    .url = url,
                                    .token = TOKEN,
                                    .spool_dir = spool,
                                    .spool_max_bytes = max,
                                    .secrets = secrets,
                                    .terminal_fd = -1,
                                    .ca_pem = tls_ca};
        struct output *o;
        struct drv_error e;
        if (output_open(&cfg, &o, &e) < 0)
                die(e.message);
        return o;
}

static void end_step(struct output *o, unsigned step)
{
        struct output_step_end res = {.exit_code = 0, .status = "success", .duration_ms = 1};
        struct drv_error e;
        if (output_step_end(o, step, &res, &e) < 0)
                die(e.message);
}

static int test_kill(void)
{
        const char *extra[] = {"--drop-acks", "3", "--stale-acks", "2", "--reset", "2", NULL};
        start_double(extra);
        struct gen g;
        const char *secrets[NSEC + 3];
        gen_init(&g, secrets);
        struct output *o = open_out("kill-job", secrets, 32 << 20);
        struct drv_error e;
        if (output_step_begin(o, 0, "main", false, &e) < 0 ||
            output_step_begin(o, 1, "side", true, &e) < 0)
                die(e.message);
        struct strbuf want[2] = {STRBUF_INIT, STRBUF_INIT};
        size_t total = 100u << 20, done = 0, next_kill = 10u << 20;
        char *buf = malloc(1 << 17);
        int kills = 0, eagains = 0;
        while (done < total) {
                size_t n = 1 + (size_t)rand_r(&g.seed) % (1 << 17);
                unsigned step = rand_r(&g.seed) % 4 == 0;
                gen_chunk(&g, buf, n, &want[step]);
                write_all_retry(o, step, buf, n, &eagains);
                done += n;
                if (done >= next_kill && kills < 10) {
                        kill_double();
                        msleep(50 + rand_r(&g.seed) % 300);
                        start_double(NULL);
                        kills++;
                        next_kill += 9u << 20;
                }
        }
        end_step(o, 0);
        end_step(o, 1);
        if (output_close(o, 60000, &e) < 0)
                die(e.message);
        output_free(o);
        /* the masker flushes what it held at step end: "want" already has it all */
        check_file("kill-job", 0, &want[0]);
        check_file("kill-job", 1, &want[1]);
        printf("kill: %zu bytes in, %zu + %zu bytes received, %d restarts, %d pauses\n", done,
               want[0].len, want[1].len, kills, eagains);
        kill_double();
        if (kills != 10)
                die("not 10 restarts");
        strbuf_release(&want[0]);
        strbuf_release(&want[1]);
        free(buf);
        return 0;
}

static long rss_kb(void)
{
        char *s = NULL;
        size_t n;
        if (drv_read_file("/proc/self/status", &s, &n, 1 << 20, NULL) < 0)
                return -1;
        char *p = strstr(s, "VmRSS:");
        long v = p ? strtol(p + 6, NULL, 10) : -1;
        free(s);
        return v;
}

static uint64_t disk_usage(const char *path)
{
        char p[700];
        uint64_t sum = 0;
        for (int i = 0; i < 4; i++) {
                struct stat st;
                snprintf(p, sizeof(p), "%s/%d.data", path, i);
                if (stat(p, &st) == 0)
                        sum += (uint64_t)st.st_blocks * 512;
        }
        return sum;
}

static int test_stall(void)
{
        const char *extra[] = {"--stall", NULL};
        start_double(extra);
        struct gen g;
        const char *secrets[NSEC + 3];
        gen_init(&g, secrets);
        uint64_t max = 4 << 20;
        struct output *o = open_out("stall-job", secrets, max);
        struct drv_error e;
        if (output_step_begin(o, 0, "main", false, &e) < 0)
                die(e.message);
        struct strbuf want = STRBUF_INIT;
        char *buf = malloc(65536);
        size_t accepted = 0;
        long rss0 = 0;
        int refused = 0;
        /* keep offering 64 KiB for a while: the pipeline must refuse, not buffer */
        for (int i = 0; i < 2000 && refused < 200; i++) {
                if (!output_can_accept(o)) {
                        int r = output_step_write(o, 0, "x", 1, &e);
                        if (r != -EAGAIN)
                                die("write while full did not return -EAGAIN");
                        if (!rss0)
                                rss0 = rss_kb();
                        refused++;
                        msleep(1);
                        continue;
                }
                struct strbuf tmp = STRBUF_INIT;
                gen_chunk(&g, buf, 65536, &tmp);
                int r = output_step_write(o, 0, buf, 65536, &e);
                if (r == -EAGAIN) {
                        strbuf_release(&tmp);
                        continue;
                }
                if (r < 0)
                        die(e.message);
                strbuf_append(&want, tmp.buf, tmp.len);
                strbuf_release(&tmp);
                accepted += 65536;
        }
        char spool[300];
        snprintf(spool, sizeof(spool), "%s/spool-stall-job", dir);
        uint64_t du = disk_usage(spool);
        long rss1 = rss_kb();
        printf("stall: accepted %zu bytes before pausing, %d refusals, spool %llu bytes on disk, "
               "rss %ld -> %ld KiB\n",
               accepted, refused, (unsigned long long)du, rss0, rss1);
        if (refused < 200)
                die("the writer was never paused");
        if (want.len > max + 2 * 65536) /* the bound is on masked (spooled) bytes */
                die("more than the spool bound was accepted");
        if (du > max + 2 * 65536 + 65536)
                die("the spool outgrew its bound");
        if (rss1 - rss0 > 2048)
                die("memory grew while paused");
        control("resume");
        for (int i = 0; i < 128; i++) {
                gen_chunk(&g, buf, 65536, &want);
                int eag = 0;
                write_all_retry(o, 0, buf, 65536, &eag);
        }
        end_step(o, 0);
        if (output_close(o, 60000, &e) < 0)
                die(e.message);
        output_free(o);
        check_file("stall-job", 0, &want);
        strbuf_release(&want);
        struct stat st;
        if (stat(spool, &st) == 0)
                die("the spool stayed after everything was acknowledged");
        kill_double();
        free(buf);
        return 0;
}

/* The writer (think: drover job) dies without closing; the shipper delivers its spool. */
static int test_orphan(void)
{
        const char *extra[] = {"--stall", NULL};
        start_double(extra);
        struct gen g;
        const char *secrets[NSEC + 3];
        gen_init(&g, secrets);
        struct strbuf want = STRBUF_INIT;
        char *buf = malloc(65536);
        int p[2];
        if (pipe(p) < 0)
                die("pipe");
        pid_t w = fork();
        if (w == 0) {
                close(p[0]);
                struct output *o = open_out("orphan-job", secrets, 64 << 20);
                struct drv_error e;
                if (output_step_begin(o, 0, "main", false, &e) < 0)
                        _exit(1);
                struct strbuf ignore = STRBUF_INIT;
                for (int i = 0; i < 64; i++) {
                        gen_chunk(&g, buf, 65536, &ignore);
                        if (output_step_write(o, 0, buf, 65536, &e) < 0)
                                _exit(1);
                }
                strbuf_release(&ignore);
                if (write(p[1], "k", 1) != 1)
                        _exit(1);
                _exit(0); /* a crash: no output_close */
        }
        close(p[1]);
        char c;
        if (read(p[0], &c, 1) != 1)
                die("the writer failed");
        waitpid(w, NULL, 0);
        for (int i = 0; i < 64; i++)
                gen_chunk(&g, buf, 65536, &want);
        /* the masker held back nothing at the end (no secret prefix pending at a chunk end is
         * not guaranteed): compare the prefix that was flushed */
        control("resume");
        char path[600];
        snprintf(path, sizeof(path), "%s/orphan-job/0.out", dir);
        struct stat st = {0};
        for (int i = 0; i < 1000; i++) {
                if (stat(path, &st) == 0 && (size_t)st.st_size + 16 >= want.len)
                        break;
                msleep(20);
        }
        char *got = NULL;
        size_t len = 0;
        if (drv_read_file(path, &got, &len, 1 << 30, NULL) < 0)
                die("nothing received from the orphaned shipper");
        printf("orphan: %zu of %zu bytes delivered after the writer died\n", len, want.len);
        if (len + 16 < want.len || len > want.len || memcmp(got, want.buf, len) != 0)
                die("the orphaned spool was not delivered exactly");
        free(got);
        strbuf_release(&want);
        /* the orphaned shipper exits once everything is acknowledged */
        snprintf(path, sizeof(path), "%s/spool-orphan-job/state", dir);
        struct spool_state ss;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pread(fd, &ss, sizeof(ss), 0) != (ssize_t)sizeof(ss))
                die("no spool state");
        close(fd);
        int i;
        for (i = 0; i < 500 && kill((pid_t)ss.shipper_pid, 0) == 0; i++)
                msleep(20);
        if (i == 500)
                die("the orphaned shipper did not exit after delivering everything");
        kill_double();
        free(buf);
        return 0;
}

static void read_state(const char *spool, struct spool_state *ss)
{
        char path[700];
        snprintf(path, sizeof(path), "%s/state", spool);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pread(fd, ss, sizeof(*ss), 0) != (ssize_t)sizeof(*ss))
                die("no spool state");
        close(fd);
}

static int test_trim(void)
{
        start_double(NULL);
        struct gen g;
        const char *secrets[NSEC + 3];
        gen_init(&g, secrets);
        struct output *o = open_out("trim-job", secrets, 0);
        struct drv_error e;
        if (output_step_begin(o, 0, "main", false, &e) < 0)
                die(e.message);
        struct strbuf want = STRBUF_INIT;
        char buf[200];
        const int n = 2500;
        for (int i = 0; i < n; i++) {
                gen_chunk(&g, buf, sizeof(buf), &want);
                int eag = 0;
                write_all_retry(o, 0, buf, sizeof(buf), &eag);
                struct timespec ts = {0, 1200000L};
                nanosleep(&ts, NULL);
        }
        char spool[300], path[700];
        snprintf(spool, sizeof(spool), "%s/spool-trim-job", dir);
        struct spool_state ss;
        /* everything written is acknowledged (within ~100 ms); then one more small write, so the
         * last batch starts at the end of the chunk index whatever the batches were before */
        for (int round = 0; round < 2; round++) {
                if (round == 1) {
                        gen_chunk(&g, buf, 20, &want);
                        int eag = 0;
                        write_all_retry(o, 0, buf, 20, &eag);
                }
                for (int i = 0; i < 2000; i++) {
                        read_state(spool, &ss);
                        if (ss.acked[0] == ss.written[0])
                                break;
                        msleep(10);
                }
                if (ss.acked[0] != ss.written[0])
                        die("not everything was acknowledged");
        }
        msleep(50);
        read_state(spool, &ss);
        snprintf(path, sizeof(path), "%s/0.ts", spool);
        struct stat ts, ds;
        if (stat(path, &ts) < 0)
                die("no chunk index");
        snprintf(path, sizeof(path), "%s/0.data", spool);
        if (stat(path, &ds) < 0)
                die("no data file");
        uint64_t ts_disk = (uint64_t)ts.st_blocks * 512, data_disk = (uint64_t)ds.st_blocks * 512;
        printf("trim: %d writes, index %lld bytes long, %llu on disk (cursor at %llu); data %lld "
               "bytes long, %llu on disk\n",
               n, (long long)ts.st_size, (unsigned long long)ts_disk,
               (unsigned long long)ss.ts_pos[0], (long long)ds.st_size,
               (unsigned long long)data_disk);
        if (ts.st_size < (off_t)(n / 2 * 16))
                die("fewer chunk records than expected: the test does not test trimming");
        if (ss.ts_pos[0] < (uint64_t)ts.st_size - 4096)
                die("the chunk index cursor is not persisted near the end");
        if (ts_disk > 8192)
                die("the acknowledged part of the chunk index stays on disk");
        if (data_disk > 8192)
                die("the acknowledged data stays on disk");
        end_step(o, 0);
        if (output_close(o, 20000, &e) < 0)
                die(e.message);
        output_free(o);
        check_file("trim-job", 0, &want);
        strbuf_release(&want);
        kill_double();
        return 0;
}

static int test_tls(const char *certs)
{
        char cert[600], key[600], ca[600], other[600];
        snprintf(cert, sizeof(cert), "%s/server.pem", certs);
        snprintf(key, sizeof(key), "%s/server.key", certs);
        snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
        snprintf(other, sizeof(other), "%s/other-ca.pem", certs);
        const char *extra[] = {"--tls-cert", cert, "--tls-key", key, NULL};
        start_double(extra);
        struct gen g;
        const char *secrets[NSEC + 3];
        gen_init(&g, secrets);
        char *buf = malloc(65536);
        struct drv_error e;
        /* a CA that did not sign the processor's certificate: nothing may be sent */
        tls_ca = other;
        struct output *o = open_out("tls-bad", secrets, 0);
        struct strbuf want = STRBUF_INIT;
        gen_chunk(&g, buf, 65536, &want);
        if (output_step_begin(o, 0, "main", false, &e) < 0 ||
            output_step_write(o, 0, buf, 65536, &e) < 0)
                die(e.message);
        end_step(o, 0);
        if (output_close(o, 1500, &e) != -ETIMEDOUT)
                die("close with an untrusted processor certificate did not time out");
        output_free(o);
        char path[700];
        snprintf(path, sizeof(path), "%s/tls-bad", dir);
        if (access(path, F_OK) == 0)
                die("the processor got data over a connection the client should have refused");
        /* the right CA, as PEM text */
        char *pem = NULL;
        size_t len;
        if (drv_read_file(ca, &pem, &len, 1 << 20, &e) < 0)
                die(e.message);
        tls_ca = pem;
        o = open_out("tls-good", secrets, 0);
        strbuf_reset(&want);
        if (output_step_begin(o, 0, "main", false, &e) < 0)
                die(e.message);
        for (int i = 0; i < 16; i++) {
                gen_chunk(&g, buf, 65536, &want);
                int eag = 0;
                write_all_retry(o, 0, buf, 65536, &eag);
        }
        end_step(o, 0);
        if (output_close(o, 20000, &e) < 0)
                die(e.message);
        output_free(o);
        check_file("tls-good", 0, &want);
        printf("tls: untrusted certificate refused, %zu bytes delivered over TLS\n", want.len);
        tls_ca = NULL;
        free(pem);
        strbuf_release(&want);
        free(buf);
        kill_double();
        return 0;
}

int main(int argc, char **argv)
{
        if (argc != 2 && !(argc == 3 && strcmp(argv[1], "tls") == 0))
                return 2;
        snprintf(dir, sizeof(dir), "%s/stream-test-%s-%d", getenv("TMPDIR") ?: "/tmp", argv[1],
                 (int)getpid());
        snprintf(port_file, sizeof(port_file), "%s/port", dir);
        if (drv_mkdir_p(dir, 0700, NULL) < 0)
                die("mkdir");
        signal(SIGPIPE, SIG_IGN);
        setpgid(0, 0);
        int r = 2;
        if (strcmp(argv[1], "kill") == 0)
                r = test_kill();
        else if (strcmp(argv[1], "stall") == 0)
                r = test_stall();
        else if (strcmp(argv[1], "orphan") == 0)
                r = test_orphan();
        else if (strcmp(argv[1], "trim") == 0)
                r = test_trim();
        else if (strcmp(argv[1], "tls") == 0)
                r = test_tls(argv[2]);
        if (r == 0)
                drv_rm_rf(dir, NULL);
        return r;
}
