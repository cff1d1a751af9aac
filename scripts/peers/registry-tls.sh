#!/usr/bin/env bash
# registry-tls.sh: start/stop two more Debian docker-registry (distribution) instances for the
# image tests, next to registry.sh's plain-http one (which stays as it is for the docker tests):
#   127.0.0.1:5443  TLS (own test CA) + htpasswd basic auth
#   127.0.0.1:5444  TLS + bearer-token auth, tokens from tests/doubles/registry_token_server.py
#                   on 127.0.0.1:5445 (TLS, basic auth, RS256 JWTs signed with openssl)
# Both log every request at info level (the tests count blob GETs in the logs).
# Writes $DROVER_PEERS_DIR/registry-tls.env.
set -eEuo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/peer.sh"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
DIR=$PEERS/registry-tls
ENV=$PEERS/registry-tls.env
TLS_ADDR=127.0.0.1:${DROVER_REGISTRY_TLS_PORT:-5443}
TOK_ADDR=127.0.0.1:${DROVER_REGISTRY_TOKEN_PORT:-5444}
TS_ADDR=127.0.0.1:${DROVER_TOKEN_SERVER_PORT:-5445}
USER_=drover
PASS=tls-s3cret
ISSUER=drover-test-token-issuer
SERVICE=drover-test-registry

log() { printf 'registry-tls.sh: %s\n' "$*" >&2; }
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
running_one() { [ -f "$DIR/$1.pid" ] && peer_pid_is "$(cat "$DIR/$1.pid")" "$2"; }
running() {
        running_one tls docker-registry && running_one token docker-registry &&
                running_one token-server python3
}

make_certs() {
        local c=$DIR/certs
        mkdir -p "$c"
        (
                cd "$c"
                ossl() { quiet openssl "$@"; }
                ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                        -subj "/CN=drover registry test CA" -keyout ca.key -out ca.pem
                ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
                        -keyout server.key -out server.csr
                printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
                ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                        -extfile server.ext -out server.pem
                # token signing key: RSA (RS256), self-signed cert = the registry's rootcertbundle
                ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$ISSUER" \
                        -keyout token.key -out token.pem
                # another CA: a client trusting only it must refuse the registry
                ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                        -subj "/CN=other CA" -keyout other-ca.key -out other-ca.pem
                chmod 600 ./*.key
        )
}

write_config() { # name addr auth-yaml
        cat >"$DIR/$1.yml" <<EOT
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $DIR/$1-data
  delete:
    enabled: true
http:
  addr: $2
  tls:
    certificate: $DIR/certs/server.pem
    key: $DIR/certs/server.key
auth:
$3
EOT
}

wait_up() { # addr name
        local i code=
        for i in $(seq 1 100); do
                code=$(curl -s --cacert "$DIR/certs/ca.pem" -o /dev/null -w '%{http_code}' \
                        "https://$1/v2/" || true)
                [ "$code" = 401 ] && return 0
                sleep 0.1
        done
        log "$2 did not come up on $1 ($code)"
        tail -20 "$DIR/$2.log" >&2
        exit 1
}

start() {
        if running && [ -f "$ENV" ]; then log "already running"; return 0; fi
        command -v docker-registry >/dev/null || { log "apt-get install -y docker-registry"; exit 1; }
        stop_daemons
        sleep 0.2
        local p
        for p in "${TLS_ADDR##*:}" "${TOK_ADDR##*:}" "${TS_ADDR##*:}"; do
                if port_busy "$p"; then
                        log "port $p is in use by another process:"
                        ss -Hltnp "sport = :$p" >&2 || true
                        exit 1
                fi
        done
        mkdir -p "$DIR/tls-data" "$DIR/token-data"
        [ -f "$DIR/certs/token.pem" ] || make_certs
        quiet htpasswd -Bbc "$DIR/htpasswd" "$USER_" "$PASS"
        write_config tls "$TLS_ADDR" "  htpasswd:
    realm: drover-tls-test
    path: $DIR/htpasswd"
        write_config token "$TOK_ADDR" "  token:
    realm: https://$TS_ADDR/token
    service: $SERVICE
    issuer: $ISSUER
    rootcertbundle: $DIR/certs/token.pem"
        python3 "$SRC/tests/doubles/registry_token_server.py" --listen "$TS_ADDR" \
                --tls-cert "$DIR/certs/server.pem" --tls-key "$DIR/certs/server.key" \
                --sign-key "$DIR/certs/token.key" --sign-cert "$DIR/certs/token.pem" \
                --issuer "$ISSUER" --user "$USER_" --password "$PASS" \
                >"$DIR/token-server.log" 2>&1 &
        echo $! >"$DIR/token-server.pid"
        docker-registry serve "$DIR/tls.yml" >"$DIR/tls.log" 2>&1 &
        echo $! >"$DIR/tls.pid"
        docker-registry serve "$DIR/token.yml" >"$DIR/token.log" 2>&1 &
        echo $! >"$DIR/token.pid"
        wait_up "$TLS_ADDR" tls
        wait_up "$TOK_ADDR" token
        cat >"$ENV.tmp" <<EOT
REGISTRY_TLS_ADDR=$TLS_ADDR
REGISTRY_TLS_CA=$DIR/certs/ca.pem
REGISTRY_TLS_OTHER_CA=$DIR/certs/other-ca.pem
REGISTRY_TLS_USER=$USER_
REGISTRY_TLS_PASSWORD=$PASS
REGISTRY_TLS_DATA=$DIR/tls-data
REGISTRY_TLS_LOG=$DIR/tls.log
REGISTRY_TOKEN_ADDR=$TOK_ADDR
REGISTRY_TOKEN_DATA=$DIR/token-data
REGISTRY_TOKEN_LOG=$DIR/token.log
TOKEN_SERVER_ADDR=$TS_ADDR
TOKEN_SERVER_LOG=$DIR/token-server.log
EOT
        mv "$ENV.tmp" "$ENV"
        log "ready: https://$TLS_ADDR (htpasswd), https://$TOK_ADDR (token via https://$TS_ADDR)"
}

stop_one() { # name comm
        if running_one "$1" "$2"; then
                local pid
                pid=$(cat "$DIR/$1.pid")
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/$1.pid"
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

stop_daemons() {
        stop_one tls docker-registry
        stop_one token docker-registry
        stop_one token-server python3
        # daemons of an earlier run whose pid files are gone (same config paths)
        pkill -9 -f -- "serve $DIR/(tls|token).yml" 2>/dev/null || true
        pkill -9 -f -- "registry_token_server.py --listen $TS_ADDR" 2>/dev/null || true
}

stop() {
        rm -f "$ENV"
        stop_daemons
        rm -rf "$DIR"
        log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
