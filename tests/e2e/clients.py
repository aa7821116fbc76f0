"""Truth-recording HTTP clients for the obs end-to-end tests.

Every client returns a list of Truth entries: one per response it actually
received, with (method, path, status) and, where the client knows them
exactly, the bytes it sent / received for that request and the elapsed time.

  raw_request()   one request on its own TCP connection, exact bytes both ways
  pipeline()      N requests written in ONE sendall on one connection, then
                  N responses read back; exact bytes per request and response
  curl()          one curl invocation with several transfers (keep-alive reuses
                  the connection; close=True adds 'Connection: close')
  ab()            ab -k -n N -c C; exact counts ("Complete requests" minus
                  "Non-2xx responses"), no per-request bytes
"""
import http.client
import os
import queue
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

DEFAULT_TIMEOUT = 30.0
RAW_USER_AGENT = "obs-e2e-raw/1"


class ClientError(Exception):
    """The client could not establish the truth (protocol error, tool failure)."""


class ClosedBeforeResponse(ClientError):
    """The server closed the connection cleanly before sending any byte of
    the next response."""


@dataclass
class Truth:
    method: str
    path: str                       # without query, as obs reports it
    status: int
    kind: str                       # raw | pipeline | curl | curl-close | ab
    target: str = ""                # request-target as sent (may have a query)
    client: Optional[str] = None    # "ip:port" of the client socket, if known
    bytes_in: Optional[int] = None  # exact bytes of this request, if known
    bytes_out: Optional[int] = None  # exact bytes of this response, if known
    elapsed_us: Optional[int] = None  # send start -> last byte received
    body: Optional[bytes] = None    # decoded body (raw clients only)
    num_connects: Optional[int] = None  # curl: new connections made for this transfer

    def key(self) -> Tuple[str, str, int]:
        return (self.method, self.path, self.status)

    def describe(self) -> str:
        extra = []
        if self.client:
            extra.append(f"client={self.client}")
        if self.bytes_in is not None:
            extra.append(f"bytes_in={self.bytes_in}")
        if self.bytes_out is not None:
            extra.append(f"bytes_out={self.bytes_out}")
        if self.elapsed_us is not None:
            extra.append(f"elapsed_us={self.elapsed_us}")
        return f"{self.kind}: {self.method} {self.target or self.path} -> {self.status} " + " ".join(extra)


def path_of(target: str) -> str:
    return target.split("?", 1)[0]


def build_request(method: str, target: str, host: str, body: bytes = b"",
                  headers: Sequence[Tuple[str, str]] = (), content_length: Optional[bool] = None) -> bytes:
    """Exact bytes of an HTTP/1.1 request."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {RAW_USER_AGENT}", "Accept: */*"]
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if content_length is None:
        content_length = bool(body) or method in ("POST", "PUT", "PATCH")
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Conn:
    """A client TCP connection with a receive buffer; parses responses out of
    the byte stream and counts exactly the bytes each one occupies."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ip, lport = self.sock.getsockname()[:2]
        self.local = f"{ip}:{lport}"
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(1 << 18)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ClientError(f"connection closed after {len(self.buf)} of {n} expected bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _take_until(self, sep: bytes, limit: int = 65536) -> bytes:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                return self._take(i + len(sep))
            if len(self.buf) > limit:
                raise ClientError(f"no {sep!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self._fill():
                raise ClientError(f"connection closed while waiting for {sep!r} "
                                  f"(have {len(self.buf)} bytes: {bytes(self.buf[:200])!r})")

    def read_response(self, method: str) -> Tuple[int, int, dict, bytes]:
        """Read one complete response (skipping 1xx interim responses, whose
        bytes are counted too). Returns (status, bytes, headers, body)."""
        nbytes = 0
        while True:
            if not self.buf and not self._fill():
                raise ClosedBeforeResponse("server closed the connection before responding")
            head = self._take_until(b"\r\n\r\n")
            nbytes += len(head)
            lines = head[:-4].decode("latin-1").split("\r\n")
            m = re.match(r"HTTP/1\.[01] (\d{3})(?: .*)?$", lines[0])
            if not m:
                raise ClientError(f"bad status line {lines[0]!r}")
            status = int(m.group(1))
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
            if 100 <= status < 200 and status != 101:
                continue
            break
        body = bytearray()
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in te:
            while True:
                line = self._take_until(b"\r\n", limit=4096)
                nbytes += len(line)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers up to the empty line
                        t = self._take_until(b"\r\n", limit=16384)
                        nbytes += len(t)
                        if t == b"\r\n":
                            break
                    break
                data = self._take(size + 2)
                if data[-2:] != b"\r\n":
                    raise ClientError("chunk not followed by CRLF")
                nbytes += len(data)
                body += data[:-2]
        elif "content-length" in headers:
            n = int(headers["content-length"][0])
            data = self._take(n)
            nbytes += n
            body += data
        else:  # close-delimited
            while self._fill():
                pass
            nbytes += len(self.buf)
            body += self.buf
            self.buf.clear()
        return status, nbytes, headers, bytes(body)


def raw_exchange(host: str, port: int, data: bytes, method: str, target: str,
                 timeout: float = DEFAULT_TIMEOUT) -> Truth:
    """Send exactly `data` on a fresh connection, read exactly one response."""
    c = _Conn(host, port, timeout)
    try:
        t0 = time.perf_counter()
        c.sock.sendall(data)
        status, nout, _headers, body = c.read_response(method)
        elapsed = time.perf_counter() - t0
        if c.buf:
            raise ClientError(f"{len(c.buf)} unexpected bytes after the response")
    finally:
        c.close()
    return Truth(method=method, path=path_of(target), status=status, kind="raw", target=target,
                 client=c.local, bytes_in=len(data), bytes_out=nout,
                 elapsed_us=int(elapsed * 1e6), body=body)


def raw_request(host: str, port: int, method: str, target: str, body: bytes = b"",
                headers: Sequence[Tuple[str, str]] = (), timeout: float = DEFAULT_TIMEOUT) -> Truth:
    data = build_request(method, target, f"{host}:{port}", body, headers)
    return raw_exchange(host, port, data, method, target, timeout)


def pipeline(host: str, port: int, requests: Sequence[Tuple[str, str]],
             timeout: float = DEFAULT_TIMEOUT) -> List[Truth]:
    """Send all `requests` [(method, target)] in ONE sendall on one
    connection, then read one response per request, in order.

    If the server closes the connection cleanly after answering only the
    first k requests (hypercorn does not support pipelining), the remaining
    ones are returned as kind "pipeline-unanswered" with status 0: the server
    read them (they arrived in the same segment) but never answered, so obs
    must report them as failed requests with status 0."""
    reqs = [build_request(m, t, f"{host}:{port}") for m, t in requests]
    c = _Conn(host, port, timeout)
    out = []
    try:
        t0 = time.perf_counter()
        c.sock.sendall(b"".join(reqs))
        for i, ((m, t), data) in enumerate(zip(requests, reqs)):
            try:
                status, nout, _h, body = c.read_response(m)
            except ClosedBeforeResponse:
                if i == 0:
                    raise
                for (m2, t2), data2 in list(zip(requests, reqs))[i:]:
                    out.append(Truth(method=m2, path=path_of(t2), status=0, kind="pipeline-unanswered",
                                     target=t2, client=c.local, bytes_in=len(data2), bytes_out=0))
                break
            out.append(Truth(method=m, path=path_of(t), status=status, kind="pipeline", target=t,
                             client=c.local, bytes_in=len(data), bytes_out=nout,
                             elapsed_us=int((time.perf_counter() - t0) * 1e6), body=body))
        if c.buf:
            raise ClientError(f"{len(c.buf)} unexpected bytes after the last pipelined response")
    finally:
        c.close()
    return out


# -- curl ---------------------------------------------------------------------

_CURL_W = ("%{http_code} %{local_ip} %{local_port} %{num_connects} %{size_request} "
           "%{size_upload} %{size_header} %{size_download} %{time_total}\\n")


def curl(base_url: str, items: Sequence[Tuple[str, str, Optional[str]]], close: bool = False,
         timeout: float = 60.0) -> List[Truth]:
    """One curl invocation doing every item [(method, target, body_file)] in
    order (each in its own --next section: curl keeps its connection cache
    across them, so without `close` the connection is reused)."""
    args = ["curl"]
    for i, (method, target, body_file) in enumerate(items):
        if i:
            args.append("--next")
        args += ["-sS", "--max-time", "30", "-o", "/dev/null", "-w", _CURL_W]
        if close:
            args += ["-H", "Connection: close"]
        if body_file is not None:
            args += ["-X", method, "--data-binary", "@" + body_file,
                     "-H", "Content-Type: application/octet-stream"]
        elif method != "GET":
            args += ["-X", method]
        args.append(base_url + target)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.splitlines()
    if p.returncode != 0 or len(lines) != len(items):
        raise ClientError(f"curl exited {p.returncode} with {len(lines)}/{len(items)} results\n"
                          f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    out = []
    kind = "curl-close" if close else "curl"
    for (method, target, _bf), line in zip(items, lines):
        f = line.split()
        status = int(f[0])
        if status == 0:
            raise ClientError(f"curl got no response for {method} {target}: {line}")
        out.append(Truth(method=method, path=path_of(target), status=status, kind=kind, target=target,
                         client=f"{f[1]}:{f[2]}", elapsed_us=int(float(f[8]) * 1e6),
                         num_connects=int(f[3])))
    return out


# -- ab -----------------------------------------------------------------------

def ab(url: str, n: int, c: int, keepalive: bool = True, timeout: float = 120.0) -> List[Truth]:
    """ab [-k] -n N -c C url: every completed request is (GET, path, 200);
    refuses to make up statuses if ab saw non-2xx or failed requests."""
    args = ["ab"] + (["-k"] if keepalive else []) + ["-n", str(n), "-c", str(c), "-s", "30", "-q", url]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)

    def field(name: str, default: Optional[int] = None) -> int:
        m = re.search(r"^" + re.escape(name) + r":\s+(\d+)", p.stdout, re.M)
        if not m:
            if default is not None:
                return default
            raise ClientError(f"ab output has no {name!r} (exit {p.returncode})\n{p.stdout}\n{p.stderr}")
        return int(m.group(1))

    complete = field("Complete requests")
    failed = field("Failed requests")
    non2xx = field("Non-2xx responses", 0)
    if p.returncode != 0 or failed or non2xx or complete != n:
        raise ClientError(f"ab: exit {p.returncode}, complete={complete} failed={failed} "
                          f"non2xx={non2xx}\n{p.stdout}\n{p.stderr}")
    target = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    return [Truth(method="GET", path=path_of(target), status=200, kind="ab", target=target)
            for _ in range(complete)]


def make_body_file(dirpath: str, size: int, name: str = "body.bin") -> str:
    path = os.path.join(dirpath, name)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, "wb") as f:
            f.write(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    return path


def keepalive_gets(host: str, port: int, paths: Sequence[str], concurrency: int,
                   ok: Sequence[int] = (200,), timeout: float = 30.0) -> List[str]:
    """GET each path once, with X-Request-ID: <its last segment>, over
    `concurrency` keep-alive connections at once. Returns the failures (a
    status not in `ok`, or an exception), empty when every request went."""
    todo: "queue.Queue[str]" = queue.Queue()
    for p in paths:
        todo.put(p)
    errors: List[str] = []

    def client():
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            while True:
                try:
                    p = todo.get_nowait()
                except queue.Empty:
                    return
                c.request("GET", p, headers={"X-Request-ID": p.rsplit("/", 1)[1]})
                r = c.getresponse()
                r.read()
                if r.status not in ok:
                    errors.append(f"{p}: {r.status}")
        except Exception as e:  # noqa: BLE001 - reported to the caller
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * timeout)
    return errors
