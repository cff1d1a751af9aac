/* cmd_orb.c: `drover orb pull|ls|source` — fill and read drover's orb cache. */
#include "agent/commands.h"
#include "executor/config/orb.h"

#include <curl/curl.h>
#include <dirent.h>
#include <getopt.h>

static void usage(FILE *f)
{
        fprintf(f,
                "usage: drover orb pull [--registry URL] [--cache DIR] REF...\n"
                "       drover orb ls [--cache DIR]\n"
                "       drover orb source [--registry URL] [--cache DIR] [--orb-dir DIR]... "
                "REF\n"
                "REF is namespace/name@version (1.2.3, 1.2, 1, volatile). pull fetches sources\n"
                "from the registry (default https://circleci.com, or $DROVER_ORB_REGISTRY) into\n"
                "the orb cache ($DROVER_ORB_CACHE, default ~/.cache/drover/orbs) with their\n"
                "digests; ls lists the cache; source prints a source (orb directories, the\n"
                "cache, else the registry). $CIRCLE_TOKEN is sent for private orbs.\n");
}

struct orb_cli {
        struct orb_registry reg;
        char *cache;
        char **dirs;
};

static int pull(struct orb_cli *o, char **refs)
{
        int rc = 0;
        for (size_t i = 0; refs[i]; i++) {
                struct orb_ref r;
                struct drv_error err = {0};
                _cleanup_free_ char *ver = NULL;
                if (orb_ref_parse(refs[i], &r, &err) < 0 ||
                    orb_pull(&o->reg, o->cache, &r, &ver, &err) < 0) {
                        fprintf(stderr, "drover orb pull: %s\n", err.message);
                        rc = 1;
                        continue;
                }
                printf("%s/%s@%s -> %s/%s/%s@%s.yml\n", r.ns, r.name, ver, o->cache, r.ns, r.name,
                       ver);
        }
        return rc;
}

static int list(const struct orb_cli *o)
{
        DIR *d = opendir(o->cache);
        if (!d) {
                if (errno == ENOENT)
                        return 0; /* nothing pulled yet */
                fprintf(stderr, "drover orb ls: %s: %s\n", o->cache, strerror(errno));
                return 1;
        }
        struct dirent *ns;
        while ((ns = readdir(d))) {
                if (ns->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *nsdir = drv_asprintf("%s/%s", o->cache, ns->d_name);
                DIR *nd = nsdir ? opendir(nsdir) : NULL;
                struct dirent *f;
                while (nd && (f = readdir(nd))) {
                        if (!drv_endswith(f->d_name, ".yml"))
                                continue;
                        _cleanup_free_ char *path = drv_asprintf("%s/%s", nsdir, f->d_name);
                        _cleanup_free_ char *text = NULL, *dg = NULL;
                        size_t len = 0, dl;
                        struct drv_error e = {0};
                        char have[80] = "?";
                        _cleanup_free_ char *dpath = path ? drv_asprintf("%s.sha256", path) : NULL;
                        if (path && drv_read_file(path, &text, &len, 0, &e) == 0)
                                orb_digest(text, len, have);
                        bool ok = dpath && drv_read_file(dpath, &dg, &dl, 4096, &e) == 0 &&
                                  strncmp(dg, have, strlen(have)) == 0;
                        printf("%s/%.*s %s%s\n", ns->d_name, (int)(strlen(f->d_name) - 4),
                               f->d_name, have, ok ? "" : " (not the digest recorded at pull)");
                }
                if (nd)
                        closedir(nd);
        }
        closedir(d);
        return 0;
}

static int source(const struct orb_cli *o, const char *ref)
{
        struct orb_ref r;
        struct drv_error err = {0};
        _cleanup_free_ char *path = NULL, *ver = NULL, *text = NULL;
        if (orb_ref_parse(ref, &r, &err) < 0) {
                fprintf(stderr, "drover orb source: %s\n", err.message);
                return 2;
        }
        int rc = orb_find((const char *const *)o->dirs, o->cache, &r, &path, &ver, &err);
        size_t len = 0;
        if (rc == 0)
                rc = drv_read_file(path, &text, &len, 0, &err);
        else if (rc == -ENOENT)
                rc = orb_registry_source(&o->reg, &r, NULL, &text, &err);
        if (rc < 0) {
                fprintf(stderr, "drover orb source: %s\n", err.message);
                return 1;
        }
        fputs(text, stdout);
        return 0;
}

int cmd_orb(int argc, char **argv)
{
        static const struct option longopts[] = {{"registry", required_argument, 0, 'R'},
                                                 {"cache", required_argument, 0, 'C'},
                                                 {"orb-dir", required_argument, 0, 'O'},
                                                 {"help", no_argument, 0, 'h'},
                                                 {0, 0, 0, 0}};
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        const char *verb = argv[1];
        struct orb_cli o = {
            .reg = {.endpoint = getenv("DROVER_ORB_REGISTRY"), .token = getenv("CIRCLE_TOKEN")}};
        _cleanup_free_ char *cache = NULL;
        _cleanup_strv_ char **dirs = NULL;
        int c;
        optind = 1;
        while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'R':
                        o.reg.endpoint = optarg;
                        break;
                case 'C':
                        free(cache);
                        cache = strdup(optarg);
                        break;
                case 'O':
                        if (drv_strv_push(&dirs, optarg) < 0)
                                return 2;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        char **rest = argv + 1 + optind;
        if (!cache && !(cache = orb_cache_dir()))
                return 2;
        o.cache = cache;
        o.dirs = dirs;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "drover orb: curl_global_init failed\n");
                return 2;
        }
        int rc;
        if (strcmp(verb, "pull") == 0 && rest[0])
                rc = pull(&o, rest);
        else if (strcmp(verb, "ls") == 0 && !rest[0])
                rc = list(&o);
        else if (strcmp(verb, "source") == 0 && rest[0] && !rest[1])
                rc = source(&o, rest[0]);
        else {
                usage(stderr);
                rc = 2;
        }
        curl_global_cleanup();
        return rc;
}
