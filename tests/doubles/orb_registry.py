#!/usr/bin/env python3
"""A strict orb-registry double: the part of CircleCI's API v3 that `circleci orb source` and
`drover orb pull` use, Python 3 standard library only.

  GET /api/v3/orb/packages?filter[name]=NS/NAME            -> {"data": [orb], "page": {...}}
  GET /api/v3/orb/versions?filter[ref]=NS/NAME@VERSION     -> {"data": [version], "page": {...}}
      (VERSION exact, or "volatile": the highest)
  GET /api/v3/orb/versions?filter[orb_id]=ID[&page[cursor]=C] -> the orb's versions, two a page
  GET /api/v3/orb/versions/ID/source                       -> the source, text/plain

Orbs are served from DIR/NS/NAME@VERSION.yml (--orbs DIR). An unknown orb or version is an empty
list (as the registry answers), an unknown version id 404. The orb `broken/boom` answers 500 to
everything. Anything else (another method, path, query parameter, or a request without the
Accept header the API expects) is answered 400 and counted as a violation; GET /control/stats
returns {"requests": N, "violations": [...], "paths": [...]} as JSON.
Prints "PORT N" on stdout once listening.
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import sys
import threading
import urllib.parse

REF_RE = re.compile(r"^([a-z0-9][a-z0-9_-]*)/([a-z0-9][a-z0-9_-]*)@(.+)$")
NAME_RE = re.compile(r"^([a-z0-9][a-z0-9_-]*)/([a-z0-9][a-z0-9_-]*)$")
PAGE = 2


def vkey(v):
    return tuple(int(x) for x in v.split("."))


class Registry:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.requests = 0
        self.violations = []
        self.paths = []

    def versions(self, ns, name):
        d = os.path.join(self.root, ns)
        out = []
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith(name + "@") and f.endswith(".yml"):
                    out.append(f[len(name) + 1:-4])
        return sorted(out, key=vkey, reverse=True)

    @staticmethod
    def orb_id(ns, name):
        return "orb-" + hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:16]

    @staticmethod
    def version_id(ns, name, v):
        return "ver-" + hashlib.sha256(f"{ns}/{name}@{v}".encode()).hexdigest()[:16]

    def version_entity(self, ns, name, v):
        return {"id": self.version_id(ns, name, v),
                "attributes": {"version": v, "created_at": "2026-01-01T00:00:00Z"},
                "references": {"package": {"id": self.orb_id(ns, name),
                                           "attributes": {"name": f"{ns}/{name}"}}}}

    def find_version_id(self, vid):
        for ns in os.listdir(self.root):
            for f in os.listdir(os.path.join(self.root, ns)):
                if f.endswith(".yml") and "@" in f:
                    name, v = f[:-4].split("@", 1)
                    if self.version_id(ns, name, v) == vid:
                        return os.path.join(self.root, ns, f)
        return None

    def find_orb_id(self, oid):
        for ns in os.listdir(self.root):
            for f in os.listdir(os.path.join(self.root, ns)):
                if f.endswith(".yml") and "@" in f:
                    name = f.split("@", 1)[0]
                    if self.orb_id(ns, name) == oid:
                        return ns, name
        return None


def listing(data, nxt=None):
    return {"data": data, "page": {"next": nxt, "prev": None}}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="application/json"):
        raw = (json.dumps(body) if ctype == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def violation(self, why):
        with self.server.reg.lock:
            self.server.reg.violations.append(f"{self.command} {self.path}: {why}")
        self.send(400, {"message": why})

    def do_POST(self):
        self.violation("only GET is part of this API")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self):
        reg = self.server.reg
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/control/stats":
            with reg.lock:
                return self.send(200, {"requests": reg.requests, "violations": reg.violations,
                                       "paths": reg.paths})
        with reg.lock:
            reg.requests += 1
            reg.paths.append(self.path)
        if "boom" in urllib.parse.unquote(self.path):
            return self.send(500, {"message": "internal server error"})
        if self.headers.get("Accept") != "application/json":
            return self.violation("Accept: application/json expected")
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True, strict_parsing=False)
        if any(len(v) != 1 for v in q.values()):
            return self.violation("a query parameter given twice")
        q = {k: v[0] for k, v in q.items()}
        if u.path == "/api/v3/orb/packages":
            if set(q) != {"filter[name]"} or not NAME_RE.match(q["filter[name]"]):
                return self.violation(f"packages wants filter[name]=NS/NAME, got {q}")
            ns, name = NAME_RE.match(q["filter[name]"]).groups()
            if not reg.versions(ns, name):
                return self.send(200, listing([]))
            return self.send(200, listing([{"id": reg.orb_id(ns, name),
                                            "attributes": {"name": f"{ns}/{name}"}}]))
        if u.path == "/api/v3/orb/versions":
            if set(q) == {"filter[ref]"}:
                m = REF_RE.match(q["filter[ref]"])
                if not m:
                    return self.violation(f"filter[ref] is not NS/NAME@VERSION: {q}")
                ns, name, v = m.groups()
                have = reg.versions(ns, name)
                if v == "volatile":
                    v = have[0] if have else None
                if v not in have:
                    return self.send(200, listing([]))
                return self.send(200, listing([reg.version_entity(ns, name, v)]))
            if set(q) - {"page[cursor]"} == {"filter[orb_id]"}:
                found = reg.find_orb_id(q["filter[orb_id]"])
                if not found:
                    return self.send(200, listing([]))
                vs = reg.versions(*found)
                start = int(q.get("page[cursor]", "0") or "0")
                page = vs[start:start + PAGE]
                nxt = str(start + PAGE) if start + PAGE < len(vs) else None
                return self.send(200, listing([reg.version_entity(*found, v) for v in page], nxt))
            return self.violation(f"versions wants filter[ref] or filter[orb_id], got {q}")
        m = re.match(r"^/api/v3/orb/versions/([A-Za-z0-9-]+)/source$", u.path)
        if m and not q:
            path = reg.find_version_id(m.group(1))
            if not path:
                return self.send(404, {"message": "orb version not found"})
            with open(path) as f:
                return self.send(200, f.read(), "text/plain")
        return self.violation("unknown path")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orbs", required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.reg = Registry(a.orbs)
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
