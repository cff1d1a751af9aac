#!/bin/sh
# fake_job.sh --spec FILE --events-fd 3: a stand-in for `drover job` (agent's job_command hook).
# The spec's top-level "fake":"SECONDS EXIT" says how long the one step takes and how to exit.
spec=$2
set -- $(sed -n 's/.*"fake":"\([^"]*\)".*/\1/p' "$spec")
secs=${1:-0}
code=${2:-0}
job=$(sed -n 's/.*"id":{[^}]*"job":"\([^"]*\)".*/\1/p' "$spec")
seq=0
ev() {
        seq=$((seq + 1))
        printf '{"seq":%d,"type":"%s","job":"%s"%s}\n' $seq "$1" "$job" "$2" >&3
}
if [ "$code" = ignoreterm ]; then
        trap '' TERM
else
        trap 'kill $pid 2>/dev/null; ev finished ",\"status\":\"canceled\""; exit 4' TERM
fi
ev started ',"name":"fake"'
# the step's process exists before step_started is reported: a TERM after that event always
# finds $pid (tests kill the agent as soon as they see it)
sleep "$secs" &
pid=$!
ev step_started ',"step":0,"name":"fake"'
wait $pid
[ "$code" = crash ] && kill -KILL $$
if [ "$code" = flood ]; then # 2000 events of ~700 bytes: more than the agent buffers per job
        pad=$(printf '%0700d' 0)
        i=0
        while [ $i -lt 2000 ]; do
                ev log ",\"pad\":\"$pad\""
                i=$((i + 1))
        done
        code=0
fi
if [ "$code" = leak ]; then # leave a process behind that holds the events pipe
        sleep 8 &
        code=0
fi
ev step_finished ',"step":0,"name":"fake","status":"success","duration_ms":1'
if [ "$code" = 0 ]; then st=success; else st=failed; fi
ev finished ",\"status\":\"$st\""
exit "$code"
