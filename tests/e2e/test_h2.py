"""HTTP/2 observed per stream: hypercorn h2c (prior knowledge and Upgrade)
and h2 over TLS (ALPN), driven by h2load and curl from Debian.

Truth: h2load's "succeeded" count and status-code tally, curl's per-URL status
and HTTP version. Every stream a client completed must be reported exactly
once with version "2", the right path and status. gRPC: a real grpcio server
and client (Debian's python3-grpcio), calls counted exactly with their status.
"""
import collections
import re
import subprocess
import time

import pytest

import harness
from harness import HOST


def _hypercorn(workdir, port, tls=None):
    cmd = [harness.PY, "-m", "hypercorn", "-b", f"{HOST}:{port}"]
    if tls:
        cmd += ["--keyfile", str(tls[0]), "--certfile", str(tls[1])]
    return harness.spawn(cmd + ["app:app"], f"hypercorn-h2-{port}", cwd=str(workdir))


@pytest.fixture
def h2setup(tmp_path):
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    plain = harness.Server("hypercorn", tmp_path / "plain")  # app copy + free port
    tls_port = harness.free_port()
    obsd = harness.Obsd(["--port", str(plain.port), "--port", str(tls_port)],
                        name="obsd-h2").start()
    procs = [_hypercorn(plain.dir, plain.port), _hypercorn(plain.dir, tls_port, (key, crt))]
    for port in (plain.port, tls_port):
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not harness.listening(port):
            assert time.monotonic() < deadline, "hypercorn did not listen"
            time.sleep(0.05)
    try:
        yield plain.port, tls_port, obsd, procs
    finally:
        for p in procs:
            harness.kill_group(p)
        harness.stop_obsd_checked(obsd)


def _curl(args):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}\n"]
                         + args, capture_output=True, text=True, check=True).stdout.split()
    return [(int(out[i]), out[i + 1]) for i in range(0, len(out), 2)]


def _h2load(args):
    out = subprocess.run(["h2load"] + args, capture_output=True, text=True, check=True).stdout
    ok = int(re.search(r"(\d+) succeeded", out).group(1))
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert codes and int(codes.group(1)) == ok, out
    return ok


def test_h2c_and_h2_exact(h2setup):
    plain, tls_port, obsd, procs = h2setup
    pids = set()
    for p in procs:
        pids |= harness.descendants(p.pid) | {p.pid}
    truth = collections.Counter()

    # h2c prior knowledge: many streams per connection
    truth[("GET", "/text", 200)] += _h2load(["-n", "400", "-c", "4", "-m", "10",
                                             f"http://{HOST}:{plain}/text"])
    for path, exp in (("/users/5", 200), ("/boom", 500), ("/json", 200)):
        (st, ver), = _curl(["--http2-prior-knowledge", f"http://{HOST}:{plain}{path}"])
        assert (st, ver) == (exp, "2")
        truth[("GET", path, st)] += 1
    # h2c via Upgrade: the upgraded request is stream 1, reported once
    (st, ver), = _curl(["--http2", f"http://{HOST}:{plain}/users/6"])
    truth[("GET", "/users/6", st)] += 1
    # h2 over TLS (ALPN), one connection per curl
    for path in ("/json", "/users/7", "/boom"):
        (st, ver), = _curl(["-k", "--http2", f"https://{HOST}:{tls_port}{path}"])
        assert ver == "2"
        truth[("GET", path, st)] += 1

    want = sum(truth.values())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        recs = [r for r in obsd.requests() if r["pid"] in pids]
        if len(recs) >= want:
            break
        time.sleep(0.3)
    got = collections.Counter((r["method"], r["path"], r["status"]) for r in recs)
    assert got == truth, f"missing {truth - got}, extra {got - truth}"
    assert all(r["outcome"] == "ok" and r["version"] == "2" for r in recs)
    tls = [r for r in recs if r["server"].endswith(f":{tls_port}")]
    assert len(tls) == 3 and all(r["scheme"] == "https" for r in tls)


def test_grpc_unary_exact(tmp_path):
    """A real gRPC server (Debian's python3-grpcio, tests/e2e/grpc_echo.py) and
    client: every call reported once, grpc-status from the trailers, and the
    go-grpc-prometheus metric names."""
    port = harness.free_port()
    obsd = harness.Obsd(["--port", str(port)], name="obsd-grpc").start()
    srv = harness.spawn([harness.PY, str(harness.HERE / "grpc_echo.py"), str(port)], "grpc-echo")
    try:
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not harness.listening(port):
            assert srv.poll() is None and time.monotonic() < deadline, harness.tail(srv.log_path)
            time.sleep(0.05)
        import grpc
        with grpc.insecure_channel(f"{HOST}:{port}") as ch:
            say, fail = ch.unary_unary("/demo.Echo/Say"), ch.unary_unary("/demo.Echo/Fail")
            for i in range(7):
                assert say(b"x%d" % i) == b"echo:x%d" % i
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as e:
                    fail(b"y")
                assert e.value.code() == grpc.StatusCode.NOT_FOUND
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            recs = [r for r in obsd.requests() if r["pid"] == srv.pid]
            if len(recs) >= 11:
                break
            time.sleep(0.3)
        got = collections.Counter((r["path"], r.get("grpc_status"), r["outcome"]) for r in recs)
        assert got == {("/demo.Echo/Say", 0, "ok"): 7, ("/demo.Echo/Fail", 5, "ok"): 4}, got
        st, body = obsd.get("/metrics")
        text = body.decode()
        for method, code, n in (("Say", "OK", 7), ("Fail", "NotFound", 4)):
            m = re.search(r'^grpc_server_handled_total{[^}]*grpc_service="demo.Echo",'
                          rf'grpc_method="{method}",grpc_code="{code}"[^}}]*}} (\d+)$', text, re.M)
            assert m and int(m.group(1)) == n, (method, code, text[-2000:])
        assert re.search(r'^grpc_server_handling_seconds_count{[^}]*grpc_method="Say"[^}]*} 7$',
                         text, re.M)
    finally:
        harness.kill_group(srv)
        harness.stop_obsd_checked(obsd)
