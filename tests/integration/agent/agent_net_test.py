#!/usr/bin/env python3
"""agent_net_test.py: how the agent reaches the control plane: through http:// and https://
proxies (tests/doubles/connect_proxy.py, strict: CONNECT only, 407 without the right
Proxy-Authorization), NO_PROXY, host names resolved without blocking the daemon (a DNS server
that never answers: the request fails within the connect timeout naming the host, SIGTERM still
ends the agent at once). Run for `drover agent` and for the lean `drover-agent`
(DROVER_AGENT_BIN). TAP output."""
import os
import random
import signal
import socket
import threading
import time

from agentlib import AGENT_BIN, CERTS, TMP, Agent, ControlPlane, expect, main, test  # noqa: E402
from connect_proxy import ConnectProxy  # noqa: E402

LEAN = bool(AGENT_BIN)
NOPROXY = {"NO_PROXY": "", "no_proxy": "", "HTTPS_PROXY": "", "https_proxy": "",
           "ALL_PROXY": "", "all_proxy": "", "http_proxy": ""}


def proxy_env(url):
    return dict(NOPROXY, HTTPS_PROXY=url, https_proxy=url)


def sigterm_clean_exit(ag, cp, n):
    """SIGTERM: drain, deregister (through the same path), exit 0 — and under ASan nothing of the
    connections leaked (a report would change the exit status)."""
    ag.p.send_signal(signal.SIGTERM)
    rc = ag.wait(10)
    expect(rc == 0, f"exit {rc}: " + ag.logtext()[-1500:])
    expect(len(cp.state.deregistered) == n, f"not deregistered: {cp.state.deregistered}")


@test
def https_proxy_connect_and_no_proxy():
    # HTTPS_PROXY: the control plane is reached through an HTTP CONNECT tunnel (mTLS inside it);
    # NO_PROXY naming the server's address bypasses the proxy
    cp = ControlPlane(CERTS)
    px = ConnectProxy()
    ag = Agent(cp.urls, "proxied", env=proxy_env(px.url))
    ag2 = None
    try:
        expect(cp.wait(lambda: cp.state.heartbeats, 10), "not registered: " + ag.logtext()[-800:])
        port = cp.urls[0].rsplit(":", 1)[1]
        expect(f"127.0.0.1:{port}" in px.targets, px.targets)
        expect(not px.refused and px.auth_headers[0] is None, (px.refused, px.auth_headers))
        ag.stop()
        n = len(px.targets)
        env = dict(proxy_env(px.url), NO_PROXY="localhost,127.0.0.1", no_proxy="localhost,127.0.0.1")
        ag2 = Agent(cp.urls, "direct", env=env)
        expect(cp.wait(lambda: len(cp.state.nodes) >= 2, 10), "not registered: " + ag2.logtext()[-800:])
        expect(len(px.targets) == n, f"NO_PROXY ignored: {px.targets}")
    finally:
        ag.stop()
        if ag2:
            ag2.stop()
        px.close()
        cp.close()


PASSWORD = "s3cr:t@/pw%"  # every character that must be percent-encoded in a URL


@test
def proxy_credentials_sent_and_wrong_password_is_a_clear_error():
    # user:password@ of HTTPS_PROXY is percent-decoded and sent as Proxy-Authorization: Basic;
    # a wrong password gets 407 from the proxy: the agent says so (naming the proxy, never the
    # password) and does not register
    cp = ControlPlane(CERTS)
    px = ConnectProxy("drover", PASSWORD)
    good = Agent(cp.urls, "proxy-auth", env=proxy_env(px.url_with("drover", PASSWORD)))
    bad = None
    try:
        expect(cp.wait(lambda: cp.state.heartbeats, 10), "not registered: " + good.logtext()[-800:])
        expect(px.targets and not px.refused, (px.targets, px.refused))
        sigterm_clean_exit(good, cp, 1)
        bad = Agent(cp.urls, "proxy-badauth", env=proxy_env(px.url_with("drover", "wrong")))
        expect(cp.wait(lambda: any(s == 407 for s, _ in px.refused), 10), px.refused)
        deadline = time.time() + 5
        while time.time() < deadline and "407" not in bad.logtext():
            time.sleep(0.1)
        log = bad.logtext()
        expect("control_plane_unreachable" in log and "407" in log, log[-800:])
        if LEAN:
            expect(f"proxy http://127.0.0.1:{px.port} refused the tunnel" in log and
                   "did not accept the credentials in https_proxy" in log, log[-800:])
        expect(len(cp.state.nodes) == 1, "registered through a proxy that refused it")
        for secret in ("wrong", "s3cr", "ZHJvdmVy"):  # ZHJvdmVy: base64 of "drover"
            expect(secret not in log and secret not in good.logtext(), f"{secret!r} logged")
    finally:
        good.stop()
        if bad:
            bad.stop()
        px.close()
        cp.close()


@test
def https_proxy_tls_to_the_proxy_then_tls_inside():
    # HTTPS_PROXY=https://...: TLS with the proxy (verified with tls.proxy_ca), CONNECT inside
    # it, then mTLS with the control plane inside the tunnel; with the system store only, the
    # proxy's certificate is not trusted and the agent says so
    cp = ControlPlane(CERTS)
    px = ConnectProxy("drover", PASSWORD, f"{CERTS}/proxy.pem", f"{CERTS}/proxy-key.pem")
    env = proxy_env(px.url_with("drover", PASSWORD))
    ag = Agent(cp.urls, "tls-proxy", env=env, extra=["--tls-proxy-ca", f"{CERTS}/proxy-ca.pem"])
    ag2 = None
    try:
        expect(cp.wait(lambda: cp.state.heartbeats, 10), "not registered: " + ag.logtext()[-800:])
        expect(px.targets and px.handshakes >= 1 and not px.refused, (px.targets, px.refused))
        sigterm_clean_exit(ag, cp, 1)
        n = len(px.targets)
        ag2 = Agent(cp.urls, "tls-proxy-untrusted", env=env)
        deadline = time.time() + 8
        while time.time() < deadline and "control_plane_unreachable" not in ag2.logtext():
            time.sleep(0.1)
        log = ag2.logtext()
        expect("control_plane_unreachable" in log and "certificate" in log.lower(), log[-800:])
        if LEAN:
            expect(f"proxy https://127.0.0.1:{px.port} certificate" in log, log[-800:])
        expect(len(px.targets) == n and len(cp.state.nodes) == 1, "tunnel through untrusted proxy")
    finally:
        ag.stop()
        if ag2:
            ag2.stop()
        px.close()
        cp.close()


def in_mount_ns(src, dst):
    """A command prefix: run the daemon in a mount namespace where src is bound over dst."""
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    return unshare + ["sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"', src, dst]


@test
def host_name_is_resolved_and_every_address_tried():
    # a server given by name, resolved off the loop; its /etc/hosts lists ::1 first, where
    # nothing listens (refused), then 127.0.0.1, where the double does
    cp = ControlPlane(CERTS)
    hosts = os.path.join(TMP, "hosts-v6-first")
    with open(hosts, "w") as f:
        f.write("::1 localhost\n127.0.0.1 localhost\n")
    urls = [u.replace("127.0.0.1", "localhost") for u in cp.urls]
    ag = Agent(urls, "by-name", env=NOPROXY, wrap=in_mount_ns(hosts, "/etc/hosts"))
    try:
        expect(cp.wait(lambda: cp.state.heartbeats, 10), "not registered: " + ag.logtext()[-800:])
    finally:
        ag.stop()
        cp.close()


class SilentDNS:
    """A UDP socket on some 127.x.y.z:53 that records DNS queries and never answers."""

    def __init__(self):
        for _ in range(20):
            self.addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.s.bind((self.addr, 53))
                break
            except OSError:
                self.s.close()
        self.queries = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                d, _ = self.s.recvfrom(4096)
            except OSError:
                return
            labels, i = [], 12
            while i < len(d) and d[i]:
                labels.append(d[i + 1:i + 1 + d[i]].decode("latin-1"))
                i += 1 + d[i]
            self.queries.append(".".join(labels))

    def wrap(self):
        """Run the daemon in a mount namespace whose /etc/resolv.conf names only this socket,
        with the resolver's own timeout far above the agent's bound (30 s x 3 attempts)."""
        conf = os.path.join(TMP, f"resolv-{self.addr}.conf")
        with open(conf, "w") as f:
            f.write(f"nameserver {self.addr}\noptions timeout:30 attempts:3\n")
        return in_mount_ns(conf, "/etc/resolv.conf")

    def close(self):
        self.s.close()


@test
def dead_dns_fails_within_the_bound_and_sigterm_is_prompt():
    name = "cp.drover-dns.test"
    dns = SilentDNS()
    t0 = time.time()
    ag = Agent([f"https://{name}:4647"], "dead-dns", env=NOPROXY, wrap=dns.wrap())
    try:
        line = None
        while time.time() - t0 < 12 and not line:
            line = next((ln for ln in ag.logtext().splitlines()
                         if "control_plane_unreachable" in ln), None)
            time.sleep(0.05)
        took = time.time() - t0
        expect(line, "no failure within 12 s: " + ag.logtext()[-800:])
        expect(any(q == name for q in dns.queries), f"the resolver never asked: {dns.queries}")
        expect(took < 8, f"first failure after {took:.1f} s (bound: 5 s)")
        expect(name in line and "resolv" in line.lower(), line)
        if LEAN:
            expect(f"could not resolve {name}: no answer from the resolver within 5000 ms" in line,
                   line)
        time.sleep(1.5)  # the retry waits for the same lookup, which still hangs
        expect(ag.p.poll() is None, "agent died: " + ag.logtext()[-800:])
        if LEAN:  # one lookup per name at a time: the retries joined the first (A + AAAA)
            n = sum(q == name for q in dns.queries)
            expect(n <= 2, f"{n} queries: one lookup per retry")
        t1 = time.time()
        ag.p.send_signal(signal.SIGTERM)
        rc = ag.wait(5)
        expect(rc == 0, f"exit {rc}: " + ag.logtext()[-800:])
        expect(time.time() - t1 < 2, f"SIGTERM -> exit took {time.time() - t1:.1f} s")
    finally:
        ag.stop()
        dns.close()


if __name__ == "__main__":
    main()
