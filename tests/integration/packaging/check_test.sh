#!/usr/bin/env bash
# check_test.sh: `drover check` on this machine (ready) and with each failure forced: read-only
# cgroup root, control plane unreachable, TLS not trusted, proxy unreachable, config endpoints.
set -uo pipefail
: "${DROVER:?DROVER must point at the drover binary}" "${DROVER_SRC:?}"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
srv_pid=
cleanup() {
        [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
        umount "$tmp/ro" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/out"; }
# expect NAME EXIT_STATUS REGEX -- ARGS...: run drover check, assert status and an output line.
expect() {
        local name=$1 want=$2 re=$3
        shift 4
        "$DROVER" check --timeout 3 "$@" >"$tmp/out" 2>&1
        local got=$?
        if [ "$got" = "$want" ] && grep -Eq -- "$re" "$tmp/out"; then ok "$name"; else
                echo "# exit $got (wanted $want), wanted a line matching: $re"
                not_ok "$name"
        fi
}
# A closed loopback port: bind, note the port, close.
closed_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

# --- this machine is ready (no endpoints configured; every kernel check passes) ---
expect "machine_is_ready" 0 '^ready: ' -- --no-network
grep -q '^ok   user namespaces' "$tmp/out" && ok "userns_checked_by_unshare" || not_ok "userns_checked_by_unshare"
grep -Eq '^ok   cgroup (memory|write)' "$tmp/out" && ok "cgroups_writable" || not_ok "cgroups_writable"
grep -q '^ok   overlayfs' "$tmp/out" && ok "overlayfs_found" || not_ok "overlayfs_found"
# v1 (hybrid here): the cost of moving a job's pid 1 into its cgroups is measured and the knobs shown
if [ "$(stat -f -c %T /sys/fs/cgroup/pids 2>/dev/null)" = cgroupfs ]; then
        grep -Eq '^(info|warn) cgroup attach: moving a process into a v1 cgroup took [0-9.]+ ms .*rcu_expedited=[0-9-]+, favordynmods (on|off)$' "$tmp/out" \
                && ok "cgroup_attach_measured" || not_ok "cgroup_attach_measured"
fi
grep -q '^ok   seccomp' "$tmp/out" && ok "seccomp_found" || not_ok "seccomp_found"
grep -Eq '^(ok  |warn) ssh ports: [0-9]+ of 1001 free: ' "$tmp/out" && ok "ssh_ports_summarised" || not_ok "ssh_ports_summarised"

# --- no cgroup write access: a read-only tmpfs as cgroup root (private mount namespace) ---
mkdir -p "$tmp/ro"
unshare -m sh -c "mount -t tmpfs -o size=1m tmpfs '$tmp/ro' && mkdir '$tmp/ro/memory' '$tmp/ro/pids' '$tmp/ro/cpu' \
        && mount -o remount,ro '$tmp/ro' && exec '$DROVER' check --no-network --cgroup-root '$tmp/ro'" >"$tmp/out" 2>&1
st=$?
if [ $st = 1 ] && grep -q '^FAIL cgroup memory: cannot create a cgroup in .*Read-only file system' "$tmp/out" &&
        grep -q '^     fix: ' "$tmp/out" && grep -q '^not ready: ' "$tmp/out"; then ok "readonly_cgroup_root_fails"; else
        echo "# exit $st"; not_ok "readonly_cgroup_root_fails"; fi

# --- not root: the agent could not build sandboxes ---
setpriv --reuid=65534 --regid=65534 --clear-groups "$DROVER" check --no-network >"$tmp/out" 2>&1
st=$?
if [ $st = 1 ] && grep -q '^FAIL root: running as uid 65534' "$tmp/out" &&
        grep -q '^FAIL cgroup memory: cannot create a cgroup in .*Permission denied' "$tmp/out"; then
        ok "non_root_fails"; else echo "# exit $st"; not_ok "non_root_fails"; fi

# --- user namespaces disabled: max_user_namespaces=0 in a child user namespace of our own ---
unshare -Ur sh -c "echo 0 >/proc/sys/user/max_user_namespaces && exec '$DROVER' check --no-network" >"$tmp/out" 2>&1
st=$?
if [ $st = 1 ] && grep -q '^FAIL user namespaces: disabled: user.max_user_namespaces = 0' "$tmp/out" &&
        grep -q 'fix: sysctl -w user.max_user_namespaces' "$tmp/out"; then
        ok "userns_disabled_fails"; else echo "# exit $st"; not_ok "userns_disabled_fails"; fi

# --- cgroup v2 layout without the memory controller (a fake tree) ---
mkdir -p "$tmp/v2"
echo "cpu io pids" >"$tmp/v2/cgroup.controllers"
: >"$tmp/v2/cgroup.subtree_control"
expect "v2_missing_memory_controller_fails" 1 '^FAIL cgroup memory: not in .*cgroup.controllers' -- --no-network --cgroup-root "$tmp/v2"
grep -q '^ok   cgroup version: v2 (unified) .*(by layout)' "$tmp/out" && ok "v2_detected_by_layout" || not_ok "v2_detected_by_layout"

# --- control plane unreachable: a closed loopback port ---
expect "control_plane_unreachable_fails" 1 "^FAIL control-plane: https://127.0.0.1:$closed_port unreachable" -- --control-plane "127.0.0.1:$closed_port"

# --- TLS: a loopback server with a self-signed certificate ---
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || { echo "Bail out! openssl"; exit 1; }
python3 "$here/tls_server.py" "$tmp/cert.pem" "$tmp/key.pem" "$tmp/port" &
srv_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
tls_port=$(cat "$tmp/port")
expect "untrusted_tls_fails" 1 "^FAIL control-plane: https://127.0.0.1:$tls_port TLS certificate not trusted" -- --control-plane "127.0.0.1:$tls_port"
grep -q 'fix: trust the server.s CA' "$tmp/out" && ok "untrusted_tls_says_how_to_fix" || not_ok "untrusted_tls_says_how_to_fix"
expect "trusted_tls_passes" 0 "^ok   control-plane: https://127.0.0.1:$tls_port reachable, TLS verified" -- --control-plane "127.0.0.1:$tls_port" --ca-file "$tmp/cert.pem"

# --- mTLS against the control-plane double: our client cert works, none or a foreign one fails ---
"$DROVER_SRC/tests/doubles/make_certs.sh" "$tmp/pki" >/dev/null 2>&1 || { echo "Bail out! make_certs"; exit 1; }
python3 "$DROVER_SRC/tests/doubles/control_plane.py" --certs "$tmp/pki" --info "$tmp/cp.json" >/dev/null 2>&1 &
cp_pid=$!
for _ in $(seq 200); do [ -s "$tmp/cp.json" ] && break; sleep 0.05; done
cp_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["urls"][0])' "$tmp/cp.json")
expect "mtls_client_cert_accepted" 0 "^ok   control-plane: $cp_url reachable, TLS verified \(HTTP [0-9]+" -- --control-plane "$cp_url" --ca-file "$tmp/pki/ca.pem" --cert "$tmp/pki/client.pem" --key "$tmp/pki/client-key.pem"
expect "mtls_without_client_cert_fails" 1 "^FAIL control-plane: $cp_url client certificate refused" -- --control-plane "$cp_url" --ca-file "$tmp/pki/ca.pem"
expect "mtls_foreign_client_cert_fails" 1 "^FAIL control-plane: $cp_url client certificate refused" -- --control-plane "$cp_url" --ca-file "$tmp/pki/ca.pem" --cert "$tmp/pki/badclient.pem" --key "$tmp/pki/badclient-key.pem"
kill "$cp_pid" 2>/dev/null
wait "$cp_pid" 2>/dev/null

# --- endpoints and dirs from the config file; absent ones are "not configured" ---
mkdir -p "$tmp/store"
cat >"$tmp/agent.yaml" <<YAML
servers:
  - https://localhost:$tls_port
tls:
  ca: $tmp/cert.pem
  cert: $tmp/cert.pem
  key: $tmp/key.pem
output_processor: 127.0.0.1:$closed_port
storage:
  endpoint: file://$tmp/store
work_dir: $tmp/work
ssh_ports: 64535-64540
YAML
expect "config_endpoints_checked" 1 "^FAIL output-processor: https://127.0.0.1:$closed_port unreachable" -- --config "$tmp/agent.yaml"
grep -q "^ok   control-plane: https://localhost:$tls_port reachable, TLS verified" "$tmp/out" && ok "config_servers_and_ca_used" || not_ok "config_servers_and_ca_used"
grep -q "^ok   object-storage: $tmp/store is a writable directory" "$tmp/out" && ok "config_file_storage_checked" || not_ok "config_file_storage_checked"
grep -q '^info docker-host: not configured' "$tmp/out" && ok "absent_docker_host_not_configured" || not_ok "absent_docker_host_not_configured"
grep -q "^ok   disk work-dir: .* free at $tmp/work (not created yet)" "$tmp/out" && ok "config_work_dir_used" || not_ok "config_work_dir_used"
grep -Eq '^(ok  |warn) ssh ports: [0-9]+ of 6 free' "$tmp/out" && ok "config_ssh_ports_used" || not_ok "config_ssh_ports_used"

grep -q "^ok   tls.key: $tmp/key.pem" "$tmp/out" && ok "config_tls_files_checked" || not_ok "config_tls_files_checked"
# DROVER_* environment overrides the file, as for the agent
DROVER_SSH_PORTS=64535-64536 expect "env_overrides_config" 1 '^(ok  |warn) ssh ports: [0-9]+ of 2 free' -- --config "$tmp/agent.yaml"
# a TLS file the config names but that is missing; a key readable by others
sed -e "s|ca: $tmp/cert.pem|ca: $tmp/missing-ca.pem|" "$tmp/agent.yaml" >"$tmp/agent-badtls.yaml"
chmod 0644 "$tmp/key.pem"
expect "missing_tls_ca_fails" 1 "^FAIL tls.ca: $tmp/missing-ca.pem: No such file" -- --config "$tmp/agent-badtls.yaml" --no-network
grep -q "^warn tls.key: $tmp/key.pem is readable by others" "$tmp/out" && ok "open_tls_key_warns" || not_ok "open_tls_key_warns"
chmod 0600 "$tmp/key.pem"
# an unknown key is refused as the agent refuses it
printf 'servers: []\nbogus_key: 1\n' >"$tmp/agent-bad.yaml"
expect "unknown_config_key_fails" 1 "^FAIL config: .*unknown key 'bogus_key'" -- --config "$tmp/agent-bad.yaml" --no-network

# --- proxy settings apply: an unreachable proxy breaks the check, NO_PROXY bypasses it ---
HTTPS_PROXY="http://127.0.0.1:$closed_port" NO_PROXY= no_proxy= expect "https_proxy_is_used" 1 \
        "^FAIL control-plane: https://127.0.0.1:$tls_port .*via proxy http://127.0.0.1:$closed_port" -- --control-plane "127.0.0.1:$tls_port" --ca-file "$tmp/cert.pem"
# a proxy URL with credentials: shown without them
https_proxy="http://drover:s3cret@127.0.0.1:$closed_port" NO_PROXY= no_proxy= expect "proxy_credentials_not_printed" 1 \
        "^FAIL control-plane: .*via proxy http://127.0.0.1:$closed_port:" -- --control-plane "127.0.0.1:$tls_port" --ca-file "$tmp/cert.pem"
grep -q s3cret "$tmp/out" && not_ok "proxy_password_not_in_output" || ok "proxy_password_not_in_output"
HTTPS_PROXY="http://127.0.0.1:$closed_port" NO_PROXY=127.0.0.1 expect "no_proxy_bypasses_proxy" 0 \
        "^ok   control-plane: https://127.0.0.1:$tls_port reachable, TLS verified \(" -- --control-plane "127.0.0.1:$tls_port" --ca-file "$tmp/cert.pem"

# --- a port of the range in use is reported; bad usage exits 2; disk threshold ---
python3 -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0",65533)); s.listen(); sys.stdout.write("x\n"); sys.stdout.flush(); time.sleep(30)' >"$tmp/busy" &
busy_pid=$!
for _ in $(seq 100); do [ -s "$tmp/busy" ] && break; sleep 0.05; done
# (top of the range: SSH rerun tests of other areas take ports from the bottom, concurrently)
expect "busy_port_reported" 0 '^warn ssh ports: [0-9] of 6 free: .*; in use: .*(65533|-6553[45])' -- --no-network --ports 65530-65535
kill "$busy_pid" 2>/dev/null
expect "min_disk_not_met_fails" 1 '^FAIL disk work-dir: .* \(needs at least ' -- --no-network --min-disk 1000000G
expect "bad_usage_exits_2" 2 'unexpected argument' -- bogus
expect "help_exits_0" 0 '^usage: drover check' -- --help

echo "1..$n"
[ $fails = 0 ]
