"""Support for the hostile-input and fault end-to-end tests (test_hostile.py,
test_faults.py): obsd memory from /proc, /metrics snapshots and deltas, raw
sockets that send exactly what a test wants (a byte at a time, then reset,
...) and record what the server answered, and the checks that hold for any
connection, however hostile: obs never names a request the client did not
send, never gives a request a status the server did not answer on that
connection, and flags what it cannot pair.

Builds on harness.py / clients.py (shared; not modified here)."""
import collections
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import clients
import harness
from clients import Truth
from harness import HOST, HarnessError

# The bound obsd's peak resident memory (VmHWM) must stay under during these
# tests. Measured (docs/robustness.md): ~44 MB after attaching, ~65 MB peak in
# the hostile run (1,000 held slowloris connections are the largest part).
MEMORY_BOUND_MB = 160


# -- obsd's memory ----------------------------------------------------------------

def proc_mem_kb(pid: int) -> Tuple[int, int]:
    """(VmRSS, VmHWM) of pid in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class MemLog:
    """Samples of one process's VmRSS/VmHWM, labelled by test step."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: List[Tuple[str, int, int]] = []

    def sample(self, label: str) -> Tuple[int, int]:
        rss, hwm = proc_mem_kb(self.pid)
        self.samples.append((label, rss, hwm))
        return rss, hwm

    def peak_mb(self) -> float:
        return max((h for _, _, h in self.samples), default=0) / 1024

    def table(self) -> str:
        return "\n".join(f"  {label:28s} VmRSS {rss / 1024:7.1f} MB   VmHWM {hwm / 1024:7.1f} MB"
                         for label, rss, hwm in self.samples)

    def check(self, bound_mb: float = MEMORY_BOUND_MB) -> Optional[str]:
        if self.peak_mb() <= bound_mb:
            return None
        return (f"obsd (pid {self.pid}) peak resident memory {self.peak_mb():.1f} MB exceeds the "
                f"stated bound of {bound_mb} MB:\n{self.table()}")


# -- /metrics -----------------------------------------------------------------------

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics(d: harness.Obsd) -> Dict[str, float]:
    """{'name{labels}': value} of obsd's /metrics (labels as printed)."""
    st, body = d.get("/metrics")
    if st != 200:
        raise HarnessError(f"obsd /metrics -> {st}: {body[:300]!r}")
    out = {}
    for line in body.decode("utf-8", "replace").splitlines():
        m = _LINE.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def msum(m: Dict[str, float], name: str, **labels: str) -> float:
    """Sum of the series of `name` whose labels include `labels`."""
    total = 0.0
    for k, v in m.items():
        n, _, rest = k.partition("{")
        if n != name:
            continue
        if all(f'{lk}="{lv}"' in rest for lk, lv in labels.items()):
            total += v
    return total


def parse_errors(m: Dict[str, float], error: Optional[str] = None, direction: str = "request") -> float:
    if error:
        return msum(m, "obs_parse_errors_total", direction=direction, error=error)
    return msum(m, "obs_parse_errors_total", direction=direction)


def wait_metric(d: harness.Obsd, pred: Callable[[Dict[str, float]], bool],
                timeout: float = 3.0) -> Dict[str, float]:
    """Poll /metrics until pred holds (kernel counters refresh every second)."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(d)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def health_ok(d: harness.Obsd) -> Optional[str]:
    """None if obsd runs and GET /health answers 200 with status ok."""
    if d.proc is None or d.proc.poll() is not None:
        rc = None if d.proc is None else d.proc.returncode
        return f"obsd is not running (exit code {rc})\n--- obsd output ---\n{d.output()}"
    try:
        st, body = d.get("/health", timeout=5)
    except OSError as e:
        return f"obsd GET /health failed: {e!r}"
    if st != 200 or b'"status":"ok"' not in body:
        return f"obsd GET /health -> {st} {body[:200]!r}"
    return None


# -- raw hostile clients --------------------------------------------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")


@dataclass
class Exchange:
    """One hostile connection: what the client sent, what came back."""
    name: str
    client: str                         # "ip:port" of the client socket
    sent: bytes = b""
    received: bytes = b""
    error: str = ""                     # socket error seen, if any
    requests: List[Tuple[str, str]] = field(default_factory=list)  # (method, path) lines sent

    @property
    def statuses(self) -> List[int]:
        """Statuses of the responses the server wrote (status lines at the
        start of the stream or after a previous response's end; the app's
        bodies never contain one)."""
        return [int(m.group(1)) for m in _STATUS.finditer(self.received)]

    def describe(self) -> str:
        return (f"{self.name} (client {self.client}): sent {len(self.sent)} bytes "
                f"{self.sent[:60]!r}..., server answered {self.statuses or 'nothing'}"
                f"{' (' + self.error + ')' if self.error else ''}")


def request_lines(data: bytes) -> List[Tuple[str, str]]:
    """(method, path) of every well-formed request line in data."""
    out = []
    for m in re.finditer(rb"(?:^|\n)([A-Z]{1,16}) (/[^ \r\n?#]*)[^ \r\n]* HTTP/1\.[01]\r?\n", data):
        out.append((m.group(1).decode(), m.group(2).decode("latin-1")))
    return out


def _connect(port: int, timeout: float = 10.0) -> Tuple[socket.socket, str]:
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, "%s:%d" % s.getsockname()[:2]


def _drain(s: socket.socket, ex: Exchange, quiet: float) -> None:
    """Read until EOF or `quiet` seconds without data."""
    s.settimeout(quiet)
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                return
            ex.received += b
    except socket.timeout:
        return
    except OSError as e:
        ex.error = repr(e)


def send_raw(name: str, port: int, data: bytes, quiet: float = 0.5,
             chunk: Optional[int] = None, pause: float = 0.0) -> Exchange:
    """Send data (whole, or `chunk` bytes at a time with `pause` between),
    read what comes back until EOF or `quiet` seconds of silence, close."""
    s, local = _connect(port)
    ex = Exchange(name, local, sent=data, requests=request_lines(data))
    try:
        if chunk is None:
            s.sendall(data)
        else:
            for i in range(0, len(data), chunk):
                s.sendall(data[i:i + chunk])
                if pause:
                    time.sleep(pause)
    except OSError as e:
        ex.error = repr(e)
    _drain(s, ex, quiet)
    s.close()
    return ex


def reset(s: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def slowloris_request(port: int, target: str, pause: float = 0.002,
                      long_pauses: Sequence[int] = (5, 17, 40)) -> Truth:
    """A well-formed GET written one byte per send, with `pause` between
    bytes and 0.15 s pauses after the byte offsets in long_pauses; then the
    response is read. Returns the exact truth (bytes both ways)."""
    data = clients.build_request("GET", target, f"{HOST}:{port}")
    c = clients._Conn(HOST, port, 30.0)
    try:
        t0 = time.perf_counter()
        for i in range(len(data)):
            c.sock.sendall(data[i:i + 1])
            time.sleep(0.15 if i in long_pauses else pause)
        status, nout, _h, body = c.read_response("GET")
        elapsed = time.perf_counter() - t0
    finally:
        c.close()
    return Truth(method="GET", path=clients.path_of(target), status=status, kind="raw", target=target,
                 client=c.local, bytes_in=len(data), bytes_out=nout, elapsed_us=int(elapsed * 1e6),
                 body=body)


def hold_partial_heads(port: int, n: int, rounds: int, pad: int = 2000,
                       pause: float = 0.2) -> List[str]:
    """n connections each write a request line and `rounds` header lines of
    `pad` bytes, never the blank line; held a moment, then closed. Returns
    their client addresses."""
    socks = []
    try:
        for i in range(n):
            s, local = _connect(port)
            s.sendall(f"GET /held-{i} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            socks.append((s, local))
        line = b"X-Pad: " + b"p" * pad + b"\r\n"
        for _ in range(rounds):
            for s, _l in socks:
                s.sendall(line)
            time.sleep(pause)
    finally:
        for s, _l in socks:
            try:
                s.close()
            except OSError:
                pass
    return [l for _s, l in socks]


def open_and_drop(port: int, n: int, batch: int = 500) -> collections.Counter:
    """Open n connections in batches, close half with FIN and half with RST,
    without sending anything. Returns a count of connect errors by kind."""
    errors = collections.Counter()
    left = n
    while left > 0:
        socks = []
        for _ in range(min(batch, left)):
            try:
                socks.append(socket.create_connection((HOST, port), timeout=5))
            except OSError as e:
                errors[type(e).__name__] += 1
        for j, s in enumerate(socks):
            if j % 2:
                reset(s)
            else:
                s.close()
        left -= batch
    return errors


# -- checks that hold for every connection ------------------------------------------------

def check_no_invention(ex: Exchange, records: Sequence[dict]) -> List[str]:
    """Records of ex's connection: a record naming a request must name one
    the client sent; its status, if any, one the server wrote on this
    connection; a record naming no request must be flagged unmatched."""
    problems = []
    sent = collections.Counter(ex.requests)
    answered = set(ex.statuses)
    named = collections.Counter()
    for r in records:
        if r.get("client") != ex.client:
            continue
        key = (r.get("method"), r.get("path"))
        if r.get("method"):
            named[key] += 1
            if key not in sent:
                problems.append(f"{ex.name}: record names a request the client never sent: "
                                f"{harness.brief_record(r)}")
        elif "unmatched" not in (r.get("flags") or []):
            problems.append(f"{ex.name}: record without a request is not flagged unmatched: "
                            f"{harness.brief_record(r)}")
        st = r.get("status")
        if st and st not in answered:
            problems.append(f"{ex.name}: record has status {st}, which the server never wrote on "
                            f"this connection (it wrote {sorted(answered)}): {harness.brief_record(r)}")
        if r.get("outcome") == "ok" and not st:
            problems.append(f"{ex.name}: ok record without a status: {harness.brief_record(r)}")
    for key, n in named.items():
        if n > sent[key]:
            problems.append(f"{ex.name}: {key[0]} {key[1]} reported {n} times, sent {sent[key]} times")
    return problems


def check_pipeline_pairing(name: str, truth: Sequence[Truth], records: Sequence[dict]) -> List[str]:
    """A pipelined connection whose requests have distinct paths: a record
    naming a path must carry the status that path was answered with (or
    none, if it failed), and no path may be reported twice."""
    problems = []
    if not truth:
        return ["%s: no truth" % name]
    client = truth[0].client
    want = {t.path: t.status for t in truth}
    seen = collections.Counter()
    for r in records:
        if r.get("client") != client or not r.get("method"):
            continue
        path = r.get("path")
        seen[path] += 1
        if path not in want:
            problems.append(f"{name}: record names a path never sent: {harness.brief_record(r)}")
        elif r.get("status") and r.get("status") != want[path]:
            problems.append(f"{name}: {path} reported with status {r.get('status')} but answered "
                            f"{want[path]} (paired with another request's response): "
                            f"{harness.brief_record(r)}")
    dup = [p for p, n in seen.items() if n > 1 and p != "/text"]
    if dup:
        problems.append(f"{name}: paths reported more than once: {dup[:5]}")
    return problems


def records_of(records: Iterable[dict], client: str) -> List[dict]:
    return [r for r in records if r.get("client") == client]


def wait_idle(d: harness.Obsd, timeout: float = 10.0) -> dict:
    """Wait until /health says no connection is tracked; returns /health."""
    deadline = time.monotonic() + timeout
    while True:
        h = d.get_json("/health")
        if h.get("active_connections") == 0 or time.monotonic() > deadline:
            return h
        time.sleep(0.2)
