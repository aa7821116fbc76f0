"""Helpers of the Prometheus-metrics end-to-end tests (test_metrics.py):
exposition parsing, exact-count load generators, gunicorn with N workers,
which worker owns a connection, promtool and a real Prometheus."""
import collections
import http.client
import json
import math
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import clients
import harness
from harness import HOST, HarnessError

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
SERVICE = "app:app"         # the ASGI app argument of every server command line
COUNT_TIMEOUT = 20.0        # for obsd to account all requests sent
SETTLE = 1.0                # after the expected count is reached: wait for extras


# -- exposition parsing --------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(" + _NAME + r")(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), "\\" + m.group(1)), v)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Tuple[Tuple[str, str], ...]   # sorted
    value: float

    @property
    def l(self) -> Dict[str, str]:  # noqa: E743
        return dict(self.labels)

    def key(self):
        return (self.name, self.labels)

    def __str__(self):
        return f"{self.name}{{{','.join(f'{k}={v!r}' for k, v in self.labels)}}} {self.value:g}"


class Scrape:
    """One /metrics exposition, parsed (strictly: an unparsable line raises)."""

    def __init__(self, text: str):
        self.text = text
        self.types: Dict[str, str] = {}
        self.samples: List[Sample] = []
        for ln, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                f = line.split(None, 3)
                if len(f) >= 4 and f[1] == "TYPE":
                    self.types[f[2]] = f[3].strip()
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise HarnessError(f"/metrics line {ln} is not a valid sample: {line!r}")
            name, lab, val = m.group(1), m.group(2) or "", m.group(3)
            labels = []
            pos = 0
            while pos < len(lab):
                lm = _LABEL.match(lab, pos)
                if not lm or lm.end() == pos:
                    raise HarnessError(f"/metrics line {ln}: bad labels {lab!r}")
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
            self.samples.append(Sample(name, tuple(sorted(labels)), float(val)))

    def select(self, name: str, **want) -> List[Sample]:
        return [s for s in self.samples if s.name == name and
                all(s.l.get(k) == v for k, v in want.items())]

    def sum(self, name: str, **want) -> float:
        return sum(s.value for s in self.select(name, **want))

    def by(self, name: str, label: str, **want) -> Dict[str, float]:
        out: Dict[str, float] = collections.defaultdict(float)
        for s in self.select(name, **want):
            out[s.l.get(label)] += s.value
        return dict(out)

    def values(self, name: str, label: str, **want) -> Set[Optional[str]]:
        return {s.l.get(label) for s in self.select(name, **want)}

    def counter_samples(self) -> List[Sample]:
        """Every sample that must never decrease: counters (…_total and
        families TYPEd counter) and histogram _bucket/_count/_sum."""
        hist = {n for n, t in self.types.items() if t == "histogram"}
        ctr = {n for n, t in self.types.items() if t == "counter"}
        out = []
        for s in self.samples:
            base = re.sub(r"_(bucket|count|sum)$", "", s.name)
            if s.name.endswith("_total") or s.name in ctr or \
                    (base in hist and s.name != base):
                out.append(s)
        return out

    def dump(self, prefix: str = "http_") -> str:
        return "\n".join(l for l in self.text.splitlines() if l.startswith(prefix))


def scrape(d: harness.Obsd) -> Scrape:
    c = http.client.HTTPConnection(HOST, d.port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        ctype = r.getheader("Content-Type", "")
    finally:
        c.close()
    if r.status != 200:
        raise HarnessError(f"obsd GET /metrics -> {r.status}: {body[:300]!r}")
    if not ctype.startswith("text/plain"):
        raise HarnessError(f"obsd /metrics Content-Type {ctype!r} (want text/plain; version=0.0.4)")
    return Scrape(body.decode("utf-8"))


def wait_count(d: harness.Obsd, expected: int, name: str = "http_requests_total",
               timeout: float = COUNT_TIMEOUT, settle: float = SETTLE, **labels) -> Scrape:
    """Poll /metrics until sum(name{labels}) >= expected (or timeout), then
    wait `settle` more and scrape once again (so extras show up too)."""
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(d)
        if s.sum(name, **labels) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(settle)
    return scrape(d)


# -- promtool --------------------------------------------------------------------

def promtool_check(text: str) -> Tuple[int, str]:
    """`promtool check metrics` on text (stdin); (exit code, everything printed)."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace").strip()


# -- load ---------------------------------------------------------------------------

def ab_exact(url: str, n: int, c: int, status: int) -> int:
    """ab -k -n N -c C url where every answer must be `status`. Returns N
    once ab confirms N complete requests, none failed, and (for non-2xx
    statuses) N non-2xx responses: an exact count of answered requests.
    (clients.ab refuses non-2xx; /boom needs this variant.)"""
    args = ["ab", "-k", "-n", str(n), "-c", str(c), "-s", "30", "-q", url]
    p = subprocess.run(args, capture_output=True, text=True, timeout=180)

    def fld(name: str, default=None) -> int:
        m = re.search(r"^" + re.escape(name) + r":\s+(\d+)", p.stdout, re.M)
        if not m:
            if default is not None:
                return default
            raise HarnessError(f"ab output has no {name!r} (exit {p.returncode})\n{p.stdout}\n{p.stderr}")
        return int(m.group(1))

    complete, failed, non2xx = fld("Complete requests"), fld("Failed requests"), fld("Non-2xx responses", 0)
    want_non2xx = 0 if 200 <= status < 300 else n
    if p.returncode != 0 or complete != n or failed or non2xx != want_non2xx:
        raise HarnessError(f"ab {url}: exit {p.returncode} complete={complete} failed={failed} "
                           f"non2xx={non2xx} (want {n}/0/{want_non2xx})\n{p.stdout}\n{p.stderr}")
    return n


# A minimal keep-alive request; BATCH_BYTES keeps one pipelined batch well
# under obsd's default --capture-bytes (2048): the server reads a whole batch
# with one read, and only the first 2048 bytes of a read are captured.
BATCH_BYTES = 1800


def _req(target: str, port: int) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("latin-1")


class KeepAlive:
    """One raw keep-alive connection: requests are written in pipelined
    batches (one sendall each, < BATCH_BYTES) and every response is read
    before the next batch. Counts statuses exactly. Never send /boom on it:
    uvicorn closes the connection after the 500 of an app exception, and
    requests pipelined behind it would be read but never answered."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.conn = clients._Conn(HOST, port, timeout)
        self.local_port = self.conn.sock.getsockname()[1]
        self.statuses: collections.Counter = collections.Counter()
        self.paths: List[str] = []
        self.bytes_sent = 0        # exact request bytes written
        self.bytes_received = 0    # exact response bytes read

    def run(self, targets: Sequence[str]) -> None:
        i = 0
        while i < len(targets):
            batch, size = [], 0
            while i < len(targets):
                r = _req(targets[i], self.port)
                if batch and size + len(r) > BATCH_BYTES:
                    break
                batch.append((targets[i], r))
                size += len(r)
                i += 1
            data = b"".join(r for _, r in batch)
            self.conn.sock.sendall(data)
            self.bytes_sent += len(data)
            for t, _ in batch:
                st, nb, _h, _b = self.conn.read_response("GET")
                self.bytes_received += nb
                self.statuses[st] += 1
                self.paths.append(clients.path_of(t))
        if self.conn.buf:
            raise HarnessError(f"{len(self.conn.buf)} unexpected bytes after the last response")

    def close(self) -> None:
        self.conn.close()


def keepalive_parallel(port: int, targets: Sequence[str], conns: int) -> collections.Counter:
    """Split targets over `conns` keep-alive connections run in threads;
    returns the exact Counter of statuses received (raises on any error)."""
    parts = [list(targets[i::conns]) for i in range(conns)]
    results: List[Optional[collections.Counter]] = [None] * conns
    errors: List[str] = []

    def work(i):
        k = KeepAlive(port)
        try:
            k.run(parts[i])
            results[i] = k.statuses
        except Exception as e:  # noqa: BLE001
            errors.append(f"connection {i}: {e!r}")
        finally:
            k.close()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    if errors:
        raise HarnessError("keep-alive client failed: " + "; ".join(errors))
    total: collections.Counter = collections.Counter()
    for r in results:
        total += r
    return total


# -- gunicorn with N workers; who owns a connection --------------------------------

class Gunicorn(harness.Server):
    """gunicorn -k uvicorn.workers.UvicornWorker -w N app:app (harness.Server
    hard-codes -w 2)."""

    def __init__(self, workdir: Path, workers: int):
        super().__init__("gunicorn-uvicorn", workdir)
        self.workers = workers

    def start(self, timeout: float = harness.READY_TIMEOUT) -> "Gunicorn":
        cmd = [harness.PY, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", str(self.workers),
               "-b", f"{HOST}:{self.port}", "app:app"]
        # own log file (not under .out/, which a parallel pytest session's
        # start wipes): its "Application startup complete" lines are read
        self.log_file = self.dir / "gunicorn.log"
        with open(self.log_file, "wb") as f:
            self.proc = harness.spawn(cmd, f"server-gunicorn-w{self.workers}", cwd=str(self.dir),
                                      stdout=f, stderr=f)
        deadline = time.monotonic() + timeout
        while not (harness.listening(self.port) and len(self.worker_pids()) == self.workers):
            if self.proc.poll() is not None:
                raise HarnessError(f"gunicorn exited {self.proc.returncode}\n{self.log()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"gunicorn: not listening with {self.workers} workers after {timeout}s "
                                   f"(workers {sorted(self.worker_pids())})\n{self.log()}")
            time.sleep(0.05)
        # each UvicornWorker logs "Application startup complete." when serving
        while self.log().count("Application startup complete") < self.workers:
            if time.monotonic() > deadline:
                raise HarnessError(f"gunicorn workers not all started after {timeout}s\n{self.log()}")
            time.sleep(0.05)
        self.pids()
        return self

    def log(self) -> str:
        return harness.tail(self.log_file)

    def worker_pids(self) -> Set[int]:
        """Direct children of the gunicorn master."""
        return {c for c, pp in harness._proc_ppids().items() if pp == self.proc.pid}


def _server_socket_inode(server_port: int, client_port: int) -> int:
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(fn) as f:
            next(f)
            for line in f:
                x = line.split()
                if int(x[1].rsplit(":", 1)[1], 16) == server_port and \
                        int(x[2].rsplit(":", 1)[1], 16) == client_port:
                    return int(x[9])
    return 0


def conn_owner(server_port: int, client_port: int, pids: Iterable[int], timeout: float = 5.0) -> int:
    """The pid (among pids) holding the server side of the connection
    client_port -> server_port: the worker that accept()ed it."""
    deadline = time.monotonic() + timeout
    while True:
        ino = _server_socket_inode(server_port, client_port)
        if ino:
            want = f"socket:[{ino}]"
            for pid in pids:
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                            return pid
                    except OSError:
                        pass
        if time.monotonic() > deadline:
            raise HarnessError(f"no process among {sorted(pids)} owns the server side of "
                               f"{client_port}->{server_port} (inode {ino})")
        time.sleep(0.01)


# -- a real Prometheus ---------------------------------------------------------------

class Prometheus:
    def __init__(self, workdir: Path, target_port: int):
        self.dir = Path(workdir)
        self.port = harness.free_port()
        self.target = f"{HOST}:{target_port}"
        self.proc = None

    def start(self, timeout: float = 30.0) -> "Prometheus":
        if not os.access(PROMETHEUS, os.X_OK):
            raise HarnessError(f"{PROMETHEUS} missing (Debian package prometheus)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: obsd\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{self.target}']\n")
        data = self.dir / "tsdb"
        data.mkdir(parents=True, exist_ok=True)
        self.proc = harness.spawn([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                   f"--web.listen-address={HOST}:{self.port}", "--log.level=warn"],
                                  "prometheus")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"prometheus exited {self.proc.returncode}\n{harness.tail(self.proc.log_path)}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"prometheus not ready after {timeout}s\n{harness.tail(self.proc.log_path)}")
            time.sleep(0.1)

    def api(self, path: str, **params) -> dict:
        url = f"http://{HOST}:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        if doc.get("status") != "success":
            raise HarnessError(f"prometheus {url}: {doc}")
        return doc["data"]

    def query(self, q: str) -> List[Tuple[Dict[str, str], float]]:
        """Instant vector query: [(labels, value)]."""
        data = self.api("query", query=q)
        if data["resultType"] != "vector":
            raise HarnessError(f"{q}: result type {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, q: str) -> Optional[float]:
        """The single value of q; None when the vector is empty."""
        res = self.query(q)
        if not res:
            return None
        if len(res) != 1:
            raise HarnessError(f"{q}: {len(res)} series, expected 1: {res}")
        return res[0][1]

    def target_health(self) -> dict:
        ts = self.api("targets")["activeTargets"]
        return ts[0] if ts else {}

    def wait_scrapes_after(self, t_wall: float, n: int = 2, timeout: float = 20.0) -> dict:
        """Wait until the target has been scraped successfully at least n
        times after wall time t_wall (distinct lastScrape times, polled
        several times per scrape_interval)."""
        deadline = time.monotonic() + timeout
        seen: Set[str] = set()
        th: dict = {}
        while True:
            th = self.target_health()
            last = th.get("lastScrape", "")
            if th.get("health") == "up" and last and _rfc3339(last) > t_wall:
                seen.add(last)
                if len(seen) >= n:
                    return th
            if time.monotonic() > deadline:
                raise HarnessError(f"prometheus: {len(seen)} (< {n}) healthy scrapes of {self.target} after "
                                   f"{t_wall} within {timeout}s; target: {th}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc)
            self.proc = None


def _rfc3339(s: str) -> float:
    # "2024-01-02T03:04:05.123456789Z" or with +01:00 offset
    from datetime import datetime
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise HarnessError(f"cannot parse time {s!r}")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.fromisoformat(m.group(1) + tz).timestamp()
    return base + (float("0" + m.group(2)) if m.group(2) else 0.0)


def finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)
