#!/usr/bin/env python3
"""checkout_test.py: `checkout` and `add_ssh_keys` in real sandboxed jobs against a real OpenSSH
server the test starts (sshfixture.py): branch, tag, sha, PR ref, shallow, wrong key, unknown
host key, key file modes, add_ssh_keys for a later ssh, and a restored source cache fetched into
instead of cloned again."""
import os
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from taplib import count, expect, main, run_job, test  # noqa: E402
from sshfixture import (BARE, C1, C2, C3, C4, EXTRA_FP, EXTRA_KEY, GENV, GOOD_FP, GOOD_KEY,  # noqa: E402
                        IP, KNOWN, PORT, STORE, URL, WORK, WRONG_KEY, commit, sh)


def spec(steps, vcs=None, **kw):
    v = {"url": URL, "checkout_key": {"fingerprint": GOOD_FP, "private_key": GOOD_KEY},
         "known_hosts": KNOWN}
    v.update(vcs or {})
    s = {"version": 1,
         "id": {"job": f"co{os.getpid()}-{count()}", "name": "checkout-test", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "machine", "network": "private",
                      "resources": {"memory_mb": 1024}},
         "storage": {"url": f"file://{STORE}"},
         "vcs": {k: x for k, x in v.items() if x is not None},
         "steps": steps}
    s.update(kw)
    return s


def run(cmd):
    return {"type": "run", "command": cmd}


SHOW = {"type": "run", "shell": "/bin/sh", "command": "echo HEAD=$(git rev-parse HEAD) REF=$(git rev-parse --abbrev-ref HEAD) "
           "COUNT=$(git rev-list --count HEAD); cat file.txt"}


def reasons(ev):
    return [e.get("reason", "") for e in ev if e["type"] == "step_finished"]


def ok_job(s):
    rc, out, err, ev = run_job(s)
    expect(rc == 0, f"rc={rc}\n{out}\n{err}\n{reasons(ev)}")
    return out


@test
def checkout_at_a_branch_over_ssh_with_the_checkout_key():
    out = ok_job(spec([{"type": "checkout"}, SHOW,
                       run("stat -c 'MODE %a %U %n' ~/.ssh ~/.ssh/id_rsa ~/.ssh/known_hosts; "
                           "echo STAGED=$(ls -a ~ | grep -c drover-)")],
                      vcs={"branch": "feature"}))
    expect(f"HEAD={C3} REF=feature" in out and "feature work" in out, out)
    expect("MODE 700 circleci /home/circleci/.ssh\n" in out, out)
    expect("MODE 600 circleci /home/circleci/.ssh/id_rsa\n" in out, out)
    expect("MODE 600 circleci /home/circleci/.ssh/known_hosts\n" in out, out)
    expect("STAGED=0\n" in out, f"staged key files left in the home:\n{out}")


@test
def checkout_at_a_tag():
    out = ok_job(spec([{"type": "checkout"}, SHOW], vcs={"tag": "v1.0"},
                      shell="/usr/bin/env python3"))  # checkout runs with /bin/sh anyway
    expect(f"HEAD={C1} REF=HEAD" in out and "first" in out, out)


@test
def checkout_at_a_sha_behind_the_branch_tip():
    out = ok_job(spec([{"type": "checkout"}, SHOW], vcs={"revision": C1, "branch": "main"}))
    expect(f"HEAD={C1} REF=main" in out, out)


@test
def checkout_a_pull_request_ref():
    out = ok_job(spec([{"type": "checkout"}, SHOW], vcs={"pr_number": "7", "branch": "pull/7"}))
    expect(f"HEAD={C4} REF=pull/7" in out and "pull request work" in out, out)


@test
def shallow_checkout_has_depth_one():
    out = ok_job(spec([{"type": "checkout"}, SHOW, run("test -f .git/shallow && echo SHALLOW")],
                      vcs={"branch": "main", "depth": 1, "filter": "blob:none"}))
    expect(f"HEAD={C2} REF=main COUNT=1" in out and "SHALLOW" in out, out)


@test
def shallow_checkout_of_an_older_sha_fetches_that_sha():
    out = ok_job(spec([{"type": "checkout"}, SHOW],
                      vcs={"branch": "main", "revision": C1, "depth": 1}))
    expect(f"HEAD={C1} REF=main COUNT=1" in out, out)


@test
def checkout_into_a_path():
    out = ok_job(spec([{"type": "checkout", "path": "~/src/app"},
                       run("cd ~/src/app && git rev-parse HEAD")], vcs={"branch": "main"}))
    expect(C2 in out, out)


@test
def wrong_key_fails_naming_the_remote_and_gits_reason():
    rc, out, err, ev = run_job(spec([{"type": "checkout"}, run("echo NOT-REACHED")],
                                    vcs={"branch": "main", "checkout_key": {
                                        "fingerprint": "aa", "private_key": WRONG_KEY}}))
    r = reasons(ev)
    expect(rc != 0 and "NOT-REACHED" not in out, f"rc={rc}\n{out}")
    expect(URL in r[0] and "Permission denied (publickey)" in r[0], r)
    print("# wrong key:", r[0])


@test
def unknown_host_key_fails_clearly():
    rc, out, err, ev = run_job(spec([{"type": "checkout"}], vcs={"known_hosts": None}))
    r = reasons(ev)
    expect(rc != 0, f"rc={rc}\n{out}")
    expect(URL in r[0] and "Host key verification failed" in r[0], r)
    print("# unknown host:", r[0])


@test
def a_password_in_the_url_never_shows():
    url = "https://bot:Pw-s3cr3t-42@127.0.0.1:1/r.git"
    rc, out, err, ev = run_job(spec([{"type": "checkout"}],
                                    vcs={"url": url, "checkout_key": None, "branch": "main"}))
    r = reasons(ev)
    expect(rc != 0 and "https://bot@127.0.0.1:1/r.git" in r[0], f"{r}\n{out}")
    expect("Pw-s3cr3t-42" not in out + err + repr(ev), f"{r}\n{out}")


@test
def add_ssh_keys_lets_a_later_step_ssh_in():
    ssh = (f"ssh -o BatchMode=yes -o UserKnownHostsFile=$HOME/kh -p {PORT} root@{IP} "
           "echo hello-from-sshd")
    s = spec([{"type": "add_ssh_keys", "fingerprints": [EXTRA_FP]},
              run(f"printf '%s' '{KNOWN}' > ~/kh; {ssh}"),
              run("stat -c 'MODE %a %U %n' ~/.ssh/id_rsa_*; cat ~/.ssh/config")],
             ssh_keys=[{"fingerprint": "11:22", "private_key": WRONG_KEY},
                       {"fingerprint": EXTRA_FP, "private_key": EXTRA_KEY, "hostname": IP}])
    del s["vcs"]
    out = ok_job(s)
    name = "id_rsa_" + EXTRA_FP.replace(":", "")
    expect("hello-from-sshd" in out, out)
    expect(f"MODE 600 circleci /home/circleci/.ssh/{name}\n" in out, out)
    expect("id_rsa_1122" not in out, out)
    expect(f'Host {IP}\n  IdentityFile "/home/circleci/.ssh/{name}"\n' in out, out)


@test
def add_ssh_keys_with_an_unknown_fingerprint_fails_naming_it():
    s = spec([{"type": "add_ssh_keys", "fingerprints": ["de:ad:be:ef"]}],
             ssh_keys=[{"fingerprint": EXTRA_FP, "private_key": EXTRA_KEY}])
    rc, out, err, ev = run_job(s)
    expect(rc != 0 and "de:ad:be:ef" in reasons(ev)[0], f"{rc} {reasons(ev)}")


@test
def restored_source_cache_is_fetched_into_not_cloned():
    key = f"src-{os.getpid()}"
    ok_job(spec([{"type": "checkout"}, run("touch .git/drover-marker"),
                 {"type": "save_cache", "key": key, "paths": ["~/project"]}],
                vcs={"branch": "main"}))
    sh("git", "-C", WORK, "checkout", "-q", "main", env=GENV)
    c5 = commit("fifth")
    sh("git", "-C", WORK, "push", "-q", BARE, "main", env=GENV)
    out = ok_job(spec([{"type": "restore_cache", "keys": [key]}, {"type": "checkout"}, SHOW,
                       run("test -f .git/drover-marker && echo MARKER-KEPT")],
                      vcs={"branch": "main", "revision": c5}))
    expect("Fetching into the existing repository" in out and "Cloning" not in out, out)
    expect(f"HEAD={c5} REF=main" in out and "MARKER-KEPT" in out, out)


@test
def drover_run_checks_the_local_work_tree_out_into_a_path():
    import tempfile
    from taplib import DROVER
    d = tempfile.mkdtemp(prefix="drover-run-co-", dir=STORE)
    os.chmod(d, 0o755)
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write("version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n"
                "      - checkout: {path: ~/src/app}\n"
                "      - run: cd ~/src/app && cat local.txt && git rev-parse --abbrev-ref HEAD\n")
    with open(os.path.join(d, "local.txt"), "w") as f:
        f.write("from-the-local-tree\n")
    sh("git", "init", "-q", "-b", "topic", d, env=GENV)
    sh("git", "-C", d, "add", ".", env=GENV)
    sh("git", "-C", d, "commit", "-qm", "local", env=GENV)
    p = subprocess.run([os.path.abspath(DROVER), "run", "--store", os.path.join(d, "store"),
                        "build"], cwd=d, capture_output=True, text=True, timeout=120)
    expect(p.returncode == 0, f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
    expect("from-the-local-tree\ntopic\n" in p.stdout, p.stdout)


main()
