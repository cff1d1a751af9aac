/* fuzz_orbs.c: libFuzzer target — orb resolution: a config (inline orbs, nested orbs, orb-level
 * parameters) and, after a line "#--orb--", the source of the registry orb fz/o@1.2.3 found in an
 * orb directory. Besides not crashing, every job spec produced must pass the job spec validator. */
#include "executor/config/config.h"
#include "executor/jobspec.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/drover-fuzz-orbs-XXXXXX";

static void check(const struct config_job *j)
{
        struct jobspec *s = NULL;
        struct drv_error e;
        if (jobspec_from_json(j->spec, &s, &e) < 0) {
                fprintf(stderr, "compiled spec of %s is invalid: %s\n", j->name, e.message);
                abort();
        }
        jobspec_free(s);
}

static void put_orb(const char *text, size_t n)
{
        static char path[128];
        struct drv_error e;
        if (!path[0]) {
                if (!mkdtemp(dir))
                        abort();
                snprintf(path, sizeof(path), "%s/fz", dir);
                if (drv_mkdir_p(path, 0755, &e) < 0)
                        abort();
                snprintf(path, sizeof(path), "%s/fz/o@1.2.3.yml", dir);
        }
        /* no fsync (drv_write_file_atomic): it would make each run wait for the disk */
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || drv_write_all(fd, text, n) < 0)
                abort();
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char sep[] = "#--orb--\n";
        const char *text = (const char *)data;
        const char *at = memmem(text, size, sep, sizeof(sep) - 1);
        size_t clen = at ? (size_t)(at - text) : size;
        const char *orb = at ? at + sizeof(sep) - 1 : "";
        put_orb(orb, at ? size - clen - (sizeof(sep) - 1) : 0);
        const char *dirs[] = {dir, NULL};
        struct config *c = NULL;
        struct drv_error e;
        struct config_opts o = {
            .branch = "main", .build_num = 1, .orb_dirs = dirs, .orb_cache = ""};
        if (config_load_text("fuzz.yml", text, clen, &o, &c, &e) < 0)
                return 0;
        for (size_t w = 0; w < c->n_workflows; w++)
                for (size_t k = 0; k < c->workflows[w].n_jobs; k++)
                        check(&c->workflows[w].jobs[k]);
        for (size_t k = 0; k < c->n_jobs; k++)
                check(&c->jobs[k]);
        config_free(c);
        return 0;
}
