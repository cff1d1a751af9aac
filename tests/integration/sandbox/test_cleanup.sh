#!/bin/bash
# Killing leaves nothing: no process, cgroup, mount, lock or veth on the host.
. "$(dirname "$0")/lib.sh"
name=sbclean-$$
mark=drover-cleanup-$$-$RANDOM

leftovers() {
        local n=0
        pgrep -f "^/home/circleci/$mark" >/dev/null && { echo "# processes: $(pgrep -af "$mark")"; n=1; }
        if find /sys/fs/cgroup -maxdepth 6 -type d -name "$name" 2>/dev/null | grep -q .; then
                echo "# cgroups: $(find /sys/fs/cgroup -maxdepth 6 -type d -name "$name")"; n=1; fi
        grep -q drover-root /proc/self/mountinfo && { echo "# host mounts"; n=1; }
        return $n
}

# background processes that ignore SIGTERM, then TERM twice: the whole tree must die
"$DROVER" sandbox --name $name -- sh -c "trap '' TERM; cp /bin/sleep \$HOME/$mark; for i in 1 2 3; do \$HOME/$mark 1000 & done; wait" &
pid=$!
for i in $(seq 50); do [ "$(pgrep -fc "^/home/circleci/$mark")" = 3 ] && break; sleep 0.1; done
[ "$(pgrep -fc "^/home/circleci/$mark")" = 3 ] && ok "three background processes running" || bad "background processes: $(pgrep -fc "$mark")"
kill -TERM $pid; sleep 0.3; kill -TERM $pid
wait $pid; rc=$?
[ $rc = 143 ] && ok "second TERM gives up with 143" || bad "second TERM rc=$rc"
leftovers && ok "nothing left after kill" || bad "nothing left after kill"

# supervisor SIGKILLed: pid 1 dies with it (PDEATHSIG), so does everything inside
"$DROVER" sandbox --name $name-k -- sh -c "cp /bin/sleep \$HOME/$mark; \$HOME/$mark 1000 & \$HOME/$mark 1000 & wait" &
pid=$!
for i in $(seq 50); do [ "$(pgrep -fc "^/home/circleci/$mark")" = 2 ] && break; sleep 0.1; done
kill -KILL $pid; wait $pid 2>/dev/null
for i in $(seq 50); do pgrep -f "^/home/circleci/$mark" >/dev/null || break; sleep 0.1; done
pgrep -f "^/home/circleci/$mark" >/dev/null && bad "supervisor killed: processes survive" || ok "supervisor killed: nothing survives"
# (its cgroup directory stays behind: nobody was left to remove it — remove it here)
find /sys/fs/cgroup -depth -type d -name "$name-k" -exec rmdir {} \; 2>/dev/null

# normal exit, many times: cgroups removed, slot locks released
for i in 1 2 3; do sb --name $name -- true || bad "run $i"; done
leftovers && ok "nothing left after normal exits" || bad "nothing left after normal exits"
held=$(for f in /run/drover/uid-slots/*.lock; do flock -n "$f" true || echo "$f"; done | wc -l)
# other tests may hold a few slots right now; ours must be free, so no more than a handful
[ "$held" -lt 8 ] && ok "slot locks released ($held held by others)" || bad "slot locks held: $held"

# exit status and signals pass through
sb -- sh -c 'exit 42'; rc=$?
[ $rc = 42 ] && ok "exit status passes through" || bad "exit status $rc"
sb -- sh -c 'kill -USR1 $$'; rc=$?
[ $rc = 138 ] && ok "killed by a signal gives 128+N" || bad "signal status $rc"
sb -- /nonexistent/cmd 2>/dev/null; rc=$?
[ $rc = 127 ] && ok "missing command gives 127" || bad "missing command $rc"
out=$(echo piped | sb -- cat)
[ "$out" = piped ] && ok "stdin passes through" || bad "stdin: $out"
# the path taken when the supervisor has threads: fork first, then clone with CLONE_PARENT
out=$(DROVER_SANDBOX_FORK_FIRST=1 sb --name $name-f -- sh -c 'echo $$; exit 7'); rc=$?
[ $rc = 7 ] && [ "$out" = 2 ] && ok "fork-first path: exit status and pid 1 as usual" || bad "fork-first path: rc=$rc out=$out"
leftovers && ok "nothing left after the fork-first path" || bad "nothing left after the fork-first path"
finish
