#!/usr/bin/env python3
"""docker_job_test.py: `drover job` with executor.runtime "docker" against the real dockerd (TLS on
127.0.0.1:2376) from scripts/peers/dockerd.sh: steps as execs, a service container reachable by
name and localhost, caches and artifacts through a file:// store, cancel mid-step, and nothing of
drover's left on the engine afterwards. Fails (never skips) when the peer is not up."""
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import http.client

DROVER = os.environ.get("DROVER", "drover")
PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
results = []


def envfile(name):
    out = {}
    with open(os.path.join(PEERS, name)) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


DK = envfile("dockerd.env")
PEM = {k: open(DK[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"), ("key", "DOCKER_KEY"))}
IMAGE = DK["DOCKER_IMAGE"]
STORE = tempfile.mkdtemp(prefix="drover-docker-store-")


def api(method, path):
    ctx = ssl.create_default_context(cafile=DK["DOCKER_CA"])
    ctx.load_cert_chain(DK["DOCKER_CERT"], DK["DOCKER_KEY"])
    c = http.client.HTTPSConnection("127.0.0.1", 2376, context=ctx, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    return r.status, json.loads(body) if body else None


def drover_objects():
    """drover's containers and networks of this test run (other runs may share the engine)."""
    f = '{"label":["drover.managed=true"]}'
    from urllib.parse import quote
    _, cs = api("GET", "/containers/json?all=1&filters=" + quote(f))
    _, ns = api("GET", "/networks?filters=" + quote(f))
    mine = f"dk{os.getpid()}-"
    return ([c for c in cs if c["Labels"].get("drover.job", "").startswith(mine)],
            [n for n in ns if (n.get("Labels") or {}).get("drover.job", "").startswith(mine)])


def spec(steps, images=None, **kw):
    s = {"version": 1,
         "id": {"job": f"dk{os.getpid()}-{len(results)}", "name": "docker-test", "build_num": 1},
         "executor": {"runtime": "docker", "kind": "docker",
                      "images": images or [{"image": IMAGE}],
                      "resources": {"cpus": 1, "memory_mb": 512},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "storage": {"url": f"file://{STORE}"},
         "steps": steps}
    s.update(kw)
    return s


def run_job(s, timeout=60, cancel_after=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
        path = f.name
    try:
        p = subprocess.Popen([DROVER, "job", "--spec", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        if cancel_after is not None:
            time.sleep(cancel_after)
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    finally:
        os.unlink(path)


def test(fn):
    t0 = time.time()
    try:
        fn()
        results.append((True, fn.__name__, f"{time.time() - t0:.1f}s"))
    except AssertionError as e:
        results.append((False, fn.__name__, str(e)))
    except Exception as e:  # noqa: BLE001
        results.append((False, fn.__name__, f"{type(e).__name__}: {e}"))
    return fn


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(cmd, **kw):
    return {"type": "run", "command": cmd, **kw}


@test
def multi_step_job_with_a_service_by_name_and_localhost():
    images = [{"image": IMAGE},
              {"image": IMAGE, "name": "web", "entrypoint": ["httpd", "-f", "-p", "8080", "-h", "/etc"]}]
    rc, out, err = run_job(spec([
        run("echo step-one; id -un; pwd; echo v=$CIRCLE_JOB"),
        run("for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://localhost:8080/group && break; sleep 0.2; done"),
        run("wget -q -O- http://web:8080/group | head -1; echo by-name-ok"),
        run("echo bye >&2; exit 4"),
        run("echo not reached"),
    ], images=images))
    expect(rc != 0, f"job with exit 4 should fail: rc={rc}")
    expect("step-one" in out, out + err)
    expect("circleci" in out or "root" in out, out)
    expect(out.count("circleci:x:3434") >= 1 and "by-name-ok" in out, out + err)
    expect("not reached" not in out, out)
    expect("bye" in out, out)


@test
def service_containers_get_their_limits_or_the_jobs():
    # svc 1 with its own resources, svc 2 without (the executor's: 512 MiB, 1 CPU; pids 4096)
    images = [{"image": IMAGE},
              {"image": IMAGE, "entrypoint": ["sleep", "61"],
               "resources": {"cpus": 0.5, "memory_mb": 64, "pids": 100}},
              {"image": IMAGE, "entrypoint": ["sleep", "62"]}]
    s = spec([run("sleep 6")], images=images)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        got, t = {}, time.time() + 30
        while len(got) < 2 and time.time() < t and p.poll() is None:
            time.sleep(0.3)
            for c in drover_objects()[0]:
                if c["Labels"].get("drover.job", "").startswith(s["id"]["job"] + "."):
                    _, ins = api("GET", f"/containers/{c['Id']}/json")
                    if ins["HostConfig"]["NetworkMode"].startswith("container:"):
                        got[ins["Config"]["Entrypoint"][1]] = ins["HostConfig"]
        expect(len(got) == 2, f"services seen: {list(got)}")
        want = {"61": (64 << 20, 500000000, 100), "62": (512 << 20, 1000000000, 4096)}
        for k, (mem, cpus, pids) in want.items():
            h = got[k]
            expect((h["Memory"], h["MemorySwap"], h["NanoCpus"], h["PidsLimit"]) ==
                   (mem, mem, cpus, pids), f"service sleep {k}: {h}")
    finally:
        out, err = p.communicate(timeout=60)
        os.unlink(f.name)
    expect(p.returncode == 0, f"rc={p.returncode} {out} {err}")


def pump_children(pid):
    """pids of `drover __docker-pump` processes whose parent is pid."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and argv[1:2] == [b"__docker-pump"]:
            found.append(int(d))
    return found


@test
def pumps_run_drovers_own_image_when_the_file_was_replaced_mid_job():
    # an upgrade renames a new file over drover's path while a job runs: later steps' pumps are
    # still the running drover (exec'd from /proc/self/exe opened at start, not from the path)
    tmp = tempfile.mkdtemp(prefix="drover-docker-upgrade-")
    exe = os.path.join(tmp, "drover")
    shutil.copy2(os.path.realpath(DROVER), exe)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec([run("sleep 3"), run("echo after-the-upgrade")]), f)
    p = subprocess.Popen([exe, "job", "--spec", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        t = time.time() + 30
        while not pump_children(p.pid) and time.time() < t and p.poll() is None:
            time.sleep(0.1)
        expect(pump_children(p.pid), "no pump process seen")
        with open(exe + ".new", "w") as g:
            g.write("#!/bin/sh\nexit 0\n")
        os.chmod(exe + ".new", 0o755)
        os.replace(exe + ".new", exe)
    finally:
        out, err = p.communicate(timeout=60)
        os.unlink(f.name)
        shutil.rmtree(tmp, ignore_errors=True)
    expect(p.returncode == 0 and "after-the-upgrade" in out, f"rc={p.returncode} {out} {err}")


@test
def cache_and_artifacts_round_trip_through_the_engine():
    key = f"k-{os.getpid()}"
    rc, out, err = run_job(spec([
        run("mkdir -p ~/project/dep && echo cached-data > ~/project/dep/a.txt && echo art > ~/project/report.txt"),
        {"type": "save_cache", "key": key, "paths": ["~/project/dep"]},
        {"type": "store_artifacts", "path": "~/project/report.txt", "destination": "r.txt"},
    ]))
    expect(rc == 0, f"save job rc={rc}\n{out}\n{err}")
    rc, out, err = run_job(spec([
        {"type": "restore_cache", "keys": [key]},
        run("cat ~/project/dep/a.txt; ls -ln ~/project/dep/a.txt"),
    ]))
    expect(rc == 0, f"restore job rc={rc}\n{out}\n{err}")
    expect("cached-data" in out, out + err)
    found = [os.path.join(d, f) for d, _, fs in os.walk(STORE) for f in fs if "r.txt" in f]
    expect(found and open(found[0]).read() == "art\n", f"artifact not in store: {found}")


@test
def cancel_mid_step_kills_it_and_cleans_up():
    t0 = time.time()
    rc, out, err = run_job(spec([run("echo started; sleep 30; echo finished")]), cancel_after=3)
    expect(time.time() - t0 < 15, f"cancel took {time.time() - t0:.1f}s")
    expect("\nfinished" not in out and "started" in out, out)
    expect(rc != 0, f"cancelled job rc={rc}")
    expect("canceled" in out + err, out + err)


@test
def no_output_timeout_kills_the_step_tree():
    rc, out, err = run_job(spec([run("sh -c 'sleep 40' & sleep 40", no_output_timeout=2),
                                 run("echo after", when="always")]))
    expect(rc != 0, f"rc={rc}")
    expect("after" in out, out + err)


@test
def missing_image_error_names_image_and_host():
    rc, out, err = run_job(spec([run("true")], images=[{"image": "127.0.0.1:5000/none/such:1"}]))
    expect(rc != 0, "should fail")
    expect("none/such" in out + err and "127.0.0.1:2376" in out + err, out + err)
    expect("/images/create" in out + err, out + err)


@test
def setup_remote_docker_gives_a_sandbox_job_the_engine():
    s = spec([{"type": "setup_remote_docker"},
              run('echo "H=$DOCKER_HOST V=$DOCKER_TLS_VERIFY"; cd "$DOCKER_CERT_PATH" && '
                  'ls && stat -c %a key.pem && cat ca.pem | head -1')])
    s["executor"] = {"runtime": "sandbox", "kind": "machine", "resources": {"memory_mb": 512},
                     "docker_host": {"url": DK["DOCKER_URL"], **PEM}}
    rc, out, err = run_job(s)
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect("Remote Docker engine 127.0.0.1:2376" in out, out)
    expect("H=tcp://127.0.0.1:2376 V=1" in out, out)
    expect("ca.pem" in out and "cert.pem" in out and "\n600\n" in out, out)
    expect("-----BEGIN CERTIFICATE-----" in out, out)
    # the same step with a wrong client certificate fails naming the refusal
    s["executor"]["docker_host"]["cert"] = open(DK["DOCKER_WRONG_CERT"]).read()
    s["executor"]["docker_host"]["key"] = open(DK["DOCKER_WRONG_KEY"]).read()
    rc, out, err = run_job(s)
    expect(rc != 0 and "TLS refused" in out + err, out + err)


def tcp_relay(listen, target):
    """A plain TCP relay (TLS stays end to end) in threads; returns the listening port."""
    import socket
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(16)

    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve():
        while True:
            c, _ = srv.accept()
            try:
                u = socket.create_connection(target, timeout=5)
            except OSError:
                c.close()
                continue
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


# Inside a sandbox job (private network): 127.0.0.1:2376 of the job's own network namespace relays
# to the host side of its veth (the default gateway), where tcp_relay forwards to the engine.
IN_JOB_RELAY = r'''
import socket, struct, threading
def gw():
    for l in open("/proc/net/route").readlines()[1:]:
        f = l.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
G = gw()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 2376))
s.listen(16)
print("relay to", G, flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
while True:
    c, _ = s.accept()
    u = socket.create_connection((G, PORT))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
'''


@test
def setup_remote_docker_with_the_real_docker_cli():
    # The engine listens on the host's loopback only (its certificate names 127.0.0.1), which a
    # sandbox job cannot reach: relays bridge that test-only gap; TLS and the CLI are real.
    port = tcp_relay(("0.0.0.0", 0), ("127.0.0.1", 2376))
    # the host is closed to sandbox jobs but for the allow-list (docs/sandbox.md "Egress")
    os.environ["DROVER_SANDBOX_EGRESS_ALLOW"] = (
        os.environ.get("DROVER_SANDBOX_SUBNET", "10.213.0.0/16") + f":{port}")
    relay = IN_JOB_RELAY.replace("PORT", str(port))
    s = spec([{"type": "setup_remote_docker"},
              run(f"python3 -c '{relay}'", background=True, name="relay"),
              run("for i in $(seq 50); do /usr/bin/docker version >/dev/null 2>&1 && break; "
                  "sleep 0.2; done; echo \"H=$DOCKER_HOST\"; "
                  "/usr/bin/docker version --format 'server={{.Server.Version}}'"),
              run(f"/usr/bin/docker run --rm {IMAGE} echo hi-from-remote-$((40 + 2))"),
              run("/usr/bin/docker ps -a --format '{{.Image}}' | grep -c . || true")])
    s["executor"] = {"runtime": "sandbox", "kind": "machine", "network": "private",
                     "resources": {"memory_mb": 1024},
                     "docker_host": {"url": DK["DOCKER_URL"], **PEM}}
    _, version = api("GET", "/version")
    rc, out, err = run_job(s, timeout=90)
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect("H=tcp://127.0.0.1:2376" in out, out)
    expect(f"server={version['Version']}" in out, out)
    expect("hi-from-remote-42" in out, out)


@test
def background_step_runs_alongside_and_is_killed_at_the_end():
    t0 = time.time()
    rc, out, err = run_job(spec([
        run("while true; do echo bg-tick; sleep 0.2; done", background=True, name="ticker"),
        run("sleep 1; echo fg-done"),
    ]))
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect("fg-done" in out and "bg-tick" in out, out)
    expect(time.time() - t0 < 20, f"took {time.time() - t0:.1f}s")


@test
def private_image_is_pulled_with_the_images_auth():
    rg = envfile("registry.env")
    ref = f"{rg['REGISTRY_ADDR']}/drover/job-busybox:{os.getpid()}"
    cfg = tempfile.mkdtemp(prefix="drover-docker-cli-")
    cli = ["docker", "--config", cfg, "-H", f"unix://{DK['DOCKER_SOCK']}"]
    subprocess.run(cli + ["login", "-u", rg["REGISTRY_USER"], "--password-stdin", rg["REGISTRY_ADDR"]],
                   input=rg["REGISTRY_PASSWORD"], text=True, check=True, capture_output=True)
    subprocess.run(cli + ["tag", IMAGE, ref], check=True, capture_output=True)
    subprocess.run(cli + ["push", ref], check=True, capture_output=True)
    subprocess.run(cli + ["rmi", ref], check=True, capture_output=True)
    auth = {"username": rg["REGISTRY_USER"], "password": rg["REGISTRY_PASSWORD"]}
    rc, out, err = run_job(spec([run("echo pulled-ok")], images=[{"image": ref, "auth": auth}]))
    expect(rc == 0 and "pulled-ok" in out, f"rc={rc}\n{out}\n{err}")
    expect(rg["REGISTRY_PASSWORD"] not in out + err, "password leaked into output")
    subprocess.run(cli + ["rmi", ref], capture_output=True)
    bad = {"username": rg["REGISTRY_USER"], "password": "nope"}
    rc, out, err = run_job(spec([run("true")], images=[{"image": ref, "auth": bad}]))
    expect(rc != 0 and "registry authentication failed" in out + err, out + err)


def run_job_events(s, timeout=60):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
        path = f.name
    rd, wr = os.pipe()
    try:
        p = subprocess.Popen([DROVER, "job", "--spec", path, "--events-fd", str(wr)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             pass_fds=(wr,))
        os.close(wr)
        with os.fdopen(rd) as evf:
            evs = [json.loads(line) for line in evf if line.strip()]
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err, evs
    finally:
        os.unlink(path)


@test
def oom_is_reported_with_the_limit():
    s = spec([run("dd if=/dev/zero of=/dev/null bs=96M count=1"),
              run("dd if=/dev/zero of=/dev/null bs=96M count=1", when="always"),
              run("kill -9 $$", when="always")])
    s["executor"]["resources"]["memory_mb"] = 48
    rc, out, err, evs = run_job_events(s)
    sr = [e for e in evs if e["type"] == "step_finished"]
    expect(rc == 1 and len(sr) == 3, f"rc={rc} {sr}\n{out}\n{err}")
    for r in sr[:2]:  # each kill counted once: the second against the first's count
        expect(r["status"] == "oom" and "out of memory (limit 48 MiB)" in r["reason"], r)
    # a SIGKILL that is not the memory limit stays an ordinary failure
    expect(sr[2]["status"] == "failed" and "memory" not in sr[2]["reason"], sr[2])
    # decided by the container cgroup's oom_kill counter, not the engine's event log
    oom_lines = [x for x in err.splitlines() if "event=docker_oom " in x]
    expect(len(oom_lines) == 2 and all("source=cgroup" in x for x in oom_lines), err)


def mirrors():
    """The local copies of jobs' homes (runtime_docker_files.c) on this host now."""
    import glob
    return set(glob.glob("/tmp/drover-docker-*"))


@test
def home_copy_for_builtin_steps_is_files_and_dirs_only():
    """issue 20 finding 3: before a built-in step the job's home was copied to the agent with
    its device nodes and setuid binaries, owned by root. Now only regular files and
    directories, no special mode bits, owned by the supervisor."""
    before = mirrors()
    s = spec([run("mknod ~/devnode c 1 3 && cp /bin/busybox ~/suid && chmod 4755 ~/suid && "
                  "ln -s /etc/shadow ~/link && echo art > ~/file && chown 1234:1234 ~/file"),
              {"type": "store_artifacts", "path": "~/file", "destination": "f.txt"},
              run("sleep 6")])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen, bad = [], []
    try:
        deadline = time.time() + 40
        while time.time() < deadline and not seen and p.poll() is None:
            for m in mirrors() - before:
                for d, dirs, files in os.walk(m):
                    for name in dirs + files:
                        st = os.lstat(os.path.join(d, name))
                        if name == "file":
                            seen.append((st.st_uid, st.st_mode))
                        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) or \
                                st.st_mode & 0o7000:
                            bad.append((name, oct(st.st_mode)))
            time.sleep(0.2)
        out, err = p.communicate(timeout=60)
    finally:
        os.unlink(f.name)
    expect(p.returncode == 0, f"rc={p.returncode}\n{out}\n{err}")
    expect(seen, f"no copy of the home seen\n{out}\n{err}")
    expect(not bad, f"copied to the agent: {bad}")
    expect(seen[0][0] == os.getuid(), f"the copy's owner is {seen[0][0]}, not the supervisor")


@test
def home_copy_for_builtin_steps_is_bounded():
    """A 200 MB sparse file in the home (free to make) with DROVER_DOCKER_HOME_MAX=64M: the
    built-in step fails naming the bound instead of copying it to the agent."""
    s = spec([run("dd if=/dev/zero of=$HOME/big bs=1 count=0 seek=200M 2>/dev/null; ls -l ~/big"),
              {"type": "store_artifacts", "path": "~/big", "destination": "big"}])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    try:
        p = subprocess.run([DROVER, "job", "--spec", f.name], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, DROVER_DOCKER_HOME_MAX="64M"))
    finally:
        os.unlink(f.name)
    both = p.stdout + p.stderr
    expect(p.returncode != 0 and "larger than" in both, f"rc={p.returncode}\n{both[-3000:]}")
    found = [os.path.join(d, x) for d, _, fs in os.walk(STORE) for x in fs if x == "big"]
    expect(not found, f"the 200 MB file was stored: {found}")


@test
def nothing_of_drovers_is_left_on_the_engine():
    cs, ns = drover_objects()
    expect(cs == [] and ns == [], f"left over: {cs} {ns}")


def main():
    for i, (ok, name, msg) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for line in msg.splitlines()[-40:]:
            print(f"#   {line}")
    print(f"1..{len(results)}")
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
