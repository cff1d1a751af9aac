#!/usr/bin/env bash
# bench/output.sh: the output pipeline's throughput and latency.
#  1. throughput: 1 GiB of log-like output with 100 secrets in it, read in 64 KiB chunks, masked
#     (Aho-Corasick, 100 secrets), spooled and streamed by the shipper to a receiver that speaks
#     the processor protocol, until every byte is acknowledged; against `cat` of the same file into
#     a TCP socket. Both receivers are the same C program (bench/output/sink.c: `raw` reads to EOF,
#     `http` checks the protocol like tests/doubles/output_processor.py --sink), so the receiving
#     side costs little of the 2 cores and the same for both. SINK=python uses the Python double
#     and a Python discard server instead (the earlier setup). RUNS=N repeats both N times
#     (interleaved) and reports each run and the median ratio.
#  2. masking alone: output_step_write with no terminal and no processor (user CPU).
#  3. latency: the same pipeline paced at RATE MB/s (default 20); the receiver measures, per frame,
#     arrival time minus the writer's timestamp: p50/p99/max.
# Not a timed test. Needs `ninja -C build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BENCH=$BUILD/tests/integration/output/output_bench
CSINK=$BUILD/tests/integration/output/output_sink
SIZE=${SIZE:-1073741824}
RATE=${RATE:-20}
LAT_BYTES=${LAT_BYTES:-209715200}
RUNS=${RUNS:-3}
SINK=${SINK:-c}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

ms() { echo $(( $(date +%s%N) / 1000000 )); }
wait_port() { # PORTFILE -> port; gives up after 10 s
        local i=0
        while [ ! -s "$1" ]; do
                sleep 0.02
                i=$((i + 1))
                [ $i -lt 500 ] || { echo "no receiver came up ($1)" >&2; exit 1; }
        done
        cat "$1"
}

"$BENCH" gen "$tmp/in" "$SIZE"
bytes=$(stat -c %s "$tmp/in")
cat "$tmp/in" > /dev/null # warm the page cache for both sides

cat_run() { # -> ms on stdout
        rm -f "$tmp/cat.port"
        if [ "$SINK" = c ]; then
                "$CSINK" raw "$tmp/cat.port" > "$tmp/cat.out" &
        else
                python3 - "$tmp/cat.port" > "$tmp/cat.out" <<'PY' &
import socket, sys, os
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0
while True:
    k = c.recv_into(buf)
    if not k: break
    n += k
print(n)
PY
        fi
        local srv=$! port
        port=$(wait_port "$tmp/cat.port")
        local t0 t1
        t0=$(ms)
        /usr/bin/time -f "%U %S" -o "$tmp/cat.time" cat "$tmp/in" > "/dev/tcp/127.0.0.1/$port"
        wait "$srv"
        t1=$(ms)
        read -r got scpu < "$tmp/cat.out"
        [ "$got" = "$bytes" ] || { echo "cat: receiver got $got bytes" >&2; exit 1; }
        # ms, then CPU seconds of the sender and of the receiver (C receiver only)
        echo "$((t1 - t0)) $(awk '{print $1 + $2}' "$tmp/cat.time") ${scpu:-0}"
}

start_sink() { # -> port in $port, pid last in pids
        rm -f "$tmp/sink.port"
        if [ "$SINK" = c ]; then
                "$CSINK" http "$tmp/sink.port" bench-token &
        else
                python3 tests/doubles/output_processor.py --sink --dir "$tmp/sink" --token bench-token \
                        --port-file "$tmp/sink.port" &
        fi
        pids+=("$!")
        port=$(wait_port "$tmp/sink.port")
}
stats() { python3 -c 'import json,sys,urllib.request as u; print(json.dumps(json.load(u.urlopen("http://127.0.0.1:%s/control/stats" % sys.argv[1]))))' "$port"; }

drover_run() { # -> ms on stdout, stats in $tmp/full.json
        start_sink
        local out
        out=$(/usr/bin/time -f "%U %S" -o "$tmp/dr.time" "$BENCH" run "$tmp/in" "http://127.0.0.1:$port")
        stats > "$tmp/full.json"
        kill "${pids[-1]}"
        # ms, then CPU seconds of writer + shipper and of the receiver
        echo "$(awk -F'[= ]' '{printf "%d", $2 * 1000}' <<<"$out") $(awk '{print $1 + $2}' "$tmp/dr.time") $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("cpu_s", 0))' "$tmp/full.json")"
}

runs=""
for i in $(seq 1 "$RUNS"); do
        read -r c ccpu cscpu <<<"$(cat_run)"
        read -r d dcpu dscpu <<<"$(drover_run)"
        runs="$runs $c:$d:$ccpu:$cscpu:$dcpu:$dscpu"
        echo "run $i: cat $c ms (cpu $ccpu + receiver $cscpu s), drover $d ms (cpu $dcpu + receiver $dscpu s), ratio $(python3 -c "print('%.2f' % ($c / $d))"), load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
full_stats=$(cat "$tmp/full.json")

# --- masking alone (user CPU: each secret and its base64/URL/JSON forms, one automaton) ---
mask_line=$("$BENCH" mask "$tmp/in")

# --- latency at a steady rate ---
head -c "$LAT_BYTES" "$tmp/in" > "$tmp/lat"
start_sink
"$BENCH" run "$tmp/lat" "http://127.0.0.1:$port" "$RATE" > /dev/null
lat_stats=$(stats)

python3 - "$bytes" "$runs" "$full_stats" "$lat_stats" "$RATE" "$SINK" "$mask_line" <<'PY'
import json, statistics, sys
b, runs = int(sys.argv[1]), [tuple(map(float, r.split(":"))) for r in sys.argv[2].split()]
full, lat, rate, sink = json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5], sys.argv[6]
mib = b / 1048576
ratios = sorted(r[0] / r[1] for r in runs)
med = statistics.median(ratios)
c_ms = statistics.median(r[0] for r in runs)
d_ms = statistics.median(r[1] for r in runs)
c_cpu = statistics.median(r[2] + r[3] for r in runs)
d_cpu = statistics.median(r[4] + r[5] for r in runs)
print("receiver                       %s" % ("C (bench/output/sink.c)" if sink == "c" else "Python"))
print("bytes                          %d (%.0f MiB, 100 secrets), %d runs" % (b, mib, len(runs)))
print("cat into a socket              median %d ms  %.0f MiB/s" % (c_ms, mib / c_ms * 1000))
print("drover mask+spool+ship+ack     median %d ms  %.0f MiB/s" % (d_ms, mib / d_ms * 1000))
print("ratio drover/cat per run       %s" % " ".join("%.2f" % r for r in ratios))
print("ratio drover/cat (median)      %.2f  (goal >= 0.5)" % med)
print("CPU s, sender + receiver       cat %.2f  drover %.2f  (medians; ratio %.2f)" % (c_cpu, d_cpu, c_cpu / d_cpu if d_cpu else 0))
mcpu = float(sys.argv[7].split()[0].split("=")[1])
print("masking alone (user CPU)       %.3f s  %.0f MiB/s (raw + base64/URL/JSON forms)" % (mcpu, mib / mcpu if mcpu else 0))
print("receiver got (last run)        %d bytes in %d batches" % (full["bytes"], full["batches"]))
fl = full.get("latency_ms", {})
print("latency at full speed          p50 %.0f ms  p99 %.0f ms (spool backlog)" % (fl.get("p50", -1), fl.get("p99", -1)))
l = lat.get("latency_ms", {})
print("latency at %s MB/s             p50 %.1f ms  p99 %.1f ms  max %.1f ms  (goal p99 < 250 ms)" % (rate, l.get("p50", -1), l.get("p99", -1), l.get("max", -1)))
PY
