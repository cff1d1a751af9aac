/* plumbing.c: small pieces of the supervisor side (sandbox.c) — job names, uid/network slots,
 * id maps, the control socket pairs, the thread check before cloning pid 1. */
#include "sandbox/internal.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/socket.h>

#define SLOTS   SANDBOX_SLOTS
#define SOCKBUF (4 << 20)

bool sb_name_ok(const char *s)
{
        if (!s || !*s || strlen(s) > 64 || s[0] == '.')
                return false;
        for (; *s; s++)
                if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
                      ('0' <= *s && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
                        return false;
        return true;
}

const char *sb_slot_dir(void)
{
        static char dir[PATH_MAX];
        if (!dir[0]) {
                _cleanup_free_ char *run = drv_run_root();
                snprintf(dir, sizeof(dir), "%s/uid-slots", run ? run : "/nonexistent");
        }
        return dir;
}

int sb_try_slot(int slot)
{
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/%d.lock", sb_slot_dir(), slot);
        int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
                return fd;
        if (fd >= 0)
                close(fd);
        return -1;
}

/* Take the first free uid/network slot: an flock'ed file, released when the fd closes. */
int sb_take_slot(int *slot, int *fd_out, struct drv_error *err)
{
        int r = drv_mkdir_p(sb_slot_dir(), 0700, err);
        if (r < 0)
                return r;
        /* Round robin from the slot after the last one taken (a hint; the flock decides): a
         * slot's uid range, subnet and veth names are not handed to the next job at once, so
         * nothing of a job just ended (conntrack entries, a lingering rule) meets its successor. */
        unsigned start = 0;
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/next", sb_slot_dir());
        _cleanup_close_ int hint = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        char hb[16] = "";
        if (hint >= 0 && pread(hint, hb, sizeof(hb) - 1, 0) > 0)
                start = (unsigned)strtoul(hb, NULL, 10) % SLOTS;
        for (int k = 0; k < SLOTS; k++) {
                int i = (int)((start + (unsigned)k) % SLOTS);
                snprintf(p, sizeof(p), "%s/%d.lock", sb_slot_dir(), i);
                int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return drv_err_errno(err, "open %s", p);
                if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                        *slot = i;
                        *fd_out = fd;
                        if (hint >= 0) {
                                int n = snprintf(hb, sizeof(hb), "%-10d\n", (i + 1) % SLOTS);
                                if (pwrite(hint, hb, (size_t)n, 0) < 0)
                                        log_debug("sandbox_slot_hint", "error=%s", strerror(errno));
                        }
                        return 0;
                }
                close(fd);
        }
        return drv_err(err, EBUSY, "all %d sandbox slots are in use", SLOTS);
}

int sb_write_maps(pid_t pid, uint32_t base, struct drv_error *err)
{
        char path[64], map[64];
        snprintf(map, sizeof(map), "0 %u %u\n", base, UID_RANGE);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        int r = drv_write_file(path, map, err);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        return drv_write_file(path, map, err);
}

int sb_make_pair(int sv[2], struct drv_error *err)
{
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return drv_err_errno(err, "socketpair");
        int sz = SOCKBUF;
        for (int i = 0; i < 2; i++) {
                if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
                        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
                if (setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
                        (void)setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
        return 0;
}

bool sb_multithreaded(void)
{
        char st[1024];
        int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : DRV_RETRY(read(fd, st, sizeof(st) - 1));
        if (fd >= 0)
                close(fd);
        if (n <= 0)
                return true;
        st[n] = 0;
        const char *p = strrchr(st, ')');
        for (int field = 2; p && field < 20; field++) /* num_threads is field 20 */
                p = strchr(p + 1, ' ');
        return !p || strtol(p + 1, NULL, 10) != 1;
}
