#!/usr/bin/env python3
"""measure-boot.py [--runs N] [--drover PATH] [--json]: how long from `drover agent` exec to
registered, and from SIGTERM to exit, against the control-plane double (tests/doubles) on loopback
with mTLS — and whether the agent keeps the systemd unit's contract on the way.

The agent is started the way drover-agent.service starts it (Type=notify): NOTIFY_SOCKET points at
a datagram socket we read, WATCHDOG_USEC is set. Per run it measures
  exec -> READY=1            (the agent sends it once the control plane accepted the registration)
  exec -> node in the double (the double's own record of the registration)
  SIGTERM -> exit 0          (drain with nothing running, deregistration)
and checks STATUS= lines, STOPPING=1, WATCHDOG=1 pings, the deregistration, and that the agent's
log is one key=value line per event with a level and never shows the join token.
Python 3 standard library only. Exit 0 when every run kept the contract."""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

LOG_LINE = re.compile(r"^time=\S+ level=(debug|info|warn|error) event=[a-z0-9_]+( [a-z0-9_.]+=\S.*)?$")
SRC = os.environ.get("DROVER_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def ctl_state(ctl):
    with urllib.request.urlopen(ctl + "/ctl/state", timeout=5) as r:
        return json.load(r)


def start_double(tmp):
    certs = os.path.join(tmp, "certs")
    subprocess.run([os.path.join(SRC, "tests/doubles/make_certs.sh"), certs], check=True,
                   stdout=subprocess.DEVNULL)
    info = os.path.join(tmp, "cp.json")
    proc = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/control_plane.py"),
                             "--certs", certs, "--info", info, "--heartbeat-ms", "200"],
                            stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(info):
            break
        time.sleep(0.025)
    with open(info) as f:
        return proc, certs, json.load(f)


def write_config(tmp, certs, urls):
    with open(os.path.join(tmp, "join-token"), "w") as f:
        f.write("join-secret\n")
    os.chmod(os.path.join(tmp, "join-token"), 0o600)
    cfg = os.path.join(tmp, "agent.yaml")
    with open(cfg, "w") as f:
        f.write("servers:\n" + "".join(f"  - {u}\n" for u in urls))
        f.write(f"join_token_file: {tmp}/join-token\n")
        f.write(f"tls:\n  ca: {certs}/ca.pem\n  cert: {certs}/client.pem\n"
                f"  key: {certs}/client-key.pem\n")
        f.write(f"work_dir: {tmp}/work\nspool_dir: {tmp}/spool\n")
        f.write("metrics_listen: \"\"\ndrain_grace: 30s\nlog_level: info\n")
    return cfg


def one_run(drover, cfg, ctl, tmp, i):
    sock_path = os.path.join(tmp, f"notify-{i}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env.update(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000")
    name = f"boot-{os.getpid()}-{i}"
    before = set(ctl_state(ctl)["nodes"])
    log = open(os.path.join(tmp, f"agent-{i}.log"), "w")
    t0 = time.monotonic()
    # what the unit starts: drover-agent beside drover (else `drover agent`)
    lean = os.path.join(os.path.dirname(os.path.abspath(drover)), "drover-agent")
    cmd = [lean] if os.access(lean, os.X_OK) else [drover, "agent"]
    proc = subprocess.Popen(cmd + ["--config", cfg, "--name", name], env=env,
                            stderr=log, stdout=log)
    res = {"messages": []}
    deadline = t0 + 20
    sock.settimeout(0.01)
    registered_at = None
    while time.monotonic() < deadline and ("ready" not in res or registered_at is None):
        try:
            msg = sock.recv(4096).decode()
            now = time.monotonic()
            res["messages"].append(msg)
            if "READY=1" in msg.split("\n") and "ready" not in res:
                res["ready"] = now - t0
        except socket.timeout:
            pass
        if registered_at is None and set(ctl_state(ctl)["nodes"]) - before:
            registered_at = time.monotonic()
        if proc.poll() is not None:
            break
    if registered_at is not None:
        res["registered"] = registered_at - t0
    # let the loop run a little so a watchdog ping can be seen (WATCHDOG_USEC/2 = 1 s)
    end = time.monotonic() + 1.3
    while time.monotonic() < end:
        try:
            res["messages"].append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    t1 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        res["exit_code"] = proc.wait(timeout=40)
        res["stop"] = time.monotonic() - t1
    except subprocess.TimeoutExpired:
        proc.kill()
        res["exit_code"] = None
    sock.settimeout(0.2)
    try:
        while True:
            res["messages"].append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    sock.close()
    log.close()
    st = ctl_state(ctl)
    node_ids = [k for k in st["nodes"] if k not in before]
    res["deregistered"] = bool(node_ids) and all(n in st["deregistered"] for n in node_ids)
    lines = [ln for m in res["messages"] for ln in m.split("\n")]
    res["status_lines"] = [ln for ln in lines if ln.startswith("STATUS=")]
    res["stopping"] = "STOPPING=1" in lines
    res["watchdog"] = "WATCHDOG=1" in lines
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--drover", default=os.environ.get("DROVER", os.path.join(SRC, "build/agent/drover")))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        double, certs, info = start_double(tmp)
        try:
            cfg = write_config(tmp, certs, info["urls"])
            runs = [one_run(a.drover, cfg, info["ctl"], tmp, i) for i in range(a.runs)]
        finally:
            double.terminate()
            double.wait()
        problems = []
        for i, r in enumerate(runs):
            for key, what in (("ready", "no READY=1"), ("registered", "never registered")):
                if key not in r:
                    problems.append(f"run {i}: {what}")
            if r.get("exit_code") != 0:
                problems.append(f"run {i}: SIGTERM exit code {r.get('exit_code')}")
            if not r["stopping"]:
                problems.append(f"run {i}: no STOPPING=1 on SIGTERM")
            if not r["watchdog"]:
                problems.append(f"run {i}: no WATCHDOG=1 with WATCHDOG_USEC set")
            if not r["status_lines"]:
                problems.append(f"run {i}: no STATUS= lines")
            if not r["deregistered"]:
                problems.append(f"run {i}: not deregistered after SIGTERM")
            # logs: one key=value line per event, levels, and never the join token
            with open(os.path.join(tmp, f"agent-{i}.log")) as f:
                log_lines = f.read().splitlines()
                if not log_lines:
                    problems.append(f"run {i}: the agent logged nothing")
                for line in log_lines:
                    if "join-secret" in line:
                        problems.append(f"run {i}: the join token appears in the log")
                    if line and not LOG_LINE.match(line):
                        problems.append(f"run {i}: log line not key=value: {line[:120]}")

        def ms(key):
            v = [r[key] * 1000 for r in runs if key in r]
            return {"median": round(statistics.median(v), 1), "min": round(min(v), 1),
                    "max": round(max(v), 1)} if v else None
        out = {"runs": a.runs, "exec_to_ready_ms": ms("ready"),
               "exec_to_registered_ms": ms("registered"), "sigterm_to_exit_ms": ms("stop"),
               "problems": problems}
        if a.json:
            print(json.dumps(out, indent=1))
        else:
            for k in ("exec_to_ready_ms", "exec_to_registered_ms", "sigterm_to_exit_ms"):
                v = out[k]
                print(f"{k}: " + (f"median {v['median']} (min {v['min']}, max {v['max']})" if v else "n/a"))
            for p in problems:
                print("problem:", p)
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
