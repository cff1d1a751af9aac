#!/usr/bin/env python3
"""job_test.py: `drover job` runs real job specs in the real sandbox; checks output, exit codes,
events, BASH_ENV, background steps, no_output_timeout, when, masking, halt and cancellation."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402



def spec(steps, **kw):
    s = {"version": 1,
         "id": {"job": kw.pop("job", f"t{os.getpid()}-{count()}"), "name": kw.pop("name", "test"),
                "build_num": 5, "node_index": kw.pop("node_index", 0),
                "node_total": kw.pop("node_total", 1)},
         "executor": {"runtime": "sandbox", "kind": "machine", "resources": {"memory_mb": 1024}},
         "steps": steps}
    s.update(kw)
    return s








def finished(events):
    return [e for e in events if e["type"] == "finished"][-1]


def step_results(events):
    return {e["step"]: e for e in events if e["type"] == "step_finished"}


@test
def successful_job_exits_zero_with_ordered_events():
    rc, out, err, ev = run_job(spec([{"type": "run", "command": "echo hello from $CIRCLE_JOB"}]))
    expect(rc == 0, f"rc={rc} {err}")
    expect("hello from test" in out, out)
    types = [e["type"] for e in ev]
    expect(types == ["started", "step_started", "step_finished", "finished"], types)
    expect([e["seq"] for e in ev] == list(range(1, len(ev) + 1)), "sequence numbers not 1..n")
    expect(finished(ev)["status"] == "success", ev)
    # the step's kind has its own key (it was written as "type", which the event's type replaced)
    expect(ev[1].get("step_type") == "run" and ev[1]["background"] is False, ev[1])


@test
def failing_step_fails_the_job_and_skips_on_success_steps():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "exit 3"},
        {"type": "run", "command": "echo SHOULD-NOT-RUN"},
        {"type": "run", "command": "echo ON-FAIL-RAN", "when": "on_fail"},
        {"type": "run", "command": "echo ALWAYS-RAN", "when": "always"},
    ]))
    expect(rc == 1, f"rc={rc}")
    expect("SHOULD-NOT-RUN" not in out and "ON-FAIL-RAN" in out and "ALWAYS-RAN" in out, out)
    sr = step_results(ev)
    expect(sr[0]["exit_code"] == 3 and sr[0]["status"] == "failed", sr[0])
    expect(1 not in sr, "a skipped on_success step was reported as run")
    expect(finished(ev)["status"] == "failed", ev)


@test
def on_fail_steps_do_not_run_after_success():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "true"},
        {"type": "run", "command": "echo ON-FAIL-RAN", "when": "on_fail"},
    ]))
    expect(rc == 0 and "ON-FAIL-RAN" not in out, out)


@test
def bash_env_carries_exports_to_later_steps():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": 'echo "export GREETING=from-step-one" >> "$BASH_ENV"'},
        {"type": "run", "command": 'echo "greeting=$GREETING"'},
    ]))
    expect(rc == 0 and "greeting=from-step-one" in out, out + err)


@test
def circleci_environment_is_set_and_nothing_leaks():
    env = dict(os.environ, SECRET_OF_AGENT="leaky")
    s = spec([{"type": "run", "command": "env | sort"}], node_index=1, node_total=3,
             vcs={"branch": "main", "revision": "0123456789abcdef0123456789abcdef01234567"},
             environment=[{"name": "JOBVAR", "value": "j"}])
    s["steps"][0]["environment"] = [{"name": "JOBVAR", "value": "step-wins"}]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    p = subprocess.run([DROVER, "job", "--spec", f.name], capture_output=True, text=True, env=env)
    os.unlink(f.name)
    for kv in ("CI=true", "CIRCLECI=true", "CIRCLE_NODE_INDEX=1", "CIRCLE_NODE_TOTAL=3",
               "CIRCLE_BRANCH=main", "CIRCLE_SHA1=0123456789abcdef", "CIRCLE_BUILD_NUM=5",
               "CIRCLE_JOB=test", "HOME=/home/circleci", "JOBVAR=step-wins", "BASH_ENV="):
        expect(kv in p.stdout, f"{kv} missing: {p.stdout}")
    expect("leaky" not in p.stdout, "the agent's environment leaked into the job")


@test
def secrets_are_masked_in_output():
    rc, out, err, ev = run_job(spec(
        [{"type": "run", "command": 'printf "a%sb\\n" "$TOKEN"; printf "%s" "$TOKEN" | fold -w 3'}],
        environment=[{"name": "TOKEN", "value": "hunter2-secret", "secret": True},
                     {"name": "SHORT", "value": "abc", "secret": True}]))
    expect(rc == 0, err)
    expect("hunter2-secret" not in out and "a********b" in out, out)


@test
def background_step_runs_alongside_and_is_stopped_at_job_end():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "name": "server", "background": True,
         "command": "while true; do echo tick; sleep 0.2; done"},
        {"type": "run", "command": "sleep 1; echo foreground-done"},
    ]))
    expect(rc == 0, f"rc={rc} {err}")
    expect(out.count("tick") >= 2 and "foreground-done" in out, out)
    sr = step_results(ev)
    expect(sr[0]["status"] == "success" and sr[1]["status"] == "success", sr)


@test
def no_output_timeout_fails_a_silent_step():
    t0 = time.time()
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "echo start; sleep 30", "no_output_timeout": 2}]))
    took = time.time() - t0
    expect(rc == 1, f"rc={rc}")
    expect(took < 15, f"took {took:.1f}s")
    sr = step_results(ev)
    expect(sr[0]["status"] == "timedout" and "Too long with no output" in sr[0]["reason"], sr)


@test
def output_resets_the_no_output_timer():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "for i in 1 2 3 4; do echo $i; sleep 1; done",
         "no_output_timeout": 2}]))
    expect(rc == 0, f"a chatty step timed out: {ev}")


@test
def circleci_agent_step_halt_ends_the_job_successfully():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "circleci-agent step halt"},
        {"type": "run", "command": "echo AFTER-HALT"},
    ]))
    expect(rc == 0 and "AFTER-HALT" not in out, f"rc={rc} {out} {err}")


@test
def sigterm_cancels_and_leaves_no_process():
    tag = f"drover-cancel-{os.getpid()}"
    s = spec([{"type": "run", "background": True, "command": f"exec -a {tag}-bg sleep 1000"},
              {"type": "run", "command": f"(exec -a {tag}-child sleep 1000) & sleep 1000"}])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    os.unlink(f.name)
    expect(p.returncode == 4, f"rc={p.returncode} {err}")
    left = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
    expect(left.strip() == "", f"left behind: {left}")


@test
def job_timeout_ends_the_job():
    rc, out, err, ev = run_job(spec([{"type": "run", "command": "sleep 30"}],
                                    timeouts={"job": 2}))
    expect(rc == 1 and finished(ev)["status"] == "timedout", f"rc={rc} {finished(ev)}")


@test
def invalid_spec_is_rejected_with_the_json_path():
    rc, out, err, ev = run_job(spec([{"type": "run", "command": 42}]))
    expect(rc == 2, f"rc={rc}")
    expect("$.steps[0].command" in err, err)


@test
def oom_is_reported_with_the_limit():
    s = spec([{"type": "run", "command": "python3 -c 'x = bytearray(400 << 20)'"}])
    s["executor"]["resources"]["memory_mb"] = 64
    rc, out, err, ev = run_job(s)
    sr = step_results(ev)
    if os.geteuid() != 0 and "resource limits not enforced: no delegated cgroup" in out:
        # rootless without a delegated cgroup (tests/integration/rootless): no limit, said once
        expect(out.count("resource limits not enforced") == 1, out[-2000:])
        expect(rc == 0 and sr[0]["status"] == "success", sr)
        return
    expect(rc == 1 and sr[0]["status"] == "oom", sr)
    expect("out of memory (limit 64 MiB)" in sr[0]["reason"], sr[0])


@test
def hundreds_of_steps_reuse_process_slots():
    steps = [{"type": "run", "name": f"s{i}", "command": "true"} for i in range(300)]
    steps.append({"type": "run", "background": True, "command": "sleep 100"})
    steps.append({"type": "run", "command": "echo last-step-ran"})
    rc, out, err, ev = run_job(spec(steps))
    expect(rc == 0 and "last-step-ran" in out, f"rc={rc} {err} {out[-500:]}")
    expect(len(step_results(ev)) == 302, len(step_results(ev)))




@test
def unsupported_builtin_steps_fail_clearly():
    rc, out, err, ev = run_job(spec([{"type": "add_ssh_keys", "fingerprints": ["aa:bb"]},
                                     {"type": "setup_remote_docker", "when": "always"},
                                     {"type": "run", "command": "echo still-ran", "when": "always"}]))
    sr = step_results(ev)
    expect(rc == 1 and sr[0]["status"] == "failed" and sr[1]["status"] == "failed", sr)
    expect("no SSH key with fingerprint aa:bb" in sr[0]["reason"], sr[0])
    expect("setup_remote_docker" in sr[1]["reason"], sr[1])  # no docker_host in this spec
    expect("still-ran" in out, out)


@test
def bad_events_fd_is_a_usage_error():
    p = subprocess.run([DROVER, "job", "--spec", "-", "--events-fd", "97"], input="{}",
                       capture_output=True, text=True, timeout=30)
    expect(p.returncode == 2 and "--events-fd 97" in p.stderr, f"{p.returncode} {p.stderr}")



@test
def stalled_output_processor_pauses_the_step_and_loses_nothing():
    import urllib.request
    d = tempfile.mkdtemp(prefix="drover-outp-")
    double = os.path.join(os.environ.get("DROVER_SRC", "."), "tests", "doubles", "output_processor.py")
    srv = subprocess.Popen([sys.executable, double, "--dir", d, "--port-file", f"{d}/port",
                            "--token", "tok", "--stall"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(f"{d}/port") and open(f"{d}/port").read().strip():
                break
            time.sleep(0.05)
        port = int(open(f"{d}/port").read())
        s = spec([{"type": "run", "command": "python3 -c \"import sys; sys.stdout.write('drover-output-line\\n' * 300000)\"; echo DONE"}],
                 output={"url": f"http://127.0.0.1:{port}", "token": "tok"})
        env = dict(os.environ, DROVER_OUTPUT_SPOOL_MAX="1M")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(s, f)
        t0 = time.time()
        p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        time.sleep(3)
        expect(p.poll() is None, "the step finished although the processor was stalled")
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/control/resume",
                                                      method="POST"), timeout=5).read()
        out, err = p.communicate(timeout=120)
        os.unlink(f.name)
        expect(p.returncode == 0, f"rc={p.returncode} {err[-500:]}")
        expect(time.time() - t0 >= 3, "the step was not paused")
        stored = b""
        for root, _, files in os.walk(d):
            for name in files:
                if name.endswith(".out"):
                    stored += open(os.path.join(root, name), "rb").read()
        # rootless: the sandbox's notes are the "Spin up environment" stream (docs/rootless.md)
        if os.geteuid() != 0:
            stored = re.sub(rb"(?m)^(resource limits not enforced|network): [^\n]*\n", b"", stored)
        want = b"drover-output-line\n" * 300000 + b"DONE\n"
        expect(stored == want, f"received {len(stored)} bytes, expected {len(want)}")
    finally:
        srv.kill()
        srv.wait()

if __name__ == "__main__":
    main()
