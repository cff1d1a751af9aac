/* runtime_image_tools.c: `circleci` and `circleci-agent` inside a job's image. drover is
 * dynamically linked against the host's libraries, which the image does not have: the host's
 * drover, its dynamic loader and the directories of its libraries are bound read-only under
 * /run/drover/lib, and /run/drover/bin/circleci(-agent) are small /bin/sh wrappers running
 * `LOADER --library-path DIRS --argv0 circleci /run/drover/lib/drover "$@"`. */
#include "executor/runtime_image.h"
#include "executor/stepenv.h"

#include <elf.h>
#include <link.h>

struct libdirs {
        char *dirs[TOOL_MAX_LIBDIRS]; /* host dirs of every loaded shared object */
        size_t n;
        char *interp; /* the program's dynamic loader (host path, resolved) */
        bool overflow;
};

static int collect_libdir(struct dl_phdr_info *info, size_t size, void *ud)
{
        struct libdirs *l = ud;
        (void)size;
        const char *path = info->dlpi_name;
        if (!path || !*path) { /* the program itself: its PT_INTERP names the loader */
                for (int i = 0; i < info->dlpi_phnum && !l->interp; i++)
                        if (info->dlpi_phdr[i].p_type == PT_INTERP)
                                l->interp = realpath(
                                    (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr),
                                    NULL);
                return 0;
        }
        if (path[0] != '/')
                return 0; /* the vDSO */
        _cleanup_free_ char *real = realpath(path, NULL);
        char *slash = real ? strrchr(real, '/') : NULL;
        if (!slash)
                return 0;
        *slash = '\0';
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->dirs[i], real) == 0)
                        return 0;
        if (l->n == TOOL_MAX_LIBDIRS)
                l->overflow = true;
        else
                l->dirs[l->n++] = TAKE_PTR(real);
        return 0;
}

static void libdirs_release(struct libdirs *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->dirs[i]);
        free(l->interp);
}

int rtimg_tools_binds(struct rtimg_tools *tt, const char *job, const char *dir,
                      const char *self_exe, struct sandbox_bind *binds, size_t *nb, size_t max,
                      struct drv_error *err)
{
        _cleanup_(libdirs_release) struct libdirs l = {0};
        dl_iterate_phdr(collect_libdir, &l);
        const char *interp_base = l.interp ? strrchr(l.interp, '/') : NULL;
        _cleanup_free_ char *interp_dir =
            l.interp ? strndup(l.interp, (size_t)(interp_base - l.interp)) : NULL;
        if (!interp_base || l.overflow || *nb + l.n + 3 > max) {
                log_warn("image_tools_unavailable", "job=%s reason=\"%s\"", job,
                         !interp_base ? "drover is not dynamically linked"
                                      : "too many library dirs");
                return 0;
        }
        _cleanup_strbuf_ struct strbuf libpath = STRBUF_INIT;
        int loader = -1, r = 0;
        for (size_t i = 0; i < l.n && r == 0; i++) {
                tt->lib_inside[i] = drv_asprintf(TOOL_LIB_DIR "/%zu", i);
                if (!tt->lib_inside[i])
                        return drv_err(err, ENOMEM, "out of memory");
                tt->lib_host[i] = strdup(l.dirs[i]);
                if (!tt->lib_host[i])
                        return drv_err(err, ENOMEM, "out of memory");
                binds[(*nb)++] = (struct sandbox_bind){tt->lib_host[i], tt->lib_inside[i], true};
                if (strcmp(l.dirs[i], interp_dir) == 0)
                        loader = (int)i;
                r = strbuf_printf(&libpath, "%s%s", i ? ":" : "", tt->lib_inside[i]);
        }
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        if (loader < 0) { /* the loader's own dir holds no library: bind it too */
                loader = (int)l.n;
                tt->lib_inside[l.n] = drv_asprintf(TOOL_LIB_DIR "/%zu", l.n);
                tt->lib_host[l.n] = strdup(interp_dir);
                if (!tt->lib_inside[l.n] || !tt->lib_host[l.n])
                        return drv_err(err, ENOMEM, "out of memory");
                binds[(*nb)++] =
                    (struct sandbox_bind){tt->lib_host[l.n], tt->lib_inside[l.n], true};
        }
        binds[(*nb)++] = (struct sandbox_bind){self_exe, TOOL_LIB_DIR "/drover", true};
        static const char *const tools[] = {"circleci", "circleci-agent"};
        for (size_t t = 0; t < DRV_ARRAY_SIZE(tools); t++) {
                _cleanup_free_ char *script = drv_asprintf(
                    "#!/bin/sh\n# drover: the host's drover through the host's loader and libraries\n"
                    "exec %s/%d%s --library-path %s --argv0 %s %s/drover \"$@\"\n",
                    TOOL_LIB_DIR, loader, interp_base, libpath.buf, tools[t], TOOL_LIB_DIR);
                tt->tool_host[t] = drv_asprintf("%s/%s", dir, tools[t]);
                tt->tool_inside[t] = drv_asprintf(STEPENV_TOOLS_DIR "/%s", tools[t]);
                if (!script || !tt->tool_host[t] || !tt->tool_inside[t])
                        return drv_err(err, ENOMEM, "out of memory");
                if ((r = drv_write_file_atomic(tt->tool_host[t], script, strlen(script), 0755,
                                               err)) < 0)
                        return r;
                binds[(*nb)++] = (struct sandbox_bind){tt->tool_host[t], tt->tool_inside[t], true};
        }
        return 0;
}

void rtimg_tools_release(struct rtimg_tools *tt)
{
        for (size_t i = 0; i <= TOOL_MAX_LIBDIRS; i++) {
                free(tt->lib_host[i]);
                free(tt->lib_inside[i]);
        }
        for (size_t i = 0; i < 2; i++) {
                free(tt->tool_host[i]);
                free(tt->tool_inside[i]);
        }
        memset(tt, 0, sizeof(*tt));
}
