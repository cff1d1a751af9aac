#!/usr/bin/env python3
"""escape_suite_test.py: the hostile-job escape suite of issues 18 and 20, once per runtime. A new
runtime gets the whole suite by adding one entry to RUNTIMES.

Every runtime runs the same probes as job code (a busybox shell script: images may have nothing
else) and the same storage steps on host paths; every attempt must fail on each:
- the agent's credentials (/etc/drover/tls/*-key.pem, a planted one) and private keys anywhere
  drover keeps them, the spool of the job's own output (the agent's work dir);
- host processes and another job's processes and secrets; the supervisor's environment
  (/proc/1/environ and every /proc/*/environ);
- a signal to a host process; mount, a block device of the host (mknod), /proc/sys writes;
- cgroup files (escaping the job's cgroup or raising its limits);
- storage steps (store_artifacts, store_test_results, persist_to_workspace, save_cache with a
  checksum) naming the host's /etc/shadow and the supervisor's /proc/1/environ.

Runtimes: the sandbox on the host root (machine), a docker-image job on an image from the
registry peer (root in the image), the remote Docker runtime on the dockerd peer, and the SSH
rerun session into each of those three. setup_remote_docker's API proxy has its own suite of
hostile API calls (tests/integration/docker/remote_docker_test.py): what a job can reach there is
the engine's API, not a shell. Prints TAP."""
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "images_run"))
import ocilib  # noqa: E402
from taplib import DROVER, expect, main, test  # noqa: E402

# meson's timeout (SIGTERM) still runs the clean-up below: planted keys, spools, jobs
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
T = uuid.uuid4().hex[:12]
PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
DK = ocilib.envfile("dockerd")
PEM = {k: open(DK[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"),
                                          ("key", "DOCKER_KEY"))}
WORK = tempfile.mkdtemp(prefix="drover-escape-suite-", dir="/var/tmp")
os.chmod(WORK, 0o755)
STORE = os.path.join(WORK, "store")
IMAGES = os.path.join(WORK, "images")
# the agent's layout: its work dir under /var/lib/drover, spools below it
AGENT_DIR = f"/var/lib/drover/escape-suite-{T}"
SPOOL = os.path.join(AGENT_DIR, "spool")
os.makedirs(SPOOL, mode=0o700)
KEYDIR = "/etc/drover/tls"
MADE_ETC = not os.path.exists("/etc/drover")
os.makedirs(KEYDIR, exist_ok=True)
AGENT_KEY = os.path.join(KEYDIR, f"escape{T}-key.pem")
with open(AGENT_KEY, "w") as f:  # world-readable on purpose: only the masks may stop it
    f.write(f"-----BEGIN PRIVATE KEY-----\nAGENTKEY-{T}\n-----END PRIVATE KEY-----\n")
os.chmod(AGENT_KEY, 0o644)
# a line from the middle of the engine's client key and its server key: in no file in reach
KEY_LINES = []
for _k in (DK["DOCKER_KEY"], os.path.join(os.path.dirname(DK["DOCKER_CA"]), "server.key")):
    with open(_k) as f:
        KEY_LINES.append(f.read().splitlines()[2][:40])
SUPMARK = f"SUPMARK-{T}"
OTHER_SECRET = f"OTHERSECRET-{T}"
with open("/etc/shadow", "rb") as f:
    SHADOW = f.read()
SHADOW_SUM = hashlib.sha256(SHADOW).hexdigest()
with open("/proc/partitions") as f:  # the host's first block device (its disk)
    MAJ, MIN = next(line.split()[:2] for line in f.read().splitlines()[2:] if line.strip())
HOSTNAME = socket.gethostname()

# a root image with every tool the probes use (busybox only)
ADDR, USER, PASSWORD = ocilib.registry()
_base = ocilib.busybox_layer()
for _a in ("mknod", "mount", "dd", "kill", "find"):
    if _a not in ocilib.APPLETS:
        _base.symlink("bin/" + _a, "busybox")
_base.dir("proc").dir("sys").dir("dev").dir("var").dir("var/lib")
REF, _ = ocilib.push_image(f"escape/suite{os.getpid()}", "1", [_base],
                           {"Env": ["PATH=/bin"], "User": "", "Cmd": ["/bin/sh"]})

SANDBOX = {"runtime": "sandbox", "kind": "machine"}
IMAGE = {"runtime": "sandbox", "kind": "docker",
         "images": [{"image": REF, "auth": {"username": USER, "password": PASSWORD}}]}
DOCKER = {"runtime": "docker", "kind": "docker", "images": [{"image": DK["DOCKER_IMAGE"]}],
          "docker_host": {"url": DK["DOCKER_URL"], **PEM}}
JOB_ENV = dict(os.environ, DROVER_IMAGE_STORE=IMAGES, DROVER_SSH_LISTEN="127.0.0.1",
               DROVER_SUPERVISOR_MARK=SUPMARK)


def spec(name, executor, steps, **kw):
    s = {"version": 1,
         "id": {"job": f"esc{os.getpid()}-{name}", "name": "escape", "build_num": 1,
                "workflow": "wf", "project": "gh/acme/escape"},
         "executor": dict(executor, resources={"memory_mb": 512}),
         "storage": {"url": f"file://{STORE}"},
         "steps": steps}
    s.update(kw)
    return s


def start(s, stdout=subprocess.PIPE):
    path = os.path.join(WORK, f"{s['id']['job']}.json")
    with open(path, "w") as f:
        json.dump(s, f)
    ev = open(path + ".events", "w+")
    p = subprocess.Popen([DROVER, "job", "--spec", path, "--events-fd", str(ev.fileno()),
                          "--spool-dir", SPOOL], stdout=stdout, stderr=subprocess.STDOUT,
                         text=True, env=JOB_ENV, pass_fds=(ev.fileno(),))
    p.events_file = ev
    return p


def events(p):
    p.events_file.flush()
    with open(p.events_file.name) as f:
        return [json.loads(x) for x in f if x.strip()]


def run_job(s, timeout=240):
    """(rc, output, events); a job that hangs is killed and its output kept (a failed test)."""
    p = start(s)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out += f"\n(the job hung for {timeout} s and was killed)"
    return p.returncode, out, events(p)


def run(cmd, **kw):
    return {"type": "run", "command": cmd, **kw}


# ---- what every runtime's job code tries ----

def probe_script(host_pid, only=None):
    """The probes as one busybox sh script; only: the names of a subset."""
    probes = [
        ("agent_key", f"""echo "@@agent_key"; cat /etc/drover/tls/*-key.pem 2>&1; ls -la /etc/drover/tls 2>&1
"""),
        # fixed strings (fast on the host libraries of /run/drover/lib); the step scripts that
        # hold them (/run/drover/steps, the remote Docker runtime's /tmp/.drover-step-N.sh) are
        # left out
        ("private_keys", f"""echo "@@private_keys"; grep -rlF -e "{KEY_LINES[0]}" -e "{KEY_LINES[1]}" \
  -e "AGENTKEY-{T}" /etc/drover /var/lib/drover $(ls -d /run/drover/* 2>/dev/null | grep -v \
  /steps) /root /home /tmp /tmp/drover-peers {PEERS} 2>/dev/null | grep -v "/[.]drover-step-" | \
  head -5
"""),
        ("spool", f"""echo "@@spool"; grep -r "SPOOL-4[2]-{T}" /var/lib/drover /run /tmp 2>/dev/null | head -3; \
  ls {SPOOL} 2>&1
"""),
        ("host_pids", f"""echo "@@host_pids"; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -o "HOSTTA[G]-{T}"; \
  ls -d /proc/{host_pid} 2>&1
"""),
        ("other_job", f"""echo "@@other_job"; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | \
  grep -o "OTHERJO[B]-{T}"; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | \
  grep "OTHERSECRE[T]-{T}"
"""),
        ("supervisor_env", f"""echo "@@supervisor_env"; cat /proc/1/environ /proc/[0-9]*/environ 2>/dev/null | \
  tr '\\0' '\\n' | grep "SUPMAR[K]-{T}"; env | grep "SUPMAR[K]-{T}"
"""),
        ("signal", f"""echo "@@signal"; kill -9 {host_pid} 2>&1; echo "rc=$?"
"""),
        ("mount", f"""echo "@@mount"; mkdir -p /tmp/m$$; mount -t tmpfs none /tmp/m$$ 2>&1; echo "rc=$?"; \
  mount -t proc proc /tmp/m$$ 2>&1; echo "rc=$?"
"""),
        ("device", f"""echo "@@device"; mknod /tmp/hd$$ b {MAJ} {MIN} 2>&1; echo "devbytes=$(head -c 512 /tmp/hd$$ 2>/dev/null | wc -c)"
"""),
        ("proc_sys", f"""echo "@@proc_sys"; (echo evil-{T} > /proc/sys/kernel/hostname) 2>/dev/null; \
  (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null && echo WROTE-drop_caches; \
  (echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null && echo WROTE-sysrq; echo done
"""),
        ("cgroup", f"""echo "@@cgroup"; for f in $(find /sys/fs/cgroup -maxdepth 3 \\( -name cgroup.procs -o \
  -name tasks -o -name memory.max -o -name memory.limit_in_bytes -o -name pids.max -o \
  -name cpu.max -o -name cpu.cfs_quota_us -o -name release_agent \\) 2>/dev/null); do \
  case $f in */cgroup.procs|*/tasks) v=$$;; *cfs_quota_us) v=-1;; *release_agent) v=/tmp/x;; \
  *) v=max;; esac; (echo $v > $f) 2>/dev/null && echo "WROTE $f"; done; echo done
"""),
    ]
    return ("set +e; set +o pipefail 2>/dev/null\n" + f"echo SPOOL-$((40+2))-{T}\n" +
            "".join(p for n, p in probes if only is None or n in only) + 'echo "@@end"\n')


def sections(out):
    got, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@@"):
            cur = line[2:].strip()
            got[cur] = []
        elif cur:
            got[cur].append(line)
    return {k: "\n".join(v) for k, v in got.items()}


def judge(name, out, host):
    """The probes' verdicts on one runtime's output: one TAP test each."""
    s = sections(out)

    def each(probe, fn):
        def t():
            expect("end" in s, f"{name}: the probes did not finish:\n{out[-3000:]}")
            fn(s.get(probe, ""))
        t.__name__ = f"{name}__{probe}"
        test(t)

    each("agent_key", lambda o: expect(f"AGENTKEY-{T}" not in o and f"escape{T}" not in o,
                                       f"the agent's key is readable:\n{o}"))
    each("private_keys", lambda o: expect(o.strip() == "", f"private keys in reach:\n{o}"))
    each("spool", lambda o: expect(f"SPOOL-42-{T}" not in o and "job-" not in o,
                                   f"the output spool is in reach:\n{o}"))
    each("host_pids", lambda o: expect(f"HOSTTAG-{T}" not in o and "No such file" in o,
                                       f"host processes are visible:\n{o}"))
    each("other_job", lambda o: expect(f"OTHERJOB-{T}" not in o and OTHER_SECRET not in o,
                                       f"another job is visible:\n{o}"))
    each("supervisor_env", lambda o: expect(SUPMARK not in o,
                                            f"the supervisor's environment leaked:\n{o}"))
    each("signal", lambda o: expect(host.poll() is None and "rc=0" not in o,
                                    f"a host process was signalled:\n{o}"))
    each("mount", lambda o: expect("rc=0" not in o, f"a mount worked:\n{o}"))
    each("device", lambda o: expect("devbytes=0" in o, f"the host's disk is readable:\n{o}"))
    each("proc_sys", lambda o: expect("WROTE" not in o and socket.gethostname() == HOSTNAME,
                                      f"/proc/sys written:\n{o}"))
    each("cgroup", lambda o: expect("WROTE" not in o and "done" in o,
                                    f"cgroup files written:\n{o}"))


# ---- storage steps on host paths (runtimes with built-in steps) ----

STORAGE_STEPS = [
    run(f"echo SPOOL-$((40+2))-{T}"),
    {"type": "store_artifacts", "path": "/etc/shadow", "when": "always"},
    {"type": "store_artifacts", "path": "/proc/1/environ", "when": "always"},
    {"type": "store_test_results", "path": "/etc/shadow", "when": "always"},
    {"type": "persist_to_workspace", "root": "/etc", "paths": ["shadow"], "when": "always"},
    {"type": "save_cache", "key": 'esc-{{ checksum "/etc/shadow" }}', "paths": ["/etc/shadow"],
     "when": "always"},
    {"type": "store_artifacts", "path": AGENT_KEY, "when": "always"},
]


def stored_objects():
    out = []
    for root, _, files in os.walk(STORE):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            if data[:4] == b"\x28\xb5\x2f\xfd":
                data += subprocess.run(["zstd", "-dc"], input=data, capture_output=True).stdout
            elif data[:2] == b"\x1f\x8b":
                data += subprocess.run(["gzip", "-dc"], input=data, capture_output=True).stdout
            out.append((os.path.relpath(os.path.join(root, f), STORE), data))
    return out


def judge_storage(name, rc, out, ev):
    def t():
        expect(any(e["type"] == "finished" for e in ev), f"{name}: no finished event:\n{out}")
        leaks = [k for k, d in stored_objects() if SHADOW in d or SUPMARK.encode() in d or
                 f"AGENTKEY-{T}".encode() in d]
        expect(not leaks, f"{name}: host files in the store: {leaks}")
        expect(SHADOW_SUM not in out and SHADOW_SUM not in json.dumps(ev),
               f"{name}: the checksum of the host's /etc/shadow was computed")
        expect(SUPMARK not in out, f"{name}: the supervisor's environment in the output")
    t.__name__ = f"{name}__storage_steps_on_host_paths"
    test(t)


# ---- the SSH rerun session of each runtime ----

def ssh_key():
    key = os.path.join(WORK, "sshkey")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    return key


def ssh_probe(name, executor, script):
    key = ssh_key()
    s = spec(f"ssh-{name}", executor, [run("sleep 240")],
             ssh={"enabled": True, "idle_timeout": 60,
                  "authorized_keys": [open(key + ".pub").read().strip()]})
    p = start(s, stdout=open(os.path.join(WORK, f"ssh-{name}.out"), "w"))
    try:
        port, deadline = None, time.time() + 120
        while not port and time.time() < deadline and p.poll() is None:
            port = next((e["port"] for e in events(p) if e["type"] == "ssh_enabled"), None)
            time.sleep(0.1)
        if not port:
            with open(os.path.join(WORK, f"ssh-{name}.out")) as f:
                return f"no ssh_enabled event:\n{f.read()[-2000:]}"
        # the step must be running (the container or sandbox is up) before the session
        while time.time() < deadline and not any(e["type"] == "step_started"
                                                 for e in events(p)):
            time.sleep(0.1)
        try:
            r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                "-o", "IdentitiesOnly=yes", "-F", "/dev/null", "-i", key, "-p",
                                str(port), "127.0.0.1", script], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired as e:
            return f"{e.stdout or ''}{e.stderr or ''}\n(the session hung for 240 s)"
        return r.stdout + r.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


RUNTIMES = [("sandbox", SANDBOX), ("docker_image", IMAGE), ("remote_docker", DOCKER)]

# what the probes must see where nothing isolates them: proof that each can see a leak
# (not private_keys: a recursive grep of the host's /tmp and /root meets other users' FIFOs; not
# device: where the tests run in a container, its device cgroup refuses the disk even to root)
CONTROL = ("agent_key", "host_pids", "other_job", "supervisor_env")


def control(host_pid):
    def the_probes_see_everything_from_the_host():
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run([ocilib.BUSYBOX, "sh", "-c", probe_script(host_pid, CONTROL)],
                               capture_output=True, text=True, timeout=120, cwd=d,
                               env=dict(os.environ, SUPERVISOR=SUPMARK))
        subprocess.run(["sh", "-c", "rm -f /tmp/hd[0-9]*"], check=False)
        s = sections(p.stdout)
        seen = {"agent_key": f"AGENTKEY-{T}", "host_pids": f"HOSTTAG-{T}", "other_job": OTHER_SECRET,
                "supervisor_env": SUPMARK}
        missed = [k for k, v in seen.items() if v not in s.get(k, "")]
        expect(not missed, f"probes that cannot see a leak: {missed}\n{p.stdout}\n{p.stderr}")
    test(the_probes_see_everything_from_the_host)


def suite():
    host = subprocess.Popen(["/bin/sh", "-c", f"sleep 600; : HOSTTAG-{T}"],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    others = [start(spec(f"other-{n}", ex, [run(f"sh -c 'sleep 900' OTHERJOB-{T}")],
                         environment=[{"name": "OTHER_SECRET", "value": OTHER_SECRET,
                                       "secret": True}]), stdout=subprocess.DEVNULL)
              for n, ex in (("sandbox", SANDBOX), ("docker", DOCKER))]
    try:
        deadline = time.time() + 90  # the other jobs' steps are running
        while time.time() < deadline and not all(
                any(e["type"] == "step_started" for e in events(p)) for p in others):
            time.sleep(0.2)
        time.sleep(1)
        control(host.pid)
        script = probe_script(host.pid)
        for name, ex in RUNTIMES:
            rc, out, ev = run_job(spec(f"probe-{name}", ex, [run(script)]))
            judge(name, out, host)
            rc, out, ev = run_job(spec(f"storage-{name}", ex, STORAGE_STEPS))
            judge_storage(name, rc, out, ev)
        for name, ex in RUNTIMES:
            judge(f"ssh_{name}", ssh_probe(name, ex, script), host)
    finally:
        for p in others:
            p.send_signal(signal.SIGTERM)
        for p in others:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        os.killpg(host.pid, signal.SIGKILL)
        host.wait()


try:
    suite()
finally:
    os.unlink(AGENT_KEY)
    if MADE_ETC:
        shutil.rmtree("/etc/drover", ignore_errors=True)
    shutil.rmtree(AGENT_DIR, ignore_errors=True)
    shutil.rmtree(WORK, ignore_errors=True)
main()
