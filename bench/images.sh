#!/usr/bin/env bash
# bench/images.sh: a `docker:` job on an image in drover's own sandbox (no Docker daemon) against
# `docker run --rm` of the same image on the dockerd peer. The image (busybox-static + Python's
# standard library as a second layer: ~55 MB, ~1400 files) is built here and pushed to the
# registry peer (htpasswd). Times are from start to the step's first output line ("ready"):
#   cold: drover with an empty layer store (pull + verify + unpack) vs docker after `docker rmi`
#         (the engine pulls from the same registry);
#   warm: drover with the layers in its store vs docker with the image present.
# Medians of RUNS runs (cold runs: COLD_RUNS); prints the ratios.
# Needs the peers: scripts/peers/registry.sh start; scripts/peers/dockerd.sh start (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DROVER=${DROVER:-build/agent/drover}
export RUNS=${RUNS:-10}
export COLD_RUNS=${COLD_RUNS:-5}
export DROVER_PEERS_DIR=${DROVER_PEERS_DIR:-/tmp/drover-peers}
for p in registry dockerd; do
        [ -f "$DROVER_PEERS_DIR/$p.env" ] || { echo "start the peer: scripts/peers/$p.sh start" >&2; exit 1; }
done
exec python3 - <<'PY'
import json, os, shutil, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, "tests/integration/images_run")
import ocilib

peers = os.environ["DROVER_PEERS_DIR"]
runs, cold_runs = int(os.environ["RUNS"]), int(os.environ["COLD_RUNS"])
dk = ocilib.envfile("dockerd.env")
addr, user, pw = ocilib.registry()

# the image: busybox + a layer of many files
big = ocilib.Layer()
src = "/usr/lib/python3.11"
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, "/")
    big.dir(rel)
    for f in files:
        p = os.path.join(root, f)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as fh:
                big.file(os.path.join(rel, f), fh.read(), 0o644)
tag = str(int(time.time()))
image, _ = ocilib.push_image("bench/images", tag, [ocilib.busybox_layer(), big],
                             {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]})
work = tempfile.mkdtemp(prefix="drover-bench-images-", dir="/var/tmp")
spec = {"version": 1, "id": {"job": "bench-images", "name": "bench", "build_num": 1},
        "executor": {"runtime": "sandbox", "kind": "docker",
                     "images": [{"image": image, "auth": {"username": user, "password": pw}}]},
        "steps": [{"type": "run", "command": "echo ready"}]}
spec_path = os.path.join(work, "spec.json")
with open(spec_path, "w") as f:
    json.dump(spec, f)

def timed(argv, marker, env=None):
    t0 = time.monotonic(); first = None
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    for line in p.stdout:
        if first is None and line.strip() == marker:
            first = time.monotonic() - t0
    p.wait()
    assert p.returncode == 0 and first is not None, f"{argv[:3]} failed rc={p.returncode}"
    return first * 1000

def drover(store):
    env = dict(os.environ, DROVER_IMAGE_STORE=store)
    return timed([os.environ["DROVER"], "job", "--spec", spec_path], "ready", env)

dcfg = os.path.join(work, "docker-config")
os.makedirs(dcfg)
denv = dict(os.environ, DOCKER_CONFIG=dcfg)
cli = ["docker", "--tlsverify", "--tlscacert", dk["DOCKER_CA"], "--tlscert", dk["DOCKER_CERT"],
       "--tlskey", dk["DOCKER_KEY"], "-H", dk["DOCKER_URL"]]
subprocess.run(cli + ["login", "-u", user, "--password-stdin", addr], input=pw, text=True,
               env=denv, check=True, capture_output=True)

def docker(cold):
    if cold:
        subprocess.run(cli + ["rmi", "-f", image], env=denv, capture_output=True)
    return timed(cli + ["run", "--rm", image, "echo", "ready"], "ready", denv)

cold_d, cold_r = [], []
for i in range(cold_runs):
    store = os.path.join(work, f"store-cold-{i}")
    cold_d.append(drover(store))
    shutil.rmtree(store, ignore_errors=True)
    cold_r.append(docker(True))
warm_store = os.path.join(work, "store-warm")
drover(warm_store)
docker(False)
warm_d = [drover(warm_store) for _ in range(runs)]
warm_r = [docker(False) for _ in range(runs)]
subprocess.run(cli + ["rmi", "-f", image], env=denv, capture_output=True)
shutil.rmtree(work, ignore_errors=True)
m = statistics.median
print(f"image {image}: busybox + {src} (2 layers); drover `job` vs `docker run --rm` over TLS")
print(f"cold runs: {cold_runs}, warm runs: {runs} (medians, ms to the first step output)")
print(f"drover cold (empty layer store)   : {m(cold_d):8.1f} ms")
print(f"docker cold (after docker rmi)    : {m(cold_r):8.1f} ms")
print(f"drover warm (layers in the store) : {m(warm_d):8.1f} ms")
print(f"docker warm (image present)       : {m(warm_r):8.1f} ms")
print(f"ratio cold drover/docker: {m(cold_d) / m(cold_r):.2f}x")
print(f"ratio warm drover/docker: {m(warm_d) / m(warm_r):.2f}x")
PY
