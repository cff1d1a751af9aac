#!/usr/bin/env bash
# run.sh BUILD SECONDS: run every libFuzzer target built under BUILD/tests/fuzz/*/ for SECONDS
# each, from its seed corpus (tests/fuzz/<area>/corpus_<name minus fuzz_>/). Fails on any crash.
set -euo pipefail
build=${1:?usage: run.sh BUILD SECONDS}
secs=${2:-20}
src=$(cd "$(dirname "$0")" && pwd)
status=0
found=0
for bin in "$build"/tests/fuzz/*/fuzz_*; do
        [ -x "$bin" ] && [ -f "$bin" ] || continue
        found=$((found + 1))
        area=$(basename "$(dirname "$bin")")
        name=$(basename "$bin")
        seeds="$src/$area/corpus_${name#fuzz_}"
        work=$(mktemp -d)
        [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
        echo "fuzz: $area/$name for ${secs}s"
        if ! "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
                -artifact_prefix="$build/tests/fuzz/$area/crash-" "$work" >"$build/tests/fuzz/$area/$name.log" 2>&1; then
                echo "fuzz: $area/$name FAILED (see $build/tests/fuzz/$area/$name.log)"
                tail -40 "$build/tests/fuzz/$area/$name.log"
                status=1
        else
                grep -E "Done [0-9]+ runs" "$build/tests/fuzz/$area/$name.log" | tail -1 || true
        fi
        rm -rf "$work"
done
[ "$found" -gt 0 ] || { echo "fuzz: no targets under $build/tests/fuzz"; exit 1; }
exit $status
