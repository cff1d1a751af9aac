/* internal.h: shared between the SSH server's acceptor (server.c) and its connections
 * (session.c). Not part of the contract. */
#pragma once

#include "executor/ssh/ssh.h"

#include <libssh/libssh.h>
#include <libssh/server.h>
#include <pthread.h>
#include <stdatomic.h>

#define SSHD_MAX_CONNS 64
/* Connections not authenticated yet ("startups", as OpenSSH's MaxStartups start:rate:full):
 * from START on, a new one is dropped with a probability growing from RATE % to 100 % at FULL;
 * FULL < SSHD_MAX_CONNS keeps room for sessions. At most PER_SOURCE from one address (an IPv6
 * /64), and each has LOGIN_GRACE to authenticate (key exchange included), then it is cut. */
#define SSHD_STARTUPS_START      8
#define SSHD_STARTUPS_RATE       30
#define SSHD_STARTUPS_FULL       32
#define SSHD_STARTUPS_PER_SOURCE 4
#define SSHD_LOGIN_GRACE_NS      (20ULL * 1000000000ULL)

struct sshd {
        struct runtime *rt;
        struct job_events *events;
        char **envp;
        char *workdir;
        char *shell;
        bool have_sftp;
        ssh_key *allowed; /* authorized public keys */
        size_t n_allowed;
        ssh_key host_key;
        ssh_bind bind;
        char *host_fp;  /* SHA256:... */
        char *host_pub; /* ssh-ed25519 AAAA... */
        uint16_t port;
        int listen_fd;
        int stop_pipe[2]; /* the read end becomes readable (forever) at stop */
        pthread_t acceptor;
        bool acceptor_started;
        pthread_mutex_t lock; /* conns, counters */
        pthread_t *conns;
        size_t n_conns;
        int sock_fds[SSHD_MAX_CONNS]; /* sockets of live connections (-1 free): shut down at stop */
        bool preauth[SSHD_MAX_CONNS]; /* not authenticated yet */
        uint64_t since_ns[SSHD_MAX_CONNS];
        unsigned char source[SSHD_MAX_CONNS][16]; /* its address (IPv4 mapped; IPv6 /64) */
        unsigned sessions;
        unsigned next_id;
        uint64_t last_active_ns;
        atomic_bool stopping;
};

/* One accepted TCP connection, served by a thread of its own. */
struct sshd_conn_args {
        struct sshd *srv;
        ssh_session session;
        unsigned id;
        int slot; /* in sock_fds */
        char remote[64];
};
/* Thread body: key exchange, publickey auth, channels until the client leaves or stop. */
void *sshd_conn_main(void *args);
/* A connection is over: its socket is no longer shut down at stop (call before closing it). */
void sshd_conn_release(struct sshd *s, int slot);
/* The connection in slot authenticated: it no longer counts as a startup. */
void sshd_conn_authenticated(struct sshd *s, int slot);
/* Is key one of the authorized keys? */
bool sshd_key_allowed(struct sshd *s, ssh_key key);
/* Session accounting (events + idle clock). */
void sshd_session_opened(struct sshd *s, unsigned id, const char *user, const char *key_fp,
                         const char *remote);
void sshd_session_closed(struct sshd *s, unsigned id, uint64_t duration_ms);
