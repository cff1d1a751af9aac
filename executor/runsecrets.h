/* runsecrets.h: the values `drover run` is told are secret — -s K=V, --secret-env K,
 * --secret-file FILE — as "K=V" strings for the job's environment, marked secret (masked). */
#pragma once

#include "lib/drv.h"

/* -s / --secret K=V: push arg onto *kv after checking that K is a variable name. */
int runsecrets_add_arg(char ***kv, const char *arg, struct drv_error *err);
/* --secret-env K: push "K=<value of K in drover's own environment>"; an unset K is an error. */
int runsecrets_add_env(char ***kv, const char *name, struct drv_error *err);
/* --secret-file FILE: push every K=V line of a dotenv-style file: blank lines and lines starting
 * with # are skipped, an optional "export " prefix, blanks around NAME and V dropped, V taken
 * as is (a trailing \r dropped) or between matching single or double quotes (kept whole). A bad
 * line is an error naming FILE:LINE (never the line's text: it may hold a secret). */
int runsecrets_add_file(char ***kv, const char *path, struct drv_error *err);
