/* fuzz_jobspec.c: libFuzzer target — the job spec parser on arbitrary bytes, and the round trip. */
#include "executor/jobspec.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct jobspec *s = NULL, *t = NULL;
        struct drv_error e;
        if (jobspec_parse((const char *)data, size, &s, &e) == 0) {
                json_t *j = jobspec_to_json(s);
                if (jobspec_from_json(j, &t, &e) != 0)
                        abort(); /* what we print must parse again */
                json_t *k = jobspec_to_json(t);
                if (!json_equal(j, k))
                        abort();
                json_decref(j);
                json_decref(k);
                jobspec_free(t);
                jobspec_free(s);
        }
        return 0;
}
