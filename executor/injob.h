/* injob.h: paths shared by the supervisor (step machine) and the in-job `circleci` tool. Both live
 * in the job's /tmp, which the job user can write (the tool runs as the job user). */
#pragma once

/* `circleci-agent step halt` creates it; the step machine ends the job successfully after the
 * step that created it. */
#define INJOB_HALT_MARKER "/tmp/.drover-halt"
/* Per-test timings of earlier runs, written before the first step when the store has any
 * ({"tests":[{"file","classname","name","time"}]}); read by `circleci tests split`. */
#define INJOB_TIMINGS_FILE "/tmp/.drover-timings.json"
/* `drover run`: the snapshot of the local source (executor/localsrc.h), bound read-only into
 * jobs with a checkout step; `checkout` copies it. */
#define INJOB_SOURCE_DIR "/run/drover/source"
/* The step scripts: a directory drover owns on the host, bound read-only (the job can neither
 * pre-create a script's path nor fill the file system it is on). */
#define INJOB_STEPS_DIR "/run/drover/steps"
