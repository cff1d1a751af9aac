/* watchdog.h: a job's last line of defence — a thread that ends the job at its timeout (or on
 * SIGINT/SIGTERM) even when the step machine is stuck (a built-in step blocked on something of
 * the job's), independent of the step loop. */
#pragma once

#include "executor/events.h"

#include <stdint.h>

struct job_watchdog_config {
        uint64_t deadline_ns; /* the job timeout (drv_now_ns clock) */
        int cancel_fd;        /* the job's signalfd (SIGINT/SIGTERM), -1 none; only polled */
        struct job_events *events;
        uint64_t stuck_ns;  /* the step machine must notice an end within this (default 5 s) */
        uint64_t wrapup_ns; /* and finish within this after it (default 60 s) */
};

struct job_watchdog;

/* Start the thread. When the job's end is due (deadline passed, a signal pending) and the step
 * machine has not noticed it within stuck_ns, or has not finished within wrapup_ns, it emits the
 * job's "finished" event (timedout / canceled, with the reason) and ends the process (_exit 1 /
 * 4): pid 1 of every sandbox dies with it (PDEATHSIG), the rest is swept at the next start. */
int job_watchdog_start(const struct job_watchdog_config *c, struct job_watchdog **out,
                       struct drv_error *err);
/* The step machine saw the end (job timeout or cancel signal) and is winding the job down. */
void job_watchdog_noticed(struct job_watchdog *w);
/* The step now running (for the reason). */
void job_watchdog_step(struct job_watchdog *w, unsigned step);
/* The job finished normally: stop the thread (NULL is fine). */
void job_watchdog_stop(struct job_watchdog *w);
