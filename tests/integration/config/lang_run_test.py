#!/usr/bin/env python3
"""lang_run_test.py: issue 13's language through the real binary: `drover run` honours requires
statuses (a cleanup job after a failed job), reports jobs this builder cannot run (macOS) and
their dependents as not run without failing, runs scheduled workflows only with --trigger
schedule; `drover config process` carries statuses, unrunnable jobs and warnings."""
import json
import os
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DROVER = os.path.abspath(DROVER)

CONFIG = """
version: 2.1
x-machine: &m {machine: true}
jobs:
  build:
    <<: *m
    steps: [run: exit 3]
  deploy:
    <<: *m
    steps: [run: echo DEPLOY-RAN]
  cleanup:
    <<: *m
    steps: [run: echo CLEANUP-RAN]
  slow:
    <<: *m
    steps: [run: echo "START $(date +%s.%N)" && sleep 2 && echo "END $(date +%s.%N)"]
  mac:
    macos: {xcode: "15.0.0"}
    steps: [run: echo MAC-RAN]
  after-mac:
    <<: *m
    steps: [run: echo AFTER-MAC-RAN]
  always:
    <<: *m
    steps: [run: echo ALWAYS-RAN]
workflows:
  w:
    jobs:
      - build
      - slow
      - deploy: {requires: [build]}
      - cleanup:
          requires:
            - build: [success, failed]
      - mac
      - after-mac: {requires: [mac]}
      - always: {requires: [{mac: terminal}]}
  mac-only:
    jobs: [mac, {after-mac: {requires: [mac]}}, {always: {requires: [{mac: terminal}]}}]
  serial:
    jobs:
      - slow: {name: first, serial-group: deploy/prod}
      - slow: {name: second, serial-group: deploy/prod}
  nightly:
    triggers:
      - schedule: {cron: "0 3 * * *", filters: {branches: {only: [main]}}}
    jobs: [cleanup]
"""


def project():
    d = tempfile.mkdtemp(prefix="drover-lang-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(CONFIG)
    return d


def drover(d, *args, timeout=180):
    cmd = [DROVER, *args] if args[0] == "config" else \
        [DROVER, "run", "--store", os.path.join(d, "store"), *args]
    p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summary(out):
    lines = out.split("== summary ==")[-1].splitlines()
    return {ln.split()[1]: ln.split()[0] for ln in lines if ln and not ln.startswith(" ")}


def check_workflow_w(rc, out):
    expect(rc == 1, f"the failed build fails the workflow: rc={rc} {out[-1500:]}")
    s = summary(out)
    expect(s.get("build") == "failed" and s.get("deploy") == "blocked", s)
    expect("DEPLOY-RAN" not in out, "deploy ran after a failed build")
    expect(s.get("cleanup") == "success" and "CLEANUP-RAN" in out,
           f"cleanup (requires build: [success, failed]) did not run: {s}")
    expect(s.get("mac") == "not_run" and "mac: not run: macOS" in out, s)
    expect(s.get("after-mac") == "blocked" and "AFTER-MAC-RAN" not in out, s)
    expect(s.get("always") == "success" and "ALWAYS-RAN" in out, s)
    expect("MAC-RAN" not in out, "the macOS job ran")


@test
def cleanup_runs_after_a_failed_job_and_mac_jobs_are_not_run():
    d = project()
    rc, out, err = drover(d, "--workflow", "w")
    check_workflow_w(rc, out)


@test
def dash_j_honours_statuses_and_never_starts_a_blocked_job():
    d = project()
    rc, out, err = drover(d, "-j", "2", "--workflow", "w")
    check_workflow_w(rc, out)


@test
def jobs_not_run_on_this_builder_do_not_fail_the_workflow():
    d = project()
    rc, out, err = drover(d, "--workflow", "mac-only")
    s = summary(out)
    expect(rc == 0 and s.get("mac") == "not_run" and s.get("always") == "success", f"rc={rc} {s}")
    rc, out, err = drover(d, "mac")
    expect(rc == 1 and "job 'mac' is not run: macOS" in err, f"rc={rc} {err}")


def stamps(out, job, what):
    return [float(ln.split()[-1]) for ln in out.splitlines()
            if ln.startswith(f"[{job}] ") and len(ln.split()) == 3 and ln.split()[1] == what]


@test
def dash_j_runs_jobs_of_one_serial_group_one_after_another():
    d = project()
    rc, out, err = drover(d, "-j", "2", "--workflow", "serial")
    expect(rc == 0, f"rc={rc} {out[-1500:]} {err}")
    s1, e1 = stamps(out, "first", "START"), stamps(out, "first", "END")
    s2, e2 = stamps(out, "second", "START"), stamps(out, "second", "END")
    expect(len(s1) == len(e1) == len(s2) == len(e2) == 1, out[-2000:])
    expect(s2[0] >= e1[0] or s1[0] >= e2[0], f"overlap: first {s1}-{e1}, second {s2}-{e2}")


@test
def scheduled_workflows_run_only_with_trigger_schedule():
    d = project()
    rc, out, err = drover(d, "--workflow", "nightly", "--branch", "main")
    expect(rc == 1 and "workflow 'nightly' runs in scheduled pipelines only" in err and
           "--trigger schedule" in err, f"rc={rc} {err}")
    rc, out, err = drover(d, "--list", "--branch", "main")
    expect(rc == 0 and "nightly  (not run: scheduled pipelines only" in out, f"rc={rc} {out}")
    rc, out, err = drover(d, "--workflow", "nightly", "--branch", "main", "--trigger",
                          "schedule", "--schedule-name", "nightly")
    expect(rc == 0 and "CLEANUP-RAN" in out, f"rc={rc} {out[-1000:]} {err}")


@test
def config_process_carries_statuses_and_unrunnable_jobs():
    d = project()
    rc, out, err = drover(d, "config", "process", "--branch", "main")
    expect(rc == 0, f"rc={rc} {err}")
    doc = json.loads(out)
    wf = {w["name"]: w for w in doc["workflows"]}
    expect(set(wf) == {"w", "mac-only", "serial"}, list(wf))
    jobs = {j["name"]: j for j in wf["w"]["jobs"]}
    expect(jobs["cleanup"]["requires_status"] == {"build": ["success", "failed"]}, jobs["cleanup"])
    expect(jobs["always"]["requires_status"]["mac"] ==
           ["success", "failed", "canceled", "unauthorized", "not_run"], jobs["always"])
    expect(jobs["mac"]["spec"] is None and "macOS" in jobs["mac"]["unrunnable"], jobs["mac"])
    expect(err.count("cannot run on this builder") == 1, err)
    rc, out, err = drover(d, "config", "process", "--branch", "main", "--trigger", "schedule")
    names = [w["name"] for w in json.loads(out)["workflows"]]
    expect(rc == 0 and "nightly" in names, f"rc={rc} {names}")
    rc, out, err = drover(d, "config", "validate")
    expect(rc == 0 and "config is valid" in out and "cannot run on this builder" in err,
           f"rc={rc} {out} {err}")


if __name__ == "__main__":
    main()
