#!/usr/bin/env python3
"""run_test.py: `drover run` and `drover config` on real configs through the binary: workflows in
requires order, parallelism, test splitting, blocked jobs, -e, job selection, validation errors."""
import os
import signal
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402

DROVER = os.path.abspath(DROVER)


def project(config):
    d = tempfile.mkdtemp(prefix="drover-run-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(config)
    return d


def drover(d, *args, timeout=120):
    store = os.path.join(d, "store")
    p = subprocess.run([DROVER, *args] if args and args[0] == "config" else
                       [DROVER, "run", "--store", store, *args],
                       cwd=d, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr






WORKFLOW = """
version: 2.1
commands:
  say:
    parameters: {what: {type: string}}
    steps: [run: echo "said << parameters.what >>"]
jobs:
  first:
    machine: true
    steps:
      - say: {what: first}
  second:
    machine: true
    parallelism: 3
    steps:
      - run: |
          mkdir -p t && for i in 1 2 3 4 5 6; do touch t/test_$i.py; done
          circleci tests glob "t/*.py" | circleci tests split > mine.txt
          echo "node $CIRCLE_NODE_INDEX of $CIRCLE_NODE_TOTAL runs $(tr '\\n' ' ' < mine.txt)"
  broken:
    machine: true
    steps: [run: exit 7]
  after_broken:
    machine: true
    steps: [run: echo SHOULD-NOT-RUN]
workflows:
  good:
    jobs:
      - first
      - second: {requires: [first]}
  bad:
    jobs:
      - broken
      - after_broken: {requires: [broken]}
"""


@test
def workflow_runs_in_requires_order_with_every_node():
    d = project(WORKFLOW)
    rc, out, err = drover(d, "--workflow", "good")
    expect(rc == 0, f"rc={rc} {out[-2000:]} {err}")
    expect(out.index("said first") < out.index("node 0 of 3"), "second ran before first")
    seen = set()
    for node in range(3):
        line = [l for l in out.splitlines() if l.startswith(f"node {node} of 3 runs")]
        expect(line, f"node {node} did not run: {out}")
        seen.update(line[0].split("runs ")[1].split())
    expect(seen == {f"t/test_{i}.py" for i in range(1, 7)}, f"split lost or duplicated tests: {seen}")
    expect("== summary ==" in out and "success  first" in out, out[-1000:])
    # summary nodes are numbered as in the headers ("node 3 of 3" is CIRCLE_NODE_INDEX 2)
    expect("[node 3/3] " in out.split("== summary ==")[1], out[-1000:])
    expect("[node 0" not in out.split("== summary ==")[1], out[-1000:])


@test
def failed_upstream_blocks_downstream_and_exit_is_nonzero():
    d = project(WORKFLOW)
    rc, out, err = drover(d, "--workflow", "bad")
    expect(rc == 1, f"rc={rc}")
    expect("SHOULD-NOT-RUN" not in out, out)
    expect("blocked  after_broken" in out and "failed   broken" in out, out[-1000:])


@test
def single_job_and_env_flags():
    d = project(WORKFLOW.replace("say: {what: first}", "run: echo \"X=$X\""))
    rc, out, err = drover(d, "first", "-e", "X=from-flag")
    expect(rc == 0 and "X=from-flag" in out, f"rc={rc} {out} {err}")


@test
def a_job_whose_spec_is_refused_fails_the_run():
    # the compiler passes `shell: ""` through, the job spec validator refuses it; drover run
    # printed the error and then reported the job a success (exit 0)
    d = project('version: 2.1\njobs:\n  a:\n    machine: true\n    shell: ""\n'
                '    steps: [run: echo SHOULD-NOT-RUN]\n')
    rc, out, err = drover(d, "a")
    expect(rc == 1 and "must name a program" in err, f"rc={rc} {out[-500:]} {err}")
    expect("SHOULD-NOT-RUN" not in out and "success  a" not in out, out[-1000:])


@test
def ambiguous_or_unknown_targets_are_clear_errors():
    d = project(WORKFLOW)
    rc, out, err = drover(d)
    expect(rc == 2 and "good" in err and "bad" in err, f"rc={rc} {err}")
    rc, out, err = drover(d, "nosuchjob")
    expect(rc == 2 and "no job 'nosuchjob'" in err, err)
    rc, out, err = drover(d, "--workflow", "nope")
    expect(rc == 2 and "no workflow 'nope'" in err, err)


@test
def invalid_config_fails_before_running_with_position():
    d = project("version: 2.1\njobs:\n  a:\n    machine: true\n    steps: [run: echo RAN, nope]\n")
    rc, out, err = drover(d, "a")
    expect(rc == 2 and ".circleci/config.yml:5:" in err and "nope" in err, f"rc={rc} {err}")
    expect("RAN" not in out, "a step ran although the config is invalid")


@test
def config_validate_lists_every_error():
    d = project("version: 2.1\njobs:\n  a:\n    machine: true\n    bogus: 1\n    steps: [nope]\n"
                "  b:\n    machine: true\n    resource_class: giant\n    steps: [checkout]\n")
    rc, out, err = drover(d, "config", "validate")
    expect(rc == 1, f"rc={rc}")
    lines = [l for l in err.splitlines() if l.startswith(".circleci/config.yml:")]
    expect(len(lines) >= 3, err)
    rc, out, err = drover(project(WORKFLOW), "config", "validate")
    expect(rc == 0 and "config is valid" in out, f"{rc} {out} {err}")


@test
def config_process_prints_valid_specs():
    import json
    rc, out, err = drover(project(WORKFLOW), "config", "process")
    expect(rc == 0, err)
    doc = json.loads(out)
    wf = {w["name"]: w for w in doc["workflows"]}
    expect([j["name"] for j in wf["good"]["jobs"]] == ["first", "second"], wf)
    expect(wf["good"]["jobs"][1]["parallelism"] == 3, wf)
    expect(wf["good"]["jobs"][1]["requires"] == ["first"], wf)


FEATURES = """
version: 2.1
jobs:
  steps_demo:
    machine: true
    working_directory: ~/proj
    environment: {LEVEL: job, KEEP: job}
    steps:
      - run:
          background: true
          command: while true; do echo tick >> /tmp/ticks; sleep 0.1; done
      - run: echo 'export FROM_BASH_ENV=carried' >> "$BASH_ENV"
      - run:
          name: sees BASH_ENV, step env and working_directory
          working_directory: sub
          environment: {LEVEL: step}
          command: |
            echo "bash_env=$FROM_BASH_ENV level=$LEVEL keep=$KEEP pwd=$PWD"
            test "$(wc -l < /tmp/ticks)" -gt 0 && echo background-ran
      - run:
          name: silent
          no_output_timeout: 2s
          command: echo start; sleep 30
      - run: {name: after-failure-on-success, command: echo SHOULD-NOT-RUN}
      - run: {name: after-failure-on-fail, when: on_fail, command: echo ON-FAIL-RAN}
      - run: {name: after-failure-always, when: always, command: echo ALWAYS-RAN}
  tests_run:
    machine: true
    parallelism: 2
    steps:
      - run: |
          mkdir -p t && touch t/one.py t/two.py t/three.py
          circleci tests glob "t/**/*.py" | circleci tests run --command "xargs -n1 echo RUNNING" --split-by=name
      - run: echo t/x.py | circleci tests run --command "cat; exit 3" --index 0 --total 1
  halting:
    machine: true
    steps:
      - run: echo before; circleci-agent step halt
      - run: echo HALT-IGNORED
"""


@test
def step_features_through_a_config():
    d = project(FEATURES)
    t0 = time.monotonic()
    rc, out, err = drover(d, "steps_demo")
    took = time.monotonic() - t0
    expect(rc == 1, f"rc={rc} {out[-2000:]} {err}")
    expect("bash_env=carried level=step keep=job pwd=/home/circleci/proj/sub" in out, out)
    expect("background-ran" in out, out)
    expect("Too long with no output (exceeded 2s)" in out, out)
    expect(took < 20, f"no_output_timeout did not fire in time ({took:.1f}s)")
    expect("SHOULD-NOT-RUN" not in out, out)
    expect("ON-FAIL-RAN" in out and "ALWAYS-RAN" in out, out)
    # the default name is the first line of the command; the summary lists every step
    summary = out.split("== summary ==")[1]
    expect("timedout  silent" in summary, summary)
    expect("success   echo 'export FROM_BASH_ENV=carried'" in summary, summary)
    expect("SHOULD-NOT-RUN" not in summary, summary)


@test
def circleci_tests_run_feeds_each_node_its_share():
    rc, out, err = drover(project(FEATURES), "tests_run")
    expect(rc == 1, f"rc={rc} {out[-2000:]} {err}")
    ran = sorted(l.split()[1] for l in out.splitlines() if l.startswith("RUNNING "))
    expect(ran == ["t/one.py", "t/three.py", "t/two.py"], f"{ran} {out}")
    expect("exited with code 3" in out, out)


@test
def step_halt_ends_the_job_successfully():
    rc, out, err = drover(project(FEATURES), "halting")
    expect(rc == 0, f"rc={rc} {out} {err}")
    expect("before" in out and "HALT-IGNORED" not in out, out)


WORKSPACE = """
version: 2.1
jobs:
  make:
    machine: true
    steps:
      - run: mkdir -p out/deep && echo made-by-make > out/deep/a.txt
      - persist_to_workspace: {root: out, paths: [deep]}
  more:
    machine: true
    steps:
      - attach_workspace: {at: ws}
      - run: cat ws/deep/a.txt && echo made-by-more > ws/b.txt
      - persist_to_workspace: {root: ws, paths: [b.txt]}
  use:
    machine: true
    steps:
      - attach_workspace: {at: /tmp/ws}
      - run: cat /tmp/ws/deep/a.txt /tmp/ws/b.txt
  split:
    machine: true
    steps:
      - run: printf 't/a.py\\nt/b.py\\nt/slow.py\\n' | circleci tests split --split-by=timings --total 2 --index 0 | sed 's/^/MINE:/'
      - run: |
          mkdir -p tr
          cat > tr/junit.xml <<'XML'
          <testsuite><testcase file="t/slow.py" name="s" time="30"/><testcase file="t/a.py" name="a" time="1"/><testcase file="t/b.py" name="b" time="1"/></testsuite>
          XML
      - store_test_results: {path: tr}
workflows:
  pipeline:
    jobs:
      - make
      - more: {requires: [make]}
      - use: {requires: [more]}
"""


@test
def workspace_layers_pass_down_a_workflow_and_timings_feed_split():
    d = project(WORKSPACE)
    rc, out, err = drover(d)
    expect(rc == 0, f"rc={rc} {out[-3000:]} {err}")
    lines = out.splitlines()
    expect(lines.count("made-by-make") == 2 and "made-by-more" in lines, out)
    # the first run of a job has no timings (split by name, as CircleCI says); a later run of
    # the same job splits by the timings the first one stored
    rc, out, err = drover(d, "split")
    expect(rc == 0 and "No timing data found" in out, f"rc={rc} {out} {err}")
    rc, out, err = drover(d, "split")
    expect(rc == 0, f"rc={rc} {out} {err}")
    mine = [l[5:] for l in out.splitlines() if l.startswith("MINE:")]
    expect(mine == ["t/slow.py"], f"node 0 should get only the slow test: {mine} {out}")


@test
def sigterm_cancels_drover_run_and_leaves_no_process():
    tag = f"drover-runcancel-{os.getpid()}"
    d = project(f"""
version: 2.1
jobs:
  a:
    machine: true
    steps:
      - run: {{background: true, command: exec -a {tag}-bg sleep 1000}}
      - run: (exec -a {tag}-child sleep 1000) & echo started; sleep 1000
  b:
    machine: true
    steps: [run: echo SHOULD-NOT-RUN]
workflows:
  w:
    jobs: [a, {{b: {{requires: [a]}}}}]
""")
    p = subprocess.Popen([DROVER, "run", "--store", os.path.join(d, "store")], cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", f"{tag}-child"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    expect(p.returncode == 4, f"rc={p.returncode} {out[-1500:]} {err}")
    expect("SHOULD-NOT-RUN" not in out, out)
    expect("canceled" in out.split("== summary ==")[-1], out[-1500:])
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
    expect(left.strip() == "", f"left behind: {left}")


PARALLEL = """
version: 2.1
jobs:
  left:
    machine: true
    steps:
      - run: echo "START $(date +%s.%N)"; sleep 2; echo "END $(date +%s.%N)"
      - run: mkdir -p out && echo from-left > out/l.txt
      - persist_to_workspace: {root: out, paths: [l.txt]}
  right:
    machine: true
    steps:
      - run: echo "START $(date +%s.%N)"; sleep 2; echo "END $(date +%s.%N)"
      - run: mkdir -p out && echo from-right > out/r.txt
      - persist_to_workspace: {root: out, paths: [r.txt]}
  join:
    machine: true
    parallelism: 3
    steps:
      - attach_workspace: {at: ws}
      - run: echo "node $CIRCLE_NODE_INDEX sees $(cat ws/l.txt ws/r.txt | tr '\\n' ' ')"
  broken:
    machine: true
    steps: [run: exit 3]
  after:
    machine: true
    steps: [run: echo SHOULD-NOT-RUN]
workflows:
  w:
    jobs:
      - left
      - right
      - join: {requires: [left, right]}
  bad:
    jobs: [broken, {after: {requires: [broken]}}]
"""


def interval(out, prefix):
    lines = [l[len(prefix):] for l in out.splitlines() if l.startswith(prefix)]
    start = [float(l.split()[1]) for l in lines if l.startswith("START ")]
    end = [float(l.split()[1]) for l in lines if l.startswith("END ")]
    expect(len(start) == 1 and len(end) == 1, f"no START/END lines for {prefix!r}: {out[-2000:]}")
    return start[0], end[0]


@test
def dash_j_runs_independent_jobs_and_nodes_at_once_with_prefixed_output():
    d = project(PARALLEL)
    rc, out, err = drover(d, "-j", "3", "--workflow", "w")
    expect(rc == 0, f"rc={rc} {out[-3000:]} {err}")
    ls, le = interval(out, "[left] ")
    rs, re_ = interval(out, "[right] ")
    # with -j 3 the two independent jobs overlap; one after the other they never would
    expect(ls < re_ and rs < le, f"left {ls}-{le} and right {rs}-{re_} did not overlap")
    for node in range(3):
        want = f"[join {node + 1}/3] node {node} sees from-left from-right"
        expect(want in [l.rstrip() for l in out.splitlines()], f"missing {want!r}: {out[-2000:]}")
    expect(out.index("[join 1/3]") > out.index("[left] END"), "join started before left ended")
    summ = out.split("== summary ==")[1]
    expect("success  join" in summ and "[node 3/3]" in summ, summ)


@test
def dash_j_blocks_downstream_of_a_failure_and_rejects_bad_counts():
    d = project(PARALLEL)
    rc, out, err = drover(d, "-j", "2", "--workflow", "bad")
    expect(rc == 1 and "SHOULD-NOT-RUN" not in out, f"rc={rc} {out[-2000:]}")
    summ = out.split("== summary ==")[1]
    expect("failed   broken" in summ and "blocked  after" in summ, summ)
    rc, out, err = drover(d, "-j", "0", "--workflow", "bad")
    expect(rc == 2 and "-j takes a number" in err, f"rc={rc} {err}")


@test
def dash_j_sigterm_cancels_every_running_node():
    tag = f"drover-jcancel-{os.getpid()}"
    d = project(f"""
version: 2.1
jobs:
  a:
    machine: true
    parallelism: 2
    steps:
      - run: exec -a {tag}-n$CIRCLE_NODE_INDEX sleep 1000
  b:
    machine: true
    steps: [run: echo SHOULD-NOT-RUN]
workflows:
  w:
    jobs: [a, {{b: {{requires: [a]}}}}]
""")
    p = subprocess.Popen([DROVER, "run", "-j", "4", "--store", os.path.join(d, "store")], cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ps = subprocess.run(["pgrep", "-f", f"{tag}-n"], capture_output=True, text=True).stdout
        if len(ps.split()) >= 2:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    expect(p.returncode == 4, f"rc={p.returncode} {out[-1500:]} {err}")
    expect("SHOULD-NOT-RUN" not in out, out)
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
    expect(left.strip() == "", f"left behind: {left}")


@test
def checkout_committed_gives_the_local_repository_at_head():
    d = project("""
version: 2.1
jobs:
  build:
    machine: true
    steps:
      - checkout
      - run: cat committed.txt; test ! -e uncommitted.txt && echo "branch=$CIRCLE_BRANCH sha=$CIRCLE_SHA1 repo=$CIRCLE_PROJECT_REPONAME"
""")
    git = ["git", "-C", d, "-c", "user.email=t@example.com", "-c", "user.name=t"]
    # the work tree stays 0700 (mkdtemp): the job gets drover's snapshot, not the tree itself
    subprocess.run(["git", "init", "-q", "-b", "topic", d], check=True)
    with open(os.path.join(d, "committed.txt"), "w") as f:
        f.write("from-the-repo\n")
    subprocess.run([*git, "add", "committed.txt", ".circleci"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    with open(os.path.join(d, "uncommitted.txt"), "w") as f:
        f.write("x\n")
    rc, out, err = drover(d, "--committed", "build")
    expect(rc == 0, f"rc={rc} {out[-2000:]} {err}")
    expect("from-the-repo" in out and "as committed" in out, out)
    expect(f"branch=topic sha={sha} repo={os.path.basename(d)}" in out, out)




if __name__ == "__main__":
    main()
