#!/usr/bin/env bash
# bench/docker.sh: job start on the remote Docker runtime against `docker run` of the same image.
# drover: `drover job` with executor.runtime "docker" and one step `echo ready` — time from start
# to the step's first output line (image check, network, primary container, user probe, exec),
# and the whole job (with the removal of everything it created). docker: `docker run --rm IMAGE
# echo ready` over the same TLS endpoint. Medians of RUNS runs; prints the ratios.
# Needs the peer: scripts/peers/dockerd.sh start (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DROVER=${DROVER:-build/agent/drover}
export RUNS=${RUNS:-10}
export DROVER_PEERS_DIR=${DROVER_PEERS_DIR:-/tmp/drover-peers}
[ -f "$DROVER_PEERS_DIR/dockerd.env" ] || { echo "start the peer: scripts/peers/dockerd.sh start" >&2; exit 1; }
exec python3 - <<'PY'
import json, os, statistics, subprocess, tempfile, time
peers = os.environ["DROVER_PEERS_DIR"]
dk = dict(l.rstrip("\n").split("=", 1) for l in open(f"{peers}/dockerd.env") if "=" in l)
pem = {k: open(dk[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"), ("key", "DOCKER_KEY"))}
image, runs = dk["DOCKER_IMAGE"], int(os.environ["RUNS"])
spec = {"version": 1, "id": {"job": "bench-docker", "name": "bench", "build_num": 1},
        "executor": {"runtime": "docker", "kind": "docker", "images": [{"image": image}],
                     "docker_host": {"url": dk["DOCKER_URL"], **pem}},
        "steps": [{"type": "run", "command": "echo ready"}]}
f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump(spec, f); f.close()

def timed(argv, marker):
    t0 = time.monotonic(); first = None
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if first is None and line.strip() == marker:
            first = time.monotonic() - t0
    p.wait()
    total = time.monotonic() - t0
    assert p.returncode == 0 and first is not None, f"{argv[:3]} failed rc={p.returncode}"
    return first * 1000, total * 1000

cli = ["docker", "--tlsverify", "--tlscacert", dk["DOCKER_CA"], "--tlscert", dk["DOCKER_CERT"],
       "--tlskey", dk["DOCKER_KEY"], "-H", dk["DOCKER_URL"]]
timed([os.environ["DROVER"], "job", "--spec", f.name], "ready")  # warm up
timed(cli + ["run", "--rm", image, "echo", "ready"], "ready")
d = [timed([os.environ["DROVER"], "job", "--spec", f.name], "ready") for _ in range(runs)]
r = [timed(cli + ["run", "--rm", image, "echo", "ready"], "ready") for _ in range(runs)]
os.unlink(f.name)
m = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"runs: {runs} each, image {image}, engine {dk['DOCKER_URL']} (TLS)")
print(f"drover job, start to first step output : {m(d, 0):7.1f} ms")
print(f"drover job, whole job incl. cleanup    : {m(d, 1):7.1f} ms")
print(f"docker run --rm, to output             : {m(r, 0):7.1f} ms")
print(f"docker run --rm, whole                 : {m(r, 1):7.1f} ms")
print(f"ratio start-to-output drover/docker run: {m(d, 0) / m(r, 0):.2f}x")
print(f"ratio whole           drover/docker run: {m(d, 1) / m(r, 1):.2f}x")
PY
