"""HTTPS observed exactly like plaintext HTTP/1: uprobes on OpenSSL.

uvicorn (asyncio+h11 and uvloop+httptools) started with --ssl-keyfile /
--ssl-certfile and a self-signed certificate made by the test, driven by curl
(keep-alive across URLs), ab -k over https (exact counts) and a raw TLS
socket client (exact bytes). Records must equal the clients' truth: method,
path, status, scheme https, plaintext byte counts. The encrypted bytes of
those connections must never produce records or parse errors.
"""
import collections
import re
import socket
import ssl
import subprocess
import time

import pytest

import harness
from harness import HOST

SETUPS = {
    "uvicorn-h11": ["--http", "h11", "--loop", "asyncio"],
    "uvicorn-httptools": ["--http", "httptools", "--loop", "uvloop"],
}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2", "-subj",
                    "/CN=localhost"], check=True, capture_output=True)
    return d / "key.pem", d / "cert.pem"


def _raw_tls_get(port: int, path: str):
    """One request over TLS; returns (status, plaintext bytes sent, received)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((HOST, port)) as raw, ctx.wrap_socket(raw) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split()[1]), len(req), len(data)


@pytest.fixture(params=list(SETUPS))
def tls_server(request, cert, tmp_path):
    key, crt = cert
    workdir = tmp_path / "srv"
    server = harness.Server("uvicorn-h11", workdir)  # for its app copy and port
    cmd = [harness.PY, "-m", "uvicorn", "--host", HOST, "--port", str(server.port),
           *SETUPS[request.param], "--ssl-keyfile", str(key), "--ssl-certfile", str(crt), "app:app"]
    obsd = harness.Obsd(["--port", str(server.port)], name=f"obsd-tls-{request.param}").start()
    server.proc = harness.spawn(cmd, f"server-tls-{request.param}", cwd=str(workdir))
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while not harness.listening(server.port):
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    try:
        yield server, obsd
    finally:
        server.stop()
        harness.stop_obsd_checked(obsd)


def test_https_exact(tls_server):
    server, obsd = tls_server
    base = f"https://{HOST}:{server.port}"
    truth = collections.Counter()
    raw = []
    for path in ("/text", "/users/41", "/boom", "/nope"):
        st, sent, got = _raw_tls_get(server.port, path)
        truth[("GET", path, st)] += 1
        raw.append((path, sent, got))
    out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}\n",
                          f"{base}/json", "-o", "/dev/null", f"{base}/users/42",
                          "-o", "/dev/null", f"{base}/stream"],
                         check=True, capture_output=True, text=True).stdout.split()
    for path, code in zip(("/json", "/users/42", "/stream"), out):
        truth[("GET", path, int(code))] += 1
    ab = subprocess.run(["ab", "-q", "-k", "-n", "200", "-c", "4", f"{base}/text"],
                        check=True, capture_output=True, text=True).stdout
    done = int(re.search(r"Complete requests:\s+(\d+)", ab).group(1))
    assert "Failed requests:        0" in ab, ab
    truth[("GET", "/text", 200)] += done

    want = sum(truth.values())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        recs = [r for r in obsd.requests() if r["pid"] in server.pids()]
        if len(recs) >= want:
            break
        time.sleep(0.3)
    got = collections.Counter((r["method"], r["path"], r["status"]) for r in recs)
    assert got == truth, f"missing {truth - got}, extra {got - truth}"
    assert all(r["scheme"] == "https" and r["outcome"] == "ok" for r in recs)
    by_path = {r["path"]: r for r in recs}
    for path, sent, received in raw:
        r = by_path[path]
        assert (r["bytes_in"], r["bytes_out"]) == (sent, received), (path, r)
    st, body = obsd.get("/metrics")
    errs = sum(int(v) for v in re.findall(r"^obs_parse_errors_total{.*} (\d+)$", body.decode(), re.M))
    assert errs == 0, "ciphertext reached the HTTP parser"
