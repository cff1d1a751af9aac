"""testlog_test.py: scripts/lib/testlog.py, the verdict of scripts/test.sh, on hand-made meson
test logs: failures, flakes as their own class, and a flake twice in a row failing the suite."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTLOG = os.path.join(HERE, "..", "..", "..", "scripts", "lib", "testlog.py")
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
from taplib import expect, main, test  # noqa: E402 - the shared TAP harness


def entry(name, result):
    return {"name": "drover:unit / " + name, "result": result, "stdout": f"log of {name}\n"}


def run_suite(d, first, again=None):
    """Write what scripts/test.sh's suite() leaves: testlog.json, and testlog-first.json when
    some test failed and the failed ones ran again (again: their results)."""
    logs = os.path.join(d, "meson-logs")
    os.makedirs(logs, exist_ok=True)
    for f in ("testlog.json", "testlog-first.json"):
        if os.path.exists(os.path.join(logs, f)):
            os.remove(os.path.join(logs, f))
    write = lambda f, es: open(os.path.join(logs, f), "w").write(  # noqa: E731
        "".join(json.dumps(e) + "\n" for e in es))
    if again is None:
        write("testlog.json", first)
    else:
        write("testlog-first.json", first)
        write("testlog.json", again)


def tl(*args):
    p = subprocess.run([sys.executable, TESTLOG] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout


def summary(*dirs, fuzz="ok"):
    return tl("summary", "--stage", "fuzz=" + fuzz, *dirs)


def last(out):
    return out.strip().splitlines()[-1]


@test
def all_passing():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "OK"), entry("b", "OK"), entry("c", "SKIP")])
        rc, out = summary(d)
        expect(rc == 0, out)
        expect(last(out) == "3 passed, 0 failed, 1 skipped", out)  # fuzz counts as one
        expect("0 flaky" in out, out)


@test
def a_failure_names_the_test_and_fails():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "OK"), entry("b", "FAIL")], [entry("b", "FAIL")])
        rc, out = summary(d)
        expect(rc == 1, out)
        expect(f"failed: {d}: drover:unit / b (FAIL)" in out, out)
        expect("log of b" in out, out)
        expect(last(out) == "2 passed, 1 failed, 0 skipped", out)
        rc, _ = tl("retried", d)
        expect(rc == 1, "retried must fail when the test failed again")


@test
def failed_lists_unique_short_names():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "FAIL"), entry("a", "FAIL"), entry("b", "TIMEOUT"),
                      entry("c", "OK"), entry("d", "SKIP")])
        rc, out = tl("failed", os.path.join(d, "meson-logs", "testlog.json"))
        expect(rc == 0 and out.split() == ["a", "b"], out)


@test
def a_flake_is_its_own_class_and_once_does_not_fail():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "OK"), entry("b", "FAIL")], [entry("b", "OK")])
        rc, _ = tl("retried", d)
        expect(rc == 0, "retried: b passed when run again")
        rc, out = summary(d)
        expect(rc == 0, out)
        expect(f"flaky: {d}: drover:unit / b" in out, out)
        expect("1 flaky" in out and "log of b" in out, out)
        expect(last(out) == "2 passed, 0 failed, 0 skipped", out)  # a and fuzz: b is not passed
        hist = json.load(open(os.path.join(d, "flaky-history.json")))
        expect(hist[-1]["flaky"] == ["drover:unit / b"], hist)


@test
def the_same_flake_in_two_consecutive_runs_fails():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "OK"), entry("b", "FAIL")], [entry("b", "OK")])
        expect(summary(d)[0] == 0, "first flake")
        run_suite(d, [entry("a", "OK"), entry("b", "TIMEOUT")], [entry("b", "OK")])
        rc, out = summary(d)
        expect(rc == 1, out)
        expect("drover:unit / b is flaky twice in a row" in out, out)
        expect("1 flaky, 1 of them twice in a row" in out, out)


@test
def flakes_apart_or_of_other_tests_do_not_fail():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("a", "OK"), entry("b", "FAIL")], [entry("b", "OK")])
        expect(summary(d)[0] == 0, "b flakes")
        run_suite(d, [entry("a", "FAIL"), entry("b", "OK")], [entry("a", "OK")])
        rc, out = summary(d)
        expect(rc == 0, "a flakes after b did: " + out)
        run_suite(d, [entry("a", "OK"), entry("b", "OK")])
        expect(summary(d)[0] == 0, "a clean run")
        run_suite(d, [entry("a", "FAIL"), entry("b", "OK")], [entry("a", "OK")])
        rc, out = summary(d)
        expect(rc == 0, "a flakes again, but a clean run came between: " + out)


@test
def summarising_the_same_run_twice_is_one_run():
    with tempfile.TemporaryDirectory() as d:
        run_suite(d, [entry("b", "FAIL")], [entry("b", "OK")])
        expect(summary(d)[0] == 0, "first summary")
        rc, out = summary(d)
        expect(rc == 0, "the same logs again are not a second run: " + out)
        expect(len(json.load(open(os.path.join(d, "flaky-history.json")))) == 1, "one entry")


@test
def history_is_per_build_dir_and_fuzz_failure_fails():
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        run_suite(d1, [entry("b", "FAIL")], [entry("b", "OK")])
        run_suite(d2, [entry("b", "OK")])
        expect(summary(d1, d2)[0] == 0, "b flakes in d1")
        run_suite(d1, [entry("b", "OK")])
        run_suite(d2, [entry("b", "FAIL")], [entry("b", "OK")])
        rc, out = summary(d1, d2)
        expect(rc == 0, "b flaked in d1, then in d2: not the same build: " + out)
        rc, out = summary(d1, d2, fuzz="failed")
        expect(rc == 1 and "failed: fuzz" in out, out)


main()
