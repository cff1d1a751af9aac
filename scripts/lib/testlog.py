#!/usr/bin/env python3
"""testlog.py: read meson's testlog.json files for scripts/test.sh.

  testlog.py failed LOG            names of the tests that did not pass (one per line, unique,
                                   as `meson test NAME` takes them)
  testlog.py retried BUILD_DIR     exit 0 only if every test that failed in testlog-first.json
                                   passed in the run again (testlog.json)
  testlog.py summary [--stage NAME=ok|failed]... BUILD_DIR...
      counts over every build dir, and each stage that is not a meson test (the fuzzers, the
      fresh machine) as one test. A test that failed in the first run (testlog-first.json) and
      passed when run again (testlog.json) is a flake: its own class, not counted as passed,
      named with the end of its first log. Each build dir keeps the flakes of its last runs of
      the suite (BUILD_DIR/flaky-history.json); a test that flaked in this run and in the run
      before it fails the suite ("flaky twice in a row"), so that flakes get fixed rather than
      retried forever; a single flake does not. Exit status 1 then (and on any failure, any fuzz
      failure). Ends with the line "N passed, N failed, N skipped", after "N flaky".
"""
import hashlib
import json
import os
import sys

PASS = ("OK", "EXPECTEDFAIL")


def read(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def bad(t):
    return t.get("result") not in PASS and t.get("result") != "SKIP"


def failed(path):
    seen = []
    for t in read(path):
        short = t["name"].split(" / ")[-1]  # "project:suite / name" -> name
        if bad(t) and short not in seen:
            seen.append(short)
    print("\n".join(seen))


def merged(d):
    """The results of a build dir: the first run's, with the run again's for the tests it ran."""
    logs = os.path.join(d, "meson-logs")
    last = read(os.path.join(logs, "testlog.json"))
    first = read(os.path.join(logs, "testlog-first.json"))
    if not first:
        return last, []
    again = {t["name"]: t for t in last}
    runs, flaky = [], []
    for t in first:
        if not bad(t):
            runs.append(t)
            continue
        t2 = again.get(t["name"], t)  # not run again: still failed
        if not bad(t2):
            flaky.append(t)
        runs.append(t2)
    return runs, flaky


def retried(d):
    runs, _ = merged(d)
    sys.exit(1 if any(bad(t) for t in runs) else 0)


def tail(t, n=25):
    return "\n".join((t.get("stdout") or "").splitlines()[-n:])


HISTORY = "flaky-history.json"
KEEP = 20  # runs of the suite kept in the history


def run_id(d):
    """The identity of a build dir's last run of the suite: a hash of its test log (summary may
    be run twice on the same logs: it counts as one run of the suite)."""
    h = hashlib.sha256()
    for name in ("testlog-first.json", "testlog.json"):
        try:
            with open(os.path.join(d, "meson-logs", name), "rb") as f:
                h.update(f.read())
        except OSError:
            pass
    return h.hexdigest()


def record_flakes(d, names):
    """Add this run's flakes to d's history; returns the names that flaked in the run before
    too."""
    path = os.path.join(d, HISTORY)
    try:
        with open(path) as f:
            hist = json.load(f)
        if not isinstance(hist, list):
            hist = []
    except (OSError, ValueError):
        hist = []
    rid = run_id(d)
    if hist and hist[-1].get("run") == rid:
        hist.pop()  # the same run summarised again
    before = set(hist[-1].get("flaky", [])) if hist else set()
    hist.append({"run": rid, "flaky": sorted(names)})
    with open(path + ".tmp", "w") as f:
        json.dump(hist[-KEEP:], f, indent=1)
    os.replace(path + ".tmp", path)
    return [n for n in names if n in before]


def summary(stages, dirs):
    passed = sum(1 for _, ok in stages if ok)
    failed_n, skipped = len(stages) - passed, 0
    failures = [name for name, ok in stages if not ok]
    flaky, repeated = [], []
    for d in dirs:
        runs, fl = merged(d)
        flaky += [(d, t) for t in fl]
        fl_names = {t["name"] for t in fl}
        repeated += [(d, n) for n in record_flakes(d, sorted(fl_names))]
        for t in runs:
            r = t.get("result")
            if t["name"] in fl_names:
                continue  # a flake: counted apart
            if r in PASS:
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:
                failed_n += 1
                failures.append(f"{d}: {t['name']} ({r})")
                # CI shows the end of the output: repeat the end of each failed test's log here
                print(f"--- {failures[-1]}, last lines:\n{tail(t)}")
    for d, t in flaky:
        print(f"--- flaky (failed, then passed when run again): {d}: {t['name']}; first run's "
              f"last lines:\n{tail(t)}")
    for d, t in flaky:
        print(f"flaky: {d}: {t['name']}")
    for d, n in repeated:
        print(f"failed: {d}: {n} is flaky twice in a row (this run and the one before: "
              f"{os.path.join(d, HISTORY)})")
    for f in failures:
        print("failed:", f)
    print(f"{len(flaky)} flaky" + (f", {len(repeated)} of them twice in a row" if repeated else ""))
    print(f"{passed} passed, {failed_n} failed, {skipped} skipped")
    return 1 if failures or repeated else 0


if __name__ == "__main__":
    if sys.argv[1] == "failed":
        failed(sys.argv[2])
    elif sys.argv[1] == "retried":
        retried(sys.argv[2])
    else:
        args, stages = sys.argv[2:], []
        while args and args[0] == "--stage":
            name, _, verdict = args[1].partition("=")
            stages.append((name, verdict == "ok"))
            args = args[2:]
        sys.exit(summary(stages, args))
