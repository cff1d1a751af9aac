#!/usr/bin/env python3
"""registry_token_server.py: a minimal Docker registry token server (the `auth: token` side of
distribution) for the bearer-token tests. Standard library + `openssl dgst -sign` for RS256.

GET /token?service=S&scope=repository:NAME:pull,push  with HTTP basic auth USER:PASSWORD
  -> {"token": JWT, "access_token": JWT, "expires_in": 300}; wrong or missing credentials -> 401.
The JWT header carries the signing certificate (x5c), which the registry trusts through its
`rootcertbundle`. Every request is logged to stderr (path, user, granted scope).

  --listen 127.0.0.1:5445 --tls-cert server.pem --tls-key server.key
  --sign-key token.key --sign-cert token.pem --issuer I --user U --password P
"""
import argparse
import base64
import http.server
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cert_der_b64(pem_path):
    with open(pem_path) as f:
        pem = f.read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return "".join(body.split())


def make_handler(a):
    x5c = cert_der_b64(a.sign_cert)
    want = "Basic " + base64.b64encode(f"{a.user}:{a.password}".encode()).decode()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("token-server: " + (fmt % args) + "\n")

        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="drover-token"')
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urllib.parse.urlparse(self.path)
            if u.path != "/token":
                return self.reply(404, {"error": "not found"})
            if self.headers.get("Authorization") != want:
                return self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
            q = urllib.parse.parse_qs(u.query)
            access = []
            for scope in q.get("scope", []):
                parts = scope.split(":")
                if len(parts) >= 3 and parts[0] == "repository":
                    access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                                   "actions": parts[-1].split(",")})
            now = int(time.time())
            claims = {"iss": a.issuer, "sub": a.user, "aud": q.get("service", [""])[0],
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                      "access": access}
            head = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            signing_input = (b64url(json.dumps(head).encode()) + "." +
                             b64url(json.dumps(claims).encode())).encode()
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", a.sign_key],
                                 input=signing_input, stdout=subprocess.PIPE, check=True).stdout
            tok = signing_input.decode() + "." + b64url(sig)
            sys.stderr.write(f"token-server: granted {access}\n")
            self.reply(200, {"token": tok, "access_token": tok, "expires_in": 300})

    return H


def main():
    p = argparse.ArgumentParser()
    for o in ("listen", "tls-cert", "tls-key", "sign-key", "sign-cert", "issuer", "user",
              "password"):
        p.add_argument("--" + o, required=True)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), make_handler(a))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.tls_cert, a.tls_key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
