#!/usr/bin/env bash
# doc_refs.sh: every docs/NAME.md that a message (strings of the built binaries: --help, drover
# check, log lines), a man page or a shipped config names, one NAME.md a line. Used by
# docs_test.sh (meson install) and packages_test.sh (.deb, .rpm): each must be installed as
# /usr/share/doc/drover/docs/NAME.md. Man pages name them with that prefix.
set -euo pipefail
: "${DROVER_SRC:?}" "${DROVER_BUILD:?}"
pk=$DROVER_SRC/packaging
{
        for b in agent/drover agent/drover-agent sandbox/drover-sandbox; do
                strings "$DROVER_BUILD/$b"
        done
        sed 's/\\-/-/g' "$pk"/*.[1-8] "$pk/agent.yaml" "$pk/cloud-init.yaml" "$pk/drover-pki"
} | grep -oE 'docs/[A-Za-z0-9_.-]+\.md' | sed 's|^docs/||' | sort -u
