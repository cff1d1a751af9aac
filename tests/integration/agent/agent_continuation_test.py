#!/usr/bin/env python3
"""agent_continuation_test.py: dynamic config under the agent — a setup workflow's job (its spec
carries CIRCLE_CONTINUATION_KEY) that runs `circleci continue` reaches the control plane (the
strict double) as a `continuation` event with the configuration and parameters, through the real
`drover job`; the key never leaves the job (docs/protocol-control-plane.md). TAP output."""
import json

from agentlib import CERTS, Agent, ControlPlane, expect, main, seqs_once, spec, test

KEY = "c0ffee" * 8


@test
def continuation_reaches_the_control_plane_as_an_event():
    cp = ControlPlane(CERTS)
    ag = Agent(cp.urls, "continuation", fake=False)
    try:
        s = spec("cont1", environment=[{"name": "CIRCLE_CONTINUATION_KEY", "value": KEY,
                                        "secret": True}],
                 steps=[{"type": "run", "name": "generate",
                         "command": "printf 'version: 2.1\\njobs: {}\\n' > /tmp/c.yml && "
                                    "circleci continue /tmp/c.yml --parameters "
                                    "'{\"deploy\": true, \"n\": 2}'"}])
        del s["fake"]
        cp.queue(s)
        expect(cp.wait(lambda: cp.outcome("cont1"), 60), "no outcome: " + ag.logtext()[-2000:])
        evs = seqs_once(cp, "cont1")
        cont = [e for e in evs if e["type"] == "continuation"]
        expect(len(cont) == 1, [e["type"] for e in evs])
        expect(cont[0]["configuration"] == "version: 2.1\njobs: {}\n", cont[0])
        expect(cont[0]["parameters"] == {"deploy": True, "n": 2}, cont[0])
        expect(KEY not in json.dumps(evs) and KEY not in ag.logtext(), "the key left the job")
        expect(evs[-1]["status"] == "success", evs[-1])
        expect(not cp.snapshot()["rejections"], cp.snapshot()["rejections"])
    finally:
        ag.stop()
        cp.close()


if __name__ == "__main__":
    main()
