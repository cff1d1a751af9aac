#!/usr/bin/env python3
"""timings_split_test.py: `circleci tests split --split-by=timings` in a 3-node job run twice, on
`drover run` (one node after another, and -j 3) and on `drover job` (the agent's path): every test
file runs exactly once per run, because every node of a run splits with the same timings from
earlier runs and no node's store_test_results hides another's."""
import collections
import os
import re
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402

DROVER = os.path.abspath(DROVER)
FILES = [f"t/test_{c}.py" for c in "abcdefghij"]
# seconds each file "takes" (first run: no timings, a split by name; later runs: by these)
TIMES = dict(zip(FILES, [9, 1, 4, 7, 2, 8, 3, 6, 5, 0.5]))

# every node makes the same test files, takes its share, "runs" it (prints RAN:) and writes a
# JUnit file with the time of each of its files
NODE_SCRIPT = r"""
mkdir -p t tr
for f in %(files)s; do touch $f; done
circleci tests glob "t/*.py" | circleci tests split --split-by=timings > mine.txt
{ echo '<testsuite>'
  while read -r f; do
    echo "RAN:$f" >&2
    case $f in %(cases)s esac
    echo "<testcase classname=\"x\" name=\"$f\" file=\"$f\" time=\"$t\"/>"
  done < mine.txt
  echo '</testsuite>'; } > tr/junit.xml
""" % {"files": " ".join(FILES),
       "cases": " ".join(f"{f}) t={t};;" for f, t in TIMES.items())}

CONFIG = """
version: 2.1
jobs:
  tests:
    machine: true
    parallelism: 3
    steps:
      - run: |
%s
      - store_test_results: {path: tr}
workflows:
  ci:
    jobs: [tests]
""" % "\n".join("          " + line for line in NODE_SCRIPT.strip().splitlines())


def ran(text):
    return collections.Counter(re.findall(r"RAN:(t/test_\w\.py)", text))


def once_each(counts, what):
    expect(sorted(counts) == FILES and set(counts.values()) == {1},
           f"{what}: files run {dict(counts)} (want each of {len(FILES)} once)")


def drover_run(d, *args):
    p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store"), *args], cwd=d,
                       capture_output=True, text=True, timeout=240)
    return p.returncode, p.stdout + p.stderr


def project():
    d = tempfile.mkdtemp(prefix="drover-timings-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(CONFIG)
    return d


@test
def drover_run_three_nodes_twice_runs_every_file_once_per_run():
    d = project()
    for attempt in (1, 2, 3):
        rc, out = drover_run(d, "--workflow", "ci")
        expect(rc == 0, f"run {attempt}: rc={rc} {out[-3000:]}")
        once_each(ran(out), f"run {attempt}")
    # the later runs split by timings: no "No timing found" for a file an earlier run stored
    expect("No timing found" not in out, out[-3000:])


@test
def drover_run_dash_j_three_nodes_twice_runs_every_file_once_per_run():
    d = project()
    for attempt in (1, 2):
        rc, out = drover_run(d, "--workflow", "ci", "-j", "3")
        expect(rc == 0, f"run {attempt}: rc={rc} {out[-3000:]}")
        once_each(ran(out), f"-j 3 run {attempt}")


def node_spec(store, workflow, node):
    return {"version": 1,
            "id": {"job": f"tm{os.getpid()}-{count()}", "name": "tests", "build_num": 1,
                   "workflow": workflow, "project": "gh/acme/timings",
                   "node_index": node, "node_total": 3},
            "executor": {"runtime": "sandbox", "kind": "machine",
                         "resources": {"memory_mb": 1024}},
            "storage": {"url": f"file://{store}"},
            "steps": [{"type": "run", "command": NODE_SCRIPT},
                      {"type": "store_test_results", "path": "tr"}]}


@test
def drover_job_three_nodes_twice_runs_every_file_once_per_run():
    store = tempfile.mkdtemp(prefix="drover-timings-store-")
    for attempt in (1, 2, 3):
        counts = collections.Counter()
        for node in range(3):  # the nodes of one workflow, one after another
            rc, out, err, ev = run_job(node_spec(store, f"wf-{attempt}", node))
            expect(rc == 0, f"run {attempt} node {node}: rc={rc} {out[-2000:]} {err}")
            counts += ran(out + err)
        once_each(counts, f"drover job run {attempt}")


if __name__ == "__main__":
    main()
