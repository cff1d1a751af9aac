/* test_ssh.c: the SSH rerun server's pure parts — port ranges, the wait policy after the steps,
 * signal names — and the spec's ssh fields. */
#include "executor/jobspec.h"
#include "executor/ssh/ssh.h"
#include "testlib.h"

#include <signal.h>
#include <sys/stat.h>

#define S 1000000000ULL

TEST(port_ranges_parse_and_reject_bad_ones)
{
        uint16_t lo = 0, hi = 0;
        CHECK(sshd_parse_ports("64535-65535", &lo, &hi) == 0 && lo == 64535 && hi == 65535);
        CHECK(sshd_parse_ports("2222", &lo, &hi) == 0 && lo == 2222 && hi == 2222);
        CHECK(sshd_parse_ports("", &lo, &hi) == -EINVAL);
        CHECK(sshd_parse_ports("0-10", &lo, &hi) == -EINVAL);
        CHECK(sshd_parse_ports("10-5", &lo, &hi) == -EINVAL);
        CHECK(sshd_parse_ports("1-65536", &lo, &hi) == -EINVAL);
        CHECK(sshd_parse_ports("1-2x", &lo, &hi) == -EINVAL);
        CHECK(sshd_parse_ports("a-2", &lo, &hi) == -EINVAL);
}

TEST(job_waits_while_sessions_are_open_and_ends_when_idle)
{
        uint64_t end = 100 * S;
        /* no session ever: idle counts from the end of the steps */
        CHECK(sshd_wait_state(0, end + 5 * S, 0, end, 10, 7200) == SSHD_WAIT_KEEP);
        CHECK(sshd_wait_state(0, end + 10 * S, 0, end, 10, 7200) == SSHD_WAIT_IDLE);
        /* a session open: never idle */
        CHECK(sshd_wait_state(1, end + 1000 * S, end, end, 10, 7200) == SSHD_WAIT_KEEP);
        /* the last session closed at +50s: idle from then */
        CHECK(sshd_wait_state(0, end + 55 * S, end + 50 * S, end, 10, 7200) == SSHD_WAIT_KEEP);
        CHECK(sshd_wait_state(0, end + 61 * S, end + 50 * S, end, 10, 7200) == SSHD_WAIT_IDLE);
}

TEST(hard_cap_ends_the_job_even_with_sessions_open)
{
        uint64_t end = 100 * S;
        CHECK(sshd_wait_state(2, end + 7199 * S, end, end, 600, 7200) == SSHD_WAIT_KEEP);
        CHECK(sshd_wait_state(2, end + 7200 * S, end, end, 600, 7200) == SSHD_WAIT_HARD_CAP);
}

TEST(signal_names_map_both_ways)
{
        CHECK(sshd_signal_from_name("TERM") == SIGTERM);
        CHECK(sshd_signal_from_name("INT") == SIGINT);
        CHECK(sshd_signal_from_name("SIGTERM") == 0);
        CHECK(sshd_signal_from_name("NOPE") == 0);
        CHECK(sshd_signal_from_name(NULL) == 0);
        CHECK_STREQ(sshd_signal_name(SIGKILL), "KILL");
        CHECK(sshd_signal_name(SIGCHLD) == NULL);
}

static int parse(const char *ssh, struct jobspec **out, struct drv_error *err)
{
        char text[2048];
        snprintf(
            text, sizeof(text),
            "{\"version\": 1, \"id\": {\"job\": \"j\", \"name\": \"n\", \"build_num\": 1}, \"executor\": "
            "{\"runtime\": \"sandbox\", \"kind\": \"machine\"}, \"steps\": [{\"type\": "
            "\"run\", \"command\": \"true\"}], \"ssh\": %s}",
            ssh);
        return jobspec_parse(text, strlen(text), out, err);
}

TEST(spec_ssh_fields_parse_with_defaults_and_port_range)
{
        struct drv_error err = {0};
        struct jobspec *s = NULL;
        CHECK(parse("{\"enabled\": true, \"authorized_keys\": [\"ssh-ed25519 AAAA x\"]}", &s,
                    &err) == 0);
        CHECK(s && s->ssh.enabled && s->ssh.idle_timeout == 600 && s->ssh.max_duration == 7200);
        CHECK(s && s->ssh.port_min == 0 && s->ssh.port_max == 0);
        jobspec_free(s);
        s = NULL;
        CHECK(parse("{\"enabled\": true, \"authorized_keys\": [\"k\"], \"port_min\": 64600, "
                    "\"port_max\": 64610}",
                    &s, &err) == 0);
        CHECK(s && s->ssh.port_min == 64600 && s->ssh.port_max == 64610);
        jobspec_free(s);
        s = NULL;
        CHECK(parse("{\"enabled\": true, \"authorized_keys\": [\"k\"], \"port_min\": 64610, "
                    "\"port_max\": 64600}",
                    &s, &err) < 0);
        CHECK(strstr(err.message, "$.ssh.port_max") != NULL);
        CHECK(parse("{\"enabled\": true}", &s, &err) < 0);
        CHECK(strstr(err.message, "authorized_keys") != NULL);
}

TEST(run_ssh_keys_come_from_a_file_or_home)
{
        char dir[] = "/tmp/test-ssh-keys-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        char path[128], sshdir[128], pub[160];
        snprintf(path, sizeof(path), "%s/keys", dir);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
                fputs("# mine\n\nssh-ed25519 AAAA one\r\n  ssh-rsa BBBB two\n", f);
                fclose(f);
        }
        struct drv_error err = {0};
        char **keys = NULL;
        CHECK(sshd_load_keys(path, &keys, &err) == 0);
        CHECK(keys && drv_strv_len(keys) == 2);
        CHECK(keys && strcmp(keys[0], "ssh-ed25519 AAAA one") == 0);
        CHECK(keys && strcmp(keys[1], "ssh-rsa BBBB two") == 0);
        drv_strv_free(keys);
        keys = NULL;
        /* no file given: every ~/.ssh/\*.pub; none there is an error naming where it looked */
        const char *old = getenv("HOME");
        char *saved = old ? strdup(old) : NULL;
        setenv("HOME", dir, 1);
        CHECK(sshd_load_keys(NULL, &keys, &err) == -ENOENT);
        CHECK(strstr(err.message, ".ssh") != NULL);
        snprintf(sshdir, sizeof(sshdir), "%s/.ssh", dir);
        snprintf(pub, sizeof(pub), "%s/id_ed25519.pub", sshdir);
        CHECK(mkdir(sshdir, 0700) == 0);
        f = fopen(pub, "w");
        if (f) {
                fputs("ssh-ed25519 CCCC home\n", f);
                fclose(f);
        }
        CHECK(sshd_load_keys(NULL, &keys, &err) == 0);
        CHECK(keys && drv_strv_len(keys) == 1 && strcmp(keys[0], "ssh-ed25519 CCCC home") == 0);
        drv_strv_free(keys);
        if (saved)
                setenv("HOME", saved, 1);
        free(saved);
        CHECK(sshd_load_keys("/nonexistent/keys", &keys, &err) < 0);
        struct drv_error e2;
        CHECK(drv_rm_rf(dir, &e2) == 0);
}

int main(void)
{
        RUN(port_ranges_parse_and_reject_bad_ones);
        RUN(job_waits_while_sessions_are_open_and_ends_when_idle);
        RUN(hard_cap_ends_the_job_even_with_sessions_open);
        RUN(signal_names_map_both_ways);
        RUN(spec_ssh_fields_parse_with_defaults_and_port_range);
        RUN(run_ssh_keys_come_from_a_file_or_home);
        TEST_DONE();
}
