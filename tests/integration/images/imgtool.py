"""imgtool.py: build OCI/Docker image layers and push them to a distribution v2 registry with
the python standard library only (tarfile, gzip, hashlib, json, urllib). Used by the images
tests; importable by other tests (images-run) too.

  layer = make_layer([file("bin/busybox", data, 0o755), symlink("bin/sh", "busybox"), ...])
  reg = Registry("127.0.0.1:5000", user, password)              # http
  reg = Registry("127.0.0.1:5443", user, password, ca="ca.pem")  # https
  digest = reg.push_image("t/busybox", "1", [layer1, layer2], config={"Env": [...]})
"""
import base64
import gzip
import hashlib
import io
import json
import os
import re
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---- tar entries: (name, kind, payload, mode, uid, gid) ----
def file(name, data, mode=0o644, uid=0, gid=0):
    return (name, "file", data if isinstance(data, bytes) else data.encode(), mode, uid, gid)


def dir_(name, mode=0o755, uid=0, gid=0):
    return (name, "dir", None, mode, uid, gid)


def symlink(name, target, uid=0, gid=0):
    return (name, "symlink", target, 0o777, uid, gid)


def hardlink(name, target):
    return (name, "hardlink", target, 0o644, 0, 0)


def whiteout(path):
    d, b = os.path.split(path)
    return file(os.path.join(d, ".wh." + b), b"", 0o644)


def opaque(dirpath):
    return file(os.path.join(dirpath, ".wh..wh..opq"), b"", 0o644)


def chardev(name, major=1, minor=3):
    return (name, "chr", (major, minor), 0o666, 0, 0)


def make_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload, mode, uid, gid in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, 1700000000
            if kind == "file":
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
                continue
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = payload
            t.addfile(ti)
    return buf.getvalue()


class Layer:
    """A compressed layer blob plus its uncompressed diff id."""

    def __init__(self, entries, compression="gzip"):
        raw = make_tar(entries)
        self.diff_id = sha256(raw)
        if compression == "gzip":
            self.blob = gzip.compress(raw, mtime=0)
            self.media_type = MT_LAYER_GZ
        elif compression == "zstd":
            self.blob = subprocess.run(["zstd", "-q", "-c"], input=raw, check=True,
                                       stdout=subprocess.PIPE).stdout
            self.media_type = MT_OCI_ZSTD
        else:
            self.blob = raw
            self.media_type = MT_OCI_TAR
        self.digest = sha256(self.blob)


def make_layer(entries, compression="gzip"):
    return Layer(entries, compression)


def busybox_entries(extra_env_file=True):
    """A minimal busybox root: /bin/busybox (static) with sh/ls/cat/... links, /etc/passwd."""
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    e = [dir_("bin"), dir_("etc"), dir_("tmp", 0o1777), file("bin/busybox", bb, 0o755)]
    for app in ("sh", "ls", "cat", "echo", "id", "env", "pwd", "test", "sleep", "nc", "httpd",
                "wget", "mkdir", "rm", "true", "false", "stat", "uname", "hostname", "ps",
                "grep", "sed", "head", "touch", "kill"):
        e.append(symlink("bin/" + app, "busybox"))
    e.append(file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                "circleci:x:3434:3434::/home/circleci:/bin/sh\n"))
    e.append(file("etc/group", "root:x:0:\ncircleci:x:3434:\n"))
    return e


class Registry:
    def __init__(self, addr, user=None, password=None, ca=None):
        self.addr = addr
        self.scheme = "https" if ca else "http"
        self.auth = None
        if user:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.ctx = ssl.create_default_context(cafile=ca) if ca else None
        self.token = None

    def request(self, method, path_or_url, data=None, headers=None):
        url = path_or_url if "://" in path_or_url else f"{self.scheme}://{self.addr}{path_or_url}"
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = self.token or self.auth
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        refreshed = False
        for attempt in range(5):
            try:
                with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                    return r.status, dict(r.headers), r.read()
            except urllib.error.HTTPError as e:
                if e.code == 401 and "Bearer" in e.headers.get("WWW-Authenticate", "") \
                        and not refreshed:
                    refreshed = True
                    self.token = "Bearer " + self._bearer(e.headers["WWW-Authenticate"])
                    h["Authorization"] = self.token
                    req = urllib.request.Request(url, data=data, method=method, headers=h)
                    continue
                return e.code, dict(e.headers), e.read()
            except (ConnectionError, urllib.error.URLError):
                if attempt == 4:
                    raise
                time.sleep(0.2)
        raise RuntimeError("unreachable")

    def _bearer(self, challenge):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        q = urllib.parse.urlencode({"service": params.get("service", ""),
                                    "scope": params.get("scope", "")})
        req = urllib.request.Request(params["realm"] + "?" + q, headers={"Authorization": self.auth})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
            return json.loads(r.read())["token"]

    def push_blob(self, repo, data):
        digest = sha256(data)
        st, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if st == 200:
            return digest
        st, h, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        assert st == 202, f"blob upload start: {st} {body[:200]}"
        loc = h["Location"]
        if "://" not in loc:
            loc = f"{self.scheme}://{self.addr}{loc}"
        sep = "&" if "?" in loc else "?"
        st, _, body = self.request("PUT", f"{loc}{sep}digest={digest}", data,
                                   {"Content-Type": "application/octet-stream"})
        assert st == 201, f"blob upload: {st} {body[:200]}"
        return digest

    def push_manifest(self, repo, ref, body, media_type):
        st, _, resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}", body,
                                   {"Content-Type": media_type})
        assert st == 201, f"manifest push: {st} {resp[:300]}"
        return sha256(body)

    def push_image(self, repo, tag, layers, config=None, arch="amd64", oci=False,
                   push_tag=True):
        """Push layers + config; returns (manifest digest, manifest bytes)."""
        cfg = {"architecture": arch, "os": "linux", "config": config or {},
               "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]}}
        cfg_b = json.dumps(cfg).encode()
        self.push_blob(repo, cfg_b)
        for l in layers:
            self.push_blob(repo, l.blob)
        mt = MT_OCI_MANIFEST if oci else MT_MANIFEST
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json" if oci
                          else MT_CONFIG, "size": len(cfg_b), "digest": sha256(cfg_b)},
               "layers": [{"mediaType": l.media_type, "size": len(l.blob), "digest": l.digest}
                          for l in layers]}
        body = json.dumps(man).encode()
        ref = tag if push_tag else sha256(body)
        return self.push_manifest(repo, ref, body, mt), body

    def push_index(self, repo, tag, entries, oci=False):
        """entries: [(manifest digest, manifest bytes, arch, variant or None)]."""
        mt = MT_OCI_INDEX if oci else MT_LIST
        man_mt = MT_OCI_MANIFEST if oci else MT_MANIFEST
        idx = {"schemaVersion": 2, "mediaType": mt, "manifests": []}
        for d, b, arch, variant in entries:
            p = {"architecture": arch, "os": "linux"}
            if variant:
                p["variant"] = variant
            idx["manifests"].append({"mediaType": man_mt, "size": len(b), "digest": d,
                                     "platform": p})
        body = json.dumps(idx).encode()
        return self.push_manifest(repo, tag, body, mt)


def peer_env(name):
    """KEY=VALUE pairs of /tmp/drover-peers/NAME.env as a dict."""
    path = os.path.join(os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers"), name + ".env")
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out
