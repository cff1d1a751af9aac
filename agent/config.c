/* config.c: the agent's configuration: defaults < YAML file < DROVER_* env < flags. */
#include "agent/agent.h"

#include <ctype.h>
#include <getopt.h>
#include <yaml.h>

enum key_type { K_STR, K_STRV, K_UINT, K_BOOL, K_DURATION, K_SIZE };
struct key {
        const char *name; /* dotted YAML key */
        enum key_type type;
        size_t off;
        bool secret;
        bool hidden; /* printed only when set */
};
#define K(n, t, f, ...)                                                                            \
        {                                                                                          \
                n, t, offsetof(struct agent_config, f), __VA_ARGS__                                \
        }
static const struct key keys[] = {
    K("servers", K_STRV, servers, false, false),
    K("join_token_file", K_STR, join_token_file, false, false),
    K("join_token", K_STR, join_token, true, false),
    K("tls.ca", K_STR, tls_ca, false, false),
    K("tls.cert", K_STR, tls_cert, false, false),
    K("tls.key", K_STR, tls_key, false, false),
    K("tls.proxy_ca", K_STR, tls_proxy_ca, false, false),
    K("name", K_STR, name, false, false),
    K("resource_classes", K_STRV, resource_classes, false, false),
    K("max_jobs", K_UINT, max_jobs, false, false),
    K("exit_after_job", K_BOOL, exit_after_job, false, false),
    K("idle_timeout", K_DURATION, idle_timeout, false, false),
    K("work_dir", K_STR, work_dir, false, false),
    K("spool_dir", K_STR, spool_dir, false, false),
    K("spool_max", K_SIZE, spool_max, false, false),
    K("drain_grace", K_DURATION, drain_grace, false, false),
    K("cancel_grace", K_DURATION, cancel_grace, false, true),
    K("claim_wait", K_DURATION, claim_wait, false, true),
    K("ssh_ports", K_STR, ssh_ports, false, false),
    K("event_spool_max", K_SIZE, event_spool_max, false, false),
    K("metrics_listen", K_STR, metrics_listen, false, false),
    K("statsd", K_STR, statsd, false, false),
    K("log_level", K_STR, log_level, false, false),
    K("log_file", K_STR, log_file, false, false),
    K("output_processor", K_STR, output_processor, false, false),
    K("storage.endpoint", K_STR, storage_endpoint, false, false),
    K("docker_hosts", K_STRV, docker_hosts, false, false),
    K("docker_tls.ca", K_STR, docker_tls_ca, false, false),
    K("docker_tls.cert", K_STR, docker_tls_cert, false, false),
    K("docker_tls.key", K_STR, docker_tls_key, false, false),
    K("job_command", K_STR, job_command, false, true),
    K("image_store", K_STR, image_store, false, false),
    K("image_store_max", K_SIZE, image_store_max, false, false),
    K("image_pull", K_STR, image_pull, false, false),
    K("image_mirrors", K_STRV, image_mirrors, false, false),
    K("image_registry_allow", K_STRV, image_registry_allow, false, false),
    K("image_ca_file", K_STR, image_ca_file, false, false),
    K("max_services_per_job", K_UINT, max_services_per_job, false, false),
    K("sandbox.rcu_expedited", K_BOOL, rcu_expedited, false, true),
    K("sandbox.egress_allow", K_STRV, egress_allow, false, false),
};

static const struct key *find_key(const char *name)
{
        for (size_t i = 0; i < DRV_ARRAY_SIZE(keys); i++)
                if (strcmp(keys[i].name, name) == 0)
                        return &keys[i];
        return NULL;
}

static int set_strv(char ***dst, const char *value)
{
        char **v = NULL;
        _cleanup_free_ char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*t))
                        t++;
                size_t n = strlen(t);
                while (n && isspace((unsigned char)t[n - 1]))
                        t[--n] = 0;
                if (n && drv_strv_push(&v, t) < 0) {
                        drv_strv_free(v);
                        return -ENOMEM;
                }
        }
        drv_strv_free(*dst);
        *dst = v;
        return 0;
}

static void docker_files_free(struct agent_config *cfg)
{
        drv_strv_free(cfg->docker_hosts_ca);
        drv_strv_free(cfg->docker_hosts_cert);
        drv_strv_free(cfg->docker_hosts_key);
        cfg->docker_hosts_ca = cfg->docker_hosts_cert = cfg->docker_hosts_key = NULL;
}

void agent_config_docker_host(const struct agent_config *cfg, size_t i, const char **url,
                              const char **ca, const char **cert, const char **key)
{
        size_t n = drv_strv_len(cfg->docker_hosts_ca);
        *url = cfg->docker_hosts[i];
        *ca = i < n && cfg->docker_hosts_ca[i][0] ? cfg->docker_hosts_ca[i] : cfg->docker_tls_ca;
        *cert = i < n && cfg->docker_hosts_cert[i][0] ? cfg->docker_hosts_cert[i]
                                                      : cfg->docker_tls_cert;
        *key =
            i < n && cfg->docker_hosts_key[i][0] ? cfg->docker_hosts_key[i] : cfg->docker_tls_key;
}

/* One item of docker_hosts: a URL, or {url, ca, cert, key} (files; absent = docker_tls.*). */
static int load_docker_host(struct agent_config *cfg, yaml_document_t *doc, yaml_node_t *in,
                            struct drv_error *err)
{
        const char *v[4] = {NULL, "", "", ""};
        static const char *const names[4] = {"url", "ca", "cert", "key"};
        if (in->type == YAML_SCALAR_NODE) {
                v[0] = (const char *)in->data.scalar.value;
        } else if (in->type == YAML_MAPPING_NODE) {
                for (yaml_node_pair_t *p = in->data.mapping.pairs.start;
                     p < in->data.mapping.pairs.top; p++) {
                        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
                        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
                        if (!kn || !vn || kn->type != YAML_SCALAR_NODE ||
                            vn->type != YAML_SCALAR_NODE)
                                return drv_err(err, EINVAL,
                                               "docker_hosts: expected url, ca, cert, key strings");
                        size_t k = 0;
                        while (k < 4 && strcmp(names[k], (const char *)kn->data.scalar.value))
                                k++;
                        if (k == 4)
                                return drv_err(err, EINVAL, "unknown key 'docker_hosts.%s'",
                                               (const char *)kn->data.scalar.value);
                        v[k] = (const char *)vn->data.scalar.value;
                }
        } else {
                return drv_err(err, EINVAL, "docker_hosts: expected a URL or a mapping");
        }
        if (!v[0] || !v[0][0])
                return drv_err(err, EINVAL, "docker_hosts: an entry has no url");
        if (drv_strv_push(&cfg->docker_hosts, v[0]) < 0 ||
            drv_strv_push(&cfg->docker_hosts_ca, v[1]) < 0 ||
            drv_strv_push(&cfg->docker_hosts_cert, v[2]) < 0 ||
            drv_strv_push(&cfg->docker_hosts_key, v[3]) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

static int set_key(struct agent_config *cfg, const struct key *k, const char *value,
                   struct drv_error *err)
{
        void *p = (char *)cfg + k->off;
        uint64_t u;
        switch (k->type) {
        case K_STR: {
                char *s = strdup(value);
                if (!s)
                        return drv_err(err, ENOMEM, "out of memory");
                free(*(char **)p);
                *(char **)p = s;
                return 0;
        }
        case K_STRV:
                if (set_strv((char ***)p, value) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
                if (p == (void *)&cfg->docker_hosts)
                        docker_files_free(cfg); /* URLs only: all use docker_tls.* */
                return 0;
        case K_UINT:
                if (drv_parse_u64(value, &u) < 0 || u > 100000)
                        return drv_err(err, EINVAL, "%s: expected a number, got '%s'", k->name,
                                       value);
                *(uint64_t *)p = u;
                return 0;
        case K_BOOL:
                if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes"))
                        *(bool *)p = true;
                else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no"))
                        *(bool *)p = false;
                else
                        return drv_err(err, EINVAL, "%s: expected true or false, got '%s'", k->name,
                                       value);
                return 0;
        case K_SIZE:
                if (drv_parse_size(value, &u) < 0)
                        return drv_err(err, EINVAL, "%s: expected a size (512M, 2G), got '%s'",
                                       k->name, value);
                *(uint64_t *)p = u;
                return 0;
        case K_DURATION:
                if (drv_parse_duration(value, &u) < 0)
                        return drv_err(err, EINVAL, "%s: expected a duration (90s, 5m), got '%s'",
                                       k->name, value);
                *(uint64_t *)p = u;
                return 0;
        }
        return 0;
}

int agent_config_set(struct agent_config *cfg, const char *key, const char *value,
                     struct drv_error *err)
{
        const struct key *k = find_key(key);
        if (!k)
                return drv_err(err, EINVAL, "unknown key '%s'", key);
        return set_key(cfg, k, value, err);
}

void agent_config_defaults(struct agent_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        struct drv_error e = {0};
        static const char *const defs[][2] = {
            {"join_token_file", "/etc/drover/join-token"},
            {"tls.ca", "/etc/drover/tls/ca.pem"},
            {"tls.cert", "/etc/drover/tls/client.pem"},
            {"tls.key", "/etc/drover/tls/client-key.pem"},
            {"tls.proxy_ca", ""},
            {"name", ""},
            {"work_dir", "/var/lib/drover/work"},
            {"spool_dir", "/var/lib/drover/spool"},
            {"spool_max", "256M"},
            {"drain_grace", "5m"},
            {"cancel_grace", "10s"},
            {"claim_wait", "25s"},
            {"ssh_ports", "64535-65535"},
            {"event_spool_max", "256M"},
            {"metrics_listen", "127.0.0.1:9464"},
            {"statsd", ""},
            {"log_level", "info"},
            {"log_file", ""},
            {"output_processor", ""},
            {"storage.endpoint", ""},
            {"docker_tls.ca", "/etc/drover/docker/ca.pem"},
            {"docker_tls.cert", "/etc/drover/docker/cert.pem"},
            {"docker_tls.key", "/etc/drover/docker/key.pem"},
            {"image_store", "/var/lib/drover/images"},
            {"image_pull", "missing"},
            {"image_ca_file", ""},
            {"max_services_per_job", "16"},
        };
        for (size_t i = 0; i < DRV_ARRAY_SIZE(defs); i++)
                (void)agent_config_set(cfg, defs[i][0], defs[i][1], &e);
}

void agent_config_free(struct agent_config *cfg)
{
        for (size_t i = 0; i < DRV_ARRAY_SIZE(keys); i++) {
                void *p = (char *)cfg + keys[i].off;
                if (keys[i].type == K_STR)
                        free(*(char **)p);
                else if (keys[i].type == K_STRV)
                        drv_strv_free(*(char ***)p);
        }
        docker_files_free(cfg);
        memset(cfg, 0, sizeof(*cfg));
}

static int load_node(struct agent_config *cfg, yaml_document_t *doc, yaml_node_t *n,
                     const char *prefix, struct drv_error *err)
{
        if (n->type != YAML_MAPPING_NODE)
                return drv_err(err, EINVAL, "%s: expected a mapping", prefix[0] ? prefix : "top");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
                yaml_node_t *kn = yaml_document_get_node(doc, p->key);
                yaml_node_t *vn = yaml_document_get_node(doc, p->value);
                if (!kn || kn->type != YAML_SCALAR_NODE || !vn)
                        return drv_err(err, EINVAL, "non-scalar key");
                _cleanup_free_ char *name =
                    drv_asprintf("%s%s", prefix, (const char *)kn->data.scalar.value);
                if (!name)
                        return drv_err(err, ENOMEM, "out of memory");
                const struct key *k = find_key(name);
                if (!k && vn->type == YAML_MAPPING_NODE) {
                        _cleanup_free_ char *pre = drv_asprintf("%s.", name);
                        if (!pre)
                                return drv_err(err, ENOMEM, "out of memory");
                        int r = load_node(cfg, doc, vn, pre, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!k)
                        return drv_err(err, EINVAL, "unknown key '%s'", name);
                if (vn->type == YAML_SCALAR_NODE) {
                        const char *v = (const char *)vn->data.scalar.value;
                        int r = set_key(cfg, k, v, err);
                        if (r < 0)
                                return r;
                } else if (vn->type == YAML_SEQUENCE_NODE && k->type == K_STRV) {
                        char ***dst = (char ***)((char *)cfg + k->off);
                        drv_strv_free(*dst);
                        *dst = NULL;
                        bool docker = dst == &cfg->docker_hosts;
                        if (docker)
                                docker_files_free(cfg);
                        for (yaml_node_item_t *it = vn->data.sequence.items.start;
                             it < vn->data.sequence.items.top; it++) {
                                yaml_node_t *in = yaml_document_get_node(doc, *it);
                                if (docker && in) {
                                        int r = load_docker_host(cfg, doc, in, err);
                                        if (r < 0)
                                                return r;
                                        continue;
                                }
                                if (!in || in->type != YAML_SCALAR_NODE)
                                        return drv_err(err, EINVAL, "%s: expected strings", name);
                                if (drv_strv_push(dst, (const char *)in->data.scalar.value) < 0)
                                        return drv_err(err, ENOMEM, "out of memory");
                        }
                } else {
                        return drv_err(err, EINVAL, "%s: wrong type", name);
                }
        }
        return 0;
}

static int load_file(struct agent_config *cfg, const char *path, bool must, struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (!must && access(path, F_OK) < 0)
                return 0;
        int r = drv_read_file(path, &text, &len, 1 << 20, err);
        if (r < 0)
                return r;
        yaml_parser_t parser;
        yaml_document_t doc;
        if (!yaml_parser_initialize(&parser))
                return drv_err(err, ENOMEM, "out of memory");
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
        if (!yaml_parser_load(&parser, &doc)) {
                r = drv_err(err, EINVAL, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                            parser.problem ? parser.problem : "bad YAML");
                yaml_parser_delete(&parser);
                return r;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        r = root ? load_node(cfg, &doc, root, "", err) : 0;
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        if (r < 0)
                return drv_err_prefix(err, "%s", path);
        return 0;
}

/* "tls.ca" -> "DROVER_TLS_CA" / "tls-ca" */
static void key_env(const char *k, char *buf, size_t n)
{
        size_t o = (size_t)snprintf(buf, n, "DROVER_");
        for (; *k && o + 1 < n; k++)
                buf[o++] = (*k == '.' || *k == '-') ? '_' : (char)toupper((unsigned char)*k);
        buf[o] = 0;
}
static void key_flag(const char *k, char *buf, size_t n)
{
        size_t o = 0;
        for (; *k && o + 1 < n; k++)
                buf[o++] = (*k == '.' || *k == '_') ? '-' : *k;
        buf[o] = 0;
}

int agent_config_load(int argc, char **argv, struct agent_config *cfg, bool *print,
                      struct drv_error *err)
{
        enum { N = DRV_ARRAY_SIZE(keys) };
        static char names[N][40];
        struct option longopts[N + 4];
        for (size_t i = 0; i < N; i++) {
                key_flag(keys[i].name, names[i], sizeof(names[i]));
                longopts[i] = (struct option){
                    names[i], keys[i].type == K_BOOL ? optional_argument : required_argument, NULL,
                    1000 + (int)i};
        }
        longopts[N] = (struct option){"config", required_argument, NULL, 'c'};
        longopts[N + 1] = (struct option){"print-config", no_argument, NULL, 'p'};
        longopts[N + 2] = (struct option){"help", no_argument, NULL, 'h'};
        longopts[N + 3] = (struct option){0, 0, 0, 0};

        const char *config_path = NULL;
        int c;
        memset(cfg, 0, sizeof(*cfg));
        *print = false;
        optind = 1;
        opterr = 1;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                if (c == 'c')
                        config_path = optarg;
                else if (c == 'p')
                        *print = true;
                else if (c == 'h')
                        return drv_err(err, EAGAIN, "help");
                else if (c < 1000)
                        return drv_err(err, EINVAL, "bad usage");
        }
        if (optind != argc)
                return drv_err(err, EINVAL, "unexpected argument '%s'", argv[optind]);
        if (!config_path)
                config_path = getenv("DROVER_CONFIG");
        agent_config_defaults(cfg);
        int r = load_file(cfg, config_path ? config_path : "/etc/drover/agent.yaml",
                          config_path != NULL, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < N; i++) {
                char env[64];
                key_env(keys[i].name, env, sizeof(env));
                const char *v = getenv(env);
                if (v && (r = set_key(cfg, &keys[i], v, err)) < 0)
                        return drv_err_prefix(err, "%s", env);
        }
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                if (c < 1000)
                        continue;
                const struct key *k = &keys[c - 1000];
                const char *v = optarg ? optarg : "true";
                if ((r = set_key(cfg, k, v, err)) < 0)
                        return drv_err_prefix(err, "--%s", names[c - 1000]);
        }
        if (drv_log_parse_level(cfg->log_level, &(enum drv_log_level){0}) < 0)
                return drv_err(err, EINVAL, "log_level: expected debug|info|warn|error, got '%s'",
                               cfg->log_level);
        return 0;
}

static void put_scalar(struct strbuf *sb, const char *s)
{
        strbuf_putc(sb, '"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        strbuf_putc(sb, '\\');
                strbuf_putc(sb, *s);
        }
        strbuf_putc(sb, '"');
}

/* A docker_hosts item with its own TLS files as a mapping, else the URL alone. */
static void format_docker_host(struct strbuf *sb, const struct agent_config *cfg, size_t i)
{
        const char *url, *f[3];
        agent_config_docker_host(cfg, i, &url, &f[0], &f[1], &f[2]);
        if (f[0] == cfg->docker_tls_ca && f[1] == cfg->docker_tls_cert &&
            f[2] == cfg->docker_tls_key) {
                put_scalar(sb, url);
                return;
        }
        static const char *const names[3] = {"ca", "cert", "key"};
        strbuf_puts(sb, "url: ");
        put_scalar(sb, url);
        for (size_t k = 0; k < 3; k++) {
                strbuf_printf(sb, "\n    %s: ", names[k]);
                put_scalar(sb, f[k]);
        }
}

char *agent_config_format(const struct agent_config *cfg)
{
        struct strbuf sb = STRBUF_INIT;
        const char *section = NULL;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(keys); i++) {
                const struct key *k = &keys[i];
                const void *p = (const char *)cfg + k->off;
                /* tuning keys (hidden, with a value) are always printed; a hidden string (a
                 * test hook) only when set */
                if (k->hidden && k->type == K_STR && !*(char *const *)p)
                        continue;
                const char *dot = strchr(k->name, '.');
                const char *leaf = k->name;
                if (dot) {
                        size_t sl = (size_t)(dot - k->name);
                        if (!section || strncmp(section, k->name, sl) != 0 || section[sl] != '.')
                                strbuf_printf(&sb, "%.*s:\n", (int)sl, k->name);
                        section = k->name;
                        leaf = dot + 1;
                        strbuf_puts(&sb, "  ");
                } else {
                        section = NULL;
                }
                strbuf_printf(&sb, "%s:", leaf);
                switch (k->type) {
                case K_STR: {
                        const char *s = *(char *const *)p;
                        strbuf_putc(&sb, ' ');
                        if (k->secret && s && s[0])
                                put_scalar(&sb, "<redacted>");
                        else
                                put_scalar(&sb, s ? s : "");
                        break;
                }
                case K_STRV: {
                        char *const *v = *(char **const *)p;
                        if (!v || !v[0])
                                strbuf_puts(&sb, " []");
                        bool docker = p == (const void *)&cfg->docker_hosts;
                        for (size_t n = 0; v && v[n]; n++) {
                                strbuf_puts(&sb, dot ? "\n    - " : "\n  - ");
                                if (docker)
                                        format_docker_host(&sb, cfg, n);
                                else
                                        put_scalar(&sb, v[n]);
                        }
                        break;
                }
                case K_UINT:
                        strbuf_printf(&sb, " %llu", (unsigned long long)*(const uint64_t *)p);
                        break;
                case K_BOOL:
                        strbuf_puts(&sb, *(const bool *)p ? " true" : " false");
                        break;
                case K_DURATION:
                        strbuf_printf(&sb, " %llus", (unsigned long long)*(const uint64_t *)p);
                        break;
                case K_SIZE:
                        strbuf_printf(&sb, " %llu", (unsigned long long)*(const uint64_t *)p);
                        break;
                }
                strbuf_putc(&sb, '\n');
        }
        return strbuf_detach(&sb);
}

char *agent_config_join_token(const struct agent_config *cfg, struct drv_error *err)
{
        if (cfg->join_token && cfg->join_token[0])
                return strdup(cfg->join_token);
        char *t = NULL;
        if (drv_read_file(cfg->join_token_file, &t, NULL, 64 << 10, err) < 0)
                return NULL;
        size_t n = strlen(t);
        while (n && isspace((unsigned char)t[n - 1]))
                t[--n] = 0;
        if (!n) {
                free(t);
                drv_err(err, EINVAL, "%s is empty", cfg->join_token_file);
                return NULL;
        }
        return t;
}
