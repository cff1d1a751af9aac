#!/usr/bin/env python3
"""hostile_registry.py: a plain-http registry front that behaves as a hostile registry would, for
the puller's defences (tests/integration/images/hostile_test.py). Standard library only.

Requests go to --upstream verbatim (with --inject-auth USER:PW the upstream gets that basic auth
instead of the client's: the image then looks public to the client), except as the mode says:
  --blob-redirect URL      GET .../blobs/<d> answered 307 to URL (a metadata service, another
                           loopback address)
  --manifest-redirect URL  GET .../manifests/<ref> answered 307 to URL
  --manifest-file F        GET .../manifests/<ref> answered with F (a manifest listing digests
                           the registry does not hold)
  --realm URL              a request without "Authorization: Bearer" gets 401 with a Bearer
                           challenge naming URL as the realm; with one, it is forwarded
  --oversize               GET .../blobs/<d> of a layer: 200 without Content-Length, then junk
                           until the client goes away (the bytes sent are counted)
  --trickle SECONDS        GET .../blobs/<d> of a layer: the right Content-Length, then a byte
                           every SECONDS
A bait listener on --bait-host (default 127.0.0.2) answers a token (BAIT-SECRET-TOKEN) or a
metadata-like text starting with SECRETBAIT, and counts the requests it got; "{bait}" in a URL
above is its "http://HOST:PORT".
  --port-file F: "REGISTRYPORT BAITPORT"; --stats F: {"bait_hits", "oversize_sent", "requests"}
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATS = {"bait_hits": 0, "oversize_sent": 0, "requests": 0}
A = None


def bump(key, n=1):
    with LOCK:
        STATS[key] += n
        if A.stats:
            with open(A.stats + ".tmp", "w") as f:
                json.dump(STATS, f)
            os.replace(A.stats + ".tmp", A.stats)


class Registry(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def upstream(self):
        up = urllib.parse.urlparse(A.upstream)
        c = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
        if A.inject_auth:
            hdrs["Authorization"] = "Basic " + base64.b64encode(A.inject_auth.encode()).decode()
        elif self.headers.get("Authorization") and not A.realm:
            hdrs["Authorization"] = self.headers["Authorization"]
        hdrs["Host"] = up.netloc
        c.request(self.command, self.path, headers=hdrs)
        r = c.getresponse()
        return c, r, r.read()

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        bump("requests")
        blob = "/blobs/sha256:" in self.path
        if A.realm and not self.headers.get("Authorization", "").startswith("Bearer "):
            return self.answer(401, [("WWW-Authenticate", f'Bearer realm="{A.realm}",'
                                      f'service="hostile",scope="repository:x:pull"')])
        if blob and A.blob_redirect:
            return self.answer(307, [("Location", A.blob_redirect)])
        if "/manifests/" in self.path and A.manifest_redirect:
            return self.answer(307, [("Location", A.manifest_redirect)])
        if "/manifests/" in self.path and A.manifest_file:
            with open(A.manifest_file, "rb") as f:
                return self.answer(200, [("Content-Type", "application/vnd.docker.distribution"
                                          ".manifest.v2+json")], f.read())
        c, r, body = self.upstream()
        c.close()
        layer = blob and self.command == "GET" and r.status == 200 and len(body) > 2048
        if layer and A.oversize:
            return self.endless()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if layer and A.trickle:
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(A.trickle)
            except OSError:
                self.close_connection = True
            return
        self.wfile.write(body)

    def endless(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        junk = os.urandom(1 << 16)
        self.close_connection = True
        try:
            while STATS["oversize_sent"] < (4 << 30):
                self.wfile.write(junk)
                bump("oversize_sent", len(junk))
        except OSError:
            pass


class Bait(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        bump("bait_hits")
        body = (json.dumps({"token": "BAIT-SECRET-TOKEN"}) if "token" in self.path
                else "SECRETBAIT\nami-id\ninstance credentials\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    global A
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--inject-auth")
    p.add_argument("--blob-redirect")
    p.add_argument("--manifest-redirect")
    p.add_argument("--manifest-file")
    p.add_argument("--realm")
    p.add_argument("--oversize", action="store_true")
    p.add_argument("--trickle", type=float)
    p.add_argument("--bait-host", default="127.0.0.2")
    p.add_argument("--port-file", required=True)
    p.add_argument("--stats")
    A = p.parse_args()
    bait = http.server.ThreadingHTTPServer((A.bait_host, 0), Bait)
    reg = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    reg.daemon_threads = bait.daemon_threads = True
    threading.Thread(target=bait.serve_forever, daemon=True).start()
    at = f"http://{A.bait_host}:{bait.server_address[1]}"
    for k in ("realm", "blob_redirect", "manifest_redirect"):
        if getattr(A, k):
            setattr(A, k, getattr(A, k).replace("{bait}", at))
    bump("requests", 0)
    with open(A.port_file + ".tmp", "w") as f:
        f.write(f"{reg.server_address[1]} {bait.server_address[1]}\n")
    os.replace(A.port_file + ".tmp", A.port_file)
    reg.serve_forever()


if __name__ == "__main__":
    main()
