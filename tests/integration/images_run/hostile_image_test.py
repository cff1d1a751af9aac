"""hostile_image_test.py: a docker-executor job whose image, services or output are hostile
(issue 20) cannot reach the host: mount points that are symlinks in the image are resolved inside
the image (nothing is created on the host), a service's output stays inside the job's disk bound
(not in the host's /tmp), and one job cannot take every sandbox slot with services."""
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from taplib import DROVER, expect, main, test  # noqa: E402
import ocilib  # noqa: E402

TOKEN = uuid.uuid4().hex[:10]
ADDR, USER, PASSWORD = ocilib.registry()
WORK = tempfile.mkdtemp(prefix="drover-hostile-", dir="/var/tmp")
STORE = os.path.join(WORK, "images")
os.chmod(WORK, 0o755)


def image(links, user="app", dirs=()):
    """A busybox image whose top-level paths in links (name -> target) are symlinks; /etc and
    /home are real directories unless linked; dirs: more directories. Returns the reference."""
    ly = ocilib.Layer().dir("bin").dir("tmp", 0o1777).dir("var").dir("var/tmp", 0o1777)
    for d in dirs:
        ly.dir(d, 0o1777)
    with open(ocilib.BUSYBOX, "rb") as f:
        ly.file("bin/busybox", f.read(), 0o755)
    for a in ocilib.APPLETS:
        ly.symlink("bin/" + a, "busybox")
    for name, target in links.items():
        ly.symlink(name, target)
    if "etc" not in links:
        ly.dir("etc").file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                           "app:x:1000:1000:app:/home/app:/bin/sh\n")
        ly.file("etc/group", "root:x:0:\napp:x:1000:\n")
    if "home" not in links:
        ly.dir("home").dir("home/app", 0o755, 1000, 1000)
    cfg = {"Env": ["PATH=/bin"], "User": user, "WorkingDir": "/", "Cmd": ["/bin/sh"]}
    ref, _ = ocilib.push_image(f"hostile/{TOKEN}/{'-'.join(sorted(links)) or 'plain'}", "1",
                               [ly], cfg)
    return ref


def spec(job, images, steps, extra=""):
    """The compiled spec (`drover config process`) of a docker job on images (the first the
    primary, the others services) running steps; extra: more lines of the job."""
    imgs = "".join(f"      - image: {i}\n        auth:\n          username: {USER}\n"
                   f"          password: {PASSWORD}\n" for i in images)
    runs = "".join(f"      - run: {json.dumps(r)}\n" for r in steps)
    cfg = (f"version: 2.1\njobs:\n  build:\n    docker:\n{imgs}{extra}    steps:\n{runs}"
           f"workflows:\n  w:\n    jobs: [build]\n")
    proj = tempfile.mkdtemp(prefix="proj-", dir=WORK)
    os.makedirs(os.path.join(proj, ".circleci"))
    with open(os.path.join(proj, ".circleci", "config.yml"), "w") as f:
        f.write(cfg)
    return ocilib.compiled_spec(DROVER, proj, f"local-{os.getpid()}-{job}")


def drover_job(sp, env=None, timeout=120):
    return ocilib.run_job(DROVER, sp, STORE, env, timeout)


def tail(out, n=25):
    return "\n".join([ln for ln in out.splitlines() if "level=" not in ln][-n:])


@test
def image_symlinks_at_mount_points_create_nothing_on_the_host():
    """finding 4: /home -> /var/tmp/X and /etc -> /dev/shm/X in an image made drover create the
    job's home and its /etc/hosts mount point in the host's /var/tmp and /dev/shm."""
    home_trap = f"/var/tmp/drover-trap-{TOKEN}"
    etc_trap = f"/dev/shm/drover-trap-{TOKEN}"
    os.makedirs(home_trap, 0o1777)
    os.makedirs(etc_trap, 0o1777)
    os.chmod(home_trap, 0o1777)
    os.chmod(etc_trap, 0o1777)
    try:
        # the link targets exist inside the image too: resolved there, the job runs
        ref = image({"home": home_trap}, dirs=[home_trap])
        rc, out = drover_job(spec("home", [ref], [f"echo ran-{TOKEN}; id -u"]))
        expect(os.listdir(home_trap) == [],
               f"drover created {os.listdir(home_trap)} in the host's {home_trap}:\n{tail(out)}")
        # (inside, the home is then under the job's own /var/tmp, which covers it: the step
        # cannot enter it — the image's business; the environment was made inside the image)
        expect("Spin up environment: success" in out,
               f"the job starts, its home resolved inside the image ({rc}):\n{tail(out)}")
        ref = image({"etc": etc_trap}, user="0")
        rc, out = drover_job(spec("etc", [ref], [f"echo ran-{TOKEN}; cat /etc/hosts"]))
        expect(os.listdir(etc_trap) == [],
               f"drover created {os.listdir(etc_trap)} in the host's {etc_trap}:\n{tail(out)}")
        # inside the image /dev/shm is the job's own tmpfs: the link leads nowhere, refused
        expect(rc != 0 and "mount point /etc is a symbolic link" in out,
               f"refused, naming the mount point ({rc}):\n{tail(out)}")
    finally:
        shutil.rmtree(home_trap, ignore_errors=True)
        shutil.rmtree(etc_trap, ignore_errors=True)


@test
def dangling_symlink_mount_point_is_refused_clearly():
    """/tmp -> /nonexistent-TOKEN: no such path inside the image; refused, naming the path."""
    ref = image({"tmp": f"/nonexistent-{TOKEN}/x"}, user="0")
    rc, out = drover_job(spec("dangling", [ref], [f"echo ran-{TOKEN}"]))
    expect(not os.path.exists(f"/nonexistent-{TOKEN}"), "created on the host")
    expect(rc != 0 and "/tmp" in out and "symbolic link" in out,
           f"a clear refusal naming the mount point ({rc}):\n{tail(out)}")


@test
def services_per_job_are_capped_with_a_clear_error():
    """finding 9: one job with 1023 services took every sandbox slot of the host. A job has at
    most DROVER_MAX_SERVICES services (the agent's max_services_per_job, default 16); more is
    refused before anything is pulled or started, naming the field and the limit."""
    ref = image({})
    many = spec("many", [ref] * 18, ["echo ran-many"])
    rc, out = drover_job(many)
    expect(rc != 0 and "17 services" in out and "16" in out and "max_services_per_job" in out
           and "ran-many" not in out, f"17 services refused by default ({rc}):\n{tail(out)}")
    two = spec("two", [ref] * 3, [f"echo ran-two-{TOKEN}"])
    rc, out = drover_job(two, env={"DROVER_MAX_SERVICES": "1"})
    expect(rc != 0 and "2 services" in out and "the 1 a job may" in out,
           f"DROVER_MAX_SERVICES=1 refuses 2 services ({rc}):\n{tail(out)}")
    rc, out = drover_job(two, env={"DROVER_MAX_SERVICES": "2"})
    expect(rc == 0 and f"ran-two-{TOKEN}" in out, f"2 services within 2 run ({rc}):\n{tail(out)}")


@test
def service_output_stays_inside_the_jobs_disk_bound():
    """finding 8: a service's output went to a file in the host's /tmp with no bound (1.55 GB in
    12 s). Now it is an unlinked file in the service's own /tmp: the job's disk bound (64 MiB
    here) caps it, nothing appears in the host's /tmp, the end of it is still reported."""
    import glob
    import threading
    ref = image({}, user="0")
    svc = image({"x": "/"}, user="0")  # its own image: the service below gets an entrypoint
    sp = spec("logs", [ref, svc], [f"sleep 5; echo steps-done-{TOKEN}"])
    sp["executor"]["images"][1]["entrypoint"] = [
        "/bin/sh", "-c", "echo chatty-start; while :; do seq 1 100000; done; echo not-here"]
    sp["executor"]["resources"]["disk_mb"] = 64
    sp["executor"]["resources"]["memory_mb"] = 1024
    seen, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            for f in glob.glob(f"/tmp/drover-imgjob-local-{os.getpid()}-logs-*/*"):
                try:
                    seen[0] = max(seen[0], os.path.getsize(f))
                except OSError:
                    pass
            time.sleep(0.1)
    t = threading.Thread(target=watch)
    t.start()
    try:
        rc, out = drover_job(sp)
    finally:
        done.set()
        t.join()
    expect(seen[0] < 1 << 20, f"a {seen[0]} byte file in the host's /tmp:\n{tail(out)}")
    expect(rc == 0 and f"steps-done-{TOKEN}" in out, f"the job's steps ran ({rc}):\n{tail(out)}")


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
