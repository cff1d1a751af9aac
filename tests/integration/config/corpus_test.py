#!/usr/bin/env python3
"""corpus_test.py: every config of corpus/ (drover's own, shaped like real public projects'
configs) compiles with `drover config process`, and the facts its `# expect-*` lines state hold
in the output: the workflows (scheduled ones only with --trigger schedule), job counts after
matrix expansion, unrunnable jobs (spec null, one warning each), auto-named duplicates,
requires statuses, serial groups, the executor environment merged under the job's,
expression-valued parallelism, resource classes (self-hosted ones carried for routing)."""
import glob
import json
import os
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DROVER = os.path.abspath(DROVER)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FILES = sorted(glob.glob(os.path.join(CORPUS, "*.yml")))


def facts(path):
    out = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            if line.startswith("# expect-"):
                key, _, val = line[len("# expect-"):].partition(":")
                out.append((key.strip(), val.split()))
    return out


def process(path, args):
    p = subprocess.run([DROVER, "config", "process", "-c", path, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def job(doc, wf, name):
    for w in doc["workflows"]:
        if w["name"] == wf:
            for j in w["jobs"]:
                if j["name"] == name:
                    return j
    return None


def check(path):
    fs = facts(path)
    args = next(v for k, v in fs if k == "args")
    rc, out, err = process(path, args)
    expect(rc == 0, f"{path}: rc={rc} {err[-2000:]}")
    doc = json.loads(out)
    name = os.path.basename(path)
    wfs = {w["name"]: w for w in doc["workflows"]}
    for key, val in fs:
        if key == "workflows":
            expect(sorted(wfs) == sorted(val), f"{name}: workflows {sorted(wfs)} != {val}")
        elif key == "jobs":
            for kv in val:
                wf, n = kv.split("=")
                expect(len(wfs[wf]["jobs"]) == int(n),
                       f"{name}: {wf} has {len(wfs[wf]['jobs'])} jobs, not {n}")
        elif key == "unrunnable":
            for jn in val:
                j = job(doc, "ci", jn)
                expect(j is not None and j["spec"] is None and j["unrunnable"],
                       f"{name}: {jn} should be unrunnable: {j}")
                expect(err.count(f"job '{jn}' cannot run on this builder") == 1,
                       f"{name}: {jn} not listed once: {err}")
        elif key == "job":
            for jn in val[1:]:
                expect(job(doc, val[0], jn) is not None, f"{name}: no job {jn} in {val[0]}")
        elif key == "requires-status":
            j = job(doc, val[0], val[1])
            want = {kv.split("=")[0]: kv.split("=")[1].split(",") for kv in val[2:]}
            expect(j is not None and j.get("requires_status") == want,
                   f"{name}: {val[1]} requires_status {j and j.get('requires_status')} != {want}")
        elif key == "serial-group":
            j = job(doc, val[0], val[1])
            expect(j is not None and j.get("serial_group") == val[2], f"{name}: {j and j.get('serial_group')}")
        elif key == "env":
            j = job(doc, val[0], val[1])
            env = {e["name"]: e["value"] for e in (j["spec"]["environment"] if j else [])}
            for kv in val[2:]:
                k, v = kv.split("=")
                expect(env.get(k) == v, f"{name}: {val[1]} env {k}={env.get(k)}, want {v}")
        elif key == "parallelism":
            j = job(doc, val[0], val[1])
            expect(j is not None and j["parallelism"] == int(val[2]),
                   f"{name}: {val[1]} parallelism {j and j['parallelism']} != {val[2]}")
        elif key == "resource-class":
            j = job(doc, val[0], val[1])
            rc_ = j and j["spec"]["executor"]["resource_class"]
            expect(rc_ == val[2], f"{name}: {val[1]} resource_class {rc_} != {val[2]}")
        elif key == "scheduled":
            rc, out, err = process(path, args + ["--trigger", "schedule"])
            names = [w["name"] for w in json.loads(out)["workflows"]] if rc == 0 else []
            expect(rc == 0 and all(s in names for s in val) and "ci" in names,
                   f"{name}: scheduled run has {names} {err[-500:]}")
        elif key != "args":
            expect(False, f"{name}: unknown fact {key}")
    # a push pipeline never runs the scheduled workflows
    expect("nightly" not in wfs, f"{name}: a scheduled workflow in a push pipeline")


@test
def the_corpus_has_at_least_30_configs():
    expect(len(FILES) >= 30, f"{len(FILES)} configs")


def make(path):
    def t():
        check(path)
    t.__name__ = "corpus_" + os.path.basename(path).replace("-", "_").replace(".yml", "")
    return t


for _p in FILES:
    test(make(_p))

if __name__ == "__main__":
    main()
