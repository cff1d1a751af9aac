"""ocilib.py: small busybox-based images for the images-run tests and bench/images.sh, pushed to the
registry peer — a fluent layer builder over tests/integration/images/imgtool.py (which holds the
tar building and the registry client)."""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images"))
import imgtool  # noqa: E402

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "id", "echo", "env", "pwd", "nc", "httpd", "wget", "sleep",
           "hostname", "grep", "test", "touch", "mkdir", "rm", "true", "false", "sed", "cp",
           "ps", "stat", "whoami", "readlink", "head", "wc", "seq", "printf", "date", "tr"]


def envfile(name):
    """KEY=VALUE lines of a peer's env file (/tmp/drover-peers/NAME) as a dict."""
    return imgtool.peer_env(name[:-4] if name.endswith(".env") else name)


def registry():
    """(addr, user, password) of the htpasswd registry peer."""
    e = envfile("registry")
    return e["REGISTRY_ADDR"], e["REGISTRY_USER"], e["REGISTRY_PASSWORD"]


class Layer:
    """Entries of one layer: add files, dirs, symlinks, whiteouts; build() makes the blob."""

    def __init__(self):
        self.entries = []

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries.append(imgtool.dir_(path.lstrip("/"), mode, uid, gid))
        return self

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        self.entries.append(imgtool.file(path.lstrip("/"), data, mode, uid, gid))
        return self

    def symlink(self, path, target):
        self.entries.append(imgtool.symlink(path.lstrip("/"), target))
        return self

    def whiteout(self, path):
        self.entries.append(imgtool.whiteout(path.lstrip("/")))
        return self

    def opaque(self, path):
        self.entries.append(imgtool.opaque(path.lstrip("/")))
        return self

    def build(self):
        """imgtool.Layer: .blob, .digest, .diff_id (gzip, deterministic)."""
        return imgtool.make_layer(self.entries)


def busybox_layer(users=(("app", 1000, 1000, "/home/app"),)):
    """busybox-static as /bin/busybox with applet symlinks, /etc/passwd+group, homes."""
    ly = Layer().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700).dir("home")
    with open(BUSYBOX, "rb") as f:
        ly.file("bin/busybox", f.read(), 0o755)
    for a in APPLETS:
        ly.symlink("bin/" + a, "busybox")
    pw = "root:x:0:0:root:/root:/bin/sh\n"
    gr = "root:x:0:\n"
    for name, uid, gid, home in users:
        pw += f"{name}:x:{uid}:{gid}:{name}:{home}:/bin/sh\n"
        gr += f"{name}:x:{gid}:\n"
        ly.dir(home, 0o755, uid, gid)
    ly.file("etc/passwd", pw).file("etc/group", gr)
    return ly


def compiled_spec(drover, proj, job_id):
    """The spec of the first job of proj's .circleci/config.yml (`drover config process`),
    named job_id; AssertionError with drover's message when it does not compile."""
    import json
    import subprocess
    p = subprocess.run([drover, "config", "process"], cwd=proj, capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"config process: {p.stderr}")
    spec = json.loads(p.stdout)["jobs"][0]["spec"]
    spec["id"]["job"] = job_id
    return spec


def run_job(drover, spec, store, env=None, timeout=90):
    """`drover job --spec -` (what the agent runs per job) with the layer store `store`: its
    exit code and output (stdout and stderr)."""
    import json
    import subprocess
    e = dict(os.environ, DROVER_IMAGE_STORE=store)
    e.update(env or {})
    p = subprocess.run([drover, "job", "--spec", "-"], input=json.dumps(spec),
                       capture_output=True, text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def host_tools_layer(binaries):
    """The host's binaries with the libraries ldd names; every busybox applet in /bin (for
    images that run host tools: git, ssh, the docker CLI)."""
    import subprocess
    ly = Layer()
    files = set(binaries)
    for b in binaries:
        out = subprocess.run(["ldd", b], check=True, capture_output=True, text=True).stdout
        files.update(w for line in out.splitlines() for w in line.split() if w.startswith("/"))
    dirs = set()
    for f in sorted(files):
        parts = os.path.dirname(f).strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs and d not in ("bin", "etc", "tmp", "root", "home"):
                dirs.add(d)
                ly.dir(d)
        with open(os.path.realpath(f), "rb") as fh:
            ly.file(f, fh.read(), 0o755)
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        if a not in APPLETS and a != "busybox":
            ly.symlink("bin/" + a, "busybox")
    return ly


def tls_registries():
    """(htpasswd addr, bearer-token addr, user, password, CA file) of the TLS registry peer."""
    e = envfile("registry-tls")
    return (e["REGISTRY_TLS_ADDR"], e["REGISTRY_TOKEN_ADDR"], e["REGISTRY_TLS_USER"],
            e["REGISTRY_TLS_PASSWORD"], e["REGISTRY_TLS_CA"])


def push_image(repo, tag, layers, config=None, reg=None, ca=None):
    """Push layers (bottom first, Layer objects) with an image config to reg (addr, user, pw;
    default the http registry peer; https when ca is given); returns the reference
    'ADDR/repo:tag' and the manifest digest."""
    addr, user, pw = reg or registry()
    digest, _ = imgtool.Registry(addr, user, pw, ca=ca).push_image(
        repo, tag, [ly.build() for ly in layers], config or {})
    return f"{addr}/{repo}:{tag}", digest
