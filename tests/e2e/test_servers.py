"""obsd (no filters) against each ASGI server setup, driven by every client
kind over every route; its records for the server's pids must match what
the clients received exactly."""
import re
from dataclasses import dataclass
from typing import List

import pytest

import harness
from clients import Truth
from harness import Obsd, Server, stop_obsd_checked


@pytest.fixture(scope="module")
def obsd():
    d = Obsd(name="obsd-servers")
    try:
        d.start()
        yield d
    finally:
        stop_obsd_checked(d)


@dataclass
class Run:
    setup: str
    server: Server
    truth: List[Truth]
    records: List[dict]

    def ctx(self) -> str:
        return f"[{self.setup} port {self.server.port} pids {sorted(self.server.pids())}]"


@pytest.fixture(scope="module", params=harness.SETUPS)
def run(request, obsd, tmp_path_factory):
    setup = request.param
    server = Server(setup, tmp_path_factory.mktemp(setup))
    try:
        server.start()  # obsd is already attached: no connection has been made yet
        truth = harness.drive_full(server.port, server.dir)
        records = harness.wait_records(obsd.requests, server.pids, len(truth))
        yield Run(setup, server, truth, records)
    finally:
        server.stop()


def test_records_match_truth(run):
    """Multiset of (method, path, status) of the server's records == what
    the clients received (plus unanswered pipelined requests, status 0)."""
    d = harness.diff_truth(run.truth, run.records)
    assert d is None, f"{run.ctx()}\n{d}"


def test_raw_bytes_exact(run):
    """Raw-socket and pipelined requests: bytes_in == bytes the client sent,
    bytes_out == bytes it received (found by client addr + method + path)."""
    problems = harness.check_raw_bytes(run.truth, run.records)
    assert not problems, f"{run.ctx()} {len(problems)} problem(s):\n" + "\n".join(problems)


def test_slow_duration(run):
    """/slow: 50 ms <= duration_us (<= the raw client's measured elapsed)."""
    problems = harness.check_slow(run.truth, run.records)
    assert not problems, f"{run.ctx()}\n" + "\n".join(problems)


def test_outcome_ok(run):
    """Every record is outcome "ok", error "" (except unanswered pipelined
    requests, which must be "failed" with a reason)."""
    problems = harness.check_outcomes(run.truth, run.records)
    assert not problems, f"{run.ctx()} {len(problems)} record(s):\n" + "\n".join(problems[:30])


HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
ADDR = re.compile(r"^\d+\.\d+\.\d+\.\d+:\d+$")


def test_record_fields(run):
    """Every record has the documented fields with the documented types and
    formats; request_ids are unique; server addr is the server's; route is
    "/users/{id}" for /users/<n> and the path itself for the fixed routes."""
    ints = ("ts_ns", "conn_id", "pid", "tid", "status", "duration_us", "ttfb_us", "bytes_in", "bytes_out")
    strs = ("ts", "request_id", "trace_id", "span_id", "parent_span_id", "comm", "method", "path",
            "route", "outcome", "error", "client", "server", "version", "host", "user_agent", "content_type")
    problems = []
    ids = set()
    for r in run.records:
        p = []
        for k in ints:
            if not isinstance(r.get(k), int) or isinstance(r.get(k), bool):
                p.append(f"{k} not int")
        for k in strs:
            if not isinstance(r.get(k), str):
                p.append(f"{k} not str")
        if not isinstance(r.get("flags"), list) or not all(isinstance(x, str) for x in r.get("flags") or []):
            p.append("flags not a list of strings")
        if p:
            problems.append(f"{', '.join(p)}: {r}")
            continue
        if not RFC3339_UTC.match(r["ts"]):
            p.append(f"ts {r['ts']!r} not RFC 3339 UTC")
        for k, rx in (("request_id", HEX32), ("trace_id", HEX32), ("span_id", HEX16)):
            if not rx.match(r[k]):
                p.append(f"{k} {r[k]!r} malformed")
        if r["parent_span_id"] and not HEX16.match(r["parent_span_id"]):
            p.append(f"parent_span_id {r['parent_span_id']!r} malformed")
        if r["request_id"] in ids:
            p.append(f"duplicate request_id {r['request_id']}")
        ids.add(r["request_id"])
        if r["outcome"] not in ("ok", "failed"):
            p.append(f"outcome {r['outcome']!r}")
        if not ADDR.match(r["client"]):
            p.append(f"client {r['client']!r}")
        if r["server"] != f"{harness.HOST}:{run.server.port}":
            p.append(f"server {r['server']!r} != {harness.HOST}:{run.server.port}")
        if r["version"] not in ("1.0", "1.1"):
            p.append(f"version {r['version']!r}")
        want_route = "/users/{id}" if re.match(r"^/users/\d+$", r["path"]) else \
            r["path"] if r["path"] in ("/text", "/json", "/stream", "/upload", "/slow", "/boom") else None
        if want_route and r["route"] != want_route:
            p.append(f"route {r['route']!r} != {want_route!r}")
        if r["duration_us"] < 0 or r["ttfb_us"] < 0 or (r["status"] and r["ttfb_us"] > r["duration_us"]):
            p.append(f"ttfb_us {r['ttfb_us']} / duration_us {r['duration_us']} inconsistent")
        if p:
            problems.append(f"{'; '.join(p)}: {harness.brief_record(r)}")
    assert not problems, f"{run.ctx()} {len(problems)} record(s):\n" + "\n".join(problems[:30])


def test_raw_request_headers(run):
    """For raw-socket requests obs reports the Host and User-Agent sent."""
    want = {(t.client, t.method, t.path) for t in run.truth if t.kind in ("raw", "pipeline")}
    problems = []
    for r in run.records:
        if (r.get("client"), r.get("method"), r.get("path")) not in want:
            continue
        if r.get("host") != f"{harness.HOST}:{run.server.port}" or r.get("user_agent") != "obs-e2e-raw/1":
            problems.append(f"host={r.get('host')!r} user_agent={r.get('user_agent')!r}: {harness.brief_record(r)}")
    assert not problems, f"{run.ctx()}\n" + "\n".join(problems[:20])
