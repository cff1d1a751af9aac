/* log.c: one line per event on stderr, "time level event key=value ...", journald friendly. */
#include "drv.h"

static enum drv_log_level log_level = DRV_LOG_INFO;
static drv_log_filter_fn log_filter;
static const void *log_filter_ctx;

void drv_log_set_filter(drv_log_filter_fn fn, const void *ctx)
{
        log_filter = fn;
        log_filter_ctx = ctx;
}

void drv_log_set_level(enum drv_log_level level)
{
        log_level = level;
}

enum drv_log_level drv_log_get_level(void)
{
        return log_level;
}

int drv_log_parse_level(const char *s, enum drv_log_level *out)
{
        static const char *names[] = {"debug", "info", "warn", "error"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(names); i++) {
                if (strcmp(s, names[i]) == 0) {
                        *out = (enum drv_log_level)i;
                        return 0;
                }
        }
        return -EINVAL;
}

void drv_log(enum drv_log_level level, const char *msg, const char *fmt, ...)
{
        static const char *names[] = {"debug", "info", "warn", "error"};
        char line[4096];
        char ts[40];
        int n;
        int saved = errno;
        if (level < log_level)
                return;
        drv_time_rfc3339(ts, sizeof(ts));
        n = snprintf(line, sizeof(line), "time=%s level=%s event=%s", ts, names[level], msg);
        if (fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
                va_list ap;
                line[n++] = ' ';
                va_start(ap, fmt);
                int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
                va_end(ap);
                if (m > 0)
                        n += m;
        }
        if (n < 0)
                n = 0;
        if ((size_t)n > sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n] = '\0';
        char *filtered = log_filter ? log_filter(log_filter_ctx, line) : NULL;
        if (filtered) {
                n = snprintf(line, sizeof(line) - 1, "%s", filtered);
                free(filtered);
                if (n < 0)
                        n = 0;
                if ((size_t)n > sizeof(line) - 2)
                        n = (int)sizeof(line) - 2;
        }
        line[n++] = '\n';
        (void)drv_write_all(STDERR_FILENO, line, (size_t)n);
        errno = saved;
}
