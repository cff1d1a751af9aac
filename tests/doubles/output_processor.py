#!/usr/bin/env python3
"""A strict output-processor double (docs/protocol-output.md), Python 3 standard library only.

Records what it accepts under DIR/<job>/ (DIR/<job>/attempt-<A>/ with a Drover-Attempt header): <step>.out (the bytes, in order), <step>.ts (one line per
frame: offset ns length), <step>.begin.json, <step>.end.json. The next expected offset of a step is
the size of its .out file, so a restarted double continues where the killed one stopped, like a
processor with durable storage.

Misbehaviour on demand (flags at start, or POST /control/<what>[?n=N] at run time):
  stall        stop reading and acknowledging batches until /control/resume
  crash        exit at once (also --crash-after-bytes N: exit after storing N bytes, unacknowledged)
  drop-acks    store the next N batches but close the connection instead of acknowledging
  drop-end-acks  store the next N end records but close the connection instead of answering
  --end-repeat-409  answer a repeated end record 409 {"next_offset": length} (the protocol says
               200; a processor written otherwise must not make the client loop)
  reset        close the next N connections abruptly before reading the request body
  stale-acks   answer the next N batches 409 with next_offset 0 (a reordered, stale ack)
  forget       ?job=J&step=N: lose everything of that step (begin, bytes, end), as a processor
               that lost its storage: its output gets 404 "step not begun" until begun again
GET /control/stats returns counters as JSON.
--sink: a fast sink for bench/output.sh — the same protocol and checks, offsets kept in memory,
nothing written to disk, write-to-arrival latency per frame in the stats (p50/p99/max ms).
"""
import argparse
import http.server
import json
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schema  # noqa: E402  docs/schemas/output: bodies received and answers sent are checked

VERSION = "1"
CT_BATCH = "application/vnd.drover.output.v1"
PATH_RE = re.compile(r"^/v1/jobs/([A-Za-z0-9._~%-]{1,200})/steps/([0-9]{1,4})(/output|/end)?$")
MAX_BODY = 64 << 20
ATTEMPT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        if args.stall:
            self.stalled.set()
        self.drop_acks = args.drop_acks
        self.drop_end_acks = args.drop_end_acks
        self.resets = args.reset
        self.stale = args.stale_acks
        self.stored = 0
        self.sink_next = {}
        self.latencies = []
        self.stats = {"batches": 0, "bytes": 0, "rejected": {}, "dropped_acks": 0, "resets": 0,
                      "stale_acks": 0, "duplicates": 0}

    def reject(self, code):
        self.stats["rejected"][str(code)] = self.stats["rejected"].get(str(code), 0) + 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drover-output-double/1"

    def setup(self):
        super().setup()
        try:  # headers and body go out in separate writes: no Nagle + delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *a):
        if self.server.st.args.verbose:
            sys.stderr.write("output_processor: " + (fmt % a) + "\n")

    # ---- helpers ----
    def reply(self, code, obj):
        if not self.path.startswith("/control/"):
            err = schema.check("output", "offset.answer" if code in (200, 409) else "error", obj)
            assert err is None, f"the double answers against its schema: {err}"
        body = (json.dumps(obj) + "\n").encode()
        if code >= 400 and code != 409:
            self.server.st.reject(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def abort(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is None or not n.isdigit() or int(n) > MAX_BODY:
            return None
        return self.rfile.read(int(n))

    def authorized(self):
        want = self.server.st.args.token
        got = self.headers.get("Authorization", "")
        return not want or got == "Bearer " + want

    def step_dir(self, job):
        """DIR/<job>/, or DIR/<job>/attempt-<A>/ for a request with Drover-Attempt: A (streams
        are (job, attempt, step): a job that runs again never meets its first run's streams)."""
        d = os.path.join(self.server.st.args.dir, urllib.parse.unquote(job).replace("/", "_"))
        attempt = self.headers.get("Drover-Attempt") if self.headers else None
        if attempt is not None and not self.path.startswith("/control/"):
            if not ATTEMPT_RE.match(attempt):
                raise ValueError("bad Drover-Attempt")
            d = os.path.join(d, "attempt-" + attempt)
        os.makedirs(d, exist_ok=True)
        return d

    @staticmethod
    def expected(d, step):
        try:
            return os.path.getsize(os.path.join(d, "%s.out" % step))
        except FileNotFoundError:
            return 0

    def check_common(self, ctype):
        attempt = self.headers.get("Drover-Attempt")
        if attempt is not None and not ATTEMPT_RE.match(attempt):
            self.read_body()
            self.reply(400, {"error": "Drover-Attempt: want 1..64 of A-Z a-z 0-9 . _ -"})
            return False
        if not self.authorized():
            self.read_body()
            self.reply(401, {"error": "bad or missing bearer token"})
            return False
        if self.headers.get("Drover-Output-Version", VERSION) != VERSION or \
                self.headers.get("Content-Type", "") != ctype:
            self.read_body()
            self.reply(415, {"error": "unsupported version or content type",
                             "supported": [CT_BATCH]})
            return False
        return True

    # ---- control ----
    def control(self, what, q):
        st = self.server.st
        n = int(q.get("n", ["1"])[0])
        if what == "stats":
            out = dict(st.stats)
            lat = sorted(st.latencies)
            if lat:
                out["latency_ms"] = {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
                                     "max": lat[-1], "frames": len(lat)}
            return self.reply(200, out)
        self.read_body()
        if what == "stall":
            st.stalled.set()
        elif what == "resume":
            st.stalled.clear()
        elif what == "crash":
            os._exit(3)
        elif what == "drop-acks":
            st.drop_acks = n
        elif what == "reset":
            st.resets = n
        elif what == "stale-acks":
            st.stale = n
        elif what == "forget":
            d = self.step_dir(q["job"][0])
            step = q["step"][0]
            with st.lock:
                for suffix in (".begin.json", ".out", ".ts", ".end.json"):
                    try:
                        os.unlink(os.path.join(d, step + suffix))
                    except FileNotFoundError:
                        pass
        else:
            return self.reply(404, {"error": "unknown control " + what})
        self.reply(200, {"ok": True})

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path.startswith("/control/"):
            return self.control(u.path[9:], urllib.parse.parse_qs(u.query))
        m = PATH_RE.match(u.path)
        if not m or m.group(3) != "/output":
            return self.reply(404, {"error": "no such resource"})
        if not self.authorized():
            return self.reply(401, {"error": "bad or missing bearer token"})
        d = self.step_dir(m.group(1))
        self.reply(200, {"next_offset": self.expected(d, m.group(2))})

    def do_PUT(self):
        m = PATH_RE.match(urllib.parse.urlparse(self.path).path)
        if not m or m.group(3):
            self.read_body()
            return self.reply(404, {"error": "no such resource"})
        if not self.check_common("application/json"):
            return
        try:
            meta = json.loads(self.read_body() or b"")
        except ValueError:
            meta = None
        err = schema.check("output", "begin.request", meta)
        if err:
            return self.reply(400, {"error": "begin: %s (docs/schemas/output/begin.request.json)"
                                    % err})
        d = self.step_dir(m.group(1))
        with self.server.st.lock:
            with open(os.path.join(d, "%s.begin.json" % m.group(2)), "w") as f:
                json.dump(meta, f)
            self.reply(200, {"next_offset": self.expected(d, m.group(2))})

    def do_POST(self):
        st = self.server.st
        u = urllib.parse.urlparse(self.path)
        if u.path.startswith("/control/"):
            return self.control(u.path[9:], urllib.parse.parse_qs(u.query))
        m = PATH_RE.match(u.path)
        if not m or not m.group(3):
            self.read_body()
            return self.reply(404, {"error": "no such resource"})
        with st.lock:
            if st.resets > 0:
                st.resets -= 1
                st.stats["resets"] += 1
                return self.abort()
        while st.stalled.is_set():  # stop reading: the client's request hangs
            time.sleep(0.05)
        if m.group(3) == "/end":
            return self.end(m)
        if not self.check_common(CT_BATCH):
            return
        off = self.headers.get("Drover-Offset", "")
        body = self.read_body()
        if body is None or not off.isdigit():
            return self.reply(400, {"error": "want Content-Length and Drover-Offset"})
        frames, pos = [], 0
        while pos < len(body):
            if len(body) - pos < 12:
                return self.reply(400, {"error": "truncated frame header"})
            ns, ln = struct.unpack(">QI", body[pos:pos + 12])
            if ln == 0 or len(body) - pos - 12 < ln:
                return self.reply(400, {"error": "bad frame length"})
            frames.append((ns, body[pos + 12:pos + 12 + ln]))
            pos += 12 + ln
        if not frames:
            return self.reply(400, {"error": "empty batch"})
        off = int(off)
        if st.args.sink:
            return self.sink(m, off, frames)
        d = self.step_dir(m.group(1))
        step = m.group(2)
        with st.lock:
            if not os.path.exists(os.path.join(d, "%s.begin.json" % step)):
                return self.reply(404, {"error": "step not begun"})
            if os.path.exists(os.path.join(d, "%s.end.json" % step)):
                return self.reply(409, {"error": "step already ended",
                                        "next_offset": self.expected(d, step)})
            exp = self.expected(d, step)
            if st.stale > 0:
                st.stale -= 1
                st.stats["stale_acks"] += 1
                return self.reply(409, {"error": "stale", "next_offset": 0})
            if off != exp:
                if off < exp:
                    st.stats["duplicates"] += 1
                return self.reply(409, {"error": "offset %d, expected %d" % (off, exp),
                                        "next_offset": exp})
            data = b"".join(f[1] for f in frames)
            fd = os.open(os.path.join(d, "%s.out" % step), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            with open(os.path.join(d, "%s.ts" % step), "a") as f:
                o = off
                for ns, b in frames:
                    f.write("%d %d %d\n" % (o, ns, len(b)))
                    o += len(b)
            st.stats["batches"] += 1
            st.stats["bytes"] += len(data)
            st.stored += len(data)
            if st.args.crash_after_bytes and st.stored >= st.args.crash_after_bytes:
                os._exit(3)
            if st.drop_acks > 0:
                st.drop_acks -= 1
                st.stats["dropped_acks"] += 1
                return self.abort()
            self.reply(200, {"next_offset": off + len(data)})

    def sink(self, m, off, frames):
        st = self.server.st
        key = (m.group(1), m.group(2))
        now = time.time_ns()
        with st.lock:
            exp = st.sink_next.get(key, 0)
            if off != exp:
                return self.reply(409, {"error": "offset %d, expected %d" % (off, exp),
                                        "next_offset": exp})
            n = sum(len(f[1]) for f in frames)
            st.sink_next[key] = exp + n
            st.stats["batches"] += 1
            st.stats["bytes"] += n
            st.latencies.extend((now - ns) / 1e6 for ns, _ in frames)
        self.reply(200, {"next_offset": off + n})

    def end(self, m):
        if not self.check_common("application/json"):
            return
        try:
            meta = json.loads(self.read_body() or b"")
        except ValueError:
            meta = None
        err = schema.check("output", "end.request", meta)
        if err:
            return self.reply(400, {"error": "end: %s (docs/schemas/output/end.request.json)"
                                    % err})
        length = meta["end"]["length"]
        d = self.step_dir(m.group(1))
        step = m.group(2)
        with self.server.st.lock:
            exp = self.server.st.sink_next.get((m.group(1), step), 0) \
                if self.server.st.args.sink else self.expected(d, step)
            if length != exp:
                return self.reply(409, {"error": "end at %d, have %d" % (length, exp),
                                        "next_offset": exp})
            st = self.server.st
            st.stats["ends"] = st.stats.get("ends", 0) + 1
            end_path = os.path.join(d, "%s.end.json" % step)
            if st.args.end_repeat_409 and os.path.exists(end_path):
                return self.reply(409, {"error": "step already ended", "next_offset": exp})
            with open(end_path, "w") as f:
                json.dump(meta, f)
            if st.drop_end_acks > 0:
                st.drop_end_acks -= 1
                return self.abort()
            self.reply(200, {"next_offset": exp})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--dir", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--stall", action="store_true")
    p.add_argument("--drop-acks", type=int, default=0)
    p.add_argument("--drop-end-acks", type=int, default=0)
    p.add_argument("--end-repeat-409", action="store_true")
    p.add_argument("--reset", type=int, default=0)
    p.add_argument("--stale-acks", type=int, default=0)
    p.add_argument("--crash-after-bytes", type=int, default=0)
    p.add_argument("--sink", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.st = State(args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
