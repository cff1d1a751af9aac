/* checkout.c: the `checkout` and `add_ssh_keys` steps — keys staged in the job user's home by the
 * runtime, then a POSIX sh script run inside the job as its user does the rest with git and ssh. */
#include "executor/checkout.h"
#include "executor/runtime.h"
#include "executor/stepmachine.h"

/* The host keys CircleCI's checkout trusts out of the box (published by each host; the sha256
 * fingerprints were checked against github.com, gitlab.com and bitbucket.org's documents). */
static const char wellknown_hosts[] =
    "github.com ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    "github.com ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjN"
    "uG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=\n"
    "github.com ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVl"
    "OhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywI"
    "NIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ"
    "7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhP"
    "eAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmP"
    "UWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=\n"
    "gitlab.com ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf\n"
    "bitbucket.org ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIIazEu89wgQZ4bqs3d63QSMzYVa0MuJ2e2gKTKqu+UUO\n";

/* Single-quote s for a POSIX shell. */
static int shell_quote(struct strbuf *sb, const char *s)
{
        int r = strbuf_putc(sb, '\'');
        for (const char *p = s; r == 0 && *p; p++)
                r = *p == '\'' ? strbuf_puts(sb, "'\\''") : strbuf_putc(sb, *p);
        return r ?: strbuf_putc(sb, '\'');
}

/* name='value'\n */
static int put_var(struct strbuf *sb, const char *name, const char *value)
{
        int r = strbuf_printf(sb, "%s=", name);
        r = r ?: shell_quote(sb, value ? value : "");
        return r ?: strbuf_putc(sb, '\n');
}

/* A word of a command line: ' \'word\'' */
static int put_word(struct strbuf *sb, const char *word)
{
        int r = strbuf_putc(sb, ' ');
        return r ?: shell_quote(sb, word);
}

/* The remote as shown in messages: a password in the url's userinfo is left out. */
static char *url_for_humans(const char *url)
{
        const char *scheme = strstr(url, "://");
        const char *host = scheme ? scheme + 3 : NULL;
        const char *at = host ? strchr(host, '@') : NULL;
        const char *slash = host ? strchr(host, '/') : NULL;
        if (!at || (slash && slash < at))
                return strdup(url);
        const char *colon = memchr(host, ':', (size_t)(at - host));
        if (!colon)
                return strdup(url);
        return drv_asprintf("%.*s%s", (int)(colon - url), url, at);
}

char *checkout_url_password(const char *url)
{
        const char *scheme = url ? strstr(url, "://") : NULL;
        const char *host = scheme ? scheme + 3 : NULL;
        const char *at = host ? strchr(host, '@') : NULL;
        const char *slash = host ? strchr(host, '/') : NULL;
        if (!at || (slash && slash < at))
                return NULL;
        const char *colon = memchr(host, ':', (size_t)(at - host));
        if (!colon || colon + 1 == at)
                return NULL;
        return strndup(colon + 1, (size_t)(at - colon - 1));
}

void checkout_redact(const struct jobspec *spec, char *text)
{
        _cleanup_free_ char *pw = checkout_url_password(spec->vcs.url);
        size_t n = pw ? strlen(pw) : 0;
        if (n == 0)
                return;
        for (char *p = strstr(text, pw); p; p = strstr(p, pw)) {
                size_t k = n < 4 ? n : 4; /* never longer than what it replaces */
                memset(p, '*', k);
                memmove(p + k, p + n, strlen(p + n) + 1);
                p += k;
        }
}

static bool is_local_path(const char *url)
{
        return url[0] == '/' || strncmp(url, "file://", 7) == 0;
}

/* Write data in the job user's home as a private file (0600, the job user's); returns its inside
 * path (caller frees). */
static char *stage_file(struct runtime *rt, const char *home, const char *name, const char *data,
                        mode_t mode, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("%s/.drover-%s", home, name);
        _cleanup_free_ char *text = NULL;
        if (!path)
                goto oom;
        size_t n = strlen(data);
        if (n == 0 || data[n - 1] != '\n') { /* OpenSSH refuses a key without its final newline */
                text = drv_asprintf("%s\n", data);
                if (!text)
                        goto oom;
                data = text;
                n++;
        }
        if (runtime_write_file(rt, path, data, n, mode, err) < 0)
                return NULL;
        return TAKE_PTR(path);
oom:
        drv_err(err, ENOMEM, "out of memory");
        return NULL;
}

/* What a checkout fetches (refspecs) and checks out (target). */
static int plan_refs(const struct js_vcs *v, struct strbuf *fetch, struct strbuf *target)
{
        int r = 0;
        _cleanup_free_ char *pr_spec = NULL, *pr_ref = NULL;
        if (v->pr_number) {
                pr_spec = drv_asprintf("+refs/pull/%s/%s:refs/remotes/origin/pull/%s", v->pr_number,
                                       v->pr_merge ? "merge" : "head", v->pr_number);
                pr_ref = drv_asprintf("refs/remotes/origin/pull/%s", v->pr_number);
                if (!pr_spec || !pr_ref)
                        return -ENOMEM;
        }
        _cleanup_free_ char *tag_spec =
            v->tag ? drv_asprintf("+refs/tags/%s:refs/tags/%s", v->tag, v->tag) : NULL;
        _cleanup_free_ char *branch_spec =
            v->branch ? drv_asprintf("+refs/heads/%s:refs/remotes/origin/%s", v->branch, v->branch)
                      : NULL;
        if ((v->tag && !tag_spec) || (v->branch && !branch_spec))
                return -ENOMEM;
        bool named = v->tag || v->pr_number || v->branch;
        if (v->depth == 0) {
                /* like git clone: every branch and tag, plus the pull request's ref */
                r = r ?: put_word(fetch, "--tags");
                r = r ?: put_word(fetch, "origin");
                r = r ?: put_word(fetch, "+refs/heads/*:refs/remotes/origin/*");
                if (pr_spec)
                        r = r ?: put_word(fetch, pr_spec);
        } else {
                /* shallow: only the one ref (the revision itself is fetched after when missing) */
                r = r ?: put_word(fetch, "origin");
                const char *spec = tag_spec      ? tag_spec
                                   : pr_spec     ? pr_spec
                                   : branch_spec ? branch_spec
                                                 : NULL;
                if (spec)
                        r = r ?: put_word(fetch, spec);
                else if (v->revision && strlen(v->revision) == 40)
                        r = r ?: put_word(fetch, v->revision);
        }
        if (!named && !(v->depth && v->revision && strlen(v->revision) == 40))
                r = r ?: put_word(fetch, "+HEAD:refs/drover/head");
        if (r < 0)
                return r;
        const char *t = v->revision ? v->revision : v->tag ? NULL : pr_ref ? pr_ref : NULL;
        if (t)
                return strbuf_puts(target, t);
        if (v->tag)
                return strbuf_printf(target, "refs/tags/%s", v->tag);
        if (v->branch)
                return strbuf_printf(target, "refs/remotes/origin/%s", v->branch);
        return strbuf_puts(target, "refs/drover/head");
}

static const char checkout_prelude[] =
    "set +e\n"
    "export GIT_TERMINAL_PROMPT=0\n"
    "err=\"/tmp/.drover-checkout-$$.err\"\n"
    "trap 'rm -f \"$err\" ${key:+\"$key\"} ${kh:+\"$kh\"}' EXIT\n"
    "fail() { echo \"drover: checkout of $shown failed: $1\" >&2; exit 1; }\n"
    "why() {\n"
    "  w=$(grep -v -e '^[[:space:]]*$' -e '^hint:' -e '^fatal: Could not read from remote'"
    " -e '^Please make sure you have the correct' -e '^and the repository exists' \"$err\""
    " 2>/dev/null | tail -n 2 | tr '\\n' ' ')\n"
    "  [ -n \"$w\" ] || w=$(tail -n 1 \"$err\" 2>/dev/null)\n"
    "  echo \"${w% }\"\n"
    "}\n"
    "g() { git \"$@\" 2>\"$err\"; rc=$?; cat \"$err\" >&2; return $rc; }\n";

static const char checkout_body[] =
    "command -v git >/dev/null 2>&1 || fail \"git is not installed in the job's image\"\n"
    "umask 077\n"
    "if [ \"$local\" = 1 ]; then\n"
    "  # a repository in the job's filesystem, maybe another user's: no ssh\n"
    "  git config --global --add safe.directory \"$url\"\n"
    "  git config --global --add safe.directory \"$url/.git\"\n"
    "else\n"
    "  sshdir=\"$HOME/.ssh\"\n"
    "  mkdir -p \"$sshdir\" && chmod 0700 \"$sshdir\" || fail \"cannot create $sshdir\"\n"
    "  if [ -n \"$kh\" ]; then\n"
    "    touch \"$sshdir/known_hosts\" || fail \"cannot write $sshdir/known_hosts\"\n"
    "    while IFS= read -r line; do\n"
    "      [ -z \"$line\" ] || grep -qxF -e \"$line\" \"$sshdir/known_hosts\" ||\n"
    "        printf '%s\\n' \"$line\" >>\"$sshdir/known_hosts\"\n"
    "    done <\"$kh\"\n"
    "    chmod 0600 \"$sshdir/known_hosts\"\n"
    "  fi\n"
    "  ssh_cmd=\"ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"
    " -o UserKnownHostsFile='$sshdir/known_hosts'\"\n"
    "  if [ -n \"$key\" ]; then\n"
    "    rm -f \"$sshdir/id_rsa\" && mv -f \"$key\" \"$sshdir/id_rsa\" ||"
    " fail \"cannot install the checkout key in $sshdir\"\n"
    "    ssh_cmd=\"$ssh_cmd -o IdentitiesOnly=yes -i '$sshdir/id_rsa'\"\n"
    "  fi\n"
    "  export GIT_SSH_COMMAND=\"$ssh_cmd\"\n"
    "fi\n"
    "if [ -e \"$dir/.git\" ]; then\n"
    "  echo \"Fetching into the existing repository in $dir\"\n"
    "  cd \"$dir\" || fail \"cannot enter $dir\"\n"
    "  git remote set-url origin \"$url\" 2>/dev/null || git remote add origin \"$url\" ||"
    " fail \"cannot set the remote in $dir\"\n"
    "  [ \"$depth\" = 0 ] && [ -f .git/shallow ] && unshallow=--unshallow\n"
    "else\n"
    "  echo \"Cloning $shown into $dir\"\n"
    "  mkdir -p \"$dir\" && cd \"$dir\" || fail \"cannot create $dir\"\n"
    "  g init -q . || fail \"git init: $(why)\"\n"
    "  git remote add origin \"$url\" || fail \"cannot add the remote in $dir\"\n"
    "fi\n"
    "git config gc.auto 0\n"
    "if [ -n \"$filter\" ]; then\n"
    "  git config remote.origin.promisor true &&\n"
    "    git config remote.origin.partialclonefilter \"$filter\" || fail \"git config\"\n"
    "fi\n"
    "g fetch --force $opts $unshallow \"$@\" || fail \"git fetch: $(why)\"\n"
    "if [ -n \"$rev\" ] && ! git cat-file -e \"$rev^{commit}\" 2>/dev/null; then\n"
    "  g fetch --force $opts origin \"$rev\" || fail \"git fetch $rev: $(why)\"\n"
    "fi\n"
    "if [ -n \"$branch\" ]; then\n"
    "  g checkout --force -B \"$branch\" \"$target\" || fail \"git checkout $target: $(why)\"\n"
    "else\n"
    "  g checkout --force --detach \"$target\" || fail \"git checkout $target: $(why)\"\n"
    "fi\n"
    "git --no-pager log --no-color -n 1 --format='HEAD is now at %h %s'\n";

/* `drover run`: $src is the snapshot of the local source (executor/localsrc.h) — a bare clone
 * (repo.git, absent for a plain directory), the work tree's files (tree/, absent with
 * --committed), the tracked files deleted in the work tree, and a clean origin URL. */
static const char local_body[] =
    "cat \"$src/describe\" 2>/dev/null\n"
    "umask 022\n"
    "if [ -d \"$src/repo.git\" ]; then\n"
    "  command -v git >/dev/null 2>&1 || fail \"git is not installed in the job's image\"\n"
    "  url=\"$src/repo.git\"\n"
    "  git config --global --add safe.directory \"$url\"\n"
    "  if [ -e \"$dir/.git\" ]; then\n"
    "    echo \"Fetching into the existing repository in $dir\"\n"
    "    cd \"$dir\" || fail \"cannot enter $dir\"\n"
    "    git remote set-url origin \"$url\" 2>/dev/null || git remote add origin \"$url\" ||"
    " fail \"cannot set the remote in $dir\"\n"
    "  else\n"
    "    mkdir -p \"$dir\" && cd \"$dir\" || fail \"cannot create $dir\"\n"
    "    g init -q . || fail \"git init: $(why)\"\n"
    "    git remote add origin \"$url\" || fail \"cannot add the remote in $dir\"\n"
    "  fi\n"
    "  git config gc.auto 0\n"
    "  if [ -n \"$rev\" ]; then\n"
    "    g fetch --force --tags origin '+refs/heads/*:refs/remotes/origin/*' ||"
    " fail \"git fetch: $(why)\"\n"
    "    git cat-file -e \"$rev^{commit}\" 2>/dev/null || g fetch --force origin \"$rev\" ||"
    " fail \"git fetch $rev: $(why)\"\n"
    "    if [ -n \"$branch\" ]; then\n"
    "      g checkout --force -B \"$branch\" \"$rev\" || fail \"git checkout $rev: $(why)\"\n"
    "    else\n"
    "      g checkout --force --detach \"$rev\" || fail \"git checkout $rev: $(why)\"\n"
    "    fi\n"
    "  elif [ -n \"$branch\" ]; then\n"
    "    git symbolic-ref HEAD \"refs/heads/$branch\"\n"
    "  fi\n"
    "  if [ -s \"$src/origin\" ]; then\n"
    "    git remote set-url origin \"$(cat \"$src/origin\")\" || fail \"cannot set the remote\"\n"
    "  fi\n"
    "else\n"
    "  mkdir -p \"$dir\" && cd \"$dir\" || fail \"cannot create $dir\"\n"
    "fi\n"
    "if [ -d \"$src/tree\" ]; then\n"
    "  if [ -s \"$src/deleted\" ]; then\n"
    "    xargs -0 rm -f -- <\"$src/deleted\" || fail \"cannot remove the deleted files\"\n"
    "  fi\n"
    "  cp -R -P \"$src/tree/.\" . 2>\"$err\" || fail \"cannot copy the work tree into $dir: "
    "$(why)\"\n"
    "fi\n"
    "if [ -n \"$rev\" ]; then\n"
    "  git --no-pager log --no-color -n 1 --format='HEAD is now at %h %s'\n"
    "fi\n";

static int local_script(const struct jobspec *spec, const char *dir, const char *src, char **script)
{
        const struct js_vcs *v = &spec->vcs;
        _cleanup_free_ char *shown = url_for_humans(v->url ? v->url : "the local source");
        struct strbuf sb = STRBUF_INIT;
        int r = shown ? 0 : -ENOMEM;
        r = r ?: strbuf_puts(&sb, "# drover checkout of the local source (docs/checkout.md)\n");
        r = r ?: put_var(&sb, "src", src);
        r = r ?: put_var(&sb, "shown", shown);
        r = r ?: put_var(&sb, "dir", dir);
        r = r ?: put_var(&sb, "rev", v->revision);
        r = r ?: put_var(&sb, "branch", v->branch);
        r = r ?: put_var(&sb, "key", NULL);
        r = r ?: put_var(&sb, "kh", NULL);
        r = r ?: strbuf_puts(&sb, checkout_prelude);
        r = r ?: strbuf_puts(&sb, local_body);
        if (r < 0) {
                strbuf_release(&sb);
                return -ENOMEM;
        }
        *script = strbuf_detach(&sb);
        return 0;
}

int checkout_prepare(struct runtime *rt, const struct jobspec *spec, const struct js_step *st,
                     const char *workdir, const char *home, const char *local_src, char **script,
                     struct drv_error *err)
{
        const struct js_vcs *v = &spec->vcs;
        if (local_src) {
                _cleanup_free_ char *d =
                    step_resolve_dir(st->path ? st->path : workdir, workdir, home);
                if (!d || local_script(spec, d, local_src, script) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
                return 0;
        }
        if (!v->url)
                return drv_err(err, EINVAL, "the job spec has no vcs.url to check out");
        const char *url = v->url;
        bool local = is_local_path(url);
        _cleanup_free_ char *dir = step_resolve_dir(st->path ? st->path : workdir, workdir, home);
        _cleanup_free_ char *shown = url_for_humans(url);
        _cleanup_free_ char *key = NULL, *kh = NULL, *opts = NULL;
        if (!dir || !shown)
                return drv_err(err, ENOMEM, "out of memory");
        if (!local && v->checkout_key.private_key &&
            !(key = stage_file(rt, home, "checkout-key", v->checkout_key.private_key, 0600, err)))
                return drv_err_prefix(err, "checkout of %s: the checkout key", shown);
        if (!local) {
                _cleanup_free_ char *hosts =
                    drv_asprintf("%s%s", wellknown_hosts, v->known_hosts ? v->known_hosts : "");
                if (!hosts)
                        return drv_err(err, ENOMEM, "out of memory");
                if (!(kh = stage_file(rt, home, "known-hosts", hosts, 0644, err)))
                        return drv_err_prefix(err, "checkout of %s: known_hosts", shown);
        }
        char depth[32];
        snprintf(depth, sizeof(depth), "%llu", (unsigned long long)v->depth);
        if (v->depth && v->filter)
                opts = drv_asprintf("--depth=%s --filter=%s", depth, v->filter);
        else if (v->depth)
                opts = drv_asprintf("--depth=%s", depth);
        else if (v->filter)
                opts = drv_asprintf("--filter=%s", v->filter);
        struct strbuf sb = STRBUF_INIT, fetch = STRBUF_INIT, target = STRBUF_INIT;
        int r = (v->depth || v->filter) && !opts ? -ENOMEM : 0;
        r = r ?: plan_refs(v, &fetch, &target);
        r = r ?: strbuf_puts(&sb, "# drover checkout (docs/checkout.md)\n");
        r = r ?: put_var(&sb, "url", url);
        r = r ?: put_var(&sb, "shown", shown);
        r = r ?: put_var(&sb, "dir", dir);
        r = r ?: put_var(&sb, "rev", v->revision);
        r = r ?: put_var(&sb, "branch", v->branch);
        r = r ?: put_var(&sb, "target", target.buf);
        r = r ?: put_var(&sb, "depth", depth);
        r = r ?: put_var(&sb, "filter", v->filter);
        r = r ?: put_var(&sb, "opts", opts);
        r = r ?: put_var(&sb, "unshallow", NULL);
        r = r ?: put_var(&sb, "key", key);
        r = r ?: put_var(&sb, "kh", kh);
        r = r ?: put_var(&sb, "local", local ? "1" : "0");
        r = r ?: strbuf_printf(&sb, "set --%s\n", fetch.buf ? fetch.buf : "");
        r = r ?: strbuf_puts(&sb, checkout_prelude);
        r = r ?: strbuf_puts(&sb, checkout_body);
        strbuf_release(&fetch);
        strbuf_release(&target);
        if (r < 0) {
                strbuf_release(&sb);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *script = strbuf_detach(&sb);
        return 0;
}

char *sshkeys_file_name(const char *fingerprint)
{
        struct strbuf sb = STRBUF_INIT;
        int r = strbuf_puts(&sb, "id_rsa_");
        for (const char *p = fingerprint; r == 0 && *p; p++)
                if (*p != ':')
                        r = strbuf_putc(&sb, strchr("abcdefghijklmnopqrstuvwxyz"
                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                                                    *p)
                                                 ? *p
                                                 : '_');
        if (r < 0) {
                strbuf_release(&sb);
                return NULL;
        }
        return strbuf_detach(&sb);
}

/* "MD5:aa:bb" and "aa:bb" name the same key; hex compares without case. */
static bool fingerprint_eq(const char *a, const char *b)
{
        if (strncasecmp(a, "MD5:", 4) == 0)
                a += 4;
        if (strncasecmp(b, "MD5:", 4) == 0)
                b += 4;
        bool sha = strncmp(a, "SHA256:", 7) == 0;
        return sha ? strcmp(a, b) == 0 : strcasecmp(a, b) == 0;
}

static const struct js_ssh_key *find_key(const struct jobspec *spec, const char *fp)
{
        for (size_t i = 0; i < spec->n_ssh_keys; i++)
                if (spec->ssh_keys[i].fingerprint &&
                    fingerprint_eq(spec->ssh_keys[i].fingerprint, fp))
                        return &spec->ssh_keys[i];
        return NULL;
}

static const char sshkeys_head[] =
    "set +e\n"
    "fail() { echo \"drover: add_ssh_keys failed: $1\" >&2; exit 1; }\n"
    "umask 077\n"
    "sshdir=\"$HOME/.ssh\"\n"
    "mkdir -p \"$sshdir\" && chmod 0700 \"$sshdir\" || fail \"cannot create $sshdir\"\n"
    "touch \"$sshdir/config\" || fail \"cannot write $sshdir/config\"\n"
    "install_key() {\n"
    "  rm -f \"$sshdir/$2\" && mv -f \"$1\" \"$sshdir/$2\" ||"
    " fail \"cannot install the key $3 in $sshdir\"\n"
    "  line=\"  IdentityFile \\\"$sshdir/$2\\\"\"\n"
    "  grep -qxF -e \"$line\" \"$sshdir/config\" ||"
    " printf 'Host %s\\n%s\\n' \"$4\" \"$line\" >>\"$sshdir/config\" ||"
    " fail \"cannot write $sshdir/config\"\n"
    "  echo \"Installed the SSH key $3 as $sshdir/$2\"\n"
    "}\n";

int sshkeys_prepare(struct runtime *rt, const struct jobspec *spec, const struct js_step *st,
                    const char *home, char **script, struct drv_error *err)
{
        const struct js_ssh_key **sel = calloc(spec->n_ssh_keys + 1, sizeof(*sel));
        size_t n = 0;
        if (!sel)
                return drv_err(err, ENOMEM, "out of memory");
        if (st->fingerprints && st->fingerprints[0]) {
                for (char **f = st->fingerprints; *f; f++) {
                        const struct js_ssh_key *k = find_key(spec, *f);
                        if (!k) {
                                free(sel);
                                return drv_err(err, ENOENT,
                                               "add_ssh_keys: no SSH key with fingerprint %s in "
                                               "the job spec (ssh_keys has %zu)",
                                               *f, spec->n_ssh_keys);
                        }
                        bool dup = false;
                        for (size_t i = 0; i < n; i++)
                                dup = dup || sel[i] == k;
                        if (!dup && n < spec->n_ssh_keys)
                                sel[n++] = k;
                }
        } else {
                for (size_t i = 0; i < spec->n_ssh_keys; i++)
                        sel[n++] = &spec->ssh_keys[i];
        }
        struct strbuf sb = STRBUF_INIT;
        int r = strbuf_puts(&sb, "# drover add_ssh_keys (docs/checkout.md)\n");
        r = r ?: strbuf_puts(&sb, sshkeys_head);
        if (n == 0)
                r = r ?: strbuf_puts(&sb, "echo 'The job spec has no SSH keys to add'\n");
        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *fp = sel[i]->fingerprint ? sel[i]->fingerprint : "";
                _cleanup_free_ char *name = sshkeys_file_name(fp);
                _cleanup_free_ char *stage_name = name ? drv_asprintf("key-%s", name) : NULL;
                if (!stage_name) {
                        r = -ENOMEM;
                        break;
                }
                _cleanup_free_ char *staged =
                    stage_file(rt, home, stage_name, sel[i]->private_key, 0600, err);
                if (!staged) {
                        free(sel);
                        strbuf_release(&sb);
                        return drv_err_prefix(err, "add_ssh_keys: key %s", fp);
                }
                r = strbuf_puts(&sb, "install_key");
                r = r ?: put_word(&sb, staged);
                r = r ?: put_word(&sb, name);
                r = r ?: put_word(&sb, fp);
                r = r ?: put_word(&sb, sel[i]->hostname ? sel[i]->hostname : "*");
                r = r ?: strbuf_putc(&sb, '\n');
        }
        free(sel);
        if (r < 0) {
                strbuf_release(&sb);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *script = strbuf_detach(&sb);
        return 0;
}

bool checkout_failure_reason(const char *out_tail, size_t n, char *reason, size_t rn)
{
        static const char mark[] = "drover: ";
        const size_t ml = sizeof(mark) - 1;
        const char *found = NULL;
        for (size_t i = 0; i + ml <= n; i++)
                if ((i == 0 || out_tail[i - 1] == '\n') && memcmp(out_tail + i, mark, ml) == 0)
                        found = out_tail + i + ml;
        if (!found)
                return false;
        size_t len = (size_t)(out_tail + n - found);
        const char *nl = memchr(found, '\n', len);
        if (nl)
                len = (size_t)(nl - found);
        while (len && (found[len - 1] == '\r' || found[len - 1] == ' '))
                len--;
        snprintf(reason, rn, "%.*s", (int)len, found);
        return len > 0;
}
