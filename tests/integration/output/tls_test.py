#!/usr/bin/env python3
"""tls_test.py: the output pipeline against an https:// processor double.
1. stream_test tls: a CA that did not sign the processor's certificate gets nothing through (close
   times out); the right CA (PEM text) delivers every byte.
2. `drover job` with the job spec's output.ca (PEM): the steps' output reaches the processor."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import expect, main, run_job, test  # noqa: E402

SRC = os.environ.get("DROVER_SRC", ".")
STREAM_TEST = sys.argv[1]
CERTS = tempfile.mkdtemp(prefix="output-tls-")


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=CERTS)


def make_certs():
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=drover test " + ca)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(CERTS, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")


make_certs()


@test
def stream_over_tls_only_with_the_right_ca():
    p = subprocess.run([STREAM_TEST, "tls", CERTS], capture_output=True, text=True, timeout=60)
    expect(p.returncode == 0, "stream_test tls: rc=%d\n%s%s" % (p.returncode, p.stdout, p.stderr))


@test
def job_spec_output_ca_reaches_an_https_processor():
    d = tempfile.mkdtemp(prefix="job-tls-")
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(SRC, "tests/doubles/output_processor.py"),
                          "--dir", d, "--token", "tok-tls", "--port-file", pf,
                          "--tls-cert", os.path.join(CERTS, "server.pem"),
                          "--tls-key", os.path.join(CERTS, "server.key")])
    try:
        for _ in range(300):
            if os.path.exists(pf):
                break
            time.sleep(0.02)
        port = int(open(pf).read())
        job = "tls-%d" % os.getpid()
        spec = {"version": 1, "id": {"job": job, "name": "tls", "build_num": 1},
                "executor": {"runtime": "sandbox", "kind": "machine"},
                "environment": [{"name": "API_TOKEN", "value": "tls-secret-value", "secret": True}],
                "output": {"url": "https://127.0.0.1:%d" % port, "token": "tok-tls",
                           "ca": open(os.path.join(CERTS, "ca.pem")).read()},
                "steps": [{"type": "run", "name": "hello",
                           "command": "echo over tls $API_TOKEN"}]}
        rc, out, err, ev = run_job(spec, env=dict(os.environ, TMPDIR=d))
        expect(rc == 0, "rc=%d %s" % (rc, err))
        path = os.path.join(d, job, "0.out")
        got = open(path, "rb").read() if os.path.exists(path) else b""
        expect(b"over tls ********" in got, got)
        expect(os.path.exists(os.path.join(d, job, "0.end.json")), "no end record")
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    shutil.rmtree(CERTS, ignore_errors=True)
    main()
