#!/usr/bin/env bash
# bench/artifacts.sh: store_artifacts of N small files (default 10000, ~1 KiB each) by drover into
# the real radosgw (scripts/peers/radosgw.sh start), against one `curl --aws-sigv4 -T` process per
# file on the same server, in one run. drover's time is its step time as `drover job` prints it.
# Prints the ratio baseline / drover (goal: >= 10). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
DROVER=${DROVER:-build/agent/drover}
N=${N:-10000}
PEERS=${DROVER_PEERS_DIR:-/tmp/drover-peers}
[ -f "$PEERS/radosgw.env" ] || { echo "start the peer: scripts/peers/radosgw.sh start" >&2; exit 1; }
. "$PEERS/radosgw.env"
export S3_BUCKET S3_ENDPOINT S3_REGION S3_ACCESS_KEY S3_SECRET_KEY
tmp=$(mktemp -d /var/tmp/drover-bench-art-XXXXXX)
run=bench-art-$$-$(date +%s)
trap 'python3 bench/s3_cleanup.py "$run/" || true; rm -rf "$tmp"' EXIT
SIGV4=(--aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY")

gen="mkdir -p out && cd out && python3 -c 'import os
for i in range($N):
    d = \"d%02d\" % (i // 1000)
    os.makedirs(d, exist_ok=True)
    open(\"%s/r%05d.txt\" % (d, i), \"w\").write((\"line %d of a small report\\n\" % i) * 40)'"
python3 - "$run" "$gen" >"$tmp/spec.json" <<'PY'
import json, os, sys
run, gen = sys.argv[1], sys.argv[2]
print(json.dumps({"version": 1, "id": {"job": run, "name": "art", "build_num": 1, "project": "bench"},
                  "executor": {"runtime": "sandbox", "kind": "machine", "network": "none"},
                  "storage": {"url": f"s3://{os.environ['S3_BUCKET']}/{run}",
                              "endpoint": os.environ["S3_ENDPOINT"], "region": os.environ["S3_REGION"],
                              "access_key": os.environ["S3_ACCESS_KEY"],
                              "secret_key": os.environ["S3_SECRET_KEY"], "path_style": True},
                  "steps": [{"type": "run", "name": "generate", "command": gen},
                            {"type": "store_artifacts", "path": "out", "destination": "out"}]}))
PY
"$DROVER" job --spec "$tmp/spec.json" >"$tmp/job.log" 2>&1 || { tail -20 "$tmp/job.log"; exit 1; }
d=$(sed -n 's/^<== Uploading artifacts: success (\([0-9.]*\)s)$/\1/p' "$tmp/job.log" | tail -1)
[ -n "$d" ] || d=$(grep -E '^<== .*rtifact.*success' "$tmp/job.log" | sed -n 's/.*(\([0-9.]*\)s)$/\1/p' | tail -1)
grep -q "Uploaded $N artifacts" "$tmp/job.log" || { echo "drover did not upload $N files"; tail "$tmp/job.log"; exit 1; }

if [ "${BASELINE:-1}" = 0 ]; then # (drover alone, for profiling)
        printf 'artifacts: %d files  drover %.2fs\n' "$N" "$d"
        exit 0
fi
(cd "$tmp" && python3 -c "
import os
for i in range($N):
    d = 'out/d%02d' % (i // 1000)
    os.makedirs(d, exist_ok=True)
    open('%s/r%05d.txt' % (d, i), 'w').write(('line %d of a small report\n' % i) * 40)")
t0=$(date +%s.%N)
(cd "$tmp" && find out -type f | sort | while read -r f; do
        curl -sS --fail -o /dev/null "${SIGV4[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
                -H "Content-Type: text/plain" -T "$f" "$S3_ENDPOINT/$S3_BUCKET/$run/baseline/$f"
done)
t1=$(date +%s.%N)
b=$(echo "$t1 - $t0" | bc -l)
printf 'artifacts: %d files  drover %.2fs  curl-per-file %.2fs  speedup %.1fx\n' "$N" "$d" "$b" \
        "$(echo "$b / $d" | bc -l)"
