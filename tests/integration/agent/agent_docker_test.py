#!/usr/bin/env python3
"""agent_docker_test.py: `drover agent` with docker_hosts against the real dockerd peer
(scripts/peers/dockerd.sh) and the strict control-plane double: at start the agent removes the
leftovers of a crashed run that carry drover's labels AND this node's name, and nothing else (no
labels, another node, drover's without a node); a claimed docker job without executor.docker_host
runs on the agent's engine, its objects labelled with the node. TAP output; never skips."""
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from urllib.parse import quote

DROVER = os.environ.get("DROVER", "drover")
# the daemon under test: DROVER_AGENT_BIN (e.g. the lean drover-agent), else `drover agent`
AGENT_CMD = [os.environ["DROVER_AGENT_BIN"]] if os.environ.get("DROVER_AGENT_BIN") else [DROVER, "agent"]
SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
sys.path.insert(0, os.path.join(SRC, "tests", "doubles"))
from control_plane import ControlPlane  # noqa: E402

TMP = tempfile.mkdtemp(prefix="drover-agent-docker-")
CERTS = os.path.join(TMP, "certs")
subprocess.run([os.path.join(SRC, "tests", "doubles", "make_certs.sh"), CERTS], check=True,
               capture_output=True)
TOKEN = os.path.join(TMP, "token")
with open(TOKEN, "w") as f:
    f.write("join-secret\n")


def envfile(name):
    out = {}
    with open(os.path.join(PEERS, name)) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


DK = envfile("dockerd.env")
IMAGE = DK["DOCKER_IMAGE"]
NODE = f"adk{os.getpid()}"
OTHER = f"adk{os.getpid()}-other"


def api(method, path, body=None):
    ctx = ssl.create_default_context(cafile=DK["DOCKER_CA"])
    ctx.load_cert_chain(DK["DOCKER_CERT"], DK["DOCKER_KEY"])
    c = http.client.HTTPSConnection("127.0.0.1", 2376, context=ctx, timeout=20)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read()
    if r.status >= 400:
        raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def make_container(name, labels):
    c = api("POST", f"/containers/create?name={name}",
            {"Image": IMAGE, "Cmd": ["sleep", "600"], "Labels": labels})
    api("POST", f"/containers/{c['Id']}/start")
    return c["Id"]


def make_network(name, labels):
    return api("POST", "/networks/create", {"Name": name, "Labels": labels})["Id"]


def make_volume(name, labels):
    return api("POST", "/volumes/create", {"Name": name, "Labels": labels})["Name"]


def exists(kind, ident):
    try:
        api("GET", {"c": f"/containers/{ident}/json", "n": f"/networks/{ident}",
                    "v": f"/volumes/{ident}"}[kind])
        return True
    except RuntimeError as e:
        if " 404 " in str(e):
            return False
        raise


def remove(kind, ident):
    try:
        api("DELETE", {"c": f"/containers/{ident}?force=1&v=1", "n": f"/networks/{ident}",
                       "v": f"/volumes/{ident}?force=1"}[kind])
    except RuntimeError:
        pass


def node_objects(node):
    f = quote(json.dumps({"label": ["drover.managed=true", f"drover.node={node}"]}))
    return (api("GET", f"/containers/json?all=1&filters={f}"), api("GET", f"/networks?filters={f}"))


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def write_config(name):
    path = os.path.join(TMP, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""docker_hosts:
  - url: {DK['DOCKER_URL']}
    ca: {DK['DOCKER_CA']}
    cert: {DK['DOCKER_CERT']}
    key: {DK['DOCKER_KEY']}
""")
    return path


class Agent:
    def __init__(self, cp, name, config):
        self.log = os.path.join(TMP, name + ".log")
        args = AGENT_CMD + ["--config", config, "--servers", ",".join(cp.urls),
                "--tls-ca", f"{CERTS}/ca.pem", "--tls-cert", f"{CERTS}/client.pem",
                "--tls-key", f"{CERTS}/client-key.pem", "--join-token-file", TOKEN,
                "--work-dir", os.path.join(TMP, name + ".work"), "--metrics-listen", "",
                "--claim-wait", "3s", "--name", NODE]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def print_config_shows_docker_hosts():
    cfg = write_config("print")
    out = subprocess.run([DROVER, "agent", "--config", cfg, "--print-config"],
                         capture_output=True, text=True, check=True).stdout
    expect(f'  - url: "{DK["DOCKER_URL"]}"' in out and f'    key: "{DK["DOCKER_KEY"]}"' in out,
           out)
    expect('docker_tls:\n  ca: "/etc/drover/docker/ca.pem"' in out, out)
    env = dict(os.environ, DROVER_DOCKER_HOSTS="tcp://a:2376,tcp://b:2376")
    out = subprocess.run([DROVER, "agent", "--config", cfg, "--print-config"], env=env,
                         capture_output=True, text=True, check=True).stdout
    expect('docker_hosts:\n  - "tcp://a:2376"\n  - "tcp://b:2376"\n' in out, out)
    bad = os.path.join(TMP, "bad.yaml")
    with open(bad, "w") as f:
        f.write("docker_hosts:\n  - url: tcp://x:2376\n    cafile: /x\n")
    r = subprocess.run([DROVER, "agent", "--config", bad, "--print-config"], capture_output=True,
                       text=True)
    expect(r.returncode == 2 and "docker_hosts.cafile" in r.stderr, r.stderr)


@test
def start_removes_only_this_nodes_leftovers():
    mine = {"drover.managed": "true", "drover.node": NODE, "drover.job": "crashed.0.1"}
    other = {"drover.managed": "true", "drover.node": OTHER, "drover.job": "x.0.2"}
    old = {"drover.managed": "true", "drover.job": "nonode.0.3"}
    objs = {}
    try:
        objs["mine_c"] = ("c", make_container(f"{NODE}-mine", mine))
        objs["mine_n"] = ("n", make_network(f"{NODE}-mine", mine))
        objs["mine_v"] = ("v", make_volume(f"{NODE}-mine", mine))
        objs["plain_c"] = ("c", make_container(f"{NODE}-plain", {}))
        objs["plain_n"] = ("n", make_network(f"{NODE}-plain", {"drover.node": NODE}))
        objs["plain_v"] = ("v", make_volume(f"{NODE}-plain", {}))
        objs["other_c"] = ("c", make_container(f"{NODE}-other", other))
        objs["other_n"] = ("n", make_network(f"{NODE}-other", other))
        objs["old_c"] = ("c", make_container(f"{NODE}-old", old))
        cp = ControlPlane(CERTS)
        ag = Agent(cp, "leftovers", write_config("leftovers"))
        try:
            ok = cp.wait(lambda: "docker_leftovers_removed" in ag.logtext() or
                         ag.p.poll() is not None, 30)
            expect(ok and ag.p.poll() is None, "no cleanup logged: " + ag.logtext()[-2000:])
            expect("removed=3" in ag.logtext(), ag.logtext()[-2000:])
            expect(cp.wait(lambda: cp.snapshot()["nodes"], 15), "agent did not register")
            node = list(cp.snapshot()["nodes"].values())[0]
            expect("docker" in node.get("runtimes", []), node)
        finally:
            ag.stop()
            cp.close()
        for k, (kind, ident) in objs.items():
            want = not k.startswith("mine")
            expect(exists(kind, ident) == want,
                   f"{k}: {'removed' if want else 'still there'}: " + ag.logtext()[-1500:])
    finally:
        for kind, ident in sorted(objs.values()):  # containers before networks
            remove(kind, ident)


@test
def job_without_docker_host_runs_on_the_agents_engine():
    cp = ControlPlane(CERTS)
    ag = Agent(cp, "job", write_config("job"))
    try:
        s = {"version": 1, "id": {"job": f"{NODE}-j1", "name": "dk", "build_num": 1},
             "executor": {"runtime": "docker", "kind": "docker", "images": [{"image": IMAGE}]},
             "steps": [{"type": "run", "name": "hello",
                        "command": "echo hi-from-docker; sleep 3"}]}
        cp.queue(s)
        seen = cp.wait(lambda: node_objects(NODE)[0], 30)
        expect(seen, "no container labelled with the node: " + ag.logtext()[-2000:])
        cs, ns = node_objects(NODE)
        expect(len(cs) == 1 and len(ns) == 1, f"{cs} {ns}")
        expect(cp.wait(lambda: cp.outcome(f"{NODE}-j1"), 60), "no outcome: " + ag.logtext()[-2000:])
        evs = cp.events(f"{NODE}-j1")
        expect(evs[-1]["status"] == "success", str(evs[-3:]) + ag.logtext()[-2000:])
        cs, ns = node_objects(NODE)
        expect(not cs and not ns, f"left over: {cs} {ns}")
    finally:
        ag.stop()
        cp.close()


def main():
    print(f"1..{len(TESTS)}", flush=True)
    fails = 0
    for i, t in enumerate(TESTS, 1):
        try:
            t()
            print(f"ok {i} - {t.__name__}", flush=True)
        except Exception as e:  # noqa: BLE001
            fails += 1
            print(f"not ok {i} - {t.__name__}")
            msg = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            for line in msg[:4000].splitlines():
                print("# " + line)
    import shutil
    if not fails and not os.environ.get("KEEP"):
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
