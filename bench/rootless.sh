#!/bin/bash
# bench/rootless.sh: start-up cost of one sandboxed /bin/true, rootless against root mode and
# against bubblewrap run by the same ordinary user — drover-sandbox as root, as the user with
# subordinate ids (newuidmap/newgidmap: two helper execs per start) and with a single-id map,
# and `bwrap --unshare-all` as the user; one hyperfine run, ratios against root mode and bwrap.
# Every command goes through setpriv (root's too: no PAM, unlike runuser), so its cost is in all
# rows alike.
# Usage: bench/rootless.sh [BUILD_DIR] [RUNS]   (as root: it creates the user, as the tests do;
# never part of the test suite). Figures: docs/BENCHMARKS.md "Rootless start".
set -eu
BUILD=${1:-build}
RUNS=${2:-100}
LEAN=$(realpath "${DROVER_SANDBOX:-$BUILD/sandbox/drover-sandbox}")
HERE=$(dirname "$(realpath "$0")")
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "needs hyperfine (Debian: hyperfine)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "needs bwrap (Debian: bubblewrap)" >&2; exit 1; }
[ -x "$LEAN" ] || { echo "no drover-sandbox at $LEAN (build first)" >&2; exit 1; }
U=$(DROVER="$LEAN" python3 "$HERE/../tests/integration/rootless/as_user.py" --setup)
UHOME=$(getent passwd "$U" | cut -d: -f6)
WORK=$(mktemp -d /var/tmp/drover-bench-rl.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
as_user="setpriv --reuid=$U --regid=$U --init-groups env HOME=$UHOME USER=$U"
hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/r.json" \
        --command-name "root" "setpriv --reuid=0 $LEAN -- /bin/true" \
        --command-name "rootless subids" "$as_user $LEAN -- /bin/true" \
        --command-name "rootless single-id" "$as_user DROVER_ROOTLESS_SINGLE_ID=1 $LEAN -- /bin/true" \
        --command-name "bwrap (user)" "$as_user bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp /bin/true"
python3 - "$WORK/r.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
print(f"{'command':22} {'median ms':>10} {'vs root':>8} {'vs bwrap':>9}")
for k, m in med.items():
    print(f"{k:22} {m:10.2f} {m / med['root']:8.2f} {m / med['bwrap (user)']:9.2f}")
PY
