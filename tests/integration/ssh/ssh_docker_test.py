#!/usr/bin/env python3
"""ssh_docker_test.py: SSH rerun on the remote Docker runtime (the dockerd peer, TLS :2376): the
real OpenSSH client gets into the job's primary container (env, cwd, exit status, stdin to EOF, a
terminal that follows the window), -L connects from inside the container's network (a server a
background step started on its localhost, a service container by name, large and half-closed
transfers; a closed port is a refused channel that leaves the session working), the pumps of
steps, sessions and forwards are exec'd `drover __docker-pump` processes (one thread, no key in
argv or environ, only their own fds), and the idle timeout ends the job with nothing of it left on
the engine."""
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
DK = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(PEERS, "dockerd.env"))
          if "=" in line)
PEM = {k: open(DK[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"),
                                          ("key", "DOCKER_KEY"))}
TMP = tempfile.mkdtemp(prefix="drover-ssh-docker-test-")
KEY = os.path.join(TMP, "key")
subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY], check=True)
JOB_ID = f"sshdk{os.getpid()}"

spec = {"version": 1, "id": {"job": JOB_ID, "name": "sshdk", "build_num": 1},
        "executor": {"runtime": "docker", "kind": "docker",
                     "images": [{"image": DK["DOCKER_IMAGE"]},
                                {"image": DK["DOCKER_IMAGE"], "name": "websvc",
                                 "entrypoint": ["httpd", "-f", "-p", "8081", "-h", "/etc"]}],
                     "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
        "environment": [{"name": "JOB_MARKER", "value": "dk-marker"}],
        "steps": [{"type": "run", "command": "mkdir -p web && echo served-from-container >web/m.txt"
                                             " && awk 'BEGIN { for (i = 0; i < 131072; i++) "
                                             "print \"0123456789abcde\" }' >web/big"},
                  # servers on the container's own localhost (busybox: no python in the image)
                  {"type": "run", "background": True, "command": "cd web && exec httpd -f -p 18080"},
                  {"type": "run", "background": True, "command": "exec nc -ll -p 7000 -e wc -c"},
                  {"type": "run", "background": True, "command": "exec nc -ll -p 7001 -e cat"},
                  {"type": "run", "command": "echo step-ran"}],
        "ssh": {"enabled": True, "idle_timeout": 2,
                "authorized_keys": [open(KEY + ".pub").read().strip()]}}
with open(os.path.join(TMP, "spec.json"), "w") as f:
    json.dump(spec, f)
EV = open(os.path.join(TMP, "events"), "w+")
OUT = open(os.path.join(TMP, "out"), "w+")
PROC = subprocess.Popen([DROVER, "job", "--spec", f.name, "--events-fd", str(EV.fileno())],
                        stdout=OUT, stderr=subprocess.STDOUT, pass_fds=(EV.fileno(),),
                        env=dict(os.environ, DROVER_SSH_LISTEN="127.0.0.1"))


def events():
    with open(EV.name) as f:
        return [json.loads(x) for x in f if x.strip()]


deadline = time.time() + 60
enabled = None
while not enabled and time.time() < deadline and PROC.poll() is None:
    enabled = next((e for e in events() if e["type"] == "ssh_enabled"), None)
    time.sleep(0.1)
if not enabled:
    print("not ok 1 - ssh_enabled\n#   " + open(OUT.name).read().replace("\n", "\n#   ") + "\n1..1")
    sys.exit(1)
PORT = enabled["port"]
KH = os.path.join(TMP, "kh")
with open(KH, "w") as f:
    f.write(f"[127.0.0.1]:{PORT} {enabled['host_key']}\n")
SSH = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
       f"UserKnownHostsFile={KH}", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-F",
       "/dev/null", "-i", KEY, "-p", str(PORT)]
HOLDER = subprocess.Popen(SSH + ["-N", "127.0.0.1"], stdin=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def on_term(signum, frame):
    """meson's timeout: say where the test was and what drover logged last, then the results."""
    import traceback
    where = [x.strip() for x in traceback.format_stack(frame)[-3:]]
    OUT.flush()
    tail = open(OUT.name).read().splitlines()[-20:]

    def interrupted_by_the_timeout():
        expect(False, "\n".join(["at:"] + where + ["drover job, last lines:"] + tail))
    test(interrupted_by_the_timeout)
    if PROC.poll() is None:
        PROC.kill()
    main()


signal.signal(signal.SIGTERM, on_term)


def ssh(cmd, input=None, args=()):
    return subprocess.run(SSH + list(args) + ["127.0.0.1", cmd], input=input,
                          capture_output=True, text=True, timeout=60)


@test
def exec_runs_in_the_primary_container_with_the_jobs_env():
    r = ssh('echo "cwd=$PWD marker=$JOB_MARKER"; echo err >&2; exit 5')
    expect(r.returncode == 5, f"rc={r.returncode} {r.stderr}")
    expect(r.stdout == "cwd=/root/project marker=dk-marker\n", r.stdout)
    expect(r.stderr == "err\n", r.stderr)


@test
def stdin_reaches_the_process_until_eof():
    data = "line\n" * 20000
    r = ssh("wc -l", input=data)
    expect(r.returncode == 0 and r.stdout.strip() == "20000", (r.stdout, r.stderr))


@test
def bulk_stdin_and_stdout_flow_at_once():
    data = os.urandom(4 << 20)  # cat: the output comes while the input still goes
    r = subprocess.run(SSH + ["127.0.0.1", "cat"], input=data, capture_output=True, timeout=30)
    expect(r.returncode == 0 and r.stdout == data, f"rc={r.returncode} {len(r.stdout)} bytes")


@test
def a_terminal_follows_the_window():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    p = subprocess.Popen(SSH + ["-tt", "127.0.0.1"], stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    buf = b""
    try:
        os.write(master, b"echo SZ=$(stty size)\n")
        t = time.time() + 20
        while b"SZ=31 97" not in buf and time.time() < t:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 4096)
        expect(b"SZ=31 97" in buf, buf)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 120, 0, 0))
        p.send_signal(signal.SIGWINCH)
        time.sleep(0.5)
        os.write(master, b"echo SZ=$(stty size); exit 4\n")
        t = time.time() + 20
        while b"SZ=44 120" not in buf and time.time() < t:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 4096)
        expect(b"SZ=44 120" in buf, buf)
        expect(p.wait(timeout=20) == 4, f"rc={p.returncode}")
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forward:
    """One `ssh -N` holding local forwards: {name: "HOST:PORT" inside the job} -> local ports."""

    def __init__(self, **targets):
        self.ports = {k: free_port() for k in targets}
        args = []
        for k, t in targets.items():
            args += ["-L", f"{self.ports[k]}:{t}"]
        self.p = subprocess.Popen(SSH + ["-N"] + args + ["127.0.0.1"], stderr=subprocess.DEVNULL)

    def get(self, name, path, deadline=20):
        t = time.time() + deadline
        while True:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}{path}",
                                              timeout=10).read()
            except OSError:
                if time.time() > t:
                    raise
                time.sleep(0.2)

    def close(self):
        self.p.kill()  # not SIGTERM: OpenSSH can miss one that lands just after a channel closes
        self.p.wait(timeout=10)


@test
def local_forwarding_reaches_a_server_on_the_containers_localhost():
    with socket.socket() as s:  # the server is on the container's loopback, not the host's
        expect(s.connect_ex(("127.0.0.1", 18080)) != 0, "job port open on the host")
    fw = Forward(web="localhost:18080")
    try:
        expect(fw.get("web", "/m.txt") == b"served-from-container\n", "wrong body")
        big = fw.get("web", "/big")
        want = b"0123456789abcde\n" * 131072  # 2 MiB
        expect(big == want, f"big: {len(big)} bytes")
    finally:
        fw.close()
    OUT.flush()
    expect("ssh_forward session=" in open(OUT.name).read(), "no ssh_forward log line")


@test
def local_forwarding_resolves_service_names_as_steps_do():
    fw = Forward(svc="websvc:8081")
    try:
        expect(b"circleci:x:3434" in fw.get("svc", "/passwd"), "service not reached by name")
    finally:
        fw.close()


@test
def a_half_closed_forward_still_gets_the_answer():
    fw = Forward(wc="127.0.0.1:7000")
    try:
        got, t = b"", time.time() + 20
        while got.strip() != b"300000" and time.time() < t:
            try:
                with socket.create_connection(("127.0.0.1", fw.ports["wc"]), timeout=10) as c:
                    c.sendall(b"z" * 300000)
                    c.shutdown(socket.SHUT_WR)  # wc answers only at EOF
                    got = b""
                    while True:
                        b = c.recv(100)
                        if not b:
                            break
                        got += b
            except OSError:
                time.sleep(0.2)
        expect(got.strip() == b"300000", got)
    finally:
        fw.close()


@test
def an_echo_forward_carries_bulk_both_ways_at_once():
    # 8 MiB up while the echo comes down: no direction may wait for the other to drain
    fw = Forward(echo="127.0.0.1:7001")
    data = os.urandom(8 << 20)
    try:
        back, t = b"", time.time() + 20
        while len(back) < len(data) and time.time() < t:
            try:
                with socket.create_connection(("127.0.0.1", fw.ports["echo"]), timeout=30) as c:
                    w = threading.Thread(target=lambda: (c.sendall(data),
                                                         c.shutdown(socket.SHUT_WR)))
                    w.start()
                    back = b""
                    while True:
                        b = c.recv(1 << 16)
                        if not b:
                            break
                        back += b
                    w.join(timeout=30)
            except OSError:
                time.sleep(0.2)
        expect(back == data, f"echo: {len(back)} of {len(data)} bytes")
    finally:
        fw.close()


@test
def a_forward_to_a_closed_port_is_refused_and_the_session_goes_on():
    fw = Forward(closed="127.0.0.1:9", web="127.0.0.1:18080")
    try:
        got = None
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", fw.ports["closed"]), timeout=5) as c:
                    c.settimeout(30)
                    got = c.recv(100)  # the channel open is refused: closed, nothing read
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        expect(got == b"", got)
        # the same connection still forwards
        expect(fw.get("web", "/m.txt") == b"served-from-container\n", "session broken")
    finally:
        fw.close()
    OUT.flush()
    log = open(OUT.name).read()
    expect("ssh_forward_refused" in log and "127.0.0.1:9: connect: Connection refused" in log,
           "no ssh_forward_refused log line naming the refused connect")
    expect(PROC.poll() is None, "drover job died")


def pumps():
    """{pid: kind} of the `drover __docker-pump KIND` processes under drover job."""
    kids, todo, found = {}, [PROC.pid], {}
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    while todo:
        pid = todo.pop()
        for k in kids.get(pid, []):
            todo.append(k)
            try:
                argv = open(f"/proc/{k}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv[1:2] == [b"__docker-pump"]:
                found[k] = argv[2].decode()
    return found


def fd_target(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


@test
def pumps_are_fresh_single_threaded_drover_processes_with_no_key_in_argv_or_env():
    # a step (the background servers), a session and a forward, each with its pump alive
    fw = Forward(web="127.0.0.1:18080")
    sess = subprocess.Popen(SSH + ["127.0.0.1", "sleep 8"], stdin=subprocess.DEVNULL)
    conn = None
    try:
        t, kinds = time.time() + 20, {}
        while time.time() < t and set(kinds.values()) != {"step", "session", "fwd"}:
            if conn is None:
                try:
                    conn = socket.create_connection(("127.0.0.1", fw.ports["web"]), timeout=5)
                    conn.sendall(b"GET /m.txt HTTP/1.0\r\n")  # no end: the forward stays open
                except OSError:
                    conn = None
            time.sleep(0.2)
            kinds = pumps()
        expect(set(kinds.values()) == {"step", "session", "fwd"}, f"pumps: {kinds}")
        secret = [x for x in PEM["key"].splitlines() if x and not x.startswith("-----")]
        exe = os.path.realpath(DROVER)
        want_fds = {"step": {0, 1, 2, 4, 6}, "session": {0, 1, 2, 4, 5, 6, 7},
                    "fwd": {0, 1, 2, 5}}  # fwd: 4 is closed once the connect is reported
        for pid, kind in kinds.items():
            expect(os.readlink(f"/proc/{pid}/exe") == exe, f"{kind} pump {pid}: not {exe}")
            for f in ("cmdline", "environ"):
                text = open(f"/proc/{pid}/{f}", "rb").read().decode(errors="replace")
                expect("PRIVATE KEY" not in text and not any(x in text for x in secret),
                       f"{kind} pump {pid}: key material in its {f}")
            status = open(f"/proc/{pid}/status").read()
            expect("\nThreads:\t1\n" in status, f"{kind} pump {pid}: more than one thread")
            # beyond its own fds only what it opened itself (its engine connections): nothing
            # else of its parent's (the runtime's pipes, the SSH server's sockets, drover's image)
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            # a forward's pump closes its report pipe (4) once its connect is reported, which
            # can come a moment after the pump appears (seen under ASan): give it 10 s
            deadline = time.time() + 10
            while True:
                held = {fd_target(ppid, x) for x in os.listdir(f"/proc/{ppid}/fd")}
                fds = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
                extra = {fd_target(pid, x) for x in fds - want_fds[kind]} & held
                if not extra or time.time() > deadline:
                    break
                time.sleep(0.1)
            expect(want_fds[kind] <= fds, f"{kind} pump {pid}: fds {sorted(fds)}")
            expect(not extra, f"{kind} pump {pid}: inherited {extra} (fds {sorted(fds)})")
    finally:
        if conn:
            conn.close()
        sess.kill()
        sess.wait(timeout=10)
        fw.close()


@test
def the_pump_command_refuses_to_run_by_hand():
    r = subprocess.run([DROVER, "__docker-pump", "step"], capture_output=True, text=True,
                       timeout=10)
    expect(r.returncode == 2 and "not for use by hand" in r.stderr, (r.returncode, r.stderr))
    r = subprocess.run([DROVER, "--help"], capture_output=True, text=True, timeout=10)
    expect("pump" not in r.stdout, r.stdout)


@test
def idle_timeout_ends_the_job_and_removes_its_containers():
    HOLDER.terminate()
    HOLDER.wait(timeout=10)
    rc = PROC.wait(timeout=60)
    expect(rc == 0, f"rc={rc} {open(OUT.name).read()}")
    ps = subprocess.run(["docker", "-H", f"unix://{DK['DOCKER_SOCK']}", "ps", "-a", "--format",
                         "{{.Labels}}"], capture_output=True, text=True).stdout
    expect(JOB_ID not in ps, ps)
    ev = events()
    expect([e["type"] for e in ev].count("ssh_session_opened") >= 4, ev)


if PROC.poll() is None:
    PROC.kill()
    PROC.wait()
if not os.environ.get("DROVER_KEEP_TMP"):
    shutil.rmtree(TMP, ignore_errors=True)
main()
