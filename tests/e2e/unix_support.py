"""Support for test_unix.py: servers listening on UNIX stream sockets, clients
that talk to them, a real Django project behind gunicorn, and a real nginx in
front of it whose access log is the truth.

  UnixServer        an ASGI server bound to a UNIX socket (uvicorn --uds,
                    hypercorn -b unix:, daphne -u, gunicorn -b unix:), ready
                    when /proc/net/unix shows the path listening; no
                    connection is made to it before the test's first request
  uds_raw()         one request on its own UNIX connection, exact bytes both
                    ways; it carries an X-Request-ID of its own (obs honours
                    it from UNIX peers with --trusted-proxy unix), which is
                    how its record is found: a UNIX client has no address
  uds_pipeline()    N requests in ONE send on one UNIX connection
  curl_unix()       curl --unix-socket, several transfers per invocation
  DjangoProject     `django-admin startproject` + views + `migrate` (sqlite)
  Nginx             Debian's nginx with its own prefix and config in a temp
                    dir (never the distribution's service), proxying to a
                    UNIX socket through an upstream block with keepalive;
                    its JSON access log gives, per request, what the client
                    got and what each upstream attempt sent and received

Everything lives in a short temporary directory under /tmp (sun_path holds
107 bytes, pytest's tmp_path can be longer).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import clients
import harness
from clients import Truth
from harness import HOST, PY, HarnessError

GUNICORN_KEEPALIVE = 75     # > nginx's upstream keepalive_timeout: nginx closes idle ones first
DJANGO_MODULE = "djsite"
DJANGO_SERVICE = f"{DJANGO_MODULE}.asgi:application"


def short_tmpdir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


def new_rid() -> str:
    """An X-Request-ID: 32 lowercase hex, like obs's own ids."""
    return uuid.uuid4().hex


def my_comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


# -- /proc/net/unix -------------------------------------------------------------

SO_ACCEPTCON = 0x10000


def unix_listening(path: str) -> bool:
    """Is a stream socket listening on `path` (no connection made)?"""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & SO_ACCEPTCON:
                    return True
    except OSError:
        pass
    return False


# -- servers --------------------------------------------------------------------

def uds_cmd(setup: str, sock: str, app: str = "app:app") -> List[str]:
    return {
        "uvicorn-h11": [PY, "-m", "uvicorn", "--uds", sock, "--http", "h11", "--loop", "asyncio",
                        "--log-level", "warning", app],
        "uvicorn-httptools": [PY, "-m", "uvicorn", "--uds", sock, "--http", "httptools",
                              "--loop", "uvloop", "--log-level", "warning", app],
        "hypercorn": [PY, "-m", "hypercorn", "-b", f"unix:{sock}", app],
        "daphne": [PY, "-m", "daphne", "-u", sock, app],
        "gunicorn-uvicorn": [PY, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                             "--keep-alive", str(GUNICORN_KEEPALIVE), "-b", f"unix:{sock}", app],
    }[setup]


class UnixServer:
    """An ASGI server on a UNIX socket. With app_dir None, tests/e2e/app.py
    is copied into the server's own directory."""

    def __init__(self, setup: str, workdir: Path, sock_name: str = "app.sock",
                 app: str = "app:app", app_dir: Optional[Path] = None):
        self.setup = setup
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if app_dir is None:
            shutil.copy(harness.HERE / "app.py", self.dir / "app.py")
        self.cwd = app_dir or self.dir
        self.sock = str(self.dir / sock_name)
        assert len(self.sock) < 108, f"socket path too long for sun_path: {self.sock}"
        self.app = app
        self.proc = None
        self._pids: Set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = harness.READY_TIMEOUT) -> "UnixServer":
        self.proc = harness.spawn(uds_cmd(self.setup, self.sock, self.app),
                                  f"server-unix-{self.setup}", cwd=str(self.cwd))
        deadline = time.monotonic() + timeout
        while not unix_listening(self.sock):
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.setup} exited {self.proc.returncode} before listening on "
                                   f"{self.sock} ({self.proc.cmd_str})\n{harness.tail(self.proc.log_path)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.setup} not listening on {self.sock} after {timeout}s\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        if self.setup == "gunicorn-uvicorn":
            self._wait_workers(2, deadline)
        self.pids()
        return self

    def _wait_workers(self, n: int, deadline: float) -> None:
        while len(harness.descendants(self.pid)) < n + 1:
            if time.monotonic() > deadline:
                raise HarnessError(f"gunicorn has not forked {n} workers\n{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)

    def pids(self) -> Set[int]:
        """Main pid and every descendant seen so far (cumulative)."""
        if self.proc is not None and self.proc.poll() is None:
            self._pids |= harness.descendants(self.proc.pid)
        elif self.proc is not None:
            self._pids.add(self.proc.pid)
        return set(self._pids)

    def workers(self) -> Set[int]:
        return harness.descendants(self.pid) - {self.pid}

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc)

    def log(self) -> str:
        return harness.tail(self.proc.log_path) if self.proc else ""


# -- clients --------------------------------------------------------------------

class _UnixConn(clients._Conn):
    """clients._Conn over a UNIX stream socket (same response parsing and
    byte counting)."""

    def __init__(self, path: str, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.local = None
        self.buf = bytearray()
        self.eof = False


def _connect(path: str, timeout: float) -> _UnixConn:
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while True:
        try:
            return _UnixConn(path, timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _truth(kind, method, target, status, rid, nin, nout, elapsed, body) -> Truth:
    t = Truth(method=method, path=clients.path_of(target), status=status, kind=kind, target=target,
              bytes_in=nin, bytes_out=nout, elapsed_us=elapsed, body=body)
    t.rid = rid  # type: ignore[attr-defined]
    return t


def uds_raw(path: str, method: str, target: str, body: bytes = b"",
            timeout: float = clients.DEFAULT_TIMEOUT) -> Truth:
    """One request on a fresh UNIX connection, exact bytes, its own X-Request-ID."""
    rid = new_rid()
    data = clients.build_request(method, target, "localhost", body, [("X-Request-ID", rid)])
    c = _connect(path, timeout)
    try:
        t0 = time.perf_counter()
        c.sock.sendall(data)
        status, nout, _h, rbody = c.read_response(method)
        elapsed = int((time.perf_counter() - t0) * 1e6)
        if c.buf:
            raise clients.ClientError(f"{len(c.buf)} unexpected bytes after the response")
    finally:
        c.close()
    return _truth("raw", method, target, status, rid, len(data), nout, elapsed, rbody)


def uds_pipeline(path: str, requests: Sequence[Tuple[str, str]],
                 timeout: float = clients.DEFAULT_TIMEOUT) -> List[Truth]:
    """All requests in ONE send on one UNIX connection, then their responses
    in order; each request carries its own X-Request-ID."""
    rids = [new_rid() for _ in requests]
    reqs = [clients.build_request(m, t, "localhost", b"", [("X-Request-ID", r)])
            for (m, t), r in zip(requests, rids)]
    c = _connect(path, timeout)
    out = []
    try:
        t0 = time.perf_counter()
        c.sock.sendall(b"".join(reqs))
        for (m, t), data, rid in zip(requests, reqs, rids):
            status, nout, _h, body = c.read_response(m)
            out.append(_truth("pipeline", m, t, status, rid, len(data), nout,
                              int((time.perf_counter() - t0) * 1e6), body))
        if c.buf:
            raise clients.ClientError(f"{len(c.buf)} unexpected bytes after the last response")
    finally:
        c.close()
    return out


_CURL_W = "%{http_code} %{num_connects}\\n"


def curl_unix(path: str, items: Sequence[Tuple[str, str, Optional[str]]], close: bool = False,
              base: str = "http://localhost", timeout: float = 60.0,
              rids: Optional[Sequence[str]] = None) -> List[Truth]:
    """One curl --unix-socket invocation doing every item [(method, target,
    body_file)] in order (keep-alive unless close). With rids, transfer i
    sends X-Request-ID: rids[i]. base may name a TCP server instead (no
    --unix-socket when path is None)."""
    args = ["curl"]
    for i, (method, target, body_file) in enumerate(items):
        if i:
            args.append("--next")
        args += ["-sS", "--max-time", "30", "-o", "/dev/null", "-w", _CURL_W]
        if path is not None:
            args += ["--unix-socket", path]
        if close:
            args += ["-H", "Connection: close"]
        if rids is not None:
            args += ["-H", f"X-Request-ID: {rids[i]}"]
        if body_file is not None:
            args += ["-X", method, "--data-binary", "@" + body_file,
                     "-H", "Content-Type: application/octet-stream"]
        elif method != "GET":
            args += ["-X", method]
        args.append(base + target)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.splitlines()
    if p.returncode != 0 or len(lines) != len(items):
        raise clients.ClientError(f"curl exited {p.returncode} with {len(lines)}/{len(items)} results\n"
                                  f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    out = []
    for i, ((method, target, _bf), line) in enumerate(zip(items, lines)):
        status = int(line.split()[0])
        if status == 0:
            raise clients.ClientError(f"curl got no response for {method} {target}: {line}")
        t = Truth(method=method, path=clients.path_of(target), status=status,
                  kind="curl-close" if close else "curl", target=target)
        t.rid = rids[i] if rids is not None else None  # type: ignore[attr-defined]
        out.append(t)
    return out


# -- Django -----------------------------------------------------------------------

DJANGO_VIEWS = '''"""Views of the obs e2e Django project (generated by tests/e2e/unix_support.py)."""
import asyncio
import os

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt


def ok(request):
    return HttpResponse("ok\\n", content_type="text/plain")


def item(request, n):
    return JsonResponse({"item": n, "name": "obs"})


def go(request):
    return redirect("/ok")                  # 302


def forbidden(request):
    return HttpResponseForbidden("no\\n")    # 403


def gone(request):
    raise Http404("gone")                   # 404


@csrf_exempt
def echo(request):
    return JsonResponse({"received": len(request.body)})


async def slow(request):
    await asyncio.sleep(0.2)
    return HttpResponse("slept\\n", content_type="text/plain")


async def hang(request):
    """Tells which worker holds it (BASE_DIR/hang-<token>.pid), then waits
    far longer than the test: the test kills that worker."""
    token = request.GET["token"]
    tmp = os.path.join(settings.BASE_DIR, f".hang-{token}")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(settings.BASE_DIR, f"hang-{token}.pid"))
    await asyncio.sleep(120)
    return HttpResponse("late\\n")
'''

DJANGO_URLS = '''from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ok", views.ok),
    path("items/<int:n>", views.item),
    path("go", views.go),
    path("forbidden", views.forbidden),
    path("gone", views.gone),
    path("echo", views.echo),
    path("slow", views.slow),
    path("hang", views.hang),
]
'''

DJANGO_SETTINGS = '''
# obs e2e
DEBUG = False
ALLOWED_HOSTS = ["*"]
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"handlers": [], "level": "ERROR"}}
'''


def django_status(method: str, path: str) -> int:
    """What the generated project answers (the harness checks the clients got it)."""
    if path == "/ok" or path.startswith("/items/") or path in ("/slow", "/admin/login/") or \
            (method == "POST" and path == "/echo"):
        return 200
    if path in ("/go", "/admin/"):
        return 302
    if path == "/forbidden":
        return 403
    return 404


class DjangoProject:
    """A real Django project made by `django-admin startproject`, with the
    views above and its sqlite database migrated."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "proj"
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.dir.mkdir(parents=True)
        r = subprocess.run([PY, "-m", "django", "startproject", DJANGO_MODULE, str(self.dir)],
                           cwd=str(root), capture_output=True, text=True, env=env, timeout=60)
        if r.returncode:
            raise HarnessError(f"django-admin startproject failed:\n{r.stdout}\n{r.stderr}")
        pkg = self.dir / DJANGO_MODULE
        (pkg / "views.py").write_text(DJANGO_VIEWS)
        (pkg / "urls.py").write_text(DJANGO_URLS)
        with open(pkg / "settings.py", "a") as f:
            f.write(DJANGO_SETTINGS)
        r = subprocess.run([PY, "manage.py", "migrate", "--noinput"], cwd=str(self.dir),
                           capture_output=True, text=True, env=env, timeout=120)
        if r.returncode:
            raise HarnessError(f"manage.py migrate failed:\n{r.stdout}\n{r.stderr}")
        if not (self.dir / "db.sqlite3").exists():
            raise HarnessError("migrate made no db.sqlite3")

    def hang_pid(self, token: str, timeout: float = harness.READY_TIMEOUT) -> int:
        f = self.dir / f"hang-{token}.pid"
        deadline = time.monotonic() + timeout
        while not f.exists():
            if time.monotonic() > deadline:
                raise HarnessError(f"no worker took /hang?token={token} within {timeout}s")
            time.sleep(0.02)
        return int(f.read_text())


# -- nginx ------------------------------------------------------------------------

NGINX_LOG_FORMAT = (
    '{"rid":"$request_id","client_rid":"$http_x_request_id",'
    '"client":"$remote_addr:$remote_port","method":"$request_method","uri":"$request_uri",'
    '"status":"$status","request_length":"$request_length","bytes_sent":"$bytes_sent",'
    '"body_bytes_sent":"$body_bytes_sent","upstream_status":"$upstream_status",'
    '"upstream_bytes_sent":"$upstream_bytes_sent",'
    '"upstream_bytes_received":"$upstream_bytes_received",'
    '"upstream_response_length":"$upstream_response_length","upstream_addr":"$upstream_addr",'
    '"connection":"$connection","connection_requests":"$connection_requests"}')


def nginx_conf(d: Path, port: int, sock: str) -> str:
    return f"""daemon off;
master_process on;
worker_processes 2;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
	log_format obs escape=json '{NGINX_LOG_FORMAT}';
	access_log {d}/access.log obs;
	default_type text/plain;
	keepalive_timeout 600s;
	client_body_temp_path {d}/tmp/body;
	proxy_temp_path {d}/tmp/proxy;
	fastcgi_temp_path {d}/tmp/fastcgi;
	uwsgi_temp_path {d}/tmp/uwsgi;
	scgi_temp_path {d}/tmp/scgi;
	upstream djangoapp {{
		server unix:{sock};
		keepalive 8;
		keepalive_timeout 60s;
	}}
	server {{
		listen {HOST}:{port};
		location / {{
			proxy_pass http://djangoapp;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Request-ID $request_id;
			proxy_next_upstream off;
			proxy_read_timeout 120s;
		}}
	}}
}}
"""


class Nginx:
    """Debian's nginx binary, own prefix, config and logs under dir."""

    def __init__(self, d: Path, upstream_sock: str):
        self.dir = Path(d) / "nginx"
        (self.dir / "tmp").mkdir(parents=True)
        self.port = harness.free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(nginx_conf(self.dir, self.port, upstream_sock))
        self.access_log = self.dir / "access.log"
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> "Nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = harness.spawn([nginx, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                   "-c", str(self.conf)], "nginx-unix")
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not (harness.listening(self.port) and len(self.workers()) == 2):
            if self.proc.poll() is not None:
                raise HarnessError(f"nginx exited {self.proc.returncode}\n{harness.tail(self.proc.log_path)}"
                                   f"\n{harness.tail(self.dir / 'error.log')}")
            if time.monotonic() > deadline:
                raise HarnessError(f"nginx not listening on {self.port}\n{harness.tail(self.dir / 'error.log')}")
            time.sleep(0.05)
        return self

    def workers(self) -> Set[int]:
        return harness.descendants(self.pid) - {self.pid}

    def pids(self) -> Set[int]:
        return harness.descendants(self.pid)

    def log_entries(self) -> List[dict]:
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill_group(self.proc, grace=5.0)


def split_list(v: str) -> List[str]:
    """nginx's per-attempt variables: "a, b : c" (',' next server, ':' next
    upstream group) -> ["a", "b", "c"]; "" or "-" -> []."""
    if v in ("", "-"):
        return []
    return [x.strip() for x in v.replace(":", ",").split(",")]


def upstream_attempts(entries: Sequence[dict]) -> List[dict]:
    """One dict per upstream attempt of every logged request: what the app
    behind the UNIX socket got to see (method, path, rid nginx sent,
    status it answered or nginx's 502 when it failed, exact bytes)."""
    out = []
    for e in entries:
        st = split_list(e["upstream_status"])
        sent = split_list(e["upstream_bytes_sent"])
        recv = split_list(e["upstream_bytes_received"])
        rlen = split_list(e["upstream_response_length"])
        if not (len(st) == len(sent) == len(recv)):
            raise HarnessError(f"nginx log: attempts do not line up: {e}")
        for i, s in enumerate(st):
            out.append({"rid": e["rid"], "method": e["method"], "path": clients.path_of(e["uri"]),
                        "status": int(s), "bytes_in": int(sent[i]), "bytes_out": int(recv[i]),
                        "body_len": int(rlen[i]) if i < len(rlen) and rlen[i].isdigit() else None,
                        "entry": e})
    return out


def summarize_nginx(entries: Sequence[dict], limit: int = 400) -> str:
    lines = [f"nginx logged {len(entries)} requests:"]
    for e in entries[:limit]:
        lines.append(f"  {e['method']} {e['uri']} -> {e['status']} in={e['request_length']} "
                     f"out={e['bytes_sent']} body={e['body_bytes_sent']} | upstream "
                     f"{e['upstream_status']} sent={e['upstream_bytes_sent']} "
                     f"recv={e['upstream_bytes_received']} len={e['upstream_response_length']} "
                     f"rid={e['rid']} client_rid={e['client_rid']}")
    return "\n".join(lines)


def summarize_records(recs: Sequence[dict], limit: int = 400) -> str:
    lines = [f"obsd reported {len(recs)} records:"]
    for r in recs[:limit]:
        lines.append(f"  {r.get('service')} pid={r.get('pid')} {r.get('method')} {r.get('path')} -> "
                     f"{r.get('status')} {r.get('outcome')} {r.get('error') or ''} "
                     f"in={r.get('bytes_in')} out={r.get('bytes_out')} {r.get('transport')} "
                     f"client={r.get('client')} server={r.get('server')} rid={r.get('request_id')}")
    return "\n".join(lines)


def write_report(name: str, *parts: str) -> Path:
    p = harness.OUT / f"{name}.txt"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    p.write_text("\n\n".join(parts) + "\n")
    return p
