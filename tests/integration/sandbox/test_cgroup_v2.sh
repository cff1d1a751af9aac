#!/bin/bash
# The v2 backend on a real cgroup2 mount: /sys/fs/cgroup on v2 hosts, unified/ on hybrid ones
# (no controllers there, but clone3(CLONE_INTO_CGROUP), cgroup.kill and cleanup are real).
. "$(dirname "$0")/lib.sh"
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then MNT=/sys/fs/cgroup
elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then MNT=/sys/fs/cgroup/unified
else echo "1..0 # SKIP no cgroup2 mount on this host"; exit 77; fi
export DROVER_CGROUP_FS=$MNT
own=$(sed -n 's/^0:://p' /proc/self/cgroup); [ "$own" = / ] && own=
name=sbv2-$$
dir=$MNT$own/drover/$name

"$DROVER" sandbox --name $name -- sh -c 'cat /proc/self/cgroup; sleep 1' > /tmp/sbv2-$$.out 2>&1 &
pid=$!
for i in $(seq 50); do [ "$(grep -c . "$dir/cgroup.procs" 2>/dev/null)" -ge 2 ] && break; sleep 0.05; done
n=$(grep -c . "$dir/cgroup.procs" 2>/dev/null)
[ "$n" -ge 2 ] && ok "pid 1 and the job are in $dir ($n)" || bad "processes in $dir: $n"
if [ -f "$dir/memory.max" ]; then
        [ "$(cat "$dir/pids.max")" = 4096 ] && ok "default pids.max" || bad "pids.max $(cat "$dir/pids.max")"
fi
wait $pid; rc=$?
grep -qx '0::/' /tmp/sbv2-$$.out && ok "cgroup namespace rooted at the job group" || bad "cgroup ns: $(cat /tmp/sbv2-$$.out)"
rm -f /tmp/sbv2-$$.out
[ $rc = 0 ] && ok "job ran (v2 backend)" || bad "job rc=$rc"
[ ! -d "$dir" ] && ok "group removed" || bad "group $dir left behind"

# the fork-first path (supervisor with threads) is born in the group as well
out=$(DROVER_SANDBOX_FORK_FIRST=1 "$DROVER" sandbox --name $name -- cat /proc/self/cgroup)
echo "$out" | grep -qx '0::/' && ok "fork-first path: in the group, cgroup namespace rooted there" || bad "fork-first: $out"
[ ! -d "$dir" ] && ok "group removed (fork-first)" || bad "group left (fork-first)"

# kill: background processes that ignore TERM, two TERMs, group gone
mark=drover-v2kill-$$
"$DROVER" sandbox --name $name -- sh -c "trap '' TERM; cp /bin/sleep \$HOME/$mark; \$HOME/$mark 1000 & \$HOME/$mark 1000 & wait" &
pid=$!
for i in $(seq 50); do [ "$(pgrep -fc "^/home/circleci/$mark")" = 2 ] && break; sleep 0.1; done
kill -TERM $pid; sleep 0.2; kill -TERM $pid; wait $pid
sleep 0.1
pgrep -f "^/home/circleci/$mark" >/dev/null && bad "processes survive" || ok "nothing survives the kill"
[ ! -d "$dir" ] && ok "group removed after the kill" || bad "group $dir left after the kill"
finish
