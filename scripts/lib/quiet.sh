# scripts/lib/quiet.sh: sourced by the set-up scripts (setup.sh, demo.sh, test.sh, peers).
# quiet CMD...: run CMD with its output (stdout and stderr) kept aside: nothing is printed when it
# succeeds; when it fails, its own output is shown (on stderr) after a line naming the command,
# and its exit status is returned. Never hide a failing tool's message in /dev/null: use this.
quiet() {
        local out rc=0
        out=$(mktemp "${TMPDIR:-/tmp}/quiet.XXXXXX")
        "$@" >"$out" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ]; then
                printf 'FAILED (exit %d): %s\n' "$rc" "$*" >&2
                tail -n 200 "$out" >&2
        fi
        rm -f "$out"
        return "$rc"
}
