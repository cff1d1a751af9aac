/* events.c: job event sink — numbered JSON lines for the agent, kept in memory for summaries. */
#include "executor/events.h"
#include "executor/output.h"

#include <pthread.h>

struct job_events {
        pthread_mutex_t lock; /* the SSH rerun server emits from its own threads */
        int fd;
        const struct output *mask; /* secrets masked in every string (may be NULL) */
        char *job_id;
        int64_t seq;
        json_t *all;
};

int job_events_open(int fd, const char *job_id, struct job_events **out, struct drv_error *err)
{
        struct job_events *ev = calloc(1, sizeof(*ev));
        if (!ev)
                return drv_err(err, ENOMEM, "out of memory");
        ev->fd = fd;
        pthread_mutex_init(&ev->lock, NULL);
        ev->job_id = strdup(job_id ? job_id : "");
        ev->all = json_array();
        if (!ev->job_id || !ev->all) {
                job_events_free(ev);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *out = ev;
        return 0;
}

static int64_t emit_locked(struct job_events *ev, const char *type, json_t *obj, const char *ts);

void job_events_mask_with(struct job_events *ev, const struct output *o)
{
        ev->mask = o;
}

/* Mask the string values of j, in objects and arrays at any depth. */
static int mask_json(const struct output *o, json_t *j)
{
        if (json_is_string(j)) {
                _cleanup_free_ char *m = output_mask(o, json_string_value(j));
                if (!m)
                        return -ENOMEM;
                if (strcmp(m, json_string_value(j)) != 0 && json_string_set(j, m) < 0 &&
                    json_string_set(j, "********") < 0)
                        return -ENOMEM; /* not UTF-8 once masked: the whole value goes */
                return 0;
        }
        const char *key;
        json_t *v;
        size_t i;
        int r = 0;
        if (json_is_object(j))
                json_object_foreach (j, key, v)
                        if (r == 0)
                                r = mask_json(o, v);
        if (json_is_array(j))
                json_array_foreach (j, i, v)
                        if (r == 0)
                                r = mask_json(o, v);
        return r;
}

int64_t job_events_emit(struct job_events *ev, const char *type, json_t *data)
{
        char ts[40];
        json_t *obj = data ? data : json_object();
        if (!obj)
                return -ENOMEM;
        drv_time_rfc3339(ts, sizeof(ts));
        /* the data only, and not its "status": "type", "job" and the statuses are drover's own
         * vocabulary (a secret "success" must not change what the agent reads) */
        const char *key;
        json_t *v;
        int r = 0;
        if (ev->mask)
                json_object_foreach (obj, key, v)
                        if (r == 0 && strcmp(key, "status") != 0)
                                r = mask_json(ev->mask, v);
        if (r < 0) {
                json_decref(obj);
                return r;
        }
        pthread_mutex_lock(&ev->lock);
        int64_t seq = emit_locked(ev, type, obj, ts);
        pthread_mutex_unlock(&ev->lock);
        return seq;
}

static int64_t emit_locked(struct job_events *ev, const char *type, json_t *obj, const char *ts)
{
        ev->seq++;
        json_object_set_new(obj, "seq", json_integer(ev->seq));
        json_object_set_new(obj, "type", json_string(type));
        json_object_set_new(obj, "job", json_string(ev->job_id));
        json_object_set_new(obj, "time", json_string(ts));
        if (ev->fd >= 0) {
                char *line = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
                if (!line) {
                        json_decref(obj);
                        return -ENOMEM;
                }
                size_t n = strlen(line);
                line[n] = '\n';
                int r = drv_write_all(ev->fd, line, n + 1);
                free(line);
                if (r < 0) {
                        json_decref(obj);
                        return r;
                }
        }
        json_array_append_new(ev->all, obj);
        return ev->seq;
}

json_t *job_events_all(struct job_events *ev)
{
        return ev->all;
}

void job_events_free(struct job_events *ev)
{
        if (!ev)
                return;
        free(ev->job_id);
        json_decref(ev->all);
        pthread_mutex_destroy(&ev->lock);
        free(ev);
}
