"""Hostile traffic at real observed servers (uvicorn with h11, and with
httptools), one obsd filtering on their ports (--port).

Each hostile step is followed by a well-formed raw request whose exact truth
is known. Throughout, obsd must stay up (/health 200) within the memory bound
(hostile_support.MEMORY_BOUND_MB, VmHWM), and at the end:

  * every well-formed request is reported exactly once, exactly (method,
    path, status, outcome ok, bytes both ways) -- the slow-loris one too;
  * on hostile connections obs never names a request the client did not
    send, never gives one a status the server did not write on that
    connection, and flags a response it could not pair as "unmatched"
    (docs/records.md); pipelined floods and pipelined writes longer
    than the capture are never mis-paired;
  * what is malformed is counted: obs_parse_errors_total grows by the kind
    of error, or obs_connections_not_http_total grows;
  * heads longer than the capture are reported, flagged "truncated", with
    the status the server really answered; a client that resets during a
    request gives a record failed "client_reset"; partial heads produce no
    record;
  * connections opened and dropped leave nothing tracked behind.

What the servers answer differs (h11 accepts a control byte in a header value
that httptools rejects, ...): the checks use what each one really wrote.
"""
import collections
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pytest

import clients
import harness
import hostile_support as hs
from harness import HOST, Obsd, Server, stop_obsd_checked

SETUPS = ["uvicorn-h11", "uvicorn-httptools"]
FLOOD = 2000            # pipelined requests in one write
HELD = 1000             # slow-loris connections holding partial heads
DROPPED = 5000          # connections opened and dropped


@dataclass
class Env:
    obsd: Obsd
    servers: Dict[str, Server]
    mem: hs.MemLog


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    servers = {}
    d = None
    try:
        for s in SETUPS:
            servers[s] = Server(s, tmp_path_factory.mktemp("hostile-" + s)).start()
        args = []
        for s in servers.values():
            args += ["--port", str(s.port)]
        d = Obsd(args, name="obsd-hostile").start()
        mem = hs.MemLog(d.proc.pid)
        mem.sample("attached")
        yield Env(d, servers, mem)
    finally:
        if d is not None:
            stop_obsd_checked(d)
        for s in servers.values():
            s.stop()


@dataclass
class Run:
    env: Env
    setup: str
    server: Server
    truth: List[clients.Truth] = field(default_factory=list)      # well-formed, exact
    hostile: List[hs.Exchange] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    extra_clients: Dict[str, List[str]] = field(default_factory=dict)
    flood_truth: List[clients.Truth] = field(default_factory=list)
    over_capture_truth: List[clients.Truth] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def well_formed(self) -> None:
        self.truth.append(clients.raw_request(HOST, self.port, "GET", f"/users/{harness.uniq()}"))

    def after_step(self, label: str) -> None:
        err = hs.health_ok(self.env.obsd)
        if err:
            pytest.fail(f"[{self.setup}] after step {label}: {err}", pytrace=False)
        self.env.mem.sample(f"{self.setup}:{label}")

    def counted(self, label: str, before: Dict[str, float], what: str,
                grew: Callable[[Dict[str, float]], float]) -> None:
        m = hs.wait_metric(self.env.obsd, lambda m: grew(m) > grew(before))
        if not grew(m) > grew(before):
            self.problems.append(f"{label}: not counted: {what} stayed at {grew(m):.0f}")


def _step(run: Run, label: str, fn: Callable[[Run], None]) -> None:
    fn(run)
    run.well_formed()
    run.after_step(label)


# -- the hostile steps ----------------------------------------------------------------

def _counting(label: str, data: bytes, what: str, grew: Callable[[Dict[str, float]], float],
              **kw) -> Callable[[Run], None]:
    def fn(run: Run) -> None:
        before = hs.metrics(run.env.obsd)
        run.hostile.append(hs.send_raw(label, run.port, data, **kw))
        run.counted(label, before, what, grew)
    return fn


def _not_http(m):
    return m.get("obs_connections_not_http_total", 0)


def _perr(kind: Optional[str] = None):
    return lambda m: hs.parse_errors(m, kind)


def _req(target: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\n".encode() + headers + b"\r\n" + body)


STEPS = [
    # random binary (no uppercase token first): never followed, counted not-HTTP
    ("garbage_binary", _counting("garbage_binary", b"\x16\x00" + os.urandom(4094),
                                 "obs_connections_not_http_total", _not_http)),
    # an uppercase token and a space, then binary: not HTTP/1 (not followed), or
    # followed and a request parse error -- counted either way
    ("garbage_token", _counting("garbage_token", b"GARBAGE \x00\x01\x02\xff" * 200,
                                "obs_connections_not_http_total + obs_parse_errors_total",
                                lambda m: _not_http(m) + hs.parse_errors(m))),
    # a 64 KiB header line: far longer than the capture
    ("header_64k", _counting("header_64k", b"GET /h64k HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 65536 +
                             b"\r\n\r\n", "obs_capture_truncated_total",
                             lambda m: m.get("obs_capture_truncated_total", 0))),
    # 10,000 header lines (~128 KB head)
    ("headers_10k", _counting("headers_10k", b"GET /h10k HTTP/1.1\r\nHost: x\r\n" +
                              b"".join(b"X-H-%d: v\r\n" % i for i in range(10000)) + b"\r\n",
                              "obs_capture_truncated_total",
                              lambda m: m.get("obs_capture_truncated_total", 0))),
    ("nul_in_name", _counting("nul_in_name", b"GET /ctl1 HTTP/1.1\r\nHost: x\r\nX-A\x00b: c\r\n\r\n",
                              'obs_parse_errors_total{error="bad_header"}', _perr("bad_header"))),
    ("ctl_in_value", _counting("ctl_in_value", b"GET /ctl2 HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\x7f\r\n\r\n",
                               'obs_parse_errors_total{error="bad_header"}', _perr("bad_header"))),
    ("ctl_in_target", _counting("ctl_in_target", b"GET /ctl\x013 HTTP/1.1\r\nHost: x\r\n\r\n",
                                'obs_parse_errors_total{error="bad_start"}', _perr("bad_start"))),
    ("bad_chunk_size", _counting("bad_chunk_size", _req("/upload", b"Transfer-Encoding: chunked\r\n",
                                                        b"zz\r\nhello\r\n0\r\n\r\n"),
                                 'obs_parse_errors_total{error="bad_chunk"}', _perr("bad_chunk"))),
    ("overflow_chunk_size", _counting("overflow_chunk_size",
                                      _req("/upload", b"Transfer-Encoding: chunked\r\n",
                                           b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
                                      'obs_parse_errors_total{error="bad_chunk"}', _perr("bad_chunk"))),
    ("negative_cl", _counting("negative_cl", _req("/upload", b"Content-Length: -1\r\n"),
                              'obs_parse_errors_total{error="bad_cl"}', _perr("bad_cl"))),
    ("overflow_cl", _counting("overflow_cl", _req("/upload", b"Content-Length: 99999999999999999999999\r\n"),
                              'obs_parse_errors_total{error="bad_cl"}', _perr("bad_cl"))),
    ("conflicting_cl", _counting("conflicting_cl", _req("/upload", b"Content-Length: 1\r\nContent-Length: 2\r\n",
                                                        b"ab"),
                                 'obs_parse_errors_total{error="bad_cl"}', _perr("bad_cl"))),
]


def step_h2_preface(run: Run) -> None:
    """The HTTP/2 prior-knowledge preface (and an empty SETTINGS frame) on the
    HTTP/1 port. How it is counted is noted; what must hold is that nothing
    is invented from it (checked with every hostile connection)."""
    before = hs.metrics(run.env.obsd)
    ex = hs.send_raw("h2_preface", run.port,
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    run.hostile.append(ex)
    m = hs.wait_metric(run.env.obsd, lambda m: _not_http(m) > _not_http(before) or
                       hs.parse_errors(m) > hs.parse_errors(before))
    run.notes.append(f"h2_preface: server answered {ex.statuses or 'nothing'}; not_http "
                     f"+{_not_http(m) - _not_http(before):.0f}, request parse errors "
                     f"+{hs.parse_errors(m) - hs.parse_errors(before):.0f}")


def step_slowloris(run: Run) -> None:
    """Well-formed, a byte at a time with pauses: must be reported exactly."""
    run.truth.append(hs.slowloris_request(run.port, f"/slowloris-{harness.uniq()}"))


def step_slowloris_held(run: Run) -> None:
    """HELD connections write ~12 KB of head each, never finish it, leave."""
    run.extra_clients["held"] = hs.hold_partial_heads(run.port, HELD, rounds=6)
    run.env.mem.sample(f"{run.setup}:slowloris_held(open)")


def step_open_and_drop(run: Run) -> None:
    errors = hs.open_and_drop(run.port, DROPPED)
    if errors:
        run.notes.append(f"open_and_drop: connect errors {dict(errors)} (server backlog)")


def _abort(run: Run, label: str, data: bytes, method: str, path: str) -> None:
    s, local = hs._connect(run.port)
    s.sendall(data)
    harness.wait_server_read(run.port, s.getsockname()[1], timeout=5)
    time.sleep(0.01)
    hs.reset(s)
    ex = hs.Exchange(label, local, sent=data, requests=[(method, path)])
    run.hostile.append(ex)


def step_reset_slow(run: Run) -> None:
    """RST while the server handles GET /slow (50 ms)."""
    path = "/slow"
    _abort(run, "reset_slow", clients.build_request("GET", f"{path}?r={harness.uniq()}", f"{HOST}:{run.port}"),
           "GET", path)


def step_reset_upload(run: Run) -> None:
    """RST after 100 KB of a 1 MB upload body."""
    head = (f"POST /upload HTTP/1.1\r\nHost: {HOST}:{run.port}\r\nContent-Length: 1000000\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    _abort(run, "reset_upload", head + b"u" * 100000, "POST", "/upload")


def step_flood(run: Run) -> None:
    """FLOOD pipelined GETs in one write, alternating /text (200) and
    /nope-<n> (404), all answered and read back."""
    base = harness.uniq() * 10000
    reqs = [("GET", "/text") if i % 2 == 0 else ("GET", f"/nope-{base + i}") for i in range(FLOOD)]
    t = clients.pipeline(HOST, run.port, reqs, timeout=60)
    run.extra_clients["flood"] = [t[0].client]
    run.flood_truth = t
    data = b"".join(clients.build_request(m, p, f"{HOST}:{run.port}") for m, p in reqs)
    run.hostile.append(hs.Exchange("flood", t[0].client, sent=data[:100],
                                   received=b"".join(b"HTTP/1.1 %d \r\n" % x.status for x in t),
                                   requests=list(reqs)))


def _padded_batch(port: int, n: int, pad: int, first: str = "/text") -> List[tuple]:
    """n pipelined GETs with a pad-byte header, the first to `first`; then
    every third is /nope-<u> (404), the others /text (200): a pairing
    shifted by a request shows."""
    out = []
    for i in range(n):
        target = first if i == 0 else f"/nope-{harness.uniq()}" if i % 3 == 0 else "/text"
        out.append((target, clients.build_request("GET", target, f"{HOST}:{port}",
                                                  headers=[("X-Pad", "a" * pad)])))
    return out


def step_pipelined_over_capture(run: Run) -> None:
    """A pipelined write longer than the capture (2048 bytes) whose capture
    ends inside a request's header lines, then, once the server has read it
    (and sits in the first request, /slow), a second pipelined write; every
    response read back in order."""
    for pad in range(200, 260):
        batch = _padded_batch(run.port, 14, pad, first="/slow")
        data = b"".join(b for _t, b in batch)
        ends = [sum(len(b) for _t, b in batch[:i + 1]) for i in range(len(batch))]
        start = max(e for e in [0] + ends if e <= 2048)
        if data.find(b"\n", start) < 2048 and start + 16 < 2048:
            break
    batch2 = _padded_batch(run.port, 4, 0)
    c = clients._Conn(HOST, run.port, 30.0)
    truth = []
    try:
        c.sock.sendall(data)
        harness.wait_server_read(run.port, c.sock.getsockname()[1], timeout=5)
        c.sock.sendall(b"".join(b for _t, b in batch2))
        for target, b in batch + batch2:
            status, nout, _h, _body = c.read_response("GET")
            truth.append(clients.Truth(method="GET", path=target, status=status, kind="pipeline",
                                       target=target, client=c.local, bytes_in=len(b), bytes_out=nout))
    finally:
        c.close()
    run.over_capture_truth = truth
    run.hostile.append(hs.Exchange("pipelined_over_capture", c.local, sent=data[:100],
                                   received=b"".join(b"HTTP/1.1 %d \r\n" % t.status for t in truth),
                                   requests=[("GET", t.path) for t in truth]))


ALL_STEPS = STEPS + [
    ("pipelined_over_capture", step_pipelined_over_capture),
    ("h2_preface", step_h2_preface),
    ("slowloris", step_slowloris),
    ("slowloris_held", step_slowloris_held),
    ("open_and_drop", step_open_and_drop),
    ("reset_slow", step_reset_slow),
    ("reset_upload", step_reset_upload),
    ("flood", step_flood),
]


# -- the test ---------------------------------------------------------------------------

def _check_truncated(run: Run, records: List[dict], name: str, path: str) -> None:
    ex = next(e for e in run.hostile if e.name == name)
    mine = [r for r in hs.records_of(records, ex.client) if r.get("path") == path]
    if not ex.statuses:
        run.notes.append(f"{name}: the server answered nothing")
        return
    if len(mine) != 1:
        run.problems.append(f"{name}: expected one record GET {path} (the server answered "
                            f"{ex.statuses}), found {[harness.brief_record(r) for r in mine]}")
        return
    r = mine[0]
    if r.get("status") != ex.statuses[0] or "truncated" not in (r.get("flags") or []):
        run.problems.append(f"{name}: record should carry status {ex.statuses[0]} and flag "
                            f"truncated (a head longer than the capture): {harness.brief_record(r)}")


def _check_reset(run: Run, records: List[dict], name: str) -> None:
    ex = next(e for e in run.hostile if e.name == name)
    mine = [r for r in hs.records_of(records, ex.client) if r.get("method")]
    if len(mine) != 1 or mine[0].get("outcome") != "failed" or mine[0].get("error") != "client_reset":
        run.problems.append(f"{name}: expected one record failed with error client_reset "
                            f"(docs/records.md), found {[harness.brief_record(r) for r in mine]}")


@pytest.mark.parametrize("setup", SETUPS)
def test_hostile(env, setup):
    run = Run(env, setup, env.servers[setup])
    d = env.obsd
    run.truth.append(harness.probe(run.port))
    for label, fn in ALL_STEPS:
        _step(run, label, fn)

    records = harness.wait_records(d.requests, run.server.pids, expected=0, timeout=0.5, settle=1.5)
    truth_clients = {t.client for t in run.truth}
    wf = [r for r in records if r.get("client") in truth_clients]

    # 1. every well-formed request exactly, once
    diff = harness.diff_truth(run.truth, wf)
    if diff:
        run.problems.append("well-formed requests not reported exactly:\n" + diff)
    run.problems += harness.check_raw_bytes(run.truth, wf)
    run.problems += [p for p in harness.check_outcomes(run.truth, wf)]

    # 2. hostile connections: nothing invented, unpaired responses flagged
    for ex in run.hostile:
        run.problems += hs.check_no_invention(ex, records)
    run.problems += hs.check_pipeline_pairing("flood", run.flood_truth, records)
    run.problems += hs.check_pipeline_pairing("pipelined_over_capture", run.over_capture_truth, records)

    # 3. doc guarantees for particular steps
    _check_truncated(run, records, "header_64k", "/h64k")
    _check_truncated(run, records, "headers_10k", "/h10k")
    _check_reset(run, records, "reset_slow")
    _check_reset(run, records, "reset_upload")
    held = set(run.extra_clients.get("held", ()))
    # by address AND path: an ephemeral port of a closed held connection is
    # soon reused by the well-formed clients of later steps
    held_recs = [r for r in records if r.get("client") in held and
                 r.get("path", "").startswith("/held-")]
    if held_recs:
        run.problems.append(f"partial heads produced records (docs: no record): "
                            f"{[harness.brief_record(r) for r in held_recs[:3]]}")

    # 4. nothing left tracked; memory bound; still healthy and ready
    h = hs.wait_idle(d, timeout=10)
    if h.get("active_connections") != 0:
        run.problems.append(f"/health active_connections={h.get('active_connections')} 10 s after "
                            f"every connection closed")
    err = hs.health_ok(d)
    if err:
        run.problems.append(err)
    st, _ = d.get("/ready")
    if st != 200:
        run.problems.append(f"/ready -> {st} after the hostile run")
    env.mem.sample(f"{setup}:end")
    mem_err = env.mem.check()
    if mem_err:
        run.problems.append(mem_err)

    h2 = next(e for e in run.hostile if e.name == "h2_preface")
    run.notes.append("h2_preface records: " + "; ".join(
        harness.brief_record(r) for r in hs.records_of(records, h2.client)))
    flood = hs.records_of(records, run.extra_clients["flood"][0])
    summary = (f"[{setup}] flood: {FLOOD} answered, obs records {len(flood)} "
               f"({collections.Counter((r['outcome'], r['error'], 'unmatched' in r['flags']) for r in flood)}); "
               f"hostile answers: " + "; ".join(f"{e.name}={e.statuses or '-'}" for e in run.hostile
                                                if e.name != "flood") +
               f"\nmemory:\n{env.mem.table()}")
    harness.OUT.mkdir(parents=True, exist_ok=True)
    (harness.OUT / f"hostile-{setup}.txt").write_text(summary + "\n" + "\n".join(run.notes) + "\n")
    assert not run.problems, (f"[{setup}] {len(run.problems)} problems:\n" + "\n".join(run.problems) +
                              "\n\n" + summary)
