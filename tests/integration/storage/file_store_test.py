#!/usr/bin/env python3
"""file_store_test.py: caches, workspaces, artifacts and test results through `drover job` with a
file:// store; hostile archives planted in the store must be refused without writing outside."""
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402

STORE = tempfile.mkdtemp(prefix="drover-store-")
S3 = None  # with --s3: the same tests against the real radosgw (scripts/peers/radosgw.sh)
if "--s3" in sys.argv:
    import urllib.parse
    import xml.etree.ElementTree as ET
    env_path = os.path.join(os.environ.get("DROVER_PEERS_DIR") or "/tmp/drover-peers", "radosgw.env")
    if not os.path.exists(env_path):
        print(f"1..1\nnot ok 1 - {env_path} missing (scripts/peers/radosgw.sh start)")
        sys.exit(1)
    S3 = dict(l.strip().split("=", 1) for l in open(env_path) if "=" in l)
    S3["prefix"] = f"it-{os.getpid()}-{int(time.time())}/"
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bench"))
    import s3_cleanup as s3sig  # noqa: E402 - the signer the benches use too


def s3_request(method, key, query="", body=b""):
    """One SigV4-signed request (standard library only), independent of drover's client."""
    return s3sig.request(method, query, body, key=None if key is None else S3["prefix"] + key)


def store_put(key, data):
    if S3:
        s3_request("PUT", key, body=data)
        return
    path = os.path.join(STORE, "objects", key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def store_get(key):
    if S3:
        return s3_request("GET", key)
    with open(os.path.join(STORE, "objects", key), "rb") as f:
        return f.read()


def storage():
    if not S3:
        return {"url": f"file://{STORE}"}
    return {"url": f"s3://{S3['S3_BUCKET']}/{S3['prefix'].rstrip('/')}", "endpoint": S3["S3_ENDPOINT"],
            "region": S3["S3_REGION"], "access_key": S3["S3_ACCESS_KEY"], "secret_key": S3["S3_SECRET_KEY"],
            "path_style": True}


def spec(steps, name="job", layers=None, **kw):
    s = {"version": 1,
         "id": {"job": f"{name}-{os.getpid()}-{count()}", "name": name, "build_num": 3,
                "workflow": "wf1", "project": "gh/acme/app"},
         "vcs": {"branch": "main", "revision": "abcdef0123456"},
         "executor": {"runtime": "sandbox", "kind": "machine"},
         "storage": storage(),
         "steps": steps}
    if layers:
        s["workspace"] = {"layers": layers}
    s.update(kw)
    return s








def objects(prefix):
    if S3:
        keys, token = [], None
        while True:
            q = (f"continuation-token={urllib.parse.quote(token, safe='~')}&" if token else "") + \
                "list-type=2&prefix=" + urllib.parse.quote(S3["prefix"] + prefix, safe="~")
            root = ET.fromstring(s3_request("GET", None, q))
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            keys += [c.find(ns + "Key").text[len(S3["prefix"]):] for c in root.findall(ns + "Contents")]
            t = root.find(ns + "NextContinuationToken")
            if root.findtext(ns + "IsTruncated") != "true" or t is None:
                return sorted(keys)
            token = t.text
    base = os.path.join(STORE, "objects")
    out = []
    for root, _, files in os.walk(base):
        for f in files:
            key = os.path.relpath(os.path.join(root, f), base)
            if key.startswith(prefix):
                out.append(key)
    return sorted(out)


MAKE_DEPS = """
mkdir -p deps/bin && echo lockv1 > deps.lock
printf 'data' > deps/file && printf '#!/bin/sh\\necho tool\\n' > deps/bin/tool && chmod 755 deps/bin/tool
ln -sf file deps/link && touch -d '2001-02-03 04:05:06' deps/file
"""


@test
def cache_round_trip_keeps_modes_links_and_mtimes():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": MAKE_DEPS},
        {"type": "save_cache", "key": 'deps-{{ .Branch }}-{{ checksum "deps.lock" }}',
         "paths": ["deps", "~/project/deps.lock"]},
        {"type": "save_cache", "key": 'deps-{{ .Branch }}-{{ checksum "deps.lock" }}', "paths": ["deps"]},
    ]))
    expect(rc == 0, f"rc={rc} {out} {err}")
    expect("Skipping cache generation, cache already exists" in out, out)
    keys = objects("caches/gh/acme/app/deps-main-")
    expect(len(keys) == 1, keys)
    rc, out, err, ev = run_job(spec([
        {"type": "restore_cache", "keys": ["nomatch-", "deps-{{ .Branch }}-", "deps-"]},
        {"type": "run", "command": "cd deps && test -x bin/tool && bin/tool && test -L link && "
                                   "test \"$(readlink link)\" = file && cat link && "
                                   "stat -c %Y file"},
    ]))
    expect(rc == 0, f"rc={rc} {out} {err}")
    expect("Found a cache at key deps-main-" in out, out)
    expect("tool" in out and "data" in out and "981173106" in out, out)


@test
def cache_miss_is_not_an_error_and_newest_prefix_match_wins():
    rc, out, err, ev = run_job(spec([{"type": "restore_cache", "keys": ["never-saved-"]},
                                     {"type": "run", "command": "echo after"}]))
    expect(rc == 0 and "No cache is found" in out and "after" in out, out + err)
    for v in ("old", "new"):
        rc, out, err, ev = run_job(spec([
            {"type": "run", "command": f"mkdir -p p && echo {v} > p/v"},
            {"type": "save_cache", "key": f"pick-{v}", "paths": ["p"]}]))
        expect(rc == 0, err)
    rc, out, err, ev = run_job(spec([{"type": "restore_cache", "keys": ["pick-"]},
                                     {"type": "run", "command": "cat p/v"}]))
    expect(rc == 0 and "new" in out.split("Found a cache")[1], out)


@test
def corrupt_cache_is_a_miss_with_a_warning():
    store_put("caches/gh/acme/app/corrupt-1", b"\x28\xb5\x2f\xfd this is not zstd at all" * 10)
    rc, out, err, ev = run_job(spec([{"type": "restore_cache", "keys": ["corrupt-"]},
                                     {"type": "run", "command": "echo continued"}]))
    expect(rc == 0 and "Warning" in out and "continued" in out, out + err)


@test
def unknown_key_template_fails_the_step_naming_it():
    rc, out, err, ev = run_job(spec([{"type": "save_cache", "key": "k-{{ .Nope }}", "paths": ["x"]}]))
    expect(rc == 1 and "unknown template {{ .Nope }}" in out, out)


@test
def workspace_persist_and_attach_between_jobs():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt"},
        {"type": "persist_to_workspace", "root": "out", "paths": ["*.txt", "sub"]}], name="build"))
    expect(rc == 0, out + err)
    layers = [e for e in ev if e["type"] == "workspace_layer"]
    expect(len(layers) == 1 and layers[0]["key"].startswith("workspaces/wf1/build/"), layers)
    rc, out, err, ev = run_job(spec([
        {"type": "attach_workspace", "at": "/tmp/ws"},
        {"type": "run", "command": "cat /tmp/ws/a.txt /tmp/ws/sub/b.txt"}],
        name="test", layers=[{"job": "build", "key": layers[0]["key"]}]))
    expect(rc == 0 and "a\nb" in out, out + err)


def run_job_rusage(spec_obj, timeout=180):
    """Run a job spec through `drover job`; returns (rc, stdout, peak RSS in KiB of drover and the
    processes it waited for)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec_obj, f)
    try:
        with tempfile.TemporaryFile("w+") as out:
            p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=out,
                                 stderr=subprocess.STDOUT)
            deadline = time.time() + timeout
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.time() > deadline:
                    p.kill()
                    raise AssertionError("drover job timed out")
                time.sleep(0.05)
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            return p.returncode, out.read(), ru.ru_maxrss
    finally:
        os.unlink(f.name)


@test
def big_workspace_layer_is_attached_streaming_with_bounded_memory():
    # 200 MiB, sparse-ish: 1 MiB of random bytes every 20 MiB, the rest holes (a ~10 MB layer:
    # radosgw's small memstore frees deleted objects only after its GC delay). The layer must be
    # downloaded, decompressed and extracted as it comes, never held whole.
    gen = ("for i in $(seq 0 9); do head -c 1048576 /dev/urandom | "
           "dd of=out/big bs=1M seek=$((20*i)) conv=notrunc status=none; done; "
           "truncate -s 200M out/big; sha256sum out/big | cut -c1-64 > out/sum")
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "mkdir -p out && " + gen},
        {"type": "persist_to_workspace", "root": "out", "paths": ["big", "sum"]}], name="bigbuild"))
    expect(rc == 0, out + err)
    layer = [e for e in ev if e["type"] == "workspace_layer"][0]["key"]
    rc, out, rss_kib = run_job_rusage(spec([
        {"type": "attach_workspace", "at": "/tmp/ws"},
        {"type": "run", "command": "test $(stat -c %s /tmp/ws/big) = 209715200 && "
                                   "test \"$(sha256sum /tmp/ws/big | cut -c1-64)\" = \"$(cat /tmp/ws/sum)\" "
                                   "&& echo SAME-BYTES"}],
        name="bigtest", layers=[{"job": "bigbuild", "key": layer}]))
    expect(rc == 0 and "SAME-BYTES" in out, out)
    expect(rss_kib < 64 * 1024, f"attach of a 200 MiB layer peaked at {rss_kib} KiB RSS (bound: 64 MiB)")
    if S3:  # leave the small memstore as it was
        s3_request("DELETE", layer)


def plant(name, members):
    """Write a tar into the store as a workspace layer; members: (TarInfo, bytes|None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    key = f"workspaces/evil/{name}.tar.gz"
    store_put(key, buf.getvalue())
    return key


def member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.linkname = link
    i.size = len(data) if kind == tarfile.REGTYPE else 0
    i.mode = 0o644
    return i, (data if kind == tarfile.REGTYPE else None)


@test
def hostile_archives_are_refused_and_write_nothing_outside():
    host_marker = f"/tmp/drover-escape-{os.getpid()}"
    cases = {
        "dotdot": [member("../../../../../../../../tmp/" + os.path.basename(host_marker))],
        "absolute": [member(host_marker)],
        "symlink-escape": [member("esc", tarfile.SYMTYPE, link="/tmp"),
                           member("esc/" + os.path.basename(host_marker))],
        "hardlink-out": [member("pw", tarfile.LNKTYPE, link="../../etc/passwd")],
    }
    for name, members in cases.items():
        key = plant(name, members)
        rc, out, err, ev = run_job(spec([
            {"type": "attach_workspace", "at": "/tmp/ws"},
            {"type": "run", "when": "always",
             "command": f"test ! -e {host_marker} && test ! -e /tmp/ws/pw && echo INSIDE-CLEAN"}],
            layers=[{"job": "evil", "key": key}]))
        expect(rc == 1 and "refused" in out or "symlink" in out or "hard link" in out,
               f"{name}: rc={rc} {out}")
        expect(not os.path.exists(host_marker), f"{name}: wrote {host_marker} on the host")
        expect("INSIDE-CLEAN" in out, f"{name}: a file landed outside /tmp/ws in the job: {out}")
    # a device node is skipped, not created
    dev = tarfile.TarInfo("null2")
    dev.type = tarfile.CHRTYPE
    dev.devmajor, dev.devminor = 1, 3
    key = plant("device", [(dev, None), member("ok.txt")])
    rc, out, err, ev = run_job(spec([
        {"type": "attach_workspace", "at": "/tmp/ws"},
        {"type": "run", "command": "test ! -e /tmp/ws/null2 && cat /tmp/ws/ok.txt"}],
        layers=[{"job": "evil", "key": key}]))
    expect(rc == 0, f"device archive: rc={rc} {out}")


@test
def artifacts_are_stored_file_by_file_without_following_symlinks():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "mkdir -p rep/img && echo hi > rep/index.html && echo '{}' > rep/r.json "
                                   "&& printf 'P' > rep/img/a.png && ln -s /etc/passwd rep/pw"},
        {"type": "store_artifacts", "path": "rep", "destination": "report"}]))
    expect(rc == 0, out + err)
    arts = {e["path"]: e for e in ev if e["type"] == "artifact"}
    expect(set(arts) == {"report/index.html", "report/r.json", "report/img/a.png"}, arts)
    expect(arts["report/index.html"]["content_type"] == "text/plain", arts)
    expect(arts["report/img/a.png"]["content_type"] == "image/png", arts)
    key = arts["report/r.json"]["key"]
    expect(store_get(key) == b"{}\n", "artifact content differs")


JUNIT = """<?xml version="1.0"?>
<testsuite name="s" tests="3">
  <testcase classname="a" name="fast" file="t/a_test.py" time="0.5"/>
  <testcase classname="b" name="slow" file="t/b_test.py" time="9.0"><failure message="x"/></testcase>
  <testcase classname="c" name="skip" file="t/c_test.py" time="0.1"><skipped/></testcase>
</testsuite>
"""


@test
def test_results_summary_and_timings_feed_tests_split():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "mkdir -p tr/nested && cat > tr/nested/junit.xml <<'EOF'\n" + JUNIT +
                                   "EOF\necho 'not xml' > tr/broken.xml"},
        {"type": "store_test_results", "path": "tr"}], name="unit"))
    expect(rc == 0, out + err)
    tr = [e for e in ev if e["type"] == "test_results"]
    expect(tr and tr[0]["tests"] == 3 and tr[0]["failures"] == 1 and tr[0]["skipped"] == 1, tr)
    expect("Warning: broken.xml is not JUnit XML" in out, out)
    # a later run of the job (another workflow): timings come from earlier runs only, never
    # from the run a node belongs to (every node of one run splits alike)
    later = spec([
        {"type": "run", "command": "for i in 0 1; do printf 't/a_test.py\\nt/b_test.py\\nt/c_test.py\\n' | "
                                   "circleci tests split --split-by=timings --total 2 --index $i | "
                                   "tr '\\n' ' ' | sed \"s/^/node$i: /\"; echo; done"}],
        name="unit")
    later["id"]["workflow"] = "wf2"
    rc, out, err, ev = run_job(later)
    expect(rc == 0, out + err)
    # b (9 s) alone on one node, a (0.5 s) and c (0.1 s) together on the other
    expect("node0: t/b_test.py \n" in out and "node1: t/a_test.py t/c_test.py \n" in out, out)




if __name__ == "__main__":
    if S3:  # leave nothing of this run in the shared peer's small store
        for key in objects(""):
            s3_request("DELETE", key)
    main()
