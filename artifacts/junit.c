/* junit.c: a small, forgiving JUnit XML reader: counts and per-test timings of <testcase>s. */
#include "artifacts/artifacts.h"

#include <ctype.h>

/* Value of attribute name inside the tag text [tag, end); decoded basic entities. */
static char *attr(const char *tag, const char *end, const char *name)
{
        size_t nl = strlen(name);
        for (const char *p = tag; p && p < end; p++) {
                if (!isspace((unsigned char)p[-1]) || strncmp(p, name, nl) != 0 || p[nl] != '=')
                        continue;
                char q = p[nl + 1];
                if (q != '"' && q != '\'')
                        return NULL;
                const char *v = p + nl + 2, *ve = memchr(v, q, (size_t)(end - v));
                if (!ve)
                        return NULL;
                struct strbuf sb = STRBUF_INIT;
                for (const char *c = v; c < ve; c++) {
                        static const char *const ent[][2] = {{"&amp;", "&"},
                                                             {"&lt;", "<"},
                                                             {"&gt;", ">"},
                                                             {"&quot;", "\""},
                                                             {"&apos;", "'"}};
                        bool done = false;
                        for (size_t i = 0; i < DRV_ARRAY_SIZE(ent) && !done; i++)
                                if (strncmp(c, ent[i][0], strlen(ent[i][0])) == 0) {
                                        strbuf_puts(&sb, ent[i][1]);
                                        c += strlen(ent[i][0]) - 1;
                                        done = true;
                                }
                        if (!done)
                                strbuf_putc(&sb, *c);
                }
                return strbuf_detach(&sb);
        }
        return NULL;
}

int testresults_parse_junit(const char *xml, size_t len, json_t **out, struct drv_error *err)
{
        _cleanup_free_ char *text = strndup(xml, len);
        if (!text)
                return drv_err(err, ENOMEM, "out of memory");
        if (!strstr(text, "<testsuite") && !strstr(text, "<testcase"))
                return drv_err(err, EINVAL, "no <testsuite> or <testcase> element");
        json_t *cases = json_array();
        long tests = 0, failures = 0, errors = 0, skipped = 0;
        double total = 0;
        for (const char *p = strstr(text, "<testcase"); p; p = strstr(p + 1, "<testcase")) {
                const char *tag_end = strchr(p, '>');
                if (!tag_end) {
                        json_decref(cases);
                        return drv_err(err, EINVAL, "unterminated <testcase> tag");
                }
                bool self_closing = tag_end > p && tag_end[-1] == '/';
                const char *body_end = self_closing ? tag_end : strstr(tag_end, "</testcase>");
                if (!body_end) {
                        json_decref(cases);
                        return drv_err(err, EINVAL, "<testcase> without </testcase>");
                }
                size_t bl = (size_t)(body_end - tag_end);
                _cleanup_free_ char *body = strndup(tag_end, bl);
                const char *result = "success";
                if (body && (strstr(body, "<failure")))
                        result = "failure", failures++;
                else if (body && strstr(body, "<error"))
                        result = "error", errors++;
                else if (body && strstr(body, "<skipped"))
                        result = "skipped", skipped++;
                tests++;
                _cleanup_free_ char *name = attr(p, tag_end, "name");
                _cleanup_free_ char *cls = attr(p, tag_end, "classname");
                _cleanup_free_ char *file = attr(p, tag_end, "file");
                _cleanup_free_ char *tm = attr(p, tag_end, "time");
                double t = tm ? strtod(tm, NULL) : 0;
                if (t < 0 || t != t)
                        t = 0;
                total += t;
                json_t *c = json_pack("{s:s, s:s, s:f}", "name", name ? name : "", "result", result,
                                      "time", t);
                if (cls)
                        json_object_set_new(c, "classname", json_string(cls));
                if (file)
                        json_object_set_new(c, "file", json_string(file));
                json_array_append_new(cases, c);
        }
        *out = json_pack("{s:I, s:I, s:I, s:I, s:f, s:o}", "tests", (json_int_t)tests, "failures",
                         (json_int_t)failures, "errors", (json_int_t)errors, "skipped",
                         (json_int_t)skipped, "time", total, "cases", cases);
        return 0;
}
