/* drv.h: drover's small shared library — errors, cleanup helpers, logging, buffers, file utils. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- cleanup attributes (systemd style) ---- */
static inline void drv_freep(void *p)
{
        free(*(void **)p);
}
static inline void drv_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
static inline void drv_fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}
void drv_strv_free(char **v);
static inline void drv_strv_freep(char ***v)
{
        drv_strv_free(*v);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(drv_freep)
#define _cleanup_close_  _cleanup_(drv_closep)
#define _cleanup_fclose_ _cleanup_(drv_fclosep)
#define _cleanup_strv_   _cleanup_(drv_strv_freep)

/* TAKE_PTR: hand ownership on and leave NULL behind. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _tp = (p);                                                           \
                (p) = NULL;                                                                        \
                _tp;                                                                               \
        })
/* TAKE_FD: hand an fd on and leave -1 behind. */
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _tf = (fd);                                                                    \
                (fd) = -1;                                                                         \
                _tf;                                                                               \
        })

#define DRV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DRV_UNUSED        __attribute__((unused))
#define DRV_PRINTF(a, b)  __attribute__((format(printf, a, b)))

/* Retry a syscall expression while it fails with EINTR. */
#define DRV_RETRY(expr)                                                                            \
        ({                                                                                         \
                long _r;                                                                           \
                do                                                                                 \
                        _r = (long)(expr);                                                         \
                while (_r == -1 && errno == EINTR);                                                \
                _r;                                                                                \
        })

/* ---- errors: every fallible function returns 0 or -errno and fills one of these ---- */
struct drv_error {
        int code; /* positive errno value, 0 when no error */
        char message[1024];
};

/* Set err (if not NULL) to code and a formatted message; returns -code (so `return drv_err(...)`).
 */
int drv_err(struct drv_error *err, int code, const char *fmt, ...) DRV_PRINTF(3, 4);
/* Like drv_err with code = errno, appending ": strerror(errno)". Returns -errno. */
int drv_err_errno(struct drv_error *err, const char *fmt, ...) DRV_PRINTF(2, 3);
/* Prefix an existing error's message with more context ("while X: <old>"). Returns -err->code. */
int drv_err_prefix(struct drv_error *err, const char *fmt, ...) DRV_PRINTF(2, 3);
/* Reset to "no error". */
void drv_err_clear(struct drv_error *err);

/* ---- logging: one line per event, key=value fields, to stderr ---- */
enum drv_log_level { DRV_LOG_DEBUG, DRV_LOG_INFO, DRV_LOG_WARN, DRV_LOG_ERROR };
/* Set once at start. */
void drv_log_set_level(enum drv_log_level level);
enum drv_log_level drv_log_get_level(void);
/* Parse "debug|info|warn|error"; returns 0 or -EINVAL. */
int drv_log_parse_level(const char *s, enum drv_log_level *out);
/* Log one event: msg is a short event name, fmt carries key=value fields (may be NULL). */
void drv_log(enum drv_log_level level, const char *msg, const char *fmt, ...) DRV_PRINTF(3, 4);
/* A filter every log line passes through before it is written: returns a new string (the logger
 * frees it) or NULL to write the line as is. `drover job` masks the job's secrets with it
 * (jobrunner.c). Like the level, set once — around the one job a process runs, before its threads
 * start and after they end; fn NULL clears it. */
typedef char *(*drv_log_filter_fn)(const void *ctx, const char *line);
void drv_log_set_filter(drv_log_filter_fn fn, const void *ctx);
#define log_debug(msg, ...) drv_log(DRV_LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  drv_log(DRV_LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  drv_log(DRV_LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) drv_log(DRV_LOG_ERROR, msg, __VA_ARGS__)

/* ---- growable byte buffer ---- */
struct strbuf {
        char *buf; /* always NUL-terminated when len > 0 or after any append */
        size_t len;
        size_t cap;
};
#define STRBUF_INIT                                                                                \
        {                                                                                          \
                NULL, 0, 0                                                                         \
        }
/* Ensure room for extra more bytes (+ NUL). Returns 0 or -ENOMEM. */
int strbuf_grow(struct strbuf *sb, size_t extra);
int strbuf_append(struct strbuf *sb, const void *data, size_t n);
int strbuf_puts(struct strbuf *sb, const char *s);
int strbuf_putc(struct strbuf *sb, char c);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) DRV_PRINTF(2, 3);
int strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap);
/* Hand the buffer to the caller (caller frees); leaves sb empty. Never NULL on success. */
char *strbuf_detach(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);
static inline void strbuf_releasep(struct strbuf *sb)
{
        strbuf_release(sb);
}
#define _cleanup_strbuf_ _cleanup_(strbuf_releasep)

/* ---- string vectors (NULL-terminated char **) ---- */
size_t drv_strv_len(char *const *v);
/* Append a copy of s; *v may be NULL. Returns 0 or -ENOMEM. */
int drv_strv_push(char ***v, const char *s);
/* Append s, taking ownership of it. */
int drv_strv_push_take(char ***v, char *s);
/* Deep copy (returns NULL on OOM). */
char **drv_strv_copy(char *const *v);

/* ---- misc string helpers ---- */
/* Allocating printf; returns NULL on OOM. Caller frees. */
char *drv_asprintf(const char *fmt, ...) DRV_PRINTF(1, 2);
/* strdup that aborts on OOM is NOT provided: use strdup and check. */
bool drv_startswith(const char *s, const char *prefix);
/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void drv_hex(const unsigned char *d, size_t n, char *out);
bool drv_endswith(const char *s, const char *suffix);
/* Parse a non-negative decimal integer fully; 0 or -EINVAL/-ERANGE. */
int drv_parse_u64(const char *s, uint64_t *out);
/* Parse a size like "512", "64k", "4M", "2G", "1Gi"; 0 or -EINVAL. */
int drv_parse_size(const char *s, uint64_t *out);
/* Parse a CircleCI duration like "10m", "1h30m", "90s", "45" (seconds); 0 or -EINVAL. */
int drv_parse_duration(const char *s, uint64_t *seconds_out);
/* Monotonic clock in nanoseconds / microseconds. */
uint64_t drv_now_ns(void);
/* Wall-clock time as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void drv_time_rfc3339(char *buf, size_t n);

/* Does path match a glob? `*` and `?` stay within one component, `**` spans directories,
 * `[...]` classes and `{a,b}` alternatives as in shells; a leading "./" is ignored. */
bool drv_glob_match(const char *pattern, const char *path);
/* Append every path matching pattern, named as the pattern names them (relative to dirfd, which
 * may be AT_FDCWD, or absolute), to *out (globwalk.c). The walk starts at the pattern's longest
 * wildcard-free directory prefix and below it never follows a symlink (one that matches is
 * listed, not entered). A pattern without wildcards is listed when it exists. With
 * DRV_GLOB_BENEATH the prefix too is resolved beneath dirfd through no symlink at all (an
 * absolute pattern then matches nothing). 0 or -ENOMEM. */
#define DRV_GLOB_BENEATH 1u
int drv_glob_walk(int dirfd, const char *pattern, unsigned flags, char ***out);

/* ---- file helpers (all fds O_CLOEXEC, EINTR retried) ---- */
/* Read a whole file (or fd) into a malloc'd NUL-terminated buffer; *len optional. Caps at max bytes
 * (0 = 64 MiB default); a larger file is -EFBIG. */
int drv_read_file(const char *path, char **out, size_t *len, size_t max, struct drv_error *err);
int drv_read_fd(int fd, char **out, size_t *len, size_t max, struct drv_error *err);
/* Write all of buf to fd, retrying short writes and EINTR. 0 or -errno. */
int drv_write_all(int fd, const void *buf, size_t n);
/* Write a small string to a file (O_WRONLY, no create), as for sysfs/cgroupfs knobs. */
int drv_write_file(const char *path, const char *s, struct drv_error *err);
/* Same, relative to a directory fd. */
int drv_write_fileat(int dirfd, const char *name, const char *s, struct drv_error *err);
/* Create a file atomically (write to tmp + fsync + rename), mode as given. */
int drv_write_file_atomic(const char *path, const void *buf, size_t n, mode_t mode,
                          struct drv_error *err);
/* mkdir -p with the given mode; existing directories are fine. */
int drv_mkdir_p(const char *path, mode_t mode, struct drv_error *err);
/* rm -rf without following symlinks or crossing mount points. Missing path is fine. */
int drv_rm_rf(const char *path, struct drv_error *err);
/* Set O_NONBLOCK / FD_CLOEXEC. */
int drv_fd_nonblock(int fd, bool on);
int drv_fd_cloexec(int fd, bool on);
/* A TCP connection to host:port (names resolved, every address tried, each for up to timeout_ms);
 * *fd is non-blocking and close-on-exec. The message names host:port and what failed
 * ("resolve: ...", "connect: ..."). 0 or -errno (net.c). */
int drv_tcp_connect(const char *host, uint16_t port, int timeout_ms, int *fd,
                    struct drv_error *err);
/* ---- state paths (userdirs.c) ---- */
/* True when drover runs as an ordinary user (not euid 0): the rootless sandbox, user paths. */
bool drv_rootless(void);
/* Runtime state (locks, run directories; malloc'd, NULL on ENOMEM): /run/drover as root; a
 * user's $XDG_RUNTIME_DIR/drover when it is theirs and private, else drv_cache_root()/run. */
char *drv_run_root(void);
/* Persistent state (malloc'd): /var/lib/drover as root; a user's $XDG_CACHE_HOME/drover or
 * ~/.cache/drover (the local store, the image layer store). NULL when no home is known. */
char *drv_cache_root(void);
/* Path of the running executable (/proc/self/exe resolved), malloc'd. */
char *drv_self_exe(void);
/* Path join with a single '/', malloc'd. */
char *drv_path_join(const char *a, const char *b);
