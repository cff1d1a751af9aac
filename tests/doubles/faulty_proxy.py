#!/usr/bin/env python3
"""faulty_proxy.py: an HTTP proxy that injects failures between drover and an S3 server.

Works as a reverse proxy (point the client's endpoint at it) or as a forward proxy (HTTP_PROXY;
requests with an absolute URI go to the host they name). Headers and bodies are passed through
verbatim, so SigV4 signatures stay valid.

  --upstream http://127.0.0.1:7480   where requests without an absolute URI go
  --faults 500,503,slowdown,reset,reset-body   kinds injected, in turn
  --mode first   fault the first time each distinct request line is seen, pass its retries
  --mode always  fault every request (to check that errors surface)
  --every N      in 'first' mode, fault only one distinct request in N
  --port-file F  write the listening port there once ready (port 0 = any free port)
Kinds: 500 / 503 (plain errors), slowdown (503 with <Code>SlowDown</Code>), reset (read the
request, then reset the connection without an answer), reset-body (send the answer's headers and
half its body, then reset). Standard library only. Counts go to stderr when it ends (SIGTERM).
"""
import argparse
import http.client
import http.server
import signal
import socket
import socketserver
import struct
import sys
import threading
import urllib.parse

LOCK = threading.Lock()
SEEN = set()
STATE = {"n": 0, "faults": 0, "requests": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _pick_fault(self):
        cfg = self.server.cfg
        with LOCK:
            STATE["requests"] += 1
            key = (self.command, self.path)
            if cfg.mode == "always":
                fault = True
            else:
                fault = key not in SEEN
                SEEN.add(key)
                if fault:
                    STATE["n"] += 1
                    fault = (STATE["n"] - 1) % cfg.every == 0
            if not fault:
                return None
            kind = cfg.faults[STATE["faults"] % len(cfg.faults)]
            STATE["faults"] += 1
            return kind

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = b""
        while len(body) < length:
            chunk = self.rfile.read(min(1 << 20, length - len(body)))
            if not chunk:
                return self._reset()
            body += chunk
        kind = self._pick_fault()
        if kind == "reset":
            return self._reset()
        if kind in ("500", "503", "slowdown"):
            code = 500 if kind == "500" else 503
            text = b"<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>injected</Message></Error>" % (
                b"SlowDown" if kind == "slowdown" else b"InternalError")
            self.send_response(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)
            return
        target = self.path
        up = self.server.cfg.upstream
        if target.startswith("http://"):
            u = urllib.parse.urlsplit(target)
            host, port = u.hostname, u.port or 80
            target = u.path + ("?" + u.query if u.query else "")
        else:
            host, port = up.hostname, up.port or 80
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection",)}
        try:
            conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read() if self.command != "HEAD" else b""
        except OSError:
            return self._reset()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            self.send_header(k, v)
        clen = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        if clen is not None:
            self.send_header("Content-Length", clen)
        self.end_headers()
        if kind == "reset-body" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._reset()
        if kind == "reset-body":  # nothing to cut: reset before the body
            return self._reset()
        if data:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", default="http://127.0.0.1:7480")
    ap.add_argument("--faults", default="500,503,slowdown,reset,reset-body")
    ap.add_argument("--mode", choices=["first", "always"], default="first")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--port-file")
    cfg = ap.parse_args()
    cfg.faults = [f for f in cfg.faults.split(",") if f]
    cfg.upstream = urllib.parse.urlsplit(cfg.upstream)
    srv = Server((cfg.listen, cfg.port), Handler)
    srv.cfg = cfg
    if cfg.port_file:
        with open(cfg.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        import os
        os.rename(cfg.port_file + ".tmp", cfg.port_file)

    def stop(*_):
        sys.stderr.write("faulty_proxy requests=%d faults=%d\n" % (STATE["requests"], STATE["faults"]))
        sys.stderr.flush()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    srv.serve_forever()


if __name__ == "__main__":
    main()
