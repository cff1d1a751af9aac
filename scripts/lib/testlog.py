#!/usr/bin/env python3
"""testlog.py: read meson's testlog.json files for scripts/test.sh.

  testlog.py failed LOG            names of the tests that did not pass (one per line, unique,
                                   as `meson test NAME` takes them)
  testlog.py retried BUILD_DIR     exit 0 only if every test that failed in testlog-first.json
                                   passed in the run again (testlog.json)
  testlog.py summary FUZZ_PASS FUZZ_FAIL BUILD_DIR...
      counts over every build dir; a test that failed in the first run (testlog-first.json) and
      passed when run again (testlog.json) counts as passed and is named as flaky, with the end
      of its first log, so that a flaky test is seen, not hidden. Ends with the line
      "N passed, N failed, N skipped".
"""
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


def summary(fuzz_pass, fuzz_fail, dirs):
    passed, failed_n, skipped = fuzz_pass, fuzz_fail, 0
    failures = ["fuzz"] if fuzz_fail else []
    flaky = []
    for d in dirs:
        runs, fl = merged(d)
        flaky += [(d, t) for t in fl]
        for t in runs:
            r = t.get("result")
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
    for f in failures:
        print("failed:", f)
    print(f"{passed} passed, {failed_n} failed, {skipped} skipped")


if __name__ == "__main__":
    if sys.argv[1] == "failed":
        failed(sys.argv[2])
    elif sys.argv[1] == "retried":
        retried(sys.argv[2])
    else:
        summary(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
