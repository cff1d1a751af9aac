#!/usr/bin/env python3
"""orbs_test.py: orbs through the real binary — `drover config process|validate` with inline
orbs, vendored orbs (.circleci/orbs), --orb-dir and DROVER_ORB_PATH, the offline error, the
unused-orb warning; `drover orb pull|ls|source` against the strict registry double
(tests/doubles/orb_registry.py: versions list, source by ref, unknown orb, unknown version,
server error), digests; `drover run` of a workflow using an orb's command, executor and job, and
`drover run --pull-orbs`. The orbs are drover's own test orbs (tests/orbs)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from taplib import DROVER, expect, main, test  # noqa: E402

DROVER = os.path.abspath(DROVER)
SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ORBS = os.path.join(SRC, "tests", "orbs")
DOUBLE = os.path.join(SRC, "tests", "doubles", "orb_registry.py")

CONFIG = """\
version: 2.1
orbs:
  tk: drovertest/toolkit@0.3
  hi: drovertest/greeter@1
  local:
    commands:
      mark:
        parameters: {what: {type: string, default: local}}
        steps: [run: echo "MARK << parameters.what >>"]
executors:
  mine:
    machine: true
jobs:
  build:
    executor: {name: hi/shell, resource: medium}
    steps:
      - hi/hello: {to: build, loud: true}
      - local/mark
      - tk/install: {tool: gcc}
workflows:
  main:
    jobs:
      - build
      - tk/check:
          requires: [build]
          executor: mine
          tool: lint
          post: [local/mark: {what: post}]
"""


def project(config, vendor=True):
    d = tempfile.mkdtemp(prefix="drover-orbs-")
    os.makedirs(os.path.join(d, ".circleci"))
    with open(os.path.join(d, ".circleci", "config.yml"), "w") as f:
        f.write(config)
    if vendor:
        shutil.copytree(ORBS, os.path.join(d, ".circleci", "orbs"))
    return d


def env_with(**kw):
    e = dict(os.environ)
    e.pop("DROVER_ORB_PATH", None)
    e["DROVER_ORB_CACHE"] = kw.pop("cache", "/nonexistent/drover-orb-cache")
    e.update(kw)
    return e


def drover(d, *args, env=None, timeout=120):
    p = subprocess.run([DROVER, *args], cwd=d, capture_output=True, text=True, timeout=timeout,
                       env=env or env_with())
    return p.returncode, p.stdout, p.stderr


def steps_of(doc, wf, job):
    w = [x for x in doc["workflows"] if x["name"] == wf][0]
    j = [x for x in w["jobs"] if x["name"] == job][0]
    return j, [s.get("command") or s["type"] for s in j["spec"]["steps"]]


@test
def vendored_orbs_compile_with_versions_scoping_and_nesting():
    d = project(CONFIG)
    rc, out, err = drover(d, "config", "process")
    expect(rc == 0, f"rc={rc} {err}")
    doc = json.loads(out)
    j, steps = steps_of(doc, "main", "build")
    # @1 is the highest 1.x: 1.2.3, not 2.0.0
    expect(steps[0] == 'echo "HELLO build FROM GREETER 1.2.3"', steps)
    expect(steps[1] == 'echo "MARK local"', steps)
    expect(j["spec"]["executor"]["resource_class"] == "medium", j["spec"]["executor"])
    j, steps = steps_of(doc, "main", "tk/check")
    expect(j["requires"] == ["build"], j)
    # toolkit's own greeter (@1.2 -> 1.2.3), its own commands, the caller's executor and steps
    expect(steps == ['echo "hello toolkit from greeter 1.2.3"',
                     'echo "installing lint into ${TOOL_HOME:-/opt}"',
                     'echo "hello before from greeter 1.2.3"', 'echo "checking with lint"',
                     'echo "hello after from greeter 1.2.3"', 'echo "MARK post"'], steps)
    expect("working_directory" not in j["spec"], "the orb's executor was used, not mine")


@test
def orb_dir_and_drover_orb_path_are_searched_before_the_project():
    d = project(CONFIG, vendor=False)
    rc, out, err = drover(d, "config", "validate")
    expect(rc == 1, f"rc={rc} {err}")
    rc, out, err = drover(d, "config", "validate", "--orb-dir", ORBS)
    expect(rc == 0, f"rc={rc} {err}")
    rc, out, err = drover(d, "config", "process", env=env_with(DROVER_ORB_PATH="/nope:" + ORBS))
    expect(rc == 0, f"rc={rc} {err}")
    # an --orb-dir with only greeter 1.0.0 wins over the project's 1.2.3 for @1
    alt = tempfile.mkdtemp(prefix="drover-orbdir-")
    os.makedirs(os.path.join(alt, "drovertest"))
    shutil.copy(os.path.join(ORBS, "drovertest", "greeter@1.0.0.yml"),
                os.path.join(alt, "drovertest"))
    d = project(CONFIG)
    rc, out, err = drover(d, "config", "process", "--orb-dir", alt)
    expect(rc == 0, f"rc={rc} {err}")
    _, steps = steps_of(json.loads(out), "main", "build")
    expect("GREETER 1.0.0" in steps[0], steps)


@test
def missing_orb_is_one_error_naming_the_file_and_the_pull_command():
    cfg = CONFIG.replace("toolkit@0.3", "toolkit@0.9")
    d = project(cfg)
    rc, out, err = drover(d, "config", "validate")
    lines = [line for line in err.splitlines() if "not available offline" in line]
    expect(rc == 1 and len(lines) == 1, f"rc={rc} {err}")
    expect(".circleci/config.yml:3:7: orb 'tk' (drovertest/toolkit@0.9)" in lines[0], lines)
    expect(".circleci/orbs/drovertest/toolkit@VERSION.yml" in lines[0], lines)
    expect("`drover orb pull drovertest/toolkit@0.9`" in lines[0], lines)
    rc, out, err = drover(d, "config", "process")
    expect(rc == 1 and "drover orb pull drovertest/toolkit@0.9" in err, f"rc={rc} {err}")


@test
def unused_orbs_are_not_needed_and_warned_about():
    cfg = CONFIG.replace("  local:\n", "  gone: nobody/nothing@4.5.6\n  local:\n")
    d = project(cfg)
    rc, out, err = drover(d, "config", "process")
    expect(rc == 0, f"rc={rc} {err}")
    expect("warning: .circleci/config.yml:5:9: orb 'gone' is declared but none of its elements "
           "is used" in err, err)


@test
def errors_inside_an_orb_name_the_orb_file():
    d = project(CONFIG)
    bad = os.path.join(d, ".circleci", "orbs", "drovertest", "toolkit@0.3.1.yml")
    with open(bad) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("- install: {tool: << parameters.tool >>}",
                             "- install: {tool: << parameters.tool >>, colour: red}"))
    rc, out, err = drover(d, "config", "validate")
    expect(rc == 1 and "orbs/drovertest/toolkit@0.3.1.yml:" in err and
           "has no parameter 'colour'" in err, f"rc={rc} {err}")


class Registry:
    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, DOUBLE, "--orbs", ORBS],
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        expect(line.startswith("PORT "), f"double did not start: {line!r}")
        self.url = f"http://127.0.0.1:{line.split()[1]}"
        return self

    def stats(self):
        with urllib.request.urlopen(self.url + "/control/stats", timeout=10) as r:
            return json.load(r)

    def __exit__(self, *a):
        self.p.terminate()
        self.p.wait(timeout=10)


@test
def orb_pull_resolves_versions_records_digests_and_reports_registry_errors():
    cache = tempfile.mkdtemp(prefix="drover-orbcache-")
    with Registry() as reg:
        e = env_with(cache=cache, DROVER_ORB_REGISTRY=reg.url)
        rc, out, err = drover("/", "orb", "pull", "drovertest/greeter@1.2", "drovertest/greeter",
                              "drovertest/toolkit@0.3.1", env=e)
        expect(rc == 0, f"rc={rc} {err}")
        expect("drovertest/greeter@1.2.3 ->" in out and "drovertest/greeter@2.0.0 ->" in out, out)
        rc, out, err = drover("/", "orb", "pull", "drovertest/greeter@7", env=e)
        expect(rc == 1 and "has no version 7 of drovertest/greeter" in err, f"rc={rc} {err}")
        rc, out, err = drover("/", "orb", "pull", "nobody/nothing@1.0.0", env=e)
        expect(rc == 1 and "has no orb version nobody/nothing@1.0.0" in err, f"rc={rc} {err}")
        rc, out, err = drover("/", "orb", "pull", "broken/boom@1.0.0", env=e)
        expect(rc == 1 and "answered 500" in err, f"rc={rc} {err}")
        rc, out, err = drover("/", "orb", "source", "drovertest/greeter@1.0", env=e)
        expect(rc == 0 and "version 1.0.0" in out, f"rc={rc} {err}")
        st = reg.stats()
        expect(st["violations"] == [], st["violations"])
        expect(any("page%5Bcursor%5D" in p for p in st["paths"]), "the versions list was paged")
    src = os.path.join(ORBS, "drovertest", "greeter@1.2.3.yml")
    cached = os.path.join(cache, "drovertest", "greeter@1.2.3.yml")
    with open(src, "rb") as a, open(cached, "rb") as b:
        expect(a.read() == b.read(), "cached source differs")
    with open(cached + ".sha256") as f:
        expect(f.read().startswith("sha256:"), "no digest")
    rc, out, err = drover("/", "orb", "ls", env=env_with(cache=cache))
    expect(rc == 0 and "drovertest/toolkit@0.3.1 sha256:" in out and "not the digest" not in out,
           f"rc={rc} {out} {err}")
    # the cache is searched by config process; a changed cached source is refused
    d = project(CONFIG, vendor=False)
    rc, out, err = drover(d, "config", "process", env=env_with(cache=cache))
    expect(rc == 0, f"rc={rc} {err}")
    with open(cached, "a") as f:
        f.write("# changed\n")
    rc, out, err = drover(d, "config", "process", env=env_with(cache=cache))
    expect(rc == 1 and "digest" in err and "pull it again" in err, f"rc={rc} {err}")


@test
def run_uses_an_orb_command_executor_and_job():
    d = project(CONFIG)
    rc, out, err = drover(d, "run", "--store", os.path.join(d, "store"), "--workflow", "main",
                          timeout=300)
    expect(rc == 0, f"rc={rc} {out[-3000:]} {err[-2000:]}")
    for s in ["HELLO build FROM GREETER 1.2.3", "MARK local", "installing gcc into /opt",
              "hello toolkit from greeter 1.2.3", "checking with lint", "MARK post"]:
        expect(s in out, f"{s!r} not in output: {out[-3000:]}")


@test
def run_pull_orbs_fetches_what_is_missing():
    cache = tempfile.mkdtemp(prefix="drover-orbcache-")
    d = project(CONFIG, vendor=False)
    with Registry() as reg:
        e = env_with(cache=cache, DROVER_ORB_REGISTRY=reg.url)
        rc, out, err = drover(d, "run", "--store", os.path.join(d, "store"), "build", env=e)
        expect(rc == 2 and "not available offline" in err, f"rc={rc} {err}")
        rc, out, err = drover(d, "run", "--pull-orbs", "--store", os.path.join(d, "store"),
                              "build", env=e, timeout=300)
        expect(rc == 0 and "HELLO build FROM GREETER 1.2.3" in out, f"rc={rc} {out} {err}")
        expect(reg.stats()["violations"] == [], reg.stats())
    expect(os.path.exists(os.path.join(cache, "drovertest", "toolkit@0.3.1.yml")), "not cached")


# the orb-using configs of the corpus (corpus/orbs links to tests/orbs: their vendored orbs)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
EXPECTED = {
    "40-orbs-library.yml": {"lang/lint", "test-1.2", "test-1.3", "test-1.4", "docs", "publish"},
    "41-orbs-service.yml": {"unit", "tk/check", "team/image"},
    "42-orbs-nested.yml": {"platform/deploy", "prod"},
}


@test
def orb_configs_of_the_corpus_compile():
    names = sorted(f for f in os.listdir(CORPUS) if "-orbs-" in f)
    expect(set(names) == set(EXPECTED), names)
    for f in names:
        rc, out, err = drover(CORPUS, "config", "process", "-c", f, "--orb-dir", ORBS)
        expect(rc == 0, f"{f}: rc={rc} {err}")
        expect("warning" not in err, f"{f}: {err}")
        doc = json.loads(out)
        got = {j["name"] for w in doc["workflows"] for j in w["jobs"]}
        expect(got == EXPECTED[f], f"{f}: {got}")


main()
