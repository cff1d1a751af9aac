#!/usr/bin/env python3
"""docker_checkout_test.py: `checkout` and `add_ssh_keys` in the remote Docker runtime (the dockerd
peer of scripts/peers/dockerd.sh) against the test's sshd (sshfixture.py). The image is built
here without network: busybox plus the host's git and ssh with the libraries they link."""
import os
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from taplib import count, expect, main, run_job, test  # noqa: E402
from sshfixture import (C2, C3, EXTRA_FP, EXTRA_KEY, GOOD_FP, GOOD_KEY, IP, KNOWN,  # noqa: E402
                        PORT, T, URL)

PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
DK = {}
with open(os.path.join(PEERS, "dockerd.env")) as f:
    for line in f:
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            DK[k] = v
PEM = {k: open(DK[v]).read() for k, v in
       (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"), ("key", "DOCKER_KEY"))}
IMAGE = "local/drover-git-ssh:1"


def docker(*args, **kw):
    return subprocess.run(["docker", "-H", "unix://" + DK["DOCKER_SOCK"], *args], check=True,
                          capture_output=True, **kw)


def build_image():
    """busybox + /usr/bin/git + /usr/bin/ssh and every library ldd names (idempotent)."""
    if subprocess.run(["docker", "-H", "unix://" + DK["DOCKER_SOCK"], "image", "inspect", IMAGE],
                      capture_output=True).returncode == 0:
        return
    root = tempfile.mkdtemp(prefix="rootfs-", dir=T)
    for d in ("bin", "usr/bin", "tmp", "etc", "root", "home/circleci"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)
    os.chown(os.path.join(root, "home/circleci"), 3434, 3434)
    subprocess.run(["cp", "/bin/busybox", os.path.join(root, "bin/busybox")], check=True)
    applets = subprocess.run([os.path.join(root, "bin/busybox"), "--list"], check=True,
                             capture_output=True, text=True).stdout.split()
    for a in applets:
        p = os.path.join(root, "bin", a)
        if not os.path.lexists(p):
            os.symlink("busybox", p)
    files = {"/usr/bin/git", "/usr/bin/ssh"}
    for b in ("/usr/bin/git", "/usr/bin/ssh"):
        out = subprocess.run(["ldd", b], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            for w in f:
                if w.startswith("/"):
                    files.add(w)
    for src in files:
        dst = os.path.join(root, src.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        subprocess.run(["cp", "-L", src, dst], check=True)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\ncircleci:x:3434:3434::/home/circleci:/bin/sh\n"
                "nobody:x:65534:65534::/nonexistent:/bin/sh\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\ncircleci:x:3434:\nnogroup:x:65534:\n")
    tar = subprocess.run(["tar", "-C", root, "-c", "."], check=True, capture_output=True).stdout
    docker("import", "-c", 'CMD ["/bin/sh"]', "-c", "ENV PATH=/usr/bin:/bin", "-", IMAGE,
           input=tar)


build_image()


def spec(steps, user=None, **kw):
    image = {"image": IMAGE}
    if user:
        image["user"] = user
    s = {"version": 1,
         "id": {"job": f"dco{os.getpid()}-{count()}", "name": "docker-checkout", "build_num": 1},
         "executor": {"runtime": "docker", "kind": "docker", "images": [image],
                      "resources": {"cpus": 1, "memory_mb": 512},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "vcs": {"url": URL, "branch": "feature", "known_hosts": KNOWN,
                 "checkout_key": {"fingerprint": GOOD_FP, "private_key": GOOD_KEY}},
         "steps": steps}
    s.update(kw)
    return s


def run(cmd):
    return {"type": "run", "command": cmd}


def ok_job(s):
    rc, out, err, ev = run_job(s)
    reasons = [e.get("reason") for e in ev if e["type"] == "step_finished"]
    expect(rc == 0, f"rc={rc}\n{out}\n{err}\n{reasons}")
    return out


@test
def docker_checkout_as_root_keeps_the_key_from_other_uids():
    out = ok_job(spec([
        {"type": "checkout"},
        run("echo HEAD=$(git rev-parse HEAD) REF=$(git rev-parse --abbrev-ref HEAD); "
            "stat -c 'MODE %a %U %n' ~/.ssh ~/.ssh/id_rsa; "
            "echo WHO=$(su -s /bin/sh nobody -c 'id -un'); "
            "r=$(su -s /bin/sh nobody -c 'cat /root/.ssh/id_rsa' >/dev/null 2>&1 && echo READ || true); "
            "echo NOBODY=${r:-DENIED}"),
    ]))
    expect(f"HEAD={C3} REF=feature" in out, out)
    expect("MODE 700 root /root/.ssh\n" in out and "MODE 600 root /root/.ssh/id_rsa\n" in out, out)
    expect("WHO=nobody\n" in out and "NOBODY=DENIED\n" in out, out)


@test
def docker_checkout_as_the_image_user_and_add_ssh_keys_then_ssh():
    ssh = (f"ssh -o BatchMode=yes -o UserKnownHostsFile=$HOME/kh -p {PORT} root@{IP} "
           "echo hello-from-sshd")
    out = ok_job(spec([
        {"type": "checkout", "path": "src"},
        {"type": "add_ssh_keys"},
        run("cd src && echo HEAD=$(git rev-parse HEAD); id -un; "
            "stat -c 'MODE %a %U %n' ~/.ssh/id_rsa ~/.ssh/id_rsa_*; "
            f"printf '%s' '{KNOWN}' > ~/kh; {ssh}"),
    ], user="circleci", ssh_keys=[{"fingerprint": EXTRA_FP, "private_key": EXTRA_KEY}],
        vcs={"url": URL, "branch": "main", "known_hosts": KNOWN, "depth": 1,
             "checkout_key": {"fingerprint": GOOD_FP, "private_key": GOOD_KEY}}))
    name = "id_rsa_" + EXTRA_FP.replace(":", "")
    expect(f"HEAD={C2}" in out and "\ncircleci\n" in out, out)
    expect("MODE 600 circleci /home/circleci/.ssh/id_rsa\n" in out, out)
    expect(f"MODE 600 circleci /home/circleci/.ssh/{name}\n" in out, out)
    expect("hello-from-sshd" in out, out)


@test
def docker_checkout_with_a_wrong_key_names_the_remote():
    s = spec([{"type": "checkout"}])
    s["vcs"]["checkout_key"]["private_key"] = open(os.path.join(T, "wrong")).read()
    rc, out, err, ev = run_job(s)
    r = [e.get("reason", "") for e in ev if e["type"] == "step_finished"]
    expect(rc != 0 and URL in r[0] and "Permission denied (publickey)" in r[0], f"{r}\n{out}")


main()
