#!/usr/bin/env bash
# bench/cache.sh: save_cache + restore_cache of a tree (default 1 GiB, 50k files) by drover into
# the real radosgw (scripts/peers/radosgw.sh start), against `tar -I 'zstd -T0'` piped into
# `curl --aws-sigv4 -T` (and `curl | tar -x`) on the same server and the same tree, in one run.
# drover's times are its step times (as printed by `drover job`); the tree is generated inside the
# job and, identically, on the host for the baseline (bench/gen_tree.py). Prints ratios
# (drover / baseline: below 1 = drover faster). Needs root. FILES=50000 MIB=1024 by default.
# The baseline's tree, archive and restore live on a tmpfs, as the job's work area does: a restore
# onto the host's disk measured that disk's file creation (0.2 ms a file on this ext4), not tar.
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=${DROVER:-build/agent/drover}
FILES=${FILES:-50000}
MIB=${MIB:-1024}
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
[ -f "$PEERS/radosgw.env" ] || { echo "start the peer: scripts/peers/radosgw.sh start" >&2; exit 1; }
. "$PEERS/radosgw.env"
tmp=$(mktemp -d /var/tmp/drover-bench-cache-XXXXXX)
mount -t tmpfs -o size=$((MIB * 3 + 512))m,mode=0700 drover-bench "$tmp"
run=bench-$$-$(date +%s)
SIGV4=(--aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY")
EMPTY=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
URL="$S3_ENDPOINT/$S3_BUCKET/$run/baseline.tar.zst"
cleanup() {
        # radosgw's memstore is small and frees deleted objects' tails only after its GC delay:
        # delete everything of this run and run its GC now
        python3 bench/s3_cleanup.py "$run/" || true
        umount "$tmp" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
gen=$(cat bench/gen_tree.py)

spec() { # name steps-json
        python3 - "$1" "$2" "$run" <<'PY'
import json, os, sys
name, steps, run = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
print(json.dumps({"version": 1, "id": {"job": f"{name}-{run}", "name": name, "build_num": 1,
                                       "project": f"bench/{run}"},
                  "vcs": {"branch": "main", "revision": "0123456789abcdef"},
                  "executor": {"runtime": "sandbox", "kind": "machine", "network": "none"},
                  "storage": {"url": f"s3://{os.environ['S3_BUCKET']}/{run}",
                              "endpoint": os.environ["S3_ENDPOINT"], "region": os.environ["S3_REGION"],
                              "access_key": os.environ["S3_ACCESS_KEY"],
                              "secret_key": os.environ["S3_SECRET_KEY"], "path_style": True},
                  "steps": steps}))
PY
}
export S3_BUCKET S3_ENDPOINT S3_REGION S3_ACCESS_KEY S3_SECRET_KEY
step_time() { # output-file step-title -> seconds (drover prints "1m05s" past a minute)
        sed -n "s/^<== $2: success (\([0-9.ms]*\))$/\1/p" "$1" | tail -1 |
                awk '{ m = 0; if (index($0, "m")) { split($0, a, "m"); m = a[1]; $0 = a[2] }
                       sub("s", ""); print m * 60 + $0 }'
}
now() { date +%s.%N; }

echo "tree: $FILES files, $MIB MiB (bench/gen_tree.py)"
gen_cmd="python3 - ~/tree $FILES $MIB <<'GEN'
$gen
GEN"
spec save "$(python3 -c 'import json,sys; print(json.dumps([{"type":"run","name":"generate","command":sys.argv[1]},{"type":"save_cache","key":"tree-v1","paths":["~/tree"]}]))' "$gen_cmd")" >"$tmp/save.json"
spec restore '[{"type":"restore_cache","keys":["tree-v1"]},{"type":"run","name":"count","command":"find ~/tree -type f | wc -l"}]' >"$tmp/restore.json"

"$DROVER" job --spec "$tmp/save.json" >"$tmp/save.out" 2>&1 || { tail -20 "$tmp/save.out"; exit 1; }
d_save=$(step_time "$tmp/save.out" "Saving cache")
"$DROVER" job --spec "$tmp/restore.json" >"$tmp/restore.out" 2>&1 || { tail -20 "$tmp/restore.out"; exit 1; }
d_restore=$(step_time "$tmp/restore.out" "Restoring cache")
grep -q "^$FILES\$" "$tmp/restore.out" || { echo "restore: file count differs"; tail "$tmp/restore.out"; exit 1; }

python3 bench/gen_tree.py "$tmp/tree" "$FILES" "$MIB"
sync
t0=$(now)
# (radosgw wants a length: no chunked upload from a pipe, so the archive goes through a file)
tar -C "$tmp" -I 'zstd -T0' -cf "$tmp/baseline.tar.zst" tree
curl -sS --fail -o /dev/null "${SIGV4[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -T "$tmp/baseline.tar.zst" "$URL"
t1=$(now)
mkdir "$tmp/restore"
curl -sS --fail "${SIGV4[@]}" -H "x-amz-content-sha256: $EMPTY" "$URL" |
        tar -C "$tmp/restore" -I 'zstd -d -T0' -xf -
t2=$(now)
[ "$(find "$tmp/restore/tree" -type f | wc -l)" = "$FILES" ] || { echo "baseline restore: count differs"; exit 1; }
b_save=$(echo "$t1 - $t0" | bc -l)
b_restore=$(echo "$t2 - $t1" | bc -l)
# archive sizes (drover's object by a HEAD; the baseline's file)
d_size=$(curl -sS --fail -I "${SIGV4[@]}" -H "x-amz-content-sha256: $EMPTY" \
        "$S3_ENDPOINT/$S3_BUCKET/$run/caches/bench/$run/tree-v1" | tr -d '\r' |
        sed -n 's/^[Cc]ontent-[Ll]ength: //p')
b_size=$(stat -c %s "$tmp/baseline.tar.zst")
printf '%-8s %10s %10s %8s\n' op drover baseline ratio
printf '%-8s %10s %10s %8.3f\n' size "$d_size" "$b_size" "$(echo "$d_size / $b_size" | bc -l)"
printf '%-8s %9.2fs %9.2fs %8.2f\n' save "$d_save" "$b_save" "$(echo "$d_save / $b_save" | bc -l)"
printf '%-8s %9.2fs %9.2fs %8.2f\n' restore "$d_restore" "$b_restore" "$(echo "$d_restore / $b_restore" | bc -l)"
