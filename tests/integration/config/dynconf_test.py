#!/usr/bin/env python3
"""dynconf_test.py: dynamic config (`setup: true`) through the real binary. `drover run` runs the
setup workflow, whose job generates a config and continues with it and a parameter
(`circleci continue FILE --parameters JSON`); the continued workflow runs and sees the
parameter; a second continue is refused (by the in-job tool, and by drover when the job forges
a request); a setup workflow that does not continue ends the pipeline with a clear message; a
continued config cannot be a setup config. `drover job` emits the `continuation` event (what the
agent sends to the control plane) and only for the job's own key."""
import json
import os
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402

DROVER = os.path.abspath(DROVER)

# The generated config: written by the setup job (a heredoc; `\\<<` is CircleCI's escape, so
# the setup config leaves the continued config's parameter reference alone).
GENERATED = r"""
            cat > /tmp/gen.yml <<'YML'
            version: 2.1
            parameters:
              greeting: {type: string, default: unset}
              count: {type: integer, default: 0}
            jobs:
              hello:
                machine: true
                steps:
                  - run: echo "GREETING=\<< pipeline.parameters.greeting >> COUNT=\<< pipeline.parameters.count >>"
                  - run: echo "KEY=[${CIRCLE_CONTINUATION_KEY:-none}]"
              after:
                machine: true
                steps: [run: echo AFTER-RAN]
            workflows:
              continued:
                jobs: [hello, {after: {requires: [hello]}}]
            YML
"""

SETUP = """
version: 2.1
setup: true
jobs:
  generate:
    machine: true
    steps:
      - run:
          name: generate
          command: |
%s
            circleci continue /tmp/gen.yml --parameters '{"greeting": "from-setup", "count": 7}'
      - run:
          name: again
          command: |
            circleci continue /tmp/gen.yml || echo "SECOND-REFUSED rc=$?"
  forge:
    machine: true
    steps:
      - run:
          name: generate
          command: |
%s
            circleci continue /tmp/gen.yml
      - run:
          name: forge
          command: |
            rm /tmp/.drover-continuation.json
            printf '{"continuation-key":"%%s","configuration":"version: 2.1\\\\n"}' \\
              "$CIRCLE_CONTINUATION_KEY" > /tmp/.drover-continuation.json
  quiet:
    machine: true
    steps: [run: echo SETUP-ONLY]
  nested:
    machine: true
    steps:
      - run:
          name: nested
          command: |
            printf 'version: 2.1\\nsetup: true\\njobs: {a: {machine: true, steps: [run: "true"]}}\\nworkflows: {w: {jobs: [a]}}\\n' > /tmp/n.yml
            circleci continue /tmp/n.yml
workflows:
  setup:
    jobs: [generate]
  forge:
    jobs: [forge]
  quiet:
    jobs: [quiet]
  nested:
    jobs: [nested]
  two:
    jobs: [generate, {generate: {name: generate-2, requires: [generate]}}]
""" % (GENERATED, GENERATED)


def project(config=SETUP):
    d = tempfile.mkdtemp(prefix="drover-dynconf-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(config)
    return d


def drover_run(d, *args, timeout=240):
    p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store"), *args], cwd=d,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summaries(out):
    """Each summary block as {job: status}, in order."""
    res = []
    for block in out.split("== summary ==")[1:]:
        s = {}
        for ln in block.splitlines():
            if not ln or ln.startswith(" ") or ln.startswith("==") or len(ln.split()) < 2:
                if ln.startswith("=="):
                    break
                continue
            s[ln.split()[1]] = ln.split()[0]
        res.append(s)
    return res


def check_continued(rc, out, err):
    expect(rc == 0, f"rc={rc} {out[-2500:]} {err[-800:]}")
    expect("GREETING=from-setup COUNT=7" in out, f"the parameters did not arrive: {out[-2500:]}")
    expect("KEY=[none]" in out, "a continued job got a continuation key")
    expect("AFTER-RAN" in out, out[-1500:])
    expect("the pipeline continues" in out, out[-1500:])
    s = summaries(out)
    expect(len(s) == 2 and s[0].get("generate") == "success" and s[1].get("hello") == "success"
           and s[1].get("after") == "success", s)


@test
def setup_job_continues_with_a_generated_config_and_parameters():
    d = project()
    rc, out, err = drover_run(d, "--workflow", "setup")
    check_continued(rc, out, err)
    expect("SECOND-REFUSED rc=1" in out and "continued the pipeline already" in out,
           f"a second continue with the same key was not refused: {out[-2500:]}")


@test
def dash_j_continues_too():
    d = project()
    rc, out, err = drover_run(d, "-j", "2", "--workflow", "setup")
    check_continued(rc, out, err)


@test
def drover_refuses_a_second_forged_request_with_the_spent_key():
    d = project()
    rc, out, err = drover_run(d, "--workflow", "forge")
    expect("refused: this job has continued the pipeline already" in out, out[-2500:])
    s = summaries(out)
    expect(s and s[0].get("forge") == "failed", f"the forging job did not fail: {s}")
    # the first continuation stands (as on CircleCI, where the pipeline has continued)
    expect("GREETING=unset COUNT=0" in out, out[-2500:])
    expect(rc == 1, f"rc={rc}")


@test
def a_second_job_continuing_the_same_pipeline_is_refused():
    d = project()
    rc, out, err = drover_run(d, "--workflow", "two")
    expect("the continuation of generate-2 is refused: the pipeline continued already "
           "(from generate" in out, out[-2500:])
    s = summaries(out)
    expect(len(s) == 2 and s[1].get("hello") == "success", f"the pipeline did not continue "
           f"exactly once: {s}")


@test
def setup_without_continuation_ends_the_pipeline_cleanly():
    d = project()
    rc, out, err = drover_run(d, "--workflow", "quiet")
    expect(rc == 0, f"rc={rc} {err}")
    expect("SETUP-ONLY" in out, out)
    expect("the setup workflow did not continue the pipeline" in out and "ends here" in out,
           out[-800:])
    expect(len(summaries(out)) == 1, out[-800:])


@test
def continued_config_cannot_be_a_setup_config():
    d = project()
    rc, out, err = drover_run(d, "--workflow", "nested")
    expect(rc == 2, f"rc={rc} {out[-800:]}")
    expect("a continued config cannot be a setup config" in err, err)


@test
def config_process_marks_a_setup_config():
    d = project()
    p = subprocess.run([DROVER, "config", "process"], cwd=d, capture_output=True, text=True,
                       timeout=60)
    expect(p.returncode == 0 and json.loads(p.stdout).get("setup") is True,
           f"rc={p.returncode} {p.stdout[:300]} {p.stderr}")
    d = project("version: 2.1\njobs: {a: {machine: true, steps: [run: 'true']}}\n"
                "workflows: {w: {jobs: [a]}}\n")
    p = subprocess.run([DROVER, "config", "process"], cwd=d, capture_output=True, text=True,
                       timeout=60)
    expect(p.returncode == 0 and "setup" not in json.loads(p.stdout), p.stdout[:300])


@test
def continue_outside_a_setup_workflow_is_refused_in_the_job():
    d = project("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n"
                "      - run: |\n          echo 'version: 2.1' > /tmp/c.yml\n"
                "          circleci continue /tmp/c.yml\n"
                "workflows:\n  w:\n    jobs: [a]\n")
    rc, out, err = drover_run(d)
    expect(rc == 1 and "CIRCLE_CONTINUATION_KEY is not set" in out,
           f"rc={rc} {out[-800:]} {err[-800:]}")


def job_spec(steps, key):
    return {"version": 1,
            "id": {"job": f"dyn{os.getpid()}-{count()}", "name": "setup", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine",
                         "resources": {"memory_mb": 1024}},
            "environment": [{"name": "CIRCLE_CONTINUATION_KEY", "value": key, "secret": True}],
            "steps": steps}


@test
def drover_job_emits_the_continuation_event():
    key = "k" * 40
    rc, out, err, ev = run_job(job_spec([
        {"type": "run", "command": "printf 'version: 2.1\\n' > /tmp/c.yml && "
                                   "echo '{\"p\": \"v\"}' > /tmp/p.json && "
                                   "circleci continue /tmp/c.yml --parameters /tmp/p.json"},
        {"type": "run", "command": "echo later"}], key))
    expect(rc == 0, f"rc={rc} {out} {err}")
    cont = [e for e in ev if e["type"] == "continuation"]
    expect(len(cont) == 1, f"continuation events: {cont}")
    c = cont[0]
    expect(c["configuration"] == "version: 2.1\n" and c["parameters"] == {"p": "v"}, c)
    expect("continuation-key" not in c and key not in json.dumps(ev), "the key left the job")
    # the event comes after the step's start and before its end: it belongs to step 0
    order = [(e["type"], e.get("step")) for e in ev]
    expect(order.index(("continuation", None)) < order.index(("step_finished", 0)), order)


@test
def drover_job_refuses_a_request_with_another_key():
    rc, out, err, ev = run_job(job_spec([
        {"type": "run", "command": "printf '{\"continuation-key\":\"other\","
                                   "\"configuration\":\"version: 2.1\"}' "
                                   "> /tmp/.drover-continuation.json"}], "k" * 40))
    expect(rc == 1 and "the continuation key is not this job's" in out, f"rc={rc} {out}")
    expect(not [e for e in ev if e["type"] == "continuation"], ev)


main()
