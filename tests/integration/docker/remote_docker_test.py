#!/usr/bin/env python3
"""remote_docker_test.py: setup_remote_docker in sandbox jobs against the real dockerd peer (TLS on
127.0.0.1:2376) with Debian's real docker CLI inside the job. The job gets its own API endpoint (a
unix socket served by drover's proxy), never the engine's key: it runs containers, builds and
pulls, but it cannot see or enter another job's container, cannot make a container that reaches
the engine host, finds no key material, and leaves nothing behind. Fails (never skips) when a peer
is not up.

Each job also starts the TCP relays the old design needed (the engine listens on the host's
loopback only), so that a job handed the engine's key and a tcp:// DOCKER_HOST would really reach
the engine: these tests then fail for the right reason on a drover that does that."""
import json
import os
import re
import subprocess
import sys
import tempfile
from urllib.parse import quote

from dockerlib import (DK, IMAGE, IN_JOB_RELAY, PEM, api, envfile, expect, main, run, run_job,
                       tcp_relay, test)

RG = envfile("registry.env")
PID = os.getpid()
# the job pulls its image from the registry with its own credentials (what it did not pull or
# build itself it cannot run on a shared engine)
REGIMG = f"{RG['REGISTRY_ADDR']}/drover/rd-busybox:{PID}"
RELAY_PORT = tcp_relay(("0.0.0.0", 0), ("127.0.0.1", 2376))
NJOBS = [0]


def need(cond, text, what):
    """expect, naming what failed after the output (the TAP log shows the end)."""
    expect(cond, f"{text}\n--> not true: {what}")


def said(out, line):
    """Did a step print line (the step headers echo the commands, so not a substring)?"""
    return line in out.splitlines()


def escapes(out):
    return [x for x in out.splitlines() if x.startswith("ESCAPE")]


def push_image():
    cfg = tempfile.mkdtemp(prefix="drover-docker-cli-")
    cli = ["docker", "--config", cfg, "-H", f"unix://{DK['DOCKER_SOCK']}"]
    subprocess.run(cli + ["login", "-u", RG["REGISTRY_USER"], "--password-stdin",
                          RG["REGISTRY_ADDR"]],
                   input=RG["REGISTRY_PASSWORD"], text=True, check=True, capture_output=True)
    subprocess.run(cli + ["tag", IMAGE, REGIMG], check=True, capture_output=True)
    subprocess.run(cli + ["push", REGIMG], check=True, capture_output=True)
    subprocess.run(cli + ["rmi", REGIMG], check=True, capture_output=True)


push_image()


def job(*steps, timeout=120):
    """A machine sandbox job: setup_remote_docker, the relay, docker login, then steps."""
    NJOBS[0] += 1
    relay = IN_JOB_RELAY.replace("PORT", str(RELAY_PORT))
    s = {"version": 1,
         "id": {"job": f"rd{PID}-{NJOBS[0]}", "name": "remote-docker-test", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "machine", "network": "private",
                      "resources": {"memory_mb": 1024},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "steps": [{"type": "setup_remote_docker"},
                   run(f"python3 -c '{relay}'", background=True, name="relay"),
                   run("for i in $(seq 50); do docker version >/dev/null 2>&1 && break; "
                       "sleep 0.2; done; echo \"$PW\" | docker login -u \"$U\" --password-stdin "
                       f"{RG['REGISTRY_ADDR']}",
                       environment=[{"name": "PW", "value": RG["REGISTRY_PASSWORD"], "secret": True},
                                    {"name": "U", "value": RG["REGISTRY_USER"]}]),
                   *steps]}
    return run_job(s, timeout=timeout)


def labelled_mine(kind):
    f = quote(json.dumps({"label": ["drover.managed=true"]}))
    path = {"containers": "/containers/json?all=1&filters=", "networks": "/networks?filters=",
            "volumes": "/volumes?filters=", "images": "/images/json?filters="}[kind] + f
    _, got = api("GET", path)
    if kind == "volumes":
        got = got["Volumes"] or []
    return [x for x in got if (x.get("Labels") or {}).get("drover.job", "").startswith(f"rd{PID}-")]


def api_json(method, path, body):
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=DK["DOCKER_CA"])
    ctx.load_cert_chain(DK["DOCKER_CERT"], DK["DOCKER_KEY"])
    c = http.client.HTTPSConnection("127.0.0.1", 2376, context=ctx, timeout=10)
    c.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    expect(r.status < 300, f"{method} {path}: {r.status} {data[:300]}")
    return json.loads(data) if data else None


@test
def a_job_runs_containers_through_its_own_endpoint_with_no_key_material():
    _, version = api("GET", "/version")
    rc, out, err = job(
        run("echo \"H=$DOCKER_HOST\"; docker version --format 'server={{.Server.Version}}'"),
        run(f"docker run --rm {REGIMG} echo hi-from-remote-$((40 + 2))"),
        run("ls -A ~/.drover-remote-docker; env | grep -c -e DOCKER_CERT_PATH -e DOCKER_TLS || true; "
            "found=$(grep -rIl --exclude='.drover-step-*' -e 'PRIVATE KEY' -e 'BEGIN CERTIFICATE' ~ /tmp || true; "
            "env | grep -e 'PRIVATE KEY' -e 'BEGIN CERT' || true); echo \"keyfiles=[$found]\""))
    need(rc == 0, f"rc={rc}\n{out}\n{err}", "rc == 0")
    need(said(out, "keyfiles=[]"), out, "'keyfiles=[]' in out")
    need("H=unix://" in out and "/.drover-remote-docker/docker.sock" in out, out, "'H=unix://' in out and '/.drover-remote-docker/docker.sock' in out")
    need(f"server={version['Version']}" in out, out, "f'server={version['Version']}' in out")
    need(said(out, "hi-from-remote-42"), out, "'hi-from-remote-42' in out")
    need("key.pem" not in out and "cert.pem" not in out, out, "'key.pem' not in out and 'cert.pem' not in out")
    key_body = PEM["key"].splitlines()[1]
    expect(key_body not in out + err, "the client key appeared in the output")


@test
def a_job_cannot_see_or_enter_another_jobs_container():
    name = f"drover-foreign-{PID}"
    secret = f"foreign-secret-{PID}"
    body = {"Image": IMAGE, "Cmd": ["sleep", "300"], "Env": [f"FOREIGN_SECRET={secret}"],
            "Labels": {"drover.managed": "true", "drover.job": f"other{PID}.0.x"}}
    cid = api_json("POST", f"/containers/create?name={name}", body)["Id"]
    try:
        api("POST", f"/containers/{cid}/start")
        attempts = [("inspect", f"docker inspect {name}"),
                    ("inspect-id", f"docker inspect {cid[:12]}"),
                    ("exec", f"docker exec {name} env"),
                    ("exec-id", f"docker exec {cid[:12]} env"),
                    ("logs", f"docker logs {name}"),
                    ("cp", f"docker cp {name}:/etc/passwd /tmp/stolen"),
                    ("top", f"docker top {name}"),
                    ("stop", f"docker stop -t 1 {name}"),
                    ("kill", f"docker kill {name}")]
        script = "; ".join(f"if {cmd}; then echo ESCAPE-{what}; else echo REFUSED-{what}; fi"
                           for what, cmd in attempts)
        rc, out, err = job(
            run(f"docker run -d --name mine-{PID} {REGIMG} sleep 60 && "
                f"docker exec mine-{PID} echo own-exec-ok"),
            run("docker ps -a --format 'name={{.Names}}'; echo ps-done"),
            run(script))
        need(rc == 0, f"rc={rc}\n{out}\n{err}", "rc == 0")
        need(said(out, "own-exec-ok") and said(out, f"name=mine-{PID}"), out, "'own-exec-ok' in out and f'name=mine-{PID}' in out")
        expect(f"name={name}" not in out, f"another job's container was listed:\n{out}")
        need(not escapes(out), out, f"no escape: {escapes(out)}")
        need(all(said(out, f"REFUSED-{w}") for w, _ in attempts), out, "all(f'REFUSED-{w}' in out for w, _ in attempts)")
        expect(secret not in out + err, "another job's secret environment leaked")
        _, st = api("GET", f"/containers/{cid}/json")
        expect(st["State"]["Running"], "the other job's container was stopped")
    finally:
        api("DELETE", f"/containers/{cid}?force=1")


@test
def a_job_cannot_make_a_container_that_reaches_the_engine_host():
    opts = ["--privileged", "-v /:/host", "--mount type=bind,src=/,dst=/host", "--pid host",
            "--network host", "--ipc host", "--uts host", "--userns host", "--cgroupns host",
            "--device /dev/null", "--cap-add SYS_ADMIN", "--security-opt seccomp=unconfined",
            "--security-opt apparmor=unconfined", "--security-opt systempaths=unconfined",
            "--sysctl net.ipv4.ip_forward=1", "--log-driver syslog"]
    # any container that runs is an escape; the ones with the host's / print its shadow file
    script = "; ".join(f"if docker run --rm {o} {REGIMG} sh -c 'head -1 /host/etc/shadow; true'; then "
                       f"echo 'ESCAPE {o}'; else echo 'REFUSED {o}'; fi" for o in opts)
    rc, out, err = job(
        run(f"docker pull -q {REGIMG}"),
        # a volume whose driver options bind-mount the engine host's /
        run("docker volume create --opt type=none --opt device=/ --opt o=bind hostroot && "
            "echo ESCAPE-volume || echo REFUSED-volume"),
        run(script),
        run(f"docker run --rm {REGIMG} echo control-ok"))
    need(rc == 0, f"rc={rc}\n{out}\n{err}", "rc == 0")
    need(said(out, "control-ok"), out, "'control-ok' in out")
    need(not escapes(out), out, f"no escape: {escapes(out)}")
    need(said(out, "REFUSED-volume") and all(said(out, f"REFUSED {o}") for o in opts), out, "'REFUSED-volume' in out and all(f'REFUSED {o}' in out for o in opts)")
    need("not allowed on a shared engine" in out, out, "'not allowed on a shared engine' in out")
    shadow = [x for x in out.splitlines() if re.match(r"root:[^:]*:\d*:", x)]
    expect(not shadow, f"the engine host's /etc/shadow was read: {shadow}")


RAW_TRICKS = r"""
import json, os, re, socket
S = os.environ["DOCKER_HOST"][len("unix://"):]
IMG = "REGIMG"


def req(raw):
    s = socket.socket(socket.AF_UNIX)
    s.connect(S)
    s.sendall(raw)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out.decode(errors="replace")
        out += d


def post(path, body):
    b = json.dumps(body).encode()
    return req(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % (path.encode(), len(b)) + b)


bind = {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}
for name, body in [
        ("mount-two-cases", {"Image": IMG, "HostConfig": {"Mounts": [
            {"Type": "volume", "type": "bind", "Source": "/", "Target": "/host"}]}}),
        ("binds-lower", {"Image": IMG, "HostConfig": {"binds": ["/:/host"]}}),
        ("privileged-lower", {"Image": IMG, "hostconfig": {"privileged": True}}),
        ("driverconfig-lower", {"Image": IMG, "HostConfig": {"Mounts": [
            {"Type": "volume", "Source": "v1", "Target": "/host",
             "volumeoptions": {"driverconfig": bind}}]}})]:
    print("trick", name, post("/v1.41/containers/create", body).split("\r\n")[0])
bad = json.dumps({"Image": IMG, "HostConfig": {"Privileged": True}}).encode()
second = (b"POST /v1.41/containers/create?name=smuggled-PID HTTP/1.1\r\nHost: x\r\n"
          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(bad) + bad)
# kept alive: the second request behind an allowed one is judged like the first (and refused)
both = req(b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n" + second)
# (an answer's body has no line end: the next status line follows it on the same line)
status = lambda text: " ".join(re.findall(r"HTTP/1\.1 (\d{3}) ", text))
print("trick pipelined answers", status(both))
# three requests on one connection, the last refused: the connection carries them all
ka = req(b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
         b"HEAD /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
         b"GET /v1.41/version HTTP/1.1\r\nHost: x\r\n\r\n"
         b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("trick keepalive answers", status(ka), "ApiVersion" in ka)
print("trick cl-te", req(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 5"
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").split("\r\n")[0])
print("trick encoded", req(b"GET /v1.41/containers/%2e%2e/json HTTP/1.1\r\nHost: x\r\n\r\n")
      .split("\r\n")[0])
"""


@test
def raw_api_tricks_are_refused():
    """What the CLI never sends: field names in other cases (the engine reads them), a second
    request behind an allowed one, Content-Length with chunked, escaped paths."""
    script = RAW_TRICKS.replace("REGIMG", REGIMG).replace("PID", str(PID))
    rc, out, err = job(run(f"docker pull -q {REGIMG}"),
                       run(f"cat > /tmp/tricks.py <<'EOF'\n{script}\nEOF\npython3 /tmp/tricks.py"))
    need(rc == 0, f"rc={rc}\n{out}\n{err}", "rc == 0")
    for name, status in [("mount-two-cases", 400), ("binds-lower", 403), ("privileged-lower", 403),
                         ("driverconfig-lower", 403)]:
        need(said(out, f"trick {name} HTTP/1.1 {status} " + ("Forbidden" if status == 403 else "Error")),
             out, f"{name} answered {status}")
    need(said(out, "trick pipelined answers 200 403"), out,
         "the second request on a kept-alive connection judged (and refused) like the first")
    need(said(out, "trick keepalive answers 200 200 200 200 True"), out,
         "four requests on one kept-alive connection")
    need(said(out, "trick cl-te HTTP/1.1 400 Error"), out, "Content-Length with chunked: 400")
    need(said(out, "trick encoded HTTP/1.1 400 Error"), out, "escaped path: 400")
    status, _ = api("GET", f"/containers/smuggled-{PID}/json")
    expect(status == 404, "the smuggled privileged container exists")


@test
def everything_a_job_made_on_the_engine_is_gone_after_it():
    rc, out, err = job(
        run(f"docker run -d --name keep-{PID} {REGIMG} sleep 300"),
        run(f"docker network create net-{PID} && docker volume create vol-{PID} && "
            f"docker run -d --name vol-user-{PID} -v vol-{PID}:/data --network net-{PID} "
            f"{REGIMG} sleep 300"),
        run(f"mkdir -p /tmp/ctx && printf 'FROM {REGIMG}\\nRUN echo built-in-{PID} > /built\\n' "
            f"> /tmp/ctx/Dockerfile && docker build -t built-{PID}:1 /tmp/ctx && "
            f"docker run --rm built-{PID}:1 cat /built"),
        run(f"docker tag {REGIMG} tagged-{PID}:1 && docker images --format 'img={{{{.Repository}}}}'"))
    need(rc == 0, f"rc={rc}\n{out}\n{err}", "rc == 0")
    need(said(out, f"built-in-{PID}"), out, "f'built-in-{PID}' in out")
    _, cs = api("GET", "/containers/json?all=1")
    names = [n for c in cs for n in c["Names"]]
    expect(not any(str(PID) in n for n in names), f"containers left: {names}")
    _, ns = api("GET", "/networks")
    expect(not any(f"net-{PID}" == n["Name"] for n in ns), "network left")
    _, vs = api("GET", "/volumes")
    expect(not any(f"vol-{PID}" == v["Name"] for v in vs["Volumes"] or []), "volume left")
    _, ims = api("GET", "/images/json")
    tags = [t for i in ims for t in (i.get("RepoTags") or [])]
    expect(f"built-{PID}:1" not in tags and f"tagged-{PID}:1" not in tags, f"images left: {tags}")
    for kind in ("containers", "networks", "volumes", "images"):
        left = labelled_mine(kind)
        expect(left == [], f"{kind} left: {left}")


@test
def a_docker_image_job_gets_its_endpoint_too():
    """A docker-executor job run on its image in drover's sandbox (busybox + the host's docker
    CLI): the same socket, the same refusals."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images_run"))
    import ocilib
    image, _ = ocilib.push_image(
        f"rd/{PID}/docker-cli", "1",
        [ocilib.busybox_layer(users=(("circleci", 3434, 3434, "/home/circleci"),)),
         ocilib.host_tools_layer(["/usr/bin/docker"])],
        {"Env": ["PATH=/usr/bin:/bin"], "User": "circleci", "Cmd": ["/bin/sh"]})
    auth = {"username": RG["REGISTRY_USER"], "password": RG["REGISTRY_PASSWORD"]}
    s = {"version": 1, "id": {"job": f"rd{PID}-image", "name": "remote-docker-test", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "docker", "network": "private",
                      "images": [{"image": image, "auth": auth}], "resources": {"memory_mb": 1024},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "steps": [{"type": "setup_remote_docker"},
                   # the CLI's login checks the registry itself, which this job's network does
                   # not reach (it is the engine host's loopback): its credentials file instead
                   run("mkdir -p ~/.docker && printf '{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}' "
                       f"{RG['REGISTRY_ADDR']} \"$(printf %s \"$U:$PW\" | base64)\" "
                       "> ~/.docker/config.json",
                       environment=[{"name": "PW", "value": RG["REGISTRY_PASSWORD"], "secret": True},
                                    {"name": "U", "value": RG["REGISTRY_USER"]}]),
                   # busybox sh does not read $BASH_ENV by itself (as on CircleCI)
                   run(f". \"$BASH_ENV\"; docker run --rm {REGIMG} echo hi-from-an-image-job"),
                   run(f". \"$BASH_ENV\"; if docker run --rm -v /:/host {REGIMG} true; then "
                       "echo ESCAPE; else echo REFUSED; fi")]}
    rc, out = ocilib.run_job(os.environ.get("DROVER", "drover"), s,
                             tempfile.mkdtemp(prefix="rd-images-"), timeout=300)
    need(rc == 0, f"rc={rc}\n{out}", "rc == 0")
    need(said(out, "hi-from-an-image-job"), out, "the container ran")
    need(said(out, "REFUSED") and not escapes(out), out, "-v /:/host refused")


@test
def setup_remote_docker_with_a_wrong_certificate_fails_naming_the_refusal():
    s = {"version": 1, "id": {"job": f"rd{PID}-wrong", "name": "remote-docker-test", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "machine", "resources": {"memory_mb": 512},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "steps": [{"type": "setup_remote_docker"}]}
    s["executor"]["docker_host"]["cert"] = open(DK["DOCKER_WRONG_CERT"]).read()
    s["executor"]["docker_host"]["key"] = open(DK["DOCKER_WRONG_KEY"]).read()
    rc, out, err = run_job(s)
    need(rc != 0 and "TLS refused" in out + err, out + err, "rc != 0 and 'TLS refused' in out + err")


if __name__ == "__main__":
    sys.exit(main())
