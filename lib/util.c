/* util.c: string parsing, clocks and file helpers shared by every module. */
#include "drv.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>

char *drv_asprintf(const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

bool drv_startswith(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool drv_endswith(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int drv_parse_u64(const char *s, uint64_t *out)
{
        uint64_t v = 0;
        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                        return -ERANGE;
        }
        *out = v;
        return 0;
}

int drv_parse_size(const char *s, uint64_t *out)
{
        char num[32];
        size_t i = 0;
        uint64_t v, mult = 1;
        if (!s)
                return -EINVAL;
        while (isdigit((unsigned char)s[i]) && i < sizeof(num) - 1) {
                num[i] = s[i];
                i++;
        }
        num[i] = '\0';
        if (drv_parse_u64(num, &v) < 0)
                return -EINVAL;
        const char *suf = s + i;
        if (*suf == '\0' || strcmp(suf, "B") == 0)
                mult = 1;
        else if (strcasecmp(suf, "k") == 0 || strcasecmp(suf, "ki") == 0 ||
                 strcasecmp(suf, "kb") == 0)
                mult = 1ULL << 10;
        else if (strcasecmp(suf, "m") == 0 || strcasecmp(suf, "mi") == 0 ||
                 strcasecmp(suf, "mb") == 0)
                mult = 1ULL << 20;
        else if (strcasecmp(suf, "g") == 0 || strcasecmp(suf, "gi") == 0 ||
                 strcasecmp(suf, "gb") == 0)
                mult = 1ULL << 30;
        else if (strcasecmp(suf, "t") == 0 || strcasecmp(suf, "ti") == 0 ||
                 strcasecmp(suf, "tb") == 0)
                mult = 1ULL << 40;
        else
                return -EINVAL;
        if (__builtin_mul_overflow(v, mult, out))
                return -ERANGE;
        return 0;
}

int drv_parse_duration(const char *s, uint64_t *seconds_out)
{
        uint64_t total = 0;
        const char *p = s;
        bool any = false;
        if (!s || !*s)
                return -EINVAL;
        while (*p) {
                uint64_t v = 0;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                while (isdigit((unsigned char)*p)) {
                        if (__builtin_mul_overflow(v, 10, &v) ||
                            __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                                return -ERANGE;
                        p++;
                }
                uint64_t mult;
                switch (*p) {
                case 'h':
                        mult = 3600;
                        p++;
                        break;
                case 'm':
                        mult = 60;
                        p++;
                        break;
                case 's':
                        mult = 1;
                        p++;
                        break;
                case '\0':
                        if (any)
                                return -EINVAL; /* "1h30" is ambiguous */
                        mult = 1;
                        break;
                default:
                        return -EINVAL;
                }
                if (__builtin_mul_overflow(v, mult, &v) || __builtin_add_overflow(total, v, &total))
                        return -ERANGE;
                any = true;
        }
        *seconds_out = total;
        return 0;
}

uint64_t drv_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void drv_time_rfc3339(char *buf, size_t n)
{
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        char base[32];
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

int drv_read_fd(int fd, char **out, size_t *len, size_t max, struct drv_error *err)
{
        struct strbuf sb = STRBUF_INIT;
        if (max == 0)
                max = 64u << 20;
        for (;;) {
                if (strbuf_grow(&sb, 65536) < 0) {
                        strbuf_release(&sb);
                        return drv_err(err, ENOMEM, "out of memory reading file");
                }
                ssize_t n = read(fd, sb.buf + sb.len, sb.cap - sb.len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        strbuf_release(&sb);
                        return drv_err_errno(err, "read");
                }
                if (n == 0)
                        break;
                sb.len += (size_t)n;
                if (sb.len > max) {
                        strbuf_release(&sb);
                        return drv_err(err, EFBIG, "file is larger than %zu bytes", max);
                }
        }
        if (len)
                *len = sb.len;
        *out = strbuf_detach(&sb);
        return *out ? 0 : drv_err(err, ENOMEM, "out of memory");
}

int drv_read_file(const char *path, char **out, size_t *len, size_t max, struct drv_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return drv_err_errno(err, "cannot open %s", path);
        int r = drv_read_fd(fd, out, len, max, err);
        if (r < 0)
                return drv_err_prefix(err, "%s", path);
        return 0;
}

int drv_write_all(int fd, const void *buf, size_t n)
{
        const char *p = buf;
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

int drv_write_fileat(int dirfd, const char *name, const char *s, struct drv_error *err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return drv_err_errno(err, "cannot open %s", name);
        /* sysfs/cgroupfs knobs want one write() of the whole value */
        ssize_t w = DRV_RETRY(write(fd, s, strlen(s)));
        if (w < 0)
                return drv_err_errno(err, "cannot write '%s' to %s", s, name);
        return 0;
}

int drv_write_file(const char *path, const char *s, struct drv_error *err)
{
        return drv_write_fileat(AT_FDCWD, path, s, err);
}

int drv_write_file_atomic(const char *path, const void *buf, size_t n, mode_t mode,
                          struct drv_error *err)
{
        _cleanup_free_ char *tmp = drv_asprintf("%s.tmp.%d", path, (int)getpid());
        if (!tmp)
                return drv_err(err, ENOMEM, "out of memory");
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return drv_err_errno(err, "cannot create %s", tmp);
        int r = drv_write_all(fd, buf, n);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                errno = -r;
                return drv_err_errno(err, "cannot write %s", path);
        }
        return 0;
}

int drv_mkdir_p(const char *path, mode_t mode, struct drv_error *err)
{
        /* the common cases in one syscall: the parent exists, or the whole path does */
        if (mkdir(path, mode) == 0 || errno == EEXIST)
                return 0;
        if (errno != ENOENT)
                return drv_err_errno(err, "cannot create directory %s", path);
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return drv_err_errno(err, "cannot create directory %s", p);
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return drv_err_errno(err, "cannot create directory %s", p);
        return 0;
}

static int rm_rf_at(int dfd, const char *name, dev_t dev, struct drv_error *err)
{
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : drv_err_errno(err, "cannot stat %s", name);
        if (S_ISDIR(st.st_mode)) {
                if (st.st_dev != dev)
                        return drv_err(err, EXDEV, "refusing to remove across mount point %s",
                                       name);
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return drv_err_errno(err, "cannot open %s", name);
                DIR *d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return drv_err_errno(err, "cannot read %s", name);
                }
                struct dirent *de;
                int r = 0;
                while ((de = readdir(d))) {
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        r = rm_rf_at(dirfd(d), de->d_name, dev, err);
                        if (r < 0)
                                break;
                }
                closedir(d);
                if (r < 0)
                        return r;
                if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                        return drv_err_errno(err, "cannot remove %s", name);
                return 0;
        }
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                return drv_err_errno(err, "cannot remove %s", name);
        return 0;
}

int drv_rm_rf(const char *path, struct drv_error *err)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : drv_err_errno(err, "cannot stat %s", path);
        return rm_rf_at(AT_FDCWD, path, st.st_dev, err);
}

int drv_fd_nonblock(int fd, bool on)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return -errno;
        fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
        return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int drv_fd_cloexec(int fd, bool on)
{
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0)
                return -errno;
        fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
        return fcntl(fd, F_SETFD, fl) < 0 ? -errno : 0;
}

char *drv_self_exe(void)
{
        char buf[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n < 0)
                return NULL;
        buf[n] = '\0';
        return strdup(buf);
}

char *drv_path_join(const char *a, const char *b)
{
        size_t la = strlen(a);
        while (la > 1 && a[la - 1] == '/')
                la--;
        while (*b == '/')
                b++;
        if (!*b)
                return strndup(a, la);
        if (la == 1 && a[0] == '/')
                return drv_asprintf("/%s", b);
        return drv_asprintf("%.*s/%s", (int)la, a, b);
}

void drv_hex(const unsigned char *d, size_t n, char *out)
{
        static const char h[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = h[d[i] >> 4];
                out[2 * i + 1] = h[d[i] & 15];
        }
        out[2 * n] = '\0';
}
