#!/usr/bin/env bash
# check-format.sh: every tracked C file must match .clang-format (clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r f; do
        [ -f "$f" ] || continue
        if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
                echo "not clang-formatted: $f (run: clang-format -i $f)"
                bad=1
        fi
done < <(git ls-files '*.c' '*.h')
[ $bad = 0 ] && echo "format: ok"
exit $bad
