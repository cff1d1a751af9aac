#!/usr/bin/env bash
# bench/remote_docker.sh: what the job's API proxy (setup_remote_docker) costs. The same docker CLI
# does the same things twice: inside a machine sandbox job through the job's proxy socket, and on
# the host straight to the engine over TLS (the old design: the job held the key). Per operation:
# `docker version` (HEAD /_ping + GET /version), `docker run --rm IMAGE true` (create, attach,
# start, wait, delete), and an exec's output stream (`docker exec C head -c 256M /dev/zero`, the
# hijacked stream) in MB/s. Medians of RUNS. Needs the peers dockerd and registry (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DROVER=${DROVER:-build/agent/drover}
export RUNS=${RUNS:-10}
export DROVER_PEERS_DIR=${DROVER_PEERS_DIR:-/tmp/drover-peers}
exec python3 - <<'PY'
import json, os, statistics, subprocess, tempfile
peers = os.environ["DROVER_PEERS_DIR"]
env = lambda n: dict(l.rstrip("\n").split("=", 1) for l in open(f"{peers}/{n}") if "=" in l)
dk, rg = env("dockerd.env"), env("registry.env")
pem = {k: open(dk[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"), ("key", "DOCKER_KEY"))}
runs = int(os.environ["RUNS"])
img = f"{rg['REGISTRY_ADDR']}/drover/bench-busybox:1"
sock = ["docker", "-H", f"unix://{dk['DOCKER_SOCK']}"]
subprocess.run(sock + ["tag", dk["DOCKER_IMAGE"], img], check=True)
cfg = tempfile.mkdtemp()
subprocess.run(["docker", "--config", cfg] + sock[1:] + ["login", "-u", rg["REGISTRY_USER"], "--password-stdin",
               rg["REGISTRY_ADDR"]], input=rg["REGISTRY_PASSWORD"], text=True, check=True, capture_output=True)
subprocess.run(["docker", "--config", cfg] + sock[1:] + ["push", "-q", img], check=True, capture_output=True)

# the same measurement script, run by bash in the job and on the host
MEASURE = f"""
set -e
ms() {{ echo $(( ($(date +%s%N) - $1) / 1000000 )); }}
docker pull -q {img} > /tmp/bench-pull.txt
for i in $(seq {runs}); do t=$(date +%s%N); docker version --format x > /tmp/bench-v.txt; echo "version_ms $(ms $t)"; done
for i in $(seq {runs}); do t=$(date +%s%N); docker run --rm {img} true; echo "run_ms $(ms $t)"; done
c=$(docker run -d {img} sleep 600)
for i in $(seq 3); do t=$(date +%s%N); n=$(docker exec $c head -c 268435456 /dev/zero | wc -c); echo "exec_mbps $(( n * 1000 / ($(date +%s%N) - t) ))"; done
docker rm -f $c > /tmp/bench-rm.txt
"""

def medians(text):
    vals = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] in ("version_ms", "run_ms", "exec_mbps"):
            vals.setdefault(p[0], []).append(int(p[1]))
    return {k: statistics.median(v) for k, v in vals.items()}

spec = {"version": 1, "id": {"job": "bench-remote-docker", "name": "bench", "build_num": 1},
        "executor": {"runtime": "sandbox", "kind": "machine", "resources": {"memory_mb": 2048},
                     "docker_host": {"url": dk["DOCKER_URL"], **pem}},
        "steps": [{"type": "setup_remote_docker"},
                  {"type": "run", "command": f"echo \"$PW\" | docker login -u {rg['REGISTRY_USER']} --password-stdin {rg['REGISTRY_ADDR']}",
                   "environment": [{"name": "PW", "value": rg["REGISTRY_PASSWORD"], "secret": True}]},
                  {"type": "run", "command": MEASURE}]}
f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump(spec, f); f.close()
p = subprocess.run([os.environ["DROVER"], "job", "--spec", f.name], capture_output=True, text=True)
assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
proxy = medians(p.stdout)
direct_env = dict(os.environ, DOCKER_HOST=dk["DOCKER_URL"], DOCKER_TLS_VERIFY="1",
                  DOCKER_CERT_PATH=os.path.dirname(dk["DOCKER_CA"]), DOCKER_CONFIG=cfg)
d = subprocess.run(["bash", "-c", MEASURE], capture_output=True, text=True, env=direct_env)
assert d.returncode == 0, d.stdout[-2000:] + d.stderr[-2000:]
direct = medians(d.stdout)
print("| figure | through the job's proxy | direct over TLS (old) | ratio |")
print("|---|---|---|---|")
for k, label in (("version_ms", "`docker version`, ms"), ("run_ms", "`docker run --rm IMAGE true`, ms"),
                 ("exec_mbps", "`docker exec` output stream, MB/s")):
    print(f"| {label} | {proxy[k]:.0f} | {direct[k]:.0f} | {proxy[k] / direct[k]:.2f}x |")
PY
