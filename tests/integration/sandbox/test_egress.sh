#!/bin/bash
# Egress policy of the private network (docs/sandbox.md "Egress"): a job reaches the internet but
# not private ranges, unassigned addresses of drover's own range, the host itself, or link-local
# addresses; the host's DNS servers and $DROVER_SANDBOX_EGRESS_ALLOW stay reachable. Never sends
# a packet to a real address: every peer is in a network namespace this test makes ("the
# network": 10.199.77.2 a private neighbour, 203.0.113.2 an internet host, 10.213.255.254 an
# unassigned job address routed there), and everything is removed at exit.
. "$(dirname "$0")/lib.sh"
command -v iptables >/dev/null && command -v ip >/dev/null && command -v unshare >/dev/null ||
        { echo "1..0 # SKIP no ip/iptables/unshare"; exit 77; }

NS=egt-ns-$$
HV=egt$$a
NV=egt$$b
UNASSIGNED=10.213.255.254
PORT=$((20000 + RANDOM % 20000))
DENIED=$((PORT + 1))
HPORT=$((PORT + 2))
TMP=$(mktemp -d)
PIDS=()
cleanup() {
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        ip route del "$UNASSIGNED/32" dev "$HV" 2>/dev/null
        ip link del "$HV" 2>/dev/null
        ip netns del "$NS" 2>/dev/null
        rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$NS" && ip link add "$HV" type veth peer name "$NV" netns "$NS" &&
        ip addr add 10.199.77.1/24 dev "$HV" && ip addr add 203.0.113.1/24 dev "$HV" &&
        ip link set "$HV" up &&
        ip -n "$NS" addr add 10.199.77.2/24 dev "$NV" &&
        ip -n "$NS" addr add 203.0.113.2/24 dev "$NV" &&
        ip -n "$NS" addr add "$UNASSIGNED/32" dev "$NV" &&
        ip -n "$NS" link set "$NV" up && ip -n "$NS" link set lo up &&
        ip -n "$NS" route add default via 10.199.77.1 &&
        ip route add "$UNASSIGNED/32" dev "$HV" || { echo "Bail out! cannot build the test network"; exit 1; }

# a TCP server that says hello: serve NETNS PORT...
serve() {
        local ns=$1; shift
        local cmd=(python3 -c '
import socket, sys, threading
def one(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, a = s.accept(); c.sendall(b"hello %d\n" % port); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=one, args=(int(p),), daemon=True).start()
threading.Event().wait(120)
' "$@")
        if [ "$ns" = host ]; then "${cmd[@]}" & else ip netns exec "$ns" "${cmd[@]}" & fi
        PIDS+=($!)
}
serve "$NS" "$PORT" "$DENIED" 53
serve host "$HPORT"
for i in $(seq 100); do
        ip netns exec "$NS" python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close(); socket.create_connection(('127.0.0.1', 53)).close()" 2>/dev/null &&
                python3 -c "import socket; socket.create_connection(('127.0.0.1', $HPORT)).close()" 2>/dev/null && break
        sleep 0.1
done

# try ADDR PORT [env...]: one job's connection; prints "connected hello N" or "blocked ..."
CONNECT='
import socket, sys
a = sys.argv[1]
if a == "gateway":
    import struct
    for l in open("/proc/net/route").readlines()[1:]:
        f = l.split()
        if f[1] == "00000000":
            a = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
s = socket.socket(); s.settimeout(5)
try:
    s.connect((a, int(sys.argv[2]))); print("connected", s.recv(100).decode().strip())
except Exception as e:
    print("blocked", type(e).__name__, e)
'
try() {
        local addr=$1 port=$2; shift 2
        env "$@" "$DROVER" sandbox --net private -- python3 -c "$CONNECT" "$addr" "$port" 2>&1 | tail -n 1
}
expect() { # NAME WANT(connected|blocked) OUTPUT
        case "$3" in "$2"*) ok "$1 ($3)";; *) bad "$1: want $2, got: $3";; esac
}

expect "the internet is reached" connected "$(try 203.0.113.2 "$PORT")"
expect "a private neighbour (10.199.77.2) is not" blocked "$(try 10.199.77.2 "$PORT")"
expect "an unassigned address of drover's job range is not NATed out" blocked \
        "$(try "$UNASSIGNED" "$PORT")"
expect "the host is not, through the job's gateway" blocked "$(try gateway "$HPORT")"
expect "the host is not, through its other addresses" blocked "$(try 10.199.77.1 "$HPORT")"
allow="DROVER_SANDBOX_EGRESS_ALLOW=10.199.77.2:$PORT, ${DROVER_SANDBOX_SUBNET:-10.213.0.0/16}:$HPORT"
expect "an allow-listed address and port is reached" connected "$(try 10.199.77.2 "$PORT" "$allow")"
expect "another port of it is not" blocked "$(try 10.199.77.2 "$DENIED" "$allow")"
expect "the host is, on an allow-listed port" connected "$(try gateway "$HPORT" "$allow")"
out=$(DROVER_SANDBOX_EGRESS_ALLOW=10.0.0.0/33 "$DROVER" sandbox --net private -- true 2>&1)
case "$out" in *"10.0.0.0/33"*"ADDR[/BITS][:PORT]"*) ok "a bad allow-list entry is an error naming it";;
        *) bad "bad allow-list entry: $out";; esac

# drover run: the same policy, and --egress-allow
mkdir -p "$TMP/proj/.circleci"
cat >"$TMP/proj/.circleci/config.yml" <<EOF
version: 2.1
jobs:
  reach:
    machine: true
    steps:
      - run: python3 -c 'import socket; s = socket.create_connection(("10.199.77.2", $PORT), timeout=5); print("REACHED", s.recv(99).decode().strip())'
EOF
out=$(cd "$TMP/proj" && "$DROVER" run --store "$TMP/store" reach 2>&1)
case "$out" in *"REACHED hello"*) bad "drover run: a private neighbour is reached";;
        *"No route to host"*) ok "drover run: a private neighbour is not reached";;
        *) bad "drover run: unexpected output"; echo "$out" | sed 's/^/#   /';; esac
out=$(cd "$TMP/proj" && "$DROVER" run --store "$TMP/store" --egress-allow 10.199.77.0/24 reach 2>&1)
case "$out" in *"REACHED hello $PORT"*) ok "drover run --egress-allow opens it";;
        *) bad "drover run --egress-allow"; echo "$out" | sed 's/^/#   /';; esac

# DNS: the servers of the host's resolv.conf stay reachable on port 53 (a private resolv.conf
# in a mount namespace names the neighbour)
echo "nameserver 10.199.77.2" >"$TMP/resolv.conf"
dns() {
        unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh \
                "$TMP/resolv.conf" "$DROVER" sandbox --net private -- python3 -c "$CONNECT" "$@" 2>&1 | tail -n 1
}
expect "the host's DNS server is reached on port 53" connected "$(dns 10.199.77.2 53)"
expect "but not on another port" blocked "$(dns 10.199.77.2 "$PORT")"

# rules in place while a job runs; IPv6 off on the host's side; all gone after
LOG=$TMP/job.log
"$DROVER" sandbox --net private -- sh -c 'cat /proc/net/route; sleep 3' >"$LOG" 2>&1 &
job=$!
hif=
for i in $(seq 50); do
        gw=$(awk '$2 == "00000000" {print $3}' "$LOG" 2>/dev/null | head -n 1)
        if [ -n "$gw" ]; then
                gw=$(printf '%d.%d.%d.%d' "0x${gw:6:2}" "0x${gw:4:2}" "0x${gw:2:2}" "0x${gw:0:2}")
                hif=$(ip -o -4 addr | awk -v a="$gw/30" '$4 == a {print $2}')
                [ -n "$hif" ] && iptables -w -S INPUT | grep -q -- "-i $hif .*REJECT" && break
        fi
        sleep 0.1
done
rules=$(iptables -w -S | grep -- "-i $hif ")
echo "$rules" | grep -q -- "-d 169.254.0.0/16 -i $hif -j REJECT" && ok "link-local (cloud metadata) is rejected" || bad "no link-local rule for $hif"
echo "$rules" | grep -q -- "-d 100.64.0.0/10 -i $hif -j REJECT" && ok "CGNAT is rejected" || bad "no CGNAT rule for $hif"
[ "$(cat /proc/sys/net/ipv6/conf/"$hif"/disable_ipv6 2>/dev/null)" = 1 ] && ok "no IPv6 on the host's side of the veth" || bad "IPv6 on $hif"
wait $job
[ -n "$hif" ] && ! iptables -w -S | grep -q -- "-i $hif " && ok "the rules are gone with the job" || bad "rules of $hif left"
finish
