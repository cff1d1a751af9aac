#!/usr/bin/env bash
# dockerd.sh: start/stop a real Docker Engine with TLS on 127.0.0.1:2376 for the docker tests.
# Writes $DROVER_PEERS_DIR/dockerd.env (endpoint + PEM paths, a second CA's client cert for the
# "wrong certificate" test, the local image name). `stop` removes what dockerd leaves behind:
# docker0 and br-* bridges it made, its iptables chains and rules, cgroup folders, mounts.
set -eEuo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/peer.sh"
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
DIR=$PEERS/dockerd
ENV=$PEERS/dockerd.env
PORT=${DROVER_DOCKERD_PORT:-2376}
IMAGE=local/busybox:1

log() { printf 'dockerd.sh: %s\n' "$*" >&2; }
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

running() { [ -f "$DIR/dockerd.pid" ] && peer_pid_is "$(cat "$DIR/dockerd.pid")" dockerd; }

make_certs() {
        local c=$DIR/certs
        mkdir -p "$c"
        cd "$c"
        quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=drover-test-ca \
                -keyout ca.key -out ca.pem
        quiet openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key \
                -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
        quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile server.ext -out server.pem
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        quiet openssl req -newkey rsa:2048 -nodes -subj /CN=drover-client -keyout key.pem \
                -out client.csr
        quiet openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile client.ext -out cert.pem
        # a client certificate from another CA: the engine must refuse it
        quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca \
                -keyout other-ca.key -out other-ca.pem
        quiet openssl req -newkey rsa:2048 -nodes -subj /CN=intruder -keyout wrong-key.pem \
                -out wrong.csr
        quiet openssl x509 -req -in wrong.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial \
                -days 2 -extfile client.ext -out wrong-cert.pem
        chmod 600 ./*.key ./*key.pem
        cd - >/dev/null
}

dk() { docker -H "unix://$DIR/docker.sock" "$@"; }

start() {
        if running && [ -f "$ENV" ]; then
                log "already running (pid $(cat "$DIR/dockerd.pid"))"
                return 0
        fi
        command -v dockerd >/dev/null || { log "dockerd missing: apt-get install -y docker.io"; exit 1; }
        mkdir -p "$DIR"
        [ -f "$DIR/certs/cert.pem" ] || make_certs
        iptables -S FORWARD 2>/dev/null | head -1 >"$DIR/forward-policy" || true
        mkdir -p "$DIR/data" "$DIR/exec"
        local c=$DIR/certs
        dockerd --data-root "$DIR/data" --exec-root "$DIR/exec" -p "$DIR/dockerd.pid" \
                --tlsverify --tlscacert "$c/ca.pem" --tlscert "$c/server.pem" --tlskey "$c/server.key" \
                -H "tcp://127.0.0.1:$PORT" -H "unix://$DIR/docker.sock" \
                --insecure-registry 127.0.0.1:5000 >"$DIR/dockerd.log" 2>&1 &
        local i
        for i in $(seq 1 150); do
                if [ -S "$DIR/docker.sock" ] && dk version >/dev/null 2>&1; then break; fi
                sleep 0.2
        done
        dk version >/dev/null 2>&1 || { log "dockerd did not come up"; tail -30 "$DIR/dockerd.log" >&2; exit 1; }
        if ! dk image inspect "$IMAGE" >/dev/null 2>&1; then
                local root=$DIR/rootfs
                rm -rf "$root"
                mkdir -p "$root"/{bin,tmp,etc,root,home/circleci}
                cp /bin/busybox "$root/bin/busybox"
                local a
                for a in $("$root/bin/busybox" --list); do
                        [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
                done
                chmod 1777 "$root/tmp"
                printf 'root:x:0:0:root:/root:/bin/sh\ncircleci:x:3434:3434::/home/circleci:/bin/sh\n' >"$root/etc/passwd"
                printf 'root:x:0:\ncircleci:x:3434:\n' >"$root/etc/group"
                chown 3434:3434 "$root/home/circleci"
                tar -C "$root" -c . | dk import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
        fi
        cat >"$ENV.tmp" <<EOT
DOCKER_URL=tcp://127.0.0.1:$PORT
DOCKER_CA=$c/ca.pem
DOCKER_CERT=$c/cert.pem
DOCKER_KEY=$c/key.pem
DOCKER_WRONG_CERT=$c/wrong-cert.pem
DOCKER_WRONG_KEY=$c/wrong-key.pem
DOCKER_SOCK=$DIR/docker.sock
DOCKER_IMAGE=$IMAGE
EOT
        mv "$ENV.tmp" "$ENV"
        log "ready on tcp://127.0.0.1:$PORT"
}

stop() {
        rm -f "$ENV"
        if running; then
                local pid
                pid=$(cat "$DIR/dockerd.pid")
                # containers first, so their networks and mounts go the normal way
                dk ps -aq 2>/dev/null | xargs -r docker -H "unix://$DIR/docker.sock" rm -f >/dev/null 2>&1 || true
                dk network prune -f >/dev/null 2>&1 || true
                kill "$pid" 2>/dev/null || true
                local i
                for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
        fi
        # containerd and shims started for this data root
        local p
        for p in $(pgrep -f "$DIR/exec" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
        # mounts under our folders, deepest first
        if [ -d "$DIR" ]; then
                awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
                        while read -r m; do umount -l "$m" 2>/dev/null || true; done
        fi
        # bridges dockerd created (docker0 and br-<12 hex> of user-defined networks)
        ip link del docker0 2>/dev/null || true
        for p in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^br-[0-9a-f]{12}$' || true); do
                ip link del "$p" 2>/dev/null || true
        done
        # iptables: rules that jump to DOCKER* chains, then the chains
        local t
        for t in filter nat; do
                iptables -t "$t" -S 2>/dev/null | grep -E '^-A (FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*(DOCKER|docker0|br-[0-9a-f]{12})' |
                        sed 's/^-A/-D/' | while read -r r; do eval "iptables -t $t $r" 2>/dev/null || true; done
                for p in $(iptables -t "$t" -S 2>/dev/null | awk '/^-N DOCKER/ {print $2}'); do
                        iptables -t "$t" -F "$p" 2>/dev/null || true
                done
                for p in $(iptables -t "$t" -S 2>/dev/null | awk '/^-N DOCKER/ {print $2}'); do
                        iptables -t "$t" -X "$p" 2>/dev/null || true
                done
        done
        if [ -f "$DIR/forward-policy" ] && grep -q '^-P FORWARD' "$DIR/forward-policy"; then
                iptables -P FORWARD "$(awk '{print $3}' "$DIR/forward-policy")" 2>/dev/null || true
        fi
        # cgroup folders (v1 controllers and v2)
        for p in /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker /sys/fs/cgroup/unified/docker; do
                [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        rm -rf "$DIR"
        log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
