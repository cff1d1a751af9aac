/* globwalk.c: expand a glob pattern by walking directories through dirfds, never following a
 * symlink below the pattern's fixed prefix (`circleci tests glob` and the paths of cache and
 * workspace steps). */
#include "drv.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* Open the directory path (relative to dirfd; "" is dirfd itself). beneath: resolved below dirfd
 * and through no symlink at all; else as openat(2) resolves it. */
static int open_dir(int dirfd, const char *path, bool beneath)
{
        if (!path[0])
                path = ".";
        if (!beneath)
                return openat(dirfd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        struct open_how how = {.flags = O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* Does path exist (not following it at its last component; beneath: nor anywhere)? */
static bool exists(int dirfd, const char *path, bool beneath)
{
        struct stat st;
        if (!beneath)
                return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
        _cleanup_free_ char *parent = strdup(path);
        if (!parent)
                return false;
        char *slash = strrchr(parent, '/');
        const char *base = slash ? path + (slash - parent) + 1 : path;
        if (slash)
                *slash = '\0';
        _cleanup_close_ int fd = open_dir(dirfd, slash ? parent : "", true);
        return fd >= 0 && base[0] && fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Walk the directory fd (taken over), whose entries are named name + entry. */
static int walk(int fd, struct strbuf *name, const char *pattern, char ***out, int depth)
{
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return 0;
        }
        size_t keep = name->len;
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                name->len = keep;
                name->buf[keep] = '\0';
                if (strbuf_puts(name, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                unsigned char type = de->d_type;
                struct stat st;
                if (type == DT_UNKNOWN) {
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
                }
                if (drv_glob_match(pattern, name->buf))
                        r = drv_strv_push(out, name->buf);
                if (r < 0 || type != DT_DIR || depth >= 64)
                        continue;
                /* one component, O_NOFOLLOW: a symlink (even one swapped in now) is not entered */
                int child =
                    openat(dirfd(d), de->d_name, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (child < 0)
                        continue;
                if ((r = strbuf_putc(name, '/')) < 0) {
                        close(child);
                        break;
                }
                r = walk(child, name, pattern, out, depth + 1); /* (takes child over) */
        }
        name->len = keep;
        name->buf[keep] = '\0';
        closedir(d);
        return r;
}

int drv_glob_walk(int dirfd, const char *pattern, unsigned flags, char ***out)
{
        bool beneath = flags & DRV_GLOB_BENEATH;
        if (beneath && pattern[0] == '/')
                return 0; /* nothing is beneath an absolute path */
        if (!strpbrk(pattern, "*?[{"))
                return exists(dirfd, pattern, beneath) ? drv_strv_push(out, pattern) : 0;
        /* the walk starts at the longest wildcard-free directory prefix */
        _cleanup_free_ char *base = strdup(pattern);
        if (!base)
                return -ENOMEM;
        char *slash = base + strcspn(base, "*?[{");
        while (slash > base && *slash != '/')
                slash--;
        if (*slash == '/')
                slash[slash == base ? 1 : 0] = '\0'; /* "/x/a*" gives "/x", "/a*" gives "/" */
        else
                base[0] = '\0';
        int fd = open_dir(dirfd, base, beneath);
        if (fd < 0)
                return 0;
        struct strbuf name = STRBUF_INIT;
        int r = strbuf_puts(&name, base);
        if (r == 0 && base[0] && !drv_endswith(base, "/"))
                r = strbuf_putc(&name, '/');
        if (r < 0)
                close(fd);
        else
                r = walk(fd, &name, pattern, out, 0);
        strbuf_release(&name);
        return r;
}
