/* runsummary.c: the end-of-run summary of `drover run` (runsummary.h). */
#include "executor/runsummary.h"

#define ARTIFACTS_SHOWN 20 /* artifact links per job in the summary */

/* "[node 1/3] " for a parallel job's event, "" otherwise. */
static void node_label(const struct job_outcome *o, json_t *ev, char *buf, size_t n)
{
        buf[0] = '\0';
        if (o->job->parallelism > 1)
                snprintf(buf, n, "[node %lld/%u] ",
                         (long long)json_integer_value(json_object_get(ev, "node")) + 1,
                         o->job->parallelism);
}

static const char *ev_str(json_t *ev, const char *key)
{
        const char *s = json_string_value(json_object_get(ev, key));
        return s ? s : "";
}

static bool ev_is(json_t *ev, const char *type)
{
        return strcmp(ev_str(ev, "type"), type) == 0;
}

/* Why a step did not succeed: its reason ("exited with code 3"), else its status. */
static const char *step_why(json_t *ev)
{
        const char *reason = ev_str(ev, "reason");
        return reason[0] ? reason : ev_str(ev, "status");
}

static void print_step(const struct job_outcome *o, json_t *ev, bool tty)
{
        char node[48];
        node_label(o, ev, node, sizeof(node));
        const char *st = ev_str(ev, "status");
        bool bad = strcmp(st, "success") && strcmp(st, "skipped");
        const char *reason = ev_str(ev, "reason");
        printf("    %s%-9s%s %s%s (%.2fs)%s%s\n", tty && bad ? "\033[31m" : "", st,
               tty && bad ? "\033[0m" : "", node, ev_str(ev, "name"),
               (double)json_integer_value(json_object_get(ev, "duration_ms")) / 1000.0,
               bad && reason[0] && strcmp(reason, st) ? ": " : "",
               bad && reason[0] && strcmp(reason, st) ? reason : "");
}

static void print_tests(const struct job_outcome *o, json_t *ev)
{
        char node[48];
        node_label(o, ev, node, sizeof(node));
        long long bad = json_integer_value(json_object_get(ev, "failures")) +
                        json_integer_value(json_object_get(ev, "errors"));
        printf("    %-9s %s%lld tests, %lld failed", "tests", node,
               json_integer_value(json_object_get(ev, "tests")), bad);
        size_t k;
        json_t *name;
        json_array_foreach (json_object_get(ev, "failed_tests"), k, name)
                printf("%s%s", k ? ", " : ": ", json_string_value(name));
        if ((long long)json_array_size(json_object_get(ev, "failed_tests")) < bad)
                printf(", ...");
        printf("\n");
}

static void print_job(const struct job_outcome *o, const char *store_dir, bool tty)
{
        bool ok = strcmp(o->status, "success") == 0;
        printf("%s%-8s%s %s (%.2fs)\n", tty ? (ok ? "\033[32m" : "\033[31m") : "", o->status,
               tty ? "\033[0m" : "", o->job->name, (double)o->duration_ms / 1000.0);
        size_t k, shown = 0, more = 0;
        json_t *ev;
        json_array_foreach (o->events, k, ev) {
                if (ev_is(ev, "step_finished"))
                        print_step(o, ev, tty);
                else if (ev_is(ev, "test_results"))
                        print_tests(o, ev);
                else if (ev_is(ev, "finished") && !ok && ev_str(ev, "reason")[0])
                        printf("    %-9s %s\n", ev_str(ev, "status"), ev_str(ev, "reason"));
                if (!ev_is(ev, "artifact"))
                        continue;
                if (shown++ == ARTIFACTS_SHOWN) {
                        more++;
                        continue;
                }
                char node[48];
                node_label(o, ev, node, sizeof(node));
                printf("    %-9s %s%s file://%s/objects/%s\n", "artifact", node, ev_str(ev, "path"),
                       store_dir, ev_str(ev, "key"));
        }
        if (more)
                printf("    ... and %zu more artifacts under file://%s/objects/artifacts/\n", more,
                       store_dir);
}

/* The first step (in run order) that failed, timed out or ran out of memory. */
static void print_first_failure(const struct job_outcome *out, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                size_t k;
                json_t *ev;
                json_array_foreach (out[i].events, k, ev) {
                        const char *st = ev_str(ev, "status");
                        bool step = ev_is(ev, "step_finished");
                        if (!(step || ev_is(ev, "finished")) || !strcmp(st, "success") ||
                            !strcmp(st, "skipped") || !strcmp(st, "canceled") ||
                            (!step && !ev_str(ev, "reason")[0]))
                                continue;
                        char node[64] = "";
                        if (out[i].job->parallelism > 1)
                                snprintf(
                                    node, sizeof(node), " (node %lld of %u)",
                                    (long long)json_integer_value(json_object_get(ev, "node")) + 1,
                                    out[i].job->parallelism);
                        printf("first failure: job %s%s, %s%s%s: %s — its output is under \"### "
                               "%s%s\" above\n",
                               out[i].job->name, node, step ? "step \"" : "",
                               step ? ev_str(ev, "name") : "the job", step ? "\"" : "",
                               step ? step_why(ev) : ev_str(ev, "reason"), out[i].job->name, node);
                        return;
                }
        }
}

void runsummary_print(const struct job_outcome *out, size_t n, const char *store_dir)
{
        bool tty = isatty(STDOUT_FILENO);
        bool stored = false;
        printf("\n%s== summary ==%s\n", tty ? "\033[1m" : "", tty ? "\033[0m" : "");
        for (size_t i = 0; i < n; i++) {
                print_job(&out[i], store_dir, tty);
                size_t k;
                json_t *ev;
                json_array_foreach (out[i].events, k, ev)
                        stored = stored || ev_is(ev, "artifact") || ev_is(ev, "test_results");
        }
        print_first_failure(out, n);
        if (stored)
                printf("store: %s (artifacts: objects/artifacts/JOB-ID/, test results: "
                       "objects/test-results/JOB-ID/)\n",
                       store_dir);
}
