"""agentlib.py: the harness of the agent integration tests (agent_test.py, agent_net_test.py):
the daemon under test started against the control-plane double, a TAP runner, and the test PKI
(tests/doubles/make_certs.sh) in a temporary directory."""
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback

DROVER = os.environ.get("DROVER", "drover")
SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "doubles"))
from control_plane import ControlPlane  # noqa: E402

FAKE = os.path.join(SRC, "tests", "integration", "agent", "fake_job.sh")
LEAN = os.path.join(os.path.dirname(os.path.abspath(DROVER)), "drover-agent")
# the daemon under test: DROVER_AGENT_BIN (e.g. the lean drover-agent), else `drover agent`
AGENT_BIN = os.environ.get("DROVER_AGENT_BIN")
TMP = tempfile.mkdtemp(prefix="drover-agent-test-")
CERTS = os.path.join(TMP, "certs")
subprocess.run([os.path.join(SRC, "tests", "doubles", "make_certs.sh"), CERTS], check=True)
TOKEN = os.path.join(TMP, "token")
with open(TOKEN, "w") as f:
    f.write("join-secret\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Agent:
    def __init__(self, urls, name, cert="client", extra=(), env=None, fake=True, metrics_flag=True,
                 lean=False, wrap=()):
        """wrap: a command prefix the daemon is exec'd by (e.g. unshare ... sh -c 'exec "$@"')."""
        self.log = os.path.join(TMP, name + ".log")
        self.work = os.path.join(TMP, name + ".work")
        cmd = [LEAN] if lean else ([AGENT_BIN] if AGENT_BIN else [DROVER, "agent"])
        args = list(wrap) + cmd + ["--servers", ",".join(urls), "--tls-ca", f"{CERTS}/ca.pem",
                "--tls-cert", f"{CERTS}/{cert}.pem", "--tls-key", f"{CERTS}/{cert}-key.pem",
                "--join-token-file", TOKEN, "--work-dir", self.work,
                "--claim-wait", "3s", "--name", name]
        if metrics_flag:
            args += ["--metrics-listen", ""]
        if fake:
            args += ["--job-command", FAKE]
        args += list(extra)
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                  stderr=open(self.log, "w"), env=e)

    def wait(self, timeout=20):
        return self.p.wait(timeout)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def logtext(self):
        with open(self.log) as f:
            return f.read()


def spec(jid, fake="0 0", **kw):
    s = {"version": 1, "id": {"job": jid, "name": "t", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "machine"},
         "steps": [{"type": "run", "name": "x", "command": "true"}], "fake": fake}
    s.update(kw)
    return s


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def seqs_once(cp, jid):
    evs = cp.events(jid)
    seqs = [e["seq"] for e in evs]
    expect(seqs == list(range(1, len(seqs) + 1)), f"{jid}: seqs {seqs}")
    return evs


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run_one(fn):
    try:
        fn()
        return True, ""
    except AssertionError as e:
        return False, str(e)
    except Exception:  # noqa: BLE001
        return False, traceback.format_exc()


def main():
    only = sys.argv[1:]
    tests = [t for t in TESTS if not only or t.__name__ in only]
    print(f"1..{len(tests)}", flush=True)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(run_one, tests))
    fails = 0
    for i, (t, (ok, msg)) in enumerate(zip(tests, results), 1):
        if ok:
            print(f"ok {i} - {t.__name__}")
        else:
            fails += 1
            print(f"not ok {i} - {t.__name__}")
            for line in msg[:4000].splitlines():
                print("# " + line)
    if not fails and not os.environ.get("KEEP"):
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if fails else 0)
