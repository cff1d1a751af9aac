#!/usr/bin/env python3
"""config_cli.py: `drover config validate|process` through the real binary: exit codes, every
error as FILE:LINE:COL, the process JSON document, filters, pipeline parameters, bounds, --help."""
import json
import os
import re
import shutil
import subprocess
import tempfile

DROVER = os.path.abspath(os.environ.get("DROVER", "drover"))
results = []
dirs = []

GOOD = """\
version: 2.1
parameters:
  deploy: {type: boolean, default: false}
  greeting: {type: string, default: hello}
executors:
  py:
    parameters:
      tag: {type: string, default: "3.11"}
    docker:
      - image: cimg/python:<< parameters.tag >>
    resource_class: large
commands:
  greet:
    parameters:
      who: {type: string}
    steps:
      - run: echo << pipeline.parameters.greeting >> << parameters.who >>
jobs:
  build:
    executor: {name: py, tag: "3.12"}
    parallelism: 3
    steps:
      - checkout
      - greet: {who: world}
      - when:
          condition: << pipeline.parameters.deploy >>
          steps: [run: ./deploy.sh]
  test:
    parameters:
      v: {type: string}
    machine: true
    steps:
      - run: test << parameters.v >>
workflows:
  main:
    jobs:
      - build:
          filters: {branches: {only: [main, /release-.*/]}}
      - test:
          requires: [build]
          matrix:
            alias: tests
            parameters: {v: ["1", "2"]}
      - test:
          name: final
          v: "3"
          requires: [tests]
  release:
    jobs:
      - build:
          filters:
            tags:
              only: /^v[0-9]+/
            branches: {ignore: /.*/}
"""

BAD = """\
version: 2.1
jobs:
  a:
    machine: true
    stepz: []
    steps: [nope]
  b:
    docker: [{image: x, colour: blue}]
    resource_class: huge
    steps: [checkout]
workflows:
  w:
    jobs: [a, {b: {requires: [zz]}}]
"""


def project(config, path=".circleci/config.yml"):
    d = tempfile.mkdtemp(prefix="drover-config-")
    dirs.append(d)
    full = os.path.join(d, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(config)
    return d


def drover(d, *args, timeout=30):
    p = subprocess.run([DROVER, "config", *args], cwd=d, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test(fn):
    try:
        fn()
        results.append((True, fn.__name__, ""))
    except AssertionError as e:
        results.append((False, fn.__name__, str(e)))
    except Exception as e:  # noqa: BLE001
        results.append((False, fn.__name__, f"{type(e).__name__}: {e}"))
    return fn


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def process(d, *args):
    rc, out, err = drover(d, "process", *args)
    expect(rc == 0, f"process rc={rc} {err}")
    return json.loads(out)


def names(doc, wf):
    for w in doc["workflows"]:
        if w["name"] == wf:
            return [j["name"] for j in w["jobs"]]
    return None


@test
def validate_default_path_valid_config_exits_0():
    d = project(GOOD)
    rc, out, err = drover(d, "validate")
    expect(rc == 0, f"rc={rc} {err}")
    expect("config is valid" in out, out)


@test
def validate_prints_every_error_as_file_line_col_and_exits_1():
    d = project(BAD)
    rc, out, err = drover(d, "validate")
    expect(rc == 1, f"rc={rc}")
    lines = [ln for ln in err.splitlines() if ln.startswith(".circleci/config.yml:")]
    for ln in lines:
        expect(re.match(r"^\.circleci/config\.yml:\d+:\d+: \S", ln), f"bad line {ln!r}")
    want = ["5:5: unknown key 'stepz' in job 'a'", "unknown step or command 'nope'",
            "unknown key 'colour' in a docker image", "unknown resource_class 'huge'",
            "requires 'zz', which is not in workflow 'w'"]
    for w in want:
        expect(any(w in ln for ln in lines), f"missing {w!r} in {err}")
    expect(len(lines) == len(set(lines)), f"duplicate errors: {err}")
    expect(f"{len(lines)} errors" in err, err)


@test
def validate_c_option_reads_another_file():
    d = project(GOOD, "ci/other.yml")
    rc, out, err = drover(d, "validate", "-c", "ci/other.yml")
    expect(rc == 0 and "ci/other.yml: config is valid" in out, f"rc={rc} {out} {err}")
    rc, out, err = drover(d, "validate")
    expect(rc == 2 and ".circleci/config.yml" in err, f"missing default file: rc={rc} {err}")


@test
def validate_alias_bomb_is_a_quick_error_with_position():
    y = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for name in "bcdefghi":
        y += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = name
    d = project(y)
    rc, out, err = drover(d, "validate", timeout=20)
    expect(rc == 1, f"rc={rc}")
    expect(re.search(r"\.circleci/config\.yml:\d+:\d+: .*alias bomb", err), err)


@test
def validate_oversized_file_is_refused():
    d = project("version: 2.1\n# " + "x" * (9 << 20) + "\n")
    rc, out, err = drover(d, "validate")
    expect(rc != 0 and "config is valid" not in out, f"rc={rc}")


@test
def validate_missing_orb_is_an_error_naming_it():
    d = project("version: 2.1\norbs:\n  node: drovertest/absent@5.1\n"
                "jobs: {a: {machine: true, steps: [node/install]}}\n")
    rc, out, err = drover(d, "validate")
    expect(rc == 1 and "orb 'node' (drovertest/absent@5.1) is not available offline" in err, err)
    expect("drover orb pull drovertest/absent@5.1" in err, err)


@test
def process_document_has_workflows_jobs_and_specs():
    d = project(GOOD)
    doc = process(d, "--branch", "main")
    expect(doc["version"] == 1, doc.keys())
    expect(names(doc, "main") == ["build", "test-1", "test-2", "final"], names(doc, "main"))
    main = {j["name"]: j for j in doc["workflows"][0]["jobs"]}
    expect(main["build"]["parallelism"] == 3 and main["build"]["requires"] == [], main["build"])
    expect(main["build"]["spec"]["id"]["node_total"] == 3, main["build"]["spec"]["id"])
    expect(sorted(main["final"]["requires"]) == ["test-1", "test-2"], main["final"])
    expect(main["test-2"]["job"] == "test", main["test-2"])
    spec = main["build"]["spec"]
    expect(spec["version"] == 1 and "storage" not in spec and "output" not in spec, spec.keys())
    expect(spec["executor"]["images"][0]["image"] == "cimg/python:3.12", spec["executor"])
    expect(spec["executor"]["resources"] == {"cpus": 4, "memory_mb": 8192}, spec["executor"])
    cmds = [s.get("command") for s in spec["steps"]]
    expect(cmds == [None, "echo hello world"], cmds)
    expect(main["test-1"]["spec"]["steps"][0]["command"] == "test 1", main["test-1"])
    expect([j["name"] for j in doc["jobs"]] == ["build"], "standalone jobs: " + str(doc["jobs"]))


@test
def process_branch_filters_select_jobs():
    d = project(GOOD)
    expect(names(process(d, "--branch", "release-7"), "main")[0] == "build", "regex only")
    expect(names(process(d, "--branch", "feature"), "main") == [], "filtered build and deps")
    expect(names(process(d, "--branch", "main"), "release") == [], "ignore all branches")


@test
def process_tag_runs_only_jobs_with_tag_filters():
    d = project(GOOD)
    doc = process(d, "--tag", "v12")
    expect(names(doc, "release") == ["build"], names(doc, "release"))
    expect(names(doc, "main") == [], names(doc, "main"))
    expect(names(process(d, "--tag", "nightly"), "release") == [], "tag regex")


@test
def process_param_sets_pipeline_parameters():
    d = project(GOOD)
    doc = process(d, "--branch", "main", "--param", "deploy=true", "--param", "greeting=hey")
    steps = doc["workflows"][0]["jobs"][0]["spec"]["steps"]
    cmds = [s.get("command") for s in steps]
    expect(cmds == [None, "echo hey world", "./deploy.sh"], cmds)
    rc, out, err = drover(d, "process", "--param", "novalue")
    expect(rc == 2 and "NAME=VALUE" in err, f"rc={rc} {err}")


@test
def process_revision_and_branch_land_in_vcs():
    d = project(GOOD)
    doc = process(d, "--branch", "main", "--revision", "0123456789abcdef0123456789abcdef01234567")
    vcs = doc["workflows"][0]["jobs"][0]["spec"]["vcs"]
    expect(vcs == {"branch": "main", "revision": "0123456789abcdef0123456789abcdef01234567"},
           vcs)


@test
def process_invalid_config_exits_1_with_position():
    d = project(BAD)
    rc, out, err = drover(d, "process")
    expect(rc == 1 and out == "", f"rc={rc} out={out!r}")
    lines = err.splitlines()
    expect(len(lines) >= 5, f"process should print every error: {err}")
    for ln in lines:
        expect(re.match(r"^\.circleci/config\.yml:\d+:\d+: ", ln), ln)
    rc, out, err = drover(d, "process", "-c", "missing.yml")
    expect(rc == 2 and "missing.yml" in err, f"missing file: rc={rc} {err}")


@test
def process_undeclared_or_mistyped_param_is_an_error():
    d = project(GOOD)
    rc, out, err = drover(d, "process", "--param", "nope=1", "--param", "deploy=maybe")
    expect(rc == 1, f"rc={rc}")
    expect("pipeline parameter 'nope' is not declared" in err, err)
    expect("pipeline parameter 'deploy' must be true or false, got 'maybe'" in err, err)


@test
def help_and_usage_errors():
    d = project(GOOD)
    for args in (["--help"], ["validate", "--help"], ["process", "--help"]):
        rc, out, err = drover(d, *args)
        expect(rc == 0 and "usage: drover config" in out, f"{args}: rc={rc} {out} {err}")
    rc, out, err = drover(d, "frobnicate")
    expect(rc == 2 and "unknown verb" in err, f"rc={rc} {err}")
    rc, out, err = drover(d, "process", "--bogus")
    expect(rc == 2, f"rc={rc}")


for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
print(f"1..{len(results)}")
for i, (ok, name, msg) in enumerate(results, 1):
    print(f"{'ok' if ok else 'not ok'} {i} - {name}")
    if msg:
        for ln in msg.splitlines()[:20]:
            print(f"#   {ln}")
