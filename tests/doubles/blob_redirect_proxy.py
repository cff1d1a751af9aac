#!/usr/bin/env python3
"""blob_redirect_proxy.py: a registry front that redirects blob downloads to separate "blob
storage", as Docker Hub, GHCR or ECR do (S3 / CDN presigned URLs). Standard library only.

Two plain-http listeners on 127.0.0.1:
  registry  every request is forwarded to --upstream verbatim, except GET .../blobs/<digest>:
            its auth is checked with a HEAD upstream, then it is answered 307 to the storage
  storage   GET /blobs/<hex>?sig=... serves <data-dir>/docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data
            (the registry's filesystem storage). With --flaky, each blob fails twice first:
            503, then a reset after half the body (a client must retry from zero).
  --upstream https://127.0.0.1:5443 --ca CA.pem --data-dir DIR --port-file F (writes "REGISTRYPORT STORAGEPORT")
  --stats F  rewritten after each storage request: {"served": n, "auth_headers": n, "faults": n}
"""
import argparse
import http.client
import http.server
import json
import os
import socket
import ssl
import struct
import threading
import urllib.parse

LOCK = threading.Lock()
STATS = {"served": 0, "auth_headers": 0, "faults": 0}
FAULTS = {}


def save_stats(path):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(STATS, f)
        os.replace(path + ".tmp", path)


def registry_handler(a, storage_port):
    up = urllib.parse.urlparse(a.upstream)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def forward(self, method, body=None):
            if up.scheme == "https":
                ctx = ssl.create_default_context(cafile=a.ca)
                c = http.client.HTTPSConnection(up.hostname, up.port, timeout=30, context=ctx)
            else:
                c = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            hdrs["Host"] = up.netloc
            c.request(method, self.path, body=body, headers=hdrs)
            return c, c.getresponse()

        def relay(self, r, send_body=True):
            data = r.read() if send_body else b""
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data) if send_body else
                                                   r.getheader("Content-Length", "0")))
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def do_GET(self):
            parts = self.path.split("/blobs/")
            if len(parts) == 2 and parts[1].startswith("sha256:"):
                c, r = self.forward("HEAD")
                r.read()
                c.close()
                if r.status != 200:
                    return self.relay(r, send_body=False)
                hexd = parts[1][7:].split("?")[0]
                self.send_response(307)
                self.send_header("Location",
                                 f"http://127.0.0.1:{storage_port}/blobs/{hexd}?sig=abc")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            c, r = self.forward("GET")
            self.relay(r)
            c.close()

        def do_HEAD(self):
            c, r = self.forward("HEAD")
            r.read()
            self.relay(r, send_body=False)
            c.close()

    return H


def storage_handler(a):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            hexd = urllib.parse.urlparse(self.path).path.rsplit("/", 1)[-1]
            path = os.path.join(a.data_dir, "docker/registry/v2/blobs/sha256", hexd[:2], hexd,
                                "data")
            with LOCK:
                if self.headers.get("Authorization"):
                    STATS["auth_headers"] += 1
                n = FAULTS.get(hexd, 0)
                FAULTS[hexd] = n + 1
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            fault = a.flaky and n < 2
            with LOCK:
                STATS["faults" if fault else "served"] += 1
                save_stats(a.stats)
            if fault and n == 0:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault:  # half the body, then a reset
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.wfile.write(data)

    return H


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--stats")
    p.add_argument("--ca", help="CA of an https upstream")
    p.add_argument("--flaky", action="store_true")
    a = p.parse_args()
    st = http.server.ThreadingHTTPServer(("127.0.0.1", 0), storage_handler(a))
    rg = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                         registry_handler(a, st.server_address[1]))
    threading.Thread(target=st.serve_forever, daemon=True).start()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(f"{rg.server_address[1]} {st.server_address[1]}\n")
    os.replace(a.port_file + ".tmp", a.port_file)
    save_stats(a.stats)
    rg.serve_forever()


if __name__ == "__main__":
    main()
