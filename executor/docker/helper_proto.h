/* helper_proto.h: drover-docker-helper, the small static program the docker runtime copies into a
 * job's primary container — where it lives there, its modes, and the frames its `connect` mode
 * writes on stdout. Shared by the helper (helper_main.c) and the runtime (runtime_docker_fwd.c). */
#pragma once

/* Inside path (a root-owned directory of its own, 0755). */
#define DKHELPER_DIR  "/.drover"
#define DKHELPER_PATH DKHELPER_DIR "/drover-docker-helper"

/* Modes (argv[1]):
 *   connect HOST PORT  connect from inside the container's network, then copy stdin to the
 *                      socket (stdin EOF: shutdown SHUT_WR) and the socket to stdout as frames
 *   oom-kills          print the container cgroup's OOM counter file (cgroup v2 memory.events
 *                      or v1 memory.oom_control; both carry "oom_kill N"); exit 3 if none
 *   kill PID           SIGKILL PID (a relay whose SSH channel is gone) */

/* `connect` stdout: frames of a type byte, a 4-byte big-endian payload length, the payload. The
 * exec's stdout and stderr reach drover through separate copies in the engine, so everything the
 * runtime must see in order (the connect's result, the data, the server's EOF) is on stdout. */
enum dkhelper_frame {
        DKH_CONNECTED = 'C', /* payload: the helper's pid inside the container, decimal */
        DKH_ERROR = 'E',     /* payload: why the connect failed; the helper then exits 1 */
        DKH_DATA = 'D',      /* payload: bytes from the server */
        DKH_EOF = 'F',       /* the server ended its side (no payload) */
};
#define DKH_HDR         5
#define DKH_MAX_PAYLOAD 65536
