/* jobrunner.c: output + events + signals around the step machine. */
#include "executor/jobrunner.h"
#include "executor/stepenv.h"

#include <ctype.h>
#include <signal.h>
#include <sys/signalfd.h>

static char *mask_log_line(const void *out, const char *line)
{
        return output_mask(out, line);
}

int jobrunner_run(const struct jobrunner_opts *o, enum job_status *status, struct drv_error *err)
{
        const struct jobspec *spec = o->spec;
        _cleanup_strv_ char **secrets = stepenv_secrets(spec);
        _cleanup_free_ char *self = drv_self_exe();
        if (!secrets || !self)
                return drv_err(err, ENOMEM, "out of memory");
        struct output_config oc = {.job_id = spec->job_id,
                                   .attempt = spec->attempt,
                                   .url = spec->output.url,
                                   .token = spec->output.token,
                                   .ca_pem = spec->output.ca_pem,
                                   .secrets = (const char *const *)secrets,
                                   .terminal_fd = o->terminal_fd,
                                   .color = o->terminal_fd >= 0 && isatty(o->terminal_fd)};
        /* the operator's spool settings: drover job --spool-dir/--spool-max (the agent's
         * spool_dir/spool_max), else the environment (tests) */
        uint64_t spool_max = o->spool_max;
        const char *sm = getenv("DROVER_OUTPUT_SPOOL_MAX");
        if (!spool_max && sm && drv_parse_size(sm, &spool_max) < 0)
                return drv_err(err, EINVAL, "DROVER_OUTPUT_SPOOL_MAX '%s' is not a size", sm);
        oc.spool_max_bytes = spool_max;
        oc.spool_dir = getenv("DROVER_OUTPUT_SPOOL_DIR");
        _cleanup_free_ char *spool = NULL;
        if (o->spool_dir) { /* one directory per job id: a restarted job finds its spool */
                /* a new attempt of the job is a new spool, not a restart of the old one */
                _cleanup_free_ char *name =
                    spec->attempt ? drv_asprintf("%s.attempt-%s", spec->job_id, spec->attempt)
                                  : strdup(spec->job_id ? spec->job_id : "job");
                if (!name)
                        return drv_err(err, ENOMEM, "out of memory");
                for (char *c = name; *c; c++)
                        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
                                *c = '_';
                if (asprintf(&spool, "%s/job-%s", o->spool_dir, name) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
                oc.spool_dir = spool;
        }
        struct output *out = NULL;
        int r = output_open(&oc, &out, err);
        if (r < 0)
                return r;
        if (o->spool_dir) /* spools of crashed jobs nobody restarted within a day (not ours:
                             output_open holds its lock) */
                output_spool_gc(o->spool_dir, 86400);
        struct job_events *events = NULL;
        r = job_events_open(o->events_fd, spec->job_id, &events, err);
        if (r < 0) {
                output_free(out);
                return r;
        }
        job_events_mask_with(events, out);      /* the same secrets as the step output */
        drv_log_set_filter(mask_log_line, out); /* and in drover's own log lines */
        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, &old);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        struct job_run_opts jo = {.spec = spec,
                                  .out = out,
                                  .events = events,
                                  .self_exe = self,
                                  .cancel_signal_fd = sfd,
                                  .source_dir = o->source_dir};
        r = job_run(&jo, status, err);
        if (r < 0) { /* printed by drover job / drover run: masked like everything else */
                _cleanup_free_ char *m = output_mask(out, err->message);
                if (m)
                        snprintf(err->message, sizeof(err->message), "%s", m);
        }
        struct drv_error e2;
        drv_log_set_filter(NULL, NULL); /* the job's threads (SSH) have ended in job_run */
        if (output_close(out, 30000, &e2) < 0)
                log_warn("output_close_failed", "error=\"%s\"", e2.message);
        if (o->events_out)
                *o->events_out = json_incref(job_events_all(events));
        output_free(out);
        job_events_free(events);
        if (sfd >= 0)
                close(sfd);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}
