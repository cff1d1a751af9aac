#!/usr/bin/env python3
"""connect_proxy.py: a small strict HTTP CONNECT proxy double (Python 3 standard library only).

Accepts only `CONNECT host:port HTTP/1.1` with a matching Host header; anything else gets 405 or
400. With credentials set it requires `Proxy-Authorization: Basic base64(user:password)` and
answers 407 (with `Proxy-Authenticate`) otherwise; without, it refuses a Proxy-Authorization it
did not ask for (400: a client that sends credentials nobody configured leaks them). With
certfile/keyfile it is an https:// proxy: TLS with the client first, CONNECT inside it. It
records what it saw: `targets` (tunnels opened), `refused` ((status, reason)), `auth_headers`.
Tests import it (ConnectProxy); run standalone it serves until killed:
  connect_proxy.py [--user U --password P] [--cert F --key F]   (prints its URL)
"""
import argparse
import base64
import select
import socket
import ssl
import threading


class ConnectProxy:
    def __init__(self, user=None, password=None, certfile=None, keyfile=None):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        self.ctx = None
        if certfile:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(certfile, keyfile)
        scheme = "https" if certfile else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.targets = []
        self.refused = []
        self.auth_headers = []
        self.handshakes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def url_with(self, user, password):
        """The proxy URL with user info, percent-encoded."""
        from urllib.parse import quote
        scheme = "https" if self.ctx else "http"
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def serve(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def refuse(self, c, status, reason, extra=""):
        with self.lock:
            self.refused.append((status, reason))
        msg = (f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n"
               "Connection: close\r\n\r\n")
        try:
            c.sendall(msg.encode())
        except OSError:
            pass
        c.close()

    def handle(self, c):
        c.settimeout(10)
        if self.ctx:
            try:
                c = self.ctx.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):
                return c.close()
            with self.lock:
                self.handshakes += 1
        head = b""
        try:
            while b"\r\n\r\n" not in head:  # byte by byte: the tunnel's bytes are not ours
                b = c.recv(1)
                if not b or len(head) > 16384:
                    return c.close()
                head += b
        except (OSError, ssl.SSLError):
            return c.close()
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        hdrs = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if len(parts) != 3 or parts[0] != "CONNECT" or parts[2] != "HTTP/1.1":
            return self.refuse(c, 405, "Method Not Allowed")
        if hdrs.get("host") != parts[1] or ":" not in parts[1]:
            return self.refuse(c, 400, "Bad Request")
        got = hdrs.get("proxy-authorization")
        with self.lock:
            self.auth_headers.append(got)
        if self.auth is None and got is not None:
            return self.refuse(c, 400, "Unexpected Proxy-Authorization")
        if self.auth is not None and got != self.auth:
            return self.refuse(c, 407, "Proxy Authentication Required",
                               'Proxy-Authenticate: Basic realm="drover-test"\r\n')
        host, port = parts[1].rsplit(":", 1)
        try:
            u = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            return self.refuse(c, 502, "Bad Gateway")
        with self.lock:
            self.targets.append(parts[1])
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.pump(c, u)

    @staticmethod
    def pump(c, u):
        """Both directions in one thread (an SSL socket is not used from two threads)."""
        c.settimeout(None)
        u.settimeout(None)
        try:
            while True:
                ready = [c] if isinstance(c, ssl.SSLSocket) and c.pending() else []
                if not ready:
                    ready, _, _ = select.select([c, u], [], [], 30)
                    if not ready:
                        break
                for s in ready:
                    d = s.recv(65536)
                    if not d:
                        raise EOFError
                    (u if s is c else c).sendall(d)
        except (OSError, EOFError, ssl.SSLError):
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    px = ConnectProxy(a.user, a.password, a.cert, a.key)
    print(px.url, flush=True)
    threading.Event().wait()
