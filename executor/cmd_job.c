/* cmd_job.c: `drover job --spec FILE|- [--events-fd N]` — the per-job supervisor. */
#include "agent/commands.h"
#include "executor/jobrunner.h"
#include "executor/runtime.h"

#include <fcntl.h>
#include <getopt.h>

static void usage(FILE *f)
{
        fprintf(f,
                "usage: drover job --spec FILE|- [--events-fd N] [--spool-dir DIR] "
                "[--spool-max SIZE]\n"
                "Run one job spec (docs/jobspec.md). Job events are written as JSON lines to\n"
                "fd N. Output for the output processor is spooled in DIR/job-<job id> (default a\n"
                "new private $TMPDIR/drover-spool-<job id>-XXXXXX, not found again after a\n"
                "crash), at most SIZE bytes unacknowledged (default\n"
                "256M; then the steps pause). Exit status: 0 success, 1 job failed, 2 bad usage\n"
                "or spec, 3 infrastructure failure, 4 canceled (SIGTERM/SIGINT).\n");
}

int cmd_job(int argc, char **argv)
{
        static const struct option longopts[] = {{"spec", required_argument, 0, 's'},
                                                 {"events-fd", required_argument, 0, 'e'},
                                                 {"spool-dir", required_argument, 0, 'd'},
                                                 {"spool-max", required_argument, 0, 'm'},
                                                 {"help", no_argument, 0, 'h'},
                                                 {0, 0, 0, 0}};
        const char *spec_path = NULL, *spool_dir = NULL;
        uint64_t spool_max = 0;
        int events_fd = -1, c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                uint64_t v;
                switch (c) {
                case 's':
                        spec_path = optarg;
                        break;
                case 'e':
                        if (drv_parse_u64(optarg, &v) < 0 || v > 1 << 20) {
                                fprintf(stderr, "drover job: bad --events-fd '%s'\n", optarg);
                                return 2;
                        }
                        events_fd = (int)v;
                        break;
                case 'd':
                        spool_dir = optarg;
                        break;
                case 'm':
                        if (drv_parse_size(optarg, &spool_max) < 0 || spool_max == 0) {
                                fprintf(stderr, "drover job: bad --spool-max '%s' (want a size)\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!spec_path || optind != argc) {
                usage(stderr);
                return 2;
        }
        if (events_fd >= 0 && fcntl(events_fd, F_GETFD) < 0) {
                fprintf(stderr, "drover job: --events-fd %d is not an open file descriptor\n",
                        events_fd);
                return 2;
        }
        struct drv_error err = {0};
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = strcmp(spec_path, "-") == 0 ? drv_read_fd(STDIN_FILENO, &text, &len, 0, &err)
                                            : drv_read_file(spec_path, &text, &len, 0, &err);
        if (r < 0) {
                fprintf(stderr, "drover job: %s\n", err.message);
                return 2;
        }
        _cleanup_(jobspec_freep) struct jobspec *spec = NULL;
        if (jobspec_parse(text, len, &spec, &err) < 0) {
                fprintf(stderr, "drover job: %s: %s\n", spec_path, err.message);
                return 2;
        }
        /* what a crashed run left (cgroups, network rules, /run/drover dirs) goes first */
        struct drv_error sweep_err = {0};
        if (runtime_sweep_stale(&sweep_err) < 0)
                log_warn("sweep_failed", "error=\"%s\"", sweep_err.message);
        struct jobrunner_opts o = {.spec = spec,
                                   .events_fd = events_fd,
                                   .terminal_fd = STDOUT_FILENO,
                                   .spool_dir = spool_dir,
                                   .spool_max = spool_max};
        enum job_status status;
        r = jobrunner_run(&o, &status, &err);
        if (r < 0) {
                fprintf(stderr, "drover job: %s\n", err.message);
                return 3;
        }
        switch (status) {
        case JOB_SUCCESS:
                return 0;
        case JOB_FAILED:
        case JOB_TIMEDOUT:
                return 1;
        case JOB_CANCELED:
                return 4;
        case JOB_INFRA_FAIL:
                break;
        }
        return 3;
}
