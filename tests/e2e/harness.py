"""Process management, obsd/obsctl wrappers, workloads and truth-vs-record
comparison for the obs end-to-end tests."""
import atexit
import collections
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set

import clients
from clients import Truth

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OBSD = REPO / "build" / "obsd"
OBSCTL = REPO / "build" / "obsctl"
PY = "/usr/bin/python3"
OUT = HERE / ".out"
HOST = "127.0.0.1"

MIB = 1024 * 1024
READY_TIMEOUT = 20.0
RECORD_TIMEOUT = 15.0
SETTLE = 1.0          # after the expected count is reached, wait this long for extras
STOP_TIMEOUT = 5.0
SLOW_MIN_US = 50_000

_uniq = itertools.count(int(time.time()) % 100000 * 1000 + 100001)


def uniq() -> int:
    """A number unique within this test run (for /users/<n> and queries)."""
    return next(_uniq)


class HarnessError(Exception):
    pass


# -- processes ----------------------------------------------------------------

_live: List[subprocess.Popen] = []


def _child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _log_path(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    for i in itertools.count():
        p = OUT / (f"{name}.log" if i == 0 else f"{name}.{i}.log")
        if not p.exists():
            p.touch()
            return p
    raise AssertionError("unreachable")


def spawn(cmd: Sequence[str], name: str, cwd: Optional[str] = None,
          stdout=None, stderr=None) -> subprocess.Popen:
    """Start cmd in its own session (process group). Output not captured by
    the caller goes to .out/<name>.log."""
    log = _log_path(name)
    logf = open(log, "wb")
    p = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=_child_env(),
                         stdin=subprocess.DEVNULL,
                         stdout=stdout if stdout is not None else logf,
                         stderr=stderr if stderr is not None else logf,
                         start_new_session=True)
    logf.close()
    p.log_path = log  # type: ignore[attr-defined]
    p.cmd_str = " ".join(map(str, cmd))  # type: ignore[attr-defined]
    _live.append(p)
    return p


def kill_group(p: subprocess.Popen, sig_first: int = signal.SIGTERM, grace: float = 3.0) -> None:
    """Terminate p's whole process group (it is the group leader): sig_first,
    then SIGKILL after `grace` seconds."""
    try:
        pgid = p.pid  # start_new_session => pgid == pid
        if p.poll() is None:
            try:
                os.killpg(pgid, sig_first)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # leftovers of the group (workers)
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    finally:
        if p in _live:
            _live.remove(p)


@atexit.register
def _kill_all_live():
    for p in list(_live):
        kill_group(p, signal.SIGKILL, 0.5)


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def _proc_ppids() -> Dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read().decode("latin-1")
        except OSError:
            continue
        rest = s.rsplit(")", 1)[1].split()
        out[int(d)] = int(rest[1])  # fields after "comm)": state ppid ...
    return out


def descendants(pid: int) -> Set[int]:
    """pid plus all its live descendants (following /proc/*/stat ppid chains)."""
    ppids = _proc_ppids()
    kids = collections.defaultdict(list)
    for c, pp in ppids.items():
        kids[pp].append(c)
    res, todo = {pid}, [pid]
    while todo:
        for c in kids.get(todo.pop(), ()):
            if c not in res:
                res.add(c)
                todo.append(c)
    return res


def listening(port: int) -> bool:
    """Is some socket in LISTEN state on local TCP `port` (no connection made)?"""
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def server_side_unread(server_port: int, client_port: int) -> Optional[int]:
    """rx_queue (bytes not yet read by the server) of the server-side socket
    of the loopback connection client_port -> server_port; None if absent."""
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    lport = int(fields[1].rsplit(":", 1)[1], 16)
                    rport = int(fields[2].rsplit(":", 1)[1], 16)
                    if lport == server_port and rport == client_port:
                        return int(fields[4].split(":")[1], 16)
        except OSError:
            pass
    return None


def wait_server_read(server_port: int, client_port: int, timeout: float = 2.0) -> None:
    """Wait until the server has read everything the client sent."""
    deadline = time.monotonic() + timeout
    while server_side_unread(server_port, client_port) != 0:
        if time.monotonic() > deadline:
            raise HarnessError(f"server on {server_port} did not read the request of client port "
                               f"{client_port} within {timeout}s")
        time.sleep(0.001)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- servers ------------------------------------------------------------------

def _server_cmd(setup: str, port: int) -> List[str]:
    p = str(port)
    return {
        "uvicorn-h11": [PY, "-m", "uvicorn", "--host", HOST, "--port", p,
                        "--http", "h11", "--loop", "asyncio", "app:app"],
        "uvicorn-httptools": [PY, "-m", "uvicorn", "--host", HOST, "--port", p,
                              "--http", "httptools", "--loop", "uvloop", "app:app"],
        "hypercorn": [PY, "-m", "hypercorn", "-b", f"{HOST}:{p}", "app:app"],
        "daphne": [PY, "-m", "daphne", "-b", HOST, "-p", p, "app:app"],
        "gunicorn-uvicorn": [PY, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
                             "-w", "2", "-b", f"{HOST}:{p}", "app:app"],
    }[setup]


SETUPS = ["uvicorn-h11", "uvicorn-httptools", "hypercorn", "daphne", "gunicorn-uvicorn"]


class Server:
    def __init__(self, setup: str, workdir: Path):
        self.setup = setup
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "app.py", self.dir / "app.py")
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._pids: Set[int] = set()

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = READY_TIMEOUT) -> "Server":
        """Start the server and wait until its port is in LISTEN state. This
        makes NO connection: the first connection is the caller's first
        (recorded) request."""
        self.proc = spawn(_server_cmd(self.setup, self.port), f"server-{self.setup}", cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.setup} exited with {self.proc.returncode} before listening "
                                   f"({self.proc.cmd_str})\n{tail(self.proc.log_path)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.setup} not listening on {self.port} after {timeout}s\n"
                                   f"{tail(self.proc.log_path)}")
            time.sleep(0.05)
        self.pids()
        return self

    def pids(self) -> Set[int]:
        """Main pid plus all descendants; cumulative over calls (so workers
        seen once stay selected)."""
        if self.proc is not None and self.proc.poll() is None:
            self._pids |= descendants(self.proc.pid)
        elif self.proc is not None:
            self._pids.add(self.proc.pid)
        return set(self._pids)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)

    def log(self) -> str:
        return tail(self.proc.log_path) if self.proc else ""


# -- obsd ---------------------------------------------------------------------

def require_binary(path: Path) -> None:
    if os.access(path, os.X_OK):
        return
    import pytest
    msg = (f"{path} does not exist or is not executable: build it first with `make` in {REPO} "
           f"(the e2e suite needs the real daemon/CLI)")
    if os.environ.get("CI") != "true" and os.environ.get("OBS_E2E_ALLOW_SKIP") == "1":
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)


class Obsd:
    def __init__(self, filters: Sequence[str] = (), name: str = "obsd"):
        self.filters = list(map(str, filters))
        self.port = free_port()
        self.name = name
        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None
        self.ready = False
        self.stderr_path: Optional[Path] = None

    def start(self) -> "Obsd":
        require_binary(OBSD)
        cmd = [OBSD, "--listen", f"{HOST}:{self.port}"] + self.filters
        self.proc = spawn(cmd, self.name)
        self.stderr_path = self.proc.log_path
        deadline = time.monotonic() + READY_TIMEOUT
        last = None
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"obsd exited with {self.proc.returncode} before /ready was 200 "
                                   f"({self.proc.cmd_str})\n--- obsd output ---\n{tail(self.stderr_path)}")
            try:
                st, body = self.get("/ready", timeout=2)
                last = f"{st} {body[:200]!r}"
                if st == 200:
                    self.ready = True
                    return self
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise HarnessError(f"obsd GET /ready not 200 within {READY_TIMEOUT}s (last: {last}) "
                                   f"({self.proc.cmd_str})\n--- obsd output ---\n{tail(self.stderr_path)}")
            time.sleep(0.1)

    def get(self, path: str, timeout: float = 10.0):
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get_json(self, path: str):
        st, body = self.get(path)
        if st != 200:
            raise HarnessError(f"obsd GET {path} -> {st}: {body[:500]!r}")
        return json.loads(body)

    def requests(self) -> List[dict]:
        doc = self.get_json("/api/requests?limit=100000")
        recs = doc["requests"]
        if doc.get("count") != len(recs):
            raise HarnessError(f"/api/requests count={doc.get('count')} but {len(recs)} records")
        return recs

    def stop(self) -> Optional[int]:
        """SIGTERM; returns the exit code, or None if it did not exit within
        STOP_TIMEOUT (then it is SIGKILLed)."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.exit_code = None
        else:
            self.exit_code = self.proc.returncode
        kill_group(self.proc, signal.SIGKILL, 0.1)
        self.proc = None
        return self.exit_code

    def output(self) -> str:
        return tail(self.stderr_path) if self.stderr_path else "<not started>"


def bpf_progs_held(pid: int) -> Dict[str, int]:
    """name -> id of the BPF programs process pid holds (its fds' fdinfo)."""
    held = set()
    for f in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{f}") as fp:
                held |= {int(l.split()[1]) for l in fp if l.startswith("prog_id:")}
        except OSError:
            pass
    progs = json.loads(subprocess.check_output(["bpftool", "prog", "show", "-j"]))
    return {p["name"]: p["id"] for p in progs if p["id"] in held and "name" in p}


def bpf_links_of(prog_id: int) -> List[dict]:
    """The BPF links (attachments) of one program ("perf_event" for a
    syscall tracepoint)."""
    links = json.loads(subprocess.check_output(["bpftool", "link", "show", "-j"]))
    return [l for l in links if l.get("prog_id") == prog_id]


def stop_obsd_checked(d: Obsd) -> None:
    """SIGTERM obsd; it must exit 0 within 5 s (checked only if it became
    ready: a start failure is reported by the start itself)."""
    rc = d.stop()
    if not d.ready:
        return
    assert rc == 0, (f"obsd ({' '.join(d.filters) or 'no filters'}) did not exit 0 within "
                     f"{STOP_TIMEOUT}s of SIGTERM: exit code {rc} (None = still running, killed)"
                     f"\n--- obsd output ---\n{d.output()}")


def wait_records(fetch: Callable[[], List[dict]], pids: Callable[[], Set[int]], expected: int,
                 timeout: float = RECORD_TIMEOUT, settle: float = SETTLE) -> List[dict]:
    """Poll until `expected` records carry one of pids() (or timeout), then
    wait `settle` seconds more and fetch once again to catch extras."""
    deadline = time.monotonic() + timeout
    while True:
        p = pids()
        sel = [r for r in fetch() if r.get("pid") in p]
        if len(sel) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(settle)
    p = pids()
    return [r for r in fetch() if r.get("pid") in p]


# -- comparison ---------------------------------------------------------------

def rec_key(r: dict):
    return (r.get("method"), r.get("path"), r.get("status"))


def _fmt_key(k) -> str:
    return f"{k[0]} {k[1]} {k[2]}"


def diff_truth(truth: Sequence[Truth], records: Sequence[dict], max_examples: int = 8) -> Optional[str]:
    """None if the (method, path, status) multisets are equal; else a
    readable report of what is missing and what is extra."""
    want = collections.Counter(t.key() for t in truth)
    got = collections.Counter(rec_key(r) for r in records)
    if want == got:
        return None
    missing, extra = want - got, got - want
    lines = [f"truth: {sum(want.values())} responses received by clients; "
             f"obs: {sum(got.values())} records"]
    if missing:
        lines.append(f"MISSING ({sum(missing.values())}): a client received these, obs has no record:")
        for k, n in sorted(missing.items(), key=lambda kv: str(kv[0])):
            kinds = collections.Counter(t.kind for t in truth if t.key() == k)
            lines.append(f"  {n:4d} x {_fmt_key(k)}   (truth {want[k]}, obs {got[k]}; "
                         f"clients: {dict(kinds)})")
    if extra:
        lines.append(f"EXTRA ({sum(extra.values())}): obs reported these, no client received them:")
        for k, n in sorted(extra.items(), key=lambda kv: str(kv[0])):
            lines.append(f"  {n:4d} x {_fmt_key(k)}   (truth {want[k]}, obs {got[k]})")
            for r in [r for r in records if rec_key(r) == k][:3]:
                lines.append("         e.g. " + brief_record(r))
    return "\n".join(lines)


def brief_record(r: dict) -> str:
    keys = ("method", "path", "status", "outcome", "error", "pid", "client", "bytes_in",
            "bytes_out", "duration_us", "flags")
    return json.dumps({k: r.get(k) for k in keys})


def check_raw_bytes(truth: Sequence[Truth], records: Sequence[dict]) -> List[str]:
    """For every request whose bytes the client knows exactly (raw and
    pipelined), find its record by (client addr, method, path) and compare
    bytes_in / bytes_out."""
    problems = []
    by_client = collections.defaultdict(list)
    for r in records:
        by_client[r.get("client")].append(r)
    for t in truth:
        if t.bytes_in is None or t.client is None:
            continue
        cands = [r for r in by_client.get(t.client, []) if r.get("method") == t.method and r.get("path") == t.path]
        if len(cands) != 1:
            problems.append(f"{t.describe()}: expected exactly 1 record with client={t.client} "
                            f"{t.method} {t.path}, found {len(cands)}; records with that client: "
                            f"{[brief_record(r) for r in by_client.get(t.client, [])][:5]}")
            continue
        r = cands[0]
        if r.get("bytes_in") != t.bytes_in or r.get("bytes_out") != t.bytes_out:
            problems.append(f"{t.describe()}: record has bytes_in={r.get('bytes_in')} "
                            f"bytes_out={r.get('bytes_out')} (client: sent {t.bytes_in}, "
                            f"received {t.bytes_out})  {brief_record(r)}")
    return problems


def check_slow(truth: Sequence[Truth], records: Sequence[dict]) -> List[str]:
    """Every answered /slow record: duration_us >= 50 ms; for requests timed by a raw
    client (identified by client addr), duration_us <= the client's elapsed."""
    problems = []
    for r in records:
        if r.get("path") != "/slow" or r.get("status") == 0:  # status 0: never answered
            continue
        d = r.get("duration_us")
        if not isinstance(d, int) or d < SLOW_MIN_US:
            problems.append(f"/slow record with duration_us={d!r} < {SLOW_MIN_US}: {brief_record(r)}")
    for t in truth:
        if t.path != "/slow" or t.kind != "raw":
            continue
        cands = [r for r in records if r.get("client") == t.client and r.get("path") == "/slow"]
        if len(cands) != 1:
            problems.append(f"{t.describe()}: expected 1 /slow record for client {t.client}, found {len(cands)}")
            continue
        d = cands[0].get("duration_us")
        if not (isinstance(d, int) and SLOW_MIN_US <= d <= t.elapsed_us):
            problems.append(f"{t.describe()}: duration_us={d!r} not within [{SLOW_MIN_US}, {t.elapsed_us}] "
                            f"(client elapsed)  {brief_record(cands[0])}")
    return problems


def check_outcomes(truth: Sequence[Truth], records: Sequence[dict]) -> List[str]:
    """Every record is outcome "ok" with error "" -- except the records of
    pipelined requests the server read but never answered before closing the
    connection (hypercorn), which must be outcome "failed", error
    "server_closed" (docs/records.md)."""
    unanswered = {(t.client, t.method, t.path) for t in truth if t.kind == "pipeline-unanswered"}
    problems = []
    for r in records:
        if (r.get("client"), r.get("method"), r.get("path")) in unanswered and r.get("status") == 0:
            if r.get("outcome") != "failed" or r.get("error") != "server_closed":
                problems.append(f"pipelined request the server closed without answering: expected "
                                f"outcome failed / error server_closed: {brief_record(r)}")
        elif r.get("outcome") != "ok" or r.get("error") not in ("", None):
            problems.append(f"outcome/error not ok/'': {brief_record(r)}")
    return problems


# -- workloads ----------------------------------------------------------------

def expected_status(path: str) -> int:
    if path in ("/text", "/json", "/stream", "/upload", "/slow") or path.startswith("/users/"):
        return 200
    if path == "/boom":
        return 500
    return 404


def check_truth_sane(truth: Sequence[Truth]) -> None:
    """Harness self-check: each client got the status the app must answer,
    and raw bodies are what the app sends. A failure here is a test-harness
    or server problem, not an obs problem."""
    bad = []
    for t in truth:
        if t.kind == "pipeline-unanswered":
            continue
        if t.status != expected_status(t.path):
            bad.append(f"{t.describe()}: expected status {expected_status(t.path)}")
        if t.body is None:
            continue
        if t.path == "/stream" and len(t.body) != MIB:
            bad.append(f"{t.describe()}: stream body {len(t.body)} bytes, expected {MIB}")
        if t.path == "/upload" and json.loads(t.body) != {"received": MIB}:
            bad.append(f"{t.describe()}: upload answered {t.body[:100]!r}")
        if t.path.startswith("/users/") and json.loads(t.body) != {"id": t.path[len("/users/"):]}:
            bad.append(f"{t.describe()}: users answered {t.body[:100]!r}")
    if bad:
        raise HarnessError("client truth is inconsistent with the app:\n" + "\n".join(bad))


def probe(port: int, timeout: float = READY_TIMEOUT) -> Truth:
    """The server's first connection: a recorded raw GET /text, retried on
    connection refused only (nothing was received then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return clients.raw_request(HOST, port, "GET", "/text")
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def drive_full(port: int, workdir: Path) -> List[Truth]:
    """Every client kind over every route. Returns the truth."""
    T: List[Truth] = [probe(port)]
    body_file = clients.make_body_file(str(workdir), MIB, "upload.bin")
    upload_body = Path(body_file).read_bytes()
    raw = lambda m, t, body=b"": T.append(clients.raw_request(HOST, port, m, t, body))  # noqa: E731

    # raw single-request connections (exact bytes; identified by client addr)
    raw("GET", "/text")
    raw("GET", f"/text?q={uniq()}&x=y")
    raw("GET", "/json")
    for _ in range(3):
        raw("GET", f"/users/{uniq()}")
    raw("GET", "/stream")
    raw("POST", "/upload", upload_body)
    raw("GET", "/slow")
    raw("GET", f"/slow?u={uniq()}")
    raw("GET", "/boom")
    raw("GET", f"/nope/{uniq()}")

    # pipelining: 10 requests in ONE sendall
    T += clients.pipeline(HOST, port, [
        ("GET", f"/users/{uniq()}"), ("GET", "/text"), ("GET", f"/users/{uniq()}"),
        ("GET", "/json"), ("GET", f"/users/{uniq()}"), ("GET", "/slow"),
        ("GET", f"/users/{uniq()}"), ("GET", f"/missing-{uniq()}"), ("GET", f"/users/{uniq()}"),
        ("GET", "/stream"),
    ])

    base = f"http://{HOST}:{port}"
    common = [("GET", "/text", None), ("GET", "/json", None), ("GET", f"/users/{uniq()}", None),
              ("GET", f"/users/{uniq()}?a=1", None), ("GET", "/stream", None), ("GET", "/slow", None),
              ("GET", "/boom", None), ("GET", f"/does-not-exist/{uniq()}", None),
              ("POST", "/upload", body_file), ("GET", "/text", None)]
    T += clients.curl(base, common)                 # keep-alive
    T += clients.curl(base, common, close=True)     # Connection: close
    T += clients.ab(f"{base}/text", 200, 4)         # ab -k -n 200 -c 4
    check_truth_sane(T)
    return T


def drive_small(port: int, workdir: Path) -> List[Truth]:
    """A shorter mix (filter / obsctl tests)."""
    T: List[Truth] = [probe(port)]
    base = f"http://{HOST}:{port}"
    T.append(clients.raw_request(HOST, port, "GET", f"/users/{uniq()}"))
    T += clients.pipeline(HOST, port, [("GET", f"/users/{uniq()}") for _ in range(5)] +
                          [("GET", "/text"), ("GET", "/json"), ("GET", "/nope"), ("GET", "/slow"),
                           ("GET", f"/users/{uniq()}")])
    T += clients.curl(base, [("GET", "/text", None), ("GET", "/json", None), ("GET", f"/users/{uniq()}", None),
                             ("GET", "/slow", None), ("GET", "/boom", None), ("GET", "/nope", None)])
    T += clients.curl(base, [("GET", "/text", None), ("GET", f"/users/{uniq()}", None)], close=True)
    T += clients.ab(f"{base}/text", 20, 2)
    check_truth_sane(T)
    return T


# -- obsctl -------------------------------------------------------------------

class Obsctl:
    """obsctl trace --json [filters]: stdout lines and stderr lines are
    collected by reader threads, with their arrival time."""

    def __init__(self, args: Sequence[str], name: str = "obsctl"):
        require_binary(OBSCTL)
        self.args = [OBSCTL] + list(map(str, args))
        self.stdout_lines: List[tuple] = []   # (monotonic time, line)
        self.stderr_lines: List[tuple] = []
        self._cv = threading.Condition()
        self.proc = spawn(self.args, name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._threads = [threading.Thread(target=self._reader, args=(self.proc.stdout, self.stdout_lines), daemon=True),
                         threading.Thread(target=self._reader, args=(self.proc.stderr, self.stderr_lines), daemon=True)]
        for t in self._threads:
            t.start()

    def _reader(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cv:
                sink.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_stderr(self, needle: str, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(needle in l for _, l in self.stderr_lines):
                if self.proc.poll() is not None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))
        return True

    def wait_lines(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.stdout_lines) < n and self.proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(min(left, 0.2))

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGINT; exit code or None if it did not exit within timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        for t in self._threads:
            t.join(2)
        return rc

    def kill(self):
        kill_group(self.proc, signal.SIGKILL, 0.1)

    def stderr_text(self) -> str:
        return "\n".join(l for _, l in self.stderr_lines[-60:])
