#!/bin/bash
# bench/sandbox.sh: start-up cost of one sandboxed /bin/true — drover-sandbox (and, for reference,
# `drover sandbox`) against bare unshare, bubblewrap, runc and (when an engine is reachable)
# docker, in one hyperfine run; ratios against unshare and bwrap.
# Usage: bench/sandbox.sh [BUILD_DIR] [RUNS]   (as root; never part of the test suite)
# As root with /sys/kernel/rcu_expedited at 0, drover-sandbox is measured twice: as the machine is,
# and with rcu_expedited=1 set just before each of its runs (restored before every other command
# and at exit) — the operator knob for the v1 cgroup migration (docs/sandbox.md).
# Then the same three interleaved (one run of each per round, so load changes hit all alike),
# and, with perf installed, CPU time (perf stat task-clock, every process of the command
# summed): on a shared machine it moves far less with the load than wall time does.
set -eu
BUILD=${1:-build}
RUNS=${2:-200}
DROVER=${DROVER:-$BUILD/agent/drover}
LEAN=${DROVER_SANDBOX:-$BUILD/sandbox/drover-sandbox}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "needs hyperfine (Debian: hyperfine)" >&2; exit 1; }
[ -x "$LEAN" ] || { echo "no drover-sandbox at $LEAN (build first)" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/drover-bench.XXXXXX)
RCU=/sys/kernel/rcu_expedited
RCU_ORIG=$(cat $RCU 2>/dev/null || echo)
cleanup() {
        [ -n "$RCU_ORIG" ] && [ -w $RCU ] && echo "$RCU_ORIG" >$RCU
        rm -rf "$WORK"
}
trap cleanup EXIT
cmds=() preps=()
add() { # add NAME PREPARE CMD
        cmds+=(--command-name "$1" "$3")
        preps+=(--prepare "$2")
}
restore="true"
if [ "$RCU_ORIG" = 0 ] && [ -w $RCU ]; then
        restore="sh -c 'echo 0 >$RCU'"
fi
add "drover-sandbox" "$restore" "$LEAN -- /bin/true"
if [ "$RCU_ORIG" = 0 ] && [ -w $RCU ]; then
        add "drover-sandbox rcu_exp" "sh -c 'echo 1 >$RCU'" "$LEAN -- /bin/true"
fi
if [ -x "$DROVER" ]; then
        add "drover sandbox" "$restore" "$DROVER sandbox -- /bin/true"
fi
add "unshare" "$restore" "unshare -Urpfnium --mount-proc true"
if command -v bwrap >/dev/null; then
        add "bwrap" "$restore" "bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true"
else
        echo "# bwrap not installed (Debian: bubblewrap): skipped"
fi
BB=$(command -v busybox || true)
if command -v runc >/dev/null && [ -n "$BB" ]; then
        mkdir -p "$WORK/bundle/rootfs/bin"
        cp "$BB" "$WORK/bundle/rootfs/bin/busybox"
        ln -s busybox "$WORK/bundle/rootfs/bin/true"
        (cd "$WORK/bundle" && runc spec)
        python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
PY
        add "runc" "$restore" "runc run -b $WORK/bundle drover-bench-$$"
else
        echo "# runc or busybox not installed (Debian: runc, busybox-static): skipped"
fi
DOCKER_IMG=busybox
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1 && [ -f /tmp/drover-peers/dockerd.env ]; then
        # the test peer of scripts/peers/dockerd.sh (its socket, its local busybox image)
        DOCKER_HOST=unix://$(sed -n 's/^DOCKER_SOCK=//p' /tmp/drover-peers/dockerd.env)
        export DOCKER_HOST
        DOCKER_IMG=$(sed -n 's/^DOCKER_IMAGE=//p' /tmp/drover-peers/dockerd.env)
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        docker image inspect "$DOCKER_IMG" >/dev/null 2>&1 || docker pull -q "$DOCKER_IMG" >/dev/null
        add "docker" "$restore" "docker run --rm --network none $DOCKER_IMG true"
else
        echo "# no Docker engine reachable: docker run skipped"
fi
echo "# kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), cgroups: $(stat -f -c %T /sys/fs/cgroup)$( [ -d /sys/fs/cgroup/unified ] && echo ' + unified (hybrid)'), rcu_expedited=${RCU_ORIG:-?}, drover-sandbox: $(file -b "$LEAN" | cut -d, -f1-2)"
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$WORK/result.json" "${preps[@]}" "${cmds[@]}"
python3 - "$WORK/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
by = {x["command"]: x for x in r}
def ratio(x, name, key):
    return "%13.2fx" % (x[key] / by[name][key]) if name in by else "%14s" % "-"
print("\n%-22s %9s %10s %14s %14s %14s" % ("command", "mean ms", "median ms", "mean/unshare",
                                           "median/unshare", "median/bwrap"))
for x in r:
    print("%-22s %9.2f %10.2f %s %s %s" % (x["command"], x["mean"] * 1e3, x["median"] * 1e3,
                                          ratio(x, "unshare", "mean"), ratio(x, "unshare", "median"),
                                          ratio(x, "bwrap", "median")))
PY

# Interleaved: each round runs every command once, so a change of load hits all of them alike
# (hyperfine runs all runs of one command, then the next). Wall time from python's fork+exec.
echo
python3 - "$RUNS" "$LEAN" <<'PY'
import statistics, subprocess, sys, time, shutil
runs, lean = int(sys.argv[1]), sys.argv[2]
cmds = [("drover-sandbox", [lean, "--", "/bin/true"]),
        ("unshare", "unshare -Urpfnium --mount-proc true".split())]
if shutil.which("bwrap"):
    cmds.append(("bwrap", "bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true".split()))
res = {n: [] for n, _ in cmds}
for _ in range(runs):
    for n, c in cmds:
        t = time.perf_counter()
        subprocess.run(c, check=True)
        res[n].append((time.perf_counter() - t) * 1e3)
med = {n: statistics.median(v) for n, v in res.items()}
mean = {n: statistics.mean(v) for n, v in res.items()}
print("%-22s %9s %10s %14s %14s %14s" % ("interleaved", "mean ms", "median ms", "mean/unshare",
                                         "median/unshare", "median/bwrap"))
for n, _ in cmds:
    print("%-22s %9.2f %10.2f %13.2fx %13.2fx %14s" % (
        n, mean[n], med[n], mean[n] / mean["unshare"], med[n] / med["unshare"],
        "%.2fx" % (med[n] / med["bwrap"]) if "bwrap" in med else "-"))
PY
command -v perf >/dev/null || { echo "# perf not installed: no CPU-time comparison"; exit 0; }
cpu_ms() { # CPU ms (task-clock of the command and all its children), mean of $RUNS/2 runs
        perf stat -x, -r $((RUNS / 2)) -e task-clock "$@" 2>&1 >/dev/null | awk -F, '$3 == "task-clock" {print $1}'
}
echo
printf '%-22s %12s %14s %14s\n' "command" "CPU ms" "CPU/unshare" "CPU/bwrap"
u=$(cpu_ms unshare -Urpfnium --mount-proc true)
b=$(command -v bwrap >/dev/null && cpu_ms bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true || echo)
row() { printf '%-22s %12.2f %13.2fx %14s\n' "$1" "$2" "$(echo "$2 / $u" | bc -l)" "$( [ -n "$b" ] && printf '%.2fx' "$(echo "$2 / $b" | bc -l)" || echo -)"; }
row "drover-sandbox" "$(cpu_ms "$LEAN" -- /bin/true)"
[ -x "$DROVER" ] && row "drover sandbox" "$(cpu_ms "$DROVER" sandbox -- /bin/true)"
row "unshare" "$u"
[ -n "$b" ] && row "bwrap" "$b"
exit 0
