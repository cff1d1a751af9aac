/* check.c: `drover check` — preflight that tells an operator whether this machine can run jobs.
 * Options and config here; the probes are in check_kernel.c and check_net.c. */
#include "agent/agent.h"
#include "agent/check_internal.h"
#include "agent/commands.h"

#include <curl/curl.h>
#include <getopt.h>
#include <sys/stat.h>

#define DEFAULT_CONFIG "/etc/drover/agent.yaml"

void check_line(struct check_report *r, enum check_status st, const char *what, const char *fix,
                const char *fmt, ...)
{
        static const char *tags[] = {"ok  ", "warn", "FAIL", "info"};
        va_list ap;
        printf("%s %s: ", tags[st], what);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        if (fix && (st == CHECK_WARN || st == CHECK_FAIL))
                printf("     fix: %s\n", fix);
        if (st == CHECK_OK)
                r->ok++;
        else if (st == CHECK_WARN)
                r->warn++;
        else if (st == CHECK_FAIL)
                r->fail++;
        fflush(stdout);
}

static int set_str(char **dst, const char *v)
{
        if (!v || !*v)
                return 0;
        char *c = strdup(v);
        if (!c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

static int parse_port_range(const char *s, unsigned *lo, unsigned *hi)
{
        unsigned a, b;
        char tail;
        if (sscanf(s, "%u-%u%c", &a, &b, &tail) != 2 || a == 0 || a > b || b > 65535)
                return -EINVAL;
        *lo = a;
        *hi = b;
        return 0;
}

/* A TLS file of the config: used only when it exists; a missing one is a FAIL when the control
 * plane is configured (the agent would fail the same way). */
static int tls_file(struct check_report *rep, const char *what, const char *path, bool needed,
                    bool secret, char **dst)
{
        if (*dst || !path || !*path)
                return 0;
        struct stat st;
        if (stat(path, &st) < 0) {
                if (needed)
                        check_line(rep, CHECK_FAIL, what,
                                   strcmp(what, "tls.proxy_ca")
                                       ? "put the file there or point the key at it (mTLS with "
                                         "the control plane needs it)"
                                       : "put the file there or point the key at it (an "
                                         "https:// proxy is verified with it)",
                                   "%s: %s", path, strerror(errno));
                return 0;
        }
        if (access(path, R_OK) < 0) {
                check_line(rep, CHECK_FAIL, what, "make it readable by root", "%s: %s", path,
                           strerror(errno));
                return 0;
        }
        if (secret && (st.st_mode & 0077))
                check_line(rep, CHECK_WARN, what, "chmod 0600 it",
                           "%s is readable by others (%04o)", path, (unsigned)(st.st_mode & 07777));
        else
                check_line(rep, CHECK_OK, what, NULL, "%s", path);
        return set_str(dst, path);
}

/* The agent's own effective config (defaults < file < DROVER_* env, exactly as `drover agent`
 * loads it); flags of `drover check` win over it. */
static int load_config(struct check_opts *o, struct agent_config *cfg, struct drv_error *err)
{
        char *argv[] = {(char *)"agent", (char *)"--config", (char *)o->config_path, NULL};
        bool print = false;
        return agent_config_load(o->config_path ? 3 : 1, argv, cfg, &print, err);
}

static int apply_config(struct check_opts *o, const struct agent_config *c,
                        struct check_report *rep, struct drv_error *err)
{
        const struct agent_config cfg = *c;
        int r;
        /* The TLS files matter when the control plane is the config's (not one from a flag). */
        bool needed = false;
        if (!o->control_plane && cfg.servers && cfg.servers[0]) {
                o->control_plane = drv_strv_copy(cfg.servers);
                needed = true;
        }
        if (!o->docker_hosts && cfg.docker_hosts && cfg.docker_hosts[0])
                o->docker_hosts = drv_strv_copy(cfg.docker_hosts);
        if ((r = set_str(&o->output_processor, o->output_processor ? NULL : cfg.output_processor)) <
                0 ||
            (r = set_str(&o->storage, o->storage ? NULL : cfg.storage_endpoint)) < 0 ||
            (r = set_str(&o->work_dir, o->work_dir ? NULL : cfg.work_dir)) < 0 ||
            (r = set_str(&o->spool_dir, o->spool_dir ? NULL : cfg.spool_dir)) < 0)
                goto out;
        if (!o->ports_set && cfg.ssh_ports && *cfg.ssh_ports &&
            parse_port_range(cfg.ssh_ports, &o->port_lo, &o->port_hi) < 0) {
                r = drv_err(err, EINVAL, "ssh_ports: expected LOW-HIGH, got '%s'", cfg.ssh_ports);
                goto out;
        }
        if ((r = tls_file(rep, "tls.ca", cfg.tls_ca, needed, false, &o->ca_file)) < 0 ||
            (r = tls_file(rep, "tls.cert", cfg.tls_cert, needed, false, &o->cert_file)) < 0 ||
            (r = tls_file(rep, "tls.key", cfg.tls_key, needed, true, &o->key_file)) < 0 ||
            (r = tls_file(rep, "tls.proxy_ca", cfg.tls_proxy_ca, true, false, &o->proxy_ca_file)) <
                0)
                goto out;
out:
        if (r == -ENOMEM)
                drv_err(err, ENOMEM, "out of memory");
        return r;
}

static void opts_free(struct check_opts *o)
{
        free(o->work_dir);
        free(o->spool_dir);
        drv_strv_free(o->control_plane);
        free(o->output_processor);
        free(o->storage);
        drv_strv_free(o->docker_hosts);
        free(o->ca_file);
        free(o->cert_file);
        free(o->key_file);
        free(o->proxy_ca_file);
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: drover check [OPTIONS]\n"
                "\n"
                "Preflight: prints one line per check (ok / warn / FAIL, with a fix) and exits 0\n"
                "when this machine can run jobs, 1 when it cannot, 2 on bad usage.\n"
                "\n"
                "  --config FILE            agent config to read endpoints and dirs from\n"
                "                           (default $DROVER_CONFIG, else " DEFAULT_CONFIG "\n"
                "                           when it exists)\n"
                "  --control-plane URL      control plane (repeatable; default port 4647)\n"
                "  --output-processor URL   output processor (default port 8585)\n"
                "  --storage URL            object storage endpoint (https:// or file://)\n"
                "  --docker-host URL        remote Docker Engine (repeatable; default port 2376)\n"
                "  --ca-file FILE           CA bundle to trust for the TLS checks\n"
                "  --cert FILE, --key FILE  client certificate and key (mTLS)\n"
                "  --cgroup-root DIR        cgroup mount point (default /sys/fs/cgroup)\n"
                "  --work-dir DIR           job work dir (default /var/lib/drover/work)\n"
                "  --spool-dir DIR          output spool (default /var/lib/drover/spool)\n"
                "  --ports LO-HI            SSH rerun port range (default 64535-65535)\n"
                "  --timeout SECONDS        per network check (default 5)\n"
                "  --min-disk SIZE          free space below which disk is a FAIL (default 1G)\n"
                "  --no-network             skip the reachability checks\n"
                "  -h, --help               this text\n"
                "\n"
                "HTTP_PROXY, HTTPS_PROXY and NO_PROXY apply to the network checks as they do to\n"
                "the agent.\n");
}

enum {
        OPT_CONFIG = 256,
        OPT_CP,
        OPT_OUT,
        OPT_STORAGE,
        OPT_DOCKER,
        OPT_CA,
        OPT_CERT,
        OPT_KEY,
        OPT_CGROUP,
        OPT_WORK,
        OPT_SPOOL,
        OPT_PORTS,
        OPT_TIMEOUT,
        OPT_MINDISK,
        OPT_NONET,
};

static int parse_args(int argc, char **argv, struct check_opts *o)
{
        static const struct option longopts[] = {
            {"config", required_argument, NULL, OPT_CONFIG},
            {"control-plane", required_argument, NULL, OPT_CP},
            {"output-processor", required_argument, NULL, OPT_OUT},
            {"storage", required_argument, NULL, OPT_STORAGE},
            {"docker-host", required_argument, NULL, OPT_DOCKER},
            {"ca-file", required_argument, NULL, OPT_CA},
            {"cert", required_argument, NULL, OPT_CERT},
            {"key", required_argument, NULL, OPT_KEY},
            {"cgroup-root", required_argument, NULL, OPT_CGROUP},
            {"work-dir", required_argument, NULL, OPT_WORK},
            {"spool-dir", required_argument, NULL, OPT_SPOOL},
            {"ports", required_argument, NULL, OPT_PORTS},
            {"timeout", required_argument, NULL, OPT_TIMEOUT},
            {"min-disk", required_argument, NULL, OPT_MINDISK},
            {"no-network", no_argument, NULL, OPT_NONET},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        int c;
        uint64_t v;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                int r = 0;
                switch (c) {
                case 'h':
                        usage(stdout);
                        return 1;
                case OPT_CONFIG:
                        o->config_path = optarg;
                        break;
                case OPT_CP:
                        r = drv_strv_push(&o->control_plane, optarg);
                        break;
                case OPT_OUT:
                        r = set_str(&o->output_processor, optarg);
                        break;
                case OPT_STORAGE:
                        r = set_str(&o->storage, optarg);
                        break;
                case OPT_DOCKER:
                        r = drv_strv_push(&o->docker_hosts, optarg);
                        break;
                case OPT_CA:
                        r = set_str(&o->ca_file, optarg);
                        break;
                case OPT_CERT:
                        r = set_str(&o->cert_file, optarg);
                        break;
                case OPT_KEY:
                        r = set_str(&o->key_file, optarg);
                        break;
                case OPT_CGROUP:
                        o->cgroup_root = optarg;
                        break;
                case OPT_WORK:
                        r = set_str(&o->work_dir, optarg);
                        break;
                case OPT_SPOOL:
                        r = set_str(&o->spool_dir, optarg);
                        break;
                case OPT_PORTS:
                        o->ports_set = true;
                        if (parse_port_range(optarg, &o->port_lo, &o->port_hi) < 0) {
                                fprintf(stderr, "drover check: --ports: expected LO-HI\n");
                                return -EINVAL;
                        }
                        break;
                case OPT_TIMEOUT:
                        if (drv_parse_duration(optarg, &v) < 0 || v == 0 || v > 600) {
                                fprintf(stderr, "drover check: --timeout: bad duration '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->timeout_ms = (long)v * 1000;
                        break;
                case OPT_MINDISK:
                        if (drv_parse_size(optarg, &v) < 0) {
                                fprintf(stderr, "drover check: --min-disk: bad size '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->disk_fail = v;
                        if (o->disk_warn < v)
                                o->disk_warn = v;
                        break;
                case OPT_NONET:
                        o->skip_network = true;
                        break;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "drover check: out of memory\n");
                        return r;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "drover check: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

static void check_network(struct check_report *r, const struct check_opts *o)
{
        if (!o->control_plane || !o->control_plane[0])
                check_line(r, CHECK_WARN, "control-plane", "set servers: in the agent config",
                           "not configured");
        for (size_t i = 0; o->control_plane && o->control_plane[i]; i++) {
                _cleanup_free_ char *u = check_normalize_url(o->control_plane[i], 4647);
                check_endpoint(r, "control-plane", u, o);
        }
        if (o->output_processor) {
                _cleanup_free_ char *u = check_normalize_url(o->output_processor, 8585);
                check_endpoint(r, "output-processor", u, o);
        } else {
                check_line(r, CHECK_INFO, "output-processor", NULL,
                           "not configured (jobs name their own)");
        }
        if (o->storage) {
                _cleanup_free_ char *u = check_normalize_url(o->storage, 443);
                check_endpoint(r, "object-storage", u, o);
        } else {
                check_line(r, CHECK_INFO, "object-storage", NULL,
                           "not configured (jobs name their own)");
        }
        if (!o->docker_hosts || !o->docker_hosts[0])
                check_line(r, CHECK_INFO, "docker-host", NULL, "not configured");
        for (size_t i = 0; o->docker_hosts && o->docker_hosts[i]; i++) {
                _cleanup_free_ char *u = check_normalize_url(o->docker_hosts[i], 2376);
                check_endpoint(r, "docker-host", u, o);
        }
}

int cmd_check(int argc, char **argv)
{
        struct check_opts o = {
            .cgroup_root = "/sys/fs/cgroup",
            .port_lo = 64535,
            .port_hi = 65535,
            .timeout_ms = 5000,
            .disk_fail = 1ULL << 30,
            .disk_warn = 5ULL << 30,
        };
        struct check_report rep = {0};
        struct drv_error err = {0};
        int r = parse_args(argc, argv, &o);
        if (r != 0) {
                opts_free(&o);
                return r > 0 ? 0 : 2;
        }
        if (!o.config_path && getenv("DROVER_CONFIG") && *getenv("DROVER_CONFIG"))
                o.config_path = getenv("DROVER_CONFIG"); /* as `drover agent` does */
        if (!o.config_path && access(DEFAULT_CONFIG, F_OK) == 0)
                o.config_path = DEFAULT_CONFIG;
        struct agent_config cfg = {0};
        if (load_config(&o, &cfg, &err) < 0) {
                check_line(&rep, CHECK_FAIL, "config",
                           "fix the agent config (drover-agent.yaml(5))", "%s", err.message);
        } else {
                if (o.config_path)
                        check_line(&rep, CHECK_OK, "config", NULL, "%s", o.config_path);
                else
                        check_line(&rep, CHECK_INFO, "config", NULL,
                                   "no config file: defaults, DROVER_* environment and flags");
                if (apply_config(&o, &cfg, &rep, &err) < 0)
                        check_line(&rep, CHECK_FAIL, "config", NULL, "%s", err.message);
        }
        agent_config_free(&cfg);

        check_identity(&rep);
        check_userns(&rep);
        check_overlayfs(&rep);
        check_seccomp(&rep);
        check_cgroups(&rep, o.cgroup_root);
        check_disk(&rep, "disk work-dir", o.work_dir ? o.work_dir : "/var/lib/drover/work",
                   o.disk_fail, o.disk_warn);
        check_disk(&rep, "disk spool-dir", o.spool_dir ? o.spool_dir : "/var/lib/drover/spool",
                   o.disk_fail, o.disk_warn);
        check_clock(&rep);
        if (!o.skip_network) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                        check_line(&rep, CHECK_FAIL, "network", NULL, "libcurl failed to start");
                } else {
                        check_network(&rep, &o);
                        curl_global_cleanup();
                }
        }
        check_ports(&rep, o.port_lo, o.port_hi);

        if (rep.fail)
                printf("not ready: %u failed, %u warnings, %u ok\n", rep.fail, rep.warn, rep.ok);
        else
                printf("ready: %u ok, %u warnings\n", rep.ok, rep.warn);
        opts_free(&o);
        return rep.fail ? 1 : 0;
}
