/* testsplit.c: glob matching with ** and the test splitting algorithms of `circleci tests`. */
#include "executor/testsplit.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>

int testsplit_parse_by(const char *s, enum testsplit_by *out)
{
        if (strcmp(s, "name") == 0)
                *out = TESTSPLIT_NAME;
        else if (strcmp(s, "filesize") == 0)
                *out = TESTSPLIT_FILESIZE;
        else if (strcmp(s, "timings") == 0)
                *out = TESTSPLIT_TIMINGS;
        else
                return -EINVAL;
        return 0;
}

int testsplit_strcmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

bool testsplit_match(const char *pattern, const char *path)
{
        return drv_glob_match(pattern, path);
}

int testsplit_glob(const char *pattern, char ***out)
{
        /* (the fixed prefix resolves as the shell would; below it no symlink is followed) */
        return drv_glob_walk(AT_FDCWD, pattern, 0, out);
}

struct weighted {
        const char *name;
        double w;
};

static int cmp_weight(const void *a, const void *b)
{
        const struct weighted *x = a, *y = b;
        if (x->w != y->w)
                return x->w < y->w ? 1 : -1;
        return strcmp(x->name, y->name);
}

/* Seconds recorded for an item, or < 0 when unknown. */
static double timing_of(json_t *timings, const char *type, const char *item)
{
        json_t *v = json_object_get(timings, item);
        if (json_is_number(v))
                return json_number_value(v);
        json_t *tests = json_object_get(timings, "tests");
        if (!json_is_array(tests))
                return -1;
        double sum = 0;
        bool any = false;
        size_t i;
        json_t *t;
        const char *key = strcmp(type, "classname") == 0  ? "classname"
                          : strcmp(type, "testname") == 0 ? "name"
                                                          : "file";
        json_array_foreach (tests, i, t) {
                const char *k = json_string_value(json_object_get(t, key));
                json_t *tm = json_object_get(t, "time");
                if (k && json_is_number(tm) &&
                    (strcmp(k, item) == 0 || (key[0] == 'f' && drv_endswith(item, k)))) {
                        sum += json_number_value(tm);
                        any = true;
                }
        }
        return any ? sum : -1;
}

int testsplit_split(char **items, enum testsplit_by by, json_t *timings, const char *timings_type,
                    unsigned index, unsigned total, char ***out)
{
        size_t n = drv_strv_len(items);
        char **mine = calloc(1, sizeof(char *));
        if (!mine)
                return -ENOMEM;
        if (total == 0 || index >= total) {
                free(mine);
                return -EINVAL;
        }
        if (n == 0) {
                *out = mine;
                return 0;
        }
        if (by == TESTSPLIT_TIMINGS && !timings)
                by = TESTSPLIT_NAME;
        if (by == TESTSPLIT_NAME) {
                char **sorted = drv_strv_copy(items);
                if (!sorted) {
                        free(mine);
                        return -ENOMEM;
                }
                qsort(sorted, n, sizeof(char *), testsplit_strcmp);
                int r = 0;
                for (size_t i = 0; r == 0 && i < n; i++)
                        if (i % total == index)
                                r = drv_strv_push(&mine, sorted[i]);
                drv_strv_free(sorted);
                if (r < 0) {
                        drv_strv_free(mine);
                        return r;
                }
                *out = mine;
                return 0;
        }
        struct weighted *w = calloc(n, sizeof(*w));
        double *load = calloc(total, sizeof(double));
        size_t *count = calloc(total, sizeof(size_t));
        if (!w || !load || !count) {
                free(count);
                free(w);
                free(load);
                free(mine);
                return -ENOMEM;
        }
        double known = 0;
        size_t nknown = 0;
        for (size_t i = 0; i < n; i++) {
                w[i].name = items[i];
                if (by == TESTSPLIT_FILESIZE) {
                        struct stat st;
                        w[i].w = stat(items[i], &st) == 0 ? (double)st.st_size : 0;
                } else {
                        w[i].w = timing_of(timings, timings_type, items[i]);
                        if (w[i].w >= 0) {
                                known += w[i].w;
                                nknown++;
                        }
                }
        }
        if (by == TESTSPLIT_TIMINGS) {
                double avg = nknown ? known / (double)nknown : 1.0;
                for (size_t i = 0; i < n; i++)
                        if (w[i].w < 0) {
                                fprintf(stderr, "No timing found for \"%s\"\n", w[i].name);
                                w[i].w = avg;
                        }
        }
        qsort(w, n, sizeof(*w), cmp_weight);
        int r = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
                unsigned best = 0;
                for (unsigned k = 1; k < total; k++)
                        if (load[k] < load[best] ||
                            (load[k] == load[best] && count[k] < count[best]))
                                best = k;
                load[best] += w[i].w;
                count[best]++;
                if (best == index)
                        r = drv_strv_push(&mine, w[i].name);
        }
        free(w);
        free(load);
        free(count);
        if (r < 0) {
                drv_strv_free(mine);
                return r;
        }
        *out = mine;
        return 0;
}
