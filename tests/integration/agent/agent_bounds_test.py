#!/usr/bin/env python3
"""agent_bounds_test.py: what a local attacker or a greedy job cannot take from the agent (issue
20): idle connections to the metrics port neither exhaust its file descriptors nor make it spin,
and its jobs still run; the sandbox slots are sized (max_jobs x (1 + max_services_per_job) must
fit the host's), reported in the metrics, and the per-job bound reaches `drover job`. TAP."""
import os
import socket
import stat
import time
import urllib.request

from agentlib import CERTS, FAKE, TMP, Agent, ControlPlane, expect, free_port, main, spec, test


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port, timeout=5):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout).read().decode()


@test
def idle_metrics_connections_neither_exhaust_fds_nor_spin():
    """finding 13: 200 idle connections under a 64-fd limit: the agent hit EMFILE, then spun at
    100 % CPU on the ever-readable listener, and the next job failed."""
    cp = ControlPlane(CERTS)
    port = free_port()
    ag = Agent(cp.urls, "idlefds", wrap=["prlimit", "--nofile=64:64", "--"],
               extra=["--metrics-listen", f"127.0.0.1:{port}"])
    socks = []
    try:
        for _ in range(100):
            try:
                scrape(port, 1)
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        time.sleep(1.5)
        c0 = cpu_seconds(ag.p.pid)
        time.sleep(2)
        used = cpu_seconds(ag.p.pid) - c0
        expect(used < 0.5, f"the agent used {used:.2f} s of CPU in 2 s with idle connections")
        t0 = time.time()
        m = scrape(port, 8)
        expect("drover_jobs_running" in m, "no metrics while idle connections are held")
        expect(time.time() - t0 < 6, f"a scrape took {time.time() - t0:.1f} s")
        cp.queue(spec("afterfds", "0 0"))
        expect(cp.wait(lambda: cp.outcome("afterfds"), 20),
               "the job did not finish: " + ag.logtext()[-1500:])
        expect(cp.outcome("afterfds")["status"] == "success",
               f"{cp.outcome('afterfds')}: " + ag.logtext()[-1500:])
        expect(ag.p.poll() is None, "the agent died")
    finally:
        for s in socks:
            s.close()
        ag.stop()
        cp.close()


@test
def slot_pool_is_sized_reported_and_the_service_bound_reaches_jobs():
    """finding 9: one job could take all 1024 sandbox slots with services; the agent now
    refuses a config whose jobs with their services do not fit, reports the pool, and hands
    max_services_per_job to every `drover job` (which enforces it)."""
    cp = ControlPlane(CERTS)
    bad = Agent(cp.urls, "slots-bad", extra=["--max-jobs", "100", "--max-services-per-job", "20"])
    try:
        rc = bad.wait(20)
        log = bad.logtext()
        expect(rc != 0 and "max_services_per_job" in log and "max_jobs" in log and "1024" in log,
               f"rc={rc}: {log[-800:]}")
    finally:
        bad.stop()
    seen = os.path.join(TMP, "max-services")
    wrapper = os.path.join(TMP, "job-env.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\necho "$DROVER_MAX_SERVICES" > {seen}\nexec {FAKE} "$@"\n')
    os.chmod(wrapper, stat.S_IRWXU)
    port = free_port()
    ag = Agent(cp.urls, "slots", fake=False,
               extra=["--job-command", wrapper, "--max-jobs", "4", "--max-services-per-job", "3",
                      "--metrics-listen", f"127.0.0.1:{port}"])
    try:
        cp.queue(spec("svcenv", "0 0"))
        expect(cp.wait(lambda: cp.outcome("svcenv"), 20), "no outcome: " + ag.logtext()[-800:])
        expect(open(seen).read().strip() == "3", f"DROVER_MAX_SERVICES={open(seen).read()!r}")
        m = scrape(port)
        expect("drover_sandbox_slots 1024" in m and "drover_sandbox_slots_per_job_max 4" in m, m)
    finally:
        ag.stop()
        cp.close()


if __name__ == "__main__":
    main()
