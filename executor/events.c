/* events.c: job event sink — numbered JSON lines for the agent, kept in memory for summaries. */
#include "executor/events.h"

#include <pthread.h>

struct job_events {
        pthread_mutex_t lock; /* the SSH rerun server emits from its own threads */
        int fd;
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

int64_t job_events_emit(struct job_events *ev, const char *type, json_t *data)
{
        char ts[40];
        json_t *obj = data ? data : json_object();
        if (!obj)
                return -ENOMEM;
        drv_time_rfc3339(ts, sizeof(ts));
        pthread_mutex_lock(&ev->lock);
        int64_t r = emit_locked(ev, type, obj, ts);
        pthread_mutex_unlock(&ev->lock);
        return r;
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
