/* checkout.h: the `checkout` and `add_ssh_keys` steps (docs/checkout.md). drover stages the keys
 * in the job user's home (mode 0600, owned by the job user) through the runtime; a POSIX sh script
 * run inside the job as its user installs them in ~/.ssh and runs git and ssh there. */
#pragma once

#include "executor/jobspec.h"

struct runtime;

/* Stage the checkout key and known_hosts for a checkout step and return its script (caller
 * frees). Fails when the spec has no vcs.url. local_src, when not NULL (`drover run`), is the
 * inside path of the local source's snapshot (executor/localsrc.h): the script checks that out
 * instead, with no key and no network. */
int checkout_prepare(struct runtime *rt, const struct jobspec *spec, const struct js_step *st,
                     const char *workdir, const char *home, const char *local_src, char **script,
                     struct drv_error *err);
/* Stage the keys an add_ssh_keys step names (all of spec->ssh_keys when it names none) and return
 * the script that installs them as ~/.ssh/id_rsa_<fingerprint> with ~/.ssh/config entries. An
 * unknown fingerprint is an error naming it. */
int sshkeys_prepare(struct runtime *rt, const struct jobspec *spec, const struct js_step *st,
                    const char *home, char **script, struct drv_error *err);
/* The reason such a script gave for failing: its last output line starting "drover: " (found in
 * the last bytes of the step's output). Returns false when there is none. */
bool checkout_failure_reason(const char *out_tail, size_t n, char *reason, size_t rn);
/* The password in a URL's userinfo (scheme://user:PASSWORD@host/...), NULL when none; caller
 * frees. It is one of the job's secrets (masked in the output). */
char *checkout_url_password(const char *url);
/* Replace every occurrence of vcs.url's password in text (in place) by asterisks. */
void checkout_redact(const struct jobspec *spec, char *text);
/* The file name of a key from its fingerprint: "id_rsa_" + the fingerprint without colons (any
 * byte but [A-Za-z0-9._-] becomes '_'). Caller frees. */
char *sshkeys_file_name(const char *fingerprint);
