# lib.sh: shared by the sandbox integration tests (sourced).
set -u
: "${DROVER:?}" "${ESCAPE:?}"
FAILS=0
N=0
ok() { N=$((N + 1)); echo "ok $N - $*"; }
bad() { N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $*"; }
# sb [drover sandbox options] -- CMD: runs with the helper bound at /run/t/escape
# (SB_LEAN=1: through the lean drover-sandbox binary instead: the same CLI)
if [ "${SB_LEAN:-0}" = 1 ]; then
        : "${DROVER_SANDBOX:?}"
        sb() { "$DROVER_SANDBOX" --bind "$ESCAPE:/run/t/escape:ro" "$@"; }
else
        sb() { "$DROVER" sandbox --bind "$ESCAPE:/run/t/escape:ro" "$@"; }
fi
# expect_escape_fails NAME [opts] -- escape MODE ARGS: the helper must exit 0
expect_escape_fails() {
        local name=$1; shift
        local out rc
        out=$(sb "$@" 2>&1); rc=$?
        if [ "$rc" = 0 ]; then ok "$name"; else bad "$name (rc=$rc)"; echo "$out" | sed 's/^/#   /'; fi
}
finish() { echo "1..$N"; [ "$FAILS" = 0 ]; exit $?; }
[ "$(id -u)" = 0 ] || [ "${SB_ROOTLESS:-0}" = 1 ] || { echo "1..0 # SKIP needs root"; exit 77; }
