/* error.c: struct drv_error helpers — one error scheme everywhere. */
#include "drv.h"

static void err_vset(struct drv_error *err, int code, const char *fmt, va_list ap)
{
        if (!err)
                return;
        err->code = code;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

int drv_err(struct drv_error *err, int code, const char *fmt, ...)
{
        va_list ap;
        if (code < 0)
                code = -code;
        if (code == 0)
                code = EIO;
        va_start(ap, fmt);
        err_vset(err, code, fmt, ap);
        va_end(ap);
        return -code;
}

int drv_err_errno(struct drv_error *err, const char *fmt, ...)
{
        int code = errno ? errno : EIO;
        va_list ap;
        va_start(ap, fmt);
        err_vset(err, code, fmt, ap);
        va_end(ap);
        if (err) {
                size_t n = strlen(err->message);
                snprintf(err->message + n, sizeof(err->message) - n, ": %s", strerror(code));
        }
        return -code;
}

int drv_err_prefix(struct drv_error *err, const char *fmt, ...)
{
        char prefix[512];
        char old[sizeof(err->message)];
        va_list ap;
        if (!err)
                return -EIO;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, err->message, sizeof(old));
        snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old);
        if (err->code == 0)
                err->code = EIO;
        return -err->code;
}

void drv_err_clear(struct drv_error *err)
{
        if (err) {
                err->code = 0;
                err->message[0] = '\0';
        }
}
