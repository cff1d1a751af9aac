#!/usr/bin/env python3
"""devloop_test.py: `drover run` in a developer's loop (issue 19): --param, --list, a workflow
skipped by its when, a single job's upstream workspace (stored or --with-upstream), the summary
of a failure (exit code, first failure, node numbers, artifact links, failing tests), test results
and artifacts stored after a failed step, a canceled step said once, config messages."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DROVER = os.path.abspath(DROVER)


def project(config):
    d = tempfile.mkdtemp(prefix="drover-devloop-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(config)
    return d


def drover(d, *args, timeout=120):
    cmd = [DROVER, *args] if args and args[0] == "config" else \
        [DROVER, "run", "--store", os.path.join(d, "store"), *args]
    p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


PIPELINE = """
version: 2.1
parameters:
  nightly: {type: boolean, default: false}
  greeting: {type: string, default: hello}
jobs:
  build:
    machine: true
    steps:
      - run: mkdir -p out && echo "built-<< pipeline.parameters.greeting >>" > out/bin.txt
      - persist_to_workspace: {root: out, paths: [bin.txt]}
  lint:
    machine: true
    steps: [run: echo LINT-RAN]
  test:
    machine: true
    steps:
      - attach_workspace: {at: ws}
      - run: echo "GOT:$(cat ws/bin.txt)"
  sweep:
    machine: true
    steps: [run: echo "SWEEP-RAN-<< pipeline.parameters.greeting >>"]
workflows:
  ci:
    jobs: [build, lint, sweep, {test: {requires: [build, lint]}}]
  nightly:
    when: << pipeline.parameters.nightly >>
    jobs: [sweep]
"""


@test
def list_shows_workflows_jobs_requires_and_skipped_workflows():
    d = project(PIPELINE)
    rc, out, err = drover(d, "--list")
    expect(rc == 0, f"rc={rc} {err}")
    expect(re.search(r"^\s+ci$", out, re.M) and re.search(r"test\s+requires build, lint", out),
           out)
    expect(re.search(r"nightly .*when/unless is false", out), out)
    for job in ("build", "lint", "test", "sweep"):
        expect(re.search(rf"^\s+{job}$", out.split("jobs (drover run JOB):")[1], re.M), out)


@test
def workflow_skipped_by_when_says_so_and_param_runs_it():
    d = project(PIPELINE)
    rc, out, err = drover(d, "--workflow", "nightly")
    expect(rc == 1, f"rc={rc}")
    expect("does not run: its when/unless is false" in err and "--param" in err, err)
    expect("no workflow" not in err, err)
    rc, out, err = drover(d, "--workflow", "nightly", "--param", "nightly=true",
                          "--param", "greeting=hi")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    expect("SWEEP-RAN-hi" in out, out[-1500:])
    rc, out, err = drover(d, "--workflow", "nope")
    expect(rc == 2 and "no workflow 'nope'" in err, f"rc={rc} {err}")
    rc, out, err = drover(d, "--param", "nightly")
    expect(rc == 2 and "--param takes NAME=VALUE" in err, f"rc={rc} {err}")


@test
def single_job_gets_its_upstreams_stored_workspace_with_a_notice():
    d = project(PIPELINE)
    rc, out, err = drover(d, "test")
    expect("requires build" in err and "stored no workspace" in err and "--with-upstream" in err,
           err)
    rc, out, err = drover(d, "--workflow", "ci", "--param", "greeting=first")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    rc, out, err = drover(d, "--workflow", "ci", "--param", "greeting=second")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    rc, out, err = drover(d, "test")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    expect("GOT:built-second" in out, out[-1500:])  # the last run's layer, not an older one
    expect("notice: test requires build" in err and "last run" in err, err)
    expect("requires lint" not in err, err)  # lint persists nothing: nothing to say about it


@test
def with_upstream_runs_the_required_jobs_first_and_only_those():
    d = project(PIPELINE)
    rc, out, err = drover(d, "test", "--with-upstream", "--param", "greeting=up")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    expect(out.index("### build") < out.index("### test"), out)
    expect("GOT:built-up" in out and "LINT-RAN" in out and "SWEEP" not in out, out[-1500:])
    rc, out, err = drover(d, "--with-upstream")
    expect(rc == 2, f"rc={rc}")


FAILING = """
version: 2.1
jobs:
  t:
    machine: true
    parallelism: 2
    steps:
      - run: echo fine
      - run:
          name: unit tests
          command: |
            mkdir -p tr art; echo "log of $CIRCLE_NODE_INDEX" > art/log.txt
            echo '<testsuite><testcase classname="pkg.mod" name="test_ok" time="1"/><testcase classname="pkg.mod" name="test_broken" time="2"><failure>boom</failure></testcase></testsuite>' > tr/junit.xml
            exit 3
      - run: echo SHOULD-NOT-RUN
      - store_artifacts: {path: art}
      - store_test_results: {path: tr}
  slow:
    machine: true
    steps: [run: sleep 60]
workflows:
  w:
    jobs: [t]
"""


@test
def failure_summary_has_exit_code_first_failure_links_and_failing_tests():
    d = project(FAILING)
    store = os.path.realpath(os.path.join(d, "store"))
    rc, out, err = drover(d, "t")
    expect(rc == 1, f"rc={rc} {err}")
    expect("SHOULD-NOT-RUN" not in out.replace("echo SHOULD-NOT-RUN", ""), out)
    # store_artifacts and store_test_results run after the failed step (CircleCI's rule)
    expect(out.count("Uploaded 1 artifacts") == 2 and f"file://{store}" in out, out[-3000:])
    expect(out.count("Stored 1 test result files") == 2, out[-3000:])
    summary = out.split("== summary ==")[1]
    expect(re.search(r"failed\s+\[node 1/2\] unit tests \([\d.]+s\): exited with code 3",
                     summary), summary)
    expect("[node 0" not in summary and "[node 2/2]" in summary, summary)
    expect('first failure: job t (node 1 of 2), step "unit tests": exited with code 3' in summary,
           summary)
    links = re.findall(r"artifact\s+\[node \d/2\] art/log.txt (file://\S+)", summary)
    expect(len(links) == 2, summary)
    for link in links:
        with open(link[len("file://"):]) as f:
            expect(f.read().startswith("log of "), link)
    expect(summary.count("2 tests, 1 failed: pkg.mod.test_broken") == 2, summary)
    expect(f"store: {store}" in summary, summary)


@test
def sigint_cancel_says_canceled_once_without_signal_9():
    d = project(FAILING)
    p = subprocess.Popen([DROVER, "run", "--store", os.path.join(d, "store"), "slow"], cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    expect(p.returncode == 4, f"rc={p.returncode} {out}")
    line = [ln for ln in out.splitlines() if ln.startswith("<== sleep 60")]
    expect(line and line[0].count("canceled") == 1 and "signal" not in line[0], out)


TYPOS = """
version: 2.1
jobs:
  build:
    machine: true
    paralelism: 2
    steps:
      - chekout
      - run: {command: echo, when: alwys}
  test:
    machine: {image: ubuntu-2204:current}
    steps: [run: echo TEST-RAN]
workflows:
  ci:
    jobs:
      - biuld
      - test:
          requires: [tset, buidl]
"""


@test
def config_errors_suggest_one_edit_away_sorted_by_line_requires_at_the_name():
    d = project(TYPOS)
    rc, out, err = drover(d, "config", "validate", ".circleci/config.yml")
    expect(rc == 1, f"rc={rc} {err}")
    lines = [ln for ln in err.splitlines() if ln.startswith(".circleci/config.yml:")]
    want = [
        ("6:5:", "unknown key 'paralelism' in job 'build' (did you mean 'parallelism'?)"),
        ("8:9:", "unknown step or command 'chekout' (did you mean 'checkout'?)"),
        ("9:36:", "when must be on_success, on_fail or always, not 'alwys' "
                  "(did you mean 'always'?)"),
        ("16:9:", "unknown job 'biuld' (did you mean 'build'?)"),
        # each bad name of requires is pointed at, with a guess when one is one edit away
        ("18:22:", "job 'test' requires 'tset', which is not in workflow 'ci' "
                   "(did you mean 'test'?)"),
        ("18:28:", "job 'test' requires 'buidl', which is not in workflow 'ci'"),
    ]
    for (pos, msg), line in zip(want, lines):
        expect(line == f".circleci/config.yml:{pos} {msg}", f"got {line!r}, want {pos} {msg}")
    expect(len(lines) == len(want), err)
    nums = [int(ln.split(":")[1]) for ln in lines]
    expect(nums == sorted(nums), f"not in line order: {nums}")
    # drover run lists every error too, not only the first
    rc, out, err = drover(d, "--workflow", "ci")
    expect(rc == 2, f"rc={rc}")
    expect([ln for ln in err.splitlines() if ln.startswith(".circleci/config.yml:")] == lines,
           err)


@test
def step_and_workflow_keys_get_a_guess_too():
    d = project("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n"
                "      - run: {command: echo, nam: x}\nworkflows:\n  w:\n    jbos: [a]\n")
    rc, out, err = drover(d, "config", "validate", ".circleci/config.yml")
    expect(rc == 1, f"rc={rc} {err}")
    expect(".circleci/config.yml:6:30: unknown key 'nam' in run (did you mean 'name'?)" in err, err)
    expect(".circleci/config.yml:9:5: unknown key 'jbos' in workflow 'w' (did you mean 'jobs'?)"
           in err, err)


@test
def machine_image_says_what_the_job_runs_on():
    d = project(TYPOS.split("workflows:")[0].replace("paralelism", "parallelism")
                .replace("chekout", "checkout").replace("alwys", "always"))
    rc, out, err = drover(d, "test")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    expect("warning: .circleci/config.yml:11:22: machine image 'ubuntu-2204:current' is not used: "
           "drover runs machine jobs in its sandbox on this host's own OS" in err, err)
    expect("TEST-RAN" in out, out[-1500:])


if __name__ == "__main__":
    main()
