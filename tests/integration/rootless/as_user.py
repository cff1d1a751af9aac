#!/usr/bin/env python3
"""as_user.py: run an integration test script as an ordinary user (rootless drover, issue 14).

CI runs as root. This creates the test user (`useradd -m`, which on Debian also gives it a
65536-id range in /etc/subuid and /etc/subgid), makes sure it can read and run the build, and
runs the script through `runuser` with a login-like environment (HOME, USER, no
XDG_RUNTIME_DIR unless ROOTLESS_XDG=1). The script's TAP output and exit status are passed on.

Usage: as_user.py SCRIPT [ARG...]   (env: DROVER, DROVER_SRC, DROVER_BUILD as for the tests)
Set-up only: as_user.py --setup    prints the user's name.
"""
import os
import pwd
import subprocess
import sys

USER = os.environ.get("DROVER_ROOTLESS_USER", "drover-rl")
# what the tests pass on to the user (everything else is the user's own)
PASS_ENV = ("DROVER", "DROVER_SRC", "DROVER_BUILD", "DROVER_PEERS_DIR", "ASAN_OPTIONS",
            "UBSAN_OPTIONS", "LSAN_OPTIONS", "DROVER_ROOTLESS_SINGLE_ID",
            "DROVER_ROOTLESS_NO_PASTA", "PYTHONDONTWRITEBYTECODE", "ESCAPE", "DROVER_SANDBOX",
            "SB_LEAN", "DROVER_IMAGE_REGISTRY_ALLOW")


def setup():
    """The user (created once) and read access to the build: returns its passwd entry."""
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
        pw = pwd.getpwnam(USER)
    # the user must reach the binary and the scripts: every directory above them searchable
    for path in (os.environ.get("DROVER", ""), os.path.abspath(__file__), *sys.argv[1:2]):
        d = os.path.dirname(os.path.abspath(path)) if path else ""
        while d and d != "/":
            st = os.stat(d)
            if not st.st_mode & 0o001:
                os.chmod(d, st.st_mode | 0o005)
            d = os.path.dirname(d)
    # /dev/net/tun is 0666 on Debian (pasta, the user-mode network, opens it); some containers
    # that run CI make it 0600, which leaves a rootless job in the user's own network namespace
    tun = "/dev/net/tun"
    if os.path.exists(tun) and os.stat(tun).st_mode & 0o666 != 0o666:
        os.chmod(tun, 0o666)
    return pw


def user_env(pw):
    env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell,
           "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for k in PASS_ENV:
        if k in os.environ:
            env[k] = os.environ[k]
    if os.environ.get("ROOTLESS_XDG") == "1":
        run = f"/run/user/{pw.pw_uid}"
        os.makedirs(run, mode=0o700, exist_ok=True)
        os.chown(run, pw.pw_uid, pw.pw_gid)
        os.chmod(run, 0o700)
        env["XDG_RUNTIME_DIR"] = run
    return env


def main():
    if os.geteuid() != 0:
        sys.exit("as_user.py: run as root (it creates the test user)")
    pw = setup()
    if sys.argv[1:] == ["--setup"]:
        print(pw.pw_name)
        return 0
    # Debian's python3: the one running this may live in root's home (pyenv)
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    script = os.path.abspath(sys.argv[1])
    interp = "/bin/bash" if script.endswith(".sh") else py
    # paths among the arguments (meson passes them relative to the build dir) made absolute
    args = [os.path.abspath(a) if os.path.exists(a) else a for a in sys.argv[2:]]
    cmd = ["runuser", "-u", pw.pw_name, "--", interp, script, *args]
    # cwd: the user's home (the tests' own temp dirs are in /tmp, the user's)
    return subprocess.run(cmd, env=user_env(pw), cwd=pw.pw_dir).returncode


if __name__ == "__main__":
    sys.exit(main())
