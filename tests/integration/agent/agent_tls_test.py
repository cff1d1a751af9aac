#!/usr/bin/env python3
"""agent_tls_test.py: the daemon's log classifies a TLS failure with the control plane as
`drover check` does (agent/netfail.c, issue 19): a client certificate the control plane refuses
(another CA; expired), a server certificate from a CA the agent does not trust, an expired server
certificate, one that names another host. Each log line names the kind of failure and the fix,
never only the TLS library's words. Run for both transports (DROVER_AGENT_BIN). TAP output."""
import os
import shutil
import subprocess

from agentlib import CERTS, DROVER, TMP, Agent, ControlPlane, expect, main, test

CHECK_FOR = {}  # what `drover check` says for the same setup (the shared classification)


def sign(d, name, ca, ext, start, end):
    """A certificate for name signed by CERTS/ca with explicit validity (openssl ca: x509 -req
    has no start date in OpenSSL 3.0)."""
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{d}/{name}-key.pem", "-out", f"{d}/{name}.csr",
                    "-subj", f"/CN={name}"], check=True, capture_output=True)
    db = f"{d}/db-{name}"
    os.makedirs(db, exist_ok=True)
    open(f"{db}/index.txt", "w").close()
    with open(f"{db}/cnf", "w") as f:
        f.write(f"[ca]\ndefault_ca=c\n[c]\ndatabase={db}/index.txt\nnew_certs_dir={db}\n"
                f"serial={db}/serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=none\n"
                f"unique_subject=no\n[p]\ncommonName=supplied\n[x]\n{ext}\n")
    with open(f"{db}/serial", "w") as f:
        f.write("1000\n")
    subprocess.run(["openssl", "ca", "-batch", "-config", f"{db}/cnf", "-extensions", "x",
                    "-cert", f"{CERTS}/{ca}.pem", "-keyfile", f"{CERTS}/{ca}-key.pem",
                    "-startdate", start, "-enddate", end, "-in", f"{d}/{name}.csr",
                    "-out", f"{d}/{name}.pem", "-notext"], check=True, capture_output=True)


SRV_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
CLI_EXT = "extendedKeyUsage=clientAuth"
PAST = ("20200101000000Z", "20200201000000Z")
NOW = ("20240101000000Z", "20991231000000Z")


def server_dir(name, ext=SRV_EXT, validity=NOW):
    d = os.path.join(TMP, name)
    sign(d, "server", "ca", ext, *validity)
    shutil.copy(f"{CERTS}/ca.pem", d)
    return d


def failed_log(ag, cp):
    """The daemon's control_plane_unreachable lines once it failed twice."""
    ok = cp.wait(lambda: ag.logtext().count("control_plane_unreachable") >= 2, 15)
    expect(ok, "no control_plane_unreachable: " + ag.logtext()[-1500:])
    expect(not cp.state.nodes, "registered anyway")
    return [ln for ln in ag.logtext().splitlines() if "control_plane_unreachable" in ln]


def expect_kind(lines, kind, fix_words):
    line = lines[0]
    expect(f'problem="{kind}"' in line, f"want problem=\"{kind}\": {line}")
    expect("fix=" in line and all(w in line for w in fix_words), f"fix {fix_words}: {line}")
    expect(line.index("problem=") < line.index("error="), f"problem= first: {line}")


def check_says(cp_url, kind, ca=f"{CERTS}/ca.pem", cert="client"):
    """`drover check` against the same control plane names the same kind of failure."""
    r = subprocess.run([DROVER, "check", "--control-plane", cp_url, "--ca-file", ca,
                        "--cert", f"{CERTS}/{cert}.pem", "--key", f"{CERTS}/{cert}-key.pem",
                        "--work-dir", TMP, "--spool-dir", TMP, "--timeout", "10"],
                       capture_output=True, text=True, timeout=60)
    expect(f"{cp_url} {kind}" in r.stdout, f"drover check: want {kind!r}: {r.stdout}{r.stderr}")


@test
def client_certificate_from_another_ca_refused():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "tls-refused", cert="badclient")
    try:
        lines = failed_log(ag, cp)
        expect_kind(lines, "client certificate refused", ["clientAuth", "docs/operations.md"])
        check_says(cp.urls[0], "client certificate refused", cert="badclient")
    finally:
        ag.stop()
        cp.close()


@test
def expired_client_certificate_refused():
    d = os.path.join(TMP, "oldclient")
    sign(d, "old", "ca", CLI_EXT, *PAST)
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "tls-oldclient",
               extra=["--tls-cert", f"{d}/old.pem", "--tls-key", f"{d}/old-key.pem"])
    try:
        lines = failed_log(ag, cp)
        expect_kind(lines, "client certificate refused", ["not expired"])
        shutil.copy(f"{d}/old.pem", f"{CERTS}/old.pem")
        shutil.copy(f"{d}/old-key.pem", f"{CERTS}/old-key.pem")
        check_says(cp.urls[0], "client certificate refused", cert="old")
    finally:
        ag.stop()
        cp.close()


@test
def server_from_unknown_ca():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "tls-unknownca", extra=["--tls-ca", f"{CERTS}/other-ca.pem"])
    try:
        lines = failed_log(ag, cp)
        expect_kind(lines, "TLS certificate not trusted", ["tls.ca"])
        check_says(cp.urls[0], "TLS certificate not trusted", ca=f"{CERTS}/other-ca.pem")
    finally:
        ag.stop()
        cp.close()


@test
def expired_server_certificate():
    cp = ControlPlane(server_dir("expired", validity=PAST))
    ag = Agent(cp.urls, "tls-expired")
    try:
        lines = failed_log(ag, cp)
        expect_kind(lines, "TLS certificate expired or not yet valid", ["renew", "clock"])
        check_says(cp.urls[0], "TLS certificate expired or not yet valid")
    finally:
        ag.stop()
        cp.close()


@test
def server_certificate_names_another_host():
    ext = "subjectAltName=DNS:elsewhere.example,IP:10.9.9.9\nextendedKeyUsage=serverAuth"
    cp = ControlPlane(server_dir("othername", ext=ext))
    by_name = cp.urls[0].replace("127.0.0.1", "localhost")
    ag = Agent(cp.urls, "tls-name-ip")
    ag2 = Agent([by_name], "tls-name-dns")
    try:
        for a in (ag, ag2):
            lines = failed_log(a, cp)
            expect_kind(lines, "TLS certificate names another host", ["subjectAltName"])
        check_says(cp.urls[0], "TLS certificate names another host")
        check_says(by_name, "TLS certificate names another host")
    finally:
        ag.stop()
        ag2.stop()
        cp.close()


@test
def closed_port_is_unreachable():
    # not TLS, but the same words: a port nothing listens on
    from agentlib import free_port

    class Closed:
        urls = [f"https://127.0.0.1:{free_port()}"]
        state = type("S", (), {"nodes": {}})()

        def wait(self, cond, timeout):
            import time
            end = time.time() + timeout
            while time.time() < end:
                if cond():
                    return True
                time.sleep(0.1)
            return cond()

    cp = Closed()
    ag = Agent(cp.urls, "tls-closed")
    try:
        lines = failed_log(ag, cp)
        expect_kind(lines, "unreachable", ["firewalls"])
        check_says(cp.urls[0], "unreachable")
    finally:
        ag.stop()


if __name__ == "__main__":
    main()
