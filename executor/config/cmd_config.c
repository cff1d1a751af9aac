/* cmd_config.c: `drover config validate|process` — check or compile a .circleci/config.yml. */
#include "agent/commands.h"
#include "executor/config/config.h"
#include "executor/config/orb.h"

#include <getopt.h>

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: drover config validate [-c FILE]\n"
            "       drover config process [-c FILE] [--branch B] [--tag T] [--revision SHA]\n"
            "                             [--param NAME=VALUE]... [--trigger webhook|api|schedule]\n"
            "                             [--schedule-name NAME] [--project SLUG]\n"
            "                             [--base-revision SHA] [--default-branch B]\n"
            "                             [--orb-dir DIR]...\n"
            "--orb-dir DIR (also on validate, repeatable) is searched for registry orbs as\n"
            "DIR/NAMESPACE/NAME@VERSION.yml before $DROVER_ORB_PATH, .circleci/orbs and the\n"
            "orb cache (drover orb pull).\n"
            "validate prints every error as FILE:LINE:COL: message (exit 1 when any);\n"
            "process prints the compiled job specs as JSON (docs/config.md); warnings (keys\n"
            "accepted but unused, jobs this builder cannot run) go to stderr.\n"
            "--trigger schedule selects the workflows with `triggers:` (a scheduled pipeline).\n"
            "FILE defaults to .circleci/config.yml.\n");
}

/* The statuses of a requires entry, as CircleCI spells them. */
static json_t *status_json(unsigned bits)
{
        static const char *const names[] = {"success", "failed", "canceled", "unauthorized",
                                            "not_run"};
        json_t *a = json_array();
        for (unsigned b = 0; b < 5; b++)
                if (bits & (1u << b))
                        json_array_append_new(a, json_string(names[b]));
        return a;
}

static json_t *job_json(const struct config_job *j)
{
        json_t *req = json_array(), *st = json_object();
        for (size_t k = 0; j->requires && j->requires[k]; k++) {
                json_array_append_new(req, json_string(j->requires[k]));
                unsigned bits = config_job_requires_status(j, k);
                if (bits != CONFIG_REQ_SUCCESS)
                        json_object_set_new(st, j->requires[k], status_json(bits));
        }
        json_t *o =
            json_pack("{s:s, s:s, s:o, s:i, s:O}", "name", j->name, "job", j->job, "requires", req,
                      "parallelism", (int)j->parallelism, "spec", j->spec ? j->spec : json_null());
        if (json_object_size(st))
                json_object_set(o, "requires_status", st);
        json_decref(st);
        if (j->serial_group)
                json_object_set_new(o, "serial_group", json_string(j->serial_group));
        if (j->unrunnable)
                json_object_set_new(o, "unrunnable", json_string(j->unrunnable));
        return o;
}

static void print_warnings(const struct config *cfg)
{
        for (size_t i = 0; cfg->warnings && cfg->warnings[i]; i++)
                fprintf(stderr, "warning: %s\n", cfg->warnings[i]);
}

int cmd_config(int argc, char **argv)
{
        static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                                 {"branch", required_argument, 0, 'b'},
                                                 {"tag", required_argument, 0, 't'},
                                                 {"revision", required_argument, 0, 'r'},
                                                 {"param", required_argument, 0, 'p'},
                                                 {"trigger", required_argument, 0, 'T'},
                                                 {"schedule-name", required_argument, 0, 'S'},
                                                 {"project", required_argument, 0, 'P'},
                                                 {"base-revision", required_argument, 0, 'B'},
                                                 {"default-branch", required_argument, 0, 'D'},
                                                 {"orb-dir", required_argument, 0, 'O'},
                                                 {"help", no_argument, 0, 'h'},
                                                 {0, 0, 0, 0}};
        const char *path = ".circleci/config.yml";
        struct config_opts o = {.build_num = 1};
        json_t *params = json_object();
        _cleanup_strv_ char **cli_orb_dirs = NULL;
        int c;
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(argc < 2 ? stderr : stdout);
                json_decref(params);
                return argc < 2 ? 2 : 0;
        }
        const char *verb = argv[1];
        optind = 1;
        while ((c = getopt_long(argc - 1, argv + 1, "c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 'b':
                        o.branch = optarg;
                        break;
                case 't':
                        o.tag = optarg;
                        break;
                case 'r':
                        o.revision = optarg;
                        break;
                case 'p': {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                fprintf(stderr, "drover config: --param NAME=VALUE\n");
                                json_decref(params);
                                return 2;
                        }
                        *eq = '\0';
                        json_object_set_new(params, optarg, json_string(eq + 1));
                        break;
                }
                case 'T':
                        if (config_trigger_parse(optarg, &o.trigger) < 0) {
                                fprintf(stderr,
                                        "drover config: --trigger webhook, api or schedule\n");
                                json_decref(params);
                                return 2;
                        }
                        break;
                case 'S':
                        o.schedule_name = optarg;
                        break;
                case 'P':
                        o.project = optarg;
                        break;
                case 'B':
                        o.base_revision = optarg;
                        break;
                case 'D':
                        o.default_branch = optarg;
                        break;
                case 'O':
                        if (drv_strv_push(&cli_orb_dirs, optarg) < 0) {
                                json_decref(params);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        json_decref(params);
                        return 0;
                default:
                        usage(stderr);
                        json_decref(params);
                        return 2;
                }
        }
        o.pipeline_parameters = params;
        _cleanup_strv_ char **orb_dirs = orb_search_dirs(cli_orb_dirs, path);
        o.orb_dirs = (const char *const *)orb_dirs;
        if (o.schedule_name && o.trigger == CONFIG_TRIGGER_WEBHOOK)
                o.trigger = CONFIG_TRIGGER_SCHEDULE; /* a named schedule is a scheduled pipeline */
        struct drv_error err = {0};
        int rc;
        _cleanup_(config_freep) struct config *valid = NULL;
        if (strcmp(verb, "validate") == 0 && config_load(path, &o, &valid, &err) == 0) {
                print_warnings(valid); /* one compile when the config is valid */
                printf("%s: config is valid\n", path);
                rc = 0;
        } else if (strcmp(verb, "validate") == 0) {
                _cleanup_strv_ char **errors = NULL;
                int n = config_validate(path, &o, &errors, &err);
                if (n < 0 && !errors) {
                        fprintf(stderr, "drover config: %s\n", err.message);
                        rc = 2;
                } else if (n > 0 || drv_strv_len(errors) > 0) {
                        for (size_t i = 0; errors[i]; i++)
                                fprintf(stderr, "%s\n", errors[i]);
                        fprintf(stderr, "%zu error%s\n", drv_strv_len(errors),
                                drv_strv_len(errors) == 1 ? "" : "s");
                        rc = 1;
                } else {
                        printf("%s: config is valid\n", path);
                        rc = 0;
                }
        } else if (strcmp(verb, "process") == 0) {
                _cleanup_(config_freep) struct config *cfg = NULL;
                if (config_load(path, &o, &cfg, &err) < 0) {
                        /* print every error, as validate does */
                        _cleanup_strv_ char **errors = NULL;
                        struct drv_error verr = {0};
                        if (config_validate(path, &o, &errors, &verr) > 0)
                                for (size_t i = 0; errors[i]; i++)
                                        fprintf(stderr, "%s\n", errors[i]);
                        else
                                fprintf(stderr, "%s\n", err.message);
                        rc = err.code == EINVAL ? 1 : 2; /* 2: the file could not be read */
                } else {
                        print_warnings(cfg);
                        json_t *doc =
                            json_pack("{s:i, s:[], s:[]}", "version", 1, "workflows", "jobs");
                        json_t *wfs = json_object_get(doc, "workflows");
                        if (cfg->setup) /* dynamic config: its jobs get a continuation key */
                                json_object_set_new(doc, "setup", json_true());
                        for (size_t i = 0; i < cfg->n_workflows; i++) {
                                json_t *jobs = json_array();
                                for (size_t k = 0; k < cfg->workflows[i].n_jobs; k++)
                                        json_array_append_new(jobs,
                                                              job_json(&cfg->workflows[i].jobs[k]));
                                json_array_append_new(wfs, json_pack("{s:s, s:o}", "name",
                                                                     cfg->workflows[i].name, "jobs",
                                                                     jobs));
                        }
                        for (size_t k = 0; k < cfg->n_jobs; k++)
                                json_array_append_new(json_object_get(doc, "jobs"),
                                                      job_json(&cfg->jobs[k]));
                        /* one write: json_dumpf writes token by token */
                        _cleanup_free_ char *text =
                            json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
                        if (text)
                                fputs(text, stdout);
                        printf("\n");
                        json_decref(doc);
                        rc = 0;
                }
        } else {
                fprintf(stderr, "drover config: unknown verb '%s'\n", verb);
                usage(stderr);
                rc = 2;
        }
        json_decref(params);
        return rc;
}
