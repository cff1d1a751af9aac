/* test_docker_client.c: the docker client against the real dockerd (TLS on 127.0.0.1:2376) and
 * registry (htpasswd) started by scripts/peers/{dockerd,registry}.sh. Fails when they are not up.
 */
#include "executor/docker/docker_int.h"
#include "testlib.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>

static char *env_file_get(const char *file, const char *key)
{
        const char *dir =
            getenv("DROVER_PEERS_DIR") ? getenv("DROVER_PEERS_DIR") : "/tmp/drover-peers";
        _cleanup_free_ char *path = drv_path_join(dir, file);
        _cleanup_free_ char *text = NULL;
        if (drv_read_file(path, &text, NULL, 0, NULL) < 0)
                return NULL;
        size_t kl = strlen(key);
        for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
                if (strncmp(l, key, kl) == 0 && l[kl] == '=')
                        return strdup(l + kl + 1);
        return NULL;
}

static char *pem(const char *key)
{
        _cleanup_free_ char *p = env_file_get("dockerd.env", key);
        char *t = NULL;
        if (p)
                (void)drv_read_file(p, &t, NULL, 0, NULL);
        return t;
}

static char *url, *ca, *cert, *key, *image, *reg, *reg_user, *reg_pass;
static struct docker *d;
static char job[64];

static int open_with(const char *c, const char *k, struct docker **out, struct drv_error *e)
{
        struct docker_endpoint ep = {url, ca, c, k};
        return docker_open(&ep, out, e);
}

TEST(version_is_negotiated_over_tls)
{
        CHECK_STREQ(docker_api_version(d), "1.41");
        CHECK(strlen(docker_engine_version(d)) > 0);
        CHECK_STREQ(docker_host_name(d), "127.0.0.1:2376");
}

TEST(wrong_client_cert_is_refused_with_a_clear_error)
{
        _cleanup_free_ char *wc = pem("DOCKER_WRONG_CERT"), *wk = pem("DOCKER_WRONG_KEY");
        CHECK(wc && wk);
        struct docker *x = NULL;
        struct drv_error e = {0};
        CHECK(open_with(wc, wk, &x, &e) < 0);
        printf("# %s\n", e.message);
        CHECK(strstr(e.message, "TLS refused") != NULL);
        CHECK(strstr(e.message, "127.0.0.1:2376") != NULL);
        CHECK(strstr(e.message, "/version") != NULL);
        /* and no client certificate at all */
        CHECK(open_with(NULL, NULL, &x, &e) < 0);
        CHECK(strstr(e.message, "TLS refused") != NULL);
        docker_close(x);
}

TEST(unreachable_host_is_named_quickly)
{
        struct docker_endpoint ep = {"tcp://127.0.0.1:1", ca, cert, key};
        struct docker *x = NULL;
        struct drv_error e = {0};
        uint64_t t0 = drv_now_ns();
        CHECK(docker_open(&ep, &x, &e) < 0);
        printf("# %s\n", e.message);
        CHECK(strstr(e.message, "host unreachable") != NULL);
        CHECK(strstr(e.message, "127.0.0.1:1") != NULL);
        CHECK(drv_now_ns() - t0 < 3000000000ull);
        docker_close(x);
}

static int raw(const char *method, const char *path, const char *hdr, long *st)
{
        const char *hdrs[] = {hdr, NULL};
        struct docker_req rq = {.method = method,
                                .path = path,
                                .versioned = true,
                                .headers = hdr ? hdrs : NULL,
                                .body_fd = -1};
        struct strbuf resp = STRBUF_INIT;
        struct drv_error e = {0};
        int r = docker_do(d, &rq, &resp, st, &e);
        if (r < 0 || *st >= 400 || strstr(resp.buf ? resp.buf : "", "\"error\""))
                printf("# %s %s: %ld %s %s\n", method, path, *st, e.message,
                       resp.buf ? resp.buf : "");
        bool bad = resp.buf && strstr(resp.buf, "\"error\"");
        strbuf_release(&resp);
        return r < 0 ? r : bad ? -EIO : 0;
}

static int progress_lines;
static void on_progress(void *ud, const char *id, const char *status)
{
        (void)ud;
        (void)id;
        (void)status;
        progress_lines++;
}

TEST(pull_with_registry_auth_and_clear_errors)
{
        CHECK(reg && reg_user && reg_pass);
        if (!reg)
                return;
        /* put the local image into the registry: tag + authenticated push */
        _cleanup_free_ char *repo = drv_asprintf("%s/drover/busybox", reg);
        _cleanup_free_ char *ref = drv_asprintf("%s:1", repo);
        _cleanup_free_ char *erepo = docker_escape(d, repo);
        _cleanup_free_ char *img = docker_escape(d, image);
        _cleanup_free_ char *tag = drv_asprintf("/images/%s/tag?repo=%s&tag=1", img, erepo);
        long st = 0;
        CHECK(raw("POST", tag, NULL, &st) == 0 && st == 201);
        _cleanup_free_ char *authjson =
            drv_asprintf("{\"username\":\"%s\",\"password\":\"%s\",\"serveraddress\":\"%s\"}",
                         reg_user, reg_pass, reg);
        unsigned char b64[512];
        EVP_EncodeBlock(b64, (unsigned char *)authjson, (int)strlen(authjson));
        _cleanup_free_ char *ah = drv_asprintf("X-Registry-Auth: %s", b64);
        _cleanup_free_ char *push = drv_asprintf("/images/%s/push?tag=1", erepo);
        CHECK(raw("POST", push, ah, &st) == 0 && st == 200);
        _cleanup_free_ char *eref = docker_escape(d, ref);
        _cleanup_free_ char *del = drv_asprintf("/images/%s", eref);
        CHECK(raw("DELETE", del, NULL, &st) == 0 && st == 200);
        struct drv_error e = {0};
        CHECK(docker_image_exists(d, ref, &e) == 0);

        /* no credentials: refused, and the message says so */
        CHECK(docker_pull(d, ref, NULL, NULL, NULL, &e) < 0);
        printf("# no auth: %s\n", e.message);
        CHECK(strstr(e.message, "127.0.0.1:2376") && strstr(e.message, "/images/create"));
        CHECK(strstr(e.message, "auth") != NULL);
        /* wrong password */
        struct js_auth bad = {reg_user, (char *)"wrong-password"};
        CHECK(docker_pull(d, ref, &bad, NULL, NULL, &e) < 0);
        printf("# wrong password: %s\n", e.message);
        CHECK(strstr(e.message, "registry authentication failed") != NULL);
        CHECK(strstr(e.message, "wrong-password") == NULL);
        /* right password */
        struct js_auth good = {reg_user, reg_pass};
        progress_lines = 0;
        drv_err_clear(&e);
        CHECK(docker_pull(d, ref, &good, on_progress, NULL, &e) == 0);
        if (e.code)
                printf("# %s\n", e.message);
        CHECK(progress_lines > 0);
        CHECK(docker_image_exists(d, ref, &e) == 1);
        /* an image that is not there */
        _cleanup_free_ char *nope = drv_asprintf("%s/drover/nope:1", reg);
        CHECK(docker_pull(d, nope, &good, NULL, NULL, &e) < 0);
        printf("# missing image: %s\n", e.message);
        CHECK(strstr(e.message, "nope") != NULL);
        CHECK(strstr(e.message, "not found") || strstr(e.message, "unknown"));
}

static char *run_out(const char *ctr, char *const *argv, const char *user, int *code)
{
        int fd = memfd_create("out", MFD_CLOEXEC);
        struct drv_error e = {0};
        int r = docker_exec_run(d, ctr, argv, user, fd, code, &e);
        if (r < 0) {
                printf("# exec: %s\n", e.message);
                close(fd);
                return NULL;
        }
        lseek(fd, 0, SEEK_SET);
        char *out = NULL;
        drv_read_fd(fd, &out, NULL, 0, NULL);
        close(fd);
        return out;
}

static char *primary;

TEST(create_start_exec_demux_and_exit_codes)
{
        char *argv_sh[] = {(char *)"/bin/sh", NULL};
        char *env[] = {(char *)"GREETING=hello", NULL};
        struct docker_container_spec s = {.image = image,
                                          .job = job,
                                          .entrypoint = argv_sh,
                                          .env = env,
                                          .workdir = "/home/circleci",
                                          .user = "circleci",
                                          .open_stdin = true,
                                          .memory_bytes = 256 << 20,
                                          .nano_cpus = 1000000000};
        struct drv_error e = {0};
        CHECK(docker_container_create(d, &s, &primary, &e) == 0);
        if (!primary) {
                printf("# %s\n", e.message);
                return;
        }
        CHECK(docker_container_start(d, primary, &e) == 0);
        int code = -1;
        char *a1[] = {(char *)"sh", (char *)"-c",
                      (char *)"echo out $GREETING; echo err >&2; pwd; id -u; exit 3", NULL};
        _cleanup_free_ char *o = run_out(primary, a1, NULL, &code);
        /* stdout and stderr are two streams: each keeps its order, not their interleaving */
        CHECK(o && strstr(o, "out hello\n") && strstr(o, "err\n"));
        CHECK(o && strstr(o, "/home/circleci\n") && strstr(o, "3434\n"));
        CHECK(o && strlen(o) == strlen("out hello\nerr\n/home/circleci\n3434\n"));
        CHECK_INTEQ(code, 3);
        /* a large output crosses many frames and curl buffers */
        char *a2[] = {(char *)"sh", (char *)"-c",
                      (char *)"i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxx; "
                              "echo e$i >&2; i=$((i+1)); done",
                      NULL};
        _cleanup_free_ char *big = run_out(primary, a2, "root", &code);
        CHECK_INTEQ(code, 0);
        CHECK(big && strstr(big, "line-2999-xxxxxxxxxxxxxxxx\n") && strstr(big, "e2999\n"));
        CHECK(big && strlen(big) > 3000 * 27);
        /* exec of a missing program */
        char *a3[] = {(char *)"/nope", NULL};
        _cleanup_free_ char *o3 = run_out(primary, a3, NULL, &code);
        CHECK(code == 126 || code == 127);
        CHECK(o3 && strstr(o3, "/nope")); /* the engine's message names the program */
        /* container limits from the spec */
        _cleanup_free_ char *p = drv_asprintf("/containers/%s/json", primary);
        json_t *j = NULL;
        CHECK(docker_call(d, "GET", p, NULL, &j, NULL, &e) == 0);
        json_t *hc = json_object_get(j, "HostConfig");
        CHECK_INTEQ(json_integer_value(json_object_get(hc, "Memory")), 256 << 20);
        CHECK_INTEQ(json_integer_value(json_object_get(hc, "NanoCpus")), 1000000000);
        json_t *lb = json_object_get(json_object_get(j, "Config"), "Labels");
        CHECK_STREQ(json_string_value(json_object_get(lb, "drover.managed")), "true");
        CHECK_STREQ(json_string_value(json_object_get(lb, "drover.job")), job);
        json_decref(j);
}

static int write_tar(int fd, const char *name, const char *content)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_open_fd(a, fd);
        struct archive_entry *en = archive_entry_new();
        archive_entry_set_pathname(en, name);
        archive_entry_set_size(en, (la_int64_t)strlen(content));
        archive_entry_set_filetype(en, AE_IFREG);
        archive_entry_set_perm(en, 0644);
        archive_write_header(a, en);
        archive_write_data(a, content, strlen(content));
        archive_entry_free(en);
        archive_write_close(a);
        archive_write_free(a);
        return 0;
}

TEST(archive_round_trip)
{
        CHECK(primary != NULL);
        if (!primary)
                return;
        int fd = memfd_create("tar", MFD_CLOEXEC);
        write_tar(fd, "hello.txt", "hello from drover\n");
        lseek(fd, 0, SEEK_SET);
        struct drv_error e = {0};
        CHECK(docker_archive_put(d, primary, "/tmp", fd, &e) == 0);
        close(fd);
        int code = -1;
        char *a[] = {(char *)"cat", (char *)"/tmp/hello.txt", NULL};
        _cleanup_free_ char *o = run_out(primary, a, NULL, &code);
        CHECK_STREQ(o, "hello from drover\n");
        int out = memfd_create("get", MFD_CLOEXEC);
        CHECK(docker_archive_get(d, primary, "/tmp/hello.txt", out, 0, &e) == 0);
        lseek(out, 0, SEEK_SET);
        struct archive *ar = archive_read_new();
        archive_read_support_format_tar(ar);
        CHECK(archive_read_open_fd(ar, out, 4096) == ARCHIVE_OK);
        struct archive_entry *en;
        char buf[64] = {0};
        CHECK(archive_read_next_header(ar, &en) == ARCHIVE_OK);
        CHECK_STREQ(archive_entry_pathname(en), "hello.txt");
        CHECK(archive_read_data(ar, buf, sizeof(buf) - 1) == 18);
        CHECK_STREQ(buf, "hello from drover\n");
        archive_read_free(ar);
        close(out);
        CHECK_INTEQ(docker_path_exists(d, primary, "/tmp/hello.txt", &e), 1);
        CHECK_INTEQ(docker_path_exists(d, primary, "/tmp/nope.txt", &e), 0);
        /* a missing path is -ENOENT with Docker's message */
        out = memfd_create("get", MFD_CLOEXEC);
        CHECK(docker_archive_get(d, primary, "/no/such", out, 0, &e) == -ENOENT);
        printf("# %s\n", e.message);
        CHECK(strstr(e.message, "/no/such") || strstr(e.message, "no such"));
        close(out);
}

TEST(missing_image_names_image_host_and_endpoint)
{
        struct docker_container_spec s = {.image = "local/nope:9", .job = job};
        char *id = NULL;
        struct drv_error e = {0};
        CHECK(docker_container_create(d, &s, &id, &e) == -ENOENT);
        printf("# %s\n", e.message);
        CHECK(strstr(e.message, "local/nope:9") && strstr(e.message, "127.0.0.1:2376"));
        free(id);
}

TEST(service_reachable_by_name_and_localhost)
{
        struct drv_error e = {0};
        _cleanup_free_ char *net = NULL, *p = NULL, *svc = NULL;
        _cleanup_free_ char *netname = drv_asprintf("drover-%s", job);
        CHECK(docker_network_create(d, netname, job, &net, &e) == 0);
        char *sh[] = {(char *)"/bin/sh", NULL};
        char *aliases[] = {(char *)"web", NULL};
        struct docker_container_spec ps = {.image = image,
                                           .job = job,
                                           .entrypoint = sh,
                                           .open_stdin = true,
                                           .network = netname,
                                           .aliases = aliases};
        CHECK(docker_container_create(d, &ps, &p, &e) == 0);
        CHECK(p && docker_container_start(d, p, &e) == 0);
        if (!p)
                return;
        _cleanup_free_ char *mode = drv_asprintf("container:%s", p);
        char *cmd[] = {(char *)"httpd", (char *)"-f",   (char *)"-p", (char *)"8080",
                       (char *)"-h",    (char *)"/etc", NULL};
        struct docker_container_spec ss = {
            .image = image, .job = job, .entrypoint = cmd, .network = mode};
        CHECK(docker_container_create(d, &ss, &svc, &e) == 0);
        CHECK(svc && docker_container_start(d, svc, &e) == 0);
        int code = -1;
        char *w1[] = {(char *)"sh", (char *)"-c",
                      (char *)"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- "
                              "http://localhost:8080/group && exit 0; sleep 0.2; done; exit 1",
                      NULL};
        _cleanup_free_ char *o1 = run_out(p, w1, NULL, &code);
        CHECK_INTEQ(code, 0);
        CHECK(o1 && strstr(o1, "circleci:x:3434:"));
        char *w2[] = {(char *)"wget", (char *)"-q", (char *)"-O-", (char *)"http://web:8080/group",
                      NULL};
        _cleanup_free_ char *o2 = run_out(p, w2, NULL, &code);
        if (code)
                printf("# by name: %s\n", o2 ? o2 : "");
        CHECK_INTEQ(code, 0);
        CHECK(o2 && strstr(o2, "circleci:x:3434:"));
}

TEST(cleanup_removes_only_drovers_objects)
{
        struct drv_error e = {0};
        /* something that is not drover's: a container without our labels */
        char other[64];
        snprintf(other, sizeof(other), "not-drovers-%d", (int)getpid());
        json_t *body = json_pack("{s:s, s:[s]}", "Image", image, "Cmd", "true");
        json_t *ans = NULL;
        _cleanup_free_ char *cpath = drv_asprintf("/containers/create?name=%s", other);
        CHECK(docker_call(d, "POST", cpath, body, &ans, NULL, &e) == 0);
        json_decref(body);
        json_decref(ans);
        /* a volume of the job */
        _cleanup_free_ char *vol = drv_asprintf("drover-test-vol-%d", (int)getpid());
        body = json_pack("{s:s, s:{s:s, s:s}}", "Name", vol, "Labels", DOCKER_LABEL_MANAGED, "true",
                         DOCKER_LABEL_JOB, job);
        CHECK(docker_call(d, "POST", "/volumes/create", body, NULL, NULL, &e) == 0);
        json_decref(body);
        unsigned n = 0;
        CHECK(docker_cleanup(d, job, &n, &e) == 0);
        if (e.code)
                printf("# %s\n", e.message);
        CHECK(n >= 5); /* 3 containers, 1 network, 1 volume */
        unsigned again = 9;
        CHECK(docker_cleanup(d, job, &again, &e) == 0);
        CHECK_INTEQ(again, 0);
        /* nothing of the job is left; the other container is untouched */
        _cleanup_free_ char *lbl = drv_asprintf("{\"label\":[\"drover.job=%s\"]}", job);
        _cleanup_free_ char *elbl = docker_escape(d, lbl);
        const char *kinds[] = {"/containers/json?all=1&filters=", "/networks?filters="};
        for (size_t k = 0; k < 2; k++) {
                _cleanup_free_ char *p = drv_asprintf("%s%s", kinds[k], elbl);
                json_t *l = NULL;
                CHECK(docker_call(d, "GET", p, NULL, &l, NULL, &e) == 0);
                CHECK_INTEQ(json_array_size(l), 0);
                json_decref(l);
        }
        _cleanup_free_ char *vp = drv_asprintf("/volumes/%s", vol);
        CHECK(docker_call(d, "GET", vp, NULL, NULL, NULL, &e) == -ENOENT);
        _cleanup_free_ char *op = drv_asprintf("/containers/%s/json", other);
        CHECK(docker_call(d, "GET", op, NULL, NULL, NULL, &e) == 0);
        _cleanup_free_ char *dp = drv_asprintf("/containers/%s?force=1", other);
        CHECK(docker_call(d, "DELETE", dp, NULL, NULL, NULL, &e) == 0);
}

int main(void)
{
        url = env_file_get("dockerd.env", "DOCKER_URL");
        image = env_file_get("dockerd.env", "DOCKER_IMAGE");
        ca = pem("DOCKER_CA");
        cert = pem("DOCKER_CERT");
        key = pem("DOCKER_KEY");
        reg = env_file_get("registry.env", "REGISTRY_ADDR");
        reg_user = env_file_get("registry.env", "REGISTRY_USER");
        reg_pass = env_file_get("registry.env", "REGISTRY_PASSWORD");
        if (!url || !ca || !cert || !key || !image) {
                printf("Bail out! dockerd.env missing: run scripts/peers/dockerd.sh start\n");
                return 1;
        }
        snprintf(job, sizeof(job), "client-test-%d", (int)getpid());
        struct drv_error e = {0};
        if (open_with(cert, key, &d, &e) < 0) {
                printf("Bail out! %s\n", e.message);
                return 1;
        }
        RUN(version_is_negotiated_over_tls);
        RUN(wrong_client_cert_is_refused_with_a_clear_error);
        RUN(unreachable_host_is_named_quickly);
        RUN(pull_with_registry_auth_and_clear_errors);
        RUN(create_start_exec_demux_and_exit_codes);
        RUN(archive_round_trip);
        RUN(missing_image_names_image_host_and_endpoint);
        RUN(service_reachable_by_name_and_localhost);
        RUN(cleanup_removes_only_drovers_objects);
        free(primary);
        docker_close(d);
        free(url), free(image), free(ca), free(cert), free(key), free(reg), free(reg_user),
            free(reg_pass);
        TEST_DONE();
}
