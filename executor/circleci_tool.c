/* circleci_tool.c: the `circleci` / `circleci-agent` commands inside a job: tests glob, tests split
 * (by name, file size or timings), step halt and continue (dynamic config). */
#include "agent/commands.h"
#include "executor/continuation.h"
#include "executor/injob.h"
#include "cache/jobhelper.h"
#include "executor/testsplit.h"
#include "lib/drv.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define HALT_MARKER  INJOB_HALT_MARKER
#define TIMINGS_FILE INJOB_TIMINGS_FILE

static void usage(FILE *f)
{
        fprintf(f, "usage: circleci tests glob PATTERN...\n"
                   "       circleci tests split [--split-by=name|filesize|timings]\n"
                   "                            [--timings-type=filename|classname|testname]\n"
                   "                            [--index N] [--total N] [FILE]\n"
                   "       circleci tests run --command=CMD [split options] [--verbose]\n"
                   "                            (this node's tests go to CMD's stdin)\n"
                   "       circleci-agent step halt\n"
                   "       circleci continue CONFIG_FILE [--parameters JSON|FILE]\n"
                   "                            (a setup workflow's job: continue the\n"
                   "                            pipeline with CONFIG_FILE)\n");
}

static int cmd_glob(int argc, char **argv)
{
        _cleanup_strv_ char **found = NULL;
        if (argc < 1) {
                usage(stderr);
                return 2;
        }
        for (int i = 0; i < argc; i++)
                if (testsplit_glob(argv[i], &found) < 0) {
                        fprintf(stderr, "circleci tests glob: out of memory\n");
                        return 1;
                }
        size_t n = drv_strv_len(found);
        if (n)
                qsort(found, n, sizeof(char *), testsplit_strcmp);
        for (size_t i = 0; i < n; i++)
                if (i == 0 || strcmp(found[i], found[i - 1]) != 0)
                        printf("%s\n", found[i]);
        return 0;
}

static int read_lines(FILE *f, char ***out)
{
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = '\0';
                /* names may also be separated by spaces on one line */
                char *save = NULL;
                for (char *t = strtok_r(line, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
                        if (drv_strv_push(out, t) < 0) {
                                free(line);
                                return -ENOMEM;
                        }
        }
        free(line);
        return 0;
}

static int env_uint(const char *name, unsigned def)
{
        const char *v = getenv(name);
        uint64_t u;
        if (v && drv_parse_u64(v, &u) == 0 && u < 100000)
                return (int)u;
        return (int)def;
}

/* `tests run`: CMD (run by /bin/sh -c) gets this node's tests on stdin; its exit status is ours. */
static int run_with_input(const char *command, char **mine, bool verbose)
{
        if (verbose) {
                fprintf(stderr, "Running: %s\nwith %zu tests:", command, drv_strv_len(mine));
                for (size_t i = 0; mine && mine[i]; i++)
                        fprintf(stderr, " %s", mine[i]);
                fprintf(stderr, "\n");
        }
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                perror("circleci tests run: pipe");
                return 1;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
                perror("circleci tests run: fork");
                return 1;
        }
        if (pid == 0) {
                if (dup2(pfd[0], STDIN_FILENO) < 0)
                        _exit(127);
                execl("/bin/sh", "sh", "-c", command, (char *)NULL);
                _exit(127);
        }
        close(pfd[0]);
        signal(SIGPIPE, SIG_IGN); /* a command that stops reading must not kill us */
        for (size_t i = 0; mine && mine[i]; i++) {
                if (drv_write_all(pfd[1], mine[i], strlen(mine[i])) < 0 ||
                    drv_write_all(pfd[1], "\n", 1) < 0)
                        break;
        }
        close(pfd[1]);
        int ws;
        while (waitpid(pid, &ws, 0) < 0)
                if (errno != EINTR)
                        return 1;
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static int cmd_split(int argc, char **argv, bool run)
{
        static const struct option longopts[] = {
            {"split-by", required_argument, 0, 's'}, {"timings-type", required_argument, 0, 't'},
            {"index", required_argument, 0, 'i'},    {"total", required_argument, 0, 'n'},
            {"show-counts", no_argument, 0, 'c'},    {"command", required_argument, 0, 'x'},
            {"verbose", no_argument, 0, 'v'},        {0, 0, 0, 0}};
        const char *command = NULL;
        bool verbose = false;
        enum testsplit_by by = TESTSPLIT_NAME;
        const char *timings_type = "filename";
        int index = env_uint("CIRCLE_NODE_INDEX", 0), total = env_uint("CIRCLE_NODE_TOTAL", 1), c;
        optind = 1;
        while ((c = getopt_long(argc + 1, argv - 1, "", longopts, NULL)) != -1) {
                uint64_t v;
                switch (c) {
                case 's':
                        if (testsplit_parse_by(optarg, &by) < 0) {
                                fprintf(stderr, "circleci tests split: unknown --split-by %s\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 't':
                        timings_type = optarg;
                        break;
                case 'i':
                case 'n':
                        if (drv_parse_u64(optarg, &v) < 0 || v > 100000) {
                                fprintf(stderr, "circleci tests split: bad number %s\n", optarg);
                                return 2;
                        }
                        if (c == 'i')
                                index = (int)v;
                        else
                                total = (int)v;
                        break;
                case 'c':
                        break;
                case 'x':
                        command = optarg;
                        break;
                case 'v':
                        verbose = true;
                        break;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (total < 1 || index >= total) {
                fprintf(stderr, "circleci tests split: index %d is not below total %d\n", index,
                        total);
                return 2;
        }
        if (run != (command != NULL)) {
                fprintf(stderr, run ? "circleci tests run: --command is required\n"
                                    : "circleci tests split: --command belongs to tests run\n");
                return 2;
        }
        _cleanup_strv_ char **items = NULL;
        FILE *in = stdin;
        if (optind < argc + 1) {
                in = fopen(argv[optind - 1], "re");
                if (!in) {
                        fprintf(stderr, "circleci tests split: cannot open %s: %s\n",
                                argv[optind - 1], strerror(errno));
                        return 1;
                }
        }
        int r = read_lines(in, &items);
        if (in != stdin)
                fclose(in);
        if (r < 0)
                return 1;
        json_t *timings = NULL;
        if (by == TESTSPLIT_TIMINGS) {
                const char *path = getenv("DROVER_TIMINGS_FILE");
                json_error_t je;
                timings = json_load_file(path ? path : TIMINGS_FILE, 0, &je);
                if (!timings)
                        fprintf(stderr, "No timing data found (%s); splitting by name.\n",
                                path ? path : TIMINGS_FILE);
        }
        _cleanup_strv_ char **mine = NULL;
        r = testsplit_split(items, by, timings, timings_type, (unsigned)index, (unsigned)total,
                            &mine);
        json_decref(timings);
        if (r < 0) {
                fprintf(stderr, "circleci tests split: %s\n", strerror(-r));
                return 1;
        }
        if (run)
                return run_with_input(command, mine, verbose);
        for (size_t i = 0; mine && mine[i]; i++)
                printf("%s\n", mine[i]);
        return 0;
}

static int cmd_halt(void)
{
        int fd = open(HALT_MARKER, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                fprintf(stderr, "circleci-agent step halt: cannot write %s: %s\n", HALT_MARKER,
                        strerror(errno));
                return 1;
        }
        close(fd);
        printf("The job will end successfully after this step.\n");
        return 0;
}

int cmd_circleci(int argc, char **argv)
{
        if (argc >= 2 && strcmp(argv[1], JH_SUBCOMMAND) == 0) /* drover's storage steps */
                return jobhelper_main(argc, argv);
        if (argc >= 3 && strcmp(argv[1], "tests") == 0 && strcmp(argv[2], "glob") == 0)
                return cmd_glob(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[1], "tests") == 0 && strcmp(argv[2], "split") == 0)
                return cmd_split(argc - 3, argv + 3, false);
        if (argc >= 3 && strcmp(argv[1], "tests") == 0 && strcmp(argv[2], "run") == 0)
                return cmd_split(argc - 3, argv + 3, true);
        if (argc >= 3 && strcmp(argv[1], "step") == 0 && strcmp(argv[2], "halt") == 0)
                return cmd_halt();
        if (argc >= 2 && strcmp(argv[1], "continue") == 0)
                return continuation_tool(argc - 1, argv + 1);
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
                usage(stdout);
                return 0;
        }
        usage(stderr);
        return 2;
}
