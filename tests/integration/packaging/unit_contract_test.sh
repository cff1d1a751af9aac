#!/usr/bin/env bash
# unit_contract_test.sh: the agent keeps the contract drover-agent.service relies on, started the
# way systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC) against the control-plane double with mTLS:
# READY=1 once registered, STATUS= lines, WATCHDOG=1 pings, STOPPING=1 and exit 0 on SIGTERM
# (drain), deregistered; logs are key=value lines with levels and never show the join token.
# Also bounds boot-to-registered time (packaging/measure-boot.py).
set -uo pipefail
: "${DROVER:?}" "${DROVER_SRC:?}"
out=$(python3 "$DROVER_SRC/packaging/measure-boot.py" --runs 2 --drover "$DROVER" --json)
st=$?
echo "$out" | sed 's/^/# /'
python3 - "$st" "$out" <<'PY'
import json, sys
st, out = int(sys.argv[1]), json.loads(sys.argv[2])
checks = [
    ("agent_keeps_unit_contract", st == 0 and not out["problems"]),
    ("ready_after_registration", out["exec_to_ready_ms"] is not None),
    ("registered_within_5s", out["exec_to_registered_ms"] is not None and out["exec_to_registered_ms"]["max"] < 5000),
    ("idle_sigterm_exit_within_5s", out["sigterm_to_exit_ms"] is not None and out["sigterm_to_exit_ms"]["max"] < 5000),
]
for i, (name, good) in enumerate(checks, 1):
    print(("ok" if good else "not ok"), i, "-", name)
print(f"1..{len(checks)}")
sys.exit(0 if all(g for _, g in checks) else 1)
PY
