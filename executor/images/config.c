/* config.c: the image config JSON (jansson) -> struct img_config: env, user, working dir,
 * entrypoint and cmd, as a CircleCI job uses them. */
#include "executor/images/images_int.h"

#include <jansson.h>

static void json_decref_p(json_t **j)
{
        if (*j)
                json_decref(*j);
}

void img_config_free(struct img_config *cfg)
{
        drv_strv_free(cfg->env);
        free(cfg->user);
        free(cfg->workdir);
        drv_strv_free(cfg->entrypoint);
        drv_strv_free(cfg->cmd);
        memset(cfg, 0, sizeof(*cfg));
}

/* A JSON array of strings -> strv (NULL when absent or null); -EINVAL on other shapes. */
static int strv_from_json(json_t *a, char ***out)
{
        *out = NULL;
        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return -EINVAL;
        char **v = calloc(json_array_size(a) + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        size_t i;
        json_t *s;
        json_array_foreach (a, i, s) {
                if (!json_is_string(s) || !(v[i] = strdup(json_string_value(s)))) {
                        drv_strv_free(v);
                        return json_is_string(s) ? -ENOMEM : -EINVAL;
                }
        }
        *out = v;
        return 0;
}

int img_config_parse(const char *body, size_t len, struct img_config *cfg, struct drv_error *err)
{
        memset(cfg, 0, sizeof(*cfg));
        json_error_t je;
        _cleanup_(json_decref_p) json_t *root = json_loadb(body, len, 0, &je);
        if (!json_is_object(root))
                return drv_err(err, EINVAL, "image config is not a JSON object");
        json_t *c = json_object_get(root, "config");
        if (c && !json_is_null(c) && !json_is_object(c))
                return drv_err(err, EINVAL, "image config: 'config' is not an object");
        const char *user = json_string_value(json_object_get(c, "User"));
        const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
        cfg->user = strdup(user ? user : "");
        cfg->workdir = wd && *wd ? strdup(wd) : NULL;
        if (!cfg->user || (wd && *wd && !cfg->workdir)) {
                img_config_free(cfg);
                return drv_err(err, ENOMEM, "out of memory");
        }
        static const char *keys[] = {"Env", "Entrypoint", "Cmd"};
        char ***dst[] = {&cfg->env, &cfg->entrypoint, &cfg->cmd};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(keys); i++) {
                int r = strv_from_json(json_object_get(c, keys[i]), dst[i]);
                if (r < 0) {
                        img_config_free(cfg);
                        return drv_err(err, -r, "image config: '%s' is not an array of strings",
                                       keys[i]);
                }
        }
        if (!cfg->env) {
                cfg->env = calloc(1, sizeof(char *));
                if (!cfg->env) {
                        img_config_free(cfg);
                        return drv_err(err, ENOMEM, "out of memory");
                }
        }
        return 0;
}
