/* runtime_docker_pump.c: the docker runtime's pump processes. drover forks them from threads (the
 * SSH server's; libcurl and OpenSSL keep locks), so the forked child only moves fds into place and
 * execs drover itself as `drover __docker-pump KIND` (hidden), which reads what to pump from fd 3
 * and pumps in a fresh single-threaded process. Secrets (the client key) never go into argv or
 * the environment: they travel in the description on fd 3 (a memfd). */
#include "agent/commands.h"
#include "executor/docker/runtime_docker_int.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

extern char **environ;

#define DESC_MAX (1u << 20)

int rtdocker_self_open(struct drv_error *err)
{
        /* the running image, even when an upgrade replaced the file at its path meanwhile */
        int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "docker runtime: /proc/self/exe (drover runs its pumps)");
        return fd;
}

int rtdocker_desc_put(struct strbuf *sb, const char *name, const char *value)
{
        if (!value)
                return 0;
        size_t n = strlen(value);
        if (strbuf_printf(sb, "%s %zu\n", name, n) < 0 || strbuf_append(sb, value, n) < 0 ||
            strbuf_putc(sb, '\n') < 0)
                return -ENOMEM;
        return 0;
}

int rtdocker_desc_put_conn(struct strbuf *sb, const struct docker *d)
{
        struct docker_conn c;
        docker_describe(d, &c);
        const char *rec[][2] = {{"base", c.base}, {"host", c.host},     {"sock", c.sock},
                                {"ca", c.ca_pem}, {"cert", c.cert_pem}, {"key", c.key_pem},
                                {"api", c.api},   {"engine", c.engine}, {"arch", c.arch},
                                {"node", c.node}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(rec); i++)
                if (rtdocker_desc_put(sb, rec[i][0], rec[i][1]) < 0)
                        return -ENOMEM;
        return 0;
}

static int describe(const struct docker *d, const struct rtdocker_pump *p, struct strbuf *sb)
{
        char proc[16], tty[4], rows[8], cols[8], lvl[4], fds[4];
        snprintf(proc, sizeof(proc), "%d", p->proc);
        snprintf(tty, sizeof(tty), "%d", p->tty ? 1 : 0);
        snprintf(rows, sizeof(rows), "%u", p->rows);
        snprintf(cols, sizeof(cols), "%u", p->cols);
        snprintf(lvl, sizeof(lvl), "%d", (int)drv_log_get_level());
        /* which of PUMP_FD_REPORT..PUMP_FD_ERR are given (bit 0: report) */
        snprintf(fds, sizeof(fds), "%d",
                 (p->report >= 0) | (p->in >= 0) << 1 | (p->out >= 0) << 2 | (p->err >= 0) << 3);
        const char *rec[][2] = {{"proc", proc}, {"exec", p->exec_id}, {"container", p->container},
                                {"tty", tty},   {"rows", rows},       {"cols", cols},
                                {"log", lvl},   {"fds", fds}};
        if (rtdocker_desc_put_conn(sb, d) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(rec); i++)
                if (rtdocker_desc_put(sb, rec[i][0], rec[i][1]) < 0)
                        return -ENOMEM;
        return 0;
}

/* The forked child: async-signal-safe calls only (another thread may have held a lock at fork). */
static _Noreturn void child_exec(const int *src, char *const *argv, const struct rtdocker_pump *p)
{
        int tmp[PUMP_FD_EXE - PUMP_FD_DESC + 1];
        for (int i = 0; i <= PUMP_FD_EXE - PUMP_FD_DESC; i++)
                tmp[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD, PUMP_FD_EXE + 1) : -1;
        syscall(SYS_close_range, PUMP_FD_DESC, PUMP_FD_EXE, 0);
        for (int i = 0; i <= PUMP_FD_EXE - PUMP_FD_DESC; i++)
                if (tmp[i] >= 0)
                        (void)dup2(tmp[i], PUMP_FD_DESC + i);
        (void)fcntl(PUMP_FD_EXE, F_SETFD, FD_CLOEXEC);
        syscall(SYS_close_range, PUMP_FD_EXE + 1, ~0U, 0);
        syscall(SYS_execveat, PUMP_FD_EXE, "", argv, environ, AT_EMPTY_PATH);
        if (p->fail_out)
                (void)!write(PUMP_FD_OUT, p->fail_out, strlen(p->fail_out));
        if (p->fail_len)
                (void)!write(PUMP_FD_REPORT, p->fail, p->fail_len);
        _exit(127);
}

int rtdocker_pump_spawn(struct rtdocker *rt, const struct rtdocker_pump *p, pid_t *pid,
                        struct drv_error *err)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        if (describe(rt->d, p, &sb) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int desc = memfd_create("drover-pump", MFD_CLOEXEC);
        if (desc < 0)
                return drv_err_errno(err, "memfd_create");
        if (drv_write_all(desc, sb.buf, sb.len) < 0 || lseek(desc, 0, SEEK_SET) < 0)
                return drv_err_errno(err, "writing the pump's description");
        /* everything the child needs exists before fork */
        char *const argv[] = {(char *)"drover", (char *)RTDOCKER_PUMP_CMD, (char *)p->kind, NULL};
        const int src[] = {desc, p->report, p->in, p->out, p->err, rt->self_fd};
        pid_t c = fork();
        if (c < 0)
                return drv_err_errno(err, "fork");
        if (c == 0)
                child_exec(src, argv, p);
        *pid = c;
        return 0;
}

/* ---- the pump process: `drover __docker-pump KIND` ---- */

int rtdocker_desc_parse(char *text, size_t len, struct rtdocker_desc_rec *rec, size_t cap,
                        size_t *n)
{
        char *p = text, *end = text + len;
        *n = 0;
        while (p < end) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                char *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
                if (!sp || *n == cap)
                        return -EINVAL;
                *sp = *nl = '\0';
                uint64_t vlen;
                if (drv_parse_u64(sp + 1, &vlen) < 0 || vlen >= (uint64_t)(end - nl - 1) ||
                    nl[1 + vlen] != '\n')
                        return -EINVAL;
                nl[1 + vlen] = '\0';
                rec[(*n)++] = (struct rtdocker_desc_rec){p, nl + 1};
                p = nl + 2 + vlen;
        }
        return *n ? 0 : -EINVAL;
}

const char *rtdocker_desc_get(const struct rtdocker_desc_rec *rec, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(rec[i].name, name) == 0)
                        return rec[i].value;
        return NULL;
}

void rtdocker_desc_conn(const struct rtdocker_desc_rec *rec, size_t n, struct docker_conn *c)
{
        *c = (struct docker_conn){
            rtdocker_desc_get(rec, n, "base"), rtdocker_desc_get(rec, n, "host"),
            rtdocker_desc_get(rec, n, "sock"), rtdocker_desc_get(rec, n, "ca"),
            rtdocker_desc_get(rec, n, "cert"), rtdocker_desc_get(rec, n, "key"),
            rtdocker_desc_get(rec, n, "api"),  rtdocker_desc_get(rec, n, "engine"),
            rtdocker_desc_get(rec, n, "arch"), rtdocker_desc_get(rec, n, "node")};
}

/* PUMP_FD_REPORT + i when the description says it was given and it is open, else -1. */
static int given_fd(unsigned mask, int i)
{
        int fd = PUMP_FD_REPORT + i;
        return (mask >> i & 1) && fcntl(fd, F_GETFD) >= 0 ? fd : -1;
}

static int refuse(const char *why)
{
        fprintf(stderr,
                "drover %s: %s (an internal command of the docker runtime, which starts it with "
                "its file descriptors; not for use by hand)\n",
                RTDOCKER_PUMP_CMD, why);
        return 2;
}

static int pump_run(const char *kind, const struct rtdocker_desc_rec *rec, size_t n)
{
        struct docker_conn c;
        rtdocker_desc_conn(rec, n, &c);
        const char *proc = rtdocker_desc_get(rec, n, "proc"),
                   *lvl = rtdocker_desc_get(rec, n, "log");
        unsigned fds = (unsigned)atoi(rtdocker_desc_get(rec, n, "fds") ?: "0");
        struct rtdocker_pump p = {
            .kind = kind,
            .proc = proc ? atoi(proc) : 0,
            .exec_id = rtdocker_desc_get(rec, n, "exec"),
            .container = rtdocker_desc_get(rec, n, "container"),
            .tty = drv_startswith(rtdocker_desc_get(rec, n, "tty") ?: "", "1"),
            .rows = (unsigned short)atoi(rtdocker_desc_get(rec, n, "rows") ?: "0"),
            .cols = (unsigned short)atoi(rtdocker_desc_get(rec, n, "cols") ?: "0"),
            .report = given_fd(fds, 0),
            .in = given_fd(fds, 1),
            .out = given_fd(fds, 2),
            .err = given_fd(fds, 3)};
        if (lvl)
                drv_log_set_level((enum drv_log_level)atoi(lvl));
        void (*fn)(struct docker *, const struct rtdocker_pump *) =
            strcmp(kind, "step") == 0      ? rtdocker_pump_step
            : strcmp(kind, "session") == 0 ? rtdocker_pump_session
            : strcmp(kind, "fwd") == 0     ? rtdocker_pump_fwd
                                           : NULL;
        if (!fn)
                return refuse("unknown kind of pump");
        if (!p.exec_id || p.report < 0)
                return refuse("no exec id or no report fd");
        struct docker *d = NULL;
        struct drv_error e = {0};
        if (docker_from_conn(&c, &d, &e) < 0)
                return refuse(e.message);
        fn(d, &p);
        docker_close(d);
        return 0;
}

int cmd_docker_pump(int argc, char **argv)
{
        struct stat st;
        if (argc != 2)
                return refuse("usage: drover " RTDOCKER_PUMP_CMD " step|session|fwd");
        if (fstat(PUMP_FD_DESC, &st) < 0 || !S_ISREG(st.st_mode))
                return refuse("fd 3 holds no pump description");
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct drv_error e = {0};
        if (drv_read_fd(PUMP_FD_DESC, &text, &len, DESC_MAX, &e) < 0)
                return refuse(e.message);
        close(PUMP_FD_DESC);
        struct rtdocker_desc_rec rec[32];
        size_t n = 0;
        if (rtdocker_desc_parse(text, len, rec, DRV_ARRAY_SIZE(rec), &n) < 0)
                return refuse("fd 3 holds no pump description");
        int r = pump_run(argv[1], rec, n);
        explicit_bzero(text, len); /* the client key */
        return r;
}
