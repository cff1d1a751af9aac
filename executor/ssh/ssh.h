/* ssh.h: the SSH rerun server — one per job, run by `drover job`, sessions inside the job.
 * docs/ssh.md describes the behaviour; the server has a thread of its own plus one per
 * connection (libssh sessions are used by one thread each). */
#pragma once

#include "executor/events.h"
#include "executor/jobspec.h"
#include "executor/runtime.h"

struct sshd_config {
        const struct jobspec *spec;  /* ssh.authorized_keys, ports, job id */
        struct runtime *rt;          /* where sessions run (runtime_has_sessions) */
        struct job_events *events;   /* ssh_enabled, ssh_session_opened/closed */
        const char *const *envp;     /* the environment steps get (copied) */
        const char *workdir;         /* inside cwd of sessions */
        const char *shell;           /* inside path of the login shell, e.g. /bin/bash */
        uint16_t port_min, port_max; /* the range to bind in */
        const char *listen;          /* address to bind; NULL = 0.0.0.0 */
};

struct sshd;

/* Parse the authorized keys, make a per-job ed25519 host key, bind a free port of the range and
 * start serving. Emits the ssh_enabled event. Returns 0 and a server (sshd_stop frees it). */
int sshd_start(const struct sshd_config *cfg, struct sshd **out, struct drv_error *err);
uint16_t sshd_port(const struct sshd *s);
/* "SHA256:..." of the host key, and its known_hosts form "ssh-ed25519 AAAA...". */
const char *sshd_host_fingerprint(const struct sshd *s);
const char *sshd_host_key(const struct sshd *s);
/* Authenticated connections open now. */
unsigned sshd_sessions(struct sshd *s);
/* drv_now_ns() of the last moment a session was open (the start when none ever was). */
uint64_t sshd_last_active_ns(struct sshd *s);
/* Close every session (their processes are killed), stop serving, free the port and s. */
void sshd_stop(struct sshd *s);
static inline void sshd_stopp(struct sshd **p)
{
        if (*p)
                sshd_stop(*p);
}

/* "LO-HI" (or "PORT") into a range; -EINVAL when malformed or empty. */
int sshd_parse_ports(const char *text, uint16_t *lo, uint16_t *hi);

/* After the steps: keep waiting, or why the job ends now. */
enum sshd_wait {
        SSHD_WAIT_KEEP,     /* sessions are open, or the idle timeout has not passed */
        SSHD_WAIT_IDLE,     /* no session for idle_timeout */
        SSHD_WAIT_HARD_CAP, /* max_duration since the steps ended */
};
enum sshd_wait sshd_wait_state(unsigned sessions, uint64_t now_ns, uint64_t last_active_ns,
                               uint64_t steps_end_ns, uint64_t idle_timeout_s,
                               uint64_t max_duration_s);

/* Map a signal name of the SSH protocol ("TERM", "INT", ...) to a number, 0 if unknown, and back
 * (NULL if it has no SSH name). */
int sshd_signal_from_name(const char *name);
const char *sshd_signal_name(int sig);

/* Public key lines for `drover run --ssh[=FILE]`: the lines of FILE, or of every ~/.ssh/ *.pub file
 * when file is NULL (comments and blank lines skipped). Returns 0 and a NULL-terminated vector
 * (caller frees), or -errno with err naming what was missing. */
int sshd_load_keys(const char *file, char ***out, struct drv_error *err);
