/* sink.c: the receiving end of bench/output.sh, in C, so that the receiver costs little of the
 * 2-core budget and costs the same for both sides of the comparison.
 *   output_sink raw PORTFILE          accept one TCP connection, read it to EOF, print the byte
 *                                     count (the `cat` baseline)
 *   output_sink http PORTFILE TOKEN   speak the output-processor protocol (docs/protocol-output.md)
 *                                     like tests/doubles/output_processor.py --sink: bearer token,
 *                                     version and media type, frame structure and offsets checked
 *                                     (409 with next_offset on a mismatch), offsets in memory,
 *                                     nothing stored; GET /control/stats answers
 *                                     {"batches", "bytes", "latency_ms": {p50, p99, max, frames}}
 *                                     (arrival time minus the frame's write time). */
#include "lib/drv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_CONNS  16
#define MAX_STEPS  4096
#define MAX_HEADER (16 << 10)
#define MAX_BODY   (64u << 20)

struct conn {
        int fd;
        char *buf;
        size_t len, cap;
};

static uint64_t next_off[MAX_STEPS];
static bool begun[MAX_STEPS];
static uint64_t batches, bytes;
static double *lat;
static size_t n_lat, cap_lat;
static const char *token;

static double cpu_s(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int listen_on(const char *port_file)
{
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t al = sizeof(a);
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 16) < 0 ||
            getsockname(s, (struct sockaddr *)&a, &al) < 0)
                return -1;
        char txt[16];
        snprintf(txt, sizeof(txt), "%d\n", ntohs(a.sin_port));
        if (drv_write_file_atomic(port_file, txt, strlen(txt), 0644, NULL) < 0)
                return -1;
        return s;
}

static int raw(const char *port_file)
{
        int s = listen_on(port_file);
        int c = s < 0 ? -1 : accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
                return 1;
        static char buf[1 << 20];
        uint64_t n = 0;
        ssize_t k;
        while ((k = read(c, buf, sizeof(buf))) > 0 || (k < 0 && errno == EINTR))
                if (k > 0)
                        n += (uint64_t)k;
        printf("%llu %.3f\n", (unsigned long long)n, cpu_s());
        return 0;
}

/* Read more into c->buf; 0 on EOF/error. */
static ssize_t fill(struct conn *c, size_t want)
{
        if (c->cap - c->len < want) {
                size_t cap = c->len + want;
                char *p = realloc(c->buf, cap + 1);
                if (!p)
                        return -1;
                c->buf = p;
                c->cap = cap;
        }
        ssize_t k;
        do
                k = read(c->fd, c->buf + c->len, c->cap - c->len);
        while (k < 0 && errno == EINTR);
        if (k > 0)
                c->len += (size_t)k;
        return k;
}

static const char *header(const char *h, size_t hl, const char *name, size_t *vl)
{
        size_t nl = strlen(name);
        for (const char *p = h; p && p < h + hl;) {
                const char *e = memmem(p, (size_t)(h + hl - p), "\r\n", 2);
                if (!e)
                        break;
                if ((size_t)(e - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (*v == ' ')
                                v++;
                        *vl = (size_t)(e - v);
                        return v;
                }
                p = e + 2;
        }
        return NULL;
}

static bool header_is(const char *h, size_t hl, const char *name, const char *want)
{
        size_t vl;
        const char *v = header(h, hl, name, &vl);
        return v && vl == strlen(want) && memcmp(v, want, vl) == 0;
}

static int reply(int fd, int code, const char *fmt, ...) DRV_PRINTF(3, 4);
static int reply(int fd, int code, const char *fmt, ...)
{
        char body[1024], msg[1300];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                         "%zu\r\n\r\n%s",
                         code, strlen(body), body);
        return drv_write_all(fd, msg, (size_t)n);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t be(const unsigned char *p, int n)
{
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static int batch(int fd, unsigned step, const char *h, size_t hl, const unsigned char *b, size_t n)
{
        size_t vl;
        const char *off = header(h, hl, "Drover-Offset", &vl);
        if (!off || vl == 0 || vl > 20)
                return reply(fd, 400, "{\"error\": \"no Drover-Offset\"}");
        uint64_t o = strtoull(off, NULL, 10);
        double now = now_ns();
        size_t pos = 0, data = 0, first = n_lat;
        while (pos < n) {
                if (n - pos < 12)
                        return reply(fd, 400, "{\"error\": \"truncated frame header\"}");
                uint64_t ns = be(b + pos, 8), len = be(b + pos + 8, 4);
                if (len == 0 || n - pos - 12 < len)
                        return reply(fd, 400, "{\"error\": \"bad frame length\"}");
                if (n_lat == cap_lat) {
                        cap_lat = cap_lat ? 2 * cap_lat : 65536;
                        lat = realloc(lat, cap_lat * sizeof(*lat));
                        if (!lat)
                                return -ENOMEM;
                }
                lat[n_lat++] = (now - (double)ns) / 1e6;
                pos += 12 + len;
                data += len;
        }
        if (!data)
                return reply(fd, 400, "{\"error\": \"empty batch\"}");
        if (!begun[step])
                return reply(fd, 404, "{\"error\": \"step not begun\"}");
        if (o != next_off[step]) {
                n_lat = first;
                return reply(fd, 409, "{\"next_offset\": %llu}",
                             (unsigned long long)next_off[step]);
        }
        next_off[step] += data;
        batches++;
        bytes += data;
        return reply(fd, 200, "{\"next_offset\": %llu}", (unsigned long long)next_off[step]);
}

static int stats(int fd)
{
        if (!n_lat)
                return reply(fd, 200, "{\"batches\": %llu, \"bytes\": %llu, \"cpu_s\": %.3f}",
                             (unsigned long long)batches, (unsigned long long)bytes, cpu_s());
        qsort(lat, n_lat, sizeof(*lat), cmp_double);
        return reply(fd, 200,
                     "{\"batches\": %llu, \"bytes\": %llu, \"cpu_s\": %.3f, \"latency_ms\": "
                     "{\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f, \"frames\": %zu}}",
                     (unsigned long long)batches, (unsigned long long)bytes, cpu_s(),
                     lat[n_lat / 2], lat[(size_t)((double)n_lat * 0.99)], lat[n_lat - 1], n_lat);
}

/* One request from c. Returns 0, or < 0 to close the connection. */
static int request(struct conn *c)
{
        char *end;
        while (!(end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL)) {
                if (c->len > MAX_HEADER || fill(c, 65536) <= 0)
                        return -1;
        }
        size_t hl = (size_t)(end - c->buf) + 4, vl;
        const char *cl = header(c->buf, hl, "Content-Length", &vl);
        size_t n = cl ? strtoul(cl, NULL, 10) : 0;
        if (n > MAX_BODY)
                return -1;
        while (c->len < hl + n)
                if (fill(c, hl + n - c->len) <= 0)
                        return -1;
        const char *h = c->buf;
        const unsigned char *body = (const unsigned char *)c->buf + hl;
        char method[8] = "", path[512] = "";
        sscanf(h, "%7s %511s", method, path);
        int r;
        unsigned step = 0;
        char what[16] = "";
        int fields = sscanf(path, "/v1/jobs/%*[^/]/steps/%u/%15s", &step, what);
        char want_auth[600];
        snprintf(want_auth, sizeof(want_auth), "Bearer %s", token);
        if (strcmp(path, "/control/stats") == 0)
                r = stats(c->fd);
        else if (fields < 1 || step >= MAX_STEPS)
                r = reply(c->fd, 404, "{\"error\": \"no such resource\"}");
        else if (!header_is(h, hl, "Authorization", want_auth))
                r = reply(c->fd, 401, "{\"error\": \"bad or missing bearer token\"}");
        else if (!header_is(h, hl, "Drover-Output-Version", "1"))
                r = reply(c->fd, 415, "{\"error\": \"unsupported version\"}");
        else if (fields == 1 && strcmp(method, "PUT") == 0) {
                begun[step] = true;
                r = reply(c->fd, 200, "{\"next_offset\": %llu}",
                          (unsigned long long)next_off[step]);
        } else if (strcmp(what, "output") == 0 && strcmp(method, "POST") == 0) {
                r = header_is(h, hl, "Content-Type", "application/vnd.drover.output.v1")
                        ? batch(c->fd, step, h, hl, body, n)
                        : reply(c->fd, 415, "{\"error\": \"unsupported media type\"}");
        } else if (strcmp(what, "end") == 0 && strcmp(method, "POST") == 0) {
                /* "length": N must equal what was stored */
                const char *lp = memmem(body, n, "\"length\":", 9);
                uint64_t len = lp ? strtoull(lp + 9, NULL, 10) : UINT64_MAX;
                r = len == next_off[step] ? reply(c->fd, 200, "{\"next_offset\": %llu}",
                                                  (unsigned long long)next_off[step])
                                          : reply(c->fd, 409, "{\"next_offset\": %llu}",
                                                  (unsigned long long)next_off[step]);
        } else
                r = reply(c->fd, 404, "{\"error\": \"no such resource\"}");
        memmove(c->buf, c->buf + hl + n, c->len - hl - n);
        c->len -= hl + n;
        return r;
}

static int http(const char *port_file)
{
        int ls = listen_on(port_file);
        if (ls < 0)
                return 1;
        struct conn conns[MAX_CONNS];
        size_t nc = 0;
        for (;;) {
                struct pollfd p[MAX_CONNS + 1];
                p[0] = (struct pollfd){.fd = ls, .events = POLLIN};
                for (size_t i = 0; i < nc; i++)
                        p[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
                if (poll(p, nc + 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                for (size_t i = nc; i-- > 0;) {
                        if (!p[i + 1].revents)
                                continue;
                        if (request(&conns[i]) < 0) {
                                close(conns[i].fd);
                                free(conns[i].buf);
                                conns[i] = conns[--nc];
                        }
                }
                if (p[0].revents & POLLIN) {
                        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                        if (c >= 0 && nc < MAX_CONNS) {
                                int one = 1;
                                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                                conns[nc++] = (struct conn){.fd = c};
                        } else if (c >= 0) {
                                close(c);
                        }
                }
        }
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "raw") == 0)
                return raw(argv[2]);
        if (argc == 4 && strcmp(argv[1], "http") == 0) {
                token = argv[3];
                return http(argv[2]);
        }
        fprintf(stderr, "usage: output_sink raw PORTFILE | http PORTFILE TOKEN\n");
        return 2;
}
