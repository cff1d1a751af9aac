#!/usr/bin/env python3
"""injob_test.py: storage steps read and write job files as the job, inside the job (issue 18,
findings 1, 4, 5, 11): host secrets, kernel pseudo-files, devices, FIFOs and symlinked
directories are refused; a memory-bomb cache is charged to the job; a sparse file cannot become
gigabytes in the store; a refused archive leaves nothing of itself behind. Machine jobs through
`drover job` with a file:// store."""
import io
import os
import subprocess
import sys
import tarfile
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import count, expect, main, run_job, test  # noqa: E402

STORE = tempfile.mkdtemp(prefix="drover-injob-store-")


def spec(steps, name="job", layers=None, **kw):
    s = {"version": 1,
         "id": {"job": f"{name}-{os.getpid()}-{count()}", "name": name, "build_num": 3,
                "workflow": "wf1", "project": "gh/acme/injob"},
         "vcs": {"branch": "main", "revision": "abcdef0123456"},
         "executor": {"runtime": "sandbox", "kind": "machine"},
         "storage": {"url": f"file://{STORE}"},
         "steps": steps}
    if layers:
        s["workspace"] = {"layers": layers}
    s.update(kw)
    return s


def stored():
    """{key: bytes} of every object in the store."""
    base = os.path.join(STORE, "objects")
    out = {}
    for root, _, files in os.walk(base):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, base)] = fh.read()
    return out


def host_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def leaked(secret):
    """Keys of stored objects holding the secret bytes (as they are, or in a zstd archive)."""
    hits = []
    for key, data in stored().items():
        if secret and secret in data:
            hits.append(key)
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            plain = subprocess.run(["zstd", "-dc"], input=data, capture_output=True).stdout
            if secret in plain:
                hits.append(key)
    return hits


@test
def store_artifacts_of_host_shadow_is_refused():
    rc, out, err, ev = run_job(spec([{"type": "store_artifacts", "path": "/etc/shadow"}]))
    expect(rc == 1 and "Permission denied" in out, f"rc={rc} {out} {err}")
    expect(not [e for e in ev if e["type"] == "artifact"], ev)
    expect(not leaked(host_bytes("/etc/shadow")), "the host's /etc/shadow is in the store")


@test
def store_test_results_of_host_gshadow_is_refused():
    rc, out, err, ev = run_job(spec([{"type": "store_test_results", "path": "/etc/gshadow"}]))
    expect(rc == 1 and "Permission denied" in out, f"rc={rc} {out} {err}")
    expect(not leaked(host_bytes("/etc/gshadow")), "the host's /etc/gshadow is in the store")


@test
def checksum_of_shadow_devices_and_fifos_is_refused_at_once():
    cases = {"/etc/shadow": "Permission denied", "/dev/zero": "a device", "~/fifo": "a FIFO"}
    for path, why in cases.items():
        rc, out, err, ev = run_job(spec([
            {"type": "run", "command": "mkfifo ~/fifo"},
            {"type": "save_cache", "key": 'k-{{ checksum "%s" }}' % path, "paths": ["~/fifo"]}]),
            timeout=60)
        expect(rc == 1 and why in out, f"{path}: rc={rc} {out} {err}")
    expect(not leaked(host_bytes("/etc/shadow")), "the host's /etc/shadow is in the store")


@test
def persist_to_workspace_of_host_etc_is_refused():
    rc, out, err, ev = run_job(spec([
        {"type": "persist_to_workspace", "root": "/etc", "paths": ["shadow"]}], name="etcbuild"))
    expect(rc == 1 and "Permission denied" in out, f"rc={rc} {out} {err}")
    expect(not [e for e in ev if e["type"] == "workspace_layer"], ev)
    expect(not leaked(host_bytes("/etc/shadow")), "the host's /etc/shadow is in the store")


@test
def proc_files_are_never_stored():
    rc, out, err, ev = run_job(spec([{"type": "store_artifacts", "path": "/proc/1/environ"}]))
    expect(rc == 1 and ("Permission denied" in out or "pseudo-file" in out), f"rc={rc} {out}")
    expect(not [e for e in ev if e["type"] == "artifact"], ev)
    # one the job may read itself is refused all the same: kernel data, not job data
    rc, out, err, ev = run_job(spec([{"type": "store_artifacts", "path": "/proc/cpuinfo"}]))
    expect(rc == 1 and "pseudo-file" in out, f"rc={rc} {out}")
    own = f"DROVER_SUPERVISOR_MARK={os.getpid()}".encode()
    env = dict(os.environ, DROVER_SUPERVISOR_MARK=str(os.getpid()))
    rc, out, err, ev = run_job(spec([{"type": "store_artifacts", "path": "/proc/1/environ"}]),
                               env=env)
    expect(not leaked(own), "the supervisor's environment is in the store")


@test
def symlinked_directory_in_a_path_is_not_followed():
    target = "/etc/apt" if os.path.isdir("/etc/apt") else "/etc"
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": f"ln -s {target} ~/aptlink"},
        {"type": "store_artifacts", "path": "~/aptlink"}]))
    expect(rc == 1 and "symlink" in out, f"rc={rc} {out}")
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": f"ln -s {target} ~/aptlink"},
        {"type": "persist_to_workspace", "root": "~/aptlink", "paths": ["."]}]))
    expect(rc == 1 and "symlink" in out, f"rc={rc} {out}")
    expect(not [e for e in ev if e["type"] in ("artifact", "workspace_layer")], ev)


@test
def sparse_file_cannot_become_gigabytes_in_the_store():
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "truncate -s 3G ~/sparse && du -k ~/sparse"},
        {"type": "store_artifacts", "path": "~/sparse"}],
        executor={"runtime": "sandbox", "kind": "machine", "resources": {"disk_mb": 512}}), timeout=120)
    expect(rc == 1 and "cap" in out, f"rc={rc} {out} {err}")
    expect(not [e for e in ev if e["type"] == "artifact"], ev)
    big = [k for k, v in stored().items() if len(v) > (64 << 20)]
    expect(not big, f"gigabytes in the store: {big}")
    # the caps are the job's to set
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "head -c 3000000 /dev/zero > ~/three"},
        {"type": "store_artifacts", "path": "~/three"}],
        storage={"url": f"file://{STORE}", "max_file_mb": 2}))
    expect(rc == 1 and "max_file_mb" in out, f"rc={rc} {out}")


def plant(key, members, mode="w:gz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    path = os.path.join(STORE, "objects", key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def member(name, data=b"x", kind=tarfile.REGTYPE):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.size = len(data) if kind == tarfile.REGTYPE else 0
    i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return i, (data if kind == tarfile.REGTYPE else None)


@test
def refused_archive_leaves_no_partial_extraction():
    key = f"workspaces/evil/midway-{os.getpid()}.tar.gz"
    plant(key, [member("newdir", kind=tarfile.DIRTYPE), member("newdir/first.txt", b"first"),
                member("kept.txt", b"replaced"), member("../../../outside.txt", b"bad")])
    rc, out, err, ev = run_job(spec([
        {"type": "run", "command": "mkdir -p /tmp/ws && echo original > /tmp/ws/kept.txt"},
        {"type": "attach_workspace", "at": "/tmp/ws"},
        {"type": "run", "when": "always",
         "command": "ls -A /tmp/ws; cat /tmp/ws/kept.txt; test ! -e /tmp/ws/newdir && "
                    "test \"$(ls -A /tmp/ws)\" = kept.txt && echo ROLLED-BACK"}],
        layers=[{"job": "evil", "key": key}]))
    expect(rc == 1 and "refused" in out, f"rc={rc} {out}")
    expect("original" in out and "ROLLED-BACK" in out,
           f"entries before the refused one stayed:\n{out}")
    # as a cache: a miss, and nothing of it stays either
    plant("caches/gh/acme/injob/half-1",
          [member("tmp/half", kind=tarfile.DIRTYPE), member("tmp/half/a", b"a"),
           member("/etc/evil", b"bad")])
    rc, out, err, ev = run_job(spec([
        {"type": "restore_cache", "keys": ["half-"]},
        {"type": "run", "command": "test ! -e /tmp/half && echo NO-HALF"}]))
    expect(rc == 0 and "treating it as a miss" in out and "NO-HALF" in out, f"rc={rc} {out}")


@test
def memory_bomb_cache_is_charged_to_the_job():
    # 1.5 GiB of zeros in a few MB of tar+zstd
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "tmp"))
        with open(os.path.join(d, "tmp", "bomb"), "wb") as f:
            f.truncate(1536 << 20)
        path = os.path.join(STORE, "objects", "caches", "gh", "acme", "injob", "bomb-1")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out_f:
            tar = subprocess.Popen(["tar", "-C", d, "-cf", "-", "tmp/bomb"], stdout=subprocess.PIPE)
            subprocess.run(["zstd", "-1", "-q", "-c"], stdin=tar.stdout, stdout=out_f, check=True)
            tar.stdout.close()
            expect(tar.wait() == 0, "tar failed")
        expect(os.path.getsize(path) < (1 << 20) * 8, os.path.getsize(path))
    rc, out, err, ev = run_job(spec([
        {"type": "restore_cache", "keys": ["bomb-"]},
        {"type": "run", "when": "always",
         "command": "test -e /tmp/bomb && ls -la /tmp/bomb; ls -A /tmp | grep drover-undo || "
                    "true; test ! -e /tmp/bomb && echo NO-BOMB"}],
        executor={"runtime": "sandbox", "kind": "machine",
                  "resources": {"memory_mb": 256, "disk_mb": 2048}}),
        timeout=300)
    expect(rc != 2, f"bad spec: {out} {err}")
    expect("Found a cache at key bomb-" not in out, f"1.5 GiB restored past memory_mb 256:\n{out}")
    expect("could not be restored" in out and "out of memory" in out, f"rc={rc} {out}")
    # the helper was killed in the job's cgroup midway: what it wrote is undone from its log
    expect("NO-BOMB" in out and "\n.drover-undo" not in out,
           f"the partial 1.5 GiB file stayed in the job:\n{out}")


if __name__ == "__main__":
    main()
