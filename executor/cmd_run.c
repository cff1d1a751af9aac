/* cmd_run.c: `drover run` — the embedded default: compile .circleci/config.yml and run a job (every
 * parallel node) or a whole workflow in requires order on this machine, output on the terminal. */
#include "agent/commands.h"
#include "executor/config/config.h"
#include "executor/config/orb.h"
#include "executor/continuation.h"
#include "executor/jobrunner.h"
#include "executor/runtime.h"
#include "executor/localrepo.h"
#include "executor/localsrc.h"
#include "executor/runopts.h"
#include "executor/runselect.h"
#include "executor/runsummary.h"
#include "executor/ssh/ssh.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* --pull-orbs: a registry orb found nowhere is pulled into the cache (drover orb pull). */
static int pull_orb(void *arg, const char *ref, struct drv_error *err)
{
        (void)arg;
        struct orb_ref r;
        struct orb_registry reg = {.endpoint = getenv("DROVER_ORB_REGISTRY"),
                                   .token = getenv("CIRCLE_TOKEN")};
        _cleanup_free_ char *cache = orb_cache_dir();
        if (!cache)
                return drv_err(err, ENOMEM, "out of memory");
        int rc = orb_ref_parse(ref, &r, err);
        return rc < 0 ? rc : orb_pull(&reg, cache, &r, NULL, err);
}

/* Layers of all upstream jobs (transitively, in order, once each). */
static json_t *upstream_layers(struct job_outcome *out, size_t n, const struct config_job *j)
{
        json_t *layers = json_array();
        for (size_t k = 0; j->requires && j->requires[k]; k++)
                for (size_t i = 0; i < n; i++) {
                        if (!out[i].job || strcmp(out[i].job->name, j->requires[k]) != 0)
                                continue;
                        size_t x;
                        json_t *l;
                        json_array_foreach (out[i].layers, x, l) {
                                bool dup = false;
                                size_t y;
                                json_t *m;
                                json_array_foreach (layers, y, m)
                                        dup = dup || json_equal(m, l);
                                if (!dup)
                                        json_array_append(layers, l);
                        }
                }
        return layers;
}

/* The layers job i attaches: its upstreams' in this run, or (a single job) stored earlier. */
static json_t *job_layers(const struct run_opts *o, struct job_outcome *out, size_t i,
                          const struct config_job *j)
{
        json_t *layers = upstream_layers(out, i, j);
        if (o->stored_layers)
                json_array_extend(layers, o->stored_layers);
        return layers;
}

static int run_node(const struct run_opts *o, const struct config_job *j, unsigned node,
                    json_t *layers, const char *store_url, struct job_outcome *res)
{
        json_t *spec = json_deep_copy(j->spec);
        json_t *id = json_object_get(spec, "id");
        char jid[512];
        snprintf(jid, sizeof(jid), "%s-%u-%d", json_string_value(json_object_get(id, "job")), node,
                 (int)getpid());
        json_object_set_new(id, "job", json_string(jid));
        json_object_set_new(id, "node_index", json_integer(node));
        json_object_set_new(spec, "storage", json_pack("{s:s}", "url", store_url));
        json_object_set_new(spec, "output", json_pack("{s:s}", "url", "terminal"));
        if (json_array_size(layers))
                json_object_set_new(spec, "workspace", json_pack("{s:O}", "layers", layers));
        if (o->continuation_key && continuation_spec_add_key(spec, o->continuation_key) < 0) {
                json_decref(spec);
                fprintf(stderr, "drover run: job %s: cannot add its continuation key\n", j->name);
                return -ENOMEM;
        }
        if (o->ssh) {
                json_t *keys = json_array();
                for (char **k = o->ssh_keys; k && *k; k++)
                        json_array_append_new(keys, json_string(*k));
                json_object_set_new(spec, "ssh",
                                    json_pack("{s:b, s:o}", "enabled", 1, "authorized_keys", keys));
        }
        struct drv_error err = {0};
        _cleanup_(jobspec_freep) struct jobspec *js = NULL;
        int r = jobspec_from_json(spec, &js, &err);
        json_decref(spec);
        if (r < 0) { /* a job that cannot start failed: it is not a success */
                fprintf(stderr, "drover run: job %s: %s\n", j->name, err.message);
                res->ok = false;
                res->status = job_status_name(JOB_INFRA_FAIL);
                return 0;
        }
        if (j->parallelism > 1)
                printf("\n### %s (node %u of %u)\n", j->name, node + 1, j->parallelism);
        else
                printf("\n### %s\n", j->name);
        fflush(stdout);
        json_t *events = NULL;
        struct jobrunner_opts jo = {.spec = js,
                                    .events_fd = -1,
                                    .terminal_fd = STDOUT_FILENO,
                                    .events_out = &events,
                                    .source_dir = o->src.src};
        enum job_status status;
        r = jobrunner_run(&jo, &status, &err);
        if (r < 0) {
                fprintf(stderr, "drover run: job %s: %s\n", j->name, err.message);
                status = JOB_INFRA_FAIL;
        }
        size_t i;
        json_t *ev;
        json_array_foreach (events, i, ev) {
                const char *type = json_string_value(json_object_get(ev, "type"));
                if (type && strcmp(type, "workspace_layer") == 0)
                        json_array_append_new(res->layers,
                                              json_pack("{s:s, s:O}", "job", j->name, "key",
                                                        json_object_get(ev, "key")));
                if (type && strcmp(type, "finished") == 0)
                        res->duration_ms +=
                            (uint64_t)json_integer_value(json_object_get(ev, "duration_ms"));
                json_t *copy = json_copy(ev);
                if (copy) {
                        json_object_set_new(copy, "node", json_integer(node));
                        json_array_append_new(res->events, copy);
                }
        }
        json_decref(events);
        if (status != JOB_SUCCESS) {
                res->ok = false;
                res->status = job_status_name(status);
        }
        return status == JOB_CANCELED ? -ECANCELED : 0;
}

/* SIGINT/SIGTERM stay blocked for the whole run (each job reads them through its signalfd);
 * one that arrives between two jobs is still pending here. */
static bool cancel_pending(void)
{
        sigset_t set;
        return sigpending(&set) == 0 && (sigismember(&set, SIGINT) || sigismember(&set, SIGTERM));
}

static void block_cancel_signals(void)
{
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
}

/* Upstream jobs of job i (they come earlier: jobs are in requires order). done[u] counts the
 * finished nodes of job u (NULL: all upstreams are finished). Returns 1 when every upstream has
 * finished with a status its requires entry accepts (success unless it names others:
 * `- build: [success, failed]`, `- build: terminal`), 0 when one has not finished yet, -1 when
 * one ended otherwise. */
static int upstreams_state(const struct job_outcome *out, size_t i, const unsigned *done)
{
        const struct config_job *j = out[i].job;
        int state = 1;
        for (size_t k = 0; j->requires && j->requires[k]; k++)
                for (size_t u = 0; u < i; u++) {
                        if (strcmp(out[u].job->name, j->requires[k]) != 0)
                                continue;
                        bool finished = !done || done[u] >= out[u].job->parallelism;
                        if (!finished)
                                state = state < 0 ? state : 0;
                        else if (!(config_req_bit(out[u].ok ? "success" : out[u].status) &
                                   config_job_requires_status(j, k)))
                                state = -1;
                }
        return state;
}

/* A job this builder cannot run (macOS, Windows, GPU, ...): reported as not run. */
static bool not_runnable(struct job_outcome *o)
{
        if (!o->job->unrunnable)
                return false;
        printf("\n### %s: not run: %s\n", o->job->name, o->job->unrunnable);
        fflush(stdout);
        o->ok = false;
        o->status = "not_run";
        return true;
}

/* The workflow failed: a job failed or was canceled (a job not run because this builder
 * cannot run it, or because of such a job upstream, is not a failure). */
static bool outcome_fails(const struct job_outcome *o)
{
        return !o->ok && strcmp(o->status, "not_run") != 0 && strcmp(o->status, "blocked") != 0;
}

/* One job node running in a child process (-j > 1). */
struct node_run {
        pid_t pid;
        size_t job;
        unsigned node;
        int fd; /* read end of the child's stdout+stderr */
        char *result_path;
        struct strbuf partial; /* output after the last newline */
        char prefix[96];
};

#define PARTIAL_MAX (16u << 10)

/* One prefixed line: written with its length (a NUL byte in the job's output is kept). */
static void put_line(const struct node_run *nr, const struct strbuf *line)
{
        fputs(nr->prefix, stdout);
        if (line->len)
                fwrite(line->buf, 1, line->len, stdout);
        fputc('\n', stdout);
}

static void emit_lines(struct node_run *nr, const char *buf, size_t len, bool flush)
{
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
                if (buf[i] != '\n')
                        continue;
                strbuf_append(&nr->partial, buf + start, i - start);
                put_line(nr, &nr->partial);
                strbuf_reset(&nr->partial);
                start = i + 1;
        }
        strbuf_append(&nr->partial, buf + start, len - start);
        /* a huge line is shown in pieces rather than held back */
        if (nr->partial.len && (flush || nr->partial.len >= PARTIAL_MAX)) {
                put_line(nr, &nr->partial);
                strbuf_reset(&nr->partial);
        }
        fflush(stdout);
}

/* In the child: run the node with stdout/stderr on the pipe, leave the outcome in a file. */
static _Noreturn void node_child(const struct run_opts *o, const struct config_job *j,
                                 unsigned node, json_t *layers, const char *store_url, int wfd,
                                 const char *result_path)
{
        if (dup2(wfd, STDOUT_FILENO) < 0 || dup2(wfd, STDERR_FILENO) < 0)
                _exit(3);
        struct job_outcome res = {.job = j,
                                  .ok = true,
                                  .status = "success",
                                  .events = json_array(),
                                  .layers = json_array()};
        int r = run_node(o, j, node, layers, store_url, &res);
        json_t *doc = json_pack("{s:b, s:s, s:I, s:o, s:o}", "ok", res.ok, "status", res.status,
                                "duration_ms", (json_int_t)res.duration_ms, "layers", res.layers,
                                "events", res.events);
        int w = doc ? json_dump_file(doc, result_path, 0) : -1;
        fflush(stdout);
        _exit(w < 0 ? 3 : r == -ECANCELED ? 4 : 0);
}

static int node_start(const struct run_opts *o, struct job_outcome *out, size_t i, unsigned node,
                      json_t *layers, const char *store_url, const char *tmpdir,
                      struct node_run *nr)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        const struct config_job *j = out[i].job;
        *nr = (struct node_run){.job = i, .node = node, .fd = p[0], .partial = STRBUF_INIT};
        nr->result_path = drv_asprintf("%s/%zu-%u.json", tmpdir, i, node);
        if (j->parallelism > 1)
                snprintf(nr->prefix, sizeof(nr->prefix), "[%.64s %u/%u] ", j->name, node + 1,
                         j->parallelism);
        else
                snprintf(nr->prefix, sizeof(nr->prefix), "[%.64s] ", j->name);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = nr->result_path ? fork() : -1;
        if (pid == 0)
                node_child(o, j, node, layers, store_url, p[1], nr->result_path);
        int e = errno;
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                free(nr->result_path);
                return nr->result_path ? -e : -ENOMEM;
        }
        nr->pid = pid;
        return 0;
}

/* The child's output ended: reap it and fold its outcome into its job's. */
static void node_finish(struct job_outcome *out, struct node_run *nr)
{
        emit_lines(nr, "", 0, true);
        close(nr->fd);
        int ws = 0;
        while (waitpid(nr->pid, &ws, 0) < 0 && errno == EINTR)
                ;
        struct job_outcome *jo = &out[nr->job];
        json_error_t je;
        json_t *doc = json_load_file(nr->result_path, 0, &je);
        unlink(nr->result_path);
        if (!doc) {
                fprintf(stderr, "drover run: %snode ended without an outcome (%s)\n", nr->prefix,
                        WIFSIGNALED(ws) ? strsignal(WTERMSIG(ws)) : "no result");
                jo->ok = false;
                jo->status = job_status_name(JOB_INFRA_FAIL);
        } else {
                json_array_extend(jo->layers, json_object_get(doc, "layers"));
                json_array_extend(jo->events, json_object_get(doc, "events"));
                jo->duration_ms +=
                    (uint64_t)json_integer_value(json_object_get(doc, "duration_ms"));
                if (!json_is_true(json_object_get(doc, "ok"))) {
                        jo->ok = false;
                        /* statuses are static names: find ours among them */
                        const char *st = json_string_value(json_object_get(doc, "status"));
                        for (int k = 0; k <= JOB_INFRA_FAIL; k++)
                                if (st && strcmp(st, job_status_name((enum job_status)k)) == 0)
                                        jo->status = job_status_name((enum job_status)k);
                        if (strcmp(jo->status, "success") == 0)
                                jo->status = job_status_name(JOB_FAILED);
                }
                json_decref(doc);
        }
        free(nr->result_path);
        strbuf_release(&nr->partial);
}

/* Another job of job i's serial-group is running: jobs of one group run one after another. */
static bool serial_group_busy(const struct job_outcome *out, size_t n, size_t i,
                              const unsigned *started, const unsigned *done)
{
        const char *g = out[i].job->serial_group;
        for (size_t k = 0; g && k < n; k++)
                if (k != i && out[k].job->serial_group &&
                    strcmp(out[k].job->serial_group, g) == 0 && started[k] > 0 &&
                    done[k] < out[k].job->parallelism)
                        return true;
        return false;
}

/* -j N: schedule job nodes on up to N child processes as their upstreams finish. */
static void run_nodes_parallel(const struct run_opts *o, struct job_outcome *out, size_t n,
                               const char *store_url, bool *canceled)
{
        char tmpdir[] = "/tmp/drover-run-XXXXXX";
        _cleanup_free_ unsigned *started = calloc(n, sizeof(unsigned));
        _cleanup_free_ unsigned *done = calloc(n, sizeof(unsigned));
        _cleanup_free_ struct node_run *runs = calloc(o->max_parallel, sizeof(*runs));
        _cleanup_free_ json_t **layers = calloc(n, sizeof(json_t *));
        if (!started || !done || !runs || !layers || !mkdtemp(tmpdir)) {
                fprintf(stderr, "drover run: cannot start parallel runs: %s\n", strerror(errno));
                *canceled = true;
                return;
        }
        size_t nrun = 0;
        bool forwarded = false;
        for (;;) {
                if (cancel_pending())
                        *canceled = true;
                if (*canceled && !forwarded) { /* SIGINT from a terminal reached them already */
                        for (size_t r = 0; r < nrun; r++)
                                kill(runs[r].pid, SIGTERM);
                        forwarded = true;
                }
                for (size_t i = 0; i < n && !*canceled && nrun < o->max_parallel; i++) {
                        const struct config_job *j = out[i].job;
                        if (started[i] == 0 && done[i] == 0) {
                                int st = upstreams_state(out, i, done);
                                if (st == 0 || serial_group_busy(out, n, i, started, done))
                                        continue;
                                if (st < 0 || not_runnable(&out[i])) {
                                        out[i].ok = false;
                                        out[i].status = st < 0 ? "blocked" : "not_run";
                                        /* never started, on a later pass either */
                                        started[i] = done[i] = j->parallelism;
                                        continue;
                                }
                                layers[i] = job_layers(o, out, i, j);
                                out[i].layers = json_deep_copy(layers[i]);
                                out[i].ran = true;
                        }
                        while (started[i] < j->parallelism && nrun < o->max_parallel) {
                                int r = node_start(o, out, i, started[i], layers[i], store_url,
                                                   tmpdir, &runs[nrun]);
                                if (r < 0) {
                                        fprintf(stderr, "drover run: cannot start %s: %s\n",
                                                j->name, strerror(-r));
                                        out[i].ok = false;
                                        out[i].status = job_status_name(JOB_INFRA_FAIL);
                                        done[i] += j->parallelism - started[i];
                                        started[i] = j->parallelism;
                                        break;
                                }
                                started[i]++;
                                nrun++;
                        }
                }
                if (nrun == 0)
                        break; /* nothing runs and nothing more can start */
                struct pollfd pfd[256];
                for (size_t r = 0; r < nrun; r++)
                        pfd[r] = (struct pollfd){.fd = runs[r].fd, .events = POLLIN};
                if (poll(pfd, nrun, 200) < 0 && errno != EINTR)
                        break;
                for (size_t r = nrun; r-- > 0;) {
                        if (!pfd[r].revents)
                                continue;
                        char buf[65536];
                        ssize_t got = read(runs[r].fd, buf, sizeof(buf));
                        if (got > 0) {
                                emit_lines(&runs[r], buf, (size_t)got, false);
                                continue;
                        }
                        if (got < 0 && errno == EINTR)
                                continue;
                        done[runs[r].job]++;
                        node_finish(out, &runs[r]);
                        runs[r] = runs[--nrun];
                }
        }
        for (size_t i = 0; i < n; i++) {
                json_decref(layers[i]);
                if (done[i] < out[i].job->parallelism && out[i].ok) {
                        out[i].ok = false;
                        out[i].status = "canceled";
                }
        }
        rmdir(tmpdir);
}

/* The first `continuation` event of the run (dynamic config), with the job that sent it; the
 * key is one per pipeline, so a later job's continuation is refused (and said so). */
static json_t *find_continuation(const struct job_outcome *out, size_t n)
{
        json_t *found = NULL;
        for (size_t i = 0; i < n; i++) {
                size_t k;
                json_t *ev;
                json_array_foreach (out[i].events, k, ev) {
                        const char *type = json_string_value(json_object_get(ev, "type"));
                        if (!type || strcmp(type, "continuation") != 0)
                                continue;
                        if (found) {
                                printf("drover run: the continuation of %s is refused: the "
                                       "pipeline continued already (from %s; a continuation "
                                       "key is used once)\n",
                                       out[i].job->name,
                                       json_string_value(json_object_get(found, "job")));
                                continue;
                        }
                        found = json_pack("{s:s, s:O, s:O}", "job", out[i].job->name,
                                          "configuration", json_object_get(ev, "configuration"),
                                          "parameters", json_object_get(ev, "parameters"));
                }
        }
        return found;
}

static int run_jobs(const struct run_opts *o, const struct config_job *jobs, size_t n,
                    const char *store_url)
{
        struct job_outcome *out = calloc(n + 1, sizeof(*out));
        bool all_ok = true, canceled = false;
        if (!out)
                return 3;
        for (size_t i = 0; i < n; i++)
                out[i] = (struct job_outcome){
                    .job = &jobs[i], .ok = true, .status = "success", .events = json_array()};
        if (o->max_parallel > 1) {
                run_nodes_parallel(o, out, n, store_url, &canceled);
                for (size_t i = 0; i < n; i++)
                        all_ok = all_ok && !outcome_fails(&out[i]);
        }
        for (size_t i = 0; i < n && o->max_parallel <= 1; i++) {
                const struct config_job *j = &jobs[i];
                /* blocked when an upstream did not succeed */
                if (upstreams_state(out, i, NULL) < 0) {
                        out[i].ok = false;
                        out[i].status = "blocked";
                } else if (!canceled && not_runnable(&out[i])) {
                        /* listed with its reason, status not_run */
                }
                json_t *layers = job_layers(o, out, i, j);
                out[i].layers = json_deep_copy(layers);
                if (out[i].ok && !canceled) {
                        out[i].ran = true;
                        for (unsigned node = 0; node < j->parallelism; node++)
                                if (cancel_pending() || run_node(o, j, node, layers, store_url,
                                                                 &out[i]) == -ECANCELED) {
                                        canceled = true;
                                        out[i].ok = false;
                                        out[i].status = "canceled";
                                        break;
                                }
                } else if (canceled) {
                        out[i].ok = false;
                        out[i].status = "canceled";
                }
                json_decref(layers);
                all_ok = all_ok && !outcome_fails(&out[i]);
        }
        runsummary_print(out, n, store_url + strlen("file://"));
        if (o->continuation) /* a setup config's run (dynamic config) */
                *o->continuation = find_continuation(out, n);
        for (size_t i = 0; i < n; i++) {
                json_decref(out[i].layers);
                json_decref(out[i].events);
        }
        free(out);
        if (canceled)
                return 4;
        return all_ok ? 0 : 1;
}

/* Without -c: .circleci/config.yml here, or in a parent directory up to the top of the
 * repository around the current directory. NULL when there is none (caller frees). */
static char *find_config(void)
{
        struct localrepo repo;
        _cleanup_free_ char *cur = realpath(".", NULL);
        if (!cur || localrepo_find(cur, &repo) <= 0)
                return NULL;
        char *found = NULL;
        for (;;) {
                _cleanup_free_ char *path = drv_path_join(cur, ".circleci/config.yml");
                if (path && access(path, F_OK) == 0) {
                        found = TAKE_PTR(path);
                        break;
                }
                char *slash = strrchr(cur, '/');
                if (strcmp(cur, repo.toplevel) == 0 || !slash || slash == cur)
                        break;
                *slash = '\0';
        }
        localrepo_release(&repo);
        return found;
}

/* The project's directory: the repository's work tree, else the directory holding .circleci
 * (cfg_dir is the config's directory). Caller frees. */
static char *project_root(const char *cfg_dir, const char *toplevel)
{
        if (toplevel)
                return strdup(toplevel);
        const char *slash = strrchr(cfg_dir, '/');
        if (slash && slash != cfg_dir && strcmp(slash, "/.circleci") == 0)
                return strndup(cfg_dir, (size_t)(slash - cfg_dir));
        return strdup(cfg_dir);
}

/* Lowercase hex SHA-256 of path into hash. */
static int path_hash(const char *path, char *hash)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (!EVP_Digest(path, strlen(path), md, &n, EVP_sha256(), NULL))
                return -EIO;
        drv_hex(md, n, hash);
        return 0;
}

/* Snapshot the source when one of the jobs to run checks out (localsrc.h). */
static int prepare_source(struct run_opts *o, const char *root, const struct config_job *jobs,
                          size_t n)
{
        bool checks_out = false;
        for (size_t i = 0; i < n && !checks_out; i++) {
                size_t k;
                json_t *st;
                json_array_foreach (json_object_get(jobs[i].spec, "steps"), k, st) {
                        const char *type = json_string_value(json_object_get(st, "type"));
                        checks_out = checks_out || (type && strcmp(type, "checkout") == 0);
                }
        }
        if (!checks_out || !root)
                return 0;
        struct drv_error err = {0};
        if (localsrc_prepare(root, o->repo.toplevel ? &o->repo : NULL, o->committed, &o->src,
                             &err) < 0) {
                fprintf(stderr, "drover run: checkout: %s\n", err.message);
                return -1;
        }
        return 0;
}

/* Every error of the config, in file order (the first one when they cannot be listed). */
static void print_config_errors(const struct run_opts *o, const struct drv_error *first)
{
        _cleanup_strv_ char **errors = NULL;
        struct drv_error err = {0};
        int n = config_validate(o->config, &o->copts, &errors, &err);
        if (n <= 0 || !errors || !errors[0]) {
                fprintf(stderr, "%s\n", first->message);
                return;
        }
        for (size_t i = 0; errors[i]; i++)
                fprintf(stderr, "%s\n", errors[i]);
        if (errors[1])
                fprintf(stderr, "%zu errors\n", drv_strv_len(errors));
}

/* drover run JOB: alone (with its upstreams' stored workspace), or --with-upstream. */
static int run_one_job(struct run_opts *o, const struct config *cfg, const char *root,
                       const char *store_url, const char *wfprefix)
{
        size_t idx = 0;
        const struct config_workflow *wf = runselect_workflow_of(cfg, o->job, &idx);
        if (o->with_upstream) {
                if (!wf) {
                        fprintf(stderr, "drover run: --with-upstream: no workflow runs '%s'\n",
                                o->job);
                        return 2;
                }
                size_t n = 0;
                _cleanup_free_ struct config_job *jobs = runselect_with_upstream(wf, idx, &n);
                if (!jobs || prepare_source(o, root, jobs, n) < 0)
                        return 2;
                block_cancel_signals();
                return run_jobs(o, jobs, n, store_url);
        }
        const struct config_job *j = config_find_job(cfg, o->job);
        if (!j && wf) /* a job entry named in a workflow (name:, matrix) */
                j = &wf->jobs[idx];
        if (!j) {
                fprintf(stderr,
                        "drover run: no job '%s' in %s (a job whose parameters have no defaults "
                        "runs only in its workflow; drover run --list)\n",
                        o->job, o->config);
                return 2;
        }
        if (j->unrunnable) {
                fprintf(stderr, "drover run: job '%s' is not run: %s\n", j->name, j->unrunnable);
                return 1;
        }
        struct config_job alone = *j;
        char *none[] = {NULL};
        alone.requires = none;
        if (wf && runselect_attaches(j)) {
                struct objstore *store = NULL;
                struct js_storage sc = {.url = (char *)store_url};
                struct drv_error err = {0};
                if (objstore_open(&sc, &store, &err) == 0) {
                        o->stored_layers =
                            runselect_stored_layers(store, wfprefix, wf, idx, stderr);
                        objstore_free(store);
                }
        }
        if (prepare_source(o, root, &alone, 1) < 0)
                return 2;
        block_cancel_signals();
        return run_jobs(o, &alone, 1, store_url);
}

/* Dynamic config: after the setup workflow (exit status setup_rc), compile the continued config
 * (cont, stolen; NULL: no job continued) with its parameters and run every workflow of it. */
static int run_continued(struct run_opts *o, int setup_rc, json_t *cont, const char *root,
                         const char *store_url)
{
        if (!cont) {
                printf("\ndrover run: the setup workflow did not continue the pipeline (no job ran "
                       "`circleci continue`): the pipeline ends here\n");
                return setup_rc;
        }
        if (setup_rc == 4) { /* canceled */
                json_decref(cont);
                return setup_rc;
        }
        struct config_opts copts = o->copts;
        char wfid[80];
        snprintf(wfid, sizeof(wfid), "%s-continued", o->copts.workflow_id);
        copts.workflow_id = wfid;
        copts.pipeline_parameters = json_object_get(cont, "parameters");
        const char *text = json_string_value(json_object_get(cont, "configuration"));
        _cleanup_free_ char *name =
            drv_asprintf("continuation from %s", json_string_value(json_object_get(cont, "job")));
        struct drv_error err = {0};
        _cleanup_(config_freep) struct config *cfg = NULL;
        int r = name ? config_load_text(name, text, strlen(text), &copts, &cfg, &err)
                     : drv_err(&err, ENOMEM, "out of memory");
        json_decref(cont);
        if (r < 0) {
                fprintf(stderr, "drover run: the continued config: %s\n", err.message);
                return 2;
        }
        if (cfg->setup) {
                fprintf(stderr,
                        "drover run: %s: a continued config cannot be a setup config "
                        "(setup: true)\n",
                        name);
                return 2;
        }
        printf("\n== the pipeline continues: %s, %zu workflow%s ==\n", name, cfg->n_workflows,
               cfg->n_workflows == 1 ? "" : "s");
        o->continuation_key = NULL; /* used once: the continued jobs have none */
        o->continuation = NULL;
        int rc = setup_rc;
        for (size_t w = 0; w < cfg->n_workflows && rc != 4; w++) {
                const struct config_workflow *wf = &cfg->workflows[w];
                printf("\n== workflow %s ==\n", wf->name);
                if (wf->n_jobs == 0)
                        continue;
                if (!o->src.src && prepare_source(o, root, wf->jobs, wf->n_jobs) < 0)
                        return 2;
                int wr = run_jobs(o, wf->jobs, wf->n_jobs, store_url);
                rc = rc == 0 || wr == 4 ? wr : rc;
        }
        return rc;
}

int cmd_run(int argc, char **argv)
{
        _cleanup_(run_opts_release) struct run_opts o = {.max_parallel = 1};
        int r = run_opts_parse(argc, argv, &o);
        _cleanup_strv_ char **env = o.env;
        if (r != 0)
                return r > 0 ? 0 : 2;
        _cleanup_free_ char *store = o.store ? strdup(o.store) : run_default_store();
        struct drv_error err = {0};
        /* what a crashed run left (cgroups, network rules, /run/drover dirs) goes first */
        if (runtime_sweep_stale(&err) < 0)
                log_warn("sweep_failed", "error=\"%s\"", err.message);
        if (o.ssh && sshd_load_keys(o.ssh_key, &o.ssh_keys, &err) < 0) {
                fprintf(stderr, "drover run: --ssh: %s\n", err.message);
                return 2;
        }
        if (!store || drv_mkdir_p(store, 0700, &err) < 0) {
                fprintf(stderr, "drover run: store: %s\n", err.message);
                return 2;
        }
        _cleanup_free_ char *abs_store = realpath(store, NULL);
        _cleanup_free_ char *store_url = abs_store ? drv_asprintf("file://%s", abs_store) : NULL;
        if (!store_url) {
                fprintf(stderr, "drover run: cannot resolve the store %s\n", store);
                return 2;
        }
        /* checkout steps get a snapshot of the work tree around the config (or of the directory
         * holding .circleci): docs/checkout.md */
        _cleanup_free_ char *found = o.config ? NULL : find_config();
        if (!o.config)
                o.config = found ? found : ".circleci/config.yml";
        _cleanup_free_ char *cfg_abs = realpath(o.config, NULL);
        _cleanup_free_ char *root = NULL;
        if (cfg_abs) {
                char *slash = strrchr(cfg_abs, '/');
                if (slash)
                        *slash = '\0';
                if (localrepo_find(cfg_abs, &o.repo) > 0) {
                        if (!o.copts.revision && !o.copts.branch)
                                o.copts.revision = o.repo.revision;
                        else if (o.copts.revision)
                                o.committed = true; /* another commit: the work tree is not it */
                        if (!o.copts.branch && !o.copts.tag)
                                o.copts.branch = o.repo.branch;
                }
                root = project_root(cfg_abs, o.repo.toplevel);
                o.copts.repo_url = root;
        }
        /* the project (caches and timings in the store are per project): local/local-<hash of
         * its path>/<its directory's name> (CIRCLE_PROJECT_USERNAME and _REPONAME), so that two
         * repositories never share them */
        char project[320] = "local/local/project";
        char hash[EVP_MAX_MD_SIZE * 2 + 1] = "none";
        if (root) {
                const char *base = strrchr(root, '/');
                if (path_hash(root, hash) < 0) {
                        fprintf(stderr, "drover run: cannot hash %s\n", root);
                        return 2;
                }
                snprintf(project, sizeof(project), "local/local-%.12s/%.200s", hash,
                         base && base[1] ? base + 1 : "root");
        }
        /* the run's workflow id: the project's hash, then unique (workspaces and timings are
         * stored per run; runselect.c finds a project's earlier runs by the prefix) */
        char wfprefix[64], wfid[128];
        snprintf(wfprefix, sizeof(wfprefix), "local-%.12s-", hash);
        snprintf(wfid, sizeof(wfid), "%s%lld-%d", wfprefix, (long long)time(NULL), (int)getpid());
        o.copts.env = (const char *const *)env;
        o.copts.secret_env = (const char *const *)o.secrets;
        o.copts.workflow_id = wfid;
        o.copts.build_num = 1;
        o.copts.project = project;
        o.copts.pipeline_parameters = o.params;
        _cleanup_strv_ char **orb_dirs = orb_search_dirs(o.orb_dirs, o.config);
        o.copts.orb_dirs = (const char *const *)orb_dirs;
        if (o.pull_orbs)
                o.copts.orb_fetch = pull_orb;
        _cleanup_(config_freep) struct config *cfg = NULL;
        if (config_load(o.config, &o.copts, &cfg, &err) < 0) {
                print_config_errors(&o, &err);
                return 2;
        }
        for (char **w = cfg->warnings; w && *w; w++) /* unrunnable jobs are reported below */
                if (strstr(*w, ": orb '") || strstr(*w, ": machine image '"))
                        fprintf(stderr, "warning: %s\n", *w);
        if (o.list) {
                runselect_list(cfg, stdout);
                return 0;
        }
        char key[65];
        json_t *cont = NULL;
        if (cfg->setup) { /* dynamic config: the setup workflow's jobs may continue */
                if (continuation_new_key(key) < 0) {
                        fprintf(stderr, "drover run: cannot make a continuation key\n");
                        return 2;
                }
                o.continuation_key = key;
                o.continuation = &cont;
        }
        if (o.job) {
                r = run_one_job(&o, cfg, root, store_url, wfprefix);
                return cfg->setup ? run_continued(&o, r, cont, root, store_url) : r;
        }
        const struct config_workflow *wf = NULL;
        if (o.workflow) {
                wf = config_find_workflow(cfg, o.workflow);
        } else if (cfg->n_workflows == 1) {
                wf = &cfg->workflows[0];
        } else {
                fprintf(stderr,
                        "drover run: name a job or a --workflow; %s has %zu workflows:", o.config,
                        cfg->n_workflows);
                for (size_t i = 0; i < cfg->n_workflows; i++)
                        fprintf(stderr, " %s", cfg->workflows[i].name);
                fprintf(stderr, "\n");
                return 2;
        }
        bool skipped = false;
        for (char **sk = cfg->skipped_workflows; !wf && o.workflow && sk && *sk; sk++)
                skipped = skipped || strcmp(*sk, o.workflow) == 0;
        bool scheduled = false;
        for (char **sk = cfg->scheduled_workflows; skipped && sk && *sk; sk++)
                scheduled = scheduled || strcmp(*sk, o.workflow) == 0;
        if (scheduled) {
                fprintf(stderr,
                        "drover run: workflow '%s' runs in scheduled pipelines only (its "
                        "triggers:); run it as one with --trigger schedule --schedule-name NAME\n",
                        o.workflow);
                return 1;
        }
        if (skipped) {
                fprintf(stderr,
                        "drover run: workflow '%s' does not run: its when/unless is false for "
                        "these pipeline parameters%s (set them with --param NAME=VALUE)\n",
                        o.workflow, o.params ? "" : " (none given)");
                return 1;
        }
        if (!wf) {
                fprintf(stderr, "drover run: no workflow '%s' in %s (drover run --list)\n",
                        o.workflow, o.config);
                return 2;
        }
        if (wf->n_jobs == 0) {
                fprintf(stderr, "drover run: workflow '%s' has no job to run for this branch/tag\n",
                        wf->name);
                return 1;
        }
        if (prepare_source(&o, root, wf->jobs, wf->n_jobs) < 0)
                return 2;
        block_cancel_signals();
        r = run_jobs(&o, wf->jobs, wf->n_jobs, store_url);
        return cfg->setup ? run_continued(&o, r, cont, root, store_url) : r;
}
