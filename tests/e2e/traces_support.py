"""Support for the OpenTelemetry trace-export end-to-end tests (test_traces.py):
the test OTLP/HTTP receiver (tests/otlp/receiver.js), obsd started with an
OTEL_* environment, /metrics parsing, span waiting and checks.

Builds on harness.py / clients.py (shared; not modified here)."""
import http.client
import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import clients
import harness
from clients import Truth
from harness import HOST, HarnessError, Obsd

RECEIVER_JS = harness.REPO / "tests" / "otlp" / "receiver.js"
RECEIVER_DECODER = (harness.REPO / "tests" / "otlp" / "node_modules" / "@opentelemetry" /
                    "otlp-transformer" / "build" / "src" / "generated" / "root.js")

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
SPAN_KIND_SERVER = 2
STATUS_ERROR = 2
SPAN_TIMEOUT = 20.0
SPAN_SETTLE = 1.0      # schedule delay is 200 ms in these tests: 5 export rounds


# -- receiver -----------------------------------------------------------------

def require_receiver() -> None:
    import pytest
    if not RECEIVER_DECODER.exists():
        pytest.fail(f"{RECEIVER_DECODER} is missing: run `bash scripts/deps.sh` in {harness.REPO} "
                    f"(installs the OTLP receiver's npm dependencies)", pytrace=False)
    if not shutil_which("node"):
        pytest.fail("node is not installed (scripts/deps.sh installs it)", pytrace=False)


def shutil_which(cmd: str) -> Optional[str]:
    import shutil
    return shutil.which(cmd, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


class Receiver:
    """node tests/otlp/receiver.js PORT OUT_FILE [--status CODE] [args]: one
    JSON line per received span in OUT_FILE, per metric data point in
    OUT_FILE.metrics; GET /stats."""

    def __init__(self, out_file: Path, port: Optional[int] = None, status: Optional[int] = None,
                 name: str = "otlp-receiver", args: Sequence[str] = ()):
        self.out = Path(out_file)
        self.port = port or harness.free_port()
        self.status = status
        self.name = name
        self.args = list(args)
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def traces_url(self) -> str:
        return self.base + "/v1/traces"

    def start(self, status: Optional[int] = None, timeout: float = 15.0) -> "Receiver":
        require_receiver()
        if status is not None:
            self.status = status
        cmd = ["node", str(RECEIVER_JS), str(self.port), str(self.out)]
        if self.status is not None:
            cmd += ["--status", str(self.status)]
        cmd += self.args
        self.proc = harness.spawn(cmd, self.name)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"receiver exited {self.proc.returncode} before listening "
                                   f"({self.proc.cmd_str})\n{harness.tail(self.proc.log_path)}")
            try:
                self.stats()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"receiver not answering /stats on {self.port} after {timeout}s\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (a crashed collector), and wait until its port is closed."""
        if self.proc is not None:
            harness.kill_group(self.proc, signal.SIGKILL, 0.1)
            self.proc = None
        deadline = time.monotonic() + 5
        while harness.listening(self.port):
            if time.monotonic() > deadline:
                raise HarnessError(f"receiver port {self.port} still listening after kill")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc)
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict:
        c = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            c.request("GET", "/stats")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise HarnessError(f"receiver /stats -> {r.status}")
            return json.loads(body)
        finally:
            c.close()

    def spans(self) -> List[dict]:
        """Every span line written so far (a trailing partial line is ignored)."""
        try:
            data = self.out.read_text()
        except FileNotFoundError:
            return []
        lines = data.split("\n")
        return [json.loads(l) for l in lines[:-1] if l.strip()]

    def log(self) -> str:
        return harness.tail(self.proc.log_path) if self.proc is not None else "<not running>"


# -- obsd with an OTEL_* environment ------------------------------------------

class ObsdOtel(Obsd):
    """harness.Obsd started with exactly the given OTEL_* environment (any
    OTEL_* variable of the test runner's environment is removed)."""

    def __init__(self, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
                 name: str = "obsd-traces"):
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

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"{env} obsd {' '.join(self.filters)}".strip()

    def metrics(self) -> Dict[str, float]:
        st, body = self.get("/metrics")
        if st != 200:
            raise HarnessError(f"obsd /metrics -> {st}: {body[:300]!r}")
        return parse_metrics(body.decode())

    def traces(self, limit: int = 100000) -> dict:
        return self.get_json(f"/api/traces?limit={limit}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def parse_metrics(text: str) -> Dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels exactly as printed)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            pass
    return out


_SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _split_series(key: str):
    m = _SERIES.match(key)
    if not m:
        return key, {}
    return m.group(1), dict(_LABEL.findall(m.group(2) or ""))


def metric(m: Dict[str, float], key: str) -> float:
    """Value of `key` ('name' or 'name{label="v",...}'): the sum over every
    series of that name whose labels include the given ones (so a series
    with extra labels, e.g. exporter="otlp", still counts)."""
    name, want = _split_series(key)
    total, found = 0.0, False
    for k, v in m.items():
        n, labels = _split_series(k)
        if n == name and all(labels.get(lk) == lv for lk, lv in want.items()):
            total += v
            found = True
    if not found:
        raise AssertionError(f"/metrics has no series {key}; obs_* series present: "
                             f"{sorted(k for k in m if k.startswith(('obs_spans', 'obs_export', 'obs_trace')))}")
    return total


# -- waiting ------------------------------------------------------------------

def server_spans(receiver: Receiver, pids: Set[int]) -> List[dict]:
    return [s for s in receiver.spans() if s.get("resource", {}).get("process.pid") in pids]


def wait_spans(receiver: Receiver, pids_fn: Callable[[], Set[int]], expected: int,
               timeout: float = SPAN_TIMEOUT, settle: float = SPAN_SETTLE,
               done: Optional[Callable[[List[dict]], bool]] = None) -> List[dict]:
    """Poll the receiver's output until `expected` spans of the server's
    pids have arrived (or done(spans) is true), then wait `settle` more
    seconds and read again (to catch extras)."""
    deadline = time.monotonic() + timeout
    while True:
        sel = server_spans(receiver, pids_fn())
        ok = done(sel) if done is not None else len(sel) >= expected
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(settle)
    return server_spans(receiver, pids_fn())


# -- clients ------------------------------------------------------------------

class _BoundConn(clients._Conn):
    """clients._Conn whose socket is bound to a source address before connect."""

    def __init__(self, src_ip: str, host: str, port: int, timeout: float):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((src_ip, 0))
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ip, lport = self.sock.getsockname()[:2]
        self.local = f"{ip}:{lport}"
        self.buf = bytearray()
        self.eof = False


def raw_from(src_ip: str, port: int, method: str, target: str,
             headers: Sequence[Tuple[str, str]] = (), body: bytes = b"",
             timeout: float = clients.DEFAULT_TIMEOUT) -> Truth:
    """One request on its own raw TCP connection whose source address is
    src_ip (socket.bind((src_ip, 0)) before connect)."""
    data = clients.build_request(method, target, f"{HOST}:{port}", body, headers)
    c = _BoundConn(src_ip, HOST, port, timeout)
    try:
        c.sock.sendall(data)
        status, nout, _h, rbody = c.read_response(method)
    finally:
        c.close()
    return Truth(method=method, path=clients.path_of(target), status=status, kind="raw", target=target,
                 client=c.local, bytes_in=len(data), bytes_out=nout, body=rbody)


def curl_headers(url: str, headers: Sequence[Tuple[str, str]] = (), timeout: float = 30.0) -> Truth:
    """One curl GET with extra headers; returns its truth (status, client addr)."""
    import subprocess
    args = ["curl", "-sS", "--max-time", "20", "-o", "/dev/null",
            "-w", "%{http_code} %{local_ip} %{local_port}\\n"]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    args.append(url)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    f = p.stdout.split()
    if p.returncode != 0 or len(f) != 3 or f[0] == "000":
        raise clients.ClientError(f"curl {url}: exit {p.returncode} {p.stdout!r} {p.stderr!r}")
    target = "/" + url.split("/", 3)[3]
    return Truth(method="GET", path=clients.path_of(target), status=int(f[0]), kind="curl",
                 target=target, client=f"{f[1]}:{f[2]}")


# -- span checks --------------------------------------------------------------

def route_of(path: str) -> str:
    """The templated route obs must report for the paths these tests use:
    numeric segments become {id}."""
    return "/".join("{id}" if seg.isdigit() else seg for seg in path.split("/"))


def brief_span(s: dict) -> str:
    a = s.get("attributes", {})
    return json.dumps({"name": s.get("name"), "traceId": s.get("traceId"), "spanId": s.get("spanId"),
                       "parentSpanId": s.get("parentSpanId"), "traceState": s.get("traceState"),
                       "status": s.get("status"), "url.path": a.get("url.path"),
                       "status_code": a.get("http.response.status_code"),
                       "request.id": a.get("request.id"), "client": a.get("client.address"),
                       "pid": s.get("resource", {}).get("process.pid")})


def span_as_record(s: dict) -> dict:
    """The (method, path, status) view harness.diff_truth compares."""
    a = s.get("attributes", {})
    return {"method": a.get("http.request.method"), "path": a.get("url.path"),
            "status": a.get("http.response.status_code"), "pid": s.get("resource", {}).get("process.pid"),
            "client": f"{a.get('client.address')}:{a.get('client.port')}"}


def low64(trace_id: str) -> int:
    """Low 64 bits of a 32-hex trace id, big-endian (its last 16 hex chars)."""
    return int(trace_id[16:], 16)


def dup_ids(spans: Iterable[dict]) -> List[str]:
    seen, dups = set(), []
    for s in spans:
        sid = s.get("spanId")
        if sid in seen:
            dups.append(sid)
        seen.add(sid)
    return dups
