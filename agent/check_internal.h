/* check_internal.h: shared between the files of `drover check` (check.c, check_kernel.c,
 * check_net.c); not a module contract. */
#pragma once

#include "lib/drv.h"

enum check_status { CHECK_OK, CHECK_WARN, CHECK_FAIL, CHECK_INFO };

struct check_opts {
        const char *config_path; /* NULL: none */
        const char *cgroup_root; /* default /sys/fs/cgroup */
        char *work_dir;
        char *spool_dir;
        char **control_plane;      /* URLs; may be empty */
        char *output_processor;    /* URL or NULL */
        char *storage;             /* URL or NULL */
        char **docker_hosts;       /* URLs */
        char *ca_file;             /* trust for TLS checks; NULL = system store */
        char *cert_file;           /* client certificate for mTLS */
        char *key_file;            /* its key */
        char *proxy_ca_file;       /* trust for an https:// proxy (tls.proxy_ca); NULL = system */
        unsigned port_lo, port_hi; /* SSH rerun port range */
        bool ports_set;            /* --ports given */
        long timeout_ms;           /* per network check */
        uint64_t disk_fail;        /* below this many free bytes: FAIL */
        uint64_t disk_warn;        /* below this: warn */
        bool skip_network;
};

struct check_report {
        unsigned ok, warn, fail;
};

/* Print one result line: "ok   what: detail" / "warn what: detail" / "FAIL what: detail".
 * fix (may be NULL) is printed on an indented "fix:" line after a warn or FAIL. */
void check_line(struct check_report *r, enum check_status st, const char *what, const char *fix,
                const char *fmt, ...) DRV_PRINTF(5, 6);

/* check_kernel.c */
void check_identity(struct check_report *r);
void check_userns(struct check_report *r);
void check_overlayfs(struct check_report *r);
void check_seccomp(struct check_report *r);
void check_cgroups(struct check_report *r, const char *root);
void check_disk(struct check_report *r, const char *what, const char *dir, uint64_t fail_below,
                uint64_t warn_below);
void check_clock(struct check_report *r);

/* check_net.c */
void check_endpoint(struct check_report *r, const char *what, const char *url,
                    const struct check_opts *o);
void check_ports(struct check_report *r, unsigned lo, unsigned hi);
/* Turn "host:port", "tcp://host:port" or a URL into an https:// URL (malloc'd). */
char *check_normalize_url(const char *s, unsigned default_port);
/* The proxy libcurl will use for url according to HTTP(S)_PROXY/NO_PROXY, without user info,
 * malloc'd, or NULL. */
char *check_proxy_for(const char *url);
