/* test_s3.c: the object store against a real Ceph radosgw (scripts/peers/radosgw.sh writes
 * $DROVER_PEERS_DIR/radosgw.env; missing = FAIL) and through tests/doubles/faulty_proxy.py,
 * plus the same operations on file://. */
#include "artifacts/objstore.h"
#include "testlib.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static char endpoint[256], region[64], ak[128], sk[128], bucket[64];
static char run_id[32];
static char filedir[64];

static int load_env(void)
{
        const char *d = getenv("DROVER_PEERS_DIR");
        char path[512];
        snprintf(path, sizeof(path), "%s/radosgw.env", d && d[0] ? d : "/tmp/drover-peers");
        FILE *f = fopen(path, "re");
        if (!f) {
                printf("# %s missing: start the peer with scripts/peers/radosgw.sh start\n", path);
                return -1;
        }
        char line[512];
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                char *eq = strchr(line, '=');
                if (!eq)
                        continue;
                *eq++ = '\0';
                char *dst = !strcmp(line, "S3_ENDPOINT")     ? endpoint
                            : !strcmp(line, "S3_REGION")     ? region
                            : !strcmp(line, "S3_ACCESS_KEY") ? ak
                            : !strcmp(line, "S3_SECRET_KEY") ? sk
                            : !strcmp(line, "S3_BUCKET")     ? bucket
                                                             : NULL;
                if (dst)
                        snprintf(dst, 128, "%s", eq);
        }
        fclose(f);
        return endpoint[0] && bucket[0] ? 0 : -1;
}

static struct objstore *open_s3(const char *ep, const char *secret, bool path_style,
                                const char *prefix)
{
        char url[256];
        snprintf(url, sizeof(url), "s3://%s/%s", bucket, prefix);
        struct js_storage cfg = {.url = url,
                                 .endpoint = (char *)ep,
                                 .region = region,
                                 .access_key = ak,
                                 .secret_key = (char *)secret,
                                 .path_style = path_style};
        struct objstore *s = NULL;
        struct drv_error e = {0};
        if (objstore_open(&cfg, &s, &e) < 0)
                printf("# open: %s\n", e.message);
        return s;
}

static int mem_fd(const void *data, size_t n)
{
        int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 || drv_write_all(fd, data, n) < 0 || lseek(fd, 0, SEEK_SET) < 0)
                return -1;
        return fd;
}

static char *read_all(int fd, size_t *len)
{
        char *buf = NULL;
        struct drv_error e = {0};
        if (drv_read_fd(fd, &buf, len, 256u << 20, &e) < 0)
                return NULL;
        return buf;
}

static char *pattern(size_t n, unsigned seed)
{
        char *b = malloc(n);
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b[i] = (char)x;
        }
        return b;
}

static void check_read_stream(struct objstore *s, const char *key, const char *data, size_t size);

/* put, exists, get, ranged get, list with mtimes, delete: the whole interface on one store. */
static void roundtrip(struct objstore *s, const char *tag)
{
        struct drv_error e = {0};
        char key[128], k2[128];
        snprintf(key, sizeof(key), "rt/%s/a b+c=d&e%%f.txt", tag);
        snprintf(k2, sizeof(k2), "rt/%s/z/second", tag);
        const char *text = "hello object store\n";
        int fd = mem_fd(text, strlen(text));
        CHECK(objstore_put_fd(s, key, fd, &e) == 0);
        if (e.code)
                printf("# %s\n", e.message);
        close(fd);
        int wfd = -1;
        CHECK(objstore_begin(s, k2, &wfd, &e) == 0);
        CHECK(drv_write_all(wfd, "12345", 5) == 0);
        CHECK(objstore_commit(s, k2, wfd, &e) == 0);
        bool ex = false;
        CHECK(objstore_exists(s, key, &ex, &e) == 0 && ex);
        CHECK(objstore_exists(s, "rt/none/such", &ex, &e) == 0 && !ex);
        int rfd = -1;
        CHECK(objstore_get(s, key, &rfd, &e) == 0);
        size_t n = 0;
        char *got = rfd >= 0 ? read_all(rfd, &n) : NULL;
        CHECK(got && n == strlen(text) && memcmp(got, text, n) == 0);
        free(got);
        if (rfd >= 0)
                close(rfd);
        CHECK(objstore_get_range(s, key, 6, 6, &rfd, &e) == 0);
        got = rfd >= 0 ? read_all(rfd, &n) : NULL;
        CHECK(got && n == 6 && memcmp(got, "object", 6) == 0);
        free(got);
        if (rfd >= 0)
                close(rfd);
        CHECK(objstore_get(s, "rt/none/such", &rfd, &e) == -ENOENT);
        struct objstore_entry *ents = NULL;
        size_t ne = 0;
        char pfx[64];
        snprintf(pfx, sizeof(pfx), "rt/%s/", tag);
        CHECK(objstore_list(s, pfx, &ents, &ne, &e) == 0);
        CHECK_INTEQ(ne, 2);
        if (ne == 2) {
                CHECK_STREQ(ents[0].key, key);
                CHECK_STREQ(ents[1].key, k2);
                CHECK_INTEQ(ents[0].size, strlen(text));
                int64_t now = (int64_t)time(NULL) * 1000000000LL;
                CHECK(ents[0].mtime_ns > now - 600 * 1000000000LL &&
                      ents[0].mtime_ns < now + 600 * 1000000000LL);
        }
        objstore_entries_free(ents, ne);
        CHECK(objstore_delete(s, key, &e) == 0);
        CHECK(objstore_exists(s, key, &ex, &e) == 0 && !ex);
        CHECK(objstore_delete(s, k2, &e) == 0);
}

TEST(s3_roundtrip_path_style)
{
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        CHECK(s != NULL);
        if (s)
                roundtrip(s, "path");
        objstore_free(s);
}

TEST(s3_roundtrip_virtual_host_style)
{
        /* bucket.localhost: libcurl resolves *.localhost to loopback; rgw dns name = localhost */
        char ep[256];
        snprintf(ep, sizeof(ep), "%s", endpoint);
        char *h = strstr(ep, "127.0.0.1");
        if (h) {
                char rest[128];
                snprintf(rest, sizeof(rest), "%s", h + strlen("127.0.0.1"));
                snprintf(h, sizeof(ep) - (size_t)(h - ep), "localhost%s", rest);
        }
        struct objstore *s = open_s3(ep, sk, false, run_id);
        CHECK(s != NULL);
        if (s)
                roundtrip(s, "vhost");
        objstore_free(s);
}

TEST(file_roundtrip)
{
        char url[128];
        snprintf(url, sizeof(url), "file://%s", filedir);
        struct js_storage cfg = {.url = url};
        struct objstore *s = NULL;
        struct drv_error e = {0};
        CHECK(objstore_open(&cfg, &s, &e) == 0);
        if (s)
                roundtrip(s, "file");
        objstore_free(s);
}

TEST(s3_wrong_secret_fails)
{
        struct objstore *s = open_s3(endpoint, "not-the-secret", true, run_id);
        CHECK(s != NULL);
        if (!s)
                return;
        struct drv_error e = {0};
        int fd = mem_fd("x", 1);
        int r = objstore_put_fd(s, "wrong/secret", fd, &e);
        close(fd);
        CHECK(r == -EACCES);
        printf("# %s\n", e.message);
        CHECK(strstr(e.message, "403") != NULL);
        CHECK(strstr(e.message, "SignatureDoesNotMatch") != NULL);
        bool ex = true;
        CHECK(objstore_exists(s, "wrong/secret", &ex, &e) < 0);
        objstore_free(s);
}

static void multipart_case(struct objstore *s, const char *key, size_t size)
{
        struct drv_error e = {0};
        char *data = pattern(size, 7);
        int fd = mem_fd(data, size);
        int r = objstore_put_fd(s, key, fd, &e);
        CHECK_INTEQ(r, 0);
        if (r < 0)
                printf("# %s\n", e.message);
        drv_err_clear(&e);
        close(fd);
        int rfd = -1;
        CHECK(objstore_get(s, key, &rfd, &e) == 0);
        if (e.code)
                printf("# %s\n", e.message);
        size_t n = 0;
        char *got = rfd >= 0 ? read_all(rfd, &n) : NULL;
        CHECK(got && n == size && memcmp(got, data, size) == 0);
        free(got);
        if (rfd >= 0)
                close(rfd);
        check_read_stream(s, key, data, size);
        CHECK(objstore_get_range(s, key, size - 100, 100, &rfd, &e) == 0);
        got = rfd >= 0 ? read_all(rfd, &n) : NULL;
        CHECK(got && n == 100 && memcmp(got, data + size - 100, 100) == 0);
        free(got);
        if (rfd >= 0)
                close(rfd);
        free(data);
        CHECK(objstore_delete(s, key, &e) == 0);
}

TEST(s3_multipart_parallel_parts)
{
        setenv("DROVER_S3_PART_SIZE", "5M", 1); /* 13 MiB = 3 parts */
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        unsetenv("DROVER_S3_PART_SIZE");
        CHECK(s != NULL);
        if (s)
                multipart_case(s, "mp/big.bin", (13u << 20) + 12345);
        objstore_free(s);
}

TEST(s3_put_many_parallel)
{
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        CHECK(s != NULL);
        if (!s)
                return;
        struct objstore_item it[40];
        char keys[40][64];
        struct drv_error e = {0};
        for (int i = 0; i < 40; i++) {
                char body[64];
                snprintf(keys[i], sizeof(keys[i]), "many/f%02d.json", i);
                snprintf(body, sizeof(body), "{\"i\": %d}", i);
                it[i] = (struct objstore_item){.key = keys[i],
                                               .fd = mem_fd(body, strlen(body)),
                                               .content_type = "application/json"};
        }
        CHECK(objstore_put_many(s, it, 40, &e) == 0);
        if (e.code)
                printf("# %s\n", e.message);
        struct objstore_entry *ents = NULL;
        size_t ne = 0;
        CHECK(objstore_list(s, "many/", &ents, &ne, &e) == 0);
        CHECK_INTEQ(ne, 40);
        objstore_entries_free(ents, ne);
        for (int i = 0; i < 40; i++) {
                close(it[i].fd);
                objstore_delete(s, keys[i], &e);
        }
        objstore_free(s);
}

TEST(s3_listing_pages_with_continuation)
{
        /* pages of 10 keys (DROVER_S3_LIST_PAGE; radosgw's own are 1000): 25 objects need two
         * continuation tokens */
        setenv("DROVER_S3_LIST_PAGE", "10", 1);
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        unsetenv("DROVER_S3_LIST_PAGE");
        CHECK(s != NULL);
        if (!s)
                return;
        enum { N = 25 };
        static struct objstore_item it[N];
        static char keys[N][48];
        struct drv_error e = {0};
        int fd = mem_fd("", 0);
        for (int i = 0; i < N; i++) {
                snprintf(keys[i], sizeof(keys[i]), "page/k%05d", i);
                it[i] = (struct objstore_item){.key = keys[i], .fd = fd};
        }
        CHECK(objstore_put_many(s, it, N, &e) == 0);
        close(fd);
        struct objstore_entry *ents = NULL;
        size_t ne = 0;
        CHECK(objstore_list(s, "page/", &ents, &ne, &e) == 0);
        CHECK_INTEQ(ne, N);
        if (ne == N)
                CHECK_STREQ(ents[N - 1].key, "page/k00024");
        objstore_entries_free(ents, ne);
        objstore_free(s);
}

/* Read key through objstore_read_begin/end and compare with data. */
static void check_read_stream(struct objstore *s, const char *key, const char *data, size_t size)
{
        struct drv_error e = {0};
        int fd = -1;
        void *h = NULL;
        CHECK(objstore_read_begin(s, key, &fd, &h, &e) == 0);
        if (fd < 0)
                return;
        char *got = malloc(size + 1);
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, got + n, size + 1 - n);
                if (k <= 0)
                        break;
                n += (size_t)k;
                if (n == size + 1)
                        break;
        }
        CHECK_INTEQ(n, size);
        CHECK(n == size && memcmp(got, data, size) == 0);
        int r = objstore_read_end(s, h, fd, &e);
        CHECK_INTEQ(r, 0);
        if (r < 0)
                printf("# %s\n", e.message);
        free(got);
        void *h2 = NULL;
        CHECK(objstore_read_begin(s, "none/such", &fd, &h2, &e) == -ENOENT);
}

static void stream_case(struct objstore *s, const char *key, size_t size, bool abort_it)
{
        struct drv_error e = {0};
        char *data = pattern(size, 11);
        int wfd = -1;
        CHECK(objstore_begin(s, key, &wfd, &e) == 0);
        for (size_t off = 0; off < size; off += 100000) /* in odd-sized writes */
                CHECK(drv_write_all(wfd, data + off, size - off < 100000 ? size - off : 100000) ==
                      0);
        if (abort_it) {
                objstore_abort(s, key, wfd);
        } else {
                int r = objstore_commit(s, key, wfd, &e);
                CHECK_INTEQ(r, 0);
                if (r < 0)
                        printf("# %s\n", e.message);
        }
        int rfd = -1;
        int r = objstore_get(s, key, &rfd, &e);
        if (abort_it) {
                CHECK_INTEQ(r, -ENOENT);
        } else {
                CHECK_INTEQ(r, 0);
                size_t n = 0;
                char *got = rfd >= 0 ? read_all(rfd, &n) : NULL;
                CHECK_INTEQ(n, size);
                CHECK(got && n == size && memcmp(got, data, size) == 0);
                free(got);
                check_read_stream(s, key, data, size);
        }
        if (rfd >= 0)
                close(rfd);
        free(data);
        objstore_delete(s, key, &e);
}

TEST(s3_streaming_uploads_small_large_and_aborted)
{
        setenv("DROVER_S3_PART_SIZE", "5M", 1);
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        unsetenv("DROVER_S3_PART_SIZE");
        CHECK(s != NULL);
        if (!s)
                return;
        stream_case(s, "stream/small", 1000, false);
        stream_case(s, "stream/exact", 5u << 20, false);
        stream_case(s, "stream/large", (27u << 20) + 77, false); /* 6 parts, 4 at a time */
        stream_case(s, "stream/aborted-small", 1000, true);
        stream_case(s, "stream/aborted-large", (12u << 20), true);
        objstore_free(s);
}

static pid_t start_proxy(const char *mode, const char *faults, int *port)
{
        const char *src = getenv("DROVER_SRC");
        char script[512], pf[128], up[300];
        snprintf(script, sizeof(script), "%s/tests/doubles/faulty_proxy.py", src ? src : ".");
        snprintf(pf, sizeof(pf), "/tmp/drover-proxy-%d-%s.port", (int)getpid(), mode);
        snprintf(up, sizeof(up), "%s", endpoint);
        unlink(pf);
        char *argv[] = {"python3",  script,         "--upstream",  up, "--mode", (char *)mode,
                        "--faults", (char *)faults, "--port-file", pf, NULL};
        pid_t pid;
        if (posix_spawnp(&pid, "python3", NULL, NULL, argv, environ) != 0)
                return -1;
        for (int i = 0; i < 200; i++) {
                char *t = NULL;
                struct drv_error e = {0};
                if (drv_read_file(pf, &t, NULL, 0, &e) == 0) {
                        *port = atoi(t);
                        free(t);
                        unlink(pf);
                        return pid;
                }
                usleep(25000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
}

static void stop_proxy(pid_t pid)
{
        if (pid > 0) {
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
        }
}

TEST(s3_survives_injected_failures)
{
        int port = 0;
        pid_t pid = start_proxy("first", "500,503,slowdown,reset,reset-body", &port);
        CHECK(pid > 0);
        if (pid <= 0)
                return;
        char ep[64];
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
        setenv("DROVER_S3_BACKOFF_MS", "20", 1);
        setenv("DROVER_S3_PART_SIZE", "5M", 1);
        struct objstore *s = open_s3(ep, sk, true, run_id);
        unsetenv("DROVER_S3_PART_SIZE");
        CHECK(s != NULL);
        if (s) {
                roundtrip(s, "faulty"); /* every request fails once, in each way, then passes */
                multipart_case(s, "faulty/mp.bin", (11u << 20) + 3);
                stream_case(s, "faulty/stream.bin", (11u << 20) + 5, false);
        }
        objstore_free(s);
        stop_proxy(pid);
        unsetenv("DROVER_S3_BACKOFF_MS");
}

TEST(s3_persistent_failure_surfaces_and_leaves_nothing)
{
        int port = 0;
        pid_t pid = start_proxy("always", "503", &port);
        CHECK(pid > 0);
        if (pid <= 0)
                return;
        char ep[64];
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
        setenv("DROVER_S3_BACKOFF_MS", "5", 1);
        setenv("DROVER_S3_ATTEMPTS", "3", 1);
        struct objstore *s = open_s3(ep, sk, true, run_id);
        unsetenv("DROVER_S3_ATTEMPTS");
        unsetenv("DROVER_S3_BACKOFF_MS");
        struct drv_error e = {0};
        if (s) {
                int fd = mem_fd("abc", 3);
                CHECK(objstore_put_fd(s, "fail/x", fd, &e) < 0);
                printf("# %s\n", e.message);
                CHECK(strstr(e.message, "503") != NULL);
                CHECK(strstr(e.message, "fail/x") != NULL);
                close(fd);
        }
        objstore_free(s);
        stop_proxy(pid);
        /* nothing visible directly on the server */
        struct objstore *d = open_s3(endpoint, sk, true, run_id);
        bool ex = true;
        CHECK(d && objstore_exists(d, "fail/x", &ex, &e) == 0 && !ex);
        objstore_free(d);
}

TEST(s3_forward_proxy_from_environment)
{
        int port = 0;
        pid_t pid = start_proxy("first", "503", &port);
        CHECK(pid > 0);
        if (pid <= 0)
                return;
        char px[64];
        snprintf(px, sizeof(px), "http://127.0.0.1:%d", port);
        setenv("http_proxy", px, 1);
        setenv("NO_PROXY", "", 1);
        setenv("DROVER_S3_BACKOFF_MS", "5", 1);
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        if (s)
                roundtrip(s, "proxied");
        objstore_free(s);
        unsetenv("http_proxy");
        unsetenv("NO_PROXY");
        unsetenv("DROVER_S3_BACKOFF_MS");
        stop_proxy(pid);
}

/* Leave nothing of this run in the shared peer's small store. */
static void delete_run_objects(void)
{
        struct objstore *s = open_s3(endpoint, sk, true, run_id);
        struct objstore_entry *ents = NULL;
        size_t ne = 0;
        struct drv_error e = {0};
        if (s && objstore_list(s, "", &ents, &ne, &e) == 0)
                for (size_t i = 0; i < ne; i++)
                        if (objstore_delete(s, ents[i].key, &e) < 0)
                                printf("# cleanup: %s\n", e.message);
        objstore_entries_free(ents, ne);
        objstore_free(s);
}

int main(void)
{
        if (getenv("DROVER_TEST_DEBUG"))
                drv_log_set_level(DRV_LOG_DEBUG);
        snprintf(run_id, sizeof(run_id), "t%d-%ld", (int)getpid(), (long)time(NULL));
        snprintf(filedir, sizeof(filedir), "/tmp/drover-s3test-%d", (int)getpid());
        if (load_env() < 0) {
                printf("1..1\nnot ok 1 - radosgw env (scripts/peers/radosgw.sh start)\n");
                return 1;
        }
        RUN(file_roundtrip);
        RUN(s3_roundtrip_path_style);
        RUN(s3_roundtrip_virtual_host_style);
        RUN(s3_wrong_secret_fails);
        RUN(s3_multipart_parallel_parts);
        RUN(s3_put_many_parallel);
        RUN(s3_streaming_uploads_small_large_and_aborted);
        RUN(s3_listing_pages_with_continuation);
        RUN(s3_survives_injected_failures);
        RUN(s3_persistent_failure_surfaces_and_leaves_nothing);
        RUN(s3_forward_proxy_from_environment);
        delete_run_objects();
        struct drv_error e = {0};
        drv_rm_rf(filedir, &e);
        TEST_DONE();
}
