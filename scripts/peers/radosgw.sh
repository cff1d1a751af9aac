#!/usr/bin/env bash
# radosgw.sh start|stop: a real Ceph radosgw (S3 API, verifies SigV4) on 127.0.0.1, one monitor and
# one in-memory (memstore) OSD in a temp dir. Idempotent. Writes $DROVER_PEERS_DIR/radosgw.env:
#   S3_ENDPOINT=http://127.0.0.1:7480  S3_REGION  S3_ACCESS_KEY  S3_SECRET_KEY  S3_BUCKET
# Packages: scripts/deps/storage.txt (ceph-mon ceph-osd radosgw ceph-common).
set -eEuo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/peer.sh"
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
DIR=$PEERS/radosgw
ENV=$PEERS/radosgw.env
PORT=${DROVER_RADOSGW_PORT:-7480}
MONPORT=${DROVER_CEPH_MON_PORT:-6789}
AK=DROVERTESTACCESSKEY0
SK=drover-test-secret-key-0123456789abcdef
BUCKET=drover-test
CONF=$DIR/ceph.conf

log() { printf 'radosgw.sh: %s\n' "$*" >&2; }
# Any failing command names itself and shows the daemons' logs (a silent exit 1 says nothing).
on_err() {
        log "failed (exit $1) at line $2: $3"
        local f
        for f in "$DIR"/log/*.log; do
                [ -f "$f" ] && { log "--- tail of $f"; tail -15 "$f" >&2; }
        done
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
comm_of() { case $1 in mon) echo ceph-mon ;; osd) echo ceph-osd ;; *) echo "$1" ;; esac; }
alive() { [ -f "$DIR/$1.pid" ] && peer_pid_is "$(cat "$DIR/$1.pid")" "$(comm_of "$1")"; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/" || true; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

start() {
        local try
        for try in 1 2 3; do
                if bash "${BASH_SOURCE[0]}" start-once; then return 0; fi
                log "start attempt $try failed; cleaning up and retrying"
                stop_daemons
                sleep 1
        done
        log "radosgw did not start after 3 attempts"
        exit 1
}

start_once() {
        if alive radosgw && [ -f "$ENV" ] && [ "$(http_code)" != 000 ]; then
                log "already running"
                return 0
        fi
        stop_daemons
        local p
        for p in "$MONPORT" "$PORT"; do
                if port_busy "$p"; then
                        log "port $p is in use by another process:"; ss -Hltnp "sport = :$p" >&2 || true
                        return 1
                fi
        done
        for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
                command -v $b >/dev/null || { log "missing $b: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common"; exit 1; }
        done
        rm -rf "$DIR" && mkdir -p "$DIR"/{mon,osd,run,log}
        local fsid
        fsid=$(cat /proc/sys/kernel/random/uuid)
        cat >"$CONF" <<EOT
[global]
fsid = $fsid
mon host = 127.0.0.1:$MONPORT
mon initial members = a
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 4294967296
# a short placement-group log: with Ceph's defaults (up to 10 000 entries a PG, 3000 dups) the
# OSD's CPU per write grew with every run of the suite or a benchmark (trimming a long log)
osd min pg log entries = 100
osd max pg log entries = 500
osd pg log dups tracked = 500
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
pid file = $DIR/\$name.pid
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
keyring = $DIR/keyring
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw dns name = localhost
rgw enable usage log = false
# beast serves requests as coroutines: a few threads are enough; radosgw's default of 512 threads
# spent a quarter of its CPU switching between them on 2 cores
rgw thread pool size = 4
# no log lines per request (3 a request at the default 1/5); errors are still logged
debug rgw = 0/5
# deleted objects and multipart parts are freed after a minute, not radosgw's default two hours:
# a suite or a benchmark run would otherwise fill the in-memory store for everyone after it
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw data = $DIR/rgw
EOT
        mkdir -p "$DIR/rgw"
        monmaptool --create --add a "127.0.0.1:$MONPORT" --fsid "$fsid" "$DIR/monmap" >/dev/null
        ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" 2>>"$DIR/log/setup.log"
        ceph-mon -c "$CONF" -i a --pid-file "$DIR/mon.pid"
        local i
        for i in $(seq 1 100); do
                timeout 5 ceph -c "$CONF" mon stat >/dev/null 2>&1 && break
                sleep 0.2
        done
        for i in $(seq 1 50); do
                timeout 10 ceph -c "$CONF" osd create >/dev/null 2>>"$DIR/log/setup.log" && break
                sleep 0.3
        done
        mkdir -p "$DIR/osd/osd.0"
        ceph-osd -c "$CONF" -i 0 --mkfs 2>>"$DIR/log/setup.log" >/dev/null
        ceph -c "$CONF" osd crush add osd.0 1.0 host=localhost root=default >/dev/null 2>>"$DIR/log/setup.log"
        ceph-osd -c "$CONF" -i 0 --pid-file "$DIR/osd.pid" 2>>"$DIR/log/setup.log"
        radosgw -c "$CONF" -n client.rgw.a --pid-file "$DIR/radosgw.pid"
        local code=000
        for i in $(seq 1 300); do
                code=$(http_code)
                [ "$code" != 000 ] && break
                sleep 0.2
        done
        [ "$code" != 000 ] || { log "radosgw did not come up"; tail -30 "$DIR"/log/*rgw*.log >&2 || true; exit 1; }
        for i in $(seq 1 50); do
                radosgw-admin -c "$CONF" user create --uid=drover --display-name=drover \
                        --access-key="$AK" --secret-key="$SK" >/dev/null 2>>"$DIR/log/setup.log" && break
                sleep 0.3
        done
        cat >"$ENV.tmp" <<EOT
S3_ENDPOINT=http://127.0.0.1:$PORT
S3_REGION=us-east-1
S3_ACCESS_KEY=$AK
S3_SECRET_KEY=$SK
S3_BUCKET=$BUCKET
EOT
        # the bucket, made with a signed request (also proves the credentials work)
        for i in $(seq 1 50); do
                code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
                        --user "$AK:$SK" -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
                        "http://127.0.0.1:$PORT/$BUCKET" || true)
                case $code in 200|409) break ;; esac
                sleep 0.3
        done
        case $code in 200|409) ;; *) log "cannot create the bucket ($code)"; exit 1 ;; esac
        mv "$ENV.tmp" "$ENV"
        log "ready on http://127.0.0.1:$PORT (bucket $BUCKET), env in $ENV"
}

stop_daemons() {
        local d pid
        # daemons of an earlier run whose pid files are gone (same config path)
        pkill -9 -f -- "-c $CONF" 2>/dev/null || true
        for d in radosgw osd mon; do
                if alive $d; then
                        pid=$(cat "$DIR/$d.pid")
                        kill "$pid" 2>/dev/null || true
                        for _ in $(seq 1 50); do peer_pid_is "$pid" "$(comm_of $d)" || break; sleep 0.1; done
                        kill -9 "$pid" 2>/dev/null || true
                fi
        done
}

stop() {
        rm -f "$ENV"
        stop_daemons
        rm -rf "$DIR"
        log "stopped"
}

case ${1:-} in
start) start ;;
start-once) start_once ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
