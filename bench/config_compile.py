#!/usr/bin/env python3
"""config_compile.py: time `drover config process` (load, resolve, compile every workflow job,
print the JSON) on a generated 70 KB config shaped like a big real one: anchors under arbitrary
top-level keys, parameterised executors and commands, 60 jobs, matrices, requires statuses,
expressions, macOS jobs. Prints best and median wall times of N runs (default 20) against the
goal (50 ms) and, for a ratio, `python3 -c 'import yaml'`-free baseline: the same file through
`drover config validate`. Usage: python3 bench/config_compile.py [DROVER] [N]"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DROVER = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/agent/drover")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def big_config(target=70 * 1024):
    out = ["version: 2.1", "x-images:", "  - &base {image: cimg/base:stable}",
           "  - &node {image: cimg/node:20.11, environment: {TZ: UTC}}",
           "x-steps:", "  - &restore", "    restore_cache:", "      keys:",
           "        - v1-{{ checksum \"lock\" }}", "        - v1-",
           "  - &save", "    save_cache:", "      key: v1-{{ checksum \"lock\" }}",
           "      paths: [node_modules]",
           "parameters:", "  nightly: {type: boolean, default: false}",
           "executors:", "  node:", "    parameters: {tag: {type: string, default: \"20.11\"}}",
           "    docker: [{image: \"cimg/node:<< parameters.tag >>\"}, {image: cimg/postgres:16.2}]",
           "    environment: {A: exec, B: exec}", "    resource_class: medium.gen2",
           "commands:", "  setup:", "    parameters: {extra: {type: steps, default: []}}",
           "    steps: [checkout, *restore, run: npm ci, steps: << parameters.extra >>, *save]",
           "jobs:"]
    jobs = []
    i = 0
    while sum(len(x) + 1 for x in out) < target - 6000:
        name = f"job{i:03d}"
        jobs.append(name)
        mac = i % 15 == 14
        out += [f"  {name}:", "    parameters: {v: {type: string, default: \"20.11\"}}"]
        out += ["    macos: {xcode: 15.3.0}"] if mac else [
            "    executor: {name: node, tag: << parameters.v >>}"]
        out += ["    environment: {B: job, PART: \"" + name + "\"}",
                "    parallelism: << pipeline.git.branch == \"main\" and 4 or 1 >>",
                "    steps:", "      - setup:", "          extra:",
                f"            - run: echo preparing {name} on << pipeline.git.branch >>",
                "      - run:", f"          name: Test {name}",
                "          command: |", "            npm run build", "            npm test -- --shard=$CIRCLE_NODE_INDEX",
                "          no_output_timeout: 15m",
                "      - store_test_results: {path: results}",
                "      - store_artifacts: {path: results, destination: results}",
                "      - when:", "          condition: << pipeline.parameters.nightly >>",
                "          steps: [run: npm run e2e]"]
        i += 1
    out += ["workflows:", "  ci:", "    jobs:"]
    for k, name in enumerate(jobs):
        if k % 5 == 0:
            out += [f"      - {name}:", "          matrix:", "            parameters:",
                    "              v: [\"18.20\", \"20.11\", \"22.2\"]"]
            if k:
                out += [f"          requires: [{jobs[k - 1]}]"]
        elif k % 5 == 4:
            out += [f"      - {name}:", "          requires:", f"            - {jobs[k - 1]}: terminal"]
        else:
            out += [f"      - {name}:", f"          requires: [{jobs[k - 1]}]"]
    out += ["  nightly:", "    triggers: [{schedule: {cron: \"0 3 * * *\", filters: {branches: {only: main}}}}]",
            "    jobs: [job001]"]
    return "\n".join(out) + "\n"


def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def timeit(args):
    """Best and median wall time, best CPU time (user + system: less sensitive to other load
    on the machine than wall time), output size."""
    times, cpus = [], []
    for _ in range(N):
        t, c = time.perf_counter(), cpu()
        p = subprocess.run(args, capture_output=True, text=True)
        times.append((time.perf_counter() - t) * 1000)
        cpus.append(cpu() - c)
        if p.returncode != 0:
            sys.exit(f"{' '.join(args)}: rc={p.returncode}\n{p.stderr[-2000:]}")
    return min(times), statistics.median(times), min(cpus), len(p.stdout)


def main():
    d = tempfile.mkdtemp(prefix="drover-bench-config-")
    path = os.path.join(d, "config.yml")
    with open(path, "w") as f:
        f.write(big_config())
    size = os.path.getsize(path)
    runs = [("drover --version (exec and start only)", [DROVER, "--version"]),
            ("drover config validate (compile)", [DROVER, "config", "validate", "-c", path,
                                                   "--branch", "main"]),
            ("drover config process (compile + JSON)", [DROVER, "config", "process", "-c", path,
                                                        "--branch", "main"])]
    res = [(name, timeit(args)) for name, args in runs]
    print(f"config: {size} bytes ({size / 1024:.1f} KB), {N} runs, load {os.getloadavg()[0]:.1f}")
    print("| run | wall best | wall median | CPU best |")
    print("|---|---|---|---|")
    for name, (best, med, cbest, _) in res:
        print(f"| {name} | {best:.1f} ms | {med:.1f} ms | {cbest:.1f} ms |")
    base = res[0][1]
    for name, (best, med, cbest, _) in res[1:]:
        print(f"{name}, start subtracted: wall {best - base[0]:.1f} ms, CPU {cbest - base[2]:.1f} ms"
              " (goal: under 50 ms)")

if __name__ == "__main__":
    main()
