#!/usr/bin/env python3
"""ssh_image_test.py: SSH rerun of a `docker:` job run on its image in drover's own sandbox
(images from the registry peer): `drover run --ssh=KEY` lets the key in, and the session is the
image's user with the image's environment, in the job's working directory."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "images_run"))
import ocilib  # noqa: E402
from taplib import DROVER, expect, main, test  # noqa: E402

TMP = tempfile.mkdtemp(prefix="drover-ssh-image-", dir="/var/tmp")
os.chmod(TMP, 0o755)
KEY = os.path.join(TMP, "key")
subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY], check=True)
ADDR, USER, PASSWORD = ocilib.registry()
base = ocilib.busybox_layer()
base.dir("data")
REF, _ = ocilib.push_image(f"sshimg/t{os.getpid()}", "1", [base],
                           {"Env": ["PATH=/bin", "IMGVAR=fromimage"], "User": "app",
                            "WorkingDir": "/data", "Cmd": ["/bin/sh"]})


@test
def a_session_in_an_image_job_is_the_images_user_and_env():
    proj = os.path.join(TMP, "proj")
    os.makedirs(os.path.join(proj, ".circleci"))
    with open(os.path.join(proj, ".circleci", "config.yml"), "w") as f:
        f.write(f"version: 2.1\njobs:\n  build:\n    docker:\n      - image: {REF}\n"
                f"        auth:\n          username: {USER}\n          password: {PASSWORD}\n"
                "    steps:\n      - run: echo step-done\n")
    env = dict(os.environ, DROVER_IMAGE_STORE=os.path.join(TMP, "images"),
               DROVER_SSH_LISTEN="127.0.0.1")
    p = subprocess.Popen([DROVER, "run", "--store", os.path.join(TMP, "store"),
                          f"--ssh={KEY}.pub", "build"], cwd=proj, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    try:
        port, seen, deadline = None, "", time.time() + 60
        while port is None and time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            seen += line
            if "$ ssh -p " in line:
                port = int(line.split("-p ")[1].split()[0])
        expect(port, seen)
        r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                            "-o", "IdentitiesOnly=yes", "-F", "/dev/null", "-i", KEY, "-p",
                            str(port), "127.0.0.1", 'echo "$(id -un) $IMGVAR $PWD"; exit 3'],
                           capture_output=True, text=True, timeout=30)
        expect(r.returncode == 3, f"rc={r.returncode} {r.stderr}")
        expect(r.stdout == "app fromimage /home/app/project\n", r.stdout)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)


shutil.rmtree(TMP, ignore_errors=True)
main()
