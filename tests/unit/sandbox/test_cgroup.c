/* test_cgroup.c: the v2 backend against a fake cgroupfs tree; mode detection. */
#include "sandbox/cgroup.h"
#include "testlib.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char root[256];

static void put(const char *rel, const char *content)
{
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
                (void)!write(fd, content, strlen(content));
                close(fd);
        }
}

static char *get(const char *rel)
{
        static char buf[4096];
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        buf[0] = 0;
        if (fd >= 0) {
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                buf[n > 0 ? n : 0] = 0;
                close(fd);
        }
        return buf;
}

static void make_tree(bool with_kill)
{
        snprintf(root, sizeof(root), "/tmp/drover-cgtest-XXXXXX");
        if (!mkdtemp(root))
                abort();
        char p[512];
        snprintf(p, sizeof(p), "%s/drover/job1", root);
        drv_mkdir_p(p, 0755, NULL);
        put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
        put("cgroup.subtree_control", "");
        put("drover/cgroup.controllers", "cpu memory pids\n");
        put("drover/cgroup.subtree_control", "");
        static const char *const knobs[] = {"memory.max", "memory.swap.max", "cpu.max",
                                            "pids.max",   "cgroup.procs",    "cgroup.freeze"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(knobs); i++) {
                snprintf(p, sizeof(p), "drover/job1/%s", knobs[i]);
                put(p, "");
        }
        if (with_kill)
                put("drover/job1/cgroup.kill", "");
        put("drover/job1/memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n");
        put("drover/job1/memory.peak", "123456789\n");
        put("drover/job1/cpu.stat", "usage_usec 4242\nuser_usec 4000\nsystem_usec 242\n");
}

TEST(v2_create_writes_exact_limits)
{
        make_tree(true);
        struct cg_place pl = {CG_MODE_V2, root, "drover"};
        struct cg_limits lim = {.memory_bytes = 64 << 20, .cpus = 1.5, .pids_max = 100};
        struct cgroup *cg = NULL;
        struct drv_error err = {0};
        CHECK_INTEQ(cg_create(&pl, "job1", &lim, &cg, &err), 0);
        CHECK_STREQ(get("cgroup.subtree_control"), "+memory +cpu +pids");
        CHECK_STREQ(get("drover/cgroup.subtree_control"), "+memory +cpu +pids");
        CHECK_STREQ(get("drover/job1/memory.max"), "67108864");
        CHECK_STREQ(get("drover/job1/memory.swap.max"), "0");
        CHECK_STREQ(get("drover/job1/cpu.max"), "150000 100000");
        CHECK_STREQ(get("drover/job1/pids.max"), "100");
        CHECK_INTEQ(cg_memory_limit(cg), 64 << 20);
        CHECK_INTEQ(cg_add_pid(cg, 4321, &err), 0);
        CHECK_STREQ(get("drover/job1/cgroup.procs"), "4321");
        struct cg_usage u;
        CHECK_INTEQ(cg_read_usage(cg, &u), 0);
        CHECK_INTEQ(u.memory_peak, 123456789);
        CHECK_INTEQ(u.oom_kills, 2);
        CHECK_INTEQ(u.cpu_usec, 4242);
        put("drover/job1/cgroup.procs", "");
        CHECK_INTEQ(cg_kill_all(cg, true, &err), 0);
        CHECK_STREQ(get("drover/job1/cgroup.kill"), ""); /* empty group: nothing to kill */
        put("drover/job1/cgroup.procs", "4321\n");
        CHECK_INTEQ(cg_kill_all(cg, false, &err), 0);
        CHECK_STREQ(get("drover/job1/cgroup.kill"), "1");
        CHECK_STREQ(get("drover/job1/cgroup.freeze"), ""); /* not needed with cgroup.kill */
        cg_destroy(cg, NULL); /* rmdir fails on a fake tree: files are real here */
        drv_rm_rf(root, NULL);
}

/* A job's parent group (sandbox_group: primary + services) and a member group below it: the
 * parent's limits are written, the controllers are enabled in it for the member. */
TEST(v2_member_group_below_the_jobs_group)
{
        make_tree(true);
        char p[512];
        snprintf(p, sizeof(p), "%s/drover/job1/svc1", root);
        drv_mkdir_p(p, 0755, NULL);
        put("drover/job1/svc1/memory.max", "");
        put("drover/job1/svc1/pids.max", "");
        put("drover/job1/cgroup.controllers", "cpu memory pids\n");
        put("drover/job1/cgroup.subtree_control", "");
        struct cg_place pl = {CG_MODE_V2, root, "drover"};
        struct cg_limits total = {.memory_bytes = 100 << 20, .pids_max = 4096, .parent = true};
        struct cg_limits own = {.memory_bytes = 64 << 20, .pids_max = 50};
        struct cgroup *job = NULL, *svc = NULL;
        struct drv_error err = {0};
        CHECK_INTEQ(cg_create(&pl, "job1", &total, &job, &err), 0);
        CHECK_INTEQ(cg_create(&pl, "job1/svc1", &own, &svc, &err), 0);
        CHECK_STREQ(get("drover/job1/memory.max"), "104857600");
        CHECK_STREQ(get("drover/job1/pids.max"), "4096");
        CHECK_STREQ(get("drover/job1/cgroup.subtree_control"), "+memory +cpu +pids");
        CHECK_STREQ(get("drover/job1/svc1/memory.max"), "67108864");
        CHECK_STREQ(get("drover/job1/svc1/pids.max"), "50");
        CHECK(svc && strstr(cg_path(svc), "/drover/job1/svc1") != NULL);
        cg_destroy(svc, NULL);
        cg_destroy(job, NULL);
        drv_rm_rf(root, NULL);
}

TEST(v2_unlimited_writes_nothing_but_pids_default)
{
        make_tree(true);
        struct cg_place pl = {CG_MODE_V2, root, "drover"};
        struct cg_limits lim = {0};
        struct cgroup *cg = NULL;
        CHECK_INTEQ(cg_create(&pl, "job1", &lim, &cg, NULL), 0);
        CHECK_STREQ(get("drover/job1/memory.max"), "");
        CHECK_STREQ(get("drover/job1/cpu.max"), "");
        CHECK_INTEQ(cg_memory_limit(cg), 0);
        cg_destroy(cg, NULL);
        drv_rm_rf(root, NULL);
}

TEST(v2_without_cgroup_kill_freezes_kills_each_and_thaws)
{
        make_tree(false);
        struct cg_place pl = {CG_MODE_V2, root, "drover"};
        struct cg_limits lim = {0};
        struct cgroup *cg = NULL;
        CHECK_INTEQ(cg_create(&pl, "job1", &lim, &cg, NULL), 0);
        pid_t child = fork();
        if (child == 0) {
                pause();
                _exit(0);
        }
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)child);
        put("drover/job1/cgroup.procs", buf);
        CHECK_INTEQ(cg_kill_all(cg, false, NULL), 0);
        int st = 0;
        CHECK_INTEQ(waitpid(child, &st, 0), child);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK_STREQ(get("drover/job1/cgroup.freeze"), "0"); /* thawed after "1" */
        cg_destroy(cg, NULL);
        drv_rm_rf(root, NULL);
}

TEST(v2_missing_controller_is_a_clear_error)
{
        make_tree(true);
        struct cg_place pl = {CG_MODE_V2, root, "drover"};
        struct cg_limits lim = {.memory_bytes = 1 << 20};
        char p[512];
        snprintf(p, sizeof(p), "%s/drover/job1/memory.max", root);
        unlink(p);
        struct cgroup *cg = NULL;
        struct drv_error err = {0};
        CHECK(cg_create(&pl, "job1", &lim, &cg, &err) < 0);
        CHECK(strstr(err.message, "memory.max") != NULL);
        drv_rm_rf(root, NULL);
}

TEST(mode_from_magic)
{
        enum cg_mode m;
        CHECK_INTEQ(cg_mode_from_magic(0x63677270, 0, &m), 0);
        CHECK_INTEQ(m, CG_MODE_V2);
        CHECK_INTEQ(cg_mode_from_magic(0x01021994, 0x63677270, &m), 0);
        CHECK_INTEQ(m, CG_MODE_HYBRID);
        CHECK_INTEQ(cg_mode_from_magic(0x01021994, 0, &m), 0);
        CHECK_INTEQ(m, CG_MODE_V1);
        CHECK_INTEQ(cg_mode_from_magic(0xEF53, 0, &m), -ENOENT);
        CHECK_STREQ(cg_mode_name(CG_MODE_HYBRID), "hybrid");
}

TEST(detect_on_this_host)
{
        enum cg_mode m;
        struct drv_error err = {0};
        CHECK_INTEQ(cg_detect("/sys/fs/cgroup", &m, &err), 0);
        /* whatever it is, a v2 verdict must match a cgroup2 mount */
        if (m == CG_MODE_V2)
                CHECK(access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0);
        else
                CHECK(access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0);
        CHECK(cg_detect("/proc", &m, &err) < 0);
}

int main(void)
{
        RUN(v2_create_writes_exact_limits);
        RUN(v2_member_group_below_the_jobs_group);
        RUN(v2_unlimited_writes_nothing_but_pids_default);
        RUN(v2_without_cgroup_kill_freezes_kills_each_and_thaws);
        RUN(v2_missing_controller_is_a_clear_error);
        RUN(mode_from_magic);
        RUN(detect_on_this_host);
        TEST_DONE();
}
