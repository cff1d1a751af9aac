#!/usr/bin/env bash
# bench/steps.sh: per-step overhead of drover's step machine against bare `bash -c true`.
# A job of N trivial `run: true` steps runs in one sandbox; the same N commands run as N bare
# `bash -c true` processes. Overhead per step = (job time - one-step job time) / (N - 1) minus
# the bare bash time per command. Prints the figures and the ratio. Needs root (the sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=${DROVER:-build/agent/drover}
N=${N:-200}
RUNS=${RUNS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkspec() { # N
        python3 - "$1" > "$tmp/spec-$1.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"version": 1, "id": {"job": f"bench-{n}", "name": "bench", "build_num": 1},
                  "executor": {"runtime": "sandbox", "kind": "machine"},
                  "steps": [{"type": "run", "name": f"s{i}", "command": "true"} for i in range(n)]}))
PY
}
mkspec 1
mkspec "$N"

best() { # command... -> best wall time in ms over RUNS
        local b=
        for _ in $(seq "$RUNS"); do
                local t0 t1
                t0=$(date +%s%N)
                "$@" >/dev/null 2>&1
                t1=$(date +%s%N)
                local ms=$(( (t1 - t0) / 1000 ))
                if [ -z "$b" ] || [ "$ms" -lt "$b" ]; then b=$ms; fi
        done
        echo "$b"
}

bare() { for _ in $(seq "$N"); do bash -c true; done; }

one=$(best "$DROVER" job --spec "$tmp/spec-1.json")
many=$(best "$DROVER" job --spec "$tmp/spec-$N.json")
bash_us=$(best bare)
python3 - "$one" "$many" "$bash_us" "$N" <<'PY'
import sys
one, many, bare, n = (int(x) for x in sys.argv[1:])
per_step = (many - one) / (n - 1) / 1000.0      # ms per step in drover
per_bash = bare / n / 1000.0                    # ms per bare bash -c true
print(f"drover job, 1 step:        {one/1000:.1f} ms (sandbox create + destroy included)")
print(f"drover job, {n} steps:     {many/1000:.1f} ms")
print(f"per step (drover):         {per_step:.2f} ms")
print(f"per bare `bash -c true`:   {per_bash:.2f} ms")
print(f"step machine overhead:     {per_step - per_bash:.2f} ms per step (goal: < 2 ms)")
print(f"ratio drover/bare:         {per_step / per_bash:.2f}x")
PY
