"""Support for the fault end-to-end tests (test_faults.py): a server whose app
also has a long request (GET /sleep?ms=N), the OTLP test receiver started
slow or failing (tests/otlp/receiver.js --delay-ms / --status), obsd started
with an OTLP endpoint, and the time a request takes to appear in
/api/requests.

Builds on harness.py / clients.py (shared; not modified here)."""
import json
import os
import signal
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import clients
import harness
from harness import HOST, HarnessError, Obsd, Server

RECEIVER_JS = harness.REPO / "tests" / "otlp" / "receiver.js"
RECEIVER_DECODER = (harness.REPO / "tests" / "otlp" / "node_modules" / "@opentelemetry" /
                    "otlp-transformer" / "build" / "src" / "generated" / "root.js")

# tests/e2e/app.py plus GET /sleep?ms=N (a request that stays in flight).
SLEEP_ROUTE = '''

async def sleep_route(request):
    await asyncio.sleep(int(request.query_params.get("ms", "1000")) / 1000)
    return PlainTextResponse("slept\\n")


app.router.routes.append(Route("/sleep", sleep_route, methods=["GET"]))
'''


class SleepServer(Server):
    """A harness.Server whose app also answers GET /sleep?ms=N."""

    def __init__(self, setup: str, workdir: Path):
        super().__init__(setup, workdir)
        (self.dir / "app.py").write_text((harness.HERE / "app.py").read_text() + SLEEP_ROUTE)


class KeepAliveServer(Server):
    """uvicorn (h11) keeping idle keep-alive connections open for 300 s
    instead of uvicorn's default 5 s (an obsd restart takes longer)."""

    def start(self, timeout: float = harness.READY_TIMEOUT) -> "Server":
        cmd = [harness.PY, "-m", "uvicorn", "--host", HOST, "--port", str(self.port), "--http", "h11",
               "--loop", "asyncio", "--timeout-keep-alive", "300", "app:app"]
        self.proc = harness.spawn(cmd, "server-keepalive", cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        while not harness.listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"uvicorn not listening on {self.port} ({self.proc.cmd_str})\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        self.pids()
        return self


def require_receiver() -> None:
    import pytest
    if not RECEIVER_DECODER.exists() or not any(
            os.access(os.path.join(p, "node"), os.X_OK) for p in ("/usr/bin", "/usr/local/bin")):
        pytest.fail(f"the OTLP test receiver needs node and {RECEIVER_DECODER}: run "
                    f"`bash scripts/deps.sh` in {harness.REPO}", pytrace=False)


class Receiver:
    """node tests/otlp/receiver.js PORT OUT [--status CODE] [--delay-ms N]."""

    def __init__(self, out: Path, status: Optional[int] = None, delay_ms: Optional[int] = None):
        self.port = harness.free_port()
        self.out = out
        self.status = status
        self.delay_ms = delay_ms
        self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 15.0) -> "Receiver":
        require_receiver()
        cmd = ["node", str(RECEIVER_JS), str(self.port), str(self.out)]
        if self.status is not None:
            cmd += ["--status", str(self.status)]
        if self.delay_ms is not None:
            cmd += ["--delay-ms", str(self.delay_ms)]
        self.proc = harness.spawn(cmd, "otlp-receiver")
        deadline = time.monotonic() + timeout
        while not harness.listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"receiver not listening ({self.proc.cmd_str})\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        return self

    def stats(self) -> dict:
        import http.client
        c = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            c.request("GET", "/stats")
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc, signal.SIGKILL, 0.1)
            self.proc = None


class ObsdEnv(Obsd):
    """harness.Obsd started with extra environment variables (OTEL_* of the
    runner's own environment removed)."""

    def __init__(self, args: Sequence[str] = (), env: Optional[dict] = None, name: str = "obsd-faults"):
        super().__init__(args, name=name)
        self.env = dict(env or {})

    def start(self) -> "Obsd":
        saved = dict(os.environ)
        try:
            for k in list(os.environ):
                if k.startswith("OTEL_"):
                    del os.environ[k]
            os.environ.update(self.env)
            return super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def appear_latency(d: Obsd, port: int, target: str, timeout: float = 10.0) -> Tuple[float, dict]:
    """Make a raw request, then poll /api/requests until its record is there.
    Returns (seconds from the client's last response byte to the record being
    served, the record); (inf, {}) if it did not appear within timeout."""
    t = clients.raw_request(HOST, port, "GET", target)
    t_done = time.monotonic()
    deadline = t_done + timeout
    while time.monotonic() < deadline:
        doc = d.get_json("/api/requests?limit=50")
        for r in doc["requests"]:
            if r.get("client") == t.client and r.get("path") == clients.path_of(target):
                return time.monotonic() - t_done, r
        time.sleep(0.02)
    return float("inf"), {}


def keepalive_open(port: int, n: int) -> List[clients._Conn]:
    return [clients._Conn(HOST, port, 30.0) for _ in range(n)]


def keepalive_request(c: clients._Conn, port: int, target: str) -> clients.Truth:
    """One request on an already open keep-alive connection, exact truth."""
    data = clients.build_request("GET", target, f"{HOST}:{port}")
    c.sock.sendall(data)
    status, nout, _h, body = c.read_response("GET")
    return clients.Truth(method="GET", path=clients.path_of(target), status=status, kind="raw",
                         target=target, client=c.local, bytes_in=len(data), bytes_out=nout, body=body)


def burst_streams(port: int, conns: int, per_conn: int) -> int:
    """`conns` connections each pipelining `per_conn` GET /stream (1 MiB
    chunked, written in 64 KiB writes) in one write and reading everything
    back. Returns the responses read."""
    import threading
    got = [0] * conns

    def one(i: int) -> None:
        try:
            t = clients.pipeline(HOST, port, [("GET", "/stream")] * per_conn, timeout=60)
            got[i] = len(t)
        except (OSError, clients.ClientError):
            pass

    th = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for x in th:
        x.start()
    for x in th:
        x.join(120)
    return sum(got)
