# scripts/lib/peer.sh: sourced by scripts/peers/*.sh.
. "$(dirname "${BASH_SOURCE[0]}")/quiet.sh"
# peer_pid_is PID COMM: PID is alive, not a zombie, and runs COMM. Pid files can outlive their
# daemons (a machine whose processes were killed keeps /tmp): the pid may now belong to anything,
# even the script that reads it, so never signal a pid from a file without this check.
peer_pid_is() {
        local pid=$1 comm=$2 stat
        [[ $pid =~ ^[0-9]+$ ]] || return 1
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${comm:0:15}" ] || return 1
        stat=${stat##*) }
        [ "${stat%% *}" != Z ]
}
