#!/usr/bin/env python3
"""slow_blob_proxy.py: a plain-http registry front that serves blobs slowly (a cold pull over a
bad link). Standard library only.

Every request goes to --upstream verbatim (auth headers and challenges included), except that the
body of a GET .../blobs/sha256:... larger than --min-size is trickled at --rate bytes/s the first
time each digest is asked for (--once) or every time. Before trickling it appends the digest to
--log (one line per slow download started), so a test knows a download is under way.

  --upstream http://127.0.0.1:5000 --rate 16384 --min-size 65536 --port-file F --log F [--once]
"""
import argparse
import os
import http.client
import http.server
import socketserver
import threading
import time
import urllib.parse

LOCK = threading.Lock()
SEEN = set()


def handler(a):
    up = urllib.parse.urlparse(a.upstream)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def do_HEAD(self):
            self.forward()

        def do_GET(self):
            self.forward()

        def forward(self):
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["Host"] = up.netloc
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            digest = self.path.rsplit("/blobs/", 1)[1] if "/blobs/" in self.path else None
            slow = (self.command == "GET" and resp.status == 200 and digest is not None
                    and len(body) >= a.min_size)
            with LOCK:
                if slow and a.once and digest in SEEN:
                    slow = False
                if slow:
                    SEEN.add(digest)
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            conn.close()
            if self.command == "HEAD":
                return
            if not slow:
                self.wfile.write(body)
                return
            if a.log:
                with LOCK, open(a.log, "a") as f:
                    f.write(digest + "\n")
            step = max(1, a.rate // 10)
            try:
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                self.close_connection = True  # the client went away (a cancel)

    return H


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--rate", type=int, default=16384)
    p.add_argument("--min-size", type=int, default=65536)
    p.add_argument("--once", action="store_true")
    p.add_argument("--port-file")
    p.add_argument("--log")
    a = p.parse_args()
    srv = Server(("127.0.0.1", 0), handler(a))
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        os.replace(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
