#!/usr/bin/env python3
"""escape_test.py: a hostile job tries to break out of `drover sandbox`; every attempt must fail.

Each test runs probes inside a fresh sandbox (python3 of the host root, read-only) and asserts on
what they report. Prints TAP.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, count, expect, main, run_job, test  # noqa: E402


# x86_64 syscall numbers the probes use
PROBE_LIB = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(ctypes.c_long(nr), *args)
    return r, ctypes.get_errno()
def report(name, r_e):
    r, e = r_e
    print(f"{name} {'ok' if r >= 0 else 'denied'} {os.strerror(e) if r < 0 else r}")
'''


def sandbox(code=None, argv=None, opts=(), timeout=60, input=None):
    cmd = [DROVER, "sandbox", *opts, "--"]
    if code is not None:
        cmd += ["/usr/bin/python3", "-c", PROBE_LIB + code]
    else:
        cmd += argv
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    return p.returncode, p.stdout, p.stderr






@test
def agent_key_files_are_not_readable():
    # a world-readable "credential" in a path drover masks by default, and one masked by option
    os.makedirs("/var/lib/drover", exist_ok=True)
    secret = "/var/lib/drover/escape-test-secret.key"
    with open(secret, "w") as f:
        f.write("TOP-SECRET-AGENT-KEY\n")
    os.chmod(secret, 0o644)
    d = tempfile.mkdtemp(prefix="drover-escape-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "token"), "w") as f:
        f.write("TOP-SECRET-TOKEN\n")
    os.chmod(os.path.join(d, "token"), 0o644)
    try:
        rc, out, err = sandbox(argv=["/bin/sh", "-c",
                                     f"cat {secret} {d}/token /root/.bashrc 2>&1; ls /etc/drover 2>&1; true"],
                               opts=["--mask", d])
        expect(rc == 0, f"sandbox failed: {err}")
        expect("TOP-SECRET" not in out, f"a masked credential was readable: {out}")
    finally:
        os.unlink(secret)
        shutil.rmtree(d)


@test
def host_pids_are_invisible():
    host = subprocess.Popen(["sleep", "60"])
    try:
        rc, out, err = sandbox(f'''
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids", pids)
try:
    os.kill({host.pid}, 0); print("host-pid visible")
except ProcessLookupError:
    print("host-pid invisible")
''')
        expect("host-pid invisible" in out, out + err)
        pids = eval(out.split("pids ", 1)[1].splitlines()[0])
        expect(len(pids) <= 3 and 1 in pids, f"unexpected pids inside: {pids}")
    finally:
        host.kill()
        host.wait()


@test
def mount_unshare_setns_are_refused():
    for opts in ([], ["--user", "root"]):
        rc, out, err = sandbox('''
report("mount", sc(165, b"none", b"/tmp", b"tmpfs", 0, 0))
report("unshare-user", sc(272, 0x10000000))
report("unshare-mnt", sc(272, 0x00020000))
fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
report("setns", sc(308, fd, 0))
report("pivot_root", sc(155, b"/tmp", b"/tmp"))
''', opts=opts)
        for name in ("mount", "unshare-user", "unshare-mnt", "setns", "pivot_root"):
            expect(f"{name} denied" in out, f"{name} not denied (opts {opts}): {out} {err}")


@test
def nested_user_namespace_tool_fails():
    rc, out, err = sandbox(argv=["/bin/sh", "-c", "unshare -U -r id; echo rc=$?"], opts=["--user", "root"])
    expect("rc=0" not in out, f"unshare -U worked inside: {out} {err}")


@test
def ptrace_of_pid1_and_others_fails():
    rc, out, err = sandbox('''
report("ptrace-attach-1", sc(101, 16, 1, 0, 0))
''')
    expect("ptrace-attach-1 denied" in out, out + err)


@test
def keyctl_bpf_modules_kexec_are_refused():
    for opts in ([], ["--user", "root"]):
        rc, out, err = sandbox('''
report("keyctl", sc(250, 0, 0, 0, 0, 0))
report("add_key", sc(248, b"user", b"x", b"y", 1, -2))
report("bpf", sc(321, 0, 0, 0))
report("init_module", sc(175, 0, 0, b""))
report("finit_module", sc(313, 0, b"", 0))
report("delete_module", sc(176, b"ext4", 0))
report("kexec_load", sc(246, 0, 0, 0, 0))
report("open_by_handle_at", sc(304, 0, 0, 0))
''', opts=opts)
        for name in ("keyctl", "add_key", "bpf", "init_module", "finit_module", "delete_module",
                     "kexec_load", "open_by_handle_at"):
            expect(f"{name} denied" in out, f"{name} not denied (opts {opts}): {out} {err}")


@test
def host_rootfs_is_read_only():
    marker = f"/usr/drover-escape-{os.getpid()}"
    rc, out, err = sandbox(argv=["/bin/sh", "-c", f"touch {marker} /etc/x /bin/x 2>&1; echo done"],
                           opts=["--user", "root"])
    expect(not os.path.exists(marker), "the job wrote into the host's /usr")
    expect("Read-only file system" in out or "Permission denied" in out, out)


@test
def chroot_escape_stays_inside():
    rc, out, err = sandbox('''
os.makedirs("/tmp/jail", exist_ok=True)
fd = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(fd)
for _ in range(64):
    os.chdir("..")
os.chroot(".")
print("root-entries", sorted(os.listdir("/")))
print("home", os.path.isdir("/home/circleci"))
print("hostdrover", os.path.exists("/var/lib/drover/escape-never"))
''', opts=["--user", "root"])
    expect("home True" in out or "home False" in out, out + err)
    # after the classic escape we must still be in the sandbox root: its /proc shows pid 1 = init
    rc2, out2, _ = sandbox(argv=["/bin/sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"])
    expect(rc == 0, f"probe failed: {err}")
    expect("drover" in out2 or "sandbox" in out2, f"pid 1 is not drover's init: {out2}")


@test
def setuid_binaries_do_not_raise_privileges():
    rc, out, err = sandbox(argv=["/bin/sh", "-c",
                                 "grep -E 'NoNewPrivs|CapEff|CapBnd' /proc/self/status; "
                                 "/usr/bin/passwd -S root 2>&1; su -c id root </dev/null 2>&1; "
                                 "grep ' / ' /proc/self/mountinfo"])
    expect("NoNewPrivs:\t1" in out, out)
    expect("CapEff:\t0000000000000000" in out, out)
    expect("uid=0" not in out, f"a setuid binary gave root: {out}")
    expect("nosuid" in out, f"the root is not nosuid: {out}")


@test
def hostname_change_does_not_reach_the_host():
    before = socket.gethostname()
    rc, out, err = sandbox(argv=["/bin/sh", "-c", "hostname evil-host 2>&1; hostname"])
    expect(socket.gethostname() == before, "the host's hostname changed")
    # root inside has Docker's capability set, without CAP_SYS_ADMIN: refused as in Docker
    rc, out, err = sandbox(argv=["/bin/sh", "-c", "hostname evil-root; hostname"], opts=["--user", "root"])
    expect(socket.gethostname() == before, "the host's hostname changed (root inside)")
    expect(out.strip().splitlines()[-1] == "drover", f"the sandbox hostname changed: {out} {err}")


@test
def host_loopback_unreachable_with_network_none():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    accepted = []
    def accept():
        srv.settimeout(10)
        try:
            c, _ = srv.accept()
            accepted.append(c)
        except OSError:
            pass
    t = threading.Thread(target=accept)
    t.start()
    try:
        rc, out, err = sandbox(f'''
import socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("127.0.0.1", {port})); print("connected")
except OSError as e:
    print("refused", e)
''', opts=["--net", "none"])
        expect("connected" not in out, f"reached the host's loopback: {out}")
        expect("refused" in out, out + err)
    finally:
        srv.close()
        t.join()
    expect(not accepted, "the host server accepted a connection from the sandbox")


@test
def fork_bomb_is_contained_by_the_pids_limit():
    tag = f"drover-bomb-{os.getpid()}"
    rc, out, err = sandbox(argv=["/bin/bash", "-c",
                                 f"for i in $(seq 300); do (exec -a {tag} sleep 30) & done 2>/dev/null; "
                                 "echo started; true"],
                           opts=["--pids", "64"], timeout=120)
    # bash gives up (exit 254) when fork keeps failing: the limit held
    expect(rc != 0 and "started" not in out, f"300 processes fit under a limit of 64: rc={rc} {out}")
    # nothing of the job survives its sandbox
    deadline = time.time() + 5
    left = ""
    while time.time() < deadline:
        left = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
        if not left.strip():
            break
        time.sleep(0.1)
    expect(left.strip() == "", f"processes left behind: {left}")


@test
def memory_hog_is_killed_and_reported():
    rc, out, err = sandbox('''
blocks = []
for i in range(400):
    blocks.append(bytearray(1 << 20))
print("allocated 400 MiB")
''', opts=["--memory", "64M"])
    expect(rc == 137, f"expected SIGKILL (137), got {rc}: {err}")
    expect("out of memory (limit" in err, f"no OOM report: {err}")
    expect("allocated" not in out, out)


@test
def disk_filler_hits_its_bound_not_the_host():
    rc, out, err = sandbox(argv=["/bin/sh", "-c",
                                 "dd if=/dev/zero of=$HOME/big bs=1M count=200 2>&1; echo rc=$?"],
                           opts=["--disk", "32M", "--memory", "512M"])
    expect("No space left on device" in out, out + err)
    expect("rc=0" not in out, out)


@test
def killing_drover_kills_the_whole_tree():
    tag = f"drover-kill-{os.getpid()}"
    p = subprocess.Popen([DROVER, "sandbox", "--", "/bin/sh", "-c",
                          f"sleep 1000 & sleep 1000 & (exec -a {tag} sleep 1000) & wait"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    expect(subprocess.run(["pgrep", "-f", tag], capture_output=True).returncode == 0,
           "the job did not start")
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 5
    while time.time() < deadline:
        if subprocess.run(["pgrep", "-f", tag], capture_output=True).returncode != 0:
            break
        time.sleep(0.1)
    left = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
    expect(left.strip() == "", f"processes survived their supervisor: {left}")


@test
def sigterm_to_drover_ends_the_job_and_cleans_the_cgroup():
    p = subprocess.Popen([DROVER, "sandbox", "--", "/bin/sh", "-c", "sleep 1000 & wait"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    cg = f"/sys/fs/cgroup/pids/drover/cli-{p.pid}"
    cg2 = f"/sys/fs/cgroup/drover/cli-{p.pid}"
    expect(os.path.isdir(cg) or os.path.isdir(cg2), "no job cgroup while running")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=10)
    expect(rc == 128 + signal.SIGTERM, f"exit status {rc}")
    expect(not os.path.exists(cg) and not os.path.exists(cg2), "the job cgroup was left behind")


@test
def nothing_of_the_agent_environment_leaks_in():
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY="leak-me", DROVER_JOIN_TOKEN="leak-me-too")
    p = subprocess.run([DROVER, "sandbox", "--env", "ONLY=this", "--", "/usr/bin/env"],
                       capture_output=True, text=True, env=env, pass_fds=())
    expect("leak-me" not in p.stdout, p.stdout)
    expect("ONLY=this" in p.stdout, p.stdout)
    r, w = os.pipe()
    os.set_inheritable(w, True)
    p = subprocess.run([DROVER, "sandbox", "--", "/bin/sh", "-c", "ls /proc/self/fd"],
                       capture_output=True, text=True, pass_fds=(w,))
    os.close(r)
    os.close(w)
    fds = sorted(int(x) for x in p.stdout.split())
    expect(max(fds) <= 3, f"inherited fds inside: {fds}")




if __name__ == "__main__":
    main()
