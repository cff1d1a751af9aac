#!/usr/bin/env python3
"""bench/s3_cleanup.py PREFIX: delete every object under PREFIX in the radosgw peer's bucket
(ListObjectsV2 + DeleteObjects, 1000 keys a request; standard library only), then ask radosgw to
run its garbage collection now (the tails of deleted large objects otherwise stay in the peer's
small memstore for hours). Used by bench/cache.sh and bench/artifacts.sh."""
import base64
import datetime
import hashlib
import hmac
import http.client
import os
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

PEERS = os.environ.get("DROVER_PEERS_DIR") or "/tmp/drover-peers"
S3 = dict(l.strip().split("=", 1) for l in open(os.path.join(PEERS, "radosgw.env")) if "=" in l)


def request(method, query="", body=b"", extra=None, key=None):
    """One SigV4-signed request (on the bucket, or on key); the answer's body. (Also used by
    tests/integration/storage/file_store_test.py.)"""
    ep = urllib.parse.urlsplit(S3["S3_ENDPOINT"])
    path = "/" + S3["S3_BUCKET"] + ("/" + urllib.parse.quote(key, safe="/~") if key is not None else "")
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    ph = hashlib.sha256(body).hexdigest()
    hdrs = {"host": ep.netloc, "x-amz-content-sha256": ph, "x-amz-date": amz, **(extra or {})}
    signed = ";".join(sorted(hdrs))
    canon = "\n".join([method, path, query, "".join(f"{k}:{hdrs[k]}\n" for k in sorted(hdrs)),
                       signed, ph])
    scope = f"{day}/{S3['S3_REGION']}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + S3["S3_SECRET_KEY"]).encode()
    for part in (day, S3["S3_REGION"], "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    hdrs["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={S3['S3_ACCESS_KEY']}/{scope}, "
                             f"SignedHeaders={signed}, Signature={sig}")
    c = http.client.HTTPConnection(ep.hostname, ep.port, timeout=120)
    c.request(method, path + ("?" + query if query else ""), body, hdrs)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status // 100 != 2:
        raise AssertionError(f"{method} {key or ''}?{query[:80]}: HTTP {r.status} {data[:300]!r}")
    return data


def main():
    prefix = sys.argv[1]
    q = lambda s: urllib.parse.quote(s, safe="~")  # noqa: E731
    deleted = 0
    while True:
        root = ET.fromstring(request("GET", "list-type=2&max-keys=1000&prefix=" + q(prefix)))
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        keys = [c.find(ns + "Key").text for c in root.findall(ns + "Contents")]
        if not keys:
            break
        body = ("<Delete><Quiet>true</Quiet>" +
                "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys) +
                "</Delete>").encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        request("POST", "delete=", body, {"content-md5": md5})
        deleted += len(keys)
    conf = os.path.join(PEERS, "radosgw", "ceph.conf")
    if os.path.exists(conf):
        subprocess.run(["radosgw-admin", "-c", conf, "gc", "process", "--include-all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       check=False)
    print(f"cleanup: deleted {deleted} objects under {prefix}", file=sys.stderr)


if __name__ == "__main__":
    main()
