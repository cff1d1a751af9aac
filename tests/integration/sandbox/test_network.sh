#!/bin/bash
# Networking: none = loopback only; private = veth + /30 + NAT, reachable host side, cleaned up.
# Traffic only goes between this machine's own namespaces (a server on the host's veth address).
. "$(dirname "$0")/lib.sh"
E=/run/t/escape
command -v iptables >/dev/null && command -v ip >/dev/null || { echo "1..0 # SKIP no ip/iptables"; exit 77; }

out=$(sb -- sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort | tr "\n" " "')
[ "$out" = "lo " ] && ok "net none: only lo ($out)" || bad "net none: only lo ($out)"
out=$(sb -- sh -c 'cat /sys/class/net/lo/operstate /sys/class/net/lo/flags 2>/dev/null | tr "\n" " "')
case "$out" in *0x9*) ok "net none: lo is up ($out)";; *) bad "net none: lo up ($out)";; esac

PORT=$((20000 + RANDOM % 20000))
python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', $PORT)); s.listen(16); s.settimeout(60)
while True:
    try:
        c, a = s.accept(); c.sendall(b'hello-from-host\\n'); c.close()
    except Exception:
        break
" &
SRV=$!
for i in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break; sleep 0.1; done

LOG=$(mktemp)
trap 'rm -f "$LOG"; kill $SRV 2>/dev/null' EXIT
# the host itself is closed to jobs but for DNS and the allow-list (test_egress.sh)
DROVER_SANDBOX_EGRESS_ALLOW="${DROVER_SANDBOX_SUBNET:-10.213.0.0/16}:$PORT" \
        sb --net private -- sh -c "$E gw-connect $PORT; rc=\$?; sleep 1.5; exit \$rc" >"$LOG" 2>&1 &
job=$!
for i in $(seq 50); do grep -q '^gateway' "$LOG" && break; sleep 0.1; done
gw=$(sed -n 's/^gateway //p' "$LOG")
IFS=. read -r a b c d <<<"$gw"
net="$a.$b.$c.$((d & ~3))/30"
sleep 0.3
iptables -w -t nat -S POSTROUTING | grep -q -- "-s $net " && ok "NAT rule for $net while running" || bad "NAT rule for $net while running"
hif=$(ip -o -4 addr | awk -v a="$gw/30" '$4 == a {print $2}')
iptables -w -S FORWARD | grep -q -- "-i $hif -o drv+ -j DROP" && ok "no route to other jobs' networks" || bad "job-to-job drop rule for $hif"
iptables -w -S FORWARD | grep -- "-i $hif " | grep -q -- "-d 169.254.0.0/16 .*-j REJECT" && ok "no route to link-local (cloud metadata)" || bad "metadata drop rule for $hif"
ip -o -4 addr | grep -q " $gw/30 " && ok "host side of the veth has $gw" || bad "host veth address $gw"
wait $job; rc=$?
cat "$LOG" | sed 's/^/# /'
[ $rc = 0 ] && grep -q "connected" "$LOG" && ok "private net reaches an allow-listed server on the host's veth address" || bad "private net connect (rc=$rc)"
iptables -w -t nat -S POSTROUTING | grep -q -- "-s $net " && bad "NAT rule removed" || ok "NAT rule removed"
ip -o -4 addr | grep -q " $gw/30 " && bad "veth removed" || ok "veth removed"
[ -n "$hif" ] && iptables -w -S FORWARD | grep -q -- "-i $hif " && bad "forward rules removed" || ok "forward rules removed"
# pid 1 fails building the root while the host side makes the network: the network then fails
# because pid 1 is gone ("RTNETLINK answers: No such process"); pid 1's reason must be the error
out=$(sb --net private --bind /etc/hostname:/proc/drover-no-mount-point -- true 2>&1); rc=$?
case "$out" in
*"mount point /proc/drover-no-mount-point"*) [ $rc != 0 ] && ok "pid 1's own error is reported, not the network's" || bad "rc=$rc: $out" ;;
*) bad "pid 1's error hidden (rc=$rc): $out" ;;
esac
finish
