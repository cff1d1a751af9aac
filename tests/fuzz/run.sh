#!/usr/bin/env bash
# run.sh: the libFuzzer targets built under BUILD/tests/fuzz/<area>/fuzz_<name>, each with its
# committed corpus tests/fuzz/<area>/corpus_<name>/ (seeds and every crash ever found).
#
#   run.sh [--runs N] [--only NAME] BUILD     CI: deterministic. For each target, replay every
#        corpus input once (none may crash), then fuzz with the fixed -seed=$SEED for exactly N
#        inputs (-runs: RUNS below, or --runs N for every target). The same binary does the same
#        work on any machine, at any speed: the verdict does not depend on luck.
#   run.sh --long MINUTES [--only NAME] BUILD  not in CI: one target at a time, MINUTES each, with a
#        random seed (printed, so a crash can be reproduced), from a copy of the corpus.
# A crash leaves its input at BUILD/tests/fuzz/<area>/crash-*: fix the bug, then commit the input
# into the corpus as a regression input (regress_<what>). Fails on any crash.
set -euo pipefail
usage() { echo "usage: run.sh [--runs N | --long MINUTES] [--only NAME] BUILD" >&2; exit 2; }
long=0 runs='' only=''
while [ $# -gt 1 ]; do
        case $1 in
        --long) long=${2:?}; shift 2 ;;
        --runs) runs=${2:?}; shift 2 ;;
        --only) only=${2:?}; shift 2 ;;
        *) usage ;;
        esac
done
[ $# -eq 1 ] || usage
build=$1
src=$(cd "$(dirname "$0")" && pwd)
SEED=${SEED:-1}
# inputs per target in CI: about 20 s of CPU each on the 2-core CI machine (measured with
# `time`, user+sys, as docs/testing.md says; wall time is that when the machine is otherwise idle)
declare -A RUNS=(
        [fuzz_archive]=1500
        [fuzz_cache_key]=700000
        [fuzz_config]=70000
        [fuzz_http_response]=1000000
        [fuzz_jobspec]=300000
        [fuzz_layer]=16000
        [fuzz_manifest]=400000
        [fuzz_orbs]=40000
)
status=0
found=0
for bin in "$build"/tests/fuzz/*/fuzz_*; do
        [ -x "$bin" ] && [ -f "$bin" ] || continue
        area=$(basename "$(dirname "$bin")")
        name=$(basename "$bin")
        [ -z "$only" ] || [ "$only" = "$name" ] || continue
        found=$((found + 1))
        corpus="$src/$area/corpus_${name#fuzz_}"
        out="$build/tests/fuzz/$area"
        log="$out/$name.log"
        [ -d "$corpus" ] || { echo "fuzz: $area/$name has no corpus $corpus"; status=1; continue; }
        t0=$(date +%s)
        common=(-rss_limit_mb=2048 -timeout=60 -reload=0 -artifact_prefix="$out/crash-$name-")
        # 1. replay: every committed input once, as it is (no mutation)
        mapfile -t inputs < <(find "$corpus" -type f | sort)
        if ! "$bin" "${common[@]}" -runs=1 "${inputs[@]}" >"$out/$name.replay.log" 2>&1; then
                echo "fuzz: $area/$name FAILED replaying its corpus (see $out/$name.replay.log)"
                tail -40 "$out/$name.replay.log"
                status=1
                continue
        fi
        work=$(mktemp -d)
        cp -r "$corpus"/. "$work"/
        if [ "$long" != 0 ]; then
                seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
                what="-seed=$seed -max_total_time=$((long * 60))"
        else
                n=${runs:-${RUNS[$name]:-}}
                [ -n "$n" ] || { echo "fuzz: $area/$name has no count in run.sh's RUNS"; status=1; continue; }
                what="-seed=$SEED -runs=$n -use_counters=0"
        fi
        # 2. fuzz; -jobs/-workers stay 1: one process, so -seed and -runs fix the work done
        # shellcheck disable=SC2086
        if ! setarch "$(uname -m)" -R "$bin" "${common[@]}" $what "$work" >"$log" 2>&1; then
                echo "fuzz: $area/$name $what FAILED after $(($(date +%s) - t0))s (see $log)"
                tail -40 "$log"
                status=1
        else
                done_line=$(grep -E "Done [0-9]+ runs" "$log" | tail -1 || true)
                echo "fuzz: $area/$name ${#inputs[@]} inputs replayed, $what: ${done_line:-?}," \
                        "$(($(date +%s) - t0))s"
        fi
        rm -rf "$work"
done
[ "$found" -gt 0 ] || { echo "fuzz: no targets under $build/tests/fuzz${only:+ named $only}"; exit 1; }
exit $status
