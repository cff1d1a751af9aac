#!/usr/bin/env python3
"""hostile_test.py: the image puller against hostile registries (issue 20) — the real registry
peers behind tests/doubles/hostile_registry.py: private images in the store need credentials,
redirects and token realms that lead to other loopback or link-local addresses, exact loopback
checks, oversize blob bodies, gzip bombs, layers of many inodes, trickling registries and the
job's timeout."""
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import imgtool as T  # noqa: E402
from taplib import count, expect, main, run_job, test  # noqa: E402

DROVER = os.environ.get("DROVER", "drover")
SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "../../.."))
E = T.peer_env("registry-tls")
EH = T.peer_env("registry")
TLS, CA = E["REGISTRY_TLS_ADDR"], E["REGISTRY_TLS_CA"]
USER, PW = E["REGISTRY_TLS_USER"], E["REGISTRY_TLS_PASSWORD"]
HTTP, HUSER, HPW = EH["REGISTRY_ADDR"], EH["REGISTRY_USER"], EH["REGISTRY_PASSWORD"]
RUN = os.urandom(4).hex()
WORK = tempfile.mkdtemp(prefix="drover-hostile-test-", dir="/var/tmp")
tls = T.Registry(TLS, USER, PW, ca=CA)
plain = T.Registry(HTTP, HUSER, HPW)


def store(name):
    return os.path.join(WORK, name)


def pull(st, ref, user=None, pw=None, extra=(), ca=None, timeout=120):
    args = [DROVER, "image", "pull", "--store", st] + (["--ca", ca] if ca else [])
    args += ["--username", user] if user else []
    e = dict(os.environ)
    e.pop("DROVER_REGISTRY_PASSWORD", None)
    if pw is not None:
        e["DROVER_REGISTRY_PASSWORD"] = pw
    return subprocess.run(args + list(extra) + [ref], capture_output=True, text=True,
                          timeout=timeout, env=e)


def blob_gets(log, digest):
    import re
    with open(log, errors="replace") as f:
        return len(re.findall(r'"GET /v2/[^ ]*/blobs/' + re.escape(digest) + r' HTTP/[0-9.]+" 200',
                              f.read()))


def leftovers(st):
    """What a failed pull left in the store: tmp entries and layer dirs."""
    out = []
    for sub in ("tmp", "layers"):
        d = os.path.join(st, sub)
        out += [f"{sub}/{n}" for n in (os.listdir(d) if os.path.isdir(d) else [])]
    return out


class Hostile:
    """tests/doubles/hostile_registry.py in front of the plain-http registry peer."""

    def __init__(self, *args):
        d = tempfile.mkdtemp(dir=WORK)
        self.pf, self.stats_f = os.path.join(d, "ports"), os.path.join(d, "stats")
        self.proc = subprocess.Popen(
            ["python3", os.path.join(SRC, "tests/doubles/hostile_registry.py"), "--upstream",
             f"http://{HTTP}", "--port-file", self.pf, "--stats", self.stats_f] + list(args))
        for _ in range(200):
            if os.path.exists(self.pf):
                break
            time.sleep(0.05)
        port, bait = open(self.pf).read().split()
        self.addr, self.bait = f"127.0.0.1:{port}", f"127.0.0.2:{bait}"

    def stats(self):
        return json.load(open(self.stats_f))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def small_image(name, compression="gzip"):
    repo = f"hostile/{name}-{RUN}"
    layer = T.make_layer([T.file("data", os.urandom(8 << 10)), T.file("run", RUN)], compression)
    plain.push_image(repo, "1", [layer])
    return repo, layer


# ---- finding 2: credentials gate the store ----

@test
def private_image_in_the_store_needs_credentials():
    repo = f"hostile/private-{RUN}"
    base = T.make_layer([T.file("secret", "private " + RUN)])
    tls.push_image(repo, "1", [base])
    st, ref = store("priv"), f"{TLS}/{repo}:1"
    p = pull(st, ref, USER, PW, ca=CA)
    expect(p.returncode == 0, p.stderr[-800:])
    for policy in ("missing", "never"):
        p = pull(st, ref, ca=CA, extra=["--pull", policy])
        expect(p.returncode == 1 and "private" in p.stderr,
               f"{policy}, no credentials: rc={p.returncode} {p.stderr[-600:]}")
    p = pull(st, ref, USER, "wrong", ca=CA)
    expect(p.returncode == 1 and "private" in p.stderr and "job's credentials" in p.stderr,
           f"wrong password: rc={p.returncode} {p.stderr[-600:]}")
    p = pull(st, ref, USER, "wrong", ca=CA, extra=["--pull", "never"])
    expect(p.returncode == 1 and "private" in p.stderr, f"never, wrong: {p.stderr[-600:]}")
    before = blob_gets(E["REGISTRY_TLS_LOG"], base.digest)
    for policy in ("missing", "never"):
        p = pull(st, ref, USER, PW, ca=CA, extra=["--pull", policy])
        expect(p.returncode == 0, f"{policy}, right credentials: {p.stderr[-600:]}")
    time.sleep(0.3)
    expect(blob_gets(E["REGISTRY_TLS_LOG"], base.digest) == before, "layer downloaded again")
    keys = os.listdir(os.path.join(st, "auth"))
    for k in keys:
        data = open(os.path.join(st, "auth", k), "rb").read()
        expect(PW.encode() not in data and PW not in k, "the password is in the store")


@test
def public_image_stays_usable_offline():
    repo, _ = small_image("public")
    st = store("pub")
    with Hostile("--inject-auth", f"{HUSER}:{HPW}") as h:  # anonymous to drover: public
        ref = f"{h.addr}/{repo}:1"
        p = pull(st, ref, extra=["--insecure-http"])
        expect(p.returncode == 0, p.stderr[-800:])
    for policy in ("missing", "never"):  # the registry is gone
        p = pull(st, ref, extra=["--insecure-http", "--pull", policy])
        expect(p.returncode == 0, f"{policy}, offline: {p.stderr[-600:]}")


@test
def private_layer_is_not_reused_for_another_registry_s_manifest():
    repo = f"hostile/privlayer-{RUN}"
    secret = T.make_layer([T.file("secret", "private layer " + RUN)])
    tls.push_image(repo, "1", [secret])
    st = store("privlayer")
    p = pull(st, f"{TLS}/{repo}:1", USER, PW, ca=CA)
    expect(p.returncode == 0, p.stderr[-600:])
    # an attacker's "public" image whose manifest lists that layer's digest, without its bytes
    arepo = f"hostile/attacker-{RUN}"
    _, man = plain.push_image(arepo, "1", [T.make_layer([T.file("decoy", RUN)])])
    m = json.loads(man)
    m["layers"][0].update(digest=secret.digest, size=len(secret.blob))
    mf = os.path.join(WORK, "attacker-manifest.json")
    with open(mf, "w") as f:
        json.dump(m, f)
    with Hostile("--inject-auth", f"{HUSER}:{HPW}", "--manifest-file", mf) as h:
        p = pull(st, f"{h.addr}/{arepo}:1", extra=["--insecure-http"])
    expect(p.returncode == 1 and "from a private image" in p.stderr,
           f"rc={p.returncode} {p.stderr[-600:]}")


# ---- finding 7: no fetch on the job's behalf to where the job cannot go ----

def through(name, *mode):
    """Pull a small image of the plain-http peer through a hostile front in the given mode:
    (the pull's CompletedProcess, the front's stats, seconds taken, the layer)."""
    repo, layer = small_image(name)
    with Hostile(*mode) as h:
        t0 = time.time()
        p = pull(store(name), f"{h.addr}/{repo}:1", HUSER, HPW, extra=["--insecure-http"])
        took = time.time() - t0
        time.sleep(0.3)
        return p, h.stats(), took, layer


@test
def blob_redirect_to_another_loopback_address_is_refused():
    p, stats, _, _ = through("redir", "--blob-redirect", "{bait}/latest/meta-data/")
    expect(p.returncode == 1 and "127.0.0.2 (loopback)" in p.stderr and "refused" in p.stderr,
           p.stderr[-800:])
    expect(stats["bait_hits"] == 0, f"drover fetched from the bait: {stats}")
    expect("SECRETBAIT" not in p.stderr, p.stderr[-800:])


@test
def redirect_to_link_local_metadata_is_refused():
    p, _, took, _ = through("meta", "--blob-redirect", "http://169.254.169.254/latest/meta-data/")
    expect(p.returncode == 1 and "169.254.169.254 (link-local)" in p.stderr, p.stderr[-800:])
    expect(took < 20, f"took {took:.0f} s")


@test
def manifest_redirect_answer_is_not_echoed():
    # the bait on the registry's own address is allowed: its answer must not be echoed
    p, _, _, _ = through("echo", "--manifest-redirect", "{bait}/latest/meta-data/",
                         "--bait-host", "127.0.0.1")
    expect(p.returncode == 1 and "SECRETBAIT" not in p.stderr, p.stderr[-800:])


@test
def token_realm_on_another_loopback_address_is_refused():
    p, stats, _, _ = through("realm", "--realm", "{bait}/token")
    expect(p.returncode == 1 and "127.0.0.2 (loopback)" in p.stderr and "realm" in p.stderr,
           p.stderr[-800:])
    expect(stats["bait_hits"] == 0, f"credentials sent to the bait realm: {stats}")


# ---- finding 11: loopback by address, not name prefix ----

@test
def localhost_prefix_is_not_loopback():
    p, _, _, _ = through("prefix", "--realm", "http://localhost.attacker.example:1/token")
    expect(p.returncode == 1 and "plain http: credentials not sent" in p.stderr, p.stderr[-800:])


# ---- finding 5: bounds on what a pull writes ----

@test
def oversize_blob_body_is_cut_at_the_declared_size():
    p, stats, took, layer = through("over", "--oversize")
    sent = stats["oversize_sent"]
    expect(p.returncode == 1 and f"larger than the {len(layer.blob)} bytes declared" in p.stderr,
           p.stderr[-800:])
    expect(sent < (64 << 20), f"the registry sent {sent} bytes for {len(layer.blob)}")
    expect(took < 30, f"took {took:.0f} s")
    expect(leftovers(store("over")) == [], leftovers(store("over")))


def gzip_bomb():
    """A gzip layer of ~4 MB holding one 4 GiB file of zeros (gzip members, one per 16 MiB)."""
    ti = tarfile.TarInfo("bomb")
    ti.size, ti.mode, ti.mtime = 4 << 30, 0o644, 1700000000
    chunk = gzip.compress(bytes(16 << 20), compresslevel=9, mtime=0)
    blob = (gzip.compress(ti.tobuf(tarfile.USTAR_FORMAT), mtime=0) + chunk * 256
            + gzip.compress(bytes(1024), mtime=0))
    ly = T.Layer([])
    ly.blob, ly.media_type, ly.digest = blob, T.MT_LAYER_GZ, T.sha256(blob)
    ly.diff_id = T.sha256(b"bomb")  # the puller does not check diff ids
    return ly


@test
def gzip_bomb_fails_under_the_defaults():
    bomb = gzip_bomb()
    expect(len(bomb.blob) < (5 << 20), len(bomb.blob))
    repo = f"hostile/bomb-{RUN}"
    plain.push_image(repo, "1", [bomb])
    st = store("bomb")
    t0 = time.time()
    p = pull(st, f"{HTTP}/{repo}:1", HUSER, HPW, extra=["--insecure-http"])
    expect(p.returncode == 1 and "unpacks to more than" in p.stderr, p.stderr[-800:])
    expect(time.time() - t0 < 60, f"took {time.time() - t0:.0f} s")
    expect(leftovers(st) == [], leftovers(st))


@test
def inodes_count_against_the_store_bound():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(300000):
            ti = tarfile.TarInfo(f"f{i}")
            ti.mtime = 1700000000
            t.addfile(ti)
    ly = T.Layer([])
    ly.blob = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
    ly.media_type, ly.digest, ly.diff_id = T.MT_LAYER_GZ, T.sha256(ly.blob), T.sha256(b"x")
    repo = f"hostile/inodes-{RUN}"
    plain.push_image(repo, "1", [ly])
    st = store("inodes")
    p = pull(st, f"{HTTP}/{repo}:1", HUSER, HPW, extra=["--insecure-http", "--max-size", "256M"])
    expect(p.returncode == 1 and "unpacks to more than" in p.stderr and "every entry" in p.stderr,
           f"rc={p.returncode} {p.stderr[-800:]}")
    expect(leftovers(st) == [], leftovers(st)[:5])


# ---- finding 6: the job's timeout covers the pull; a stalled pull ends ----

def image_job(ref, **kw):
    return {"version": 1,
            "id": {"job": f"hostile{os.getpid()}-{count()}", "name": "hostile", "build_num": 1},
            "executor": {"runtime": "sandbox", "kind": "docker",
                         "images": [{"image": ref, "auth": {"username": HUSER, "password": HPW}}],
                         "resources": {"memory_mb": 512}},
            "steps": [{"type": "run", "command": "echo never"}], **kw}


def finished(events):
    return [e for e in events if e["type"] == "finished"][-1]


@test
def job_cannot_name_a_registry_on_host_loopback():
    """A job's `image: 127.0.0.1:PORT/x` (or localhost:PORT) reached any service of the agent host
    on loopback through the puller. Refused unless the operator lists the registry
    (DROVER_IMAGE_REGISTRY_ALLOW); the service sees no connection at all."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    hits, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                hits.append(c.recv(200))
                c.close()
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        env = dict(os.environ, DROVER_IMAGE_STORE=store("loopback"))
        env.pop("DROVER_IMAGE_REGISTRY_ALLOW", None)
        for ref in (f"127.0.0.1:{port}/internal/svc:1", f"localhost:{port}/internal/svc:1"):
            rc, out, err, ev = run_job(image_job(ref), timeout=60, env=env)
            fin = finished(ev) if ev else {}
            expect(rc != 0 and "refused for a job" in fin.get("reason", "") + out + err,
                   f"{ref}: rc={rc} {fin} {out[-400:]} {err[-400:]}")
        # the operator's list names other registries only: still refused
        env["DROVER_IMAGE_REGISTRY_ALLOW"] = f"127.0.0.1:{port + 1},localhost.example"
        rc, out, err, ev = run_job(image_job(f"127.0.0.1:{port}/internal/svc:1"), timeout=60, env=env)
        expect(rc != 0 and "refused for a job" in out + err + str(ev), f"rc={rc} {out} {err}")
        expect(not hits, f"the job's pull reached the host's loopback service: {hits}")
        # listed by the operator: the pull goes there (and fails there: it is no registry)
        env["DROVER_IMAGE_REGISTRY_ALLOW"] = f"127.0.0.1:{port}"
        rc, out, err, ev = run_job(image_job(f"127.0.0.1:{port}/internal/svc:1"), timeout=60, env=env)
        expect(rc != 0 and hits, f"a listed registry was not contacted: rc={rc} {out} {err}")
    finally:
        stop.set()
        t.join()
        srv.close()


@test
def job_timeout_stops_a_trickling_pull():
    repo, _ = small_image("trickle", "none")
    with Hostile("--trickle", "2") as h:
        env = dict(os.environ, DROVER_IMAGE_STORE=store("trickle"), DROVER_IMAGE_REGISTRY_ALLOW=h.addr)
        t0 = time.time()
        rc, out, err, ev = run_job(image_job(f"{h.addr}/{repo}:1", timeouts={"job": 6}),
                                   timeout=90, env=env)
        took = time.time() - t0
    fin = finished(ev) if ev else {}
    expect(fin.get("status") == "timedout", f"rc={rc} {fin} {err[-600:]}")
    expect(took < 30, f"the job ran {took:.0f} s with a 6 s timeout")


@test
def stalled_pull_ends_with_the_stall_timeout():
    repo, _ = small_image("stall", "none")
    with Hostile("--trickle", "30") as h:
        env = dict(os.environ, DROVER_IMAGE_STORE=store("stall"), DROVER_IMAGE_STALL_TIMEOUT="2s",
                   DROVER_IMAGE_REGISTRY_ALLOW=h.addr)
        t0 = time.time()
        rc, out, err, ev = run_job(image_job(f"{h.addr}/{repo}:1"), timeout=90, env=env)
        took = time.time() - t0
    fin = finished(ev) if ev else {}
    expect(fin.get("status") == "infrastructure_fail" and "stall timeout" in
           fin.get("reason", ""), f"rc={rc} {fin}")
    expect(took < 40, f"took {took:.0f} s")


main()
