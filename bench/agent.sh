#!/usr/bin/env bash
# bench/agent.sh [BUILD_DIR]: figures for `drover agent` against the control-plane double:
#  1. idle memory of a registered, heartbeating agent (goal: VmRSS under 5 MB): the lean
#     `drover-agent` (mbedTLS transport, what the systemd unit starts) and `drover agent` (libcurl),
#  2. (with drover-agent) claim-to-first-step latency of real jobs (`drover job`, sandbox runtime, one `run` step),
#  3. 50 trivial concurrent real jobs on this machine with no missed heartbeat.
# Not a test: prints figures for docs/BENCHMARKS.md (agent section).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
export DROVER=${DROVER:-$build/agent/drover}
export DROVER_SRC=$src
exec python3 - "$@" <<'PY'
import json, os, subprocess, sys, tempfile, time, urllib.request
src = os.environ["DROVER_SRC"]; drover = os.environ["DROVER"]
sys.path.insert(0, os.path.join(src, "tests", "doubles"))
from control_plane import ControlPlane
tmp = tempfile.mkdtemp(prefix="drover-bench-agent-")
subprocess.run([os.path.join(src, "tests/doubles/make_certs.sh"), tmp + "/certs"], check=True)
open(tmp + "/token", "w").write("join-secret\n")
cp = ControlPlane(tmp + "/certs", heartbeat_ms=1000)
port = 19464 + os.getpid() % 1000

def agent(extra, cmd=None):
    c = tmp + "/certs"
    return subprocess.Popen((cmd or [drover, "agent"]) + ["--servers", cp.urls[0], "--tls-ca", c + "/ca.pem",
                             "--tls-cert", c + "/client.pem", "--tls-key", c + "/client-key.pem",
                             "--join-token-file", tmp + "/token", "--work-dir", tmp + "/work",
                             "--metrics-listen", f"127.0.0.1:{port}"] + extra,
                            stderr=open(tmp + "/agent.log", "a"))

def spec(jid, cmd="true"):
    return {"version": 1, "id": {"job": jid, "name": "bench", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "machine", "network": "none"},
            "steps": [{"type": "run", "name": "s", "command": cmd}]}

def metric(name):
    t = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    for line in t.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None

def idle(label, cmd):
    n0 = len(cp.state.nodes)
    a = agent(["--max-jobs", "50", "--claim-wait", "25s"], cmd)
    cp.wait(lambda: len(cp.state.nodes) > n0, 10)
    hb0 = len(cp.state.heartbeats)
    time.sleep(3)
    kb = {}
    for f in ("status", "smaps_rollup"):
        for l in open(f"/proc/{a.pid}/{f}"):
            k, _, v = l.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "Pss", "Private_Clean", "Private_Dirty"):
                kb[k] = int(v.split()[0])
    libs = {l.split()[-1] for l in open(f"/proc/{a.pid}/maps") if ".so" in l}
    print(f"idle {label}: VmRSS={kb['VmRSS']} kB (anon {kb['RssAnon']}, file {kb['RssFile']}) "
          f"Pss={kb['Pss']} kB private={kb['Private_Clean'] + kb['Private_Dirty']} kB "
          f"(dirty {kb['Private_Dirty']}) shared libraries={len(libs)} "
          f"heartbeats in 3 s={len(cp.state.heartbeats) - hb0}")
    return a

lean = os.path.join(os.path.dirname(drover), "drover-agent")
a = idle("drover agent (libcurl)", None)
a.terminate()
a.wait(30)
# the rest runs on what the systemd unit starts
ag = idle("drover-agent (lean TLS)", [lean])
try:
    for i in range(5):
        cp.queue(spec(f"lat{i}"))
        cp.wait(lambda: cp.outcome(f"lat{i}"), 60)
    s, n = metric("drover_claim_to_first_step_seconds_sum"), metric("drover_claim_to_first_step_seconds_count")
    print(f"claim-to-first-step: mean {1000 * s / n:.1f} ms over {int(n)} real jobs")
    hb0 = len(cp.state.heartbeats)
    t0 = time.time()
    for i in range(50):
        cp.queue(spec(f"c{i}", "sleep 5"))
    ok = cp.wait(lambda: all(cp.outcome(f"c{i}") for i in range(50)), 300)
    dt = time.time() - t0
    st = [cp.outcome(f"c{i}")["status"] if cp.outcome(f"c{i}") else None for i in range(50)]
    for i in range(50):
        o = cp.outcome(f"c{i}")
        if not o or o["status"] != "success":
            print(f"c{i}:", json.dumps(cp.events(f"c{i}"))[-1500:])
    times = [h[1] for h in cp.state.heartbeats[hb0:]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    peak = max((len(h[2]["running"]) for h in cp.state.heartbeats[hb0:]), default=0)
    print(f"50 concurrent jobs (sleep 5): all done={ok} in {dt:.1f}s, success={st.count('success')}, "
          f"peak running={peak}, heartbeats={len(times)}, max gap={max(gaps):.2f}s "
          f"(interval 1.00s), heartbeat failures={metric('drover_heartbeat_failures_total'):.0f}")
finally:
    ag.terminate()
    ag.wait(30)
    cp.close()
    subprocess.run(["rm", "-rf", tmp])
PY
