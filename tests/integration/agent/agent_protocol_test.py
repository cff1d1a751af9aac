#!/usr/bin/env python3
"""agent_protocol_test.py: issue 16, the control-plane protocol as a control plane written from
the documents meets it: re-registration keeps running jobs, no request loop beyond a documented
rate (events 409 the agent cannot satisfy, claims answered 204 at once), malformed and
wrong-version register answers are server faults to fail over from, claim_wait within the
protocol's 30 s, a heartbeat period that does not drift, a hung replica left within the register
timeout, wrongly-typed heartbeat answers logged, --print-config with its tuning keys. TAP."""
import subprocess
import time

from agentlib import CERTS, DROVER, Agent, ControlPlane, expect, main, seqs_once, spec, test


def registered_nodes(cp, name):
    return [n for n, v in cp.snapshot()["nodes"].items() if v["name"] == name]


def requests_to(cp, part):
    return [r for r in cp.snapshot()["requests"] if part in r[1]]


@test
def reregistration_keeps_running_jobs():
    # a long heartbeat interval: the job's events are what meets the forgotten node id first
    cp = ControlPlane(CERTS, heartbeat_ms=3000)
    ag = Agent(cp.urls, "rereg")
    try:
        cp.queue(spec("rr1", "4 0"))
        expect(cp.wait(lambda: len(cp.events("rr1")) >= 2, 15), "rr1 did not start: " +
               ag.logtext()[-1500:])
        old = registered_nodes(cp, "rereg")
        expect(len(old) == 1, old)
        cp.forget(old[0])
        expect(cp.wait(lambda: cp.outcome("rr1"), 20), "no outcome: " + ag.logtext()[-2000:])
        evs = seqs_once(cp, "rr1")
        expect(evs[-1]["status"] == "success", f"the job did not survive: {evs[-1]}")
        snap = cp.snapshot()
        expect(any(r[0] == "rr1" for r in snap["rekeyed"]), snap["rekeyed"])
        nodes = registered_nodes(cp, "rereg")
        # requests in flight under the old id (the long poll) must not register a third time
        expect(len(nodes) == 2, f"{len(nodes)} registrations: {ag.logtext()[-2000:]}")
        expect("job_cancel" not in ag.logtext(), ag.logtext()[-2000:])
    finally:
        ag.stop()
        cp.close()


@test
def events_carry_the_attempt_of_their_claim():
    # each claim answer names an attempt; events carry it, so a job that runs again (a requeued
    # job handed back) never has its runs' events merged: the double refuses a stale attempt
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "attempt")
    try:
        cp.queue(spec("at1", "0 0"))
        expect(cp.wait(lambda: cp.outcome("at1"), 15), "no outcome: " + ag.logtext()[-1500:])
        seqs_once(cp, "at1")
        bad = [r for r in cp.snapshot()["rejections"] if r[0] == "attempt"]
        expect(not bad, bad)
        with cp.state.lock:
            issued = cp.state.jobs["at1"]["attempt"]
        expect(issued.startswith("a"), issued)
    finally:
        ag.stop()
        cp.close()


@test
def claim_answered_at_once_is_throttled():
    cp = ControlPlane(CERTS)
    cp.state.claim_now = True
    ag = Agent(cp.urls, "claimnow")
    try:
        expect(cp.wait(lambda: registered_nodes(cp, "claimnow"), 10), ag.logtext())
        time.sleep(4)
        n = len(cp.state.claims)
        # documented: claims answered at once go out at most once a second
        expect(n <= 6, f"{n} claims in 4 s")
        expect(ag.p.poll() is None, "agent exited")
    finally:
        ag.stop()
        cp.close()


@test
def events_conflict_it_cannot_satisfy_is_not_a_loop():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "gap409")
    try:
        cp.queue(spec("g1", "3 0"))
        expect(cp.wait(lambda: len(cp.events("g1")) >= 2, 15), ag.logtext()[-1500:])
        # the control plane "lost" what it acknowledged: it asks for seq 1 again, forever
        cp.answer("/v1/jobs/g1/events", 409, {"error": "sequence gap", "expected": 1},
                  count=100000)
        time.sleep(6)
        n = len([r for r in requests_to(cp, "/v1/jobs/g1/events") if r[2] == 409])
        expect(n <= 5, f"{n} event requests answered 409")
        expect("events_gap_unfillable" in ag.logtext(), ag.logtext()[-1500:])
        expect(ag.p.poll() is None, "agent exited")
    finally:
        ag.stop()
        cp.close()


@test
def events_conflict_that_repeats_backs_off():
    # a 409 whose `expected` the agent still holds but the server keeps refusing: backoff
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "gap409b")
    try:
        cp.queue(spec("g2", "3 0"))
        expect(cp.wait(lambda: len(cp.events("g2")) >= 2, 15), ag.logtext()[-1500:])
        cp.answer("/v1/jobs/g2/events", 409, {"error": "sequence gap", "expected": 3},
                  count=100000)
        time.sleep(5)
        n = len([r for r in requests_to(cp, "/v1/jobs/g2/events") if r[2] == 409])
        expect(1 <= n <= 12, f"{n} event requests answered 409 in 5 s")
    finally:
        ag.stop()
        cp.close()


@test
def claim_wait_is_capped_at_the_protocol_maximum():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "wait45", extra=["--claim-wait", "45s"])
    try:
        cp.queue(spec("w1", "0 0"))
        expect(cp.wait(lambda: cp.outcome("w1"), 15), "no outcome: " + ag.logtext()[-1500:])
        bad = [r for r in cp.snapshot()["rejections"] if "wait" in r[1]]
        expect(not bad, bad)
    finally:
        ag.stop()
        cp.close()


@test
def heartbeat_period_does_not_drift():
    cp = ControlPlane(CERTS, heartbeat_ms=250)
    ag = Agent(cp.urls, "nodrift")
    try:
        expect(cp.wait(lambda: registered_nodes(cp, "nodrift"), 10), ag.logtext())
        time.sleep(6)
        with cp.state.lock:
            ts = [t for (_, t, _) in cp.state.heartbeats]
        ts = ts[1:]  # the first goes at once after the registration
        expect(len(ts) >= 15, f"{len(ts)} heartbeats")
        mean = (ts[-1] - ts[0]) / (len(ts) - 1)
        expect(mean < 0.27, f"mean heartbeat period {mean * 1000:.0f} ms for 250 ms")
    finally:
        ag.stop()
        cp.close()


@test
def malformed_register_answer_is_a_server_fault():
    cp = ControlPlane(CERTS, ports=(0, 0))
    cp.answer("/v1/register", 200, {"node_id": 7}, port=0, count=100)
    ag = Agent(cp.urls, "malreg")
    try:
        expect(cp.wait(lambda: registered_nodes(cp, "malreg"), 15),
               "not registered: " + ag.logtext()[-1500:])
        expect(cp.snapshot()["nodes"][registered_nodes(cp, "malreg")[0]]["port"] == 1, "port")
        expect("register_bad_answer" in ag.logtext(), ag.logtext())
        expect(ag.p.poll() is None, "agent exited: " + ag.logtext())
    finally:
        ag.stop()
        cp.close()


@test
def register_answer_of_another_protocol_version_is_refused():
    cp = ControlPlane(CERTS, ports=(0, 0))
    cp.answer("/v1/register", 200, {"node_id": "n-v2", "heartbeat_interval_ms": 500,
                                    "protocol": 2}, port=0, count=100)
    ag = Agent(cp.urls, "v2reg")
    try:
        expect(cp.wait(lambda: registered_nodes(cp, "v2reg"), 15),
               "not registered: " + ag.logtext()[-1500:])
        expect("node=n-v2" not in ag.logtext(), ag.logtext())
        expect("register_bad_answer" in ag.logtext(), ag.logtext())
    finally:
        ag.stop()
        cp.close()


@test
def hung_replica_is_left_within_the_register_timeout():
    cp = ControlPlane(CERTS, ports=(0, 0))
    cp.state.hung.add(0)
    t0 = time.time()
    ag = Agent(cp.urls, "hung")
    try:
        expect(cp.wait(lambda: registered_nodes(cp, "hung"), 20), ag.logtext()[-1500:])
        took = time.time() - t0
        # documented: register times out after 5 s, then the next server (backoff <= 0.75 s)
        expect(took < 8, f"registered after {took:.1f}s")
    finally:
        ag.stop()
        cp.close()


@test
def wrongly_typed_heartbeat_answer_is_logged():
    cp = ControlPlane(CERTS)
    cp.answer("/v1/heartbeat", 200, {"cancel": "job-1", "drain": "yes"}, count=1)
    ag = Agent(cp.urls, "badhb")
    try:
        expect(cp.wait(lambda: "heartbeat_bad_answer" in ag.logtext(), 10), ag.logtext())
        expect(ag.p.poll() is None, "agent exited")
    finally:
        ag.stop()
        cp.close()


@test
def print_config_lists_the_tuning_keys():
    out = subprocess.run([DROVER, "agent", "--print-config", "--servers", "https://a:4647",
                          "--claim-wait", "3s"], capture_output=True, text=True)
    expect(out.returncode == 0, out.stderr)
    for k in ("claim_wait: 3s", "cancel_grace: 10s", "rcu_expedited: false"):
        expect(k in out.stdout, f"{k!r} missing:\n{out.stdout}")


if __name__ == "__main__":
    main()
