/* net.c: a TCP connection to host:port with a timeout — for `ssh -L` in the sandbox runtime (from
 * inside the job's network namespace) and for the docker runtime's in-container helper. */
#include "drv.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

static int connect_one(const struct addrinfo *a, int timeout_ms)
{
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
                return -errno;
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
                struct pollfd pf = {fd, POLLOUT, 0};
                int e = 0;
                socklen_t el = sizeof(e);
                if (DRV_RETRY(poll(&pf, 1, timeout_ms)) != 1)
                        errno = ETIMEDOUT;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0)
                        r = 0;
                else
                        errno = e ? e : EIO;
        }
        if (r == 0)
                return fd;
        int e = errno;
        close(fd);
        return -e;
}

int drv_tcp_connect(const char *host, uint16_t port, int timeout_ms, int *fd, struct drv_error *err)
{
        char ps[8];
        snprintf(ps, sizeof(ps), "%u", port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
        struct addrinfo *res = NULL;
        int g = getaddrinfo(host, ps, &hints, &res);
        if (g != 0) {
                hints.ai_flags = AI_NUMERICSERV; /* lo only: no "configured" address */
                g = getaddrinfo(host, ps, &hints, &res);
        }
        if (g != 0)
                return drv_err(err, ENOENT, "%s:%u: resolve: %s", host, port, gai_strerror(g));
        int r = -ECONNREFUSED;
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                r = connect_one(a, timeout_ms);
                if (r >= 0)
                        break;
        }
        freeaddrinfo(res);
        if (r < 0)
                return drv_err(err, -r, "%s:%u: connect: %s", host, port, strerror(-r));
        *fd = r;
        return 0;
}
