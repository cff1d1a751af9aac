#!/usr/bin/env python3
"""masking_test.py: a job's secrets never leave drover in clear (issue 18, finding 6): not in step
output (raw, base64 at every alignment, percent-encoded, JSON-escaped, printed in pieces), nor in
what drover writes itself — step names, background-step prefixes, failure reasons it builds
(a cache key, a shell path), events (names, reasons, artifact keys) as `drover job` sends them,
what the strict output-processor double receives, and `drover run`'s terminal and summary with
-s / --secret-env / --secret-file."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402

DROVER = os.path.abspath(DROVER)
SRC = os.environ.get("DROVER_SRC", ".")
SECRET = "Sx9-deploy-Tok3n"


def forms(s):
    """The values and encoded forms that must never appear."""
    b = s.encode()
    out = [b, urllib.parse.quote(s, safe="-._~").encode(), json.dumps(s)[1:-1].encode()]
    for a in range(3):  # the stable inner part at each alignment
        enc = base64.b64encode(b"\0" * a + b)
        out.append(enc[(8 * a + 5) // 6:8 * (a + len(b)) // 6])
    return out


def leaks(blob, s=SECRET):
    if isinstance(blob, str):
        blob = blob.encode()
    return [f for f in forms(s) if f in blob]


def hostile_spec(job, output, store):
    """Every place a secret can reach drover's own text."""
    return {"version": 1,
            "id": {"job": job, "name": "mask", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "environment": [{"name": "TOKEN", "value": SECRET, "secret": True}],
            "storage": {"url": "file://" + store},
            "output": output,
            "steps": [
                {"type": "run", "name": "bg " + SECRET, "background": True,
                 "command": "echo background line; sleep 0.2; echo second line"},
                {"type": "run", "name": "deploy with " + SECRET,
                 "command": "echo raw=$TOKEN; "
                            "printf %s \"$TOKEN\" | base64; printf x%s \"$TOKEN\" | base64; "
                            "printf xy%s \"$TOKEN\" | base64; "
                            "python3 -c 'import json,os,urllib.parse as u;t=os.environ[\"TOKEN\"];"
                            "print(u.quote(t,safe=\"\"));print(json.dumps({\"t\":t}))'; "
                            "printf 'Sx9-dep'; sleep 0.3; printf 'loy-Tok3n\\n'; "
                            "mkdir -p out && echo report > out/r.txt"},
                {"type": "store_artifacts", "path": "out", "destination": "art-" + SECRET},
                {"type": "save_cache", "key": "{{ .Environment.TOKEN }}/", "paths": ["out"],
                 "when": "always"},
                {"type": "run", "name": "shell", "shell": "/bin/" + SECRET, "command": "true",
                 "when": "always"}]}


@test
def drover_job_terminal_names_prefixes_reasons_and_events_are_masked():
    d = tempfile.mkdtemp(prefix="mask-term-")
    store = os.path.join(d, "store")
    os.makedirs(store)
    rc, out, err, ev = run_job(hostile_spec("mask-t-%d" % os.getpid(), {"url": "terminal"}, store),
                               env=dict(os.environ, TMPDIR=d))
    expect(rc != 0, "the cache key and the shell fail the job: rc=%d" % rc)
    expect(not leaks(out), "terminal leaks %s:\n%s" % (leaks(out), out))
    expect(not leaks(err), "stderr leaks %s:\n%s" % (leaks(err), err))
    evs = json.dumps(ev)
    expect(not leaks(evs), "events leak %s:\n%s" % (leaks(evs), evs))
    # what was masked is still recognisable
    expect("==> deploy with ********" in out, out)
    expect("bg ******** | background line" in out, out)
    expect("bg ******** | second line" in out, out)
    expect("cache key '********/'" in out, out)
    expect("cannot execute /bin/********" in out, out)
    expect("raw=********" in out, out)
    expect(out.count("********") >= 12, out)
    names = [e.get("name") for e in ev if e["type"] == "step_started"]
    expect("deploy with ********" in names and "bg ********" in names, names)
    reasons = [e.get("reason", "") for e in ev if e["type"] == "step_finished"]
    expect(any("cache key '********/'" in r for r in reasons), reasons)
    expect(any("/bin/********" in r for r in reasons), reasons)
    arts = [e for e in ev if e["type"] == "artifact"]
    expect(arts and all("art-********" in json.dumps(a) for a in arts), arts)
    # the statuses are drover's vocabulary and stay as they are
    expect([e["status"] for e in ev if e["type"] == "finished"] == ["failed"], ev[-1])


@test
def a_job_that_cannot_start_reports_a_masked_reason():
    d = tempfile.mkdtemp(prefix="mask-setup-")
    spec = {"version": 1, "id": {"job": "mask-s-%d" % os.getpid(), "name": "m", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "docker",
                         "images": [{"image": "127.0.0.1:1/%s:latest" % SECRET}]},
            "environment": [{"name": "TOKEN", "value": SECRET, "secret": True}],
            "output": {"url": "terminal"},
            "steps": [{"type": "run", "name": "x", "command": "true"}]}
    rc, out, err, ev = run_job(spec, env=dict(os.environ, TMPDIR=d,
                                              DROVER_IMAGE_STORE=os.path.join(d, "images")))
    expect(rc != 0, "rc=%d" % rc)
    expect("127.0.0.1:1/********:latest" in err, err)
    expect(not leaks(out + err), "leaks %s: %s %s" % (leaks(out + err), out, err))
    fin = [e for e in ev if e["type"] == "finished"]
    expect(fin and "/********:latest" in fin[0].get("reason", ""), fin)
    expect(not leaks(json.dumps(ev)), ev)


def start_processor(d):
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/output_processor.py"),
                          "--dir", d, "--token", "tok-mask", "--port-file", pf])
    for _ in range(300):
        if os.path.exists(pf):
            break
        time.sleep(0.02)
    return p, int(open(pf).read())


@test
def the_output_processor_receives_masked_names_reasons_and_bytes():
    d = tempfile.mkdtemp(prefix="mask-proc-")
    store = os.path.join(d, "store")
    os.makedirs(store)
    p, port = start_processor(d)
    try:
        job = "mask-p-%d" % os.getpid()
        rc, out, err, ev = run_job(
            hostile_spec(job, {"url": "http://127.0.0.1:%d" % port, "token": "tok-mask"}, store),
            env=dict(os.environ, TMPDIR=d))
        expect(rc != 0, "rc=%d %s" % (rc, err))
        got = b""
        for name in sorted(os.listdir(os.path.join(d, job))):
            got += open(os.path.join(d, job, name), "rb").read()
        expect(not leaks(got), "the processor got %s:\n%r" % (leaks(got), got))
        expect(b"deploy with ********" in got and b"bg ********" in got, got)
        expect(b"/bin/********" in got and b"cache key '********/'" in got, got)
        expect(not leaks(json.dumps(ev)), ev)
    finally:
        p.kill()
        p.wait()


CONFIG = """
version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: use arg-Secret-11 and env-Secret-22
          command: |
            echo "arg=$ARG env=$FROMENV file=$FROMFILE quoted=$QUOTED plain=$PLAIN short=$SHORT"
            echo "lengths ${#ARG} ${#FROMENV} ${#FROMFILE} ${#QUOTED} ${#SPACED}"
            printf %s "$ARG" | base64
            printf 'x%s' "$FROMENV" | base64
            printf 'xy%s' "$FROMFILE" | base64
      - run:
          name: fail with file-Secret-33
          command: exit 3
"""


def project(files):
    """A directory with .circleci/config.yml (CONFIG) and files {name: text}."""
    d = tempfile.mkdtemp(prefix="mask-run-")
    os.makedirs(os.path.join(d, ".circleci"))
    for name, text in dict(files, **{".circleci/config.yml": CONFIG}).items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


@test
def drover_run_secret_flags_mask_the_terminal_and_the_summary():
    d = project({"secrets.env": "# deploy secrets\n\nexport FROMFILE=file-Secret-33\n"
                                "QUOTED = 'quoted secret 44'\nSHORT=abc\r\n"
                                "  SPACED =  spaced-Secret-55 \t\n"})
    env = dict(os.environ, FROMENV="env-Secret-22")
    p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store"), "build",
                        "-s", "ARG=arg-Secret-11", "--secret-env", "FROMENV",
                        "--secret-file", "secrets.env", "-e", "PLAIN=plain-value-55"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=120)
    expect(p.returncode == 1, "rc=%d %s" % (p.returncode, p.stderr))
    both = p.stdout + p.stderr
    # step names hold the values literally (a name is not expanded): masked all the same
    for s in ("arg-Secret-11", "env-Secret-22", "file-Secret-33", "quoted secret 44",
              "spaced-Secret-55"):
        expect(not leaks(both, s), "%s leaks %s:\n%s" % (s, leaks(both, s), both))
    expect("arg=******** env=******** file=******** quoted=******** plain=plain-value-55 short=abc"
           in p.stdout, p.stdout)
    expect("==> use ******** and ********" in p.stdout, p.stdout)
    summary = p.stdout[p.stdout.index("== summary =="):]
    expect("fail with ********" in summary and "use ******** and ********" in summary, summary)
    expect(p.stdout.count("********") >= 10, p.stdout)
    expect("lengths 13 13 14 16 16" in p.stdout, p.stdout)


@test
def drover_run_secret_flags_reject_bad_input_without_echoing_it():
    d = project({"bad.env": "OK=fine-value\n# c\nthis line has no-equals-Secret-99\n",
                 "badname.env": "1BAD=x-Secret-98\n",
                 "quote.env": "\n\nQ=\"unterminated-Secret-97\n"})

    def run(*args):
        return subprocess.run([DROVER, "run", "--store", os.path.join(d, "store"), "build", *args],
                              cwd=d, capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, SET_ONE="v"))

    for args, want in ((["--secret-file", "bad.env"], "bad.env:3: expected NAME=VALUE"),
                       (["--secret-file", "badname.env"], "badname.env:1: expected NAME=VALUE"),
                       (["--secret-file", "quote.env"], "quote.env:3: a quoted value"),
                       (["--secret-file", "missing.env"], "missing.env"),
                       (["--secret-env", "NOT_SET_%d" % count()], "is not set"),
                       (["-s", "no-equals"], "--secret takes NAME=VALUE"),
                       (["--secret", "=v"], "--secret takes NAME=VALUE")):
        p = run(*args)
        expect(p.returncode == 2, "%s: rc=%d" % (args, p.returncode))
        expect(want in p.stderr, "%s: %s" % (args, p.stderr))
        expect("Secret-9" not in p.stderr, "the bad line is echoed: %s" % p.stderr)
    p = run("--help")
    expect(p.returncode == 0 and "--secret-file FILE" in p.stdout and "--secret-env" in p.stdout,
           p.stdout)


if __name__ == "__main__":
    main()
