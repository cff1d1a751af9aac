/* test_docker_helper.c: drover-docker-helper's side of the docker runtime — the oom_kill parser
 * for both cgroup files, the `connect` frame decoder, and the helper binary itself run here
 * (connect and relay both ways with half-closes, a refused connect, the OOM counter file). */
#include "executor/docker/runtime_docker_int.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

TEST(oom_kill_is_read_from_cgroup_v2_memory_events)
{
        uint64_t n = 99;
        CHECK_INTEQ(rtdocker_parse_oom_kill(
                        "low 0\nhigh 0\nmax 31\noom 3\noom_kill 2\noom_group_kill 1\n", &n),
                    0);
        CHECK_INTEQ(n, 2);
}

TEST(oom_kill_is_read_from_cgroup_v1_oom_control)
{
        uint64_t n = 99;
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", &n),
                    0);
        CHECK_INTEQ(n, 7);
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 12", &n), 0);
        CHECK_INTEQ(n, 12);
}

TEST(oom_kill_lookalikes_and_old_kernels_are_no_counter)
{
        uint64_t n = 5;
        /* v1 before Linux 4.13 had no oom_kill line; oom_kill_disable and oom_group_kill are
         * other keys */
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_kill_disable 1\nunder_oom 0\n", &n), -ENOENT);
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_group_kill 4\n", &n), -ENOENT);
        CHECK_INTEQ(rtdocker_parse_oom_kill("", &n), -ENOENT);
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_kill x\n", &n), -EINVAL);
        CHECK_INTEQ(rtdocker_parse_oom_kill("oom_kill 99999999999999999999999999\n", &n), -EINVAL);
        CHECK_INTEQ(n, 5);
}

/* Whole frames as "<type><payload>|", however the payload was split. */
struct frames_seen {
        struct strbuf out, cur;
};

static int collect(void *ud, int type, const void *p, size_t n, bool end)
{
        struct frames_seen *fs = ud;
        if (strbuf_append(&fs->cur, p, n) < 0)
                return -ENOMEM;
        if (!end)
                return 0;
        int r = strbuf_printf(&fs->out, "%c%.*s|", type, (int)fs->cur.len,
                              fs->cur.buf ? fs->cur.buf : "");
        strbuf_reset(&fs->cur);
        return r;
}

static void frames_seen_release(struct frames_seen *fs)
{
        strbuf_release(&fs->out);
        strbuf_release(&fs->cur);
}

TEST(frames_decode_across_any_chunking)
{
        static const unsigned char s[] = {'C', 0,   0,   0, 2, '4', '2', 'D', 0, 0, 0, 3, 'a',
                                          'b', 'c', 'D', 0, 0, 0,   0,   'F', 0, 0, 0, 0};
        for (size_t chunk = 1; chunk <= sizeof(s); chunk++) {
                struct rtdocker_frames fr = {0};
                struct frames_seen fs = {STRBUF_INIT, STRBUF_INIT};
                for (size_t i = 0; i < sizeof(s); i += chunk) {
                        size_t k = i + chunk > sizeof(s) ? sizeof(s) - i : chunk;
                        CHECK_INTEQ(rtdocker_frames_feed(&fr, s + i, k, collect, &fs), 0);
                }
                CHECK_STREQ(fs.out.buf, "C42|Dabc|D|F|");
                frames_seen_release(&fs);
        }
}

TEST(frames_that_are_not_the_helpers_are_refused)
{
        struct rtdocker_frames fr = {0};
        struct frames_seen sb = {STRBUF_INIT, STRBUF_INIT};
        /* what an engine says when the exec cannot start is text, not frames */
        CHECK_INTEQ(rtdocker_frames_feed(&fr, "OCI runtime exec failed", 23, collect, &sb),
                    -EPROTO);
        struct rtdocker_frames big = {0};
        static const unsigned char h[] = {'D', 0, 1, 0, 1}; /* 65537 > DKH_MAX_PAYLOAD */
        CHECK_INTEQ(rtdocker_frames_feed(&big, h, sizeof(h), collect, &sb), -EPROTO);
        frames_seen_release(&sb);
}

/* ---- the helper binary, run on this machine ---- */

static const char *helper(void)
{
        const char *p = getenv("DROVER_DOCKER_HELPER");
        return p && *p ? p : NULL;
}

/* Start the helper with argv; *in / *out: its stdin (write end) and stdout (read end). */
static pid_t start_helper(char *const argv[], int *in, int *out)
{
        int a[2], b[2];
        if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid == 0) {
                dup2(a[0], 0);
                dup2(b[1], 1);
                execv(argv[0], argv);
                _exit(127);
        }
        close(a[0]);
        close(b[1]);
        *in = a[1];
        *out = b[0];
        return pid;
}

static int listener(uint16_t *port)
{
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 4) < 0 ||
            getsockname(s, (struct sockaddr *)&sa, &sl) < 0)
                return -1;
        *port = ntohs(sa.sin_port);
        return s;
}

/* Read the helper's stdout to EOF and decode it. */
static void read_frames(int fd, struct frames_seen *sb)
{
        struct rtdocker_frames fr = {0};
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                CHECK_INTEQ(rtdocker_frames_feed(&fr, buf, (size_t)n, collect, sb), 0);
}

TEST(helper_relays_both_ways_with_half_closes)
{
        if (!helper())
                return;
        uint16_t port = 0;
        int ls = listener(&port);
        CHECK(ls >= 0);
        char ps[8];
        snprintf(ps, sizeof(ps), "%u", port);
        char *argv[] = {(char *)helper(), (char *)"connect", (char *)"localhost", ps, NULL};
        int in = -1, out = -1;
        pid_t pid = start_helper(argv, &in, &out);
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        CHECK(c >= 0);
        /* client -> server, then the client's EOF reaches the server as EOF */
        CHECK_INTEQ(drv_write_all(in, "ping", 4), 0);
        close(in);
        char got[16] = {0};
        size_t len = 0;
        ssize_t n;
        while ((n = read(c, got + len, sizeof(got) - 1 - len)) > 0)
                len += (size_t)n;
        CHECK_STREQ(got, "ping");
        /* the server still answers after that, then ends its side */
        CHECK_INTEQ(drv_write_all(c, "pong", 4), 0);
        close(c);
        struct frames_seen sb = {STRBUF_INIT, STRBUF_INIT};
        read_frames(out, &sb);
        char want[64];
        snprintf(want, sizeof(want), "C%d|Dpong|F|", (int)pid);
        CHECK_STREQ(sb.out.buf, want);
        int st = -1;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        frames_seen_release(&sb);
        close(out);
        close(ls);
}

TEST(helper_reports_a_refused_connect)
{
        if (!helper())
                return;
        uint16_t port = 0;
        int ls = listener(&port);
        close(ls); /* nothing listens there now */
        char ps[8];
        snprintf(ps, sizeof(ps), "%u", port);
        char *argv[] = {(char *)helper(), (char *)"connect", (char *)"127.0.0.1", ps, NULL};
        int in = -1, out = -1;
        pid_t pid = start_helper(argv, &in, &out);
        struct frames_seen sb = {STRBUF_INIT, STRBUF_INIT};
        read_frames(out, &sb);
        char want[96];
        snprintf(want, sizeof(want), "E127.0.0.1:%u: connect: Connection refused|", port);
        CHECK_STREQ(sb.out.buf, want);
        int st = -1;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        frames_seen_release(&sb);
        close(in);
        close(out);
}

TEST(helper_prints_this_cgroups_oom_counter)
{
        if (!helper())
                return;
        char *argv[] = {(char *)helper(), (char *)"oom-kills", NULL};
        int in = -1, out = -1;
        pid_t pid = start_helper(argv, &in, &out);
        _cleanup_free_ char *text = NULL;
        CHECK_INTEQ(drv_read_fd(out, &text, NULL, 65536, NULL), 0);
        int st = -1;
        waitpid(pid, &st, 0);
        /* on this host as in a container: one of the two files, with its oom_kill line */
        uint64_t n = 0;
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        CHECK_INTEQ(rtdocker_parse_oom_kill(text ? text : "", &n), 0);
        close(in);
        close(out);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        if (!helper()) {
                printf("not ok 1 - DROVER_DOCKER_HELPER is not set\n1..1\n");
                return 1;
        }
        RUN(oom_kill_is_read_from_cgroup_v2_memory_events);
        RUN(oom_kill_is_read_from_cgroup_v1_oom_control);
        RUN(oom_kill_lookalikes_and_old_kernels_are_no_counter);
        RUN(frames_decode_across_any_chunking);
        RUN(frames_that_are_not_the_helpers_are_refused);
        RUN(helper_relays_both_ways_with_half_closes);
        RUN(helper_reports_a_refused_connect);
        RUN(helper_prints_this_cgroups_oom_counter);
        TEST_DONE();
}
