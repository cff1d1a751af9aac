/* watchdog.c: the job's watchdog thread (watchdog.h). */
#include "executor/watchdog.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>

struct job_watchdog {
        struct job_watchdog_config c;
        pthread_t thread;
        int done_fd;
        atomic_uint_fast64_t noticed_ns; /* 0: the step machine has not seen an end yet */
        atomic_uint step;
};

_Noreturn static void hard_end(struct job_watchdog *w, bool timed_out, uint64_t t0)
{
        char reason[256];
        snprintf(reason, sizeof(reason),
                 "the job's %s came, but drover stayed stuck in step %u for %llu s: ended by "
                 "its watchdog",
                 timed_out ? "timeout" : "cancellation", atomic_load(&w->step),
                 (unsigned long long)((drv_now_ns() - t0) / 1000000000ULL));
        log_error("job_watchdog", "status=%s reason=\"%s\"", timed_out ? "timedout" : "canceled",
                  reason);
        fprintf(stderr, "drover: %s\n", reason);
        job_events_emit(w->c.events, "finished",
                        json_pack("{s:s, s:s}", "status", timed_out ? "timedout" : "canceled",
                                  "reason", reason));
        _exit(timed_out ? 1 : 4);
}

static void *watch(void *arg)
{
        struct job_watchdog *w = arg;
        uint64_t cancel_ns = 0; /* a cancel signal was seen pending */
        for (;;) {
                uint64_t now = drv_now_ns();
                uint64_t due = w->c.deadline_ns;
                if (cancel_ns && cancel_ns < due)
                        due = cancel_ns;
                uint64_t noticed = atomic_load(&w->noticed_ns);
                bool late = now >= due;
                if (late && !noticed && now >= due + w->c.stuck_ns)
                        hard_end(w, due == w->c.deadline_ns, due);
                if (noticed && now >= noticed + w->c.wrapup_ns)
                        hard_end(w, now >= w->c.deadline_ns, noticed);
                struct pollfd p[2] = {{.fd = w->done_fd, .events = POLLIN},
                                      {.fd = cancel_ns ? -1 : w->c.cancel_fd, .events = POLLIN}};
                uint64_t wait = 1000000000ULL; /* at most 1 s: the noticed flag is polled */
                if (!late && due - now < wait)
                        wait = due - now;
                int n = poll(p, 2, (int)(wait / 1000000ULL) + 1);
                if (n > 0 && p[0].revents)
                        return NULL;
                if (n > 0 && p[1].revents & POLLIN && !cancel_ns)
                        cancel_ns = drv_now_ns();
        }
}

int job_watchdog_start(const struct job_watchdog_config *c, struct job_watchdog **out,
                       struct drv_error *err)
{
        struct job_watchdog *w = calloc(1, sizeof(*w));
        if (!w)
                return drv_err(err, ENOMEM, "out of memory");
        w->c = *c;
        if (!w->c.stuck_ns)
                w->c.stuck_ns = 5000000000ULL;
        if (!w->c.wrapup_ns)
                w->c.wrapup_ns = 60000000000ULL;
        w->done_fd = eventfd(0, EFD_CLOEXEC);
        if (w->done_fd < 0) {
                free(w);
                return drv_err_errno(err, "eventfd");
        }
        int e = pthread_create(&w->thread, NULL, watch, w);
        if (e != 0) {
                close(w->done_fd);
                free(w);
                return drv_err(err, e, "cannot start the job's watchdog thread");
        }
        *out = w;
        return 0;
}

void job_watchdog_noticed(struct job_watchdog *w)
{
        uint_fast64_t zero = 0;
        if (w)
                atomic_compare_exchange_strong(&w->noticed_ns, &zero, drv_now_ns());
}

void job_watchdog_step(struct job_watchdog *w, unsigned step)
{
        if (w)
                atomic_store(&w->step, step);
}

void job_watchdog_stop(struct job_watchdog *w)
{
        if (!w)
                return;
        uint64_t one = 1;
        if (write(w->done_fd, &one, sizeof(one)) != sizeof(one))
                log_warn("job_watchdog", "error=\"cannot stop: %s\"", strerror(errno));
        pthread_join(w->thread, NULL);
        close(w->done_fd);
        free(w);
}
