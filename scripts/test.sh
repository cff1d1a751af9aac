#!/usr/bin/env bash
# test.sh: the whole test suite on a fresh Debian 12 machine (as root) — what CI runs.
#  1. install every package the build and the peers need (scripts/setup.sh)
#  2. check formatting
#  3. the README's commands on a fresh Debian 12 (scripts/fresh-machine.sh: debootstrap + demo.sh),
#     in the background while step 4 runs
#  4. build with -Werror
#  5. start the real peers on loopback (scripts/peers/*.sh start)
#  6. run every test (unit + integration), then again under ASan+UBSan
#  7. build the libFuzzer targets with clang; replay each one's corpus, then fuzz it with a fixed
#     seed for a fixed number of inputs (tests/fuzz/run.sh: the same work on every run), in the
#     background while the ASan suite runs
# Each stage prints the time it started at; ends with one line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. scripts/lib/quiet.sh
t0=$(date +%s)
cur='' cur_t0=$t0 times=()
# phase NAME: a stage begins (the time since the start is printed); the previous one's time is kept
phase() {
        local now
        now=$(date +%s)
        [ -z "$cur" ] || times+=("$(printf '%6ds  %s' $((now - cur_t0)) "$cur")")
        cur=$* cur_t0=$now
        printf '\n=== %s (%ds)\n' "$*" $((now - t0))
}

export DROVER_PEERS_DIR=${DROVER_PEERS_DIR:-/tmp/drover-peers}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
JOBS=${JOBS:-$(nproc)}

phase "setup"
bash scripts/setup.sh

phase "format"
bash scripts/check-format.sh

stages=()
# Two stages share no state with the test suites and run beside others, at low priority, their
# output kept in a log that is printed whole when they end (bg_start NAME CMD..., bg_wait NAME):
# the fresh machine beside the -Werror build (before any peer or test starts: its demo creates
# cgroups and network namespaces, which tests check for leftovers), the fuzzers beside the ASan
# suite (pure CPU, in-process). The CI run is about 5 minutes shorter for it.
declare -A bg_pid bg_t0
bg_start() {
        local name=$1
        shift
        bg_t0[$name]=$(date +%s)
        (renice -n 10 -p "$BASHPID" >/dev/null && "$@") >"$root/.ci-$name.log" 2>&1 &
        bg_pid[$name]=$!
        printf '\n=== %s: started in the background (%ds)\n' "$name" $((bg_t0[$name] - t0))
}
bg_wait() {
        local name=$1 rc=0
        wait "${bg_pid[$name]}" || rc=$?
        local took=$(($(date +%s) - bg_t0[$name]))
        printf '\n=== %s: ended (exit %d) after %ds; its output:\n' "$name" "$rc" "$took"
        cat "$root/.ci-$name.log"
        rm -f "$root/.ci-$name.log"
        times+=("$(printf '%6ds  %s (in the background)' "$took" "$name")")
        if [ "$rc" = 0 ]; then stages+=(--stage "$name=ok"); else stages+=(--stage "$name=failed"); fi
}
bg_start fresh-machine bash scripts/fresh-machine.sh

phase "build (-Werror)"
if [ -d build-ci ]; then quiet meson setup --reconfigure build-ci -Dwerror=true
else quiet meson setup build-ci -Dwerror=true; fi
ninja -C build-ci

phase "fresh machine (scripts/fresh-machine.sh): waiting for it"
bg_wait fresh-machine

peers=()
for p in scripts/peers/*.sh; do [ -f "$p" ] && peers+=("$p"); done
stop_peers() {
        # DROVER_KEEP_PEERS=1: leave them running (a developer's machine where others use them)
        [ "${DROVER_KEEP_PEERS:-0}" = 1 ] && return 0
        for p in "${peers[@]}"; do bash "$p" stop >/dev/null 2>&1 || true; done
}
trap stop_peers EXIT
phase "peers: ${peers[*]:-none}"
mkdir -p "$DROVER_PEERS_DIR"
pids=()
for p in "${peers[@]}"; do
        name=$(basename "$p" .sh)
        bash "$p" start >"$DROVER_PEERS_DIR/$name.start.log" 2>&1 &
        pids+=($!)
done
for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
                echo "peer ${peers[$i]} failed to start:"; tail -50 "$DROVER_PEERS_DIR/$(basename "${peers[$i]}" .sh).start.log"
                exit 1
        fi
done

# Every test of a build; the ones that fail run once more, alone: a test that passes then is
# counted as passed and named "flaky" in the summary (with its first log), one that fails again
# fails the suite.
suite() {
        local dir=$1 logs=$1/meson-logs
        shift
        rm -f "$logs/testlog-first.json"
        meson test -C "$dir" --print-errorlogs --num-processes "$JOBS" "$@" && return 0
        cp "$logs/testlog.json" "$logs/testlog-first.json"
        local names
        mapfile -t names < <(python3 scripts/lib/testlog.py failed "$logs/testlog.json")
        [ "${#names[@]}" -gt 0 ] || return 1
        echo "=== running again, alone: ${names[*]}"
        meson test -C "$dir" --print-errorlogs --num-processes 1 "${names[@]}" || true
        python3 scripts/lib/testlog.py retried "$dir" # the verdict: each one passed this time
}

status=0
phase "tests"
suite build-ci || status=1

phase "build (ASan+UBSan)"
if [ -d build-asan ]; then quiet meson setup --reconfigure build-asan
else quiet meson setup build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false; fi
ninja -C build-asan

# clang builds the fuzz targets (gcc -Werror above already checks the warnings); each one's
# corpus is replayed, then it is fuzzed with -seed=1 for a fixed count of inputs
fuzz() {
        # (set -e does not apply here: bg_start runs this in an && list)
        if [ -d build-fuzz ]; then quiet meson setup --reconfigure build-fuzz || return
        else quiet env CC=clang meson setup build-fuzz -Dfuzz=true -Dwerror=false -Db_sanitize=address,undefined -Db_lundef=false || return; fi
        ninja -C build-fuzz || return
        bash tests/fuzz/run.sh build-fuzz
}
bg_start fuzz fuzz

phase "tests (ASan+UBSan)"
# (not the tests of suite release-build: they build and test their own release tree, the same
# in both runs; see docs/testing.md)
suite build-asan --no-suite release-build || status=1

phase "fuzz: waiting for it"
bg_wait fuzz

phase "summary"
echo "stage times:"
printf '%s\n' "${times[@]}"
printf '%6ds  total\n' $(($(date +%s) - t0))
python3 scripts/lib/testlog.py summary "${stages[@]}" build-ci build-asan || status=1
exit $status
