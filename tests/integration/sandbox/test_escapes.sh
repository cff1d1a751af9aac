#!/bin/bash
# Escape attempts from inside `drover sandbox`: every one must fail.
. "$(dirname "$0")/lib.sh"
E=/run/t/escape
for who in circleci root; do
        for mode in keyctl bpf module mount userns sethostname; do
                expect_escape_fails "$mode refused ($who)" --user $who -- $E $mode
        done
        expect_escape_fails "ptrace of a host process and of pid 1 refused ($who)" --user $who -- $E ptrace $$
        expect_escape_fails "no writes to the host root ($who)" --user $who -- \
                $E write /etc/drover-escape /usr/drover-escape /drover-escape /var/lib/drover-escape
        expect_escape_fails "no fds inherited ($who)" --user $who -- $E fds 9>/dev/null 11</dev/null
        expect_escape_fails "syscalls off the allow-list: EPERM, newer ones ENOSYS ($who)" --user $who -- $E allowlist
done
# without seccomp, capabilities and the user namespace alone still hold
for mode in mount module userns; do
        expect_escape_fails "$mode refused as root without seccomp" --no-seccomp --user root -- $E $mode
done

# unshare(1) nested games
if sb --user root -- unshare -U -r true 2>/dev/null; then bad "unshare -U -r refused"; else ok "unshare -U -r refused"; fi
if sb -- unshare -U true 2>/dev/null; then bad "unshare -U refused"; else ok "unshare -U refused"; fi

# credentials: a test-owned secret under a masked path, and the default masks
SECRET_DIR=$(mktemp -d /var/lib/drover-sbtest.XXXXXX)
trap 'rm -rf "$SECRET_DIR" "$MARKER"' EXIT
echo "TOPSECRET" > "$SECRET_DIR/agent.key"; chmod 0644 "$SECRET_DIR/agent.key"
out=$(sb --mask "$SECRET_DIR" -- cat "$SECRET_DIR/agent.key" 2>&1)
if echo "$out" | grep -q TOPSECRET; then bad "masked key unreadable"; else ok "masked key unreadable"; fi
out=$(sb --user root --mask "$SECRET_DIR/agent.key" -- cat "$SECRET_DIR/agent.key" 2>&1)
if echo "$out" | grep -q TOPSECRET; then bad "masked key file unreadable as root"; else ok "masked key file unreadable as root"; fi
mkdir -p /root/.drover-sbtest && echo TOPSECRET > /root/.drover-sbtest/key && chmod 644 /root/.drover-sbtest/key /root/.drover-sbtest
out=$(sb --user root -- sh -c 'ls -A /root /run/drover /var/lib/drover /etc/drover /mnt 2>/dev/null; cat /root/.drover-sbtest/key 2>/dev/null' 2>&1)
rm -rf /root/.drover-sbtest
if echo "$out" | grep -q -e TOPSECRET -e .drover-sbtest; then bad "default masks hide /root"; echo "$out" | sed 's/^/#   /'; else ok "default masks hide /root"; fi
out=$(sb -- sh -c 'for v in $(env | cut -d= -f1); do echo $v; done' | sort | tr '\n' ' ')
if [ "$out" = "HOME LOGNAME PATH PWD USER " ]; then ok "environment built from scratch"; else bad "environment built from scratch: $out"; fi

# host pids invisible
out=$(sb -- sh -c 'ls /proc | grep -c "^[0-9]"')
if [ "$out" -le 4 ]; then ok "only sandbox pids in /proc ($out)"; else bad "only sandbox pids in /proc ($out)"; fi
if sb -- test -e /proc/$$; then bad "host pid $$ invisible"; else ok "host pid $$ invisible"; fi
out=$(sb -- cat /proc/1/cmdline | tr '\0' ' ')
case "$out" in "drover-init "*) ok "pid 1 is drover-init";; *) bad "pid 1 is drover-init: $out";; esac

# chroot escape: stays inside, host /tmp (masked) not reachable
MARKER=$(mktemp /tmp/drover-escape-marker.XXXXXX)
expect_escape_fails "chroot escape stays inside (root)" --user root -- $E chroot "$MARKER"
expect_escape_fails "chroot escape stays inside (circleci)" -- $E chroot "$MARKER"

# setuid binaries give nothing: a setuid-root copy of the helper, and the host's own
SUID_DIR=$(mktemp -d /var/lib/drover-sbsuid.XXXXXX)
cp "$ESCAPE" "$SUID_DIR/escape-suid"; chmod 4755 "$SUID_DIR/escape-suid"; chmod 755 "$SUID_DIR"
expect_escape_fails "setuid-root copy gains no caps" --bind "$SUID_DIR:/run/suid" -- /run/suid/escape-suid caps
expect_escape_fails "setuid-root copy on the host root gains no caps" -- "$SUID_DIR/escape-suid" caps
rm -rf "$SUID_DIR"
if [ -u /usr/bin/su ] || [ -u /bin/su ]; then
        out=$(sb -- sh -c 'su -c id root </dev/null 2>&1; echo rc=$?')
        case "$out" in *"uid=0"*) bad "host setuid su gives nothing: $out";; *) ok "host setuid su gives nothing";; esac
fi

# hostname: refused by seccomp, and by capabilities without it; the host's never changes
before=$(hostname)
sb --user root -- hostname evil-sbtest >/dev/null 2>&1 && bad "hostname refused" || ok "hostname refused"
expect_escape_fails "sethostname refused as root without seccomp" --no-seccomp --user root -- $E sethostname
[ "$(hostname)" = "$before" ] && ok "host hostname unchanged" || bad "host hostname unchanged ($(hostname))"
out=$(sb --hostname myjob -- hostname)
[ "$out" = myjob ] && ok "--hostname" || bad "--hostname: $out"

# loopback services of the host are unreachable with --net none
PORT=$((20000 + RANDOM % 20000))
python3 -c "import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $PORT)); s.listen(5); time.sleep(25)" &
SRV=$!
for i in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break; sleep 0.1; done
expect_escape_fails "host loopback service unreachable (net none)" -- $E connect 127.0.0.1 $PORT
kill $SRV 2>/dev/null; wait $SRV 2>/dev/null
finish
