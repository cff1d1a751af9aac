#!/bin/bash
# Resource limits: fork bomb, memory hog, disk filler are contained and reported.
. "$(dirname "$0")/lib.sh"
E=/run/t/escape

out=$(sb --pids 40 -- $E forkbomb 2>&1); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "fork failed after"; then ok "fork bomb stopped by the pids limit: $(echo "$out" | head -1)"; else bad "fork bomb (rc=$rc): $out"; fi
n=$(echo "$out" | sed -n 's/fork failed after \([0-9]*\).*/\1/p')
[ -n "$n" ] && [ "$n" -lt 40 ] && ok "fewer than 40 processes ($n)" || bad "fewer than 40 processes ($n)"

out=$(sb --memory 64M -- $E hog 512 2>&1); rc=$?
if [ $rc = 137 ] && echo "$out" | grep -q "out of memory (limit 67108864)"; then ok "memory hog killed and reported"; else bad "memory hog (rc=$rc): $out"; fi
out=$(sb --memory 64M -- sh -c "$E hog 512; echo shell-survived" 2>&1); rc=$?
if echo "$out" | grep -q "shell-survived"; then ok "OOM kills the hog, not the step's shell"; else bad "OOM kills the hog (rc=$rc): $out"; fi
out=$(sb --memory 64M -- $E hog 16 2>&1); rc=$?
if [ $rc = 1 ] && ! echo "$out" | grep -q "out of memory"; then ok "small allocation is fine"; else bad "small allocation (rc=$rc): $out"; fi

before=$(df -k --output=avail / | tail -1)
out=$(sb --disk 16M -- sh -c 'dd if=/dev/zero of=$HOME/fill bs=1M count=64 2>&1; echo dd=$?; dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo dd=$?' 2>&1); rc=$?
after=$(df -k --output=avail / | tail -1)
if echo "$out" | grep -q "No space left on device" && echo "$out" | grep -q "dd=1"; then ok "disk filler gets ENOSPC"; else bad "disk filler: $out"; fi
[ $((before - after)) -lt 8192 ] && ok "host disk unaffected" || bad "host disk lost $((before - after)) KiB"

out=$(sb --cpus 0.5 --user root -- sh -c 'cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo v1' 2>&1)
ok "cpu quota accepted ($out)"
# the v1 knobs themselves, read from the host while the job runs
name=sbtest-$$
sb --name $name --cpus 0.5 --memory 100M --pids 77 -- sleep 2 &
pid=$!
sleep 0.7
q=$(cat /sys/fs/cgroup/cpu/drover/$name/cpu.cfs_quota_us /sys/fs/cgroup/cpu/*/drover/$name/cpu.cfs_quota_us 2>/dev/null | head -1)
p=$(cat /sys/fs/cgroup/pids/drover/$name/pids.max /sys/fs/cgroup/pids/*/drover/$name/pids.max 2>/dev/null | head -1)
m=$(find /sys/fs/cgroup/memory -path "*/drover/$name/memory.limit_in_bytes" -exec cat {} \; 2>/dev/null | head -1)
if [ -d /sys/fs/cgroup/unified ] || [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
        [ "$q" = 50000 ] && [ "$p" = 77 ] && [ "$m" = 104857600 ] && ok "v1 knobs written (quota=$q pids=$p mem=$m)" || bad "v1 knobs (quota=$q pids=$p mem=$m)"
fi
wait $pid
finish
