/* server.c: the SSH rerun server — keys, the listening port, the acceptor thread, session
 * accounting and the wait policy after the steps. Threads (an exception to one loop per process):
 * a libssh session may only be used by one thread, and its key exchange and writes block, so
 * each connection gets a thread and the step machine's loop stays free of them. */
#include "executor/ssh/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>

int sshd_parse_ports(const char *text, uint16_t *lo, uint16_t *hi)
{
        if (!text || !*text)
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long a = strtoul(text, &end, 10), b = a;
        if (errno || end == text || (*end && *end != '-'))
                return -EINVAL;
        if (*end == '-') {
                const char *p = end + 1;
                b = strtoul(p, &end, 10);
                if (errno || end == p || *end)
                        return -EINVAL;
        }
        if (a < 1 || b > 65535 || a > b)
                return -EINVAL;
        *lo = (uint16_t)a;
        *hi = (uint16_t)b;
        return 0;
}

enum sshd_wait sshd_wait_state(unsigned sessions, uint64_t now_ns, uint64_t last_active_ns,
                               uint64_t steps_end_ns, uint64_t idle_timeout_s,
                               uint64_t max_duration_s)
{
        if (now_ns >= steps_end_ns + max_duration_s * 1000000000ULL)
                return SSHD_WAIT_HARD_CAP;
        if (sessions > 0)
                return SSHD_WAIT_KEEP;
        uint64_t since = last_active_ns > steps_end_ns ? last_active_ns : steps_end_ns;
        return now_ns >= since + idle_timeout_s * 1000000000ULL ? SSHD_WAIT_IDLE : SSHD_WAIT_KEEP;
}

static const struct {
        int sig;
        const char *name;
} signames[] = {{SIGABRT, "ABRT"}, {SIGALRM, "ALRM"}, {SIGFPE, "FPE"},   {SIGHUP, "HUP"},
                {SIGILL, "ILL"},   {SIGINT, "INT"},   {SIGKILL, "KILL"}, {SIGPIPE, "PIPE"},
                {SIGQUIT, "QUIT"}, {SIGSEGV, "SEGV"}, {SIGTERM, "TERM"}, {SIGUSR1, "USR1"},
                {SIGUSR2, "USR2"}};

int sshd_signal_from_name(const char *name)
{
        for (size_t i = 0; name && i < DRV_ARRAY_SIZE(signames); i++)
                if (strcmp(signames[i].name, name) == 0)
                        return signames[i].sig;
        return 0;
}

const char *sshd_signal_name(int sig)
{
        for (size_t i = 0; i < DRV_ARRAY_SIZE(signames); i++)
                if (signames[i].sig == sig)
                        return signames[i].name;
        return NULL;
}

bool sshd_key_allowed(struct sshd *s, ssh_key key)
{
        for (size_t i = 0; i < s->n_allowed; i++)
                if (ssh_key_cmp(s->allowed[i], key, SSH_KEY_CMP_PUBLIC) == 0)
                        return true;
        return false;
}

/* One authorized_keys line: [options] type base64 [comment]; options are not supported. */
static int parse_authorized(const char *line, ssh_key *out)
{
        _cleanup_free_ char *copy = strdup(line);
        if (!copy)
                return -ENOMEM;
        char *save = NULL, *type = strtok_r(copy, " \t", &save);
        char *b64 = type ? strtok_r(NULL, " \t", &save) : NULL;
        if (!b64)
                return -EINVAL;
        enum ssh_keytypes_e t = ssh_key_type_from_name(type);
        if (t == SSH_KEYTYPE_UNKNOWN)
                return -EINVAL;
        return ssh_pki_import_pubkey_base64(b64, t, out) == SSH_OK ? 0 : -EINVAL;
}

static int host_key_make(struct sshd *s, struct drv_error *err)
{
        if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &s->host_key) != SSH_OK)
                return drv_err(err, EIO, "ssh: cannot generate an ed25519 host key");
        unsigned char *hash = NULL;
        size_t hlen = 0;
        char *b64 = NULL;
        if (ssh_get_publickey_hash(s->host_key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) < 0 ||
            ssh_pki_export_pubkey_base64(s->host_key, &b64) != SSH_OK) {
                ssh_clean_pubkey_hash(&hash);
                return drv_err(err, EIO, "ssh: cannot export the host key");
        }
        s->host_fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
        s->host_pub = drv_asprintf("ssh-ed25519 %s", b64);
        ssh_clean_pubkey_hash(&hash);
        ssh_string_free_char(b64);
        if (!s->host_fp || !s->host_pub)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

/* Bind the first free port of lo..hi, starting at a random one (concurrent jobs spread). */
static int bind_port(struct sshd *s, const char *addr, uint16_t lo, uint16_t hi,
                     struct drv_error *err)
{
        struct sockaddr_storage ss = {0};
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        socklen_t sl;
        int family;
        if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
                family = in4->sin_family = AF_INET;
                sl = sizeof(*in4);
        } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
                family = in6->sin6_family = AF_INET6;
                sl = sizeof(*in6);
        } else {
                return drv_err(err, EINVAL, "ssh: listen address '%s' is not an IP address", addr);
        }
        unsigned span = (unsigned)(hi - lo) + 1, start = 0;
        if (getrandom(&start, sizeof(start), GRND_NONBLOCK) != sizeof(start))
                start = (unsigned)getpid();
        int last = EADDRINUSE;
        for (unsigned k = 0; k < span; k++) {
                uint16_t port = (uint16_t)(lo + (start + k) % span);
                int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return drv_err_errno(err, "ssh: socket");
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (family == AF_INET)
                        in4->sin_port = htons(port);
                else
                        in6->sin6_port = htons(port);
                if (bind(fd, (struct sockaddr *)&ss, sl) == 0 && listen(fd, 16) == 0) {
                        s->listen_fd = fd;
                        s->port = port;
                        return 0;
                }
                last = errno;
                close(fd);
                if (last != EADDRINUSE && last != EACCES)
                        break;
        }
        return drv_err(err, last, "ssh: no free port in %u-%u on %s: %s", lo, hi, addr,
                       strerror(last));
}

static void reap_finished(struct sshd *s);

/* The source of a connection as 16 bytes: IPv4 mapped, IPv6 cut to its /64 (one host's). */
static void source_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
        memset(key, 0, 16);
        if (ss->ss_family == AF_INET) {
                key[10] = key[11] = 0xff;
                memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        } else if (ss->ss_family == AF_INET6) {
                memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 8);
        }
}

/* May a new connection from key start (s->lock held)? NULL, or why not. OpenSSH's MaxStartups
 * and PerSourceMaxStartups: unauthenticated connections are what an attacker can hold. */
static const char *admit(struct sshd *s, const unsigned char key[16])
{
        unsigned startups = 0, same = 0;
        for (int i = 0; i < SSHD_MAX_CONNS; i++) {
                if (s->sock_fds[i] < 0 || !s->preauth[i])
                        continue;
                startups++;
                same += memcmp(s->source[i], key, 16) == 0;
        }
        if (same >= SSHD_STARTUPS_PER_SOURCE)
                return "too_many_unauthenticated_from_source";
        if (startups >= SSHD_STARTUPS_FULL)
                return "too_many_unauthenticated";
        if (startups >= SSHD_STARTUPS_START) {
                unsigned p = SSHD_STARTUPS_RATE + (100 - SSHD_STARTUPS_RATE) *
                                                      (startups - SSHD_STARTUPS_START) /
                                                      (SSHD_STARTUPS_FULL - SSHD_STARTUPS_START);
                uint32_t r = 0;
                if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
                        r = (uint32_t)random();
                if (r % 100 < p)
                        return "random_early_drop";
        }
        return NULL;
}

/* Cut connections that did not authenticate within SSHD_LOGIN_GRACE_NS: their thread's key
 * exchange or authentication fails at once, and the slot frees. */
static void expire_startups(struct sshd *s)
{
        uint64_t now = drv_now_ns();
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < SSHD_MAX_CONNS; i++)
                if (s->sock_fds[i] >= 0 && s->preauth[i] &&
                    now - s->since_ns[i] >= SSHD_LOGIN_GRACE_NS) {
                        shutdown(s->sock_fds[i], SHUT_RDWR);
                        s->preauth[i] = false; /* cut once; no longer a startup */
                        log_info("ssh_login_grace_expired", "slot=%d grace_s=%llu", i,
                                 SSHD_LOGIN_GRACE_NS / 1000000000ULL);
                }
        pthread_mutex_unlock(&s->lock);
}

void sshd_conn_authenticated(struct sshd *s, int slot)
{
        pthread_mutex_lock(&s->lock);
        s->preauth[slot] = false;
        pthread_mutex_unlock(&s->lock);
}

static void accept_one(struct sshd *s)
{
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        char remote[64] = "?";
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
                snprintf(remote, sizeof(remote), "%s:%u", host, ntohs(a->sin_port));
        } else if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
                snprintf(remote, sizeof(remote), "[%s]:%u", host, ntohs(a->sin6_port));
        }
        int slot = -1;
        unsigned char key[16];
        source_key(&ss, key);
        pthread_mutex_lock(&s->lock);
        const char *why = admit(s, key);
        for (int i = 0; i < SSHD_MAX_CONNS && slot < 0 && !why; i++)
                if (s->sock_fds[i] < 0) {
                        s->sock_fds[slot = i] = fd;
                        s->preauth[i] = true;
                        s->since_ns[i] = drv_now_ns();
                        memcpy(s->source[i], key, 16);
                }
        pthread_mutex_unlock(&s->lock);
        if (slot < 0) {
                log_warn("ssh_refused", "remote=%s reason=%s", remote,
                         why ? why : "too_many_connections");
                close(fd);
                return;
        }
        struct sshd_conn_args *a = calloc(1, sizeof(*a));
        ssh_session session = a ? ssh_new() : NULL;
        if (!session || ssh_bind_accept_fd(s->bind, session, fd) != SSH_OK) {
                log_warn("ssh_accept_failed", "remote=%s error=\"%s\"", remote,
                         session ? ssh_get_error(s->bind) : "out of memory");
                sshd_conn_release(s, slot);
                bool owned = session && ssh_get_fd(session) == fd; /* then ssh_free closes it */
                if (session)
                        ssh_free(session);
                if (!owned)
                        close(fd);
                free(a);
                return;
        }
        a->slot = slot;
        a->srv = s;
        a->session = session;
        snprintf(a->remote, sizeof(a->remote), "%s", remote);
        pthread_mutex_lock(&s->lock);
        a->id = ++s->next_id;
        pthread_t *nc = realloc(s->conns, (s->n_conns + 1) * sizeof(*nc));
        int e = nc ? 0 : ENOMEM;
        if (nc) {
                s->conns = nc;
                e = pthread_create(&s->conns[s->n_conns], NULL, sshd_conn_main, a);
                if (e == 0)
                        s->n_conns++;
        }
        pthread_mutex_unlock(&s->lock);
        if (e != 0) {
                log_warn("ssh_accept_failed", "remote=%s error=\"%s\"", remote, strerror(e));
                sshd_conn_release(s, slot);
                ssh_free(session);
                free(a);
        }
}

/* Writes to a pipe or socket whose reader is gone must fail with EPIPE, not kill `drover job`:
 * the server's threads keep SIGPIPE blocked (a pending one is never delivered). Threads created
 * by a thread inherit its mask, so the connection threads get it from the acceptor. */
static void block_sigpipe(void)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *acceptor_main(void *arg)
{
        struct sshd *s = arg;
        block_sigpipe();
        while (!atomic_load(&s->stopping)) {
                struct pollfd pf[2] = {{s->listen_fd, POLLIN, 0}, {s->stop_pipe[0], POLLIN, 0}};
                int n = poll(pf, 2, 1000);
                if (n < 0 && errno != EINTR)
                        break;
                if (pf[1].revents)
                        break;
                if (pf[0].revents & POLLIN)
                        accept_one(s);
                expire_startups(s);
                reap_finished(s);
        }
        return NULL;
}

/* Join connection threads that are done (their slot is then reused). */
static void reap_finished(struct sshd *s)
{
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n_conns;) {
                if (pthread_tryjoin_np(s->conns[i], NULL) == 0) {
                        s->conns[i] = s->conns[--s->n_conns];
                        continue;
                }
                i++;
        }
        pthread_mutex_unlock(&s->lock);
}

void sshd_conn_release(struct sshd *s, int slot)
{
        pthread_mutex_lock(&s->lock);
        s->sock_fds[slot] = -1;
        pthread_mutex_unlock(&s->lock);
}

void sshd_session_opened(struct sshd *s, unsigned id, const char *user, const char *key_fp,
                         const char *remote)
{
        pthread_mutex_lock(&s->lock);
        s->sessions++;
        s->last_active_ns = drv_now_ns();
        pthread_mutex_unlock(&s->lock);
        log_info("ssh_session_opened", "session=%u user=%s key=%s remote=%s", id, user, key_fp,
                 remote);
        job_events_emit(s->events, "ssh_session_opened",
                        json_pack("{s:i, s:s, s:s, s:s}", "session", (int)id, "user", user,
                                  "key_fingerprint", key_fp, "remote", remote));
}

void sshd_session_closed(struct sshd *s, unsigned id, uint64_t duration_ms)
{
        pthread_mutex_lock(&s->lock);
        s->sessions--;
        s->last_active_ns = drv_now_ns();
        pthread_mutex_unlock(&s->lock);
        log_info("ssh_session_closed", "session=%u duration_ms=%llu", id,
                 (unsigned long long)duration_ms);
        job_events_emit(
            s->events, "ssh_session_closed",
            json_pack("{s:i, s:I}", "session", (int)id, "duration_ms", (json_int_t)duration_ms));
}

unsigned sshd_sessions(struct sshd *s)
{
        pthread_mutex_lock(&s->lock);
        unsigned n = s->sessions;
        pthread_mutex_unlock(&s->lock);
        return n;
}

uint64_t sshd_last_active_ns(struct sshd *s)
{
        pthread_mutex_lock(&s->lock);
        uint64_t t = s->sessions ? drv_now_ns() : s->last_active_ns;
        pthread_mutex_unlock(&s->lock);
        return t;
}

uint16_t sshd_port(const struct sshd *s)
{
        return s->port;
}

const char *sshd_host_fingerprint(const struct sshd *s)
{
        return s->host_fp;
}

const char *sshd_host_key(const struct sshd *s)
{
        return s->host_pub;
}

static int setup(struct sshd *s, const struct sshd_config *cfg, struct drv_error *err)
{
        const struct js_ssh *js = &cfg->spec->ssh;
        size_t n = drv_strv_len(js->authorized_keys);
        s->allowed = calloc(n + 1, sizeof(*s->allowed));
        if (!s->allowed)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                if (parse_authorized(js->authorized_keys[i], &s->allowed[s->n_allowed]) < 0)
                        return drv_err(err, EINVAL,
                                       "$.ssh.authorized_keys[%zu]: not an OpenSSH public key "
                                       "line (type base64 [comment])",
                                       i);
                s->n_allowed++;
        }
        int r = host_key_make(s, err);
        if (r < 0)
                return r;
        s->bind = ssh_bind_new();
        bool no = false;
        if (!s->bind ||
            ssh_bind_options_set(s->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
            ssh_bind_options_set(s->bind, SSH_BIND_OPTIONS_IMPORT_KEY, s->host_key) != SSH_OK)
                return drv_err(err, EIO, "ssh: cannot set up the server: %s",
                               s->bind ? ssh_get_error(s->bind) : "out of memory");
        s->host_key = NULL; /* the bind owns it now */
        if (pipe2(s->stop_pipe, O_CLOEXEC) < 0)
                return drv_err_errno(err, "pipe");
        r = bind_port(s, cfg->listen ? cfg->listen : "0.0.0.0", cfg->port_min, cfg->port_max, err);
        if (r < 0)
                return r;
        int e = pthread_create(&s->acceptor, NULL, acceptor_main, s);
        if (e != 0)
                return drv_err(err, e, "ssh: cannot start the server thread");
        s->acceptor_started = true;
        return 0;
}

int sshd_start(const struct sshd_config *cfg, struct sshd **out, struct drv_error *err)
{
        if (!runtime_has_sessions(cfg->rt))
                return drv_err(err, ENOTSUP,
                               "SSH rerun is not supported on this runtime (only the sandbox "
                               "runtime runs sessions)");
        if (!cfg->port_min || cfg->port_min > cfg->port_max)
                return drv_err(err, EINVAL, "ssh: empty port range %u-%u", cfg->port_min,
                               cfg->port_max);
        struct sshd *s = calloc(1, sizeof(*s));
        if (!s)
                return drv_err(err, ENOMEM, "out of memory");
        s->rt = cfg->rt;
        s->events = cfg->events;
        s->listen_fd = s->stop_pipe[0] = s->stop_pipe[1] = -1;
        for (int i = 0; i < SSHD_MAX_CONNS; i++)
                s->sock_fds[i] = -1;
        pthread_mutex_init(&s->lock, NULL);
        s->last_active_ns = drv_now_ns();
        s->workdir = strdup(cfg->workdir);
        s->shell = strdup(cfg->shell);
        s->have_sftp = runtime_path_exists(cfg->rt, "/usr/lib/openssh/sftp-server");
        for (const char *const *e = cfg->envp; e && *e; e++)
                if (drv_strv_push(&s->envp, *e) < 0)
                        break;
        int r =
            !s->workdir || !s->shell ? drv_err(err, ENOMEM, "out of memory") : setup(s, cfg, err);
        if (r < 0) {
                sshd_stop(s);
                return r;
        }
        log_info("ssh_enabled", "port=%u host_key=%s", s->port, s->host_fp);
        job_events_emit(s->events, "ssh_enabled",
                        json_pack("{s:i, s:s, s:s}", "port", (int)s->port, "host_key_fingerprint",
                                  s->host_fp, "host_key", s->host_pub));
        *out = s;
        return 0;
}

void sshd_stop(struct sshd *s)
{
        if (!s)
                return;
        atomic_store(&s->stopping, true);
        if (s->stop_pipe[1] >= 0)
                (void)!write(s->stop_pipe[1], "x", 1);
        if (s->acceptor_started)
                pthread_join(s->acceptor, NULL);
        /* the acceptor is gone: nobody adds connections any more; connections still in their key
         * exchange (blocking, up to its timeout) fail at once */
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < SSHD_MAX_CONNS; i++)
                if (s->sock_fds[i] >= 0)
                        shutdown(s->sock_fds[i], SHUT_RDWR);
        pthread_mutex_unlock(&s->lock);
        for (size_t i = 0; i < s->n_conns; i++)
                pthread_join(s->conns[i], NULL);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        for (int i = 0; i < 2; i++)
                if (s->stop_pipe[i] >= 0)
                        close(s->stop_pipe[i]);
        if (s->bind)
                ssh_bind_free(s->bind);
        if (s->host_key)
                ssh_key_free(s->host_key);
        for (size_t i = 0; i < s->n_allowed; i++)
                ssh_key_free(s->allowed[i]);
        free(s->allowed);
        free(s->conns);
        free(s->host_fp);
        free(s->host_pub);
        free(s->workdir);
        free(s->shell);
        drv_strv_free(s->envp);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static int keys_from_file(const char *path, char ***out, struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        int r = drv_read_file(path, &text, &n, 1 << 20, err);
        if (r < 0)
                return r;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                while (*l == ' ' || *l == '\t')
                        l++;
                l[strcspn(l, "\r")] = '\0';
                if (*l && *l != '#' && drv_strv_push(out, l) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

int sshd_load_keys(const char *file, char ***out, struct drv_error *err)
{
        _cleanup_strv_ char **keys = NULL;
        int r = 0;
        if (file) {
                r = keys_from_file(file, &keys, err);
        } else {
                const char *home = getenv("HOME");
                _cleanup_free_ char *pattern =
                    drv_asprintf("%s/.ssh/*.pub", home && *home ? home : "/root");
                glob_t g = {0};
                if (!pattern)
                        return drv_err(err, ENOMEM, "out of memory");
                if (glob(pattern, 0, NULL, &g) == 0)
                        for (size_t i = 0; r == 0 && i < g.gl_pathc; i++)
                                r = keys_from_file(g.gl_pathv[i], &keys, err);
                globfree(&g);
                file = "~/.ssh/*.pub";
        }
        if (r < 0)
                return r;
        if (drv_strv_len(keys) == 0)
                return drv_err(err, ENOENT, "no public key in %s", file);
        *out = TAKE_PTR(keys);
        return 0;
}
