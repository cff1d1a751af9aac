#!/usr/bin/env python3
"""make_corpus.py: writes the config corpus (NN-name.yml) of corpus_test.py — configs written by
drover's team in the shape of real public projects' .circleci/config.yml (big matrices, anchors
under arbitrary top-level keys, several executors, scheduled workflows, macOS/Windows jobs beside
Linux ones, self-hosted classes, requires statuses, expressions). Each file starts with
`# expect-*` lines: facts corpus_test.py checks in `drover config process`'s output.
Rerun after editing: python3 make_corpus.py (the .yml files are committed)."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

LANGS = [
    # name, image, install, test, cache key file
    ("node", "cimg/node", "npm ci", "npm test -- --ci", "package-lock.json", ["18.20", "20.11", "22.2"]),
    ("python", "cimg/python", "pip install -e .[test]", "pytest -q", "setup.cfg", ["3.9", "3.10", "3.11", "3.12"]),
    ("go", "cimg/go", "go mod download", "go test ./...", "go.sum", ["1.21", "1.22"]),
    ("rust", "cimg/rust", "cargo fetch", "cargo test --locked", "Cargo.lock", ["1.75", "1.78", "1.80"]),
    ("ruby", "cimg/ruby", "bundle install", "bundle exec rspec", "Gemfile.lock", ["3.1", "3.2", "3.3"]),
    ("openjdk", "cimg/openjdk", "./gradlew dependencies", "./gradlew test", "build.gradle", ["11.0", "17.0", "21.0"]),
    ("php", "cimg/php", "composer install", "vendor/bin/phpunit", "composer.lock", ["8.1", "8.2", "8.3"]),
    ("elixir", "cimg/elixir", "mix deps.get", "mix test", "mix.lock", ["1.15", "1.16"]),
]

ANCHOR_KEYS = ["x-docker", "var_1", "_imageconfig", "job_defaults", "references", "aliases",
               "defaults", "x-common", "_anchors", "shared"]


def config(i):
    lang, image, install, test, lockfile, versions = LANGS[i % len(LANGS)]
    akey = ANCHOR_KEYS[i % len(ANCHOR_KEYS)]
    proj = f"{lang}-project-{i:02d}"
    mac = i % 3 == 0
    win = i % 5 == 1
    sched = i % 2 == 0
    selfhosted = i % 4 == 2
    gen2 = i % 3 == 1
    dup = i % 6 == 4
    exprfilter = i % 4 == 3
    big = i % 7 == 0
    oses = ["linux", "alpine"] if big else ["linux"]
    vers = versions * (2 if big else 1)
    vers = list(dict.fromkeys(vers))
    extra_axis = ["default", "minimal", "full"] if big else ["default"]
    rc = "medium.gen2" if gen2 else ["small", "medium", "large", "medium+"][i % 4]
    facts = ["--branch main --project gh/acme/" + proj]
    lines = []
    w = lines.append
    w("version: 2.1")
    w("")
    w(f"{akey}:")
    w(f"  - &{lang}_image")
    w(f"    image: {image}:{versions[-1]}")
    w(f"    environment:")
    w(f"      TZ: UTC")
    w(f"  - &restore_deps")
    w(f"    restore_cache:")
    w(f"      keys:")
    w(f"        - v{i}-deps-{{{{ checksum \"{lockfile}\" }}}}")
    w(f"        - v{i}-deps-")
    w(f"  - &save_deps")
    w(f"    save_cache:")
    w(f"      key: v{i}-deps-{{{{ checksum \"{lockfile}\" }}}}")
    w(f"      paths: [~/.cache]")
    w(f"filters_main_only: &main_only")
    w(f"  branches:")
    w(f"    only: [main, /release\\/.*/]")
    w("")
    w("parameters:")
    w("  run-nightly:")
    w("    type: boolean")
    w("    default: false")
    w("  deploy-env:")
    w("    type: enum")
    w("    enum: [staging, production]")
    w("    default: staging")
    w("")
    w("executors:")
    w(f"  {lang}:")
    w("    parameters:")
    w("      version:")
    w("        type: string")
    w(f"        default: \"{versions[-1]}\"")
    w("      variant:")
    w("        type: string")
    w("        default: default")
    w("    docker:")
    w(f"      - image: {image}:<< parameters.version >>")
    w("        auth:")
    w("          username: $DOCKERHUB_USER")
    w("          password: $DOCKERHUB_PASSWORD")
    w("      - image: cimg/postgres:16.2")
    w("        environment:")
    w("          POSTGRES_USER: ci")
    w("    environment:")
    w(f"      {lang.upper()}_ENV: test")
    w("      SHARED: from-executor")
    w("      VARIANT: << parameters.variant >>")
    w(f"    resource_class: {rc}")
    w("  vm:")
    w("    machine:")
    w("      image: ubuntu-2204:2024.01.1")
    w("      docker_layer_caching: true")
    w("    resource_class: large")
    if mac:
        w("  xcode:")
        w("    macos:")
        w("      xcode: 15.3.0")
        w("    resource_class: macos.m1.medium.gen1")
    w("")
    w("commands:")
    w("  setup:")
    w("    parameters:")
    w("      cache-version:")
    w("        type: string")
    w("        default: v1")
    w("      extra:")
    w("        type: steps")
    w("        default: []")
    w("    steps:")
    w("      - checkout")
    w("      - *restore_deps")
    w(f"      - run: {install}")
    w("      - steps: << parameters.extra >>")
    w("      - *save_deps")
    w("  report:")
    w("    steps:")
    w("      - store_test_results:")
    w("          path: test-results")
    w("      - store_artifacts:")
    w("          path: test-results")
    w("          destination: results")
    w("")
    w("jobs:")
    w("  lint:")
    w(f"    executor: {lang}")
    w("    steps:")
    w("      - setup")
    w("      - run:")
    w("          name: Lint")
    w("          command: make lint")
    w("  test:")
    w("    parameters:")
    w("      version:")
    w("        type: string")
    w("      os:")
    w("        type: string")
    w("        default: linux")
    w("      variant:")
    w("        type: string")
    w("        default: default")
    w("    executor:")
    w(f"      name: {lang}")
    w("      version: << parameters.version >>")
    w("      variant: << parameters.variant >>")
    w("    environment:")
    w("      SHARED: from-job")
    w("      TARGET_OS: << parameters.os >>")
    w(f"    parallelism: << pipeline.git.branch == \"main\" and {2 + i % 3} or 1 >>")
    w("    steps:")
    w("      - setup:")
    w("          extra:")
    w("            - run: echo \"testing on << parameters.os >> with << parameters.version >>\"")
    w("      - run:")
    w("          name: Test")
    w(f"          command: {test}")
    w("          no_output_timeout: 20m")
    w("      - report")
    w("  integration:")
    w("    executor: vm")
    w("    steps:")
    w("      - checkout")
    w("      - run: docker compose up -d && make integration")
    w("      - run:")
    w("          name: Logs on failure")
    w("          command: docker compose logs")
    w("          when: on_fail")
    w("  build:")
    w(f"    executor: {lang}")
    w("    steps:")
    w("      - setup")
    w("      - run: make dist")
    w("      - persist_to_workspace:")
    w("          root: .")
    w("          paths: [dist]")
    w("  publish:")
    w(f"    docker: [*{lang}_image]")
    w("    parameters:")
    w("      env:")
    w("        type: string")
    w("        default: << pipeline.parameters.deploy-env >>")
    w("    steps:")
    w("      - checkout")
    w("      - attach_workspace: {at: .}")
    w("      - run: ./scripts/publish.sh << parameters.env >> << pipeline.git.revision >>")
    w("  cleanup:")
    w("    docker:")
    w("      - image: cimg/base:stable")
    w("    steps:")
    w("      - run: echo cleaning up after << pipeline.project.slug >>")
    w("  all-green:")
    w("    type: no-op")
    if mac:
        w("  ios:")
        w("    executor: xcode")
        w("    steps:")
        w("      - checkout")
        w("      - run: xcodebuild -scheme App test")
    if win:
        w("  windows:")
        w("    machine:")
        w("      image: windows-server-2022-gui:current")
        w("      shell: powershell.exe -ExecutionPolicy Bypass")
        w("    resource_class: windows.medium")
        w("    steps:")
        w("      - checkout")
        w("      - run: .\\build.ps1")
    if selfhosted:
        w("  on-prem:")
        w("    machine: true")
        w(f"    resource_class: acme/{lang}-runners")
        w("    steps:")
        w("      - checkout")
        w("      - run: make hardware-test")
    w("")
    w("workflows:")
    w("  ci:")
    w("    when:")
    w("      not: << pipeline.parameters.run-nightly >>")
    w("    jobs:")
    w("      - lint")
    w("      - test:")
    w("          name: test-<< matrix.os >>-<< matrix.version >>-<< matrix.variant >>")
    w("          requires: [lint]")
    w("          matrix:")
    w("            alias: tests")
    w("            parameters:")
    w(f"              os: [{', '.join(oses)}]")
    w(f"              version: [{', '.join(repr(v).replace(chr(39), chr(34)) for v in vers)}]")
    w(f"              variant: [{', '.join(extra_axis)}]")
    n_matrix = len(oses) * len(vers) * len(extra_axis)
    if big:
        w("            exclude:")
        w(f"              - {{os: alpine, version: \"{vers[0]}\", variant: full}}")
        n_matrix -= 1
    w("      - integration:")
    w("          requires: [lint]")
    if exprfilter:
        w("          filters: pipeline.git.branch == \"main\" or pipeline.git.branch starts-with \"release/\"")
    w("      - build:")
    w("          requires: [tests, integration]")
    w("      - all-green:")
    w("          requires: [tests, integration]")
    w("      - publish:")
    w("          requires: [build, all-green]")
    w("          serial-group: << pipeline.project.slug >>/publish")
    w("          filters: *main_only")
    w("      - cleanup:")
    w("          requires:")
    w("            - publish: terminal")
    w("            - build: [success, failed]")
    unr = []
    n_ci = 1 + n_matrix + 1 + 1 + 1 + 1  # lint, matrix, integration, build, publish, cleanup
    if mac:
        w("      - ios:")
        w("          requires: [lint]")
        unr.append("ios")
        n_ci += 1
    if win:
        w("      - windows")
        unr.append("windows")
        n_ci += 1
    if selfhosted:
        w("      - on-prem:")
        w("          requires: [build]")
        n_ci += 1
    if dup:
        w("      - lint")
        n_ci += 1
    wfs = {"ci": n_ci}
    if sched:
        w("  nightly:")
        w("    triggers:")
        w("      - schedule:")
        w(f"          cron: \"{i % 60} {i % 24} * * *\"")
        w("          filters:")
        w("            branches:")
        w("              only: [main]")
        w("    jobs:")
        w("      - integration")
        w("      - cleanup:")
        w("          requires:")
        w("            - integration: terminal")
    w("  scheduled-by-name:")
    w("    when:")
    w("      and:")
    w("        - equal: [scheduled_pipeline, << pipeline.trigger_source >>]")
    w("        - equal: [weekly, << pipeline.schedule.name >>]")
    w("    jobs: [build]")
    # facts
    facts_lines = [f"# expect-args: {facts[0]}",
                   f"# expect-workflows: {' '.join(sorted(wfs))}",
                   f"# expect-jobs: ci={wfs['ci']}"]
    if unr:
        facts_lines.append(f"# expect-unrunnable: {' '.join(unr)}")
    if dup:
        facts_lines.append("# expect-job: ci lint-1 lint-2")
    else:
        facts_lines.append("# expect-job: ci lint")
    facts_lines.append("# expect-requires-status: ci cleanup publish=success,failed,canceled,"
                       "unauthorized,not_run build=success,failed")
    facts_lines.append(f"# expect-serial-group: ci publish gh/acme/{proj}/publish")
    facts_lines.append(f"# expect-env: ci test-linux-{vers[0]}-default SHARED=from-job "
                       f"{lang.upper()}_ENV=test")
    facts_lines.append(f"# expect-parallelism: ci test-linux-{vers[0]}-default {2 + i % 3}")
    facts_lines.append(f"# expect-resource-class: ci {'lint-1' if dup else 'lint'} {rc}")
    if selfhosted:
        facts_lines.append(f"# expect-resource-class: ci on-prem acme/{lang}-runners")
    if sched:
        facts_lines.append("# expect-scheduled: nightly")
    head = [f"# {proj}: a {lang} project's CI (drover config corpus, written for drover's tests)"]
    return "\n".join(head + facts_lines + lines) + "\n"


def main():
    for i in range(32):
        lang = LANGS[i % len(LANGS)][0]
        with open(os.path.join(HERE, f"{i:02d}-{lang}.yml"), "w") as f:
            f.write(config(i))


if __name__ == "__main__":
    main()
