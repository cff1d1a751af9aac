/* localrepo.c: find a git work tree and its HEAD from the .git files. */
#include "executor/localrepo.h"

#include <sys/stat.h>

static char *read_line(const char *dir, const char *name)
{
        _cleanup_free_ char *path = drv_path_join(dir, name);
        char *text = NULL;
        size_t len = 0;
        struct drv_error e;
        if (!path || drv_read_file(path, &text, &len, 1 << 20, &e) < 0)
                return NULL;
        text[strcspn(text, "\r\n")] = '\0';
        return text;
}

static bool is_sha(const char *s)
{
        return s && strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

/* refs/heads/x -> sha, from the loose ref or packed-refs of the common dir. */
static char *resolve_ref(const char *common, const char *ref)
{
        char *sha = read_line(common, ref);
        if (is_sha(sha))
                return sha;
        free(sha);
        _cleanup_free_ char *path = drv_path_join(common, "packed-refs");
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct drv_error e;
        if (!path || drv_read_file(path, &text, &len, 64 << 20, &e) < 0)
                return NULL;
        size_t rl = strlen(ref);
        for (char *line = text; line && *line;) {
                char *next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (strlen(line) == 41 + rl && line[40] == ' ' && strcmp(line + 41, ref) == 0) {
                        line[40] = '\0';
                        if (is_sha(line))
                                return strdup(line);
                }
                line = next;
        }
        return NULL;
}

static int read_head(const char *toplevel, const char *dotgit, struct localrepo *out)
{
        struct stat st;
        _cleanup_free_ char *gitdir = NULL;
        if (stat(dotgit, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode)) {
                gitdir = strdup(dotgit);
        } else { /* a worktree or submodule: "gitdir: PATH" */
                _cleanup_free_ char *line = read_line(toplevel, ".git");
                if (!line || strncmp(line, "gitdir: ", 8) != 0)
                        return 0;
                gitdir = line[8] == '/' ? strdup(line + 8) : drv_path_join(toplevel, line + 8);
        }
        if (!gitdir)
                return -ENOMEM;
        _cleanup_free_ char *head = read_line(gitdir, "HEAD");
        if (!head)
                return 0;
        _cleanup_free_ char *cd = read_line(gitdir, "commondir");
        _cleanup_free_ char *common =
            cd ? (cd[0] == '/' ? strdup(cd) : drv_path_join(gitdir, cd)) : strdup(gitdir);
        if (!common)
                return -ENOMEM;
        out->toplevel = strdup(toplevel);
        if (!out->toplevel)
                return -ENOMEM;
        if (strncmp(head, "ref: ", 5) == 0) {
                const char *ref = head + 5;
                if (strncmp(ref, "refs/heads/", 11) == 0 && !(out->branch = strdup(ref + 11)))
                        return -ENOMEM;
                out->revision = resolve_ref(common, ref);
        } else if (is_sha(head)) {
                out->revision = TAKE_PTR(head);
        }
        return 1;
}

int localrepo_find(const char *dir, struct localrepo *out)
{
        *out = (struct localrepo){0};
        _cleanup_free_ char *cur = realpath(dir, NULL);
        if (!cur)
                return errno == ENOENT ? 0 : -errno;
        for (;;) {
                _cleanup_free_ char *dotgit = drv_path_join(cur, ".git");
                if (!dotgit)
                        return -ENOMEM;
                if (access(dotgit, F_OK) == 0) {
                        int r = read_head(cur, dotgit, out);
                        if (r <= 0)
                                localrepo_release(out);
                        return r;
                }
                char *slash = strrchr(cur, '/');
                if (!slash || slash == cur)
                        return 0;
                *slash = '\0';
        }
}

void localrepo_release(struct localrepo *r)
{
        free(r->toplevel);
        free(r->branch);
        free(r->revision);
        *r = (struct localrepo){0};
}
