/* test_agent_config.c: the agent's config layering (file < env < flags), list/duration/bool
 * parsing, unknown keys, --print-config redaction, and reconnect backoff with jitter. */
#include "agent/agent.h"
#include "testlib.h"

#include <stdlib.h>

static char tmpl[] = "/tmp/drover-agent-cfg-XXXXXX";

static const char *write_cfg(const char *text)
{
        static char path[256];
        snprintf(path, sizeof(path), "%s/agent.yaml", tmpl);
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        return path;
}

TEST(defaults_are_sane)
{
        struct agent_config c;
        agent_config_defaults(&c);
        CHECK_STREQ(c.join_token_file, "/etc/drover/join-token");
        CHECK_INTEQ((int)c.drain_grace, 300);
        CHECK_STREQ(c.metrics_listen, "127.0.0.1:9464");
        CHECK(c.servers == NULL && c.max_jobs == 0 && !c.exit_after_job && !c.rcu_expedited);
        agent_config_free(&c);
}

TEST(file_env_flags_layer)
{
        const char *p = write_cfg("servers: [https://a:4647, https://b:4647]\n"
                                  "max_jobs: 3\nname: file\ntls:\n  ca: /ca.pem\n"
                                  "drain_grace: 1m30s\nresource_classes: small, medium\n"
                                  "sandbox:\n  rcu_expedited: true\n"
                                  "  egress_allow: [10.0.5.20:443, 10.0.6.0/24]\n");
        setenv("DROVER_NAME", "env", 1);
        setenv("DROVER_EXIT_AFTER_JOB", "true", 1);
        char *argv[] = {"agent", "--config",       (char *)p, "--max-jobs",
                        "7",     "--idle-timeout", "10m",     NULL};
        struct agent_config c;
        bool print;
        struct drv_error err = {0};
        CHECK_INTEQ(agent_config_load(7, argv, &c, &print, &err), 0);
        CHECK(!print);
        CHECK_INTEQ((int)drv_strv_len(c.servers), 2);
        CHECK_STREQ(c.servers[1], "https://b:4647");
        CHECK_INTEQ((int)c.max_jobs, 7); /* flag beats file */
        CHECK_STREQ(c.name, "env");      /* env beats file */
        CHECK(c.exit_after_job);
        CHECK(c.rcu_expedited);                            /* sandbox.rcu_expedited, opt-in */
        CHECK_INTEQ((int)drv_strv_len(c.egress_allow), 2); /* sandbox.egress_allow */
        CHECK_STREQ(c.egress_allow[1], "10.0.6.0/24");
        CHECK_STREQ(c.tls_ca, "/ca.pem"); /* nested key */
        CHECK_INTEQ((int)c.drain_grace, 90);
        CHECK_INTEQ((int)c.idle_timeout, 600);
        CHECK_INTEQ((int)drv_strv_len(c.resource_classes), 2); /* scalar list, comma split */
        CHECK_STREQ(c.resource_classes[1], "medium");
        agent_config_free(&c);
        unsetenv("DROVER_NAME");
        unsetenv("DROVER_EXIT_AFTER_JOB");
}

TEST(image_settings_for_docker_jobs)
{
        struct agent_config c;
        agent_config_defaults(&c);
        CHECK_STREQ(c.image_store, "/var/lib/drover/images");
        CHECK_STREQ(c.image_pull, "missing");
        CHECK(c.image_store_max == 0 && c.image_mirrors == NULL);
        struct drv_error err = {0};
        CHECK_INTEQ(agent_config_set(&c, "image_store_max", "20G", &err), 0);
        CHECK(c.image_store_max == 20ULL << 30);
        CHECK_INTEQ(agent_config_set(&c, "image_mirrors", "https://m1:443, https://m2", &err), 0);
        CHECK_INTEQ((int)drv_strv_len(c.image_mirrors), 2);
        CHECK_STREQ(c.image_mirrors[1], "https://m2");
        agent_config_free(&c);
}

TEST(docker_hosts_urls_and_mappings)
{
        const char *p = write_cfg("docker_hosts:\n  - tcp://a:2376\n"
                                  "  - url: tcp://b:2376\n    ca: /b/ca.pem\n    key: /b/key.pem\n"
                                  "docker_tls:\n  cert: /shared/cert.pem\n"
                                  "event_spool_max: 64M\n");
        char *argv[] = {"agent", "--config", (char *)p, NULL};
        struct agent_config c;
        bool print;
        struct drv_error err = {0};
        CHECK_INTEQ(agent_config_load(3, argv, &c, &print, &err), 0);
        CHECK_INTEQ((int)drv_strv_len(c.docker_hosts), 2);
        const char *url, *ca, *cert, *key;
        agent_config_docker_host(&c, 0, &url, &ca, &cert, &key);
        CHECK_STREQ(url, "tcp://a:2376");
        CHECK_STREQ(ca, "/etc/drover/docker/ca.pem"); /* default of docker_tls */
        CHECK_STREQ(cert, "/shared/cert.pem");
        agent_config_docker_host(&c, 1, &url, &ca, &cert, &key);
        CHECK_STREQ(url, "tcp://b:2376");
        CHECK_STREQ(ca, "/b/ca.pem");
        CHECK_STREQ(cert, "/shared/cert.pem"); /* not given for this host */
        CHECK_STREQ(key, "/b/key.pem");
        CHECK(c.event_spool_max == 64ull << 20);
        agent_config_free(&c);
        /* the environment replaces the list: URLs only, files from docker_tls */
        setenv("DROVER_DOCKER_HOSTS", "tcp://c:2376", 1);
        CHECK_INTEQ(agent_config_load(3, argv, &c, &print, &err), 0);
        CHECK_INTEQ((int)drv_strv_len(c.docker_hosts), 1);
        agent_config_docker_host(&c, 0, &url, &ca, &cert, &key);
        CHECK_STREQ(url, "tcp://c:2376");
        CHECK_STREQ(key, "/etc/drover/docker/key.pem");
        agent_config_free(&c);
        unsetenv("DROVER_DOCKER_HOSTS");
        p = write_cfg("docker_hosts:\n  - ca: /x\n");
        CHECK(agent_config_load(3, argv, &c, &print, &err) < 0);
        CHECK(strstr(err.message, "no url") != NULL);
        agent_config_free(&c);
}

TEST(errors_name_the_key)
{
        const char *p = write_cfg("max_jobs: many\n");
        char *argv[] = {"agent", "--config", (char *)p, NULL};
        struct agent_config c;
        bool print;
        struct drv_error err = {0};
        CHECK(agent_config_load(3, argv, &c, &print, &err) < 0);
        CHECK(strstr(err.message, "max_jobs") != NULL);
        agent_config_free(&c);
        p = write_cfg("tls:\n  bogus: 1\n");
        CHECK(agent_config_load(3, argv, &c, &print, &err) < 0);
        CHECK(strstr(err.message, "tls.bogus") != NULL);
        agent_config_free(&c);
        p = write_cfg("servers: [a\n");
        CHECK(agent_config_load(3, argv, &c, &print, &err) < 0);
        agent_config_free(&c);
        char *argv2[] = {"agent", "--config", (char *)p, "--exit-after-job=maybe", NULL};
        write_cfg("name: x\n");
        CHECK(agent_config_load(4, argv2, &c, &print, &err) < 0);
        CHECK(strstr(err.message, "exit-after-job") != NULL);
        agent_config_free(&c);
}

TEST(print_redacts_secrets)
{
        struct agent_config c;
        struct drv_error err = {0};
        agent_config_defaults(&c);
        CHECK_INTEQ(agent_config_set(&c, "join_token", "s3cret-token", &err), 0);
        CHECK_INTEQ(agent_config_set(&c, "servers", "https://x:4647", &err), 0);
        char *s = agent_config_format(&c);
        CHECK(strstr(s, "s3cret-token") == NULL);
        CHECK(strstr(s, "join_token: \"<redacted>\"") != NULL);
        CHECK(strstr(s, "servers:\n  - \"https://x:4647\"") != NULL);
        CHECK(strstr(s, "tls:\n  ca: ") != NULL);
        CHECK(strstr(s, "job_command") == NULL); /* hidden unless set */
        free(s);
        agent_config_free(&c);
}

TEST(backoff_grows_with_jitter_and_caps)
{
        struct agent a = {0};
        uint64_t prev_max = 0;
        for (unsigned s = 0; s < 12; s++) {
                a.fail_streak = s;
                uint64_t lo = UINT64_MAX, hi = 0;
                for (int i = 0; i < 200; i++) {
                        uint64_t b = agent_backoff_ns(&a);
                        lo = b < lo ? b : lo;
                        hi = b > hi ? b : hi;
                }
                CHECK(hi <= 45000000000ull); /* 30 s cap + 50 % jitter */
                CHECK(lo < hi);              /* jitter */
                CHECK(hi >= prev_max / 2);
                prev_max = hi;
        }
}

int main(void)
{
        if (!mkdtemp(tmpl))
                return 1;
        RUN(defaults_are_sane);
        RUN(file_env_flags_layer);
        RUN(image_settings_for_docker_jobs);
        RUN(docker_hosts_urls_and_mappings);
        RUN(errors_name_the_key);
        RUN(print_redacts_secrets);
        RUN(backoff_grows_with_jitter_and_caps);
        struct drv_error err = {0};
        drv_rm_rf(tmpl, &err);
        TEST_DONE();
}
