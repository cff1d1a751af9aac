#!/usr/bin/env bash
# demo.sh: install what is missing, build drover, and run the example workflow with `drover run`.
# Each tool's own messages are shown when it fails; the last line then says what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/quiet.sh
doing=
trap 'rc=$?; [ "$rc" = 0 ] || echo "demo: FAILED (exit $rc): $doing"' EXIT

doing="installing the packages of scripts/deps/base.txt (bash scripts/setup.sh base)"
bash scripts/setup.sh base
doing="configuring the build (meson setup build)"
[ -f build/build.ninja ] || quiet meson setup build
doing="building drover (ninja -C build)"
ninja -C build
doing="running the demo workflow (build/agent/drover run --workflow demo, in examples/demo)"
cd examples/demo
../../build/agent/drover run --workflow demo --store "${TMPDIR:-/tmp}/drover-demo-store"
