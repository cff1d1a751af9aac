/* runopts.c: the command line of `drover run` (runopts.h). */
#include "executor/runopts.h"
#include "executor/runsecrets.h"

#include <getopt.h>

void run_opts_release(struct run_opts *o)
{
        localrepo_release(&o->repo);
        localsrc_release(&o->src);
        drv_strv_free(o->ssh_keys);
        drv_strv_free(o->secrets);
        drv_strv_free(o->orb_dirs);
        json_decref(o->params);
        json_decref(o->stored_layers);
}

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: drover run [-c .circleci/config.yml] [JOB [--with-upstream] | --workflow NAME]\n"
            "                  [--param NAME=VALUE]... [--list] [-e K=V]...\n"
            "                  [-s K=V]... [--secret-env K]... [--secret-file FILE]...\n"
            "                  [--store DIR] [--branch B] [--tag T] [--revision SHA] [-j N]\n"
            "                  [--pull never|missing|always] [--image-store DIR]\n"
            "                  [--ssh[=PUBKEYFILE]] [--committed] [--egress-allow ADDR]...\n"
            "                  [--trigger webhook|api|schedule] [--schedule-name NAME]\n"
            "                  [--orb-dir DIR]... [--pull-orbs]\n"
            "Run a job (every parallelism index) or a whole workflow in requires order on\n"
            "this machine, in drover's sandbox. Caches, workspaces and artifacts go to a\n"
            "local directory (--store, default ~/.cache/drover/store). With -j N, up to N\n"
            "job nodes (parallel indexes, independent jobs) run at once, each output line\n"
            "prefixed with [job node]. Exit status 0 only when the job or workflow succeeded.\n"
            "The config is found in the current directory or above it in the repository.\n"
            "`checkout` gives the job a copy of the work tree as you see it (uncommitted\n"
            "changes and untracked files, never git-ignored ones) and a .git without your\n"
            "repository's config; --committed: exactly HEAD (see docs/checkout.md).\n"
            "Jobs reach the internet, not private networks nor this machine; --egress-allow\n"
            "ADDR[/BITS][:PORT] opens one (docs/sandbox.md \"Egress\").\n"
            "`docker:` jobs run on their images in the sandbox: pulled (--pull, default\n"
            "missing) into the layer store (--image-store, default $DROVER_IMAGE_STORE or\n"
            "/var/lib/drover/images).\n"
            "-e K=V sets a variable for every job; -s/--secret K=V sets one whose value is\n"
            "secret: masked as ******** (also base64, URL- and JSON-encoded) in the output,\n"
            "step names, reasons, events and the summary. --secret-env K takes the value of\n"
            "K from drover's own environment; --secret-file FILE reads K=V lines (# comments,\n"
            "blank lines, optional export, optional quotes). Values of fewer than 4\n"
            "characters and true/True/false/False are not masked (CircleCI's rule).\n"
            "--ssh: rerun with SSH — the job stays up after its steps for SSH sessions with\n"
            "your public keys (~/.ssh/*.pub, or PUBKEYFILE); see docs/ssh.md.\n"
            "--param NAME=VALUE sets a pipeline parameter (`when:` of workflows, << pipeline.\n"
            "parameters.NAME >>). --list prints the workflows (with the jobs each runs and\n"
            "what they require) and the jobs. A single JOB gets the workspace its upstream\n"
            "jobs stored in their last run here (with a notice); --with-upstream runs the\n"
            "jobs it requires first, as its workflow would.\n"
            "--trigger schedule [--schedule-name NAME]: a scheduled pipeline (workflows with\n"
            "`triggers:` run, pipeline.schedule.name is NAME). Jobs this builder cannot run\n"
            "(macOS, Windows, GPU, Arm on x86) are reported as not run, with their\n"
            "dependents; they do not fail the workflow (docs/config.md).\n"
            "Registry orbs come from --orb-dir DIRs, $DROVER_ORB_PATH, .circleci/orbs, then\n"
            "the orb cache; --pull-orbs pulls the missing ones into the cache first (drover\n"
            "orb pull; docs/config.md \"Orbs\").\n");
}

char *run_default_store(void)
{
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg && xdg[0] == '/')
                return drv_asprintf("%s/drover/store", xdg);
        return drv_asprintf("%s/.cache/drover/store", home && home[0] == '/' ? home : "/tmp");
}

int run_opts_parse(int argc, char **argv, struct run_opts *o)
{
        static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                                 {"workflow", required_argument, 0, 'w'},
                                                 {"env", required_argument, 0, 'e'},
                                                 {"secret", required_argument, 0, 's'},
                                                 {"secret-env", required_argument, 0, 'E'},
                                                 {"secret-file", required_argument, 0, 'F'},
                                                 {"store", required_argument, 0, 'O'},
                                                 {"branch", required_argument, 0, 'b'},
                                                 {"tag", required_argument, 0, 't'},
                                                 {"revision", required_argument, 0, 'r'},
                                                 {"pull", required_argument, 0, 'P'},
                                                 {"image-store", required_argument, 0, 'I'},
                                                 {"jobs", required_argument, 0, 'j'},
                                                 {"ssh", optional_argument, 0, 'S'},
                                                 {"committed", no_argument, 0, 'C'},
                                                 {"egress-allow", required_argument, 0, 'A'},
                                                 {"trigger", required_argument, 0, 'T'},
                                                 {"schedule-name", required_argument, 0, 'N'},
                                                 {"orb-dir", required_argument, 0, 'o'},
                                                 {"pull-orbs", no_argument, 0, 'B'},
                                                 {"param", required_argument, 0, 'p'},
                                                 {"list", no_argument, 0, 'L'},
                                                 {"with-upstream", no_argument, 0, 'U'},
                                                 {"help", no_argument, 0, 'h'},
                                                 {0, 0, 0, 0}};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "c:e:s:w:j:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case 'w':
                        o->workflow = optarg;
                        break;
                case 'e':
                        if (!strchr(optarg, '=') || optarg[0] == '=') {
                                fprintf(stderr, "drover run: -e takes KEY=VALUE, not '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        if (drv_strv_push(&o->env, optarg) < 0)
                                return -ENOMEM;
                        break;
                case 's':
                case 'E':
                case 'F': {
                        struct drv_error e;
                        int r = c == 's'   ? runsecrets_add_arg(&o->secrets, optarg, &e)
                                : c == 'E' ? runsecrets_add_env(&o->secrets, optarg, &e)
                                           : runsecrets_add_file(&o->secrets, optarg, &e);
                        if (r < 0) {
                                fprintf(stderr, "drover run: %s\n", e.message);
                                return r;
                        }
                        break;
                }
                case 'O':
                        o->store = optarg;
                        break;
                case 'b':
                        o->copts.branch = optarg;
                        break;
                case 't':
                        o->copts.tag = optarg;
                        break;
                case 'r':
                        o->copts.revision = optarg;
                        break;
                case 'j': {
                        uint64_t n;
                        if (drv_parse_u64(optarg, &n) < 0 || n < 1 || n > 256) {
                                fprintf(stderr, "drover run: -j takes a number 1-256, not '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->max_parallel = (unsigned)n;
                        break;
                }
                case 'P':
                        if (strcmp(optarg, "never") && strcmp(optarg, "missing") &&
                            strcmp(optarg, "always")) {
                                fprintf(stderr,
                                        "drover run: --pull takes never, missing or always, not "
                                        "'%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        /* the image runtime reads its settings from the environment, as under
                         * the agent (runtime_image.h) */
                        setenv("DROVER_IMAGE_PULL", optarg, 1);
                        break;
                case 'I':
                        setenv("DROVER_IMAGE_STORE", optarg, 1);
                        break;
                case 'S':
                        o->ssh = true;
                        o->ssh_key = optarg;
                        break;
                case 'C':
                        o->committed = true;
                        break;
                case 'A': { /* the sandbox reads it (docs/sandbox.md "Egress") */
                        const char *was = getenv("DROVER_SANDBOX_EGRESS_ALLOW");
                        _cleanup_free_ char *v =
                            was && *was ? drv_asprintf("%s,%s", was, optarg) : strdup(optarg);
                        if (!v || setenv("DROVER_SANDBOX_EGRESS_ALLOW", v, 1) < 0)
                                return -ENOMEM;
                        break;
                }
                case 'p': {
                        const char *eq = strchr(optarg, '=');
                        if (!eq || eq == optarg) {
                                fprintf(stderr, "drover run: --param takes NAME=VALUE, not '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        _cleanup_free_ char *name = strndup(optarg, (size_t)(eq - optarg));
                        if (!o->params)
                                o->params = json_object();
                        if (!name || !o->params ||
                            json_object_set_new(o->params, name, json_string(eq + 1)) < 0)
                                return -ENOMEM;
                        break;
                }
                case 'T':
                        if (config_trigger_parse(optarg, &o->copts.trigger) < 0) {
                                fprintf(stderr, "drover run: --trigger webhook, api or schedule\n");
                                return -EINVAL;
                        }
                        break;
                case 'N': /* a named schedule: a scheduled pipeline */
                        o->copts.schedule_name = optarg;
                        if (o->copts.trigger == CONFIG_TRIGGER_WEBHOOK)
                                o->copts.trigger = CONFIG_TRIGGER_SCHEDULE;
                        break;
                case 'o':
                        if (drv_strv_push(&o->orb_dirs, optarg) < 0)
                                return -ENOMEM;
                        break;
                case 'B':
                        o->pull_orbs = true;
                        break;
                case 'L':
                        o->list = true;
                        break;
                case 'U':
                        o->with_upstream = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc)
                o->job = argv[optind++];
        if (optind < argc || (o->job && o->workflow) || (o->with_upstream && !o->job)) {
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}
