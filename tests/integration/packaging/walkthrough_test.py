#!/usr/bin/env python3
"""walkthrough_test.py: docs/walkthrough-operator.md works as written: its ```sh blocks run in
order, unchanged, as one bash -e script, in a throwaway copy of this machine — an overlay on / in
private mount, network and pid namespaces, chrooted, with a fresh /run and /tmp — where
`systemctl` and `journalctl` are stand-ins (start = the unit's ExecStart with its EnvironmentFile
and ConditionFileNotEmpty, returning once the agent logged event=registered, as Type=notify
does; journalctl -u = that log). The package is built by packaging/build.sh in the copy
(DROVER_PKG_BUILDDIR: the release build dir packaging_packages uses, copied up, so it is
incremental) and installed with dpkg. TAP output."""
import os
import re
import subprocess
import sys
import tempfile

SRC = os.path.abspath(os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__),
                                                                "..", "..", "..")))
BUILD = os.environ.get("DROVER_BUILD", os.path.join(SRC, "build"))
DOC = os.path.join(SRC, "docs", "walkthrough-operator.md")

SYSTEMCTL = r'''#!/bin/bash
# stand-in for systemctl (walkthrough_test.py): start/stop/is-active of drover-agent
set -u
unit=/lib/systemd/system/drover-agent.service
log=/var/log/drover-agent.log
case "${1:-}" in
start)
        [ "${2%.service}" = drover-agent ] || { echo "stand-in: only drover-agent" >&2; exit 1; }
        f=$(sed -n 's/^ConditionFileNotEmpty=//p' "$unit")
        [ -s "$f" ] || { echo "condition $f failed: skipped" >&2; exit 0; }
        cmd=$(sed -n 's/^ExecStart=//p' "$unit")
        mkdir -p /run/drover
        (set -a; [ -f /etc/default/drover-agent ] && . /etc/default/drover-agent; set +a
         exec $cmd) >"$log" 2>&1 &
        echo $! >/run/drover-agent.pid
        for _ in $(seq 300); do
                grep -q 'event=registered' "$log" && exit 0
                kill -0 "$!" 2>/dev/null || { cat "$log" >&2; exit 1; }
                sleep 0.1
        done
        cat "$log" >&2
        exit 1 ;;
stop) kill -TERM "$(cat /run/drover-agent.pid)" ;;
is-active) kill -0 "$(cat /run/drover-agent.pid 2>/dev/null)" 2>/dev/null && echo active ;;
*) exec /bin/systemctl "$@" ;; # enable, preset (maintainer scripts) work without systemd running
esac
'''
JOURNALCTL = r'''#!/bin/bash
# stand-in for journalctl -u drover-agent (walkthrough_test.py)
cat /var/log/drover-agent.log
'''

SETUP = r'''
set -euo pipefail
ip link set lo up
t=$(mktemp -d)
mount -t tmpfs -o size=8g tmpfs "$t"
mkdir "$t/u" "$t/w" "$t/r"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/u,workdir=$t/w" "$t/r"
r=$t/r
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
# the checkout and its build dir as they are (a checkout under /tmp is hidden by the fresh /tmp)
for d in "$DROVER_SRC" "$DROVER_BUILD"; do
        mkdir -p "$r$d"
        mount --rbind "$d" "$r$d"
done
install -m 0755 "$STANDIN_DIR/systemctl" "$STANDIN_DIR/journalctl" "$r/usr/local/sbin/"
install -m 0644 "$STANDIN_DIR/walkthrough.sh" "$r/walkthrough.sh"
mkdir -p "$r/.oldroot"
cd "$r"
# pivot_root, not a bare chroot: in a chroot the kernel refuses new user namespaces (drover
# check's probe, the sandbox's jobs); after pivot_root this root is the namespace's own
pivot_root . .oldroot
umount -l /.oldroot
rc=0
chroot . /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root DROVER_PKG_BUILDDIR="$DROVER_PKG_BUILDDIR" TERM=dumb \
        bash -c 'cd "$0" && bash /walkthrough.sh' "$DROVER_SRC" || rc=$?
kill -9 -1 2>/dev/null || true
exit $rc
'''


def blocks(text):
    return [b for b in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)]


def main():
    n, fails = 0, 0

    def tap(ok, name, detail=""):
        nonlocal n, fails
        n += 1
        fails += not ok
        print(("ok" if ok else "not ok") + f" {n} - {name}", flush=True)
        if not ok:
            for line in detail[-6000:].splitlines():
                print("# " + line)

    sh = blocks(open(DOC).read())
    tap(len(sh) >= 5, "walkthrough_has_command_blocks", f"{len(sh)} blocks")
    with tempfile.TemporaryDirectory(prefix="drover-walkthrough-") as d:
        with open(os.path.join(d, "walkthrough.sh"), "w") as f:
            f.write("set -euxo pipefail\n" + "\n".join(sh))
        for name, body in (("systemctl", SYSTEMCTL), ("journalctl", JOURNALCTL)):
            with open(os.path.join(d, name), "w") as f:
                f.write(body)
        env = dict(os.environ, STANDIN_DIR=d, DROVER_SRC=SRC, DROVER_BUILD=os.path.abspath(BUILD),
                   DROVER_PKG_BUILDDIR=os.path.join(BUILD, "packaging-release"))
        r = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "bash", "-c",
                            SETUP], env=env, capture_output=True, text=True, timeout=1500)
        out = r.stdout + r.stderr
        tap(r.returncode == 0, "walkthrough_runs_as_written", out)
        tap("event=registered" in r.stdout and "node=" in r.stdout,
            "agent_registered_with_the_control_plane", out)
        tap(re.search(r"^ready: ", r.stdout, re.M) is not None, "drover_check_ready", out)
    print(f"1..{n}")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
