#!/usr/bin/env bash
# demo.sh: install what is missing, build drover, and run the example workflow with `drover run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base
[ -d build ] || meson setup build >/dev/null
ninja -C build
cd examples/demo
exec ../../build/agent/drover run --workflow demo --store "${TMPDIR:-/tmp}/drover-demo-store"
