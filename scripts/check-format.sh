#!/usr/bin/env bash
# check-format.sh: every tracked C file must match .clang-format (clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/quiet.sh
bad=0
while IFS= read -r f; do
        [ -f "$f" ] || continue
        if ! quiet clang-format --dry-run -Werror "$f"; then # (its message: where, and why)
                echo "not clang-formatted: $f (run: clang-format -i $f)"
                bad=1
        fi
done < <(git ls-files '*.c' '*.h')
[ $bad = 0 ] && echo "format: ok"
exit $bad
