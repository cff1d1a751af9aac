/* test_render.c: terminal rendering of the output pipeline (plain when piped, colour on a TTY),
 * masking on the terminal path, background prefixes, end lines. */
#include "executor/output.h"
#include "testlib.h"

#include <sys/mman.h>

static char *render(bool color, void (*fn)(struct output *))
{
        int fd = memfd_create("term", MFD_CLOEXEC);
        const char *secrets[] = {"SUPERSECRET", "no", "false", NULL};
        struct output_config cfg = {.job_id = "render",
                                    .url = "terminal",
                                    .secrets = secrets,
                                    .terminal_fd = fd,
                                    .color = color};
        struct output *o;
        struct drv_error e;
        if (output_open(&cfg, &o, &e) < 0)
                return NULL;
        fn(o);
        output_close(o, 1000, &e);
        output_free(o);
        char *buf = NULL;
        size_t len;
        lseek(fd, 0, SEEK_SET);
        drv_read_fd(fd, &buf, &len, 1 << 20, NULL);
        close(fd);
        return buf;
}

static void script(struct output *o)
{
        struct drv_error e;
        struct output_step_end ok = {.exit_code = 0, .status = "success", .duration_ms = 1500};
        struct output_step_end bad = {
            .exit_code = 2, .status = "failed", .reason = "exit code 2", .duration_ms = 61000};
        output_step_begin(o, 0, "build", false, &e);
        output_step_begin(o, 1, "server", true, &e);
        output_step_write(o, 0, "key=SUPER", 9, &e);
        output_step_write(o, 1, "listening\nready", 15, &e);
        output_step_write(o, 0, "SECRET no false\n", 16, &e);
        output_step_printf(o, 0, "drover: %s", "SUPERSECRET in a message");
        output_step_end(o, 0, &bad, &e);
        output_step_end(o, 1, &ok, &e);
}

TEST(plain_rendering)
{
        char *out = render(false, script);
        CHECK(out != NULL);
        if (!out)
                return;
        /* a line another stream left open is broken, never mixed with a prefix */
        const char *want = "==> build\n"
                           "==> (background) server\n"
                           "key=\n"
                           "server | listening\n"
                           "server | ready\n"
                           "******** no false\n"
                           "drover: ******** in a message\n"
                           "<== build: failed — exit code 2 (1m01s, exit 2)\n"
                           "<== (background) server: success (1.50s)\n";
        CHECK_STREQ(out, want);
        CHECK(strchr(out, '\033') == NULL);
        free(out);
}

TEST(color_rendering)
{
        char *out = render(true, script);
        CHECK(out != NULL);
        if (!out)
                return;
        CHECK(strstr(out, "\033[1;36m==> build\033[0m") != NULL);
        CHECK(strstr(out, "\033[35mserver |\033[0m listening") != NULL);
        CHECK(strstr(out, "\033[1;31m<== build: failed") != NULL);
        CHECK(strstr(out, "[0.0") != NULL); /* elapsed time since the job began */
        CHECK(strstr(out, "SUPERSECRET") == NULL);
        free(out);
}

int main(void)
{
        RUN(plain_rendering);
        RUN(color_rendering);
        TEST_DONE();
}
