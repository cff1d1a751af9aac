#!/usr/bin/env python3
"""operator_test.py: what an operator is given to connect builders (issue 19): certificates made
by packaging/drover-pki are accepted by the control plane and by both transports of the agent,
and packaging/cloud-init.yaml works as written — its write_files, with its REPLACE blocks filled
with drover-pki's output, rendered into /etc (a private mount namespace), make drover-agent
register with `--config /etc/drover/agent.yaml` alone. TAP output."""
import os
import re
import subprocess
import sys

SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration", "agent"))
from agentlib import DROVER, LEAN, TMP, ControlPlane, expect, main, test  # noqa: E402

PKI = os.path.join(SRC, "packaging", "drover-pki")
CA = os.path.join(TMP, "pki")


def run(*cmd, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, **kw)
    expect(r.returncode == 0, f"{cmd}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


run(PKI, "init", CA)
run(PKI, "server", CA, "localhost", "127.0.0.1", "drover.example.internal")


def start_agent(lean, name, cert, key, cp):
    cmd = [LEAN] if lean else [DROVER, "agent"]
    log = os.path.join(TMP, name + ".log")
    p = subprocess.Popen(cmd + ["--servers", cp.urls[0], "--tls-ca", f"{CA}/ca.pem",
                                "--tls-cert", cert, "--tls-key", key, "--join-token",
                                "join-secret", "--work-dir", os.path.join(TMP, name + ".work"),
                                "--name", name, "--metrics-listen", ""],
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    return p, log


@test
def pki_certificates_accepted():
    out = run(PKI, "agent", CA, "builder-1")
    cert, key = out.split()
    expect(oct(os.stat(key).st_mode & 0o777) == "0o600", "key mode")
    run("openssl", "verify", "-purpose", "sslclient", "-CAfile", f"{CA}/ca.pem", cert)
    show = run(PKI, "show", cert)
    for want in ("CN = builder-1", "TLS Web Client Authentication", "DNS:builder-1"):
        expect(want in show, f"{want!r} not in {show}")
    cp = ControlPlane(CA)  # CA/ca.pem, CA/server.pem, CA/server-key.pem
    procs = [start_agent(lean, f"pki-{lean}", cert, key, cp) for lean in (True, False)]
    try:
        ok = cp.wait(lambda: len(cp.state.nodes) == 2, 20)
        expect(ok, "not both registered: " + "".join(open(log).read()[-600:] for _, log in procs))
    finally:
        for p, _ in procs:
            p.kill()
            p.wait()
        cp.close()


@test
def pki_refuses_to_overwrite_a_ca():
    r = subprocess.run([PKI, "init", CA], capture_output=True, text=True)
    expect(r.returncode == 2 and "not overwriting" in r.stderr, r.stderr)


def write_files(path):
    """cloud-init's write_files of the example: [(path, permissions, content)], read with the
    standard library (the file keeps to `- path:`, `permissions:`, `content: |` or a quoted
    one-line content)."""
    lines = open(path).read().splitlines()
    files, i = [], 0
    while i < len(lines):
        m = re.match(r"^  - path: (\S+)$", lines[i])
        if not m:
            i += 1
            continue
        ent = {"path": m.group(1)}
        i += 1
        while i < len(lines) and lines[i].startswith("    "):
            kv = re.match(r'^    (\w+): (.*)$', lines[i])
            expect(kv, f"unexpected line {lines[i]!r}")
            k, v = kv.groups()
            i += 1
            if v == "|":
                body = []
                while i < len(lines) and (lines[i].startswith("      ") or not lines[i].strip()):
                    body.append(lines[i][6:])
                    i += 1
                ent[k] = "\n".join(body).rstrip("\n") + "\n"
            else:
                ent[k] = v.strip('"')
        files.append(ent)
    return files


@test
def cloud_init_works_as_written():
    ci = os.path.join(SRC, "packaging", "cloud-init.yaml")
    text = open(ci).read()
    expect(text.startswith("#cloud-config\n"), "first line")
    files = {f["path"]: f for f in write_files(ci)}
    cert, key = run(PKI, "agent", CA, "group-a").split()
    fill = {"/etc/drover/tls/ca.pem": open(f"{CA}/ca.pem").read(),
            "/etc/drover/tls/client.pem": open(cert).read(),
            "/etc/drover/tls/client-key.pem": open(key).read(),
            "/etc/drover/join-token": "join-secret"}
    replaced = [p for p, f in files.items() if "REPLACE" in f["content"]]
    expect(sorted(replaced) == sorted(fill), f"REPLACE blocks: {replaced}")
    expect(list(files)[-1] == "/etc/drover/join-token", "the token is not written last")
    for p in ("/etc/drover/tls/client-key.pem", "/etc/drover/join-token"):
        expect(files[p]["permissions"] == "0600", f"{p} mode {files[p]['permissions']}")
    stage = os.path.join(TMP, "cloud-root")
    for p, f in files.items():
        dst = stage + p
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w") as o:
            o.write(fill.get(p, f["content"]))
        os.chmod(dst, int(f["permissions"], 8))
    with open(os.path.join(stage, "hosts"), "w") as o:
        o.write("127.0.0.1 localhost drover.example.internal\n")
    cp = ControlPlane(CA)
    port = cp.urls[0].rsplit(":", 1)[1]
    log = os.path.join(TMP, "cloud-init.log")
    # /etc/drover and /etc/default as cloud-init leaves them, in a private mount namespace; only
    # the port differs (the double's); the host name resolves through the bound hosts file
    ov = os.path.join(TMP, "etc-overlay")
    os.makedirs(ov + "/u")
    os.makedirs(ov + "/w")
    # /etc as an overlay (this machine's /etc below, changes discarded): /etc/drover need not
    # exist here
    script = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={ov}/u,workdir={ov}/w /etc && "
              f"rm -rf /etc/drover && cp -a {stage}/etc/drover /etc/drover && "
              f"mount --bind {stage}/hosts /etc/hosts && "
              f"set -a && . {stage}/etc/default/drover-agent && set +a && "
              f'exec "$0" --config /etc/drover/agent.yaml --servers '
              f"https://drover.example.internal:{port} --work-dir {TMP}/cloud.work "
              f"--metrics-listen ''")
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", script, LEAN],
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        ok = cp.wait(lambda: cp.state.nodes, 20)
        expect(ok, "the cloud-init machine did not register: " + open(log).read()[-1500:])
    finally:
        p.kill()
        p.wait()
        cp.close()


if __name__ == "__main__":
    main()
