/* cmd_image.c: `drover image pull|ls|gc` — the layer store for operators and tests. */
#include "agent/commands.h"
#include "executor/images/store_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>

#define DEFAULT_STORE "/var/lib/drover/images"

static void usage(FILE *f)
{
        fprintf(f,
                "usage: drover image pull [OPTIONS] NAME   pull an image into the layer store\n"
                "       drover image ls [--store DIR]      list images and layers\n"
                "       drover image gc [--store DIR] --max-size SIZE\n"
                "                                          remove unused layers, LRU first\n"
                "options:\n"
                "  --store DIR          layer store (default $DROVER_IMAGE_STORE or " DEFAULT_STORE
                ")\n"
                "  --max-size SIZE      store bound (pull: GC after pulling; gc: target)\n"
                "  --username USER      registry user; the password comes from\n"
                "                       $DROVER_REGISTRY_PASSWORD or --password-stdin\n"
                "  --password-stdin     read the password from the first line of stdin\n"
                "  --ca FILE            extra CA certificate for the registry's TLS\n"
                "  --mirror URL         mirror for docker.io images (repeatable)\n"
                "  --arch ARCH          platform of a manifest list (default: this machine's)\n"
                "  --insecure-http      plain http for 127.0.0.1/localhost registries\n"
                "  --pull POLICY        missing (default), always or never\n"
                "  --hold               keep the layers leased until stdin reaches EOF\n"
                "  --progress           one line per downloaded blob on stderr\n");
}

struct image_args {
        const char *store;
        uint64_t max_size;
        bool have_max;
        bool password_stdin, hold, progress;
        char **seen; /* blobs reported by --progress */
        char **mirrors;
        struct img_pull_opts po;
};

static int parse(int argc, char **argv, struct image_args *a)
{
        static const struct option lo[] = {{"store", required_argument, 0, 's'},
                                           {"max-size", required_argument, 0, 'm'},
                                           {"username", required_argument, 0, 'u'},
                                           {"password-stdin", no_argument, 0, 'P'},
                                           {"ca", required_argument, 0, 'c'},
                                           {"mirror", required_argument, 0, 'M'},
                                           {"arch", required_argument, 0, 'a'},
                                           {"insecure-http", no_argument, 0, 'i'},
                                           {"pull", required_argument, 0, 'p'},
                                           {"hold", no_argument, 0, 'H'},
                                           {"progress", no_argument, 0, 'G'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
                switch (c) {
                case 's':
                        a->store = optarg;
                        break;
                case 'm':
                        if (drv_parse_size(optarg, &a->max_size) < 0) {
                                fprintf(stderr, "drover image: bad --max-size '%s'\n", optarg);
                                return 2;
                        }
                        a->have_max = true;
                        break;
                case 'u':
                        a->po.username = optarg;
                        break;
                case 'P':
                        a->password_stdin = true;
                        break;
                case 'c':
                        a->po.ca_file = optarg;
                        break;
                case 'M':
                        if (drv_strv_push(&a->mirrors, optarg) < 0)
                                return 1;
                        break;
                case 'a':
                        a->po.arch = optarg;
                        break;
                case 'i':
                        a->po.insecure_http = true;
                        break;
                case 'p':
                        if (strcmp(optarg, "missing") == 0)
                                a->po.policy = IMG_PULL_MISSING;
                        else if (strcmp(optarg, "always") == 0)
                                a->po.policy = IMG_PULL_ALWAYS;
                        else if (strcmp(optarg, "never") == 0)
                                a->po.policy = IMG_PULL_NEVER;
                        else {
                                fprintf(stderr, "drover image: --pull is missing|always|never\n");
                                return 2;
                        }
                        break;
                case 'H':
                        a->hold = true;
                        break;
                case 'G':
                        a->progress = true;
                        break;
                case 'h':
                        usage(stdout);
                        return -1;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!a->store)
                a->store =
                    getenv("DROVER_IMAGE_STORE") ? getenv("DROVER_IMAGE_STORE") : DEFAULT_STORE;
        a->po.mirrors = (const char *const *)a->mirrors;
        a->po.operator_pull = true; /* the operator at a terminal, not a job: any registry */
        return 0;
}

static void print_strv(const char *key, char **v)
{
        if (!v)
                return;
        printf("%s", key);
        for (size_t i = 0; v[i]; i++)
                printf(" %s", v[i]);
        printf("\n");
}

/* Called from up to three pulling threads: one line per finished blob. */
static void on_progress(void *ud, const char *digest, uint64_t done, uint64_t total)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        struct image_args *a = ud;
        if (!total || done < total)
                return;
        pthread_mutex_lock(&lock);
        bool seen = false;
        for (size_t i = 0; a->seen && a->seen[i]; i++)
                seen = seen || strcmp(a->seen[i], digest) == 0;
        if (!seen && drv_strv_push(&a->seen, digest) == 0)
                fprintf(stderr, "downloaded %s %llu bytes\n", digest, (unsigned long long)total);
        pthread_mutex_unlock(&lock);
}

static int do_pull(struct image_args *a, const char *name)
{
        if (a->progress) {
                a->po.progress = on_progress;
                a->po.ud = a;
        }
        char pwbuf[1024];
        if (a->password_stdin) {
                if (!fgets(pwbuf, sizeof(pwbuf), stdin)) {
                        fprintf(stderr, "drover image: no password on stdin\n");
                        return 2;
                }
                pwbuf[strcspn(pwbuf, "\r\n")] = '\0';
                a->po.password = pwbuf;
        } else if (a->po.username) {
                a->po.password = getenv("DROVER_REGISTRY_PASSWORD");
        }
        struct img_store *st = NULL;
        struct drv_error err = {0};
        struct img *im = NULL;
        if (img_store_open(a->store, a->have_max ? a->max_size : 0, &st, &err) < 0 ||
            img_pull(st, name, &a->po, &im, &err) < 0) {
                fprintf(stderr, "drover image: %s\n", err.message);
                explicit_bzero(pwbuf, sizeof(pwbuf));
                img_store_close(st);
                return 1;
        }
        explicit_bzero(pwbuf, sizeof(pwbuf));
        printf("image %s\ndigest %s\n", im->name, im->digest);
        for (size_t i = 0; i < im->n_layers; i++)
                printf("layer %s\n", im->layer_dirs[i]);
        for (size_t i = 0; im->config.env && im->config.env[i]; i++)
                printf("env %s\n", im->config.env[i]);
        printf("user %s\n", im->config.user ? im->config.user : "");
        if (im->config.workdir)
                printf("workdir %s\n", im->config.workdir);
        print_strv("entrypoint", im->config.entrypoint);
        print_strv("cmd", im->config.cmd);
        fflush(stdout);
        if (a->hold) { /* keep the leases until the caller closes our stdin */
                char buf[256];
                while (DRV_RETRY(read(STDIN_FILENO, buf, sizeof(buf))) > 0)
                        ;
        }
        img_release(im);
        img_store_close(st);
        return 0;
}

static bool layer_leased(const char *store, const char *hex)
{
        _cleanup_free_ char *p = drv_asprintf("%s/layers/%s/lease", store, hex);
        _cleanup_close_ int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0)
                return false;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK;
        return false;
}

static int do_ls(struct image_args *a)
{
        _cleanup_free_ char *ip = drv_path_join(a->store, "images");
        _cleanup_free_ char *lp = drv_path_join(a->store, "layers");
        DIR *d = ip ? opendir(ip) : NULL;
        if (!d) {
                fprintf(stderr, "drover image: cannot list %s: %s\n", a->store, strerror(errno));
                return 1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!drv_endswith(de->d_name, ".json"))
                        continue;
                _cleanup_free_ char *p = drv_path_join(ip, de->d_name);
                json_t *j = p ? json_load_file(p, 0, NULL) : NULL;
                if (!j)
                        continue;
                printf("image %s %s layers=%zu\n", json_string_value(json_object_get(j, "name")),
                       json_string_value(json_object_get(j, "digest")),
                       json_array_size(json_object_get(j, "layers")));
                json_decref(j);
        }
        closedir(d);
        d = lp ? opendir(lp) : NULL;
        while (d && (de = readdir(d))) {
                if (strlen(de->d_name) != 64)
                        continue;
                _cleanup_free_ char *sp = drv_asprintf("%s/%s/size", lp, de->d_name);
                _cleanup_free_ char *sz = NULL;
                if (!sp || drv_read_file(sp, &sz, NULL, 64, NULL) < 0)
                        continue;
                printf("layer sha256:%s bytes=%llu in_use=%s\n", de->d_name, strtoull(sz, NULL, 10),
                       layer_leased(a->store, de->d_name) ? "yes" : "no");
        }
        if (d)
                closedir(d);
        return 0;
}

static int do_gc(struct image_args *a)
{
        if (!a->have_max) {
                fprintf(stderr, "drover image gc: --max-size SIZE is required (0 removes every "
                                "unused layer)\n");
                return 2;
        }
        struct img_store *st = NULL;
        struct drv_error err = {0};
        uint64_t freed = 0;
        if (img_store_open(a->store, 0, &st, &err) < 0 ||
            img_store_gc(st, a->max_size, &freed, &err) < 0) {
                fprintf(stderr, "drover image: %s\n", err.message);
                img_store_close(st);
                return 1;
        }
        printf("freed %llu\n", (unsigned long long)freed);
        img_store_close(st);
        return 0;
}

int cmd_image(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        const char *sub = argv[1];
        struct image_args a = {0};
        int r = parse(argc - 1, argv + 1, &a);
        if (r != 0) {
                drv_strv_free(a.mirrors);
                return r < 0 ? 0 : r;
        }
        int left = argc - 1 - optind;
        char **rest = argv + 1 + optind;
        if (strcmp(sub, "pull") == 0 && left == 1)
                r = do_pull(&a, rest[0]);
        else if (strcmp(sub, "ls") == 0 && left == 0)
                r = do_ls(&a);
        else if (strcmp(sub, "gc") == 0 && left == 0)
                r = do_gc(&a);
        else {
                usage(stderr);
                r = 2;
        }
        drv_strv_free(a.mirrors);
        drv_strv_free(a.seen);
        return r;
}
