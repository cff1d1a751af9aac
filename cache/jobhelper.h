/* jobhelper.h: every file access on a job's behalf runs as the job, inside the job. The storage
 * steps (artifacts, test results, caches, workspaces, {{ checksum }}) start the in-job helper
 * (`circleci __storage OP ...`, the drover binary bound into every sandbox job) through the
 * runtime like a step: the job's namespaces, user, seccomp filter, no capabilities, its cgroup.
 * The helper resolves job paths and reads or writes files; the supervisor only moves bytes
 * between the helper's pipes and the object store. Helper and supervisor speak in frames:
 *
 *   frame = type (1 byte) + payload length (3 bytes, big endian, <= JH_MAX_FRAME) + payload
 *
 * helper -> supervisor (stdout):
 *   'F' "SIZE NAME"    a regular file follows (op files): its 'D' frames, then 'E'
 *   'D' bytes          file bytes (op files) or tar+zstd archive bytes (op pack)
 *   'E'                end of the current file
 *   'W' text           a warning line for the step's output
 *   'S' text           success, last frame: "files dirs links bytes skipped" (pack, unpack,
 *                      files) or the base64 SHA-256 (sum)
 *   'X' text           failure, last frame: the reason
 * supervisor -> helper (stdin, op unpack only):
 *   'D' bytes          archive bytes as the store delivers them
 *   'C' / 'A'          the download came whole and intact (keep what was extracted) / it did not
 *                      (undo it)
 *
 * The helper runs as the job and can be replaced by it (ptrace, same user): the supervisor
 * trusts nothing it says — frames, names and sizes are checked and the size caps enforced again
 * on its side. */
#pragma once

#include "executor/stepctx.h"

#define JH_MAX_FRAME  (1u << 20)
#define JH_SUBCOMMAND "__storage"

/* Size caps of one step (bytes): from the job spec's storage.max_file_mb / max_step_mb. */
struct jh_caps {
        uint64_t max_file;
        uint64_t max_step;
};
#define JH_DEFAULT_MAX_FILE_MB 2048ULL
#define JH_DEFAULT_MAX_STEP_MB 8192ULL

struct jobhelper;

/* Start `circleci __storage op args...` in the job (ctx->helper); *out is the running helper. */
int jobhelper_start(const struct step_ctx *ctx, const char *const *args, struct jobhelper **out,
                    struct drv_error *err);
/* The next frame from the helper: *type and its payload (valid until the next call, NUL
 * terminated). A hostile or broken helper (bad frame, early end, silence past the step's
 * no_output_timeout) is an error naming the step. */
int jobhelper_next(struct jobhelper *h, char *type, const char **payload, size_t *len,
                   struct drv_error *err);
/* Send one frame to the helper's stdin. */
int jobhelper_send(struct jobhelper *h, char type, const void *payload, size_t len,
                   struct drv_error *err);
/* Close the helper's stdin (no more frames). */
void jobhelper_close_input(struct jobhelper *h);
/* Wait for the helper's exit (killing it when it is not done in time) and free it. Returns 0
 * when it exited with 0, else an error (out of memory in the job, killed, exit status). */
int jobhelper_finish(struct jobhelper *h, struct drv_error *err);
/* Kill (if still running), reap and free. */
void jobhelper_abort(struct jobhelper *h);
static inline void jobhelper_abortp(struct jobhelper **h)
{
        if (*h)
                jobhelper_abort(*h);
}
/* The error for a frame that was not expected: the helper's reason ('X') or a protocol error. */
int jobhelper_unexpected(char type, const char *payload, struct drv_error *err);
/* End the helper after a conversation whose result is r: reaped when it ended (its own failure,
 * e.g. out of memory in the job, then replaces a missing answer in err), killed when our side
 * failed midway. Returns r or that failure. h may be NULL. */
int jobhelper_end(struct jobhelper *h, int r, struct drv_error *err);
/* The step's caps (spec values or the defaults). */
struct jh_caps jobhelper_caps(const struct step_ctx *ctx);
/* Run an op whose only answer is its last frame ('S': *result, caller frees; 'X': an error);
 * 'W' frames go to the step's output. */
int jobhelper_run(const struct step_ctx *ctx, const char *const *args, char **result,
                  struct drv_error *err);

/* The helper's side, inside the job: `circleci __storage OP ...` (executor/circleci_tool.c). */
int jobhelper_main(int argc, char **argv);
