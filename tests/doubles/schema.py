"""schema.py: the JSON Schemas of drover's two protocols (docs/schemas/), and a small strict
validator of the subset of JSON Schema 2020-12 they use (Python standard library only, like the
doubles). A keyword outside that subset is an error in the schema, not silently ignored."""
import json
import os
import re

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "schemas")
KEYWORDS = {"$schema", "title", "type", "properties", "required", "additionalProperties", "items",
            "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength", "pattern",
            "enum", "const"}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_cache = {}


def load(protocol, name):
    """docs/schemas/<protocol>/<name>.json (protocol: control-plane or output)."""
    key = (protocol, name)
    if key not in _cache:
        with open(os.path.join(DIR, protocol, name + ".json")) as f:
            _cache[key] = json.load(f)
    return _cache[key]


def _type_ok(v, t):
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, TYPES[t])


def errors(v, s, path="$"):
    """The ways v breaks schema s, as 'path: what' strings (empty: valid)."""
    bad = set(s) - KEYWORDS
    if bad:
        raise ValueError(f"schema keywords not supported: {sorted(bad)}")
    out = []
    if "type" in s:
        ts = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_type_ok(v, t) for t in ts):
            return [f"{path}: want {'/'.join(ts)}"]
    if "const" in s and v != s["const"]:
        out.append(f"{path}: want {s['const']!r}")
    if "enum" in s and v not in s["enum"]:
        out.append(f"{path}: want one of {s['enum']}")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in s and v < s["minimum"]:
            out.append(f"{path}: below {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            out.append(f"{path}: above {s['maximum']}")
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            out.append(f"{path}: length {len(v)}")
        if "pattern" in s and not re.search(s["pattern"], v):
            out.append(f"{path}: not matching {s['pattern']}")
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", len(v)):
            out.append(f"{path}: {len(v)} items")
        for i, x in enumerate(v):
            out += errors(x, s.get("items", {}), f"{path}[{i}]")
    if isinstance(v, dict):
        props = s.get("properties", {})
        out += [f"{path}.{k}: required" for k in s.get("required", []) if k not in v]
        for k, x in v.items():
            if k in props:
                out += errors(x, props[k], f"{path}.{k}")
            elif s.get("additionalProperties", True) is False:
                out.append(f"{path}.{k}: not allowed")
    return out


def check(protocol, name, v):
    """None when v is valid, else the first error."""
    e = errors(v, load(protocol, name))
    return e[0] if e else None
