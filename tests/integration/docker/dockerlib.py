"""dockerlib.py: what the docker integration tests share — the dockerd peer's env file and API,
job specs of the docker runtime, `drover job` runs, TCP relays, and the TAP runner."""
import json
import os
import signal
import ssl
import subprocess
import tempfile
import time
import http.client

DROVER = os.environ.get("DROVER", "drover")
PEERS = os.environ.get("DROVER_PEERS_DIR", "/tmp/drover-peers")
results = []


def envfile(name):
    out = {}
    with open(os.path.join(PEERS, name)) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


DK = envfile("dockerd.env")
PEM = {k: open(DK[v]).read() for k, v in (("ca", "DOCKER_CA"), ("cert", "DOCKER_CERT"), ("key", "DOCKER_KEY"))}
IMAGE = DK["DOCKER_IMAGE"]
STORE = tempfile.mkdtemp(prefix="drover-docker-store-")


def api(method, path):
    ctx = ssl.create_default_context(cafile=DK["DOCKER_CA"])
    ctx.load_cert_chain(DK["DOCKER_CERT"], DK["DOCKER_KEY"])
    c = http.client.HTTPSConnection("127.0.0.1", 2376, context=ctx, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    return r.status, json.loads(body) if body else None


def drover_objects():
    """drover's containers and networks of this test run (other runs may share the engine)."""
    f = '{"label":["drover.managed=true"]}'
    from urllib.parse import quote
    _, cs = api("GET", "/containers/json?all=1&filters=" + quote(f))
    _, ns = api("GET", "/networks?filters=" + quote(f))
    mine = f"dk{os.getpid()}-"
    return ([c for c in cs if c["Labels"].get("drover.job", "").startswith(mine)],
            [n for n in ns if (n.get("Labels") or {}).get("drover.job", "").startswith(mine)])


def spec(steps, images=None, **kw):
    s = {"version": 1,
         "id": {"job": f"dk{os.getpid()}-{len(results)}", "name": "docker-test", "build_num": 1},
         "executor": {"runtime": "docker", "kind": "docker",
                      "images": images or [{"image": IMAGE}],
                      "resources": {"cpus": 1, "memory_mb": 512},
                      "docker_host": {"url": DK["DOCKER_URL"], **PEM}},
         "storage": {"url": f"file://{STORE}"},
         "steps": steps}
    s.update(kw)
    return s


def run_job(s, timeout=60, cancel_after=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(s, f)
        path = f.name
    try:
        p = subprocess.Popen([DROVER, "job", "--spec", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        if cancel_after is not None:
            time.sleep(cancel_after)
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    finally:
        os.unlink(path)


def test(fn):
    t0 = time.time()
    try:
        fn()
        results.append((True, fn.__name__, f"{time.time() - t0:.1f}s"))
    except AssertionError as e:
        results.append((False, fn.__name__, str(e)))
    except Exception as e:  # noqa: BLE001
        results.append((False, fn.__name__, f"{type(e).__name__}: {e}"))
    return fn


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(cmd, **kw):
    return {"type": "run", "command": cmd, **kw}


def tcp_relay(listen, target):
    """A plain TCP relay (TLS stays end to end) in threads; returns the listening port."""
    import socket
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(16)

    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve():
        while True:
            c, _ = srv.accept()
            try:
                u = socket.create_connection(target, timeout=5)
            except OSError:
                c.close()
                continue
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


# Inside a sandbox job (private network): 127.0.0.1:2376 of the job's own network namespace relays
# to the host side of its veth (the default gateway), where tcp_relay forwards to the engine.
IN_JOB_RELAY = r'''
import socket, struct, threading
def gw():
    for l in open("/proc/net/route").readlines()[1:]:
        f = l.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
G = gw()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 2376))
s.listen(16)
print("relay to", G, flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
while True:
    c, _ = s.accept()
    u = socket.create_connection((G, PORT))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
'''


def main():
    for i, (ok, name, msg) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for line in msg.splitlines()[-40:]:
            print(f"#   {line}")
    print(f"1..{len(results)}")
    return 0 if all(ok for ok, _, _ in results) else 1


