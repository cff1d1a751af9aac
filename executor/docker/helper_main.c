/* helper_main.c: drover-docker-helper (see helper_proto.h), a static program run by exec inside a
 * docker runtime's job container, which may have no shell tools at all: `ssh -L` relays and the
 * cgroup's OOM-kill counter. Built from this file and lib/ only (musl when available). */
#include "executor/docker/helper_proto.h"
#include "lib/drv.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

static int put_frame(char type, const void *p, size_t n)
{
        unsigned char h[DKH_HDR] = {(unsigned char)type, (unsigned char)(n >> 24),
                                    (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                                    (unsigned char)n};
        if (drv_write_all(1, h, sizeof(h)) < 0)
                return -1;
        return n ? drv_write_all(1, p, n) : 0;
}

struct relay {
        int sock;
        bool in_eof, sock_eof, sock_dead;
        char pend[DKH_MAX_PAYLOAD]; /* from stdin, not yet written to the socket */
        size_t pend_len, pend_off;
};

/* stdin -> socket; a server that stopped reading only costs what it sent being dropped */
static void from_stdin(struct relay *r)
{
        ssize_t n = DRV_RETRY(read(0, r->pend, sizeof(r->pend)));
        if (n <= 0) {
                r->in_eof = true;
                if (!r->sock_dead)
                        shutdown(r->sock, SHUT_WR);
                return;
        }
        if (!r->sock_dead) {
                r->pend_len = (size_t)n;
                r->pend_off = 0;
        }
}

static void to_sock(struct relay *r)
{
        ssize_t n = send(r->sock, r->pend + r->pend_off, r->pend_len - r->pend_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n < 0) {
                r->sock_dead = true;
                r->pend_len = r->pend_off = 0;
                return;
        }
        r->pend_off += (size_t)n;
        if (r->pend_off == r->pend_len)
                r->pend_len = r->pend_off = 0;
}

/* socket -> stdout; 0, or -1 when stdout is gone */
static int from_sock(struct relay *r)
{
        static char buf[DKH_MAX_PAYLOAD];
        ssize_t n = recv(r->sock, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n > 0)
                return put_frame(DKH_DATA, buf, (size_t)n);
        r->sock_eof = true;
        return put_frame(DKH_EOF, NULL, 0);
}

static int relay(const char *host, const char *port_s)
{
        uint64_t port = 0;
        struct drv_error err = {0};
        static struct relay r; /* zeroed: not in the file */
        r.sock = -1;
        if (drv_parse_u64(port_s, &port) < 0 || port == 0 || port > 65535) {
                drv_err(&err, EINVAL, "bad port %s", port_s);
        } else if (drv_tcp_connect(host, (uint16_t)port, 10000, &r.sock, &err) == 0) {
                char pid[24];
                int n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
                if (put_frame(DKH_CONNECTED, pid, (size_t)n) < 0)
                        return 1;
        }
        if (r.sock < 0) {
                (void)put_frame(DKH_ERROR, err.message, strlen(err.message));
                return 1;
        }
        while (!(r.in_eof && r.pend_len == 0 && r.sock_eof)) {
                bool pending = r.pend_len > 0;
                /* a socket at EOF with nothing to send always polls HUP: not watched then */
                bool watch = !r.sock_eof || pending;
                struct pollfd pf[2] = {
                    {r.in_eof || pending ? -1 : 0, POLLIN, 0},
                    {watch ? r.sock : -1,
                     (short)((r.sock_eof ? 0 : POLLIN) | (pending ? POLLOUT : 0)), 0}};
                if (DRV_RETRY(poll(pf, 2, -1)) < 0)
                        return 1;
                if (pf[0].revents)
                        from_stdin(&r);
                if (pending && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP)))
                        to_sock(&r);
                if (!r.sock_eof && (pf[1].revents & (POLLIN | POLLERR | POLLHUP)) &&
                    from_sock(&r) < 0)
                        return 1;
        }
        return 0;
}

static int print_oom_file(void)
{
        /* the container's own cgroup: a private cgroup namespace shows it at the root; with the
         * host's, it is where /proc/self/cgroup says (v2: "0::PATH", v1: "N:memory:PATH") */
        char v2[512] = "", v1[512] = "", line[600];
        FILE *f = fopen("/proc/self/cgroup", "re");
        while (f && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (strncmp(line, "0::", 3) == 0)
                        snprintf(v2, sizeof(v2), "%s", line + 3);
                else if (strstr(line, ":memory:"))
                        snprintf(v1, sizeof(v1), "%s", strstr(line, ":memory:") + 8);
        }
        if (f)
                fclose(f);
        char paths[4][700];
        snprintf(paths[0], sizeof(paths[0]), "/sys/fs/cgroup%s/memory.events", v2);
        snprintf(paths[1], sizeof(paths[1]), "/sys/fs/cgroup/memory%s/memory.oom_control", v1);
        snprintf(paths[2], sizeof(paths[2]), "/sys/fs/cgroup/memory.events");
        snprintf(paths[3], sizeof(paths[3]), "/sys/fs/cgroup/memory/memory.oom_control");
        for (size_t i = 0; i < DRV_ARRAY_SIZE(paths); i++) {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                if (drv_read_file(paths[i], &text, &len, 65536, NULL) == 0)
                        return drv_write_all(1, text, len) < 0 ? 1 : 0;
        }
        fprintf(stderr, "drover-docker-helper: no cgroup memory.events or memory.oom_control\n");
        return 3;
}

int main(int argc, char **argv)
{
        signal(SIGPIPE, SIG_IGN);
        uint64_t pid = 0;
        if (argc == 4 && strcmp(argv[1], "connect") == 0)
                return relay(argv[2], argv[3]);
        if (argc == 2 && strcmp(argv[1], "oom-kills") == 0)
                return print_oom_file();
        if (argc == 3 && strcmp(argv[1], "kill") == 0 && drv_parse_u64(argv[2], &pid) == 0 &&
            pid > 1 && pid < (1u << 22))
                return kill((pid_t)pid, SIGKILL) < 0 ? 1 : 0;
        fprintf(stderr, "usage: drover-docker-helper connect HOST PORT | oom-kills | kill PID\n");
        return 2;
}
