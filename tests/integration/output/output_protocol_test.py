#!/usr/bin/env python3
"""output_protocol_test.py: issue 16, the output protocol as a processor written from the
documents meets `drover job`: a processor that lost a step's stream answers 404 "step not begun"
(the client begins the step again and resends what its spool still has), or asks for bytes the
spool no longer has (the step is given up, logged, and the later steps still go out: no
head-of-line stall). Real sandbox jobs against the strict double. TAP output."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import expect, main, run_job, test  # noqa: E402

SRC = os.environ.get("DROVER_SRC", ".")


def start_double(d, *extra):
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/output_processor.py"),
                          "--dir", d, "--token", "tok", "--port-file", pf] + list(extra))
    for _ in range(300):
        if os.path.exists(pf):
            break
        time.sleep(0.02)
    return p, int(open(pf).read())


def control(port, what):
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:%d/control/%s" % (port, what), data=b"", method="POST"),
        timeout=5).read()


def run_and_forget(d, port, job, steps, when):
    """Run the job; once when(bytes of step 0 at the processor) holds, the processor loses
    step 0. Returns (rc, stderr, seconds, forgotten)."""
    spec = {"version": 1, "id": {"job": job, "name": "p", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok"}, "steps": steps}
    out0 = os.path.join(d, job, "0.out")
    forgotten = []

    def watch():
        for _ in range(400):
            if os.path.exists(out0) and when(open(out0, "rb").read()):
                control(port, "forget?job=%s&step=0" % job)
                forgotten.append(time.time())
                return
            time.sleep(0.025)
    t = threading.Thread(target=watch)
    t.start()
    t0 = time.time()
    rc, _, err, _ = run_job(spec, timeout=90, env=dict(os.environ, TMPDIR=d))
    t.join()
    return rc, err, time.time() - t0, forgotten


def read(d, job, name):
    p = os.path.join(d, job, name)
    return open(p, "rb").read() if os.path.exists(p) else None


@test
def lost_stream_is_begun_again_and_resent():
    d = tempfile.mkdtemp(prefix="out-lost-")
    p, port = start_double(d)
    job = "lost-%d" % os.getpid()
    try:
        steps = [{"type": "run", "name": "a", "command": "echo first; sleep 2; echo second"},
                 {"type": "run", "name": "b", "command": "echo later"}]
        rc, err, took, forgotten = run_and_forget(d, port, job, steps,
                                                  lambda b: b == b"first\n")
        expect(forgotten, "the processor never had step 0's first line")
        expect(rc == 0, "rc=%d %s" % (rc, err[-2000:]))
        expect(read(d, job, "0.out") == b"first\nsecond\n", read(d, job, "0.out"))
        expect(read(d, job, "0.begin.json") is not None, "step 0 not begun again")
        expect(read(d, job, "0.end.json") is not None, "no end record for step 0")
        expect(read(d, job, "1.out") == b"later\n", read(d, job, "1.out"))
        expect(took < 20, "job took %.1fs" % took)
        expect("output_step_not_begun" in err, err[-2000:])
    finally:
        p.kill()
        p.wait()


@test
def lost_bytes_the_spool_no_longer_has_do_not_stall_later_steps():
    d = tempfile.mkdtemp(prefix="out-gone-")
    p, port = start_double(d)
    job = "gone-%d" % os.getpid()
    try:
        # 8 KiB acknowledged and punched out of the spool, then the processor loses them
        steps = [{"type": "run", "name": "a",
                  "command": "head -c 8192 /dev/zero | tr '\\0' x; sleep 2; echo tail"},
                 {"type": "run", "name": "b", "command": "echo later"}]
        rc, err, took, forgotten = run_and_forget(d, port, job, steps,
                                                  lambda b: len(b) == 8192)
        expect(forgotten, "the processor never had step 0's 8 KiB")
        expect(rc == 0, "rc=%d %s" % (rc, err[-2000:]))
        expect(read(d, job, "1.out") == b"later\n", read(d, job, "1.out"))
        expect(read(d, job, "1.end.json") is not None, "no end record for step 1")
        expect("output_stream_lost" in err, err[-2000:])
        expect(took < 20, "job took %.1fs (stalled on the lost step)" % took)
    finally:
        p.kill()
        p.wait()


@test
def output_ca_is_documented_as_the_spec_reads_it():
    # docs/protocol-output.md names the job spec's CA field; the spec parser is the judge
    doc = open(os.path.join(SRC, "docs", "protocol-output.md")).read()
    expect("`output.ca`" in doc and "ca_pem" not in doc, "protocol-output.md: CA field")
    expect("file path" not in doc.split("## Endpoints")[0].replace("a file\n  path there is "
                                                                  "refused", ""),
           "protocol-output.md still offers a file path for the CA")
    d = tempfile.mkdtemp(prefix="out-ca-")
    ca = os.path.join(d, "ca.pem")
    with open(ca, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    base = {"version": 1, "id": {"job": "ca-%d" % os.getpid(), "name": "p", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine"},
            "steps": [{"type": "run", "name": "a", "command": "true"}]}
    for out, want in (({"url": "https://127.0.0.1:1", "ca": ca}, "want PEM text"),
                      ({"url": "https://127.0.0.1:1", "ca_pem": open(ca).read()}, "ca_pem")):
        rc, _, err, _ = run_job(dict(base, output=out), timeout=30, env=dict(os.environ, TMPDIR=d))
        expect(rc == 2 and want in err, "rc=%d %s" % (rc, err[-500:]))


@test
def a_job_that_runs_again_gets_its_own_streams():
    # the same job id run twice (a requeued job handed back to this node): each run's attempt id
    # keys its streams, so the second run neither adopts nor extends the first run's offsets
    d = tempfile.mkdtemp(prefix="out-attempt-")
    p, port = start_double(d)
    job = "again-%d" % os.getpid()
    try:
        for attempt, text in (("a1", "first run, longer output"), ("a2", "second")):
            spec = {"version": 1, "id": {"job": job, "name": "p", "build_num": 1,
                                         "attempt": attempt},
                    "executor": {"runtime": "sandbox", "kind": "machine"},
                    "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok"},
                    "steps": [{"type": "run", "name": "a", "command": "echo " + text}]}
            rc, _, err, _ = run_job(spec, timeout=60, env=dict(os.environ, TMPDIR=d))
            expect(rc == 0, "rc=%d %s" % (rc, err[-1500:]))
        for attempt, text in (("a1", b"first run, longer output\n"), ("a2", b"second\n")):
            got = read(d, job, "attempt-%s/0.out" % attempt)
            expect(got == text, "%s: %r" % (attempt, got))
            expect(read(d, job, "attempt-%s/0.end.json" % attempt) is not None, attempt)
        expect(read(d, job, "0.out") is None, "a stream without attempt")
    finally:
        p.kill()
        p.wait()


@test
def repeated_end_answered_409_is_not_a_loop():
    # the end's answer is lost; the resent end meets a processor that answers a repeated end
    # 409 with next_offset == length: the client takes it as ended (no loop, no 30 s stall)
    d = tempfile.mkdtemp(prefix="out-end-")
    p, port = start_double(d, "--drop-end-acks", "1", "--end-repeat-409")
    job = "end-%d" % os.getpid()
    try:
        spec = {"version": 1, "id": {"job": job, "name": "p", "build_num": 1},
                "executor": {"runtime": "sandbox", "kind": "machine"},
                "output": {"url": "http://127.0.0.1:%d" % port, "token": "tok"},
                "steps": [{"type": "run", "name": "a", "command": "echo hi"}]}
        t0 = time.time()
        rc, _, err, _ = run_job(spec, timeout=60, env=dict(os.environ, TMPDIR=d))
        took = time.time() - t0
        expect(rc == 0, "rc=%d %s" % (rc, err[-1500:]))
        expect(read(d, job, "0.out") == b"hi\n", read(d, job, "0.out"))
        stats = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/control/stats" % port, timeout=5).read())
        expect(stats.get("ends", 0) <= 3, "%s end records" % stats.get("ends"))
        expect(took < 15, "job took %.1fs" % took)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
