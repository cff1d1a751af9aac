/* testsplit.h: `circleci tests glob` and `circleci tests split` algorithms. */
#pragma once

#include "lib/drv.h"

#include <jansson.h>

enum testsplit_by { TESTSPLIT_NAME, TESTSPLIT_FILESIZE, TESTSPLIT_TIMINGS };

int testsplit_parse_by(const char *s, enum testsplit_by *out);
/* Does path match pattern? `*` and `?` stay within one path component, `**` spans any number of
 * directories, `[...]` classes and `{a,b}` alternatives as in shell globs. */
bool testsplit_match(const char *pattern, const char *path);
/* Append every existing path matching pattern (relative patterns from the cwd) to *out. */
int testsplit_glob(const char *pattern, char ***out);
/* qsort comparator for char * vectors. */
int testsplit_strcmp(const void *a, const void *b);
/* The items node `index` of `total` runs. name: sorted, dealt round-robin; filesize and timings:
 * longest first into the least loaded node. timings: JSON object name -> seconds (or the
 * stored test-results format {"tests":[{"file","classname","name","time"}]}); unknown items get
 * the average. *out is a new vector (possibly empty, never NULL on success). */
int testsplit_split(char **items, enum testsplit_by by, json_t *timings, const char *timings_type,
                    unsigned index, unsigned total, char ***out);
