#!/usr/bin/env python3
"""control_plane.py: a strict double of drover's control plane (docs/protocol-control-plane.md).

Python 3 standard library only. mTLS: clients must present a certificate signed by the given CA.
Every request body is checked against docs/schemas/control-plane/ (400 malformed, naming the
field), and every answer it gives is asserted against them too. Each claim answer names a new
attempt (a1, a2, ...); events must carry the attempt of the job's current claim (else 404
unknown_job).
Rejects bad join tokens, malformed bodies, unknown protocol versions, unknown nodes and event
sequence gaps (a duplicate of an acknowledged seq is acknowledged again, idempotently). One
process may listen on several ports that share one state (for failover tests). Tests either import
it (ControlPlane) or run it standalone and drive it over a plain-HTTP control port:
  POST /ctl/queue {spec}   POST /ctl/cancel {"job": ID}   POST /ctl/drain
  POST /ctl/down {"port": i, "seconds": S}   POST /ctl/delay {"seconds": S}
  POST /ctl/fail {"count": N, "status": 503}   POST /ctl/ack-timeout {"seconds": S}
  POST /ctl/forget {"node": ID}   GET /ctl/state
Re-registration: a node registering with the machine_id and boot_id of a known node replaces it
(the old id answers 404 unknown_node from then on); the old node's jobs are re-keyed to the new id
when the new node's heartbeat lists them in `claimed`; until then their events get 404
unknown_job.
A claim counts as taken once acknowledged (the job's first event, or its id in a heartbeat's
`claimed`/`running`); unacknowledged claims are requeued after claim_ack_timeout, when their node
sends a draining heartbeat without them, deregisters or misses 3 heartbeats (lost), or on
POST /v1/jobs/ID/release.
"""
import argparse
import re
import select
import json
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import schema  # docs/schemas/control-plane: every body received is checked, every answer too

PROTOCOL = 1
EVENT_TYPES = {"started", "step_started", "step_finished", "artifact", "test_results",
               "finished", "outcome", "ssh_session", "cache", "upload", "log", "continuation"}
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # newer types are accepted (compatible)


class State:
    def __init__(self, token, heartbeat_ms):
        self.lock = threading.Condition()
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.nodes = {}          # node_id -> info
        self.queue = []          # job specs waiting
        self.jobs = {}           # job id -> {"node", "events": [...], "acked": n}
        self.cancel = set()
        self.drain = set()       # node ids (or "*")
        self.delay = 0.0
        self.fail = []           # statuses to answer next (non-ctl)
        self.requests = []       # (port index, path, status)
        self.rejections = []     # (reason, detail)
        self.heartbeats = []     # (node, time, body)
        self.deregistered = []
        self.down_until = {}     # port index -> time
        self.claim_ack_timeout = 60.0  # seconds before an unacknowledged claim is requeued
        self.requeued = []       # (job id, node, reason)
        self.released = []       # (job id, node, reason)
        self.on_claim_answer = None  # test hook: called (job id) right before a claim answer
        self.draining = set()    # nodes whose last heartbeat said draining
        self.path_delay = {}     # path -> seconds to hold such requests (test hook)
        self.handshakes = 0      # TLS connections accepted (keep-alive reuse keeps this low)
        self.override = {}       # (port index or None, path) -> [(status, body), ...] (test hook)
        self.hung = set()        # port indexes that accept and never answer (a hung replica)
        self.claim_now = False   # answer every claim 204 at once (test hook)
        self.rekeyed = []        # (job id, old node, new node)
        self.claims = []         # (node, time) of every claim request
        self.attempts = 0        # attempt ids issued (one per claim answer: a1, a2, ...)

    def take_override(self, index, path):
        for key in ((index, path), (None, path)):
            lst = self.override.get(key)
            if lst:
                return lst.pop(0)
        return None

    def requeue(self, jid, reason):
        """Put a claimed, unacknowledged job back at the front of the queue (lock held)."""
        job = self.jobs.pop(jid)
        self.queue.insert(0, job["spec"])
        self.requeued.append((jid, job["node"], reason))
        self.lock.notify_all()

    def requeue_unacked(self, node=None, keep=(), reason="timeout"):
        """Requeue the unacknowledged claims of node (None: any node past the ack timeout)."""
        now = time.time()
        lost_after = 3 * self.heartbeat_ms / 1000.0
        for jid, job in list(self.jobs.items()):
            if job["acked"] or job.get("ack"):
                continue
            if node is None:
                seen = self.nodes.get(job["node"], {}).get("seen", now)
                if now - seen >= lost_after:  # about 3 missed heartbeats: the node is lost
                    self.requeue(jid, "lost")
                    continue
            if node is None and now - job["claimed_at"] < self.claim_ack_timeout:
                continue
            if node is not None and (job["node"] != node or jid in keep):
                continue
            self.requeue(jid, reason)

    def record_reject(self, reason, detail=""):
        self.rejections.append((reason, detail))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drover-cp-double"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def st(self):
        return self.server.state

    ANSWERS = {"/v1/register": "register.answer", "/v1/heartbeat": "heartbeat.answer",
               "/v1/claim": "claim.answer", "/v1/deregister": "empty.answer"}

    def reply(self, status, obj=None, checked=True):
        if checked and obj is not None:  # the double's own answers keep to the schemas
            path = self.path.split("?")[0]
            if status == 409 and path.endswith("/events"):
                name = "events.conflict"
            elif status >= 400:
                name = "error"
            elif path.endswith("/events"):
                name = "events.answer"
            elif path.endswith("/release"):
                name = "empty.answer"
            else:
                name = self.ANSWERS.get(path)
            err = schema.check("control-plane", name, obj) if name else None
            assert err is None, f"the double answers against its schema: {err}"
        body = b"" if obj is None else json.dumps(obj).encode()
        with self.st.lock:
            self.st.requests.append((self.server.index, self.path, status))
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, reason, msg):
        with self.st.lock:
            self.st.record_reject(reason, msg)
        self.reply(status, {"error": msg, "code": reason})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def do_GET(self):
        self.error(405, "method", "use POST")

    def do_POST(self):
        st = self.st
        if self.server.is_down():
            self.close_connection = True
            self.connection.close()
            return
        doc = self.body()
        if st.delay:
            time.sleep(st.delay)
        if st.path_delay.get(self.path.split("?")[0]):
            time.sleep(st.path_delay[self.path.split("?")[0]])
        if self.server.index in st.hung:
            time.sleep(120)
            self.close_connection = True
            return
        with st.lock:
            fail = st.fail.pop(0) if st.fail else None
            ov = st.take_override(self.server.index, self.path.split("?")[0])
        if fail:
            return self.reply(fail, {"error": "injected failure"})
        if ov:  # a test's deliberately wrong answer
            return self.reply(ov[0], ov[1], checked=False)
        if doc is None:
            return self.error(400, "malformed", "body must be a JSON object")
        ver = self.headers.get("Drover-Protocol")
        if ver != str(PROTOCOL):
            return self.error(400, "version",
                              f"unsupported protocol version {ver}; this control plane speaks {PROTOCOL}")
        path = self.path.split("?")[0]
        if path == "/v1/register":
            return self.register(doc)
        node = doc.get("node_id")
        if not isinstance(node, str) or self.headers.get("Drover-Node") != node:
            return self.error(400, "malformed", "node_id missing or not matching Drover-Node")
        err = self.schema_error(path, doc)
        if err:
            return self.error(400, "malformed", err)
        with st.lock:
            known = node in st.nodes and not st.nodes[node].get("gone")
            if known and path == "/v1/heartbeat":
                st.nodes[node]["seen"] = time.time()
        if not known:
            return self.error(404, "unknown_node", f"unknown node {node}")
        if path == "/v1/heartbeat":
            return self.heartbeat(node, doc)
        if path == "/v1/claim":
            return self.claim(node, doc)
        if path == "/v1/deregister":
            with st.lock:
                st.nodes[node]["gone"] = True
                st.deregistered.append(node)
                st.requeue_unacked(node, reason="deregistered")
            return self.reply(200, {})
        if path.startswith("/v1/jobs/") and path.endswith("/release"):
            return self.release(node, path[len("/v1/jobs/"):-len("/release")], doc)
        if path.startswith("/v1/jobs/") and path.endswith("/events"):
            return self.events(node, path[len("/v1/jobs/"):-len("/events")], doc)
        return self.error(404, "path", f"no such endpoint {path}")

    REQUESTS = {"/v1/register": "register.request", "/v1/heartbeat": "heartbeat.request",
                "/v1/claim": "claim.request", "/v1/deregister": "deregister.request"}

    def schema_error(self, path, doc):
        name = self.REQUESTS.get(path)
        if path.startswith("/v1/jobs/") and path.endswith("/events"):
            name = "events.request"
        elif path.startswith("/v1/jobs/") and path.endswith("/release"):
            name = "release.request"
        err = schema.check("control-plane", name, doc) if name else None
        return f"{path.rsplit('/', 1)[-1]}: {err} (docs/schemas/control-plane/{name}.json)" \
            if err else None

    def register(self, doc):
        st = self.st
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {st.token}":
            return self.error(401, "token", "bad join token")
        if doc.get("protocol") != PROTOCOL:
            return self.error(400, "version",
                              f"unsupported protocol version {doc.get('protocol')}; this control plane speaks {PROTOCOL}")
        err = self.schema_error("/v1/register", doc)
        if err:
            return self.error(400, "malformed", err)
        node = "n-" + uuid.uuid4().hex[:12]
        with st.lock:
            for old, info in st.nodes.items():  # the same machine and boot registers again
                if info["machine_id"] == doc["machine_id"] and info["boot_id"] == doc["boot_id"]:
                    info["gone"] = True
                    info["replaced_by"] = node
            st.nodes[node] = dict(doc, registered_at=time.time(), seen=time.time(),
                                  port=self.server.index)
            st.lock.notify_all()
        self.reply(200, {"node_id": node, "heartbeat_interval_ms": st.heartbeat_ms,
                         "protocol": PROTOCOL})

    def heartbeat(self, node, doc):
        st = self.st
        if not isinstance(doc.get("running"), list) or not isinstance(doc.get("free_slots"), int) \
                or not isinstance(doc.get("draining"), bool):
            return self.error(400, "malformed", "heartbeat: running, free_slots, draining")
        with st.lock:
            st.heartbeats.append((node, time.time(), doc))
            cancel = [j for j in doc["running"] if j in st.cancel]
            drain = node in st.drain or "*" in st.drain
            held = doc.get("claimed", doc["running"])
            if not isinstance(held, list):
                return self.error(400, "malformed", "heartbeat: claimed must be a list")
            me = st.nodes[node]
            for jid in held:  # a job the node holds acknowledges its claim
                job = st.jobs.get(jid)
                if job is not None and job["node"] != node:
                    # re-registration: a job of an earlier node id of this machine and boot
                    old = st.nodes.get(job["node"], {})
                    if old.get("gone") and old.get("machine_id") == me["machine_id"] and \
                            old.get("boot_id") == me["boot_id"]:
                        st.rekeyed.append((jid, job["node"], node))
                        job["node"] = node
                if job is not None and job["node"] == node:
                    job["ack"] = True
            if doc["draining"]:
                # a draining node starts nothing more: what it does not run goes back, and its
                # long poll is answered at once
                st.draining.add(node)
                st.requeue_unacked(node, keep=set(held), reason="draining")
                st.lock.notify_all()
        self.reply(200, {"cancel": cancel, "drain": drain})

    def claim(self, node, doc):
        st = self.st
        wait = doc.get("wait")
        with st.lock:
            st.claims.append((node, time.time()))
        if isinstance(wait, int) and not 0 <= wait <= 30:
            return self.error(400, "malformed", f"claim: wait {wait} outside 0..30")
        if not isinstance(wait, int) or not isinstance(doc.get("free_slots"), int) or \
                not isinstance(doc.get("resource_classes"), list) or \
                not isinstance(doc.get("free_cpus"), (int, float)) or \
                not isinstance(doc.get("free_memory_mb"), int):
            return self.error(400, "malformed",
                              "claim: wait, free_slots, free_cpus, free_memory_mb, resource_classes")
        if doc["free_slots"] < 1:
            return self.error(400, "malformed", "claim with no free slot")
        deadline = time.time() + min(wait, 30)
        classes = doc["resource_classes"]
        with st.lock:
            while True:
                st.requeue_unacked()
                if node in st.draining or st.claim_now:
                    spec = None
                    break
                for i, spec in enumerate(st.queue):
                    rc = spec.get("executor", {}).get("resource_class")
                    res = spec.get("executor", {}).get("resources") or {}
                    fits = res.get("cpus", 0) <= doc.get("free_cpus", 0) and \
                        res.get("memory_mb", 0) <= doc.get("free_memory_mb", 0)
                    if fits and (not classes or rc is None or rc in classes):
                        st.queue.pop(i)
                        jid = spec["id"]["job"]
                        st.attempts += 1
                        st.jobs[jid] = {"node": node, "events": [], "acked": 0,
                                        "claimed_at": time.time(), "spec": spec,
                                        "attempt": f"a{st.attempts}"}
                        break
                else:
                    spec = None
                if spec is not None:
                    break
                left = deadline - time.time()
                if left <= 0 or self.server.is_down() or self.client_gone():
                    break
                st.lock.wait(min(left, 0.2))
        if self.server.is_down():
            self.close_connection = True
            self.connection.close()
            return
        if spec is None:
            return self.reply(204)
        hook = st.on_claim_answer
        if hook:
            hook(spec["id"]["job"])
        with st.lock:
            job = st.jobs.get(spec["id"]["job"])
            attempt = job["attempt"] if job else "a0"
        self.reply(200, {"job": spec, "attempt": attempt})

    def release(self, node, jid, doc):
        st = self.st
        if not isinstance(doc.get("reason"), str):
            return self.error(400, "malformed", "release: reason")
        with st.lock:
            job = st.jobs.get(jid)
            if job is None or job["node"] != node:
                return self.error(404, "unknown_job", f"job {jid} is not claimed by {node}")
            if job["acked"]:
                return self.error(409, "started", f"job {jid} has events: it cannot be released")
            st.released.append((jid, node, doc["reason"]))
            st.requeue(jid, "released")
        self.reply(200, {})

    def client_gone(self):
        # the agent gave up the long poll (drain): do not hand a job to a closed connection
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ssl.SSLError, ValueError):
            return True

    def events(self, node, jid, doc):
        st = self.st
        evs = doc.get("events")
        if not isinstance(evs, list) or not evs:
            return self.error(400, "malformed", "events: a non-empty list")
        with st.lock:
            job = st.jobs.get(jid)
            if job is None or job["node"] != node:
                return self.error(404, "unknown_job", f"job {jid} is not claimed by {node}")
            if doc.get("attempt") != job["attempt"]:  # events of an earlier run of the job
                st.record_reject("attempt", f"{jid}: {doc.get('attempt')} for {job['attempt']}")
                return self.error(404, "unknown_job",
                                  f"job {jid} attempt {doc.get('attempt')} is not the current "
                                  f"claim ({job['attempt']})")
            accepted = 0
            for ev in evs:
                if not isinstance(ev, dict) or not isinstance(ev.get("seq"), int) or \
                        not isinstance(ev.get("type"), str) or \
                        not EVENT_TYPE_RE.match(ev["type"]) or ev.get("job") not in (jid, None):
                    return self.error(400, "malformed", f"bad event {ev!r:.200}")
                seq = ev["seq"]
                if seq <= job["acked"]:
                    job.setdefault("duplicates", 0)
                    job["duplicates"] += 1
                    continue  # idempotent: already have it
                if seq != job["acked"] + 1:
                    st.record_reject("gap", f"{jid}: got {seq}, expected {job['acked'] + 1}")
                    self.reply(409, {"error": f"sequence gap: got {seq}, expected {job['acked'] + 1}",
                                     "expected": job["acked"] + 1})
                    return
                job["events"].append(ev)
                job["acked"] = seq
                accepted += 1
            acked = job["acked"]
            st.lock.notify_all()
        self.reply(200, {"acked": acked, "accepted": accepted})


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx, state, index, cp):
        self.ctx, self.state, self.index, self.cp = ctx, state, index, cp
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        with self.state.lock:  # a client that went away mid-answer: recorded, not printed
            self.state.record_reject("connection", str(sys.exc_info()[1]))

    def is_down(self):
        return self.state.down_until.get(self.index, 0) > time.time()

    def finish_request(self, request, client_address):
        if self.is_down():
            request.close()
            return
        try:
            request.settimeout(10)
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.state.lock:
                self.state.record_reject("tls", str(e))
            return
        with self.state.lock:
            self.state.handshakes += 1
        tls.settimeout(60)
        super().finish_request(tls, client_address)


class ControlPlane:
    """ports: list of ports (0 = any free). All share one State."""

    def __init__(self, certdir, token="join-secret", ports=(0,), heartbeat_ms=500):
        self.state = State(token, heartbeat_ms)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{certdir}/server.pem", f"{certdir}/server-key.pem")
        ctx.load_verify_locations(f"{certdir}/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.servers = [TLSServer(("127.0.0.1", p), ctx, self.state, i, self)
                        for i, p in enumerate(ports)]
        self.ports = [s.server_address[1] for s in self.servers]
        self.urls = [f"https://127.0.0.1:{p}" for p in self.ports]
        for s in self.servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self._closed = threading.Event()
        threading.Thread(target=self._ticker, daemon=True).start()

    def _ticker(self):
        while not self._closed.wait(0.2):
            with self.state.lock:
                self.state.requeue_unacked()

    def close(self):
        self._closed.set()
        for s in self.servers:
            s.shutdown()
            s.server_close()

    # ---- test controls ----
    def queue(self, spec):
        with self.state.lock:
            self.state.queue.append(spec)
            self.state.lock.notify_all()

    def cancel(self, jid):
        with self.state.lock:
            self.state.cancel.add(jid)

    def drain(self, node="*"):
        with self.state.lock:
            self.state.drain.add(node)

    def down(self, index, seconds):
        with self.state.lock:
            self.state.down_until[index] = time.time() + seconds
            self.state.lock.notify_all()

    def forget(self, node):
        """The control plane drops a node (declared lost): its id answers 404 unknown_node;
        its acknowledged jobs stay assigned to it until a re-registration re-keys them."""
        with self.state.lock:
            self.state.nodes[node]["gone"] = True

    def answer(self, path, status, body, port=None, count=1):
        """The next count requests to path (on port index, or any) get this answer."""
        with self.state.lock:
            self.state.override.setdefault((port, path), []).extend([(status, body)] * count)

    def fail_next(self, count, status=503):
        with self.state.lock:
            self.state.fail.extend([status] * count)

    def events(self, jid):
        with self.state.lock:
            j = self.state.jobs.get(jid)
            return list(j["events"]) if j else []

    def outcome(self, jid):
        for ev in self.events(jid):
            if ev.get("type") == "outcome":
                return ev
        return None

    def wait(self, cond, timeout=30):
        end = time.time() + timeout
        with self.state.lock:
            while True:
                v = cond()
                if v or time.time() >= end:
                    return v
                self.state.lock.wait(0.1)

    def snapshot(self):
        s = self.state
        with s.lock:
            return {"nodes": s.nodes, "queue": s.queue, "requests": s.requests,
                    "requeued": list(s.requeued), "released": list(s.released),
                    "rejections": s.rejections, "deregistered": s.deregistered,
                    "heartbeats": len(s.heartbeats), "rekeyed": list(s.rekeyed),
                    "jobs": {k: {"node": v["node"], "acked": v["acked"], "events": v["events"],
                                 "duplicates": v.get("duplicates", 0)} for k, v in s.jobs.items()}}


class CtlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, obj):
        body = json.dumps(obj, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ctl/state":
            return self._reply(200, self.server.cp.snapshot())
        self._reply(404, {"error": "no such path"})

    def do_POST(self):
        cp = self.server.cp
        n = int(self.headers.get("Content-Length") or 0)
        doc = json.loads(self.rfile.read(n) or b"{}")
        p = self.path
        if p == "/ctl/queue":
            cp.queue(doc)
        elif p == "/ctl/cancel":
            cp.cancel(doc["job"])
        elif p == "/ctl/drain":
            cp.drain(doc.get("node", "*"))
        elif p == "/ctl/down":
            cp.down(int(doc.get("port", 0)), float(doc["seconds"]))
        elif p == "/ctl/delay":
            cp.state.delay = float(doc["seconds"])
        elif p == "/ctl/forget":
            cp.forget(doc["node"])
        elif p == "/ctl/ack-timeout":
            cp.state.claim_ack_timeout = float(doc["seconds"])
        elif p == "/ctl/fail":
            cp.fail_next(int(doc.get("count", 1)), int(doc.get("status", 503)))
        else:
            return self._reply(404, {"error": "no such path"})
        self._reply(200, {})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--certs", required=True)
    ap.add_argument("--token", default="join-secret")
    ap.add_argument("--port", type=int, action="append")
    ap.add_argument("--ctl-port", type=int, default=0)
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--info", help="write {urls, ctl} as JSON here")
    a = ap.parse_args()
    cp = ControlPlane(a.certs, a.token, a.port or [0], a.heartbeat_ms)
    ctl = ThreadingHTTPServer(("127.0.0.1", a.ctl_port), CtlHandler)
    ctl.daemon_threads = True
    ctl.cp = cp
    info = {"urls": cp.urls, "ctl": f"http://127.0.0.1:{ctl.server_address[1]}"}
    if a.info:
        with open(a.info + ".tmp", "w") as f:
            json.dump(info, f)
        import os
        os.rename(a.info + ".tmp", a.info)
    print(json.dumps(info), flush=True)
    # signals: USR1 = first server down 10 s, USR2 = drain every node
    signal.signal(signal.SIGUSR1, lambda *_: cp.down(0, 10))
    signal.signal(signal.SIGUSR2, lambda *_: cp.drain())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ctl.serve_forever()


if __name__ == "__main__":
    main()
