#!/usr/bin/env python3
"""The output-processor double is strict: wrong token 401, unknown version 415, malformed batch
400, offset gap or resend 409 with next_offset, end before all bytes 409; what it accepts is
recorded in order; control endpoints stall/resume and drop acks."""
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "../../.."))
DOUBLE = os.path.join(SRC, "tests/doubles/output_processor.py")
CT = "application/vnd.drover.output.v1"


def frames(*chunks):
    return b"".join(struct.pack(">QI", 1700000000000000000 + i, len(c)) + c
                    for i, c in enumerate(chunks))


def main():
    d = tempfile.mkdtemp(prefix="double-test-")
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, DOUBLE, "--dir", d, "--token", "T", "--port-file", pf])
    try:
        for _ in range(300):
            if os.path.exists(pf):
                break
            time.sleep(0.02)
        port = int(open(pf).read())
        fails = []

        def req(method, path, body=b"", ctype=CT, token="T", headers=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            h = {"Content-Type": ctype, "Drover-Output-Version": "1"}
            if token:
                h["Authorization"] = "Bearer " + token
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, (json.loads(data) if data else None)

        def expect(what, got, want):
            if got != want:
                fails.append("%s: got %r want %r" % (what, got, want))

        step = "/v1/jobs/j1/steps/0"
        begin = json.dumps({"name": "s", "background": False, "begin_ns": 1}).encode()
        expect("output before begin", req("POST", step + "/output", frames(b"x"),
                                          headers={"Drover-Offset": "0"})[0], 404)
        expect("begin", req("PUT", step, begin, ctype="application/json")[0], 200)
        expect("bad token", req("POST", step + "/output", frames(b"abc"), token="X",
                                headers={"Drover-Offset": "0"})[0], 401)
        expect("no token", req("POST", step + "/output", frames(b"abc"), token=None,
                               headers={"Drover-Offset": "0"})[0], 401)
        expect("version 2", req("POST", step + "/output", frames(b"abc"),
                                headers={"Drover-Offset": "0", "Drover-Output-Version": "2"})[0],
               415)
        expect("wrong media type", req("POST", step + "/output", frames(b"abc"),
                                       ctype="application/vnd.drover.output.v9",
                                       headers={"Drover-Offset": "0"})[0], 415)
        expect("truncated frame", req("POST", step + "/output", frames(b"abc")[:-1],
                                      headers={"Drover-Offset": "0"})[0], 400)
        expect("empty batch", req("POST", step + "/output", b"",
                                  headers={"Drover-Offset": "0"})[0], 400)
        expect("no offset", req("POST", step + "/output", frames(b"abc"))[0], 400)
        s, body = req("POST", step + "/output", frames(b"abc"), headers={"Drover-Offset": "5"})
        expect("gap status", (s, body["next_offset"]), (409, 0))
        expect("first batch", req("POST", step + "/output", frames(b"ab", b"c\n"),
                                  headers={"Drover-Offset": "0"}), (200, {"next_offset": 4}))
        s, body = req("POST", step + "/output", frames(b"ab"), headers={"Drover-Offset": "2"})
        expect("resend of acked bytes", (s, body["next_offset"]), (409, 4))
        partial = {"name": "s", "background": False, "end": {"status": "success", "length": 4}}
        expect("end without exit_code and signal (docs/schemas/output/end.request.json)",
               req("POST", step + "/end", json.dumps(partial).encode(),
                   ctype="application/json")[0], 400)
        end = {"name": "s", "background": False,
               "end": {"exit_code": 0, "signal": 0, "status": "success", "length": 9}}
        s, body = req("POST", step + "/end", json.dumps(end).encode(), ctype="application/json")
        expect("end too early", (s, body["next_offset"]), (409, 4))
        expect("second batch", req("POST", step + "/output", frames(b"\x00\xff\xfe"),
                                   headers={"Drover-Offset": "4"}), (200, {"next_offset": 7}))
        end["end"]["length"] = 7
        expect("end", req("POST", step + "/end", json.dumps(end).encode(),
                          ctype="application/json")[0], 200)
        expect("after end", req("POST", step + "/output", frames(b"z"),
                                headers={"Drover-Offset": "7"})[0], 409)
        expect("recorded", open(os.path.join(d, "j1", "0.out"), "rb").read(), b"abc\n\x00\xff\xfe")
        expect("timestamps", len(open(os.path.join(d, "j1", "0.ts")).read().splitlines()), 3)
        # lost ack: stored, connection closed; the resend is told to move on
        req("PUT", "/v1/jobs/j1/steps/1", begin, ctype="application/json")
        req("POST", "/control/drop-acks?n=1")
        try:
            req("POST", "/v1/jobs/j1/steps/1/output", frames(b"hello"),
                headers={"Drover-Offset": "0"})
            fails.append("drop-acks: got an answer")
        except (http.client.HTTPException, OSError):
            pass
        s, body = req("POST", "/v1/jobs/j1/steps/1/output", frames(b"hello"),
                      headers={"Drover-Offset": "0"})
        expect("resend after a lost ack", (s, body["next_offset"]), (409, 5))
        expect("no duplicate", open(os.path.join(d, "j1", "1.out"), "rb").read(), b"hello")
        for f in fails:
            print("FAIL:", f)
        print("double_test: %d checks failed" % len(fails))
        return 1 if fails else 0
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    sys.exit(main())
