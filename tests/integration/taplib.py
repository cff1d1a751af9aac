"""taplib.py: the small harness the python integration tests share — TAP output, checks, and
running a job spec through `drover job` with its events."""
import json
import os
import subprocess
import sys
import tempfile

DROVER = os.environ.get("DROVER", "drover")
_results = []


def test(fn):
    """Run fn now; record ok / not ok with the failure message."""
    try:
        fn()
        _results.append((True, fn.__name__, ""))
    except AssertionError as e:
        _results.append((False, fn.__name__, str(e)))
    except Exception as e:  # noqa: BLE001 - a crashing test is a failed test, reported
        _results.append((False, fn.__name__, f"{type(e).__name__}: {e}"))
    return fn


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def count():
    return len(_results)


def run_job(spec, timeout=120, env=None):
    """Run a job spec through `drover job`; returns (rc, stdout, stderr, events)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        with tempfile.TemporaryFile("w+") as ev:
            fd = ev.fileno()
            p = subprocess.run([DROVER, "job", "--spec", f.name, "--events-fd", str(fd)],
                               capture_output=True, text=True, timeout=timeout, env=env,
                               pass_fds=(fd,))
            ev.seek(0)
            events = [json.loads(line) for line in ev.read().splitlines() if line.strip()]
    finally:
        os.unlink(f.name)
    return p.returncode, p.stdout, p.stderr, events


def main():
    for i, (ok, name, msg) in enumerate(_results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for line in msg.splitlines()[:30]:
            print(f"#   {line}")
    print(f"1..{len(_results)}")
    sys.exit(0 if all(ok for ok, _, _ in _results) else 1)
