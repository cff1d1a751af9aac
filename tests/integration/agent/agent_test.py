#!/usr/bin/env python3
"""agent_test.py: `drover agent` against the strict control-plane double (tests/doubles): register,
concurrent jobs, cancel, drain on SIGTERM, outage mid-job, failover, bad certificate, one-job
mode, idle timeout, crash isolation, print-config redaction, metrics, SIGHUP, sd_notify, and one
real job through the real `drover job`. TAP output."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from agentlib import (AGENT_BIN, CERTS, DROVER, FAKE, LEAN, SRC, TMP, TOKEN, Agent,  # noqa: F401
                      ControlPlane, expect, free_port, main, seqs_once, spec, test)


@test
def register_and_concurrent_jobs():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "concurrent", extra=["--max-jobs", "3"])
    try:
        for i in range(3):
            cp.queue(spec(f"c{i}", "2 0"))
        t0 = time.time()
        ok = cp.wait(lambda: all(cp.outcome(f"c{i}") for i in range(3)), 20)
        expect(ok, "not all jobs finished: " + ag.logtext()[-2000:])
        expect(time.time() - t0 < 5.5, f"3 x 2 s jobs took {time.time() - t0:.1f}s: not concurrent")
        for i in range(3):
            evs = seqs_once(cp, f"c{i}")
            expect([e["type"] for e in evs] ==
                   ["started", "step_started", "step_finished", "finished", "outcome"], evs)
            expect(evs[-1]["status"] == "success", evs[-1])
        snap = cp.snapshot()
        expect(len(snap["nodes"]) == 1, snap["nodes"])
        node = list(snap["nodes"].values())[0]
        expect(node["name"] == "concurrent" and node["max_jobs"] == 3, node)
        expect(not snap["rejections"], snap["rejections"])
        expect(snap["heartbeats"] >= 2, "no heartbeats")
    finally:
        ag.stop()
        cp.close()


@test
def claims_only_what_fits():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "fits", extra=["--max-jobs", "4", "--resource-classes", "small,medium"])
    try:
        big = spec("big", "0 0")
        big["executor"]["resources"] = {"cpus": 64}
        cp.queue(big)
        other = spec("xl", "0 0")
        other["executor"]["resource_class"] = "xlarge"
        cp.queue(other)
        ok = spec("fit", "0 0")
        ok["executor"]["resource_class"] = "small"
        cp.queue(ok)
        expect(cp.wait(lambda: cp.outcome("fit"), 15), "fitting job not run")
        time.sleep(0.5)
        expect([s["id"]["job"] for s in cp.snapshot()["queue"]] == ["big", "xl"],
               cp.snapshot()["queue"])
        node = list(cp.snapshot()["nodes"].values())[0]
        expect(node["resource_classes"] == ["small", "medium"], node)
    finally:
        ag.stop()
        cp.close()


@test
def cancel_kills_job_within_seconds():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "cancel", extra=["--cancel-grace", "3s"])
    try:
        cp.queue(spec("k1", "60 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("k1")), 15),
               "job did not start")
        t0 = time.time()
        cp.cancel("k1")
        expect(cp.wait(lambda: cp.outcome("k1"), 10), "no outcome after cancel")
        expect(time.time() - t0 < 5, f"cancel took {time.time() - t0:.1f}s")
        expect(cp.outcome("k1")["status"] == "canceled", cp.outcome("k1"))
        seqs_once(cp, "k1")
        expect(ag.p.poll() is None, "agent died")
    finally:
        ag.stop()
        cp.close()


@test
def cancel_escalates_to_sigkill():
    cp = ControlPlane(CERTS)
    # a job that ignores SIGTERM: the agent kills its process group after cancel_grace
    ag = Agent(cp.urls, "kill", extra=["--cancel-grace", "1s"])
    try:
        cp.queue(spec("g1", "60 ignoreterm"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("g1")), 15),
               "job did not start")
        cp.cancel("g1")
        expect(cp.wait(lambda: cp.outcome("g1"), 10), "no outcome after cancel")
        expect(cp.outcome("g1")["status"] == "canceled", cp.outcome("g1"))
        expect("job_kill" in ag.logtext(), "no SIGKILL escalation logged")
    finally:
        ag.stop()
        cp.close()


@test
def drain_on_sigterm_cancels_after_grace():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "drain", extra=["--drain-grace", "1s"])
    try:
        cp.queue(spec("d1", "60 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("d1")), 15),
               "job did not start")
        ag.p.send_signal(signal.SIGTERM)
        rc = ag.wait(20)
        expect(rc == 0, f"exit {rc}")
        out = cp.outcome("d1")
        expect(out and out["status"] == "infrastructure_fail", out)
        seqs_once(cp, "d1")
        expect(len(cp.snapshot()["deregistered"]) == 1, "not deregistered")
    finally:
        ag.stop()
        cp.close()


@test
def drain_lets_job_finish_within_grace():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "drainok", extra=["--drain-grace", "30s"])
    try:
        cp.queue(spec("d2", "2 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("d2")), 15),
               "job did not start")
        ag.p.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # (a claim answered before the signal is the control plane's to requeue)
        cp.queue(spec("d3", "0 0"))  # must not be claimed while draining
        expect(ag.wait(20) == 0, "exit status")
        expect(cp.outcome("d2")["status"] == "success", cp.outcome("d2"))
        expect(cp.outcome("d3") is None and len(cp.snapshot()["queue"]) == 1, "claimed while draining")
    finally:
        ag.stop()
        cp.close()


@test
def outage_mid_job_events_arrive_once():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "outage")
    try:
        cp.queue(spec("o1", "3 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("o1")), 15),
               "job did not start")
        cp.down(0, 5)
        time.sleep(5)
        expect(cp.outcome("o1") is None, "events delivered while down")
        expect(cp.wait(lambda: cp.outcome("o1"), 30), "no outcome after the outage: " +
               ag.logtext()[-1500:])
        evs = seqs_once(cp, "o1")
        expect(len(evs) == 5 and evs[-1]["status"] == "success", evs)
        expect(ag.p.poll() is None, "agent died")
        expect("control_plane_unreachable" in ag.logtext(), "outage not noticed")
    finally:
        ag.stop()
        cp.close()


@test
def event_flood_during_outage_is_held_back_not_lost():
    # a spool too small for the flood: past memory and spool, the job's pipe is not read
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "flood", extra=["--event-spool-max", "200k"])
    try:
        cp.queue(spec("fl", "2 flood"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("fl")), 15),
               "job did not start")
        cp.down(0, 4)
        time.sleep(4)
        expect(cp.wait(lambda: cp.outcome("fl"), 40), "no outcome: " + ag.logtext()[-1000:])
        evs = seqs_once(cp, "fl")
        expect(len(evs) == 2005 and evs[-1]["status"] == "success", len(evs))
        expect("job_events_paused" in ag.logtext(), "the buffer bound was never reached")
        expect("job_events_spooled" in ag.logtext(), "the spool was not used first")
    finally:
        ag.stop()
        cp.close()


@test
def event_flood_during_outage_spills_to_disk():
    # the job prints ~1.4 MB of events while the control plane is down: past the 1 MiB in memory
    # they go to a spool file under work_dir/.agent, the job is not held back, and once the
    # control plane is back every event arrives once, in order; the spool file is gone after
    cp = ControlPlane(CERTS)
    mport = free_port()
    ag = Agent(cp.urls, "spill", extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    try:
        cp.queue(spec("sp", "1 flood"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("sp")), 15),
               "job did not start")
        cp.down(0, 6)
        expect(cp.wait(lambda: "event=job_exited job=sp " in ag.logtext(), 5),
               "job held back during the outage: " + ag.logtext()[-1500:])
        spool = [f for f in os.listdir(os.path.join(ag.work, ".agent")) if f.endswith(".spool")]
        expect(len(spool) == 1, spool)
        m = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        sb = [int(x.split()[1]) for x in m.splitlines() if x.startswith("drover_event_spool_bytes ")]
        expect(sb and sb[0] > 100000, m)
        expect(cp.wait(lambda: cp.outcome("sp"), 40), "no outcome: " + ag.logtext()[-1000:])
        evs = seqs_once(cp, "sp")
        expect(len(evs) == 2005 and evs[-1]["status"] == "success", len(evs))
        expect("job_events_paused" not in ag.logtext(), "the job was held back")
        time.sleep(0.5)
        left = [f for f in os.listdir(os.path.join(ag.work, ".agent")) if f.endswith(".spool")]
        expect(not left, f"spool left: {left}")
    finally:
        ag.stop()
        cp.close()


@test
def injected_failures_and_delays_are_retried():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "flaky")
    try:
        expect(cp.wait(lambda: cp.snapshot()["nodes"], 10), "not registered")
        cp.state.delay = 0.3
        cp.fail_next(4, 503)
        cp.queue(spec("y1", "0 0"))
        expect(cp.wait(lambda: cp.outcome("y1"), 20), "no outcome: " + ag.logtext()[-1000:])
        seqs_once(cp, "y1")
        expect(sum(1 for r in cp.snapshot()["requests"] if r[2] == 503) == 4, "failures not hit")
        expect("control_plane_unreachable" in ag.logtext(), "503s not noticed")
        expect(ag.p.poll() is None, "agent died")
    finally:
        ag.stop()
        cp.close()


@test
def failover_to_second_server():
    cp = ControlPlane(CERTS, ports=(0, 0))
    cp.down(0, 120)
    ag = Agent(cp.urls, "failover")
    try:
        cp.queue(spec("f1", "1 0"))
        expect(cp.wait(lambda: cp.outcome("f1"), 20), "no outcome: " + ag.logtext()[-1500:])
        node = list(cp.snapshot()["nodes"].values())[0]
        expect(node["port"] == 1, node)
        seqs_once(cp, "f1")
        # now the second goes down and the first comes back: the agent moves again mid-job
        cp.queue(spec("f2", "3 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("f2")), 15),
               "f2 did not start")
        cp.down(0, 0)
        cp.down(1, 120)
        expect(cp.wait(lambda: cp.outcome("f2"), 30), "no outcome for f2: " + ag.logtext()[-1500:])
        seqs_once(cp, "f2")
        expect(cp.wait(lambda: any(r[0] == 0 and "events" in r[1] and r[2] == 200
                                   for r in cp.snapshot()["requests"]), 5), f"no events went to the first server: {[r for r in cp.snapshot()['requests'] if 'heartbeat' not in r[1]]}")
    finally:
        ag.stop()
        cp.close()


@test
def bad_certificate_refused():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "badcert", cert="badclient")
    try:
        time.sleep(2.5)
        snap = cp.snapshot()
        expect(not snap["nodes"], "registered with a bad certificate")
        expect(any(r[0] == "tls" for r in snap["rejections"]), snap["rejections"])
        expect("control_plane_unreachable" in ag.logtext(), ag.logtext()[-800:])
    finally:
        ag.stop()
        cp.close()


@test
def keep_alive_reuses_connections():
    # heartbeats and claim long polls go over a few kept-alive TLS connections, not one each
    cp = ControlPlane(CERTS, heartbeat_ms=200)
    ag = Agent(cp.urls, "keepalive", extra=["--claim-wait", "1s"])
    try:
        expect(cp.wait(lambda: len(cp.state.heartbeats) >= 15, 15), ag.logtext()[-800:])
        n = len(cp.state.requests)
        expect(n >= 17, f"only {n} requests")
        expect(cp.state.handshakes <= 4, f"{cp.state.handshakes} TLS handshakes for {n} requests")
    finally:
        ag.stop()
        cp.close()


@test
def server_name_is_verified():
    # a server certificate from the right CA that names another host is refused; by host name
    # (https://localhost:PORT) the right one is accepted
    d = os.path.join(TMP, "wrongname")
    os.makedirs(d, exist_ok=True)
    for f in ("ca.pem",):
        shutil.copy(os.path.join(CERTS, f), d)
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{d}/server-key.pem", "-out", f"{d}/server.csr",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:elsewhere.example,IP:10.9.9.9\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{CERTS}/ca.pem",
                    "-CAkey", f"{CERTS}/ca-key.pem", "-CAcreateserial", "-out", f"{d}/server.pem",
                    "-days", "2", "-extfile", f"{d}/ext"], check=True, capture_output=True)
    bad = ControlPlane(d)
    good = ControlPlane(CERTS)
    ag = Agent(bad.urls, "wrongname")
    ag2 = Agent([good.urls[0].replace("127.0.0.1", "localhost")], "byname")
    try:
        expect(good.wait(lambda: good.state.nodes, 10), "by name: " + ag2.logtext()[-800:])
        time.sleep(1.5)
        expect(not bad.state.nodes, "registered with a server certificate for another name")
        expect("control_plane_unreachable" in ag.logtext(), ag.logtext()[-800:])
    finally:
        ag.stop()
        ag2.stop()
        bad.close()
        good.close()


@test
def rotated_client_certificate_is_used_without_restart():
    # the certificate files are replaced in place (renewal): new connections use the new ones
    d = os.path.join(TMP, "rotate")
    os.makedirs(d, exist_ok=True)
    for src, dst in (("badclient.pem", "rot.pem"), ("badclient-key.pem", "rot-key.pem")):
        shutil.copy(os.path.join(CERTS, src), os.path.join(d, dst))
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "rotate", extra=["--tls-cert", f"{d}/rot.pem", "--tls-key", f"{d}/rot-key.pem"])
    try:
        expect(cp.wait(lambda: any(r[0] == "tls" for r in cp.state.rejections), 10),
               "old certificate not tried: " + ag.logtext()[-800:])
        expect(not cp.state.nodes, "registered with the old certificate")
        for src, dst in (("client.pem", "rot.pem"), ("client-key.pem", "rot-key.pem")):
            shutil.copy(os.path.join(CERTS, src), os.path.join(d, dst + ".new"))
            os.rename(os.path.join(d, dst + ".new"), os.path.join(d, dst))
        expect(cp.wait(lambda: cp.state.nodes, 15), "new certificate not used: " + ag.logtext()[-800:])
    finally:
        ag.stop()
        cp.close()


@test
def bad_join_token_is_a_clear_error():
    cp = ControlPlane(CERTS, token="other-token")
    ag = Agent(cp.urls, "badtoken")
    try:
        expect(ag.wait(10) == 1, "exit status")
        expect("bad join token" in ag.logtext(), ag.logtext()[-800:])
    finally:
        ag.stop()
        cp.close()


@test
def unknown_protocol_version_rejected_by_double():
    import ssl
    cp = ControlPlane(CERTS)
    try:
        ctx = ssl.create_default_context(cafile=f"{CERTS}/ca.pem")
        ctx.load_cert_chain(f"{CERTS}/client.pem", f"{CERTS}/client-key.pem")
        req = urllib.request.Request(cp.urls[0] + "/v1/register", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Drover-Protocol": "2",
                                              "Authorization": "Bearer join-secret"})
        try:
            urllib.request.urlopen(req, context=ctx)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as e:
            expect(e.code == 400 and b"unsupported protocol version 2" in e.read(), e)
    finally:
        cp.close()


@test
def crash_of_one_supervisor_spares_the_rest():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "crash", extra=["--max-jobs", "2"])
    try:
        cp.queue(spec("x1", "1 crash"))
        cp.queue(spec("x2", "2 0"))
        expect(cp.wait(lambda: cp.outcome("x1") and cp.outcome("x2"), 20), "outcomes")
        expect(cp.outcome("x1")["status"] == "infrastructure_fail", cp.outcome("x1"))
        expect(cp.outcome("x2")["status"] == "success", cp.outcome("x2"))
        expect(ag.p.poll() is None, "agent died")
    finally:
        ag.stop()
        cp.close()


@test
def leftover_process_holding_event_pipe_does_not_hang_job():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "leak")
    try:
        cp.queue(spec("l1", "0 leak"))
        t0 = time.time()
        expect(cp.wait(lambda: cp.outcome("l1"), 15), "no outcome")
        expect(time.time() - t0 < 6, f"outcome after {time.time() - t0:.1f}s")
        expect(cp.outcome("l1")["status"] == "success", cp.outcome("l1"))
    finally:
        ag.stop()
        cp.close()


@test
def jobs_of_a_killed_agent_are_canceled_not_orphaned():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "orphan")
    try:
        cp.queue(spec("p1", "6019 0"))
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("p1")), 15),
               "job did not start")
        ag.p.kill()
        ag.p.wait()
        end = time.time() + 5
        while time.time() < end:
            left = subprocess.run(["pgrep", "-f", "^sleep 6019$"], capture_output=True,
                                  text=True).stdout.strip()
            if not left:
                break
            time.sleep(0.2)
        expect(not left, f"job processes outlived the agent: {left}")
    finally:
        ag.stop()
        cp.close()


@test
def secrets_are_masked_in_what_reaches_the_control_plane():
    # issue 18: step names, reasons drover builds (cache key, shell path), artifact keys: the
    # events the agent forwards, and the agent's own log, never hold a secret value
    secret = "cp-Secret-Value-77"
    cp = ControlPlane(CERTS)
    store = tempfile.mkdtemp(prefix="agent-mask-", dir=TMP)
    ag = Agent(cp.urls, "masking", fake=False)
    try:
        s = spec("mk1", storage={"url": f"file://{store}"},
                 environment=[{"name": "TOKEN", "value": secret, "secret": True}],
                 steps=[{"type": "run", "name": "deploy " + secret,
                         "command": "mkdir -p out && echo $TOKEN > out/t"},
                        {"type": "store_artifacts", "path": "out", "destination": "a-" + secret},
                        {"type": "save_cache", "key": "{{ .Environment.TOKEN }}/",
                         "paths": ["out"]},
                        {"type": "run", "name": "sh", "shell": "/bin/" + secret,
                         "command": "true", "when": "always"}])
        del s["fake"]
        cp.queue(s)
        expect(cp.wait(lambda: cp.outcome("mk1"), 60), "no outcome: " + ag.logtext()[-2000:])
        evs = seqs_once(cp, "mk1")
        text = json.dumps(evs)
        expect(secret not in text, text)
        expect(secret not in ag.logtext(), ag.logtext()[-2000:])
        expect("deploy ********" in text and "a-********" in text, text)
        expect("cache key '********/'" in text and "/bin/********" in text, text)
        expect(evs[-1]["status"] == "failed", evs[-1])
    finally:
        ag.stop()
        cp.close()


@test
def job_that_cannot_start_is_reported():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "nostart", extra=["--work-dir", "/proc/no-such-dir"])
    try:
        cp.queue(spec("s1", "0 0"))
        expect(cp.wait(lambda: cp.outcome("s1"), 15), "no outcome")
        out = cp.outcome("s1")
        expect(out["status"] == "infrastructure_fail" and "runtime dir" in out.get("reason", ""),
               out)
        expect(ag.p.poll() is None, "agent died")
    finally:
        ag.stop()
        cp.close()


@test
def one_job_mode_exits_after_its_job():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "onejob", extra=["--max-jobs", "1", "--exit-after-job"])
    try:
        cp.queue(spec("a1", "1 0"))
        cp.queue(spec("a2", "1 0"))
        expect(ag.wait(20) == 0, "exit status")
        expect(cp.outcome("a1")["status"] == "success", cp.outcome("a1"))
        expect(len(cp.snapshot()["queue"]) == 1, "second job claimed")
        expect(len(cp.snapshot()["deregistered"]) == 1, "not deregistered")
    finally:
        ag.stop()
        cp.close()


@test
def idle_timeout_deregisters_and_exits():
    cp = ControlPlane(CERTS)
    t0 = time.time()
    ag = Agent(cp.urls, "idle", extra=["--idle-timeout", "2s"])
    try:
        expect(ag.wait(15) == 0, "exit status")
        expect(1.5 < time.time() - t0 < 10, f"exited after {time.time() - t0:.1f}s")
        expect(len(cp.snapshot()["deregistered"]) == 1, "not deregistered")
    finally:
        ag.stop()
        cp.close()


@test
def print_config_redacts_and_layers():
    cfg = os.path.join(TMP, "agent.yaml")
    with open(cfg, "w") as f:
        f.write("servers:\n  - https://a:4647\n  - https://b:4647\nmax_jobs: 3\n"
                "tls:\n  ca: /x/ca.pem\njoin_token: file-secret\nidle_timeout: 5m\n")
    env = dict(os.environ, DROVER_MAX_JOBS="5", DROVER_NAME="from-env")
    out = subprocess.run([DROVER, "agent", "--config", cfg, "--print-config", "--name", "flag"],
                         capture_output=True, text=True, env=env)
    expect(out.returncode == 0, out.stderr)
    t = out.stdout
    expect("file-secret" not in t and 'join_token: "<redacted>"' in t, t)
    expect('- "https://b:4647"' in t and "max_jobs: 5" in t and 'name: "flag"' in t, t)
    expect('  ca: "/x/ca.pem"' in t and "idle_timeout: 300s" in t, t)
    bad = subprocess.run([DROVER, "agent", "--config", cfg, "--max-jobs", "lots", "--print-config"],
                         capture_output=True, text=True)
    expect(bad.returncode == 2 and "max-jobs" in bad.stderr, bad.stderr)
    with open(cfg, "a") as f:
        f.write("bogus_key: 1\n")
    bad = subprocess.run([DROVER, "agent", "--config", cfg, "--print-config"],
                         capture_output=True, text=True)
    expect(bad.returncode == 2 and "bogus_key" in bad.stderr, bad.stderr)


@test
def metrics_healthz_and_sighup_reload():
    cp = ControlPlane(CERTS)
    port = free_port()
    cfg = os.path.join(TMP, "reload.yaml")
    with open(cfg, "w") as f:
        f.write("max_jobs: 2\n")
    statsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    statsd.bind(("127.0.0.1", 0))
    statsd.settimeout(15)
    ag = Agent(cp.urls, "metrics", extra=["--config", cfg, "--metrics-listen",
                                          f"127.0.0.1:{port}", "--statsd",
                                          f"127.0.0.1:{statsd.getsockname()[1]}"])
    try:
        cp.queue(spec("m1", "0 0"))
        expect(cp.wait(lambda: cp.outcome("m1"), 15), "no outcome")
        time.sleep(0.3)
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        expect('drover_jobs_finished_total{status="success"} 1' in m, m)
        expect("drover_job_slots 2" in m and "drover_heartbeats_total" in m, m)
        expect("drover_step_duration_seconds_count 1" in m, m)
        h = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        expect(h.status == 200 and h.read().startswith(b"ok"), "healthz")
        with open(cfg, "w") as f:
            f.write("max_jobs: 4\n")
        ag.p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        expect("drover_job_slots 4" in m, "reload not applied: " + ag.logtext()[-800:])
        expect(b"drover.jobs.running:" in statsd.recv(2048), "statsd")
    finally:
        statsd.close()
        ag.stop()
        cp.close()


@test
def sighup_reopens_log_file_and_sockets_and_rereads_slots_and_classes():
    cp = ControlPlane(CERTS)
    cfg = os.path.join(TMP, "hup.yaml")
    logf = os.path.join(TMP, "hup-agent.log")
    p1, p2 = free_port(), free_port()
    s1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s1.bind(("127.0.0.1", 0))
    s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s2.bind(("127.0.0.1", 0))
    s2.settimeout(10)

    def write_cfg(port, sd, slots, classes):
        with open(cfg, "w") as f:
            f.write(f"log_file: {logf}\nmetrics_listen: 127.0.0.1:{port}\n"
                    f"statsd: 127.0.0.1:{sd.getsockname()[1]}\nmax_jobs: {slots}\n"
                    f"resource_classes: [{', '.join(classes)}]\n")

    def metrics(port):
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    write_cfg(p1, s1, 1, ["small"])
    ag = Agent(cp.urls, "hup", extra=["--config", cfg], metrics_flag=False)
    try:
        expect(cp.wait(lambda: cp.snapshot()["nodes"], 15), "not registered")
        expect(cp.wait(lambda: os.path.exists(logf) and "event=registered" in open(logf).read(), 5),
               "log_file not used: " + ag.logtext()[-500:])
        expect("drover_job_slots 1" in metrics(p1), "metrics on the first address")
        big = spec("hup-large", "0 0")
        big["executor"]["resource_class"] = "large"
        cp.queue(big)
        time.sleep(1)
        expect(cp.outcome("hup-large") is None, "claimed a class it does not accept")
        os.rename(logf, logf + ".1")  # logrotate
        write_cfg(p2, s2, 3, ["small", "large"])
        ag.p.send_signal(signal.SIGHUP)
        expect(cp.wait(lambda: os.path.exists(logf) and "config_reloaded" in open(logf).read(), 5),
               "log file not reopened: " + open(logf + ".1").read()[-800:])
        expect("config_reloaded" not in open(logf + ".1").read(), "logged into the rotated file")
        expect("drover_job_slots 3" in metrics(p2), "new metrics address")
        try:
            metrics(p1)
            raise AssertionError("old metrics address still answers")
        except OSError:
            pass
        expect(b"drover.jobs.running:" in s2.recv(2048), "statsd not reopened")
        expect(cp.wait(lambda: cp.outcome("hup-large"), 15), "new classes not used")
        hb = [h for h in cp.state.heartbeats if h[2]["capacity"] == 3]
        expect(hb, "capacity not re-read")
    finally:
        s1.close()
        s2.close()
        ag.stop()
        cp.close()


@test
def sd_notify_ready_and_status():
    cp = ControlPlane(CERTS)
    path = os.path.join(TMP, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    ag = Agent(cp.urls, "notify", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        msgs = []
        end = time.time() + 10
        while time.time() < end and not any("WATCHDOG=1" in m for m in msgs):
            msgs.append(s.recv(4096).decode())
        expect(any(m.startswith("READY=1") for m in msgs), msgs)
        expect(any("WATCHDOG=1" in m for m in msgs), msgs)
        ag.p.send_signal(signal.SIGTERM)
        while True:
            m = s.recv(4096).decode()
            if "STOPPING=1" in m:
                break
        expect(ag.wait(10) == 0, "exit")
    finally:
        ag.stop()
        s.close()
        cp.close()


@test
def real_job_through_drover_job():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "real", fake=False)
    try:
        s = spec("r1", steps=[{"type": "run", "name": "hello", "command": "echo hi; exit 0"}])
        del s["fake"]
        cp.queue(s)
        expect(cp.wait(lambda: cp.outcome("r1"), 60), "no outcome: " + ag.logtext()[-2000:])
        evs = seqs_once(cp, "r1")
        types = [e["type"] for e in evs]
        expect("step_started" in types and "step_finished" in types and types[-2] == "finished",
               types)
        expect(evs[-1]["status"] == "success", str(evs[-1]) + ag.logtext()[-1500:])
        s2 = spec("r2", steps=[{"type": "run", "name": "fail", "command": "exit 3"}])
        del s2["fake"]
        cp.queue(s2)
        expect(cp.wait(lambda: cp.outcome("r2"), 60), "no outcome r2")
        expect(cp.outcome("r2")["status"] == "failed", cp.outcome("r2"))
        # cancel a real job: its whole tree goes, within seconds
        s3 = spec("r3", steps=[{"type": "run", "name": "long",
                                "command": "sleep 6017 & sleep 6018"}])
        del s3["fake"]
        cp.queue(s3)
        expect(cp.wait(lambda: any(e["type"] == "step_started" for e in cp.events("r3")), 30),
               "r3 did not start")
        time.sleep(0.5)
        t0 = time.time()
        cp.cancel("r3")
        expect(cp.wait(lambda: cp.outcome("r3"), 20), "no outcome r3")
        expect(time.time() - t0 < 8, f"cancel took {time.time() - t0:.1f}s")
        expect(cp.outcome("r3")["status"] == "canceled", cp.outcome("r3"))
        left = subprocess.run(["pgrep", "-f", "^sleep 601[78]$"], capture_output=True,
                              text=True).stdout
        expect(not left.strip(), f"processes left: {left}")
    finally:
        ag.stop()
        cp.close()


def sigterm_at_claim_answer(variant):
    """SIGTERM reaches the agent as the double answers its claim: the job is run by this agent or
    goes back to the queue (released, or requeued by the draining heartbeat), never lost; a second
    agent then runs it, and it runs exactly once."""
    cp = ControlPlane(CERTS)
    jid = f"st-{variant}"
    ag = Agent(cp.urls, f"sigterm-{variant}")
    fired = []

    def hook(j):
        if fired:
            return
        fired.append(j)
        ag.p.send_signal(signal.SIGTERM)
        if variant != "race":
            time.sleep(0.4)  # the agent is draining when the answer arrives

    try:
        expect(cp.wait(lambda: cp.snapshot()["nodes"], 15), "agent did not register")
        if variant == "release":  # the draining heartbeat comes late: the agent must give it back
            cp.state.path_delay["/v1/heartbeat"] = 1.5
        cp.state.on_claim_answer = hook
        cp.queue(spec(jid, "0 0"))
        rc = ag.wait(30)
        expect(rc == 0, f"exit {rc}: " + ag.logtext()[-2000:])
        snap = cp.snapshot()
        queued = [q["id"]["job"] for q in snap["queue"]]
        ran = cp.outcome(jid) is not None
        expect(ran != (jid in queued), f"ran={ran} queued={queued}: " + ag.logtext()[-2000:])
        if variant == "release":
            expect(not ran and [r[0] for r in snap["released"]] == [jid],
                   f"not released: {snap['released']} {snap['requeued']}: " + ag.logtext()[-2000:])
        if variant == "late":
            expect(not ran and jid in [r[0] for r in snap["requeued"]], snap["requeued"])
        cp.state.on_claim_answer = None
        cp.state.path_delay.clear()
        if not ran:
            ag2 = Agent(cp.urls, f"sigterm-{variant}-2")
            try:
                expect(cp.wait(lambda: cp.outcome(jid), 20), "requeued job not run")
            finally:
                ag2.stop()
        evs = seqs_once(cp, jid)
        expect([e["type"] for e in evs].count("started") == 1, evs)
        expect(evs[-1]["status"] == "success", evs[-1])
        expect(not [r for r in snap["rejections"] if r[0] == "gap"], snap["rejections"])
    finally:
        ag.stop()
        cp.close()


@test
def sigterm_at_claim_answer_release():
    sigterm_at_claim_answer("release")


@test
def sigterm_at_claim_answer_late():
    sigterm_at_claim_answer("late")


@test
def sigterm_at_claim_answer_race():
    for _ in range(3):
        sigterm_at_claim_answer("race")


@test
def requeued_claim_is_canceled_here_and_runs_again():
    # acknowledgements (first event, heartbeat) are held back longer than the ack timeout: the
    # double requeues the claim, the agent's events get 404 unknown_job, the agent cancels its
    # copy of the job, and the job then runs once more from the queue, to success
    cp = ControlPlane(CERTS)
    cp.state.claim_ack_timeout = 0.5
    ag = Agent(cp.urls, "requeued", extra=["--max-jobs", "1"])
    try:
        expect(cp.wait(lambda: cp.snapshot()["nodes"], 15), "not registered")
        cp.state.path_delay.update({"/v1/heartbeat": 2.0, "/v1/jobs/rq1/events": 2.0})
        cp.queue(spec("rq1", "3 0"))
        expect(cp.wait(lambda: [r for r in cp.snapshot()["requeued"] if r[0] == "rq1"], 10),
               "claim not requeued")
        cp.state.path_delay.clear()
        expect(cp.wait(lambda: "no longer assigns this job here" in ag.logtext(), 10),
               "old copy not canceled: " + ag.logtext()[-1500:])
        expect(cp.wait(lambda: cp.outcome("rq1"), 30), "requeued job never ran: " +
               ag.logtext()[-1500:])
        evs = seqs_once(cp, "rq1")
        expect(evs[-1]["status"] == "success" and
               [e["type"] for e in evs].count("started") == 1, evs)
    finally:
        ag.stop()
        cp.close()


def cp_client(cp):
    """A raw mTLS client of the double: post(path, body, node=None) -> (status, json)."""
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=f"{CERTS}/ca.pem")
    ctx.load_cert_chain(f"{CERTS}/client.pem", f"{CERTS}/client-key.pem")
    port = cp.ports[0]

    def post(path, body, node=None, token=None):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        h = {"Content-Type": "application/json", "Drover-Protocol": "1"}
        if node:
            h["Drover-Node"] = node
        if token:
            h["Authorization"] = f"Bearer {token}"
        c.request("POST", path, body=json.dumps(body), headers=h)
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    return post


def raw_register_body(name, max_jobs):
    """Every field docs/schemas/control-plane/register.request.json requires."""
    return {"protocol": 1, "name": name, "machine_id": "m", "boot_id": "b", "version": "0",
            "resource_classes": [], "cpus": 1, "memory_mb": 1000, "max_jobs": max_jobs,
            "kernel": "6.1", "arch": "x86_64", "cgroup_version": 2, "runtimes": ["sandbox"],
            "ssh_ports": "64535-65535"}


@test
def double_requeues_unacknowledged_claims_and_checks_releases():
    cp = ControlPlane(CERTS)
    cp.state.claim_ack_timeout = 1.0
    post = cp_client(cp)
    try:
        st, reg = post("/v1/register", raw_register_body("raw", 2), token="join-secret")
        expect(st == 200, reg)
        node = reg["node_id"]
        claim = {"node_id": node, "free_slots": 1, "free_cpus": 1.0, "free_memory_mb": 1000,
                 "resource_classes": [], "wait": 1}
        cp.queue(spec("u1"))
        cp.queue(spec("u2"))
        st, a1 = post("/v1/claim", claim, node)
        st2, a2 = post("/v1/claim", claim, node)
        expect(st == 200 and st2 == 200, (a1, a2))
        # u1 is acknowledged by its first event: it can no longer be released
        ev = {"seq": 1, "type": "started", "job": "u1", "time": "2026-01-01T00:00:00Z"}
        st, _ = post("/v1/jobs/u1/events", {"node_id": node, "events": [ev],
                                            "attempt": a1["attempt"]}, node)
        expect(st == 200, st)
        st, r = post("/v1/jobs/u1/release", {"node_id": node, "reason": "x"}, node)
        expect(st == 409 and r["code"] == "started", (st, r))
        st, r = post("/v1/jobs/nope/release", {"node_id": node, "reason": "x"}, node)
        expect(st == 404 and r["code"] == "unknown_job", (st, r))
        st, r = post("/v1/jobs/u2/release", {"node_id": node}, node)
        expect(st == 400, (st, r))
        # u2 is never acknowledged: back in the queue after the ack timeout, and events of the
        # old claim are refused
        expect(cp.wait(lambda: [q["id"]["job"] for q in cp.snapshot()["queue"]] == ["u2"], 5),
               cp.snapshot()["queue"])
        ev2 = dict(ev, job="u2")
        st, r = post("/v1/jobs/u2/events", {"node_id": node, "events": [ev2],
                                            "attempt": a2["attempt"]}, node)
        expect(st == 404 and r["code"] == "unknown_job", (st, r))
        expect(cp.snapshot()["requeued"] == [("u2", node, "timeout")], cp.snapshot()["requeued"])
        expect([q["id"]["job"] for q in cp.snapshot()["queue"]] == ["u2"], "u1 requeued")
    finally:
        cp.close()


@test
def double_requeues_the_claims_of_a_lost_node():
    cp = ControlPlane(CERTS, heartbeat_ms=200)
    post = cp_client(cp)
    try:
        st, reg = post("/v1/register", raw_register_body("lost", 1), token="join-secret")
        node = reg["node_id"]
        cp.queue(spec("l1"))
        st, a = post("/v1/claim", {"node_id": node, "free_slots": 1, "free_cpus": 1.0,
                                   "free_memory_mb": 1000, "resource_classes": [], "wait": 1}, node)
        expect(st == 200 and a["job"]["id"]["job"] == "l1", a)
        # no heartbeat for 3 intervals (0.6 s), well before the 60 s ack timeout
        expect(cp.wait(lambda: cp.snapshot()["requeued"] == [("l1", node, "lost")], 5),
               cp.snapshot()["requeued"])
    finally:
        cp.close()


@test
def metrics_from_real_job_events_runtime_start_and_cache():
    cp = ControlPlane(CERTS)
    port = free_port()
    store = tempfile.mkdtemp(prefix="agent-store-", dir=TMP)
    ag = Agent(cp.urls, "realm", fake=False, extra=["--metrics-listen", f"127.0.0.1:{port}"])
    try:
        def real(jid, steps):
            s = spec(jid, steps=steps, storage={"url": f"file://{store}"})
            del s["fake"]
            s["id"]["project"] = "gh/acme/agent-metrics"
            return s
        cp.queue(real("rm1", [
            {"type": "restore_cache", "keys": ["nothing-{{ arch }}"]},
            {"type": "run", "command": "mkdir -p ~/dep && echo x > ~/dep/a"},
            {"type": "save_cache", "key": "dep-v1", "paths": ["~/dep"]}]))
        expect(cp.wait(lambda: cp.outcome("rm1"), 60), "no outcome rm1: " + ag.logtext()[-1500:])
        cp.queue(real("rm2", [{"type": "restore_cache", "keys": ["dep-v1"]},
                              {"type": "run", "command": "cat ~/dep/a"}]))
        expect(cp.wait(lambda: cp.outcome("rm2"), 60), "no outcome rm2")
        for j in ("rm1", "rm2"):
            evs = seqs_once(cp, j)
            expect(evs[-1]["status"] == "success", evs[-3:])
            fin = [e for e in evs if e["type"] == "finished"][0]
            expect(isinstance(fin.get("runtime_start_ms"), int), fin)
        hit = [e for e in cp.events("rm2") if e["type"] == "cache"]
        expect(hit and hit[0]["hit"] is True and hit[0]["key"] == "dep-v1", hit)
        time.sleep(0.3)
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        expect('drover_cache_total{result="hit"} 1' in m and
               'drover_cache_total{result="miss"} 1' in m, m)
        expect("drover_sandbox_start_seconds_count 2" in m, m)
    finally:
        ag.stop()
        cp.close()


@test
def lean_drover_agent_runs_real_jobs_through_drover():
    # the lean daemon binary (no sandbox/executor code linked) runs each job with the `drover`
    # next to it
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "lean", fake=False, lean=True)
    try:
        s = spec("lean1", steps=[{"type": "run", "name": "hello", "command": "echo hi; exit 0"}])
        del s["fake"]
        cp.queue(s)
        expect(cp.wait(lambda: cp.outcome("lean1"), 60), "no outcome: " + ag.logtext()[-2000:])
        evs = seqs_once(cp, "lean1")
        expect(evs[-1]["status"] == "success" and evs[-2]["type"] == "finished", evs[-2:])
        libs = open(f"/proc/{ag.p.pid}/maps").read()
        expect("libarchive" not in libs and "libseccomp" not in libs, "lean binary maps " +
               ", ".join(sorted({ln.split()[-1] for ln in libs.splitlines() if ".so" in ln})))
    finally:
        ag.stop()
        cp.close()


if __name__ == "__main__":
    main()
