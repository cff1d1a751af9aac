"""sshfixture.py: what the checkout tests share — a real sshd started on a free port (its own host
key, an authorized_keys file for root, in a temp dir removed at exit), key pairs, and a bare
repository with main (C1 tagged v1.0, C2), feature (C3) and a pull request ref refs/pull/7/head
(C4), reached by jobs at this host's address."""
import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

T = tempfile.mkdtemp(prefix="drover-checkout-")
os.chmod(T, 0o755)
STORE = os.path.join(T, "store")
os.mkdir(STORE)


def sh(*cmd, cwd=None, env=None):
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def host_ip():
    """An address of this host a job reaches through its NATed network (sandbox private network,
    docker bridge): any local address is delivered locally; prefer the main interface's."""
    found = []
    for line in sh("ip", "-4", "-o", "addr", "show", "scope", "global").splitlines():
        f = line.split()
        if not f[1].startswith(("drv", "veth")):
            found.append((f[1].startswith(("docker", "br-")), f[3].split("/")[0]))
    if not found:
        raise RuntimeError("no global IPv4 address on this host for the jobs to reach sshd")
    return sorted(found)[0][1]


def free_port():
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def keygen(name):
    path = os.path.join(T, name)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
    fp = sh("ssh-keygen", "-l", "-E", "md5", "-f", path + ".pub").split()[1]
    return open(path).read(), open(path + ".pub").read().strip(), fp[len("MD5:"):]


IP = host_ip()
PORT = free_port()
# the host is closed to sandbox jobs but for what the operator allows (docs/sandbox.md "Egress")
os.environ["DROVER_SANDBOX_EGRESS_ALLOW"] = f"{IP}:{PORT}"
GOOD_KEY, GOOD_PUB, GOOD_FP = keygen("good")
WRONG_KEY, _, _ = keygen("wrong")
EXTRA_KEY, EXTRA_PUB, EXTRA_FP = keygen("extra")
sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(T, "hostkey"))
HOST_PUB = open(os.path.join(T, "hostkey.pub")).read().split()
KNOWN = f"[{IP}]:{PORT} {HOST_PUB[0]} {HOST_PUB[1]}\n"
with open(os.path.join(T, "authorized_keys"), "w") as f:
    f.write(GOOD_PUB + "\n" + EXTRA_PUB + "\n")
os.makedirs("/run/sshd", exist_ok=True)
with open(os.path.join(T, "sshd_config"), "w") as f:
    f.write(f"""Port {PORT}
ListenAddress 0.0.0.0
HostKey {T}/hostkey
AuthorizedKeysFile {T}/authorized_keys
PidFile {T}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel VERBOSE
""")
SSHD = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(T, "sshd_config")],
                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(T, "sshd.log"), "w"))


def cleanup():
    SSHD.terminate()
    SSHD.wait()
    shutil.rmtree(T, ignore_errors=True)


atexit.register(cleanup)

# the repository: main (c1 tagged v1.0, c2), feature (c3), a pull request ref (c4)
BARE = os.path.join(T, "repo.git")
WORK = os.path.join(T, "work")
GENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@e", HOME=T)
sh("git", "init", "-q", "--bare", "-b", "main", BARE, env=GENV)
sh("git", "-C", BARE, "config", "uploadpack.allowFilter", "true", env=GENV)
sh("git", "-C", BARE, "config", "uploadpack.allowAnySHA1InWant", "true", env=GENV)
sh("git", "init", "-q", "-b", "main", WORK, env=GENV)


def commit(msg):
    with open(os.path.join(WORK, "file.txt"), "w") as f:
        f.write(msg + "\n")
    sh("git", "-C", WORK, "add", "file.txt", env=GENV)
    sh("git", "-C", WORK, "commit", "-q", "-m", msg, env=GENV)
    return sh("git", "-C", WORK, "rev-parse", "HEAD", env=GENV)


C1 = commit("first")
sh("git", "-C", WORK, "tag", "-a", "-m", "release", "v1.0", env=GENV)
C2 = commit("second")
sh("git", "-C", WORK, "checkout", "-q", "-b", "feature", env=GENV)
C3 = commit("feature work")
sh("git", "-C", WORK, "checkout", "-q", "--detach", C2, env=GENV)
C4 = commit("pull request work")
sh("git", "-C", WORK, "push", "-q", BARE, "main", "feature", "v1.0", f"{C4}:refs/pull/7/head",
   env=GENV)
URL = f"ssh://root@{IP}:{PORT}{BARE}"

for _ in range(100):  # sshd up?
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
