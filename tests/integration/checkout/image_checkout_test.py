#!/usr/bin/env python3
"""image_checkout_test.py: `checkout` and `add_ssh_keys` in a docker-executor job run on its image
in drover's own sandbox (no Docker): the image — busybox plus the host's git and ssh with their
libraries, user circleci — is pushed to the registry peer here, and the job checks out from the
test's sshd (sshfixture.py) over the sandbox's private network."""
import os
import sys
import tempfile
import uuid
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images_run"))
from taplib import count, expect, main, run_job, test  # noqa: E402
import ocilib  # noqa: E402
from sshfixture import (C3, EXTRA_FP, EXTRA_KEY, GOOD_FP, GOOD_KEY, IP, KNOWN, PORT, T,  # noqa: E402
                        URL)

ADDR, USER, PASSWORD = ocilib.registry()
STORE = tempfile.mkdtemp(prefix="images-", dir=T)


IMAGE, _ = ocilib.push_image(
    f"checkout/{uuid.uuid4().hex[:10]}/git", "1",
    [ocilib.busybox_layer(users=(("circleci", 3434, 3434, "/home/circleci"),)),
     ocilib.host_tools_layer(["/usr/bin/git", "/usr/bin/ssh"])],
    {"Env": ["PATH=/usr/bin:/bin"], "User": "circleci", "Cmd": ["/bin/sh"]})


def spec(steps, **kw):
    s = {"version": 1,
         "id": {"job": f"ico{os.getpid()}-{count()}", "name": "image-checkout", "build_num": 1},
         "executor": {"runtime": "sandbox", "kind": "docker", "network": "private",
                      "images": [{"image": IMAGE,
                                  "auth": {"username": USER, "password": PASSWORD}}],
                      "resources": {"memory_mb": 1024}},
         "vcs": {"url": URL, "branch": "feature", "known_hosts": KNOWN,
                 "checkout_key": {"fingerprint": GOOD_FP, "private_key": GOOD_KEY}},
         "steps": steps}
    s.update(kw)
    return s


@test
def checkout_and_add_ssh_keys_in_an_image_job():
    ssh = (f"ssh -o BatchMode=yes -o UserKnownHostsFile=$HOME/kh -p {PORT} root@{IP} "
           "echo hello-from-sshd")
    rc, out, err, ev = run_job(spec([
        {"type": "checkout"},
        {"type": "add_ssh_keys"},
        {"type": "run", "command":
            "echo HEAD=$(git rev-parse HEAD) REF=$(git rev-parse --abbrev-ref HEAD) "
            "USER=$(id -un); stat -c 'MODE %a %U %n' ~/.ssh ~/.ssh/id_rsa ~/.ssh/id_rsa_*; "
            f"printf '%s' '{KNOWN}' > ~/kh; {ssh}"},
    ], ssh_keys=[{"fingerprint": EXTRA_FP, "private_key": EXTRA_KEY}]),
        env=dict(os.environ, DROVER_IMAGE_STORE=STORE))
    reasons = [e.get("reason") for e in ev if e["type"] == "step_finished"]
    expect(rc == 0, f"rc={rc}\n{out}\n{err[-3000:]}\n{reasons}")
    expect(f"HEAD={C3} REF=feature USER=circleci" in out, out)
    expect("MODE 700 circleci /home/circleci/.ssh\n" in out, out)
    expect("MODE 600 circleci /home/circleci/.ssh/id_rsa\n" in out, out)
    expect("hello-from-sshd" in out, out)


main()
