#!/usr/bin/env python3
"""images_test.py (as an ordinary user, through as_user.py): a docker-image job from the local
registry peer, rootless — pulled into the user's layer store, its root an overlay in the job's
user namespace, the image's user inside, everything left in the home the user's."""
import os
import subprocess
import sys
import tempfile
import uuid
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "images_run"))
from taplib import DROVER, expect, main, test  # noqa: E402
import ocilib  # noqa: E402

TOKEN = uuid.uuid4().hex[:10]
ADDR, USER, PASSWORD = ocilib.registry()
HOME = os.environ["HOME"]


def image():
    base = ocilib.busybox_layer()
    base.file("etc/marker", f"img-{TOKEN}\n")
    ref, _ = ocilib.push_image(f"rootless/{TOKEN}/img", "1", [base],
                               {"Env": ["PATH=/bin"], "User": "app", "WorkingDir": "/home/app"})
    return ref


CONFIG = """
version: 2.1
jobs:
  img:
    docker:
      - image: {ref}
        auth: {{username: {user}, password: {pw}}}
    steps:
      - run: id -un; cat /etc/marker; echo made > /home/app/out.txt && cat /home/app/out.txt
      - run: touch /etc/new-in-upper && echo upper-ok
workflows:
  w:
    jobs: [img]
"""


@test
def docker_image_job_runs_rootless_from_the_local_registry():
    expect(os.geteuid() != 0, "must run as an ordinary user (as_user.py)")
    ref = image()
    d = tempfile.mkdtemp(prefix="rl-img-", dir=HOME)
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(CONFIG.format(ref=ref, user=USER, pw=PASSWORD))
    p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store")], cwd=d,
                       capture_output=True, text=True, timeout=240)
    out = p.stdout
    expect(p.returncode == 0, f"rc={p.returncode} {out[-3000:]} {p.stderr[-2000:]}")
    lines = out.splitlines()
    for want in ("app", f"img-{TOKEN}", "made", "upper-ok"):
        expect(want in lines, f"{want!r} missing: {out[-2000:]}")
    store = os.path.join(HOME, ".cache", "drover", "images")
    expect(os.path.isdir(store), f"no layer store at {store}")
    # nothing in the home that is not the user's (the image's files and the store included)
    res = subprocess.run(["find", d, store, "!", "-user", str(os.getuid())],
                         capture_output=True, text=True)
    expect(res.stdout == "", f"owned by others: {res.stdout[:500]} {res.stderr[:300]}")
    expect("/var/lib/drover" not in p.stderr, p.stderr[-1000:])


SERVICES = """
version: 2.1
jobs:
  svc:
    docker:
      - image: {ref}
        auth: {{username: {user}, password: {pw}}}
      - image: {ref}
        auth: {{username: {user}, password: {pw}}}
        entrypoint: ["/bin/sh", "-c", "mkdir -p /tmp/www && echo svc-{token} > /tmp/www/i && exec httpd -f -p 8080 -h /tmp/www"]
    steps:
      - run: for i in $(seq 50); do wget -qO- http://localhost:8080/i && break; sleep 0.2; done
workflows:
  w:
    jobs: [svc]
"""


@test
def a_service_is_reached_on_localhost_rootless():
    ref = image()
    d = tempfile.mkdtemp(prefix="rl-svc-", dir=HOME)
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(SERVICES.format(ref=ref, user=USER, pw=PASSWORD, token=TOKEN))
    p = subprocess.run([DROVER, "run", "--store", os.path.join(d, "store")], cwd=d,
                       capture_output=True, text=True, timeout=240)
    expect(p.returncode == 0 and f"svc-{TOKEN}" in p.stdout.splitlines(),
           f"rc={p.returncode} {p.stdout[-3000:]} {p.stderr[-1500:]}")


main()
