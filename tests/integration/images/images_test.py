#!/usr/bin/env python3
"""images_test.py: `drover image pull|ls|gc` against the real registry peers (Debian's
docker-registry): TLS + htpasswd on 127.0.0.1:5443, TLS + bearer tokens on :5444, plain http +
htpasswd on :5000 (scripts/peers/registry*.sh). Every image is built and pushed by this test."""
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import imgtool as T  # noqa: E402
from taplib import expect, main, test  # noqa: E402

DROVER = os.environ.get("DROVER", "drover")
E = T.peer_env("registry-tls")
EH = T.peer_env("registry")
TLS, TOK, CA = E["REGISTRY_TLS_ADDR"], E["REGISTRY_TOKEN_ADDR"], E["REGISTRY_TLS_CA"]
USER, PW = E["REGISTRY_TLS_USER"], E["REGISTRY_TLS_PASSWORD"]
RUN = os.urandom(4).hex()  # unique repositories and layer contents per run
WORK = tempfile.mkdtemp(prefix="drover-images-test-")
tls = T.Registry(TLS, USER, PW, ca=CA)


def store(name):
    return os.path.join(WORK, name)


def pull(st, ref, creds=True, extra=(), env=None, ca=CA, timeout=60):
    args = [DROVER, "image", "pull", "--store", st]
    if ca:
        args += ["--ca", ca]
    if creds:
        args += ["--username", USER]
    e = dict(os.environ, DROVER_REGISTRY_PASSWORD=PW)
    e.update(env or {})
    p = subprocess.run(args + list(extra) + [ref], capture_output=True, text=True, timeout=timeout,
                       env=e)
    return p


def parse(out):
    r = {"layer": [], "env": []}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k in ("layer", "env"):
            r[k].append(v)
        else:
            r[k] = v
    return r


def ok(p):
    expect(p.returncode == 0, f"rc={p.returncode} stderr={p.stderr[-1500:]}")
    return parse(p.stdout)


def blob_gets(log, digest):
    """200 answers to GET of one blob in a registry's access log."""
    with open(log, errors="replace") as f:
        return len(re.findall(r'"GET /v2/[^ ]*/blobs/' + re.escape(digest) + r' HTTP/[0-9.]+" 200',
                              f.read()))


# ---- the image most tests use: 3 layers, gzip + uncompressed + zstd ----
BASE = T.make_layer(T.busybox_entries() + [
    T.file("etc/lower", "from the lower layer\n"), T.dir_("opq"), T.file("opq/a", "a"),
    T.dir_("home/u", 0o750, 1000, 1000), T.file("home/u/suid", "x", 0o4755, 1000, 1000),
    T.file("run-id", RUN), T.hardlink("etc/lower-link", "etc/lower")])
MID = T.make_layer([T.file("mid", "plain tar layer " + RUN), T.file("etc/keep", "k")], "none")
TOP = T.make_layer([T.whiteout("etc/lower"), T.opaque("opq"), T.file("opq/b", "b"),
                    T.file("top", RUN)], "zstd")
CONFIG = {"Env": ["PATH=/usr/bin:/bin", "FOO=bar baz"], "User": "circleci",
          "WorkingDir": "/home/circleci", "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"]}
REPO = f"imgcore/app-{RUN}"
DIGEST, _ = tls.push_image(REPO, "1", [BASE, MID, TOP], CONFIG)


@test
def pull_by_tag_over_tls_with_basic_auth():
    r = ok(pull(store("a"), f"{TLS}/{REPO}:1"))
    expect(r["image"] == f"{TLS}/{REPO}:1", r)
    expect(r["digest"] == DIGEST, (r["digest"], DIGEST))
    expect(len(r["layer"]) == 3, r["layer"])
    # top first
    expect(r["layer"][0].endswith(TOP.digest[7:] + "/root"), r["layer"])
    expect(r["layer"][2].endswith(BASE.digest[7:] + "/root"), r["layer"])
    expect(r["env"] == CONFIG["Env"], r["env"])
    expect(r["user"] == "circleci" and r["workdir"] == "/home/circleci", r)
    expect(r["entrypoint"] == "/bin/sh -c" and r["cmd"] == "echo hi", r)


@test
def layers_keep_owners_modes_and_links():
    r = ok(pull(store("a"), f"{TLS}/{REPO}:1"))
    base = r["layer"][2]
    s = os.lstat(os.path.join(base, "home/u/suid"))
    expect((s.st_uid, s.st_gid) == (1000, 1000), (s.st_uid, s.st_gid))
    expect(stat.S_IMODE(s.st_mode) == 0o4755, oct(s.st_mode))
    d = os.lstat(os.path.join(base, "home/u"))
    expect(stat.S_IMODE(d.st_mode) == 0o750 and d.st_uid == 1000, oct(d.st_mode))
    expect(os.readlink(os.path.join(base, "bin/sh")) == "busybox", "symlink")
    a, b = os.lstat(os.path.join(base, "etc/lower")), os.lstat(os.path.join(base, "etc/lower-link"))
    expect(a.st_ino == b.st_ino, "hard link")
    expect(open(os.path.join(r["layer"][1], "mid")).read() == "plain tar layer " + RUN, "plain")


@test
def whiteout_and_opaque_dir_in_overlayfs_form():
    r = ok(pull(store("a"), f"{TLS}/{REPO}:1"))
    top = r["layer"][0]
    s = os.lstat(os.path.join(top, "etc/lower"))
    expect(stat.S_ISCHR(s.st_mode) and s.st_rdev == 0, f"whiteout mode={oct(s.st_mode)}")
    expect(os.getxattr(os.path.join(top, "opq"), "trusted.overlay.opaque") == b"y", "opaque")
    expect(os.getxattr(os.path.join(top, "opq"), "user.overlay.opaque") == b"y", "userxattr")
    expect(not os.path.lexists(os.path.join(top, ".wh..wh..opq")), "opq marker left")


@test
def overlay_mount_shows_the_image_view():
    r = ok(pull(store("a"), f"{TLS}/{REPO}:1"))
    mnt, up, wk = (os.path.join(WORK, n) for n in ("mnt", "up", "wk"))
    for d in (mnt, up, wk):
        os.makedirs(d, exist_ok=True)
    opts = f"lowerdir={':'.join(r['layer'])},upperdir={up},workdir={wk}"
    m = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, mnt],
                       capture_output=True, text=True)
    expect(m.returncode == 0, m.stderr)
    try:
        expect(not os.path.exists(os.path.join(mnt, "etc/lower")), "whiteout did not hide")
        expect(os.path.exists(os.path.join(mnt, "etc/lower-link")), "hard link gone")
        expect(sorted(os.listdir(os.path.join(mnt, "opq"))) == ["b"],
               os.listdir(os.path.join(mnt, "opq")))
        expect(open(os.path.join(mnt, "top")).read() == RUN, "top")
        expect(open(os.path.join(mnt, "mid")).read().endswith(RUN), "mid")
        out = subprocess.run(["chroot", mnt, "/bin/sh", "-c", "echo $(cat /run-id); ls /opq"],
                             capture_output=True, text=True)
        expect(out.stdout.split() == [RUN, "b"], out.stdout + out.stderr)
    finally:
        subprocess.run(["umount", mnt])


@test
def pull_by_digest_with_progress():
    p = pull(store("d"), f"{TLS}/{REPO}@{DIGEST}", extra=["--progress"])
    r = ok(p)
    expect(r["digest"] == DIGEST and len(r["layer"]) == 3, r)
    for l in (BASE, MID, TOP):
        expect(f"downloaded {l.digest} {len(l.blob)} bytes" in p.stderr, p.stderr[-1500:])


@test
def manifest_list_picks_the_platform():
    ents = []
    for arch, variant in (("arm64", "v8"), ("amd64", None), ("arm", "v7")):
        l = T.make_layer(T.busybox_entries() + [T.file("arch", arch + RUN)])
        d, b = tls.push_image(f"imgcore/multi-{RUN}", "m", [l], {"Env": ["A=" + arch]},
                              arch=arch, push_tag=False)
        ents.append((d, b, arch, variant))
    idx = tls.push_index(f"imgcore/multi-{RUN}", "1", ents)
    oidx = tls.push_index(f"imgcore/multi-{RUN}", "oci", ents, oci=True)
    r = ok(pull(store("m"), f"{TLS}/imgcore/multi-{RUN}:1"))
    expect(r["env"] == ["A=amd64"], r["env"])
    expect(r["digest"] == idx, (r["digest"], idx))
    expect(open(os.path.join(r["layer"][0], "arch")).read() == "amd64" + RUN, "amd64 layer")
    r = ok(pull(store("m"), f"{TLS}/imgcore/multi-{RUN}:oci", extra=["--arch", "arm64"]))
    expect(r["env"] == ["A=arm64"] and r["digest"] == oidx, r)
    p = pull(store("m"), f"{TLS}/imgcore/multi-{RUN}:1", extra=["--arch", "s390x"])
    expect(p.returncode != 0 and "no image for linux/s390x" in p.stderr, p.stderr)


@test
def anonymous_pull_refused_by_an_auth_registry():
    p = pull(store("x"), f"{TLS}/{REPO}:1", creds=False)
    expect(p.returncode == 1, p.returncode)
    expect(f"registry {TLS}, repository {REPO}" in p.stderr, p.stderr)
    expect("authentication required" in p.stderr, p.stderr)


@test
def wrong_password_is_a_clear_error():
    p = pull(store("x"), f"{TLS}/{REPO}:1", env={"DROVER_REGISTRY_PASSWORD": "wrong"})
    expect(p.returncode == 1 and "wrong username or password" in p.stderr, p.stderr)
    expect(f"registry {TLS}" in p.stderr and REPO in p.stderr, p.stderr)


@test
def tls_with_the_wrong_ca_is_refused():
    p = pull(store("x"), f"{TLS}/{REPO}:1", ca=E["REGISTRY_TLS_OTHER_CA"])
    expect(p.returncode == 1 and "TLS" in p.stderr and TLS in p.stderr, p.stderr)


@test
def not_found_names_registry_and_repository():
    p = pull(store("x"), f"{TLS}/imgcore/nothing-{RUN}:1")
    expect(p.returncode == 1 and "not found" in p.stderr and f"nothing-{RUN}" in p.stderr,
           p.stderr)


@test
def bearer_token_auth_against_a_token_registry():
    tok = T.Registry(TOK, USER, PW, ca=CA)
    repo = f"imgcore/tok-{RUN}"
    d, _ = tok.push_image(repo, "1", [T.make_layer(T.busybox_entries() + [T.file("t", RUN)])])
    r = ok(pull(store("t"), f"{TOK}/{repo}:1"))
    expect(r["digest"] == d, r)
    p = pull(store("t2"), f"{TOK}/{repo}:1", creds=False)
    expect(p.returncode == 1 and "authentication required" in p.stderr, p.stderr)
    p = pull(store("t2"), f"{TOK}/{repo}:1", env={"DROVER_REGISTRY_PASSWORD": "nope"})
    expect(p.returncode == 1 and "wrong username or password" in p.stderr, p.stderr)


@test
def plain_http_registry_needs_insecure_http():
    h = T.Registry(EH["REGISTRY_ADDR"], EH["REGISTRY_USER"], EH["REGISTRY_PASSWORD"])
    repo = f"imgcore/http-{RUN}"
    d, _ = h.push_image(repo, "1", [T.make_layer([T.file("h", RUN)])])
    env = {"DROVER_REGISTRY_PASSWORD": EH["REGISTRY_PASSWORD"]}
    args = [DROVER, "image", "pull", "--store", store("h"), "--username", EH["REGISTRY_USER"]]
    p = subprocess.run(args + [f"{EH['REGISTRY_ADDR']}/{repo}:1"], capture_output=True,
                       text=True, env=dict(os.environ, **env))
    expect(p.returncode == 1, "https to an http registry must fail")
    p = subprocess.run(args + ["--insecure-http", f"{EH['REGISTRY_ADDR']}/{repo}:1"],
                       capture_output=True, text=True, env=dict(os.environ, **env))
    expect(p.returncode == 0 and f"digest {d}" in p.stdout, p.stderr)


@test
def corrupted_blob_is_refused_before_unpacking():
    repo = f"imgcore/corrupt-{RUN}"
    l = T.make_layer([T.file("victim", "good content " + RUN * 100)])
    tls.push_image(repo, "1", [l])
    data = os.path.join(E["REGISTRY_TLS_DATA"], "docker/registry/v2/blobs/sha256",
                        l.digest[7:9], l.digest[7:], "data")
    b = bytearray(open(data, "rb").read())
    b[len(b) // 2] ^= 0xFF
    open(data, "wb").write(bytes(b))
    st = store("c")
    p = pull(st, f"{TLS}/{repo}:1")
    expect(p.returncode == 1 and "digest mismatch" in p.stderr and l.digest in p.stderr,
           p.stderr)
    expect(not os.path.exists(os.path.join(st, "layers", l.digest[7:])), "layer kept")
    expect(not [n for n in os.listdir(os.path.join(st, "tmp"))], os.listdir(os.path.join(st, "tmp")))


def hostile(name, entries):
    repo = f"imgcore/hostile-{name}-{RUN}"
    l = T.make_layer(entries)
    tls.push_image(repo, "1", [l])
    p = pull(store("hostile"), f"{TLS}/{repo}:1")
    expect(p.returncode == 1 and "refused" in p.stderr, f"{name}: {p.stderr}")
    expect(not os.path.exists(os.path.join(store("hostile"), "layers", l.digest[7:])), name)
    return p


@test
def hostile_layers_are_refused():
    outside = os.path.join(WORK, "outside")
    os.makedirs(outside)
    hostile("dotdot", [T.file("../../../../../../" + outside[1:] + "/dotdot", "x")])
    hostile("abs", [T.file(outside + "/abs", "x")])
    hostile("symlink", [T.symlink("esc", outside), T.file("esc/pwned", "x")])
    hostile("symdir", [T.symlink("esc", "../../../../../../../.."), T.file("esc/tmp/pwned", "x")])
    hostile("hardlink", [T.hardlink("hl", "../../../../etc/passwd")])
    expect(os.listdir(outside) == [], os.listdir(outside))


@test
def device_nodes_are_not_created():
    repo = f"imgcore/dev-{RUN}"
    tls.push_image(repo, "1", [T.make_layer([T.chardev("null", 1, 3), T.file("ok", "1")])])
    r = ok(pull(store("dev"), f"{TLS}/{repo}:1"))
    expect(not os.path.lexists(os.path.join(r["layer"][0], "null")), "device created")
    expect(os.path.exists(os.path.join(r["layer"][0], "ok")), "ok")


@test
def concurrent_pulls_download_each_layer_once():
    repo = f"imgcore/conc-{RUN}"
    big = [T.make_layer([T.file(f"big{i}", os.urandom(6 << 20))], "none") for i in range(2)]
    tls.push_image(repo, "1", big)
    st = store("conc")
    args = [DROVER, "image", "pull", "--store", st, "--ca", CA, "--username", USER,
            f"{TLS}/{repo}:1"]
    env = dict(os.environ, DROVER_REGISTRY_PASSWORD=PW)
    ps = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in ps]
    for p, (o, e) in zip(ps, outs):
        expect(p.returncode == 0, e)
    expect(len({o for o, _ in outs}) == 1, "different results")
    time.sleep(0.3)  # the registry writes its access log after the answer
    for l in big:
        n = blob_gets(E["REGISTRY_TLS_LOG"], l.digest)
        expect(n == 1, f"layer {l.digest} downloaded {n} times")


@test
def a_layer_listed_twice_is_fetched_once_while_layers_download_in_parallel():
    repo = f"imgcore/dup-{RUN}"
    a = T.make_layer([T.file("dup", os.urandom(1 << 20))], "none")
    b = T.make_layer([T.file("other", RUN)])
    d, _ = tls.push_image(repo, "1", [a, b, a, b])
    p = pull(store("dup"), f"{TLS}/{repo}:1")
    r = ok(p)
    expect(len(r["layer"]) == 4 and r["layer"][0] == r["layer"][2], r["layer"])
    time.sleep(0.3)
    expect(blob_gets(E["REGISTRY_TLS_LOG"], a.digest) == 1, "layer a fetched twice")
    expect(blob_gets(E["REGISTRY_TLS_LOG"], b.digest) == 1, "layer b fetched twice")


@test
def pull_policies():
    st = store("pol")
    p = pull(st, f"{TLS}/{REPO}:1", extra=["--pull", "never"])
    expect(p.returncode == 1 and "pull policy is never" in p.stderr, p.stderr)
    ok(pull(st, f"{TLS}/{REPO}:1"))
    before = blob_gets(E["REGISTRY_TLS_LOG"], BASE.digest)
    # missing and never: served from the store (a private image: with credentials the registry
    # accepted for it lately, hostile_test.py has the rest)
    r = ok(pull(st, f"{TLS}/{REPO}:1", extra=["--pull", "never"]))
    expect(r["digest"] == DIGEST, r)
    r = ok(pull(st, f"{TLS}/{REPO}:1"))
    expect(r["digest"] == DIGEST, r)
    # always: asks the registry again (anonymous is refused, so this fails)
    p = pull(st, f"{TLS}/{REPO}:1", extra=["--pull", "always"], creds=False)
    expect(p.returncode == 1 and "authentication required" in p.stderr, p.stderr)
    ok(pull(st, f"{TLS}/{REPO}:1", extra=["--pull", "always"]))
    expect(blob_gets(E["REGISTRY_TLS_LOG"], BASE.digest) == before, "layer downloaded again")


@test
def mirror_serves_docker_io_images():
    repo = f"imgcore-mirror-{RUN}"
    d, _ = tls.push_image(f"library/{repo}", "1", [T.make_layer([T.file("m", RUN)])])
    r = ok(pull(store("mir"), f"{repo}:1", extra=["--mirror", f"https://{TLS}"]))
    expect(r["image"] == f"docker.io/library/{repo}:1" and r["digest"] == d, r)


def start_redirector(flaky):
    d = tempfile.mkdtemp(dir=WORK)
    pf, stats = os.path.join(d, "ports"), os.path.join(d, "stats")
    src = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "../../.."))
    args = ["python3", os.path.join(src, "tests/doubles/blob_redirect_proxy.py"), "--upstream",
            f"https://{TLS}", "--ca", CA, "--data-dir", E["REGISTRY_TLS_DATA"], "--port-file", pf,
            "--stats", stats] + (["--flaky"] if flaky else [])
    proc = subprocess.Popen(args)
    for _ in range(100):
        if os.path.exists(pf):
            break
        time.sleep(0.05)
    port = open(pf).read().split()[0]
    return proc, f"127.0.0.1:{port}", stats


@test
def blobs_redirected_to_storage_without_credentials_and_retried():
    import json
    repo = f"imgcore/redir-{RUN}"
    layers = [T.make_layer([T.file(f"r{i}", os.urandom(300 << 10))], "none") for i in range(2)]
    tls.push_image(repo, "1", layers)
    for flaky in (False, True):
        proc, addr, stats = start_redirector(flaky)
        try:
            st = store(f"redir{int(flaky)}")
            p = pull(st, f"{addr}/{repo}:1", ca=None, extra=["--insecure-http"])
            r = ok(p)
            expect(len(r["layer"]) == 2, r)
            for l in layers:
                expect(os.path.exists(os.path.join(st, "layers", l.digest[7:], "size")), "layer")
            s = json.load(open(stats))
            expect(s["auth_headers"] == 0, f"credentials sent to blob storage: {s}")
            expect(s["served"] == 3, s)  # config + 2 layers
            expect(s["faults"] == (6 if flaky else 0), s)
            if flaky:
                expect("registry_retry" in p.stderr, p.stderr[-800:])
        finally:
            proc.terminate()
            proc.wait()


@test
def image_pushed_by_docker_pulls_with_docker_s_digest():
    d = T.peer_env("dockerd")
    cfg = tempfile.mkdtemp(dir=WORK)
    reg = EH["REGISTRY_ADDR"]
    ref = f"{reg}/imgcore/docker-{RUN}:1"

    def dk(*a, **kw):
        return subprocess.run(["docker", "--config", cfg, "-H", f"unix://{d['DOCKER_SOCK']}"]
                              + list(a), capture_output=True, text=True, timeout=60, **kw)
    p = dk("login", "-u", EH["REGISTRY_USER"], "--password-stdin", reg,
           input=EH["REGISTRY_PASSWORD"])
    expect(p.returncode == 0, p.stderr)
    expect(dk("tag", d["DOCKER_IMAGE"], ref).returncode == 0, "docker tag")
    try:
        p = dk("push", ref)
        expect(p.returncode == 0, p.stderr)
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", p.stdout)
        expect(m, p.stdout)
    finally:
        dk("rmi", ref)
    env = {"DROVER_REGISTRY_PASSWORD": EH["REGISTRY_PASSWORD"]}
    p = subprocess.run([DROVER, "image", "pull", "--store", store("docker"), "--insecure-http",
                        "--username", EH["REGISTRY_USER"], ref], capture_output=True, text=True,
                       env=dict(os.environ, **env))
    r = ok(p)
    expect(r["digest"] == m.group(1), (r["digest"], m.group(1)))
    expect(os.path.exists(os.path.join(r["layer"][-1], "bin/busybox")), r["layer"])


def layer_dirs(st):
    return set(os.listdir(os.path.join(st, "layers")))


@test
def gc_removes_unleased_lru_layers_and_keeps_leased_ones():
    st = store("gc")
    imgs = []
    for n in ("held", "old", "new"):
        repo = f"imgcore/gc-{n}-{RUN}"
        l = T.make_layer([T.file(n, os.urandom(200 << 10))], "none")
        tls.push_image(repo, "1", [l])
        imgs.append((repo, l.digest[7:]))
    env = dict(os.environ, DROVER_REGISTRY_PASSWORD=PW)
    held = subprocess.Popen([DROVER, "image", "pull", "--store", st, "--ca", CA, "--username",
                             USER, "--hold", f"{TLS}/{imgs[0][0]}:1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        expect(held.stdout.readline().startswith("image "), "held pull failed")
        ok(pull(st, f"{TLS}/{imgs[1][0]}:1"))
        time.sleep(0.05)
        ok(pull(st, f"{TLS}/{imgs[2][0]}:1"))
        ls = subprocess.run([DROVER, "image", "ls", "--store", st], capture_output=True,
                            text=True).stdout
        expect(f"layer sha256:{imgs[0][1]}" in ls and "in_use=yes" in ls, ls)
        # bound = one layer's size: the leased one (oldest) stays, "old" goes, "new" stays
        size = int(re.search(r"layer sha256:%s bytes=(\d+)" % imgs[2][1], ls).group(1))
        g = subprocess.run([DROVER, "image", "gc", "--store", st, "--max-size", str(2 * size)],
                           capture_output=True, text=True)
        expect(g.returncode == 0, g.stderr)
        have = layer_dirs(st)
        expect(imgs[0][1] in have and imgs[2][1] in have and imgs[1][1] not in have, have)
        g = subprocess.run([DROVER, "image", "gc", "--store", st, "--max-size", "0"],
                           capture_output=True, text=True)
        expect(layer_dirs(st) == {imgs[0][1]}, layer_dirs(st))
        expect(os.path.exists(os.path.join(st, "layers", imgs[0][1], "root", "held")), "held")
    finally:
        held.stdin.close()
        held.wait(timeout=10)
    subprocess.run([DROVER, "image", "gc", "--store", st, "--max-size", "0"], capture_output=True)
    expect(layer_dirs(st) == set(), layer_dirs(st))
    # a released image is pulled again (its record remains, its layers are fetched anew)
    ok(pull(st, f"{TLS}/{imgs[0][0]}:1"))
    # a store with a bound collects after each pull: only the image just pulled stays
    ok(pull(st, f"{TLS}/{imgs[1][0]}:1", extra=["--max-size", "300k"]))
    expect(layer_dirs(st) == {imgs[1][1]}, layer_dirs(st))
    # a layer that alone exceeds the bound is refused (it could never fit)
    p = pull(st, f"{TLS}/{imgs[2][0]}:1", extra=["--max-size", "100k"])
    expect(p.returncode == 1 and "image store's bound" in p.stderr, p.stderr)
    expect(layer_dirs(st) == {imgs[1][1]}, layer_dirs(st))


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
