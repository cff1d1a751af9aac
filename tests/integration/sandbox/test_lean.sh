#!/bin/bash
# drover-sandbox, the lean entry point: the same CLI as `drover sandbox`, no shared libraries
# beyond libc's loader at most, and the same sandbox (escapes are run through it by
# sandbox_escapes_lean).
. "$(dirname "$0")/lib.sh"
: "${DROVER_SANDBOX:?}"
L=$DROVER_SANDBOX

# the same usage text, the same parse errors and exit codes
if diff <("$DROVER" sandbox --help) <("$L" --help) >/dev/null; then ok "same --help as drover sandbox"; else bad "same --help as drover sandbox"; fi
"$L" --bogus -- true 2>/dev/null; rc=$?
if [ "$rc" = 2 ]; then ok "unknown option: exit 2"; else bad "unknown option: exit 2 (got $rc)"; fi
"$L" -- sh -c 'exit 7'; rc=$?
if [ "$rc" = 7 ]; then ok "exit status passed through"; else bad "exit status passed through (got $rc)"; fi
"$L" -- /nonexistent 2>/dev/null; rc=$?
if [ "$rc" = 127 ]; then ok "missing command: 127"; else bad "missing command: 127 (got $rc)"; fi
"$L" -- sh -c 'kill -TERM $$'; rc=$?
if [ "$rc" = 143 ]; then ok "killed by a signal: 128+N"; else bad "killed by a signal: 128+N (got $rc)"; fi

# lean: none of drover's other libraries (a normal build is static: no NEEDED at all; a
# sanitizer build links libc and the sanitizer runtimes)
others=$(readelf -d "$L" 2>/dev/null | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | grep -Ev '^(libc|libm|libasan|libubsan|ld-linux.*)\.so' || true)
if [ -z "$others" ]; then ok "no shared libraries but libc's (and sanitizers')"; else bad "no shared libraries but libc's: $others"; fi

# the same sandbox: job user, own pid namespace, the job cgroup, seccomp on, options work
out=$("$L" --memory 64M --pids 50 --env FOO=bar -- sh -c 'id -u; echo $$; echo $FOO; grep -c . /proc/self/cgroup; grep Seccomp: /proc/self/status | tr -d "\t "' | tr '\n' ' ')
if [ "$out" = "3434 1 bar $(grep -c . /proc/self/cgroup) Seccomp:2 " ] || [[ "$out" =~ ^3434\ [0-9]+\ bar\ [0-9]+\ Seccomp:2\ $ ]]; then
        ok "job user, options, seccomp filter on ($out)"
else
        bad "job user, options, seccomp filter on ($out)"
fi
expect_escape_fails "keyctl refused through drover-sandbox" -- /run/t/escape keyctl
finish
