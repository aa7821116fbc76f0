"""Support for the error-event / lifecycle-event / Sentry end-to-end tests
(test_errors.py): servers running errors_app.py, the strict Sentry receiver
(tests/sentry/receiver.py), the `obsctl events --json` stream, background
load, clients that leave mid-stream, and small waiting/reading helpers.

Builds on harness.py / clients.py (shared; not modified here)."""
import contextlib
import http.client
import json
import os
import shutil
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence

import clients
import harness
from clients import Truth
from harness import HOST, HarnessError, Obsctl, Server

SETUPS = ["uvicorn-h11", "uvicorn-httptools", "hypercorn"]
RECEIVER_PY = harness.REPO / "tests" / "sentry" / "receiver.py"
SECRETS = ("SECRET-AUTH-123", "SECRET-COOKIE-456", "SECRET-QUERY-789")
# distinctive cores too, to catch a secret that was cut or re-encoded
SECRET_CORES = ("AUTH-123", "COOKIE-456", "QUERY-789")
LEAVE_REASONS = ("client_closed", "client_reset", "response_incomplete")


# -- servers ------------------------------------------------------------------

class ErrorsServer(Server):
    """A harness Server that serves errors_app:app (app.py's routes plus
    /boom/{n}, /chain, /slowstream) instead of app:app."""

    def __init__(self, setup: str, workdir: Path):
        super().__init__(setup, workdir)           # copies app.py
        shutil.copy(harness.HERE / "errors_app.py", self.dir / "errors_app.py")

    @property
    def app_file(self) -> str:
        return str(self.dir / "app.py")

    @property
    def errors_app_file(self) -> str:
        return str(self.dir / "errors_app.py")

    def start(self, timeout: float = harness.READY_TIMEOUT) -> "ErrorsServer":
        cmd = ["errors_app:app" if a == "app:app" else a for a in harness._server_cmd(self.setup, self.port)]
        self.proc = harness.spawn(cmd, f"server-{self.setup}", cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        while not harness.listening(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.setup} exited with {self.proc.returncode} before listening "
                                   f"({self.proc.cmd_str})\n{harness.tail(self.proc.log_path)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.setup} not listening on {self.port} after {timeout}s\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        self.pids()
        return self


def read_output(proc, path: Optional[Path]) -> str:
    """Everything a spawned process wrote to its log: through /proc/PID/fd/2
    while it runs (still readable if someone removed .out/ meanwhile), else
    the log file."""
    if proc is not None and proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/fd/2", "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            pass
    try:
        return Path(path).read_text(errors="replace") if path else ""
    except OSError as e:
        return f"<cannot read {path}: {e}>"


@contextlib.contextmanager
def environment(**kv: str):
    """Set environment variables for processes spawned inside the block."""
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update(kv)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- Sentry receiver ----------------------------------------------------------

class SentryReceiver:
    """/usr/bin/python3 tests/sentry/receiver.py PORT KEY OUT_FILE."""

    def __init__(self, out_file: Path, key: str, project: int = 42):
        self.out = Path(out_file)
        self.key = key
        self.project = project
        self.port = harness.free_port()
        self.proc = None

    @property
    def dsn(self) -> str:
        return f"http://{self.key}@{HOST}:{self.port}/{self.project}"

    def start(self, timeout: float = 15.0) -> "SentryReceiver":
        self.proc = harness.spawn([harness.PY, RECEIVER_PY, self.port, self.key, self.out], "sentry-receiver")
        deadline = time.monotonic() + timeout
        while not harness.listening(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(f"Sentry receiver exited {self.proc.returncode} before listening\n"
                                   f"{harness.tail(self.proc.log_path)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"Sentry receiver not listening after {timeout}s\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        return self

    def text(self) -> str:
        try:
            return self.out.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> List[dict]:
        out = []
        for l in self.text().splitlines():
            if l.strip():
                out.append(json.loads(l))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc)


# -- obsctl events --------------------------------------------------------------

class EventStream(Obsctl):
    """obsctl events --json --port P...: every stdout line parsed."""

    def __init__(self, ports: Iterable[int], name: str = "obsctl-events"):
        args = ["events", "--json"]
        for p in ports:
            args += ["--port", p]
        super().__init__(args, name=name)

    def objects(self) -> List[dict]:
        out = []
        with self._cv:
            lines = [l for _, l in self.stdout_lines]
        for l in lines:
            try:
                out.append(json.loads(l))
            except ValueError:
                out.append({"type": "<not JSON>", "line": l})
        return out

    def text(self) -> str:
        with self._cv:
            return "\n".join(l for _, l in self.stdout_lines + self.stderr_lines)


def life_of(events: Sequence[dict], conn_id: int) -> List[dict]:
    return [e for e in events if e.get("type") != "Error" and e.get("conn_id") == conn_id]


def conn_ids_of(events: Sequence[dict], client: str) -> List[int]:
    return sorted({e["conn_id"] for e in events
                   if e.get("type") == "ConnectionOpened" and e.get("client") == client})


def brief_life(e: dict) -> str:
    keys = ("type", "conn_id", "client", "method", "path", "status", "reason", "error", "in_flight",
            "request_id")
    return json.dumps({k: e[k] for k in keys if k in e})


def brief_error(e: dict) -> str:
    r = e.get("request") or {}
    x = e.get("exception") or {}
    return json.dumps({"reason": e.get("reason"), "pid": e.get("pid"), "client": r.get("client"),
                       "path": r.get("path"), "status": r.get("status"),
                       "request_id": r.get("request_id"), "exc": [x.get("type"), x.get("message")],
                       "chain": x.get("chain"), "join": x.get("join"),
                       "candidates": x.get("candidates"),
                       "last_frame": (x.get("frames") or [None])[-1]})


# -- clients ------------------------------------------------------------------

class Background:
    """Requests in flight from other connections while the errors happen:
    two threads looping raw GET /slow (50 ms each, staggered so one is
    nearly always in flight) and one looping raw GET /text. Every response
    is recorded as truth; a client failure is kept and reported."""

    def __init__(self, port: int):
        self.port = port
        self.truth: List[Truth] = []
        self.failures: List[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=("/slow", 0.0), daemon=True),
                         threading.Thread(target=self._loop, args=("/slow", 0.025), daemon=True),
                         threading.Thread(target=self._loop, args=("/text", 0.0), daemon=True)]

    def _loop(self, path: str, delay: float) -> None:
        time.sleep(delay)
        while not self._stop.is_set():
            try:
                t = clients.raw_request(HOST, self.port, "GET", path)
                with self._lock:
                    self.truth.append(t)
            except Exception as e:  # noqa: BLE001 - reported by the test
                with self._lock:
                    self.failures.append(f"GET {path}: {e!r}")
            if path == "/text":
                time.sleep(0.005)

    def __enter__(self) -> "Background":
        for t in self._threads:
            t.start()
        time.sleep(0.06)   # both /slow loops running before the first error
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


@dataclass
class Leave:
    """A client that asked for GET /slowstream and left mid-stream."""
    mode: str              # close | rst | fin
    client: str
    received: int          # bytes the client read before it left / in all
    complete: Optional[bool] = None   # fin only: did the full response arrive?
    notes: List[str] = field(default_factory=list)


def leave_mid_stream(port: int, mode: str) -> Leave:
    """GET /slowstream (1 MiB over ~0.5 s); read the head and a little of
    the body, then leave:
      close  close() with unread bytes in the receive queue (the kernel
             answers further data with a reset)
      rst    SO_LINGER {1, 0} then close(): an immediate RST
      fin    shutdown(SHUT_WR) (a FIN, the client half-closes), then read
             until the server closes; `complete` tells whether the whole
             response arrived after all (a server may finish it)."""
    s = socket.create_connection((HOST, port), timeout=10)
    client = "%s:%d" % s.getsockname()[:2]
    s.sendall(clients.build_request("GET", "/slowstream", f"{HOST}:{port}"))
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 4096:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    lv = Leave(mode, client, len(got))
    if mode == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    elif mode == "close":
        time.sleep(0.04)   # the next chunk arrives unread
        s.close()
    elif mode == "fin":
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                got += chunk
        except OSError as e:
            lv.notes.append(f"recv after FIN: {e!r}")
        s.close()
        lv.received = len(got)
        lv.complete = chunked_complete(got, 1024 * 1024)
    else:
        raise ValueError(mode)
    return lv


def chunked_complete(raw: bytes, body_len: int) -> bool:
    """Is raw one complete chunked response whose body has body_len bytes?"""
    end = raw.find(b"\r\n\r\n")
    if end < 0 or b"chunked" not in raw[:end].lower():
        return False
    pos, n = end + 4, 0
    while True:
        nl = raw.find(b"\r\n", pos)
        if nl < 0:
            return False
        try:
            size = int(raw[pos:nl].split(b";", 1)[0], 16)
        except ValueError:
            return False
        pos = nl + 2
        if size == 0:
            return raw[pos:] == b"\r\n" and n == body_len
        if raw[pos + size:pos + size + 2] != b"\r\n":
            return False
        n += size
        pos += size + 2


def keepalive(port: int, targets: Sequence[str]) -> (str, List[Truth], bool):
    """One raw keep-alive connection: the requests one after the other
    (each response read completely before the next request), then close().
    Before each further request, waits 50 ms for the server closing the
    connection (hypercorn 0.13 closes it after every response): then no
    request is sent into a closing connection, and the third return value
    says the server closed it early."""
    import select
    c = clients._Conn(HOST, port, 30.0)
    out = []
    closed_by_server = False
    try:
        for i, target in enumerate(targets):
            if i:
                r, _, _ = select.select([c.sock], [], [], 0.05)
                if r and c.sock.recv(1, socket.MSG_PEEK) == b"":
                    closed_by_server = True
                    break
            data = clients.build_request("GET", target, f"{HOST}:{port}")
            c.sock.sendall(data)
            status, nout, _h, body = c.read_response("GET")
            out.append(Truth("GET", clients.path_of(target), status, "keepalive", target, c.local,
                             len(data), nout, None, body))
        if c.buf:
            raise clients.ClientError(f"{len(c.buf)} unexpected bytes after the last response")
    finally:
        c.close()
    return c.local, out, closed_by_server


# -- waiting / reading ----------------------------------------------------------

def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def get_text(d: harness.Obsd, path: str) -> str:
    st, body = d.get(path)
    if st != 200:
        raise HarnessError(f"obsd GET {path} -> {st}: {body[:300]!r}")
    return body.decode("utf-8", "replace")


def api_errors(d: harness.Obsd) -> dict:
    return d.get_json("/api/errors?limit=100000")


def api_events(d: harness.Obsd) -> dict:
    return d.get_json("/api/events?limit=100000")


def read_jsonl(path: Path) -> List[dict]:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def metric_value(text: str, series: str) -> Optional[float]:
    """The value of one exact series line, e.g. 'obs_tracebacks_total{join="closest"}'."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def find_secrets(text: str) -> List[str]:
    found = []
    for s in SECRETS + SECRET_CORES:
        i = text.find(s)
        if i >= 0:
            found.append(f"{s!r} at {i}: ...{text[max(0, i - 150):i + 60]!r}...")
    return found


def http_get_raw(port: int, path: str, timeout: float = 10.0) -> (int, bytes):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()
