#!/usr/bin/env bash
# registry.sh: start/stop Debian's docker-registry (distribution) with htpasswd auth over http on
# 127.0.0.1:5000, for the authenticated pull test. Writes $DROVER_PEERS_DIR/registry.env.
# dockerd.sh starts the engine with --insecure-registry 127.0.0.1:5000; the test pushes its image.
set -eEuo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/peer.sh"
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
DIR=$PEERS/registry
ENV=$PEERS/registry.env
ADDR=127.0.0.1:${DROVER_REGISTRY_PORT:-5000}
USER_=drover
PASS=s3cret-pull

log() { printf 'registry.sh: %s\n' "$*" >&2; }
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
running() { [ -f "$DIR/pid" ] && peer_pid_is "$(cat "$DIR/pid")" docker-registry; }

start() {
        if running && [ -f "$ENV" ]; then log "already running"; return 0; fi
        command -v docker-registry >/dev/null || { log "apt-get install -y docker-registry"; exit 1; }
        mkdir -p "$DIR/data"
        quiet htpasswd -Bbc "$DIR/htpasswd" "$USER_" "$PASS"
        cat >"$DIR/config.yml" <<EOT
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
auth:
  htpasswd:
    realm: drover-test
    path: $DIR/htpasswd
EOT
        docker-registry serve "$DIR/config.yml" >"$DIR/log" 2>&1 &
        echo $! >"$DIR/pid"
        local i code=
        for i in $(seq 1 100); do
                code=$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v2/" || true)
                [ "$code" = 401 ] && break
                sleep 0.1
        done
        [ "$code" = 401 ] || { log "registry did not come up ($code)"; tail -20 "$DIR/log" >&2; exit 1; }
        cat >"$ENV.tmp" <<EOT
REGISTRY_ADDR=$ADDR
REGISTRY_USER=$USER_
REGISTRY_PASSWORD=$PASS
EOT
        mv "$ENV.tmp" "$ENV"
        log "ready on http://$ADDR (htpasswd auth)"
}

stop() {
        rm -f "$ENV"
        if running; then
                local pid
                pid=$(cat "$DIR/pid")
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
        fi
        rm -rf "$DIR"
        log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
