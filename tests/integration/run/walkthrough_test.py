#!/usr/bin/env python3
"""walkthrough_test.py: docs/walkthrough-developer.md is true — every ```sh block runs in order
(bash -e, one scratch directory, `drover` on PATH, a private store) and every line of the ```text
block after it appears in that block's output."""
import os
import re
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DOC = os.path.join(os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "../../..")),
                   "docs", "walkthrough-developer.md")


def blocks(text):
    """[(sh_code, [expected lines])] in document order."""
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        kind, body = m.group(1), m.group(2)
        if kind == "sh":
            out.append((body, []))
        elif kind == "text" and out:
            out[-1][1].extend(ln.strip() for ln in body.splitlines() if ln.strip())
    return out


@test
def developer_walkthrough_commands_run_and_print_what_it_says():
    with open(DOC) as f:
        steps = blocks(f.read())
    expect(len(steps) >= 6, f"only {len(steps)} sh blocks in {DOC}")
    work = tempfile.mkdtemp(prefix="drover-walk-")
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir)
    os.symlink(os.path.abspath(DROVER), os.path.join(bindir, "drover"))
    env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"],
               XDG_CACHE_HOME=os.path.join(work, "cache"), HOME=work,
               GIT_AUTHOR_NAME="w", GIT_AUTHOR_EMAIL="w@example.com",
               GIT_COMMITTER_NAME="w", GIT_COMMITTER_EMAIL="w@example.com")
    cwd_file = os.path.join(work, ".cwd")
    cwd = work
    for i, (code, want) in enumerate(steps, 1):
        script = f"set -e\ncd {cwd!r}\n{code}\npwd > {cwd_file!r}\n"
        p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                           timeout=300)
        out = p.stdout + p.stderr
        expect(p.returncode == 0, f"block {i} failed (rc={p.returncode}):\n{code}\n{out[-3000:]}")
        if p.returncode:
            return
        with open(cwd_file) as f:
            cwd = f.read().strip()
        for line in want:
            expect(line in out, f"block {i}: {line!r} not in its output:\n{out[-3000:]}")


if __name__ == "__main__":
    main()
