#!/usr/bin/env python3
"""local_source_test.py: what `drover run` hands a job of the local source (docs/checkout.md).
The job never sees the work tree itself: checkout gives the work tree as the developer sees it
(git-ignored files left out) or exactly HEAD with --committed, and a .git without the
developer's config; jobs without a checkout step see nothing; caches never cross repositories
with the same directory name."""
import os
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DROVER = os.path.abspath(DROVER)
TOKEN = "ghp_s3cr3tT0kenNeverInAJob"
DOTENV = "DOTENV_SECRET_d0tenv"
HEADER = "extraHeaderS3cret"
T = tempfile.mkdtemp(prefix="drover-localsrc-")
os.chmod(T, 0o755)
STORE = os.path.join(T, "store")


def sh(*cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def drover(cwd, *args, store=STORE, timeout=180):
    p = subprocess.run([DROVER, "run", "--store", store, *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


CONFIG = """version: 2.1
jobs:
  look:
    machine: true
    steps:
      - checkout
      - run: |
          echo "TRACKED=$(cat tracked.txt | tr '\\n' ' ')"
          echo "UNTRACKED=$(cat untracked.txt 2>/dev/null || echo none)"
          test -e .env && echo "DOTENV=present" || echo "DOTENV=absent"
          test -e gone.txt && echo "GONE=present" || echo "GONE=absent"
          test -L link && echo "LINK=$(readlink link)"
          echo "STATUS=$(git status --porcelain | tr '\\n' ',')"
          echo "REMOTE=$(git remote get-url origin)"
          echo "HEADSUBJ=$(git log -1 --format=%s 2>/dev/null || echo nohistory)"
          # nothing the job can read anywhere holds a credential of the developer's
          grep -rl -e SECRETS . /run/drover ~/.gitconfig /tmp 2>/dev/null | sed 's/^/LEAK /' || true
  nocheckout:
    machine: true
    steps:
      - run: |
          test -e /run/drover/source && echo "SOURCE=present" || echo "SOURCE=absent"
          grep -rl -e SECRETS /run/drover /tmp ~ 2>/dev/null | sed 's/^/LEAK /' || true
"""
# the secrets never appear whole in a step (its script and name): each is split in two
SPLIT = " -e ".join(f'"{v[:6]}""{v[6:]}"' for v in (TOKEN, DOTENV, HEADER))
CONFIG = CONFIG.replace("SECRETS", SPLIT)


def make_repo(parent, name="app"):
    d = os.path.join(parent, name)
    write(os.path.join(d, ".circleci", "config.yml"), CONFIG)
    write(os.path.join(d, ".gitignore"), ".env\n*.log\n")
    write(os.path.join(d, "tracked.txt"), "committed\n")
    write(os.path.join(d, "gone.txt"), "deleted in the work tree\n")
    write(os.path.join(d, "sub", "deep", "keep.txt"), "x\n")
    sh("git", "init", "-q", "-b", "main", d)
    sh("git", "-C", d, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    sh("git", "-C", d, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    # the developer's uncommitted edits, untracked and ignored files, and a config with secrets
    write(os.path.join(d, "tracked.txt"), "committed\nedited\n")
    os.unlink(os.path.join(d, "gone.txt"))
    write(os.path.join(d, "untracked.txt"), "new file\n")
    write(os.path.join(d, ".env"), f"TOKEN={DOTENV}\n")
    write(os.path.join(d, "build.log"), f"{DOTENV}\n")
    os.symlink("/etc/shadow", os.path.join(d, "link"))
    write(os.path.join(T, f"{name}-included.gitconfig"), f"[user]\n\tsigningkey = {TOKEN}\n")
    sh("git", "-C", d, "remote", "add", "origin", f"https://bot:{TOKEN}@git.example.com/o/app.git")
    sh("git", "-C", d, "config", "http.extraheader", f"AUTHORIZATION: basic {HEADER}")
    sh("git", "-C", d, "config", "credential.helper", f"store --file={T}/creds-{TOKEN}")
    sh("git", "-C", d, "config", "include.path", os.path.join(T, f"{name}-included.gitconfig"))
    for p, mode in ((d, 0o755),):
        os.chmod(p, mode)
    return d


def lines(out, key):
    return [line[len(key) + 1:] for line in out.splitlines() if line.startswith(key + "=")]


REPO = make_repo(os.path.join(T, "one"))


@test
def checkout_gets_the_work_tree_as_the_developer_sees_it():
    rc, out, err = drover(os.path.join(REPO, "sub", "deep"), "look")  # from a subdirectory
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "TRACKED") == ["committed edited "], out)
    expect(lines(out, "UNTRACKED") == ["new file"], out)
    expect(lines(out, "GONE") == ["absent"], out)
    expect(lines(out, "DOTENV") == ["absent"], out)
    expect(lines(out, "LINK") == ["/etc/shadow"], out)  # a symlink stays a symlink
    expect(lines(out, "HEADSUBJ") == ["first"], out)
    st = lines(out, "STATUS")[0]
    expect(" M tracked.txt" in st and " D gone.txt" in st and "?? untracked.txt" in st, st)
    expect("as you see it" in out and "git-ignored files are left out" in out, out)


@test
def no_credential_of_the_developer_reaches_the_job():
    rc, out, err = drover(REPO, "look")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "REMOTE") == ["https://git.example.com/o/app.git"], out)
    leaks = [line for line in out.splitlines() if line.startswith("LEAK ")]
    expect(not leaks, "\n".join(leaks))
    expect(TOKEN not in out and DOTENV not in out and HEADER not in out, out)


@test
def a_job_without_checkout_sees_none_of_the_source():
    rc, out, err = drover(REPO, "nocheckout")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "SOURCE") == ["absent"], out)
    expect(not [line for line in out.splitlines() if line.startswith("LEAK ")], out)


@test
def committed_gives_exactly_head():
    rc, out, err = drover(REPO, "--committed", "look")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "TRACKED") == ["committed "], out)
    expect(lines(out, "UNTRACKED") == ["none"], out)
    expect(lines(out, "GONE") == ["present"], out)
    expect(lines(out, "STATUS") == [""], out)
    expect("as committed" in out, out)


@test
def a_plain_directory_is_checked_out_without_history():
    d = os.path.join(T, "plain")
    write(os.path.join(d, ".circleci", "config.yml"), CONFIG)
    write(os.path.join(d, "tracked.txt"), "plain\n")
    write(os.path.join(d, ".gitignore"), ".env\n")
    write(os.path.join(d, ".env"), f"{DOTENV}\n")
    rc, out, err = drover(d, "look")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "TRACKED") == ["plain "], out)
    expect(lines(out, "DOTENV") == ["absent"], out)
    expect(lines(out, "HEADSUBJ") == ["nohistory"], out)
    expect("is not a git repository" in out and "no history" in out, out)
    rc, out, err = drover(d, "--committed", "look")
    expect(rc == 2 and "not a git repository" in err, f"rc={rc}\n{err}")


@test
def a_repository_without_a_commit_is_checked_out():
    d = os.path.join(T, "fresh")
    write(os.path.join(d, ".circleci", "config.yml"), CONFIG)
    write(os.path.join(d, "tracked.txt"), "fresh\n")
    sh("git", "init", "-q", "-b", "main", d)
    rc, out, err = drover(d, "look")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "TRACKED") == ["fresh "], out)
    expect("has no commit yet" in out, out)


CACHE = """version: 2.1
jobs:
  evil:
    machine: true
    steps:
      - run: mkdir -p deps && echo "echo PWNED-BY-THE-OTHER-REPO" > deps/setup.sh
      - save_cache: {key: deps-v1-evil, paths: [deps]}
  victim:
    machine: true
    steps:
      - restore_cache: {keys: [deps-v1-]}
      - run: if [ -f deps/setup.sh ]; then sh deps/setup.sh; else echo NO-CACHE; fi
"""


@test
def caches_never_cross_repositories_with_the_same_name():
    store = os.path.join(T, "shared-store")
    dirs = []
    for who in ("hostile", "victim"):
        d = os.path.join(T, who, "app")
        write(os.path.join(d, ".circleci", "config.yml"), CACHE)
        sh("git", "init", "-q", "-b", "main", d)
        dirs.append(d)
    rc, out, err = drover(dirs[0], "evil", store=store)
    expect(rc == 0, f"evil rc={rc}\n{out}\n{err}")
    rc, out, err = drover(dirs[1], "victim", store=store)
    expect(rc == 0, f"victim rc={rc}\n{out}\n{err}")
    expect("PWNED-BY-THE-OTHER-REPO" not in out and "NO-CACHE" in out, out)
    # the same repository still restores its own cache
    rc, out, err = drover(dirs[0], "victim", store=store)
    expect(rc == 0 and "PWNED-BY-THE-OTHER-REPO" in out, f"rc={rc}\n{out}\n{err}")


@test
def a_medium_repository_checks_out_quickly():
    d = os.path.join(T, "medium")
    write(os.path.join(d, ".circleci", "config.yml"), """version: 2.1
jobs:
  count:
    machine: true
    steps: [checkout, run: echo "FILES=$(git ls-files | wc -l) $(find src -type f | wc -l)"]
""")
    for i in range(4000):
        write(os.path.join(d, "src", f"m{i % 40}", f"f{i}.txt"), f"file {i}\n" * 200)
    sh("git", "init", "-q", "-b", "main", d)
    sh("git", "-C", d, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    sh("git", "-C", d, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "m")
    for i in range(0, 4000, 10):  # uncommitted edits
        write(os.path.join(d, "src", f"m{i % 40}", f"f{i}.txt"), "edited\n")
    t0 = time.monotonic()
    rc, out, err = drover(d, "count")
    took = time.monotonic() - t0
    print(f"# medium repository (4001 files, ~16 MB): drover run with checkout {took:.2f}s")
    expect(rc == 0, f"rc={rc}\n{out}\n{err}")
    expect(lines(out, "FILES") == ["4001 4000"], out)
    expect(took < 90, f"{took:.1f}s")


main()
