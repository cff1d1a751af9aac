#!/usr/bin/env python3
"""bench/cgroup_attach.py: does moving a process into the v1 cgroups wait for an RCU grace period
on this kernel? (docs/sandbox.md, "Start-up")

As root on a v1/hybrid host: N times, 0.1-0.4 s apart, a fresh idle child is moved into a probe
group of each of the five hierarchies drover uses; each write is timed and its voluntary context
switches counted (a grace-period wait sleeps). With `perf` installed, every attach on the machine
is traced meanwhile (cgroup:cgroup_attach_task), to show how long before each probe anyone else
had attached (an attach in the last grace period would hide the wait).
Usage: bench/cgroup_attach.py [N]      (never part of the test suite)
"""
import json, os, random, re, resource, shutil, subprocess, sys, tempfile, time

CTRLS = ["memory", "cpu", "cpuacct", "pids", "freezer"]


def probe(n, out):
    name = "drover-attach-probe-%d" % os.getpid()
    dirs = {c: "/sys/fs/cgroup/%s/%s" % (c, name) for c in CTRLS}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    fds = {c: os.open(dirs[c] + "/cgroup.procs", os.O_WRONLY) for c in CTRLS}
    rows = []
    try:
        for _ in range(n):
            time.sleep(random.uniform(0.1, 0.4))
            p = subprocess.Popen(["sleep", "30"])
            w = []
            for c in CTRLS:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
                t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
                os.write(fds[c], str(p.pid).encode())
                t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
                w.append([t0, (t1 - t0) * 1e3,
                          resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before])
            rows.append({"pid": p.pid, "w": w})
            p.kill()
            p.wait()
    finally:
        for c in CTRLS:
            os.close(fds[c])
            for _ in range(100):
                try:
                    os.rmdir(dirs[c])
                    break
                except OSError:
                    time.sleep(0.01)
    json.dump(rows, open(out, "w"))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    if os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/pids"):
        sys.exit("run as root on a cgroup v1 or hybrid host")
    tmp = tempfile.mkdtemp()
    res = os.path.join(tmp, "rows.json")
    trace = shutil.which("perf")
    others = None
    if trace:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-e",
                        "cgroup:cgroup_attach_task", "-a", "-o", data, "--",
                        sys.executable, __file__, "--probe", str(n), res],
                       check=True, stderr=subprocess.DEVNULL)
        txt = subprocess.run(["perf", "script", "-i", data, "-F", "time,event,trace"],
                             capture_output=True, text=True).stdout
        others = [(float(m.group(1)), int(m.group(2))) for m in
                  re.finditer(r"([\d.]+):.*?pid=(\d+)", txt)]
    else:
        probe(n, res)
    rows = json.load(open(res))
    shutil.rmtree(tmp)
    mine = {r["pid"] for r in rows}
    print("# kernel %s, rcu_expedited=%s" % (os.uname().release,
          open("/sys/kernel/rcu_expedited").read().strip()))
    print("%14s %12s %8s %12s" % ("gap ms", "first ms", "sleeps", "all five ms"))
    for r in rows:
        t0 = r["w"][0][0]
        gap = "-"
        if others is not None:
            prev = [t for t, pid in others if pid not in mine and t < t0]
            gap = "%.1f" % ((t0 - max(prev)) * 1e3) if prev else "none"
        print("%14s %12.3f %8d %12.3f" % (gap, r["w"][0][1], r["w"][0][2],
                                          sum(x[1] for x in r["w"])))
    firsts = sorted(r["w"][0][1] for r in rows)
    print("# first write: median %.3f ms, max %.3f ms; voluntary sleeps in any write: %d" % (
        firsts[len(firsts) // 2], firsts[-1], sum(x[2] for r in rows for x in r["w"])))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        probe(int(sys.argv[2]), sys.argv[3])
    else:
        main()
