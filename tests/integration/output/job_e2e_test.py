#!/usr/bin/env python3
"""job_e2e_test.py: `drover job` streams a job's steps to the output-processor double: secrets
masked (also when printed in two pieces), every step recorded with its end record, nothing left
in the spool. And: `drover job` killed with SIGKILL mid-stream (processor stalled, so the spool
holds everything) and started again for the same job: the restarted supervisor stops the old
shipper, delivers the old spool first (the interrupted step ends as canceled) and numbers its own
steps after it; the processor gets every spooled byte exactly once. --spool-max pauses the step;
spools of crashed jobs nobody restarted within a day are removed."""
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, run_job, test  # noqa: E402

SRC = os.environ.get("DROVER_SRC", ".")
SECRET = "hunter2-very-secret-value"


@test
def job_output_reaches_the_processor_masked():
    d = tempfile.mkdtemp(prefix="job-e2e-")
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/output_processor.py"),
                          "--dir", d, "--token", "tok-e2e", "--port-file", pf])
    try:
        for _ in range(300):
            if os.path.exists(pf):
                break
            time.sleep(0.02)
        port = int(open(pf).read())
        job = "e2e-%d" % os.getpid()
        spec = {"version": 1, "id": {"job": job, "name": "e2e", "build_num": 1},
                "executor": {"runtime": "sandbox", "kind": "machine"},
                "environment": [{"name": "API_TOKEN", "value": SECRET, "secret": True},
                                {"name": "SHORT", "value": "abc", "secret": True}],
                "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok-e2e"},
                "steps": [
                    {"type": "run", "name": "bg", "background": True,
                     "command": "echo bg says $API_TOKEN"},
                    {"type": "run", "name": "main",
                     "command": "echo token=$API_TOKEN short=$SHORT; "
                                "printf 'hunter2-very-'; sleep 0.3; printf 'secret-value\\n'"}]}
        env = dict(os.environ, TMPDIR=d)
        rc, out, err, ev = run_job(spec, env=env)
        expect(rc == 0, "rc=%d %s" % (rc, err))
        got = {}
        for step in (0, 1):
            path = os.path.join(d, job, "%d.out" % step)
            got[step] = open(path, "rb").read() if os.path.exists(path) else b""
            expect(os.path.exists(os.path.join(d, job, "%d.end.json" % step)),
                   "no end record for step %d" % step)
        allb = got[0] + got[1]
        expect(SECRET.encode() not in allb, allb)
        expect(b"token=******** short=abc" in allb, allb)
        expect(b"bg says ********" in allb, allb)
        expect(allb.count(b"********") == 3, allb)
        left = [n for n in os.listdir(d) if n.startswith("drover-spool-")]
        expect(left == [], "spool left behind: %s" % left)
    finally:
        p.kill()
        p.wait()


def start_double(d, *extra):
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/output_processor.py"),
                          "--dir", d, "--token", "tok-e2e", "--port-file", pf] + list(extra))
    for _ in range(300):
        if os.path.exists(pf):
            break
        time.sleep(0.02)
    return p, int(open(pf).read())


def control(port, what):
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:%d/control/%s" % (port, what), data=b"", method="POST"), timeout=5).read()


@test
def killed_supervisor_restarts_and_resends_its_spool_exactly_once():
    d = tempfile.mkdtemp(prefix="job-crash-")
    p, port = start_double(d, "--stall")
    job = "crash-%d" % os.getpid()
    # 40 blocks of 30000 numbers, 50 ms apart: ~8 MB over 2+ s, deterministic
    cmd = "for i in $(seq 1 40); do seq $((i*100000)) $((i*100000+29999)); sleep 0.05; done"
    want = b"".join(b"".join(b"%d\n" % k for k in range(i * 100000, i * 100000 + 30000))
                    for i in range(1, 41))
    spec = {"version": 1, "id": {"job": job, "name": "crash", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok-e2e"},
            "steps": [{"type": "run", "name": "count", "command": cmd}]}
    sp = os.path.join(d, "spec.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, TMPDIR=d)
    spool = os.path.join(d, "spools", "job-" + job)  # --spool-dir DIR: DIR/job-<job id>
    argv = [DROVER, "job", "--spec", sp, "--spool-dir", os.path.join(d, "spools")]
    try:
        sup = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data = os.path.join(spool, "0.data")
        for _ in range(3000):
            if os.path.exists(data) and os.path.getsize(data) >= 2 << 20:
                break
            time.sleep(0.01)
        expect(os.path.getsize(data) >= 2 << 20, "the step did not get going")
        sup.send_signal(signal.SIGKILL)  # the supervisor only: its shipper lives on, stalled
        sup.wait()
        time.sleep(0.3)  # the step dies of SIGPIPE; nothing writes the spool any more
        spooled = os.path.getsize(data)
        expect(want[:spooled] == open(data, "rb").read(), "spool is not a prefix of the output")
        # restart the same job; the processor comes back while it runs
        sup = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        control(port, "resume")
        _, err = sup.communicate(timeout=60)
        expect(sup.returncode == 0, "restarted job rc=%d %s" % (sup.returncode, err[-2000:]))
        expect(b"output_spool_takeover" in err and b"output_spool_recovered" in err, err[-2000:])
        old = open(os.path.join(d, job, "0.out"), "rb").read()
        expect(len(old) == spooled, "old step: received %d bytes, spooled %d" % (len(old), spooled))
        expect(old == want[:spooled], "old step: content differs")
        end0 = json.load(open(os.path.join(d, job, "0.end.json")))["end"]
        expect(end0["status"] == "canceled" and end0["length"] == spooled, end0)
        new = open(os.path.join(d, job, "1.out"), "rb").read()
        expect(new == want, "rerun: received %d bytes, want %d" % (len(new), len(want)))
        end1 = json.load(open(os.path.join(d, job, "1.end.json")))["end"]
        expect(end1["status"] == "success" and end1["length"] == len(want), end1)
        expect(not os.path.exists(os.path.join(d, job, "2.out")), "a third step appeared")
        expect(not os.path.exists(spool), "spool left behind")
    finally:
        p.kill()
        p.wait()


@test
def spool_max_flag_pauses_the_step_instead_of_growing_the_spool():
    d = tempfile.mkdtemp(prefix="job-spoolmax-")
    p, port = start_double(d, "--stall")
    job = "smax-%d" % os.getpid()
    spec = {"version": 1, "id": {"job": job, "name": "smax", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok-e2e"},
            "steps": [{"type": "run", "name": "big", "command": "head -c 6000000 /dev/zero | tr '\\0' x"}]}
    sp = os.path.join(d, "spec.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    spool = os.path.join(d, "sp", "job-" + job)
    try:
        sup = subprocess.Popen([DROVER, "job", "--spec", sp, "--spool-dir", os.path.join(d, "sp"),
                                "--spool-max", "1M"], env=dict(os.environ, TMPDIR=d),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data = os.path.join(spool, "0.data")
        size = lambda: os.path.getsize(data) if os.path.exists(data) else 0  # noqa: E731
        for _ in range(3000):  # the spool fills up to the bound (30 s at most on a slow machine)
            if size() >= 900 << 10:
                break
            time.sleep(0.01)
        expect(size() >= 900 << 10, "the step wrote only %d bytes to the spool" % size())
        peak = 0
        for _ in range(70):  # then it stays there while the processor is stalled
            peak = max(peak, size())
            time.sleep(0.01)
        expect(peak <= (1 << 20) + (256 << 10), "spool grew to %d bytes past --spool-max 1M" % peak)
        expect(sup.poll() is None, "the job ended while its output could not be delivered")
        control(port, "resume")
        _, err = sup.communicate(timeout=60)
        expect(sup.returncode == 0, "rc=%d %s" % (sup.returncode, err[-2000:]))
        got = open(os.path.join(d, job, "0.out"), "rb").read()
        expect(got == b"x" * 6000000, "received %d bytes" % len(got))
        expect(not os.path.exists(spool), "spool left behind")
    finally:
        p.kill()
        p.wait()


@test
def stale_spools_of_crashed_jobs_are_removed_after_a_day():
    import fcntl
    d = tempfile.mkdtemp(prefix="job-gc-")
    p, port = start_double(d)
    root = os.path.join(d, "sp")
    old = time.time() - 2 * 86400
    for name in ("job-stale", "job-fresh", "job-locked", "other"):
        os.makedirs(os.path.join(root, name))
        for f in ("state", "writer.lock", "0.data"):
            with open(os.path.join(root, name, f), "w") as fh:
                fh.write("x")
            if name != "job-fresh":
                os.utime(os.path.join(root, name, f), (old, old))
    held = open(os.path.join(root, "job-locked", "writer.lock"))
    fcntl.flock(held, fcntl.LOCK_EX)  # a supervisor still runs there
    job = "gc-%d" % os.getpid()
    spec = {"version": 1, "id": {"job": job, "name": "gc", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok-e2e"},
            "steps": [{"type": "run", "name": "hi", "command": "echo hi"}]}
    sp = os.path.join(d, "spec.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    try:
        r = subprocess.run([DROVER, "job", "--spec", sp, "--spool-dir", root],
                           env=dict(os.environ, TMPDIR=d), capture_output=True, text=True,
                           timeout=60)
        expect(r.returncode == 0, "rc=%d %s" % (r.returncode, r.stderr[-2000:]))
        left = sorted(os.listdir(root))
        expect(left == ["job-fresh", "job-locked", "other"], left)
        expect(open(os.path.join(d, job, "0.out"), "rb").read() == b"hi\n", "job output")
    finally:
        held.close()
        p.kill()
        p.wait()


@test
def default_spool_is_private_and_follows_no_planted_link():
    """issue 20 finding 10: without --spool-dir the spool was $TMPDIR/drover-spool-<job id>, a
    name another user could plant as a symlink (drover wrote its state and lock through it)."""
    d = tempfile.mkdtemp(prefix="job-plant-")
    os.chmod(d, 0o1777)  # a shared /tmp
    p, port = start_double(d)
    job = "plant-%d" % os.getpid()
    victim = os.path.join(d, "victim")
    os.mkdir(victim)
    with open(os.path.join(d, "victim-file"), "w") as f:
        f.write("root's\n")
    os.symlink(victim, os.path.join(d, "drover-spool-" + job))
    spec = {"version": 1, "id": {"job": job, "name": "plant", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok-e2e"},
            "steps": [{"type": "run", "name": "hi", "command": "echo hi; sleep 0.5"}]}
    seen = []
    try:
        sp = os.path.join(d, "spec.json")
        with open(sp, "w") as f:
            json.dump(spec, f)
        sup = subprocess.Popen([DROVER, "job", "--spec", sp], env=dict(os.environ, TMPDIR=d),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):  # the spool while the job runs: a new directory, 0700, not a link
            seen = [n for n in os.listdir(d) if n.startswith("drover-spool-" + job + "-")]
            if seen:
                break
            time.sleep(0.02)
        mode = os.lstat(os.path.join(d, seen[0])).st_mode if seen else 0
        _, err = sup.communicate(timeout=60)
        expect(sup.returncode == 0, "rc=%d %s" % (sup.returncode, err[-2000:]))
        expect(os.listdir(victim) == [], "drover wrote through the planted link: %s"
               % os.listdir(victim))
        expect(len(seen) == 1, "no private spool directory: %s" % os.listdir(d))
        expect(stat.S_ISDIR(mode) and (mode & 0o777) == 0o700, "spool mode %o" % mode)
        expect(open(os.path.join(d, job, "0.out"), "rb").read() == b"hi\n", "job output")
        left = [n for n in os.listdir(d) if n.startswith("drover-spool-" + job + "-")]
        expect(left == [], "spool left behind: %s" % left)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
