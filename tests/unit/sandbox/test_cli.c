/* test_cli.c: option parsing of `drover sandbox`. */
#include "sandbox/cli.h"
#include "testlib.h"

static int parse(struct sb_cli *o, struct drv_error *err, ...)
{
        char *argv[64];
        int argc = 0;
        va_list ap;
        va_start(ap, err);
        argv[argc++] = "sandbox";
        for (char *s; (s = va_arg(ap, char *));)
                argv[argc++] = s;
        va_end(ap);
        argv[argc] = NULL;
        static char *keep[64];
        memcpy(keep, argv, sizeof(argv));
        return sb_cli_parse(argc, keep, o, err);
}

TEST(all_options_land_in_the_config)
{
        struct sb_cli o;
        struct drv_error err = {0};
        CHECK_INTEQ(parse(&o, &err, "--rootfs", "/img", "--net=private", "--memory", "512M",
                          "--cpus", "1.5", "--pids", "50", "--disk", "1G", "--user", "root",
                          "--bind", "/a:/b:ro", "--bind", "/c:/d", "--hostname", "h1", "--env",
                          "A=1", "--cwd", "/w", "--mask", "/secret", "--no-seccomp", "--name", "j1",
                          "--", "echo", "--not-an-option", NULL),
                    0);
        CHECK_STREQ(o.cfg.rootfs, "/img");
        CHECK_INTEQ(o.cfg.net, SANDBOX_NET_PRIVATE);
        CHECK_INTEQ(o.cfg.memory_bytes, 512ULL << 20);
        CHECK(o.cfg.cpus == 1.5);
        CHECK_INTEQ(o.cfg.pids_max, 50);
        CHECK_INTEQ(o.cfg.disk_bytes, 1ULL << 30);
        CHECK(o.as_root);
        CHECK_INTEQ(o.cfg.n_binds, 2);
        CHECK_STREQ(o.cfg.binds[0].host_path, "/a");
        CHECK_STREQ(o.cfg.binds[0].inside_path, "/b");
        CHECK(o.cfg.binds[0].readonly);
        CHECK(!o.cfg.binds[1].readonly);
        CHECK_STREQ(o.cfg.hostname, "h1");
        CHECK_STREQ(o.env[0], "A=1");
        CHECK_STREQ(o.cwd, "/w");
        CHECK_STREQ(o.cfg.masked_paths[0], "/secret");
        CHECK(o.cfg.no_seccomp);
        CHECK_STREQ(o.name, "j1");
        CHECK_STREQ(o.cmd[0], "echo");
        CHECK_STREQ(o.cmd[1], "--not-an-option");
        sb_cli_free(&o);
}

TEST(command_without_dashes_and_defaults)
{
        struct sb_cli o;
        CHECK_INTEQ(parse(&o, NULL, "true", NULL), 0);
        CHECK_STREQ(o.cmd[0], "true");
        CHECK_INTEQ(o.cfg.net, SANDBOX_NET_NONE);
        CHECK(!o.as_root);
        CHECK(!o.cfg.no_seccomp);
        sb_cli_free(&o);
}

TEST(bad_values_are_errors_with_the_option_named)
{
        struct sb_cli o;
        struct drv_error err = {0};
        CHECK(parse(&o, &err, "--net", "host", "--", "true", NULL) < 0);
        CHECK(strstr(err.message, "--net host") != NULL);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--memory", "lots", "--", "true", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--cpus", "-1", "--", "true", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--bind", "/a", "--", "true", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--bind", "/a:/b:xx", "--", "true", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--user", "admin", "--", "true", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--frobnicate", "1", "--", "true", NULL) < 0);
        CHECK(strstr(err.message, "--frobnicate") != NULL);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--memory", NULL) < 0);
        sb_cli_free(&o);
        CHECK(parse(&o, &err, "--", NULL) < 0);
        CHECK(strstr(err.message, "no command") != NULL);
        sb_cli_free(&o);
}

TEST(help)
{
        struct sb_cli o;
        CHECK_INTEQ(parse(&o, NULL, "--help", NULL), 0);
        CHECK(o.help);
        sb_cli_free(&o);
}

int main(void)
{
        RUN(all_options_land_in_the_config);
        RUN(command_without_dashes_and_defaults);
        RUN(bad_values_are_errors_with_the_option_named);
        RUN(help);
        TEST_DONE();
}
