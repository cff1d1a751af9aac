#!/usr/bin/env bash
# fresh-machine.sh: the README's commands on a fresh Debian 12, as a new user would run them (as
# root; scripts/test.sh runs this as a CI stage). Fails if any package the build, the demo or the
# default `drover run` needs is missing from scripts/deps/*.txt.
#  1. debootstrap --variant=minbase bookworm into a new directory, from this machine's Debian
#     mirror (the URIs of /etc/apt/sources.list.d/debian.sources, read now);
#  2. the commit under test (HEAD of this checkout; uncommitted changes are NOT included) is cloned
#     into it as /src/drover;
#  3. in the root: `bash scripts/demo.sh` (the README's first command) must succeed and print the
#     demo workflow's success;
#  4. in the root: `bash scripts/setup.sh` (every list) and a -Werror build of the whole tree.
# The root is entered as a chroot would be, with /proc, /sys (with the cgroup mounts) and /dev,
# but through pivot_root in a private mount namespace (see docs/testing.md: the kernel refuses
# CLONE_NEWUSER, which drover's sandbox needs, to a chrooted process). Every mount lives in that
# namespace: it goes away with its last process, whatever happens; the trap also kills what is
# left, checks that nothing is mounted under the root and removes it.
# Env: FRESH_CACHE (default /var/cache/drover-fresh): downloaded .debs kept between runs, so a run
# costs the installs, not the downloads; FRESH_KEEP=1 keeps the root (its path is printed).
set -euo pipefail

if [ "${1:-}" = --inside ]; then # (in the private mount namespace) ROOT CMD
        r=$2
        mount --make-rprivate /
        mount --rbind "$r" "$r"
        mount -t proc proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        mount --bind "$FRESH_CACHE/apt" "$r/var/cache/apt/archives"
        cd "$r"
        mkdir -p .old-root
        pivot_root . .old-root
        umount -l /.old-root
        rmdir /.old-root
        exec chroot / /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root TERM=dumb /bin/bash -c "$3"
fi

[ "$(id -u)" = 0 ] || { echo "fresh-machine: run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."
src=$(pwd)
t0=$(date +%s)
step() { printf 'fresh-machine: %s (%ds)\n' "$*" $(($(date +%s) - t0)); }
export FRESH_CACHE=${FRESH_CACHE:-/var/cache/drover-fresh}
mkdir -p "$FRESH_CACHE/apt/partial" "$FRESH_CACHE/debootstrap"

# the URIs of the stanza that carries the bookworm suite itself (not -security)
mirror=$(awk -v RS= '/Suites:[^\n]*bookworm( |\n|$)/ { for (i = 1; i <= NF; i++) if ($i == "URIs:") { print $(i + 1); exit } }' \
        /etc/apt/sources.list.d/debian.sources)
[ -n "$mirror" ] || { echo "fresh-machine: no bookworm URIs in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }

root=$(mktemp -d /var/tmp/drover-fresh.XXXXXX)
# a machine's / is 0755 (mktemp's 0700 would stop the jobs' unprivileged uids at the root: the
# sandbox's pid 1 fails with "mount tmpfs on /tmp: Permission denied")
chmod 755 "$root"
log=$root.log
inner=
cleanup() {
        local rc=$?
        if [ -n "$inner" ]; then # what runs: TERM, then KILL after 10 s
                kill -TERM -- -"$inner" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 -- -"$inner" 2>/dev/null || break; sleep 0.2; done
                kill -KILL -- -"$inner" 2>/dev/null || true
        fi
        wait 2>/dev/null || true
        # the mounts were in the namespace only: none may be visible here
        if findmnt -rn -o TARGET | grep -q "^$root/"; then
                echo "fresh-machine: mounts left under $root, not removing it:" >&2
                findmnt -rn -o TARGET | grep "^$root/" >&2
                exit 1
        fi
        if [ "${FRESH_KEEP:-0}" = 1 ]; then echo "fresh-machine: kept $root"
        else rm -rf --one-file-system "$root"; fi
        if [ "$rc" = 0 ]; then rm -f "$log"; else echo "fresh-machine: the whole output: $log"; fi
        step "done, exit $rc"
        exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_logged WHAT CMD...: CMD in its own process group, in the background so that a signal's trap
# runs at once (and kills the group); its output in $log, shown when it fails
run_logged() {
        local what=$1
        shift
        set -m
        "$@" >"$log" 2>&1 &
        inner=$!
        set +m
        if ! wait "$inner"; then
                inner=
                echo "fresh-machine: FAILED: $what; its last output:"
                tail -n 60 "$log"
                return 1
        fi
        inner=
}
# in_root WHAT CMD: run the shell command CMD in the root
in_root() {
        run_logged "$1" unshare --mount -- bash "$src/scripts/fresh-machine.sh" --inside "$root" "$2"
}

step "debootstrap --variant=minbase bookworm $root $mirror"
# in a private mount namespace too: the /proc and /sys it mounts in the root go away with it
# a second try from an empty root: a download that a passing network fault broke is not the
# project's fault (a missing package is, and fails both tries)
for try in 1 2; do
        if run_logged debootstrap unshare --mount -- debootstrap --variant=minbase \
                --cache-dir="$FRESH_CACHE/debootstrap" bookworm "$root" "$mirror"; then
                break
        fi
        [ ! -f "$root/debootstrap/debootstrap.log" ] || tail -n 40 "$root/debootstrap/debootstrap.log"
        [ "$try" = 1 ] || exit 1
        step "debootstrap failed; once more from an empty root"
        rm -rf --one-file-system "$root" && mkdir -m 755 "$root"
done
# as on a fresh machine, services are not started by package installs in here: nothing runs
# systemd in the root, and no daemon may outlive the stage
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

commit=$(git rev-parse HEAD)
step "clone $commit into /src/drover"
mkdir -p "$root/src/drover"
git -C "$root/src/drover" init -q
git -C "$root/src/drover" fetch -q "$src" "$commit"
git -C "$root/src/drover" checkout -q FETCH_HEAD

step "in the root: bash scripts/demo.sh"
in_root "bash scripts/demo.sh" "cd /src/drover && bash scripts/demo.sh"
# drover run exits 0 only when the workflow succeeded; its summary must list every job as success
# (a job's line starts with its status; other lines at the left, such as "store: ...", are not jobs)
if ! awk '/== summary ==/ { s = 1; next }
        s && $1 ~ /^(success|failed|canceled|timedout|infrastructure_fail|not_run|blocked)$/ {
                n++; if ($1 != "success") bad = 1 }
        END { exit !(s && n > 0 && !bad) }' "$log"; then
        echo "fresh-machine: FAILED: the demo's summary does not list every job as success:"
        tail -n 40 "$log"
        exit 1
fi
grep -E "^setup: " "$log" | cut -c1-200

step "in the root: bash scripts/setup.sh (every list), build the whole tree with -Werror"
in_root "setup.sh + ninja" "cd /src/drover && bash scripts/setup.sh && meson setup build-ci -Dwerror=true && ninja -C build-ci"
grep -E "^setup: " "$log" | cut -c1-200
tail -n 1 "$log"
step "passed"
