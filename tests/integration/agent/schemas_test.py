#!/usr/bin/env python3
"""schemas_test.py: the JSON Schemas of both protocols (docs/schemas/) are well-formed, use only
the keywords tests/doubles/schema.py checks, accept the documents' own examples and refuse what
the documents call invalid. TAP output."""
import glob
import json
import os
import sys

SRC = os.environ.get("DROVER_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "doubles"))
import schema  # noqa: E402

CASES = [  # (protocol, schema, body, valid)
    ("control-plane", "register.request",
     {"protocol": 1, "name": "builder-7", "machine_id": "m", "boot_id": "b", "version": "0.1.0",
      "resource_classes": ["medium", "large"], "cpus": 8, "memory_mb": 32000, "max_jobs": 4,
      "kernel": "6.1.0-18-amd64", "arch": "x86_64", "cgroup_version": 1,
      "runtimes": ["sandbox"], "ssh_ports": "64535-65535"}, True),
    ("control-plane", "register.request", {"protocol": 2, "name": "x"}, False),
    ("control-plane", "register.answer",
     {"node_id": "n-1", "heartbeat_interval_ms": 5000, "protocol": 1}, True),
    ("control-plane", "register.answer", {"node_id": 7, "heartbeat_interval_ms": 5000}, False),
    ("control-plane", "register.answer",
     {"node_id": "n-1", "heartbeat_interval_ms": 5000, "protocol": 2}, False),
    ("control-plane", "heartbeat.answer", {"cancel": [], "drain": False}, True),
    ("control-plane", "heartbeat.answer", {"cancel": "j", "drain": "yes"}, False),
    ("control-plane", "claim.request",
     {"node_id": "n-1", "free_slots": 1, "free_cpus": 6.0, "free_memory_mb": 20000,
      "resource_classes": ["medium"], "wait": 25}, True),
    ("control-plane", "claim.request",
     {"node_id": "n-1", "free_slots": 1, "free_cpus": 6.0, "free_memory_mb": 20000,
      "resource_classes": [], "wait": 45}, False),
    ("control-plane", "events.request",
     {"node_id": "n-1", "events": [{"seq": 1, "type": "started", "job": "j",
                                    "time": "2026-01-01T00:00:00Z"}]}, True),
    ("control-plane", "events.request", {"node_id": "n-1", "events": []}, False),
    ("control-plane", "events.request",
     {"node_id": "n-1", "events": [{"seq": 0, "type": "Started", "job": "j"}]}, False),
    ("control-plane", "events.conflict", {"error": "sequence gap", "expected": 3}, True),
    ("control-plane", "error", {"error": "x", "code": "unknown_node"}, True),
    ("control-plane", "error", {"error": "x", "code": "nope"}, False),
    ("output", "begin.request", {"name": "x", "background": False, "begin_ns": 1}, True),
    ("output", "end.request",
     {"name": "x", "background": False, "begin_ns": 1,
      "end": {"exit_code": -1, "signal": 0, "status": "canceled", "reason": None,
              "duration_ms": 3, "length": 0}}, True),
    ("output", "end.request",
     {"name": "x", "background": False, "end": {"status": "done", "length": 0}}, False),
    ("output", "offset.answer", {"next_offset": 0}, True),
    ("output", "offset.answer", {"next_offset": -1}, False),
]


def main():
    files = sorted(glob.glob(os.path.join(SRC, "docs", "schemas", "*", "*.json")))
    results = []
    try:
        import jsonschema  # optional: the full validator checks the schemas themselves
    except ImportError:
        jsonschema = None
    for f in files:
        try:
            s = json.load(open(f))
            schema.errors({}, s)  # raises on a keyword the small validator does not check
            if jsonschema:
                jsonschema.Draft202012Validator.check_schema(s)
            results.append((True, f"well-formed {os.path.relpath(f, SRC)}", ""))
        except Exception as e:  # noqa: BLE001
            results.append((False, f"well-formed {os.path.relpath(f, SRC)}", str(e)))
    for proto, name, body, valid in CASES:
        err = schema.check(proto, name, body)
        ok = (err is None) == valid
        if ok and jsonschema:
            ok = jsonschema.Draft202012Validator(schema.load(proto, name)).is_valid(body) == valid
        results.append((ok, f"{proto}/{name} {'accepts' if valid else 'refuses'} "
                        f"{json.dumps(body)[:60]}", err or ""))
    print(f"1..{len(results)}")
    for i, (ok, what, msg) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {what}")
        if not ok:
            print("# " + msg)
    sys.exit(0 if all(r[0] for r in results) else 1)


if __name__ == "__main__":
    main()
