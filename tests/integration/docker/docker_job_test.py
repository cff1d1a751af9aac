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

from dockerlib import *  # noqa: F401,F403
from dockerlib import results, main  # noqa: F401


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
def home_copy_for_builtin_steps_is_files_dirs_and_symlinks_only():
    """issue 20 finding 3: before a built-in step the job's home was copied to the agent with
    its device nodes and setuid binaries, owned by root. Now only regular files, directories and
    symlinks, no special mode bits, owned by the supervisor. A symlink is copied as a symlink:
    its target is never resolved on the agent (a link to /etc/shadow stays a link, the agent's
    shadow is not read), and a cache of a tree with links keeps them (node_modules/.bin)."""
    before = mirrors()
    s = spec([run("mknod ~/devnode c 1 3 && cp /bin/busybox ~/suid && chmod 4755 ~/suid && "
                  "ln -s /etc/shadow ~/link && echo art > ~/file && chown 1234:1234 ~/file && "
                  "mkdir -p ~/d/lib ~/d/.bin && echo tool-$((6*7)) > ~/d/lib/tool && "
                  "ln -s ../lib/tool ~/d/.bin/tool && ln -s /etc/shadow ~/d/shadow"),
              {"type": "store_artifacts", "path": "~/file", "destination": "f.txt"},
              {"type": "save_cache", "key": f"links-{os.getpid()}", "paths": ["~/d"]},
              run("rm -rf ~/d"),
              {"type": "restore_cache", "keys": [f"links-{os.getpid()}"]},
              run("readlink ~/d/.bin/tool; readlink ~/d/shadow; cat ~/d/.bin/tool; sleep 6")])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
    p = subprocess.Popen([DROVER, "job", "--spec", f.name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen, bad, links = [], [], {}
    try:
        deadline = time.time() + 40
        while time.time() < deadline and not seen and p.poll() is None:
            for m in mirrors() - before:
                for d, dirs, files in os.walk(m):
                    for name in dirs + files:
                        path = os.path.join(d, name)
                        st = os.lstat(path)
                        if name == "file":
                            seen.append((st.st_uid, st.st_mode))
                        if stat.S_ISLNK(st.st_mode):
                            links[name] = os.readlink(path)
                        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) or \
                                st.st_mode & 0o7000:
                            bad.append((name, oct(st.st_mode)))
            time.sleep(0.2)
        out, err = p.communicate(timeout=90)
    finally:
        os.unlink(f.name)
    expect(p.returncode == 0, f"rc={p.returncode}\n{out}\n{err}")
    expect(seen, f"no copy of the home seen\n{out}\n{err}")
    expect(not bad, f"copied to the agent: {bad}")
    expect(seen[0][0] == os.getuid(), f"the copy's owner is {seen[0][0]}, not the supervisor")
    expect(links.get("link") == "/etc/shadow", f"the symlink was not copied as one: {links}")
    # the cache kept the links as links, and the agent's shadow never went into it
    expect("../lib/tool\n/etc/shadow\ntool-42" in out, f"links lost in the cache:\n{out}")
    with open("/etc/shadow", "rb") as sh:
        shadow = sh.read()
    for d, _, fs in os.walk(STORE):
        for x in fs:
            data = open(os.path.join(d, x), "rb").read()
            if data[:4] == b"\x28\xb5\x2f\xfd":
                data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True).stdout
            expect(shadow not in data, f"the agent's /etc/shadow is in {x}")


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


if __name__ == "__main__":
    sys.exit(main())
