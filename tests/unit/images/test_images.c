/* test_images.c: image references, manifests (index -> platform), configs, layer unpacking
 * (whiteouts, opaque dirs, escapes, entries libarchive names NULL), the layer store's locks, leases
 * and LRU GC. */
#include "executor/images/store_int.h"
#include "rawtar.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#define H64(c)                                                                                     \
        c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
            c c c c c c c c c c c c c c c c c c c
#define D(c) "sha256:" H64(c)

static char tmproot[] = "/tmp/drover-img-unit-XXXXXX";

TEST(refs_are_normalised)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
            {"alpine", "docker.io/library/alpine:latest"},
            {"alpine:3.19", "docker.io/library/alpine:3.19"},
            {"cimg/base:2024.01", "docker.io/cimg/base:2024.01"},
            {"127.0.0.1:5443/a/b:1", "127.0.0.1:5443/a/b:1"},
            {"localhost/x", "localhost/x:latest"},
            {"ghcr.io/o/r", "ghcr.io/o/r:latest"},
            {"index.docker.io/library/busybox:1", "docker.io/library/busybox:1"},
            {"docker.io/busybox", "docker.io/library/busybox:latest"},
            {"a/b@" D("a"), "docker.io/a/b@" D("a")},
            {"h:1/a:t@" D("b"), "h:1/a:t@" D("b")},
        };
        for (size_t i = 0; i < DRV_ARRAY_SIZE(cases); i++) {
                struct img_ref r;
                struct drv_error e = {0};
                CHECK(img_ref_parse(cases[i].in, &r, &e) == 0);
                char *s = img_ref_format(&r);
                CHECK_STREQ(s, cases[i].out);
                free(s);
                img_ref_free(&r);
        }
        static const char *bad[] = {"",      "UPPER/case", "a/b@sha256:123", "a//b",
                                    "a:b:c", "a/../b",     "a@md5:abc",      "x:-bad"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(bad); i++) {
                struct img_ref r;
                struct drv_error e = {0};
                int rc = img_ref_parse(bad[i], &r, &e);
                if (rc == 0) {
                        printf("#   accepted '%s'\n", bad[i]);
                        img_ref_free(&r);
                }
                CHECK(rc < 0 && e.message[0]);
        }
}

static int parse_man(const char *json, const char *ct, const char *arch, struct img_manifest *m,
                     struct drv_error *e)
{
        return img_manifest_parse(json, strlen(json), ct, arch, m, e);
}

TEST(loopback_is_exact_and_egress_by_address)
{
        CHECK(img_host_is_loopback("localhost"));
        CHECK(img_host_is_loopback("LOCALHOST:5000"));
        CHECK(img_host_is_loopback("127.0.0.1:5000"));
        CHECK(img_host_is_loopback("127.9.8.7"));
        CHECK(img_host_is_loopback("[::1]:5000"));
        CHECK(img_host_is_loopback("[::ffff:127.0.0.1]:80/token"));
        CHECK(!img_host_is_loopback("localhost.attacker.example:5000"));
        CHECK(!img_host_is_loopback("127.0.0.1.nip.io"));
        CHECK(!img_host_is_loopback("localhostx"));
        CHECK(!img_host_is_loopback("[::1.example]"));
        CHECK(!img_host_is_loopback("10.0.0.1"));
        struct img_egress eg;
        /* a job's registry on loopback, a private or a link-local address: refused unless the
         * operator lists it (by name, or its address); the operator's own pulls pass */
        unsetenv("DROVER_IMAGE_REGISTRY_ALLOW");
        CHECK_INTEQ(img_egress_init(&eg, "http://127.0.0.1:5000", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "https://localhost:5000", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "https://10.9.8.7", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "https://[::1]:5000", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "http://127.0.0.1:5000", true, NULL), 0);
        setenv("DROVER_IMAGE_REGISTRY_ALLOW", "127.0.0.1:5001, LOCALHOST,10.9.8.7:443", 1);
        CHECK_INTEQ(img_egress_init(&eg, "http://127.0.0.1:5000", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "https://localhost:5000", false, NULL), 0);
        CHECK_INTEQ(img_egress_init(&eg, "https://10.9.8.7", false, NULL), 0);
        CHECK_INTEQ(img_egress_init(&eg, "https://10.9.8.7:444", false, NULL), -EPERM);
        CHECK_INTEQ(img_egress_init(&eg, "https://127.0.0.1:50011", false, NULL), -EPERM);
        setenv("DROVER_IMAGE_REGISTRY_ALLOW", "127.0.0.1:5000", 1);
        CHECK_INTEQ(img_egress_init(&eg, "http://127.0.0.1:5000", false, NULL), 0);
        unsetenv("DROVER_IMAGE_REGISTRY_ALLOW");
        static const struct {
                const char *ip;
                bool ok;
        } cases[] = {{"127.0.0.1", true},        {"127.0.0.2", false},
                     {"169.254.169.254", false}, {"10.1.2.3", false},
                     {"172.20.0.1", false},      {"192.168.1.1", false},
                     {"100.64.0.1", false},      {"0.0.0.0", false},
                     {"8.8.8.8", true},          {"::1", false},
                     {"fe80::1", false},         {"fd00::1", false},
                     {"::ffff:10.0.0.1", false}, {"::ffff:127.0.0.1", true},
                     {"2001:4860::8888", true}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(cases); i++) {
                struct sockaddr_storage ss = {0};
                struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
                if (inet_pton(AF_INET, cases[i].ip, &s4->sin_addr) == 1)
                        s4->sin_family = AF_INET;
                else if (inet_pton(AF_INET6, cases[i].ip, &s6->sin6_addr) == 1)
                        s6->sin6_family = AF_INET6;
                char why[96] = "";
                bool ok = img_egress_allowed(&eg, (struct sockaddr *)&ss, why, sizeof(why));
                if (ok != cases[i].ok)
                        fprintf(stderr, "egress %s: %d (%s)\n", cases[i].ip, ok, why);
                CHECK(ok == cases[i].ok);
        }
        setenv("DROVER_IMAGE_EGRESS_ALLOW", "10.1.0.0/16, 192.168.1.1", 1);
        struct sockaddr_in a = {.sin_family = AF_INET};
        char why[96];
        inet_pton(AF_INET, "10.1.200.3", &a.sin_addr);
        CHECK(img_egress_allowed(&eg, (struct sockaddr *)&a, why, sizeof(why)));
        inet_pton(AF_INET, "10.2.0.1", &a.sin_addr);
        CHECK(!img_egress_allowed(&eg, (struct sockaddr *)&a, why, sizeof(why)));
        CHECK(strstr(why, "10.2.0.1 (private)") != NULL);
        unsetenv("DROVER_IMAGE_EGRESS_ALLOW");
        setenv("DROVER_SANDBOX_EGRESS_ALLOW", "10.2.0.0/16:5000", 1); /* the jobs' list */
        a.sin_port = htons(5000);
        CHECK(img_egress_allowed(&eg, (struct sockaddr *)&a, why, sizeof(why)));
        a.sin_port = htons(80);
        CHECK(!img_egress_allowed(&eg, (struct sockaddr *)&a, why, sizeof(why)));
        unsetenv("DROVER_SANDBOX_EGRESS_ALLOW");
        CHECK_INTEQ(img_egress_init(&eg, "https://169.254.169.254", false, NULL), -EPERM);
        setenv("DROVER_IMAGE_EGRESS_ALLOW", "127.0.0.0/8", 1); /* by address */
        CHECK_INTEQ(img_egress_init(&eg, "http://127.0.0.1:5000", false, NULL), 0);
        unsetenv("DROVER_IMAGE_EGRESS_ALLOW");
}

TEST(docker_and_oci_manifests_parse)
{
        const char *docker =
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest."
            "v2+json\",\"config\":{\"digest\":\"" D(
                "c") "\",\"size\":10},\"layers\":["
                     "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D(
                         "1") "\",\"size\":5},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
                              "\"digest\":\"" D("2") "\",\"size\":7}]}";
        struct img_manifest m;
        struct drv_error e = {0};
        CHECK(parse_man(docker, NULL, "amd64", &m, &e) == 0);
        CHECK(m.kind == IMG_MANIFEST_IMAGE);
        CHECK_STREQ(m.config_digest, D("c"));
        CHECK_INTEQ(m.n_layers, 2);
        CHECK_STREQ(m.layers[1].digest, D("2"));
        CHECK_INTEQ(m.layers[1].size, 7);
        img_manifest_free(&m);
        /* OCI without mediaType in the body: the Content-Type decides */
        const char *oci = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D(
            "c") "\"},\"layers\":[{\"digest\":\"" D("3") "\"}]}";
        CHECK(parse_man(oci, "application/vnd.oci.image.manifest.v1+json; charset=utf-8", NULL, &m,
                        &e) == 0);
        CHECK_INTEQ(m.n_layers, 1);
        img_manifest_free(&m);
        /* refused shapes */
        const char *bad[] = {
            "{\"schemaVersion\":1,\"fsLayers\":[]}",
            "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"digest\":"
            "\"sha256:zz\"},\"layers\":[]}",
            "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"digest\":"
            "\"" D("c") "\"},\"layers\":[{\"mediaType\":\"application/x-helm\",\"digest\":\"" D(
                "4") "\"}]}",
            "[1,2]",
            "{\"mediaType\":\"text/plain\"}",
            "not json",
            "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{"
            "\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\",\"digest\":\"" D(
                "c") "\"},\"layers\":[]}",
        };
        for (size_t i = 0; i < DRV_ARRAY_SIZE(bad); i++) {
                drv_err_clear(&e);
                CHECK(parse_man(bad[i], NULL, "amd64", &m, &e) < 0 && e.message[0]);
        }
}

TEST(index_picks_linux_and_the_arch)
{
        const char *idx =
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
            "\"manifests\":["
            "{\"digest\":\"" D(
                "0") "\",\"platform\":{\"os\":\"unknown\",\"architecture\":"
                     "\"unknown\"}},"
                     "{\"digest\":\"" D(
                         "1") "\",\"platform\":{\"os\":\"windows\",\"architecture\":"
                              "\"amd64\"}},"
                              "{\"digest\":\"" D(
                                  "2") "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
                                       "\"variant\":\"v9\"}},"
                                       "{\"digest\":\"" D(
                                           "3") "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
                                                "\"variant\":\"v8\"}},"
                                                "{\"digest\":\"" D(
                                                    "4") "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\""
                                                         "}}]}";
        struct img_manifest m;
        struct drv_error e = {0};
        CHECK(parse_man(idx, NULL, "amd64", &m, &e) == 0);
        CHECK(m.kind == IMG_MANIFEST_INDEX);
        CHECK_STREQ(m.platform_pick, D("4"));
        img_manifest_free(&m);
        CHECK(parse_man(idx, NULL, "arm64", &m, &e) == 0);
        CHECK_STREQ(m.platform_pick, D("3"));
        img_manifest_free(&m);
        CHECK(parse_man(idx, NULL, "riscv64", &m, &e) == -ENOENT);
        CHECK(strstr(e.message, "linux/riscv64") != NULL);
}

TEST(config_fields)
{
        const char *js =
            "{\"architecture\":\"amd64\",\"config\":{\"Env\":[\"PATH=/bin\",\"A=b c\"],"
            "\"User\":\"1000:1000\",\"WorkingDir\":\"/src\",\"Entrypoint\":[\"/e\"],"
            "\"Cmd\":null}}";
        struct img_config c;
        struct drv_error e = {0};
        CHECK(img_config_parse(js, strlen(js), &c, &e) == 0);
        CHECK_STREQ(c.env[1], "A=b c");
        CHECK(c.env[2] == NULL);
        CHECK_STREQ(c.user, "1000:1000");
        CHECK_STREQ(c.workdir, "/src");
        CHECK_STREQ(c.entrypoint[0], "/e");
        CHECK(c.cmd == NULL);
        img_config_free(&c);
        CHECK(img_config_parse("{}", 2, &c, &e) == 0);
        CHECK(c.env && !c.env[0] && c.user && !c.user[0] && !c.workdir);
        img_config_free(&c);
        const char *bad = "{\"config\":{\"Env\":\"PATH=/bin\"}}";
        CHECK(img_config_parse(bad, strlen(bad), &c, &e) < 0 && strstr(e.message, "Env"));
}

/* ---- layers built with libarchive into a memfd ---- */
struct ent {
        const char *name;
        int type;         /* AE_IF* */
        const char *data; /* content, link target */
        int mode, uid;
        bool hard;
        const char *xattr; /* "name" set to "v" */
};

static int make_tar(const struct ent *ents, size_t n, int filter)
{
        int fd = memfd_create("layer", MFD_CLOEXEC);
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        if (filter == 1)
                archive_write_add_filter_gzip(a);
        else if (filter == 2)
                archive_write_add_filter_zstd(a);
        archive_write_open_fd(a, fd);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].name);
                archive_entry_set_filetype(e, (unsigned)ents[i].type);
                archive_entry_set_perm(e, (mode_t)(ents[i].mode ? ents[i].mode : 0644));
                archive_entry_set_uid(e, ents[i].uid);
                archive_entry_set_gid(e, ents[i].uid);
                if (ents[i].hard) {
                        archive_entry_set_hardlink(e, ents[i].data);
                        archive_entry_set_size(e, 0);
                } else if (ents[i].type == AE_IFLNK) {
                        archive_entry_set_symlink(e, ents[i].data);
                } else if (ents[i].type == AE_IFCHR) {
                        archive_entry_set_rdev(e, makedev(1, 3));
                } else if (ents[i].type == AE_IFREG) {
                        archive_entry_set_size(e,
                                               ents[i].data ? (la_int64_t)strlen(ents[i].data) : 0);
                }
                /* a valid VFS_CAP_REVISION_2 blob: effective, permitted CAP_NET_RAW */
                static const unsigned char cap[20] = {0x01, 0, 0, 0x02, 0, 0x20};
                if (ents[i].xattr && strcmp(ents[i].xattr, "security.capability") == 0)
                        archive_entry_xattr_add_entry(e, ents[i].xattr, cap, sizeof(cap));
                else if (ents[i].xattr)
                        archive_entry_xattr_add_entry(e, ents[i].xattr, "v", 1);
                archive_write_header(a, e);
                if (ents[i].type == AE_IFREG && ents[i].data && !ents[i].hard)
                        archive_write_data(a, ents[i].data, strlen(ents[i].data));
                archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
        lseek(fd, 0, SEEK_SET);
        return fd;
}

static int unpack_into(const char *dir, const struct ent *ents, size_t n, int filter,
                       struct img_unpack_stats *st, struct drv_error *e)
{
        drv_rm_rf(dir, NULL);
        mkdir(dir, 0755);
        int fd = make_tar(ents, n, filter);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = img_unpack_layer(fd, dfd, 0, st, e);
        close(dfd);
        close(fd);
        return r;
}

TEST(unpack_whiteouts_owners_links_in_every_compression)
{
        const struct ent ents[] = {
            {"./", AE_IFDIR, NULL, 0755, 0, false, NULL},
            {"./etc/", AE_IFDIR, NULL, 0755, 0, false, NULL},
            {"etc/.wh.gone", AE_IFREG, "", 0, 0, false, NULL},
            {"opq/", AE_IFDIR, NULL, 0700, 0, false, NULL},
            {"opq/.wh..wh..opq", AE_IFREG, "", 0, 0, false, NULL},
            {"opq/new", AE_IFREG, "n", 0600, 0, false, NULL},
            {"usr/bin/tool", AE_IFREG, "#!/bin/sh\n", 04755, 1000, false, NULL},
            {"usr/bin/alias", AE_IFREG, "usr/bin/tool", 0, 0, true, NULL},
            {"lib", AE_IFLNK, "/usr/lib", 0777, 0, false, NULL},
            {"dev/null", AE_IFCHR, NULL, 0666, 0, false, NULL},
            {".wh..wh.plnk", AE_IFDIR, NULL, 0700, 0, false, NULL},
            {"x/kept", AE_IFREG, "k", 0644, 0, false, "user.note"},
            {"x/ping", AE_IFREG, "p", 0755, 1000, false, "security.capability"},
            {"x/forged", AE_IFREG, "f", 0644, 0, false, "user.overlay.opaque"},
            {"x/forged2", AE_IFREG, "f", 0644, 0, false, "trusted.overlay.opaque"},
        };
        for (int filter = 0; filter < 3; filter++) {
                char dir[256];
                snprintf(dir, sizeof(dir), "%s/u%d", tmproot, filter);
                struct img_unpack_stats st;
                struct drv_error e = {0};
                int r = unpack_into(dir, ents, DRV_ARRAY_SIZE(ents), filter, &st, &e);
                if (r < 0)
                        printf("#   filter %d: %s\n", filter, e.message);
                CHECK(r == 0);
                char p[512];
                struct stat s;
                snprintf(p, sizeof(p), "%s/etc/gone", dir);
                CHECK(lstat(p, &s) == 0 && S_ISCHR(s.st_mode) && s.st_rdev == makedev(0, 0));
                snprintf(p, sizeof(p), "%s/opq", dir);
                char v[4] = "";
                CHECK(getxattr(p, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y');
                v[0] = '\0';
                CHECK(getxattr(p, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y');
                snprintf(p, sizeof(p), "%s/opq/.wh..wh..opq", dir);
                CHECK(lstat(p, &s) < 0);
                snprintf(p, sizeof(p), "%s/usr/bin/tool", dir);
                CHECK(lstat(p, &s) == 0 && s.st_uid == 1000 && (s.st_mode & 07777) == 04755);
                ino_t ino = s.st_ino;
                snprintf(p, sizeof(p), "%s/usr/bin/alias", dir);
                CHECK(lstat(p, &s) == 0 && s.st_ino == ino);
                char l[64] = "";
                snprintf(p, sizeof(p), "%s/lib", dir);
                CHECK(readlink(p, l, sizeof(l) - 1) == 8 && strcmp(l, "/usr/lib") == 0);
                snprintf(p, sizeof(p), "%s/dev/null", dir);
                CHECK(lstat(p, &s) < 0);
                CHECK_INTEQ(st.whiteouts, 2);
                snprintf(p, sizeof(p), "%s/x/kept", dir);
                CHECK(getxattr(p, "user.note", v, sizeof(v)) == 1);
                snprintf(p, sizeof(p), "%s/x/ping", dir);
                char capv[32];
                CHECK(getxattr(p, "security.capability", capv, sizeof(capv)) == 20);
                CHECK(lstat(p, &s) == 0 && s.st_uid == 1000);
                snprintf(p, sizeof(p), "%s/x/forged", dir);
                CHECK(getxattr(p, "user.overlay.opaque", v, sizeof(v)) < 0);
                snprintf(p, sizeof(p), "%s/x/forged2", dir);
                CHECK(getxattr(p, "trusted.overlay.opaque", v, sizeof(v)) < 0);
                CHECK(st.skipped >= 1);
        }
}

TEST(unpack_refuses_escapes)
{
        char dir[256], victim[256];
        snprintf(dir, sizeof(dir), "%s/esc", tmproot);
        snprintf(victim, sizeof(victim), "%s/victim", tmproot);
        mkdir(victim, 0755);
        const struct ent dotdot[] = {{"a/../../victim/x", AE_IFREG, "x", 0, 0, false, NULL}};
        const struct ent abs[] = {{"/tmp/drover-abs-escape", AE_IFREG, "x", 0, 0, false, NULL}};
        const struct ent sym[] = {{"s", AE_IFLNK, victim, 0, 0, false, NULL},
                                  {"s/x", AE_IFREG, "x", 0, 0, false, NULL}};
        const struct ent symrel[] = {{"s", AE_IFLNK, "..", 0, 0, false, NULL},
                                     {"s/victim/x", AE_IFREG, "x", 0, 0, false, NULL}};
        const struct ent hard[] = {{"h", AE_IFREG, "../victim/x", 0, 0, true, NULL}};
        const struct ent hardsym[] = {{"s", AE_IFLNK, victim, 0, 0, false, NULL},
                                      {"h", AE_IFREG, "s/x", 0, 0, true, NULL}};
        const struct ent whsym[] = {{"s", AE_IFLNK, victim, 0, 0, false, NULL},
                                    {"s/.wh.x", AE_IFREG, "", 0, 0, false, NULL}};
        const struct {
                const struct ent *e;
                size_t n;
        } cases[] = {{dotdot, 1}, {abs, 1},     {sym, 2},  {symrel, 2},
                     {hard, 1},   {hardsym, 2}, {whsym, 2}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(cases); i++) {
                struct drv_error e = {0};
                int r = unpack_into(dir, cases[i].e, cases[i].n, 1, NULL, &e);
                if (r == 0)
                        printf("#   case %zu accepted\n", i);
                CHECK(r < 0 && strstr(e.message, "refused"));
        }
        char p[300];
        snprintf(p, sizeof(p), "%s/x", victim);
        CHECK(access(p, F_OK) < 0);
        CHECK(access("/tmp/drover-abs-escape", F_OK) < 0);
}

TEST(unpack_stops_at_the_size_bound)
{
        static char big[8192];
        memset(big, 'x', sizeof(big) - 1);
        const struct ent ents[] = {{"a", AE_IFREG, big, 0644, 0, false, NULL},
                                   {"b", AE_IFREG, big, 0644, 0, false, NULL}};
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/bound", tmproot);
        drv_rm_rf(dir, NULL);
        mkdir(dir, 0755);
        int fd = make_tar(ents, 2, 1);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct drv_error e = {0};
        CHECK(img_unpack_layer(fd, dfd, 10000, NULL, &e) == -EFBIG);
        CHECK(strstr(e.message, "more than 10000 bytes") != NULL);
        close(fd);
        fd = make_tar(ents, 2, 1);
        drv_err_clear(&e);
        CHECK(img_unpack_layer(fd, dfd, 20000, NULL, &e) == 0);
        close(fd);
        close(dfd);
}

TEST(unpack_refuses_garbage)
{
        int fd = memfd_create("junk", MFD_CLOEXEC);
        CHECK(write(fd, "this is not a tar archive at all, not even close.........", 56) == 56);
        lseek(fd, 0, SEEK_SET);
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/junk", tmproot);
        mkdir(dir, 0755);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct drv_error e = {0};
        CHECK(img_unpack_layer(fd, dfd, 0, NULL, &e) < 0 && e.message[0]);
        close(dfd);
        close(fd);
}

/* Unpack the raw headers into tmproot/raw (made anew). */
static int unpack_raw(const struct rawtar *es, size_t n, struct drv_error *e)
{
        char dir[256];
        snprintf(dir, sizeof(dir), "%s/raw", tmproot);
        drv_rm_rf(dir, NULL);
        mkdir(dir, 0755);
        int fd = rawtar_fd(es, n);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = img_unpack_layer(fd, dfd, 0, NULL, e);
        close(dfd);
        close(fd);
        return r;
}

static mode_t raw_type(const char *name)
{
        char p[256];
        struct stat st;
        snprintf(p, sizeof(p), "%s/raw/%s", tmproot, name);
        return lstat(p, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

/* entries for which libarchive returns a NULL name: refused or harmless, never a crash */
TEST(unpack_entries_without_names)
{
        struct drv_error e = {0};
        const struct rawtar sym[] = {{"s", '2', NULL, NULL}}; /* no link name (issue 15) */
        CHECK(unpack_raw(sym, 1, &e) == -EPERM);
        CHECK(strstr(e.message, "symlink without a target") != NULL);
        CHECK(raw_type("s") == 0);
        const struct rawtar pax[] = {{"PaxHeader/l", 'x', NULL, "16 linkpath=t\xff\xfe\n"},
                                     {"l", '2', "t", NULL}};
        drv_err_clear(&e);
        int r = unpack_raw(pax, 2, &e);
        printf("# pax linkpath not UTF-8: r=%d %s\n", r, e.message);
        CHECK(r == 0 ? raw_type("l") == S_IFLNK : e.message[0] != 0);
        const struct rawtar hard[] = {{"h", '1', NULL, NULL}};
        drv_err_clear(&e);
        r = unpack_raw(hard, 1, &e);
        printf("# hard link without a name: r=%d %s\n", r, e.message);
        CHECK(r == 0 ? raw_type("h") == 0 || raw_type("h") == S_IFREG : e.message[0] != 0);
        const struct rawtar noname[] = {{"", '0', NULL, "data"}};
        drv_err_clear(&e);
        r = unpack_raw(noname, 1, &e);
        printf("# no path: r=%d %s\n", r, e.message);
        CHECK(r == 0 || e.message[0]);
}

/* ---- store: fabricate layers directly, lease, GC ---- */
static void fake_layer(const char *store, char c, const char *size, time_t used)
{
        char p[512], hex[65];
        memset(hex, c, 64);
        hex[64] = '\0';
        snprintf(p, sizeof(p), "%s/layers/%s/root", store, hex);
        CHECK(drv_mkdir_p(p, 0755, NULL) == 0);
        snprintf(p, sizeof(p), "%s/layers/%s/size", store, hex);
        CHECK(drv_write_file_atomic(p, size, strlen(size), 0644, NULL) == 0);
        snprintf(p, sizeof(p), "%s/layers/%s/lease", store, hex);
        CHECK(drv_write_file_atomic(p, "", 0, 0600, NULL) == 0);
        struct timespec ts[2] = {{used, 0}, {used, 0}};
        utimensat(AT_FDCWD, p, ts, 0);
}

static bool layer_exists(const char *store, char c)
{
        char p[512], hex[65];
        memset(hex, c, 64);
        hex[64] = '\0';
        snprintf(p, sizeof(p), "%s/layers/%s", store, hex);
        return access(p, F_OK) == 0;
}

TEST(gc_is_lru_and_never_removes_leased_layers)
{
        char root[256];
        snprintf(root, sizeof(root), "%s/store", tmproot);
        struct img_store *st;
        struct drv_error e = {0};
        CHECK(img_store_open(root, 0, &st, &e) == 0);
        fake_layer(root, 'a', "100", 1000); /* oldest, but leased below */
        fake_layer(root, 'b', "100", 2000);
        fake_layer(root, 'c', "100", 3000);
        fake_layer(root, 'd', "100", 4000);
        struct img_layer_desc da = {.digest = (char *)D("a")};
        int lease = -1;
        char *dir = NULL;
        CHECK(store_layer_get(st, NULL, &da, &lease, &dir, &e) == 0);
        CHECK(lease >= 0 && dir && drv_endswith(dir, "/root"));
        uint64_t freed = 0;
        CHECK(img_store_gc(st, 250, &freed, &e) == 0);
        CHECK_INTEQ(freed, 200); /* b and c: a is leased (and now recently used anyway) */
        CHECK(layer_exists(root, 'a') && !layer_exists(root, 'b') && !layer_exists(root, 'c') &&
              layer_exists(root, 'd'));
        CHECK(img_store_gc(st, 0, &freed, &e) == 0);
        CHECK(layer_exists(root, 'a') && !layer_exists(root, 'd'));
        close(lease);
        free(dir);
        CHECK(img_store_gc(st, 0, &freed, &e) == 0);
        CHECK(!layer_exists(root, 'a'));
        /* a missing layer without a registry is a clear error */
        CHECK(store_layer_get(st, NULL, &da, &lease, &dir, &e) == -ENOENT);
        CHECK(strstr(e.message, "not in the image store") != NULL);
        img_store_close(st);
}

TEST(a_second_puller_waits_for_the_first_and_reuses_its_layer)
{
        char root[256], lockp[512];
        snprintf(root, sizeof(root), "%s/store2", tmproot);
        struct img_store *st;
        struct drv_error e = {0};
        CHECK(img_store_open(root, 0, &st, &e) == 0);
        snprintf(lockp, sizeof(lockp), "%s/locks/" H64("e") ".lock", root);
        int sync[2];
        CHECK(pipe(sync) == 0);
        pid_t pid = fork();
        if (pid == 0) { /* the "first puller": holds the lock, then completes the layer */
                int fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                flock(fd, LOCK_EX);
                char c = 1;
                if (write(sync[1], &c, 1) != 1)
                        _exit(1);
                usleep(300000);
                fake_layer(root, 'e', "10", time(NULL));
                _exit(0);
        }
        char c;
        CHECK(read(sync[0], &c, 1) == 1);
        struct img_layer_desc de = {.digest = (char *)D("e")};
        int lease = -1;
        char *dir = NULL;
        uint64_t t0 = drv_now_ns();
        int r = store_layer_get(st, NULL, &de, &lease, &dir, &e);
        if (r < 0)
                printf("#   %s\n", e.message);
        CHECK(r == 0);
        CHECK(drv_now_ns() - t0 > 200000000ULL); /* it waited for the lock */
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (lease >= 0)
                close(lease);
        free(dir);
        close(sync[0]);
        close(sync[1]);
        img_store_close(st);
}

TEST(gc_cleans_crash_leftovers_but_not_running_pulls)
{
        char root[256], p[512];
        snprintf(root, sizeof(root), "%s/store3", tmproot);
        struct img_store *st;
        struct drv_error e = {0};
        CHECK(img_store_open(root, 0, &st, &e) == 0);
        snprintf(p, sizeof(p), "%s/tmp/layer-" H64("1") "-abcdef/root/x", root);
        CHECK(drv_mkdir_p(p, 0755, NULL) == 0);
        snprintf(p, sizeof(p), "%s/tmp/layer-" H64("2") "-abcdef/root", root);
        CHECK(drv_mkdir_p(p, 0755, NULL) == 0);
        snprintf(p, sizeof(p), "%s/tmp/gc-" H64("3") "/root", root);
        CHECK(drv_mkdir_p(p, 0755, NULL) == 0);
        snprintf(p, sizeof(p), "%s/locks/" H64("2") ".lock", root);
        int lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        CHECK(lock >= 0 && flock(lock, LOCK_EX) == 0); /* "2" is being pulled right now */
        pid_t pid = fork();
        if (pid == 0) { /* GC runs in another process, as `drover image gc` would */
                uint64_t freed;
                _exit(img_store_gc(st, 0, &freed, NULL) == 0 ? 0 : 1);
        }
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        snprintf(p, sizeof(p), "%s/tmp/layer-" H64("1") "-abcdef", root);
        CHECK(access(p, F_OK) < 0);
        snprintf(p, sizeof(p), "%s/tmp/gc-" H64("3"), root);
        CHECK(access(p, F_OK) < 0);
        snprintf(p, sizeof(p), "%s/tmp/layer-" H64("2") "-abcdef", root);
        CHECK(access(p, F_OK) == 0);
        close(lock);
        img_store_close(st);
}

int main(void)
{
        if (!mkdtemp(tmproot))
                return 1;
        RUN(refs_are_normalised);
        RUN(loopback_is_exact_and_egress_by_address);
        RUN(docker_and_oci_manifests_parse);
        RUN(index_picks_linux_and_the_arch);
        RUN(config_fields);
        if (geteuid() == 0) { /* owners, whiteouts (mknod), trusted.* xattrs need root */
                RUN(unpack_whiteouts_owners_links_in_every_compression);
                RUN(unpack_refuses_escapes);
        }
        RUN(unpack_stops_at_the_size_bound);
        RUN(unpack_refuses_garbage);
        RUN(unpack_entries_without_names);
        RUN(gc_is_lru_and_never_removes_leased_layers);
        RUN(a_second_puller_waits_for_the_first_and_reuses_its_layer);
        RUN(gc_cleans_crash_leftovers_but_not_running_pulls);
        drv_rm_rf(tmproot, NULL);
        TEST_DONE();
}
