#!/usr/bin/env python3
"""spec_limits_test.py: the low findings of issue 18 — what a job spec or a job's output can do to
drover's own reporting: NUL bytes in `drover run -j N` output, more steps than the output spool
holds, an empty shell, a working directory that cannot be entered, hostile id.job values."""
import os
import shutil
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402
DROVER = os.path.abspath(DROVER)


def spec(steps, **kw):
    s = {"version": 1,
         "id": {"job": kw.pop("job", f"lim{os.getpid()}-{count()}"), "name": "limits",
                "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "machine", "resources": {"memory_mb": 512}},
         "steps": steps}
    s.update(kw)
    return s


def step_results(events):
    return {e["step"]: e for e in events if e["type"] == "step_finished"}


@test
def run_with_jobs_keeps_the_bytes_after_a_nul_in_a_line():
    d = tempfile.mkdtemp(prefix="drover-lim-")
    try:
        os.makedirs(os.path.join(d, ".circleci"))
        with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
            f.write("version: 2.1\njobs:\n"
                    "  a:\n    machine: true\n    steps: [run: printf 'before\\000AFTER-NUL\\n']\n"
                    "  b:\n    machine: true\n    steps: [run: 'true']\n"
                    "workflows:\n  w:\n    jobs: [a, b]\n")
        p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store"), "-j", "2",
                            "--workflow", "w"], cwd=d, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    expect(p.returncode == 0, p.stderr.decode(errors="replace"))
    expect(b"before\0AFTER-NUL" in p.stdout, p.stdout.decode(errors="replace"))


@test
def more_steps_than_the_output_holds_are_refused_not_lost():
    steps = [{"type": "run", "name": f"s{i}", "command": "true"} for i in range(4100)]
    rc, out, err, ev = run_job(spec(steps), timeout=300)
    expect(rc == 2 and "$.steps" in err and "4092" in err, f"rc={rc} {err[-500:]}")


@test
def an_empty_shell_is_a_spec_error_not_out_of_memory():
    rc, out, err, ev = run_job(spec([{"type": "run", "shell": " ", "command": "true"}]))
    expect(rc == 2 and "$.steps[0].shell" in err, f"rc={rc} {out} {err}")
    rc, out, err, ev = run_job(spec([{"type": "run", "command": "true"}], shell=""))
    expect(rc == 2 and "$.shell" in err, f"rc={rc} {out} {err}")
    expect("out of memory" not in out + err, out + err)


@test
def a_working_directory_that_cannot_be_entered_is_named():
    rc, out, err, ev = run_job(spec([{"type": "run", "working_directory": "/etc/passwd",
                                      "command": "true"}]))
    reason = step_results(ev)[0].get("reason", "")
    expect(rc == 1 and "cannot enter the directory /etc/passwd" in reason, f"{reason} {out}")
    expect("/bin/bash" not in reason, reason)


@test
def hostile_job_ids_are_refused():
    for bad in ("../../../tmp/drover-lim-escape", "a/b", "..", ".hidden", "x" * 200, "tab\there"):
        rc, out, err, ev = run_job(spec([{"type": "run", "command": "true"}], job=bad))
        expect(rc == 2 and "$.id.job" in err, f"id.job {bad!r}: rc={rc} {err}")
    expect(not os.path.exists("/tmp/drover-lim-escape"), "a spool was made outside TMPDIR")


main()
