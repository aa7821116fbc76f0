"""OpenTelemetry traces: request ids, W3C trace context and OTLP/HTTP export.

Every test starts its own real uvicorn server, its own test OTLP/HTTP
receiver (tests/otlp/receiver.js: decodes with the decoder generated from the
official OpenTelemetry protos, one JSON line per span) and its own obsd
(`--port <server port>`, OTEL_BSP_SCHEDULE_DELAY=200), then compares the
spans the receiver got for the server's pid tree with what the clients
received and with obsd's own /api/requests records.
"""
import collections
import json
import math
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

import clients
import harness
from clients import Truth
from harness import HOST, Server, stop_obsd_checked, uniq
from traces_support import (HEX16, HEX32, SPAN_KIND_SERVER, STATUS_ERROR, ObsdOtel, Receiver,
                            brief_span, curl_headers, dup_ids, low64, metric, raw_from, route_of,
                            span_as_record, wait_spans)

UVICORN = "uvicorn-h11"


# -- fixtures -----------------------------------------------------------------

@dataclass
class Stack:
    name: str
    server: Server
    obsd: ObsdOtel
    receiver: Optional[Receiver]

    def pids(self):
        return self.server.pids()

    def ctx(self) -> str:
        r = f"receiver port {self.receiver.port}" if self.receiver else "no receiver"
        return (f"[{self.name}: {self.server.setup} port {self.server.port} pids {sorted(self.pids())}; "
                f"{r}; {self.obsd.describe()}]")

    def records(self, expected: int) -> List[dict]:
        return harness.wait_records(self.obsd.requests, self.pids, expected)

    def spans(self, expected: int, **kw) -> List[dict]:
        return wait_spans(self.receiver, self.pids, expected, **kw)

    def debug(self) -> str:
        out = f"{self.ctx()}\n--- obsd output ---\n{self.obsd.output()}"
        if self.receiver:
            out += f"\n--- receiver output ---\n{self.receiver.log()}"
        return out


@pytest.fixture
def stack(tmp_path):
    """make(name, endpoint="flag"|"env"|"traces_env"|"traces_flag"|None, env={}, args=[],
    receiver_status=None, setup=UVICORN) -> a Stack with everything started.
    Teardown: obsd must exit 0 within 5 s of SIGTERM; servers and receivers
    are killed."""
    made: List[Stack] = []

    def make(name: str, endpoint: Optional[str] = "flag", env: Optional[Dict[str, str]] = None,
             args: Sequence[str] = (), receiver_status: Optional[int] = None,
             setup: str = UVICORN) -> Stack:
        server = Server(setup, tmp_path / f"{name}-{setup}")
        receiver = None
        if endpoint is not None:
            receiver = Receiver(tmp_path / f"{name}-spans.jsonl", status=receiver_status,
                                name=f"otlp-receiver-{name}").start()
        e = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
        e.update(env or {})
        a = ["--port", str(server.port)] + list(args)
        if endpoint == "flag":
            a += ["--otlp-endpoint", receiver.base]
        elif endpoint == "env":
            e["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.base
        elif endpoint == "traces_env":
            e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.traces_url
        elif endpoint == "traces_flag":
            a += ["--otlp-traces-endpoint", receiver.traces_url]
        obsd = ObsdOtel(a, e, name=f"obsd-{name}")
        s = Stack(name, server, obsd, receiver)
        made.append(s)
        obsd.start()
        server.start()  # listening; no connection made yet
        return s

    yield make
    errors = []
    for s in made:
        try:
            stop_obsd_checked(s.obsd)
        except AssertionError as e:
            errors.append(f"{s.ctx()}: {e}")
        s.server.stop()
        if s.receiver:
            s.receiver.stop()
    assert not errors, "\n\n".join(errors)


# -- workloads ----------------------------------------------------------------

def drive_mix(port: int, workdir: Path, secret: str) -> List[Truth]:
    """raw (some with a query string carrying `secret`), pipelined, curl
    keep-alive and ab -k over every route; every response is recorded."""
    workdir.mkdir(parents=True, exist_ok=True)
    T: List[Truth] = [harness.probe(port)]
    body_file = clients.make_body_file(str(workdir), harness.MIB, "upload.bin")
    raw = lambda m, t, body=b"": T.append(clients.raw_request(HOST, port, m, t, body))  # noqa: E731
    raw("GET", f"/text?q={secret}&token={secret}")
    raw("GET", "/json")
    for _ in range(3):
        raw("GET", f"/users/{uniq()}")
    raw("GET", f"/users/{uniq()}?{secret}=1")
    raw("GET", "/slow")
    raw("GET", "/stream")
    raw("POST", "/upload", Path(body_file).read_bytes())
    raw("GET", "/boom")
    raw("GET", f"/nope/{uniq()}")
    T += clients.pipeline(HOST, port, [("GET", f"/users/{uniq()}"), ("GET", "/text"),
                                       ("GET", f"/json?x={secret}"), ("GET", f"/users/{uniq()}"),
                                       ("GET", "/boom")])
    base = f"http://{HOST}:{port}"
    T += clients.curl(base, [("GET", "/text", None), ("GET", f"/users/{uniq()}?q={secret}", None),
                             ("GET", "/boom", None), ("GET", "/json", None),
                             ("POST", "/upload", body_file), ("GET", "/slow", None)])
    T += clients.ab(f"{base}/json?k={secret}", 40, 2)
    harness.check_truth_sane(T)
    return T


def traceparent(trace_id: str, parent_id: str, flags: str = "01", version: str = "00") -> str:
    return f"{version}-{trace_id}-{parent_id}-{flags}"


def rand_ids():
    return secrets.token_hex(16), secrets.token_hex(8)


def by_path(spans: Sequence[dict]) -> Dict[str, List[dict]]:
    out = collections.defaultdict(list)
    for s in spans:
        out[s.get("attributes", {}).get("url.path")].append(s)
    return out


def records_by_path(records: Sequence[dict]) -> Dict[str, List[dict]]:
    out = collections.defaultdict(list)
    for r in records:
        out[r.get("path")].append(r)
    return out


def join_spans_records(spans: Sequence[dict], records: Sequence[dict]) -> List[str]:
    """Every record has exactly one span with its (trace id, span id) and
    vice versa; the span carries the record's request id, start time and
    duration."""
    problems = []
    spans_by_id = collections.defaultdict(list)
    for s in spans:
        spans_by_id[(s.get("traceId"), s.get("spanId"))].append(s)
    rec_ids = set()
    for r in records:
        k = (r.get("trace_id"), r.get("span_id"))
        rec_ids.add(k)
        got = spans_by_id.get(k, [])
        if len(got) != 1:
            problems.append(f"record {harness.brief_record(r)} trace/span {k}: {len(got)} spans with these ids")
            continue
        s = got[0]
        a = s["attributes"]
        if a.get("request.id") != r.get("request_id"):
            problems.append(f"span request.id {a.get('request.id')!r} != record request_id "
                            f"{r.get('request_id')!r}: {brief_span(s)}")
        start, end = int(s["start"]), int(s["end"])
        if abs(start - r["ts_ns"]) > 1000:
            problems.append(f"span start {start} != record ts_ns {r['ts_ns']} (+-1us): {brief_span(s)}")
        if abs((end - start) // 1000 - r["duration_us"]) > 1:
            problems.append(f"span end-start {(end - start) // 1000} us != record duration_us "
                            f"{r['duration_us']}: {brief_span(s)}")
    for k, ss in spans_by_id.items():
        if k not in rec_ids:
            problems.append(f"span without a record: {brief_span(ss[0])}")
    return problems


# -- 1. one span per request ----------------------------------------------------

def check_span_shape(s: dict, pids, port: int, secret: Optional[str]) -> List[str]:
    p = []
    a = s.get("attributes", {})
    res = s.get("resource", {})
    method, path = a.get("http.request.method"), a.get("url.path")
    status = a.get("http.response.status_code")
    if s.get("kind") != SPAN_KIND_SERVER:
        p.append(f"kind {s.get('kind')!r} != 2 (SERVER)")
    if not isinstance(path, str) or not path.startswith("/"):
        p.append(f"url.path {path!r}")
    else:
        if s.get("name") != f"{method} {route_of(path)}":
            p.append(f"name {s.get('name')!r} != {method + ' ' + route_of(path)!r}")
        if a.get("http.route") != route_of(path):
            p.append(f"http.route {a.get('http.route')!r} != {route_of(path)!r}")
    if not (int(s.get("start", 0)) < int(s.get("end", 0))):
        p.append(f"start {s.get('start')} not < end {s.get('end')}")
    if not HEX16.match(s.get("spanId", "")) or s.get("spanId") == "0" * 16:
        p.append(f"spanId {s.get('spanId')!r} not 16 hex non-zero")
    if not HEX32.match(s.get("traceId", "")) or s.get("traceId") == "0" * 32:
        p.append(f"traceId {s.get('traceId')!r} not 32 hex non-zero")
    for k in ("process.pid", "process.executable.name", "host.name", "service.name"):
        if res.get(k) in (None, ""):
            p.append(f"resource {k} missing")
    if res.get("process.pid") not in pids:
        p.append(f"resource process.pid {res.get('process.pid')} not in server pids {sorted(pids)}")
    if res.get("host.name") != socket.gethostname():
        p.append(f"resource host.name {res.get('host.name')!r} != {socket.gethostname()!r}")
    if res.get("telemetry.sdk.name") != "obs":
        p.append(f"resource telemetry.sdk.name {res.get('telemetry.sdk.name')!r} != 'obs'")
    for k in ("http.request.method", "url.path", "http.route", "http.response.status_code",
              "server.port", "http.method", "http.status_code", "request.id"):
        if a.get(k) in (None, ""):
            p.append(f"attribute {k} missing")
    if a.get("http.method") != method:
        p.append(f"http.method {a.get('http.method')!r} != http.request.method {method!r}")
    if a.get("http.status_code") != status:
        p.append(f"http.status_code {a.get('http.status_code')!r} != http.response.status_code {status!r}")
    if a.get("server.port") != port:
        p.append(f"server.port {a.get('server.port')!r} != {port}")
    for k, v in a.items():
        if isinstance(v, str) and "?" in v and k not in ("user_agent.original", "http.user_agent"):
            p.append(f"attribute {k}={v!r} contains a query string")
    if secret and secret in json.dumps(s):
        p.append(f"the query-string token {secret!r} appears in the span")
    return [f"{m}: {brief_span(s)}" for m in p]


def _one_span_per_request(st: Stack, service_name: str) -> None:
    secret = f"qs{secrets.token_hex(6)}"
    truth = drive_mix(st.server.port, st.server.dir / "work", secret)
    records = st.records(len(truth))
    spans = st.spans(len(truth))
    pids = st.pids()

    d = harness.diff_truth(truth, [span_as_record(s) for s in spans])
    assert d is None, f"{st.ctx()} spans (method, url.path, status) vs what clients received:\n{d}"
    assert len(spans) == len(truth), f"{st.ctx()} {len(spans)} spans for {len(truth)} requests"
    # obsd's own records agree with the clients too (otherwise the span check is moot)
    d = harness.diff_truth(truth, records)
    assert d is None, f"{st.ctx()} /api/requests vs clients:\n{d}"

    problems = []
    for s in spans:
        problems += check_span_shape(s, pids, st.server.port, secret)
        if s["resource"].get("service.name") != service_name:
            problems.append(f"resource service.name {s['resource'].get('service.name')!r} != "
                            f"{service_name!r}: {brief_span(s)}")
        if s.get("parentSpanId"):
            problems.append(f"parentSpanId set without an incoming traceparent: {brief_span(s)}")
        rid = s["attributes"].get("request.id")
        if not (isinstance(rid, str) and HEX32.match(rid)):
            problems.append(f"request.id {rid!r} not 32 lowercase hex (none was sent): {brief_span(s)}")
    dups = dup_ids(spans)
    if dups:
        problems.append(f"duplicate span ids: {dups[:10]}")
    tids = collections.Counter(s["traceId"] for s in spans)
    if any(n > 1 for n in tids.values()):
        problems.append(f"trace ids reused across independent requests: "
                        f"{[t for t, n in tids.items() if n > 1][:5]}")
    comms = {r["pid"]: r["comm"] for r in records}
    for s in spans:
        want = comms.get(s["resource"].get("process.pid"))
        if s["resource"].get("process.executable.name") != want:
            problems.append(f"process.executable.name {s['resource'].get('process.executable.name')!r} "
                            f"!= record comm {want!r}")
            break
    problems += join_spans_records(spans, records)
    slow = [s for s in spans if s["attributes"].get("url.path") == "/slow"]
    for s in slow:
        if int(s["end"]) - int(s["start"]) < harness.SLOW_MIN_US * 1000:
            problems.append(f"/slow span shorter than 50 ms: {brief_span(s)}")
    assert not problems, (f"{st.ctx()} {len(problems)} problem(s) in {len(spans)} spans:\n" +
                          "\n".join(problems[:40]))


def test_one_span_per_request_derived_service(stack):
    """N requests (raw, pipelined, curl, ab) -> exactly N SERVER spans for the
    server's pids; templated names, ids, resource (service.name derived from
    the command line: "app:app"), attributes, no query strings; each span is
    the /api/requests record with the same ids. Endpoint via --otlp-endpoint."""
    st = stack("spans-derived", endpoint="flag")
    _one_span_per_request(st, "app:app")


@pytest.mark.parametrize("how", ["env", "flag"])
def test_one_span_per_request_service_name(stack, how):
    """Same, with the service name set: OTEL_SERVICE_NAME (endpoint from
    OTEL_EXPORTER_OTLP_ENDPOINT) or --service-name (endpoint from
    --otlp-endpoint): every span's service.name is that name, in the export
    and in /api/traces."""
    if how == "env":
        name = "checkout-e2e"
        st = stack("spans-named-env", endpoint="env", env={"OTEL_SERVICE_NAME": name})
    else:
        name = "checkout-flag"
        st = stack("spans-named-flag", endpoint="flag", args=["--service-name", name])
    _one_span_per_request(st, name)
    local = [s for s in st.obsd.traces()["spans"] if s["resource"].get("process.pid") in st.pids()]
    bad = [s for s in local if s["resource"].get("service.name") != name]
    assert local and not bad, f"{st.ctx()} /api/traces service.name: {[s['resource'] for s in bad[:3]]}"


# -- 2. W3C trace context -------------------------------------------------------

def test_traceparent_continue_invalid_and_unsampled(stack):
    """Valid traceparent (flags 01) -> same trace id, parentSpanId = its
    parent id, tracestate kept; invalid ones -> a new trace, no parent, and
    obs_traceparent_invalid_total counts exactly them; valid with flags 00
    under the default parentbased sampler -> no span exported."""
    st = stack("traceparent", endpoint="flag")
    port = st.server.port
    truth: List[Truth] = []
    sent: Dict[str, dict] = {}   # path -> what was sent

    def send(kind: str, tp: Optional[str], ts: Optional[str], via: str = "raw", **info):
        path = f"/users/{uniq()}"
        hdrs = []
        if tp is not None:
            hdrs.append(("traceparent", tp))
        if ts is not None:
            hdrs.append(("tracestate", ts))
        if via == "curl":
            truth.append(curl_headers(f"http://{HOST}:{port}{path}", hdrs))
        else:
            truth.append(clients.raw_request(HOST, port, "GET", path, headers=hdrs))
        sent[path] = dict(kind=kind, tp=tp, ts=ts, **info)

    # valid, sampled: continued
    for i in range(4):
        tid, pid = rand_ids()
        send("valid", traceparent(tid, pid), f"obs=t{i},vendor=abc{i}" if i < 3 else None,
             via="curl" if i % 2 else "raw", tid=tid, pid=pid)
    # invalid: a new trace each
    tid, pid = rand_ids()
    tid = tid[:-1] + "a"  # at least one letter, so upper() changes it
    invalid = {
        "uppercase": (traceparent(tid.upper(), pid.upper()), tid),
        "zero-trace-id": (traceparent("0" * 32, rand_ids()[1]), "0" * 32),
        "zero-parent-id": (lambda t: (traceparent(t, "0" * 16), t))(rand_ids()[0]),
        "short-trace-id": (lambda t: (traceparent(t[:30], rand_ids()[1]), t[:30]))(rand_ids()[0]),
        "version-ff": (lambda t: (traceparent(t, rand_ids()[1], version="ff"), t))(rand_ids()[0]),
    }
    for why, (tp, bad_tid) in invalid.items():
        send("invalid", tp, "obs=invalid", why=why, tid=bad_tid)
    # valid, not sampled (flags 00): recorded, not exported
    for i in range(3):
        tid, pid = rand_ids()
        send("unsampled", traceparent(tid, pid, flags="00"), "obs=u", via="curl" if i == 1 else "raw",
             tid=tid, pid=pid)
    # no traceparent at all, sent last: once its span is in, all earlier ones are
    send("none", None, None)
    harness.check_truth_sane(truth)

    records = st.records(len(truth))
    d = harness.diff_truth(truth, records)
    assert d is None, f"{st.ctx()} /api/requests vs clients:\n{d}"
    last = [p for p, v in sent.items() if v["kind"] == "none"][0]
    spans = st.spans(0, done=lambda ss: any(s["attributes"].get("url.path") == last for s in ss))
    sp, rp = by_path(spans), records_by_path(records)

    problems = []
    for path, info in sent.items():
        got = sp.get(path, [])
        rec = rp.get(path, [])
        if len(rec) != 1:
            problems.append(f"{info}: {len(rec)} records for {path}")
            continue
        rec = rec[0]
        if info["kind"] == "unsampled":
            if got:
                problems.append(f"traceparent {info['tp']} (sampled flag 00, default parentbased "
                                f"sampler): span exported anyway: {brief_span(got[0])}")
            if rec.get("sampled") is not False or rec.get("trace_id") != info["tid"] or \
                    rec.get("parent_span_id") != info["pid"]:
                problems.append(f"traceparent {info['tp']}: record sampled={rec.get('sampled')} "
                                f"trace_id={rec.get('trace_id')} parent_span_id={rec.get('parent_span_id')}")
            continue
        if len(got) != 1:
            problems.append(f"{info['kind']} {info.get('why', '')} traceparent {info['tp']}: "
                            f"{len(got)} spans for {path} (expected 1)")
            continue
        s = got[0]
        if info["kind"] == "valid":
            if s["traceId"] != info["tid"] or s.get("parentSpanId") != info["pid"]:
                problems.append(f"traceparent {info['tp']}: span traceId={s['traceId']} "
                                f"parentSpanId={s.get('parentSpanId')!r} (want {info['tid']} / {info['pid']})")
            if s.get("traceState", "") != (info["ts"] or ""):
                problems.append(f"tracestate {info['ts']!r} sent, span traceState {s.get('traceState')!r}")
            if s["spanId"] == info["pid"]:
                problems.append(f"span id equals the incoming parent id: {brief_span(s)}")
        elif info["kind"] == "invalid":
            if s["traceId"] == info["tid"].lower() or s.get("parentSpanId"):
                problems.append(f"invalid traceparent ({info['why']}) {info['tp']!r} was continued: "
                                f"{brief_span(s)}")
            if not HEX32.match(s["traceId"]) or s["traceId"] == "0" * 32:
                problems.append(f"invalid traceparent ({info['why']}): new trace id {s['traceId']!r}")
            if s.get("traceState"):
                problems.append(f"invalid traceparent ({info['why']}): tracestate kept anyway "
                                f"{s.get('traceState')!r}")
        else:
            if s.get("parentSpanId") or s.get("traceState"):
                problems.append(f"no traceparent sent, span has a parent/tracestate: {brief_span(s)}")
        problems += check_span_shape(s, st.pids(), port, None)
    n_export = sum(1 for v in sent.values() if v["kind"] != "unsampled")
    if len(spans) != n_export:
        problems.append(f"{len(spans)} spans exported, expected {n_export} (all but the 3 unsampled)")
    m = st.obsd.metrics()
    inv = metric(m, "obs_traceparent_invalid_total")
    if inv != len(invalid):
        problems.append(f"obs_traceparent_invalid_total = {inv:g}, expected exactly {len(invalid)} "
                        f"({', '.join(invalid)})")
    assert not problems, f"{st.ctx()} {len(problems)} problem(s):\n" + "\n".join(problems)


# -- 3. status ------------------------------------------------------------------

def test_span_status_error_on_5xx(stack):
    """/boom (500) -> span status ERROR (2); 2xx -> not ERROR; 404 (a
    client error on a SERVER span) -> not ERROR either."""
    st = stack("status", endpoint="flag")
    port = st.server.port
    truth = [clients.raw_request(HOST, port, "GET", "/boom") for _ in range(3)]
    truth += clients.curl(f"http://{HOST}:{port}", [("GET", "/boom", None), ("GET", "/text", None),
                                                     ("GET", "/json", None), ("GET", f"/users/{uniq()}", None),
                                                     ("GET", f"/nope/{uniq()}", None)])
    truth += [clients.raw_request(HOST, port, "GET", "/text")]
    harness.check_truth_sane(truth)
    spans = st.spans(len(truth))
    d = harness.diff_truth(truth, [span_as_record(s) for s in spans])
    assert d is None, f"{st.ctx()}\n{d}"
    problems = []
    for s in spans:
        code = s["attributes"].get("http.response.status_code")
        sc = s.get("status", {}).get("code")
        if code >= 500 and sc != STATUS_ERROR:
            problems.append(f"{code} response, status.code {sc} (want 2 ERROR): {brief_span(s)}")
        if code < 500 and sc == STATUS_ERROR:
            problems.append(f"{code} response, status.code ERROR: {brief_span(s)}")
    assert sum(1 for s in spans if s["attributes"].get("http.response.status_code") == 500) == 4
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems)


# -- 4. X-Request-ID and trusted proxies ------------------------------------------

def test_x_request_id_trusted_proxy(stack):
    """--trusted-proxy 127.0.0.1/32: X-Request-ID from 127.0.0.1 is kept
    (span request.id and record request_id); from 127.0.0.2 (untrusted) or
    invalid, it is replaced by a generated 32-lowercase-hex id."""
    st = stack("xrid", endpoint="flag", args=["--trusted-proxy", "127.0.0.1/32"])
    port = st.server.port
    cases = []  # (truth, sent id, expect kept, why)
    p = f"/users/{uniq()}"
    cases.append((curl_headers(f"http://{HOST}:{port}{p}", [("X-Request-ID", "keep-me-123")]),
                  "keep-me-123", True, "curl from 127.0.0.1"))
    rid = f"keep-me-raw-{uniq()}"
    cases.append((raw_from("127.0.0.1", port, "GET", f"/users/{uniq()}", [("X-Request-ID", rid)]),
                  rid, True, "raw socket from 127.0.0.1"))
    cases.append((raw_from("127.0.0.2", port, "GET", f"/users/{uniq()}", [("X-Request-ID", "keep-me-123")]),
                  "keep-me-123", False, "raw socket bound to 127.0.0.2 (untrusted)"))
    cases.append((raw_from("127.0.0.1", port, "GET", f"/users/{uniq()}", [("X-Request-ID", "bad id")]),
                  "bad id", False, "trusted peer, invalid id (space)"))
    assert cases[2][0].client.startswith("127.0.0.2:"), cases[2][0].client
    _check_request_ids(st, cases)


def test_x_request_id_length_limits(stack):
    """From a trusted peer, an X-Request-ID of 128 bytes (the longest valid
    one, user/request/trust.h: 1..128 bytes of [A-Za-z0-9._:+/=-]) is kept intact;
    one of 129 bytes is invalid and replaced by a generated id."""
    st = stack("xrid-len", endpoint="flag", args=["--trusted-proxy", "127.0.0.1/32"])
    port = st.server.port
    rid128 = ("max-len-" + secrets.token_hex(64))[:128]
    cases = [(raw_from("127.0.0.1", port, "GET", f"/users/{uniq()}", [("X-Request-ID", rid128)]),
              rid128, True, "trusted peer, 128-byte id (the longest valid)"),
             (raw_from("127.0.0.1", port, "GET", f"/users/{uniq()}", [("X-Request-ID", "x" * 129)]),
              "x" * 129, False, "trusted peer, invalid id (129 bytes)")]
    _check_request_ids(st, cases)


def _check_request_ids(st: Stack, cases) -> None:
    truth = [c[0] for c in cases]
    harness.check_truth_sane(truth)
    records = st.records(len(truth))
    spans = st.spans(len(truth))
    rp, sp = records_by_path(records), by_path(spans)
    problems = []
    for t, sent_id, kept, why in cases:
        recs, ss = rp.get(t.path, []), sp.get(t.path, [])
        if len(recs) != 1 or len(ss) != 1:
            problems.append(f"{why}: {len(recs)} records / {len(ss)} spans for {t.path}")
            continue
        r, s = recs[0], ss[0]
        got_r, got_s = r.get("request_id"), s["attributes"].get("request.id")
        client_ip = t.client.rsplit(":", 1)[0]
        if r.get("client") != t.client or s["attributes"].get("client.address") != client_ip:
            problems.append(f"{why}: client {t.client}, record client {r.get('client')}, "
                            f"span client.address {s['attributes'].get('client.address')}")
        if kept:
            if got_r != sent_id or got_s != sent_id:
                problems.append(f"{why}: X-Request-ID {sent_id!r} ({len(sent_id)} bytes) -> record "
                                f"request_id {got_r!r} ({len(got_r or '')} bytes), span request.id "
                                f"{got_s!r} (want kept)")
        else:
            if not (isinstance(got_r, str) and HEX32.match(got_r)) or got_s != got_r:
                problems.append(f"{why}: X-Request-ID {sent_id!r} ({len(sent_id)} bytes) -> record "
                                f"request_id {got_r!r} ({len(got_r or '')} bytes), span request.id "
                                f"{got_s!r} (want a generated 32-lowercase-hex id, both equal)")
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems)


# -- 5. sampling --------------------------------------------------------------------

def test_traceidratio_sampling(stack):
    """OTEL_TRACES_SAMPLER=traceidratio, ARG=0.25; 4000 requests -> 1000
    spans within five standard deviations of the binomial (+-137: a ratio of
    0.2 or 0.3 is outside, and a fair draw falls outside once in ~2 million
    runs; +-100 failed a fair draw once, 898 in CI); every exported span's
    trace id has low 64 bits < 2^62, every unexported record's has >= 2^62 (the decision is the trace id's), and
    the exported spans are exactly the records marked sampled."""
    st = stack("ratio", endpoint="flag", setup="uvicorn-httptools",
               env={"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    n = 4000
    truth = clients.ab(f"http://{HOST}:{st.server.port}/text", n, 4)
    records = st.records(n)
    assert len(records) == n, f"{st.ctx()} {len(records)} records for {n} requests"
    sampled = {(r["trace_id"], r["span_id"]) for r in records if r.get("sampled")}
    spans = st.spans(len(sampled), timeout=30)
    got = [(s["traceId"], s["spanId"]) for s in spans]
    bound = 1 << 62  # 0.25 * 2^64
    above = [s for s in spans if low64(s["traceId"]) >= bound]
    wrong_rec = [r for r in records if bool(r.get("sampled")) != (low64(r["trace_id"]) < bound)]
    info = (f"{st.ctx()} {n} requests, {len(records)} records, {len(sampled)} marked sampled, "
            f"{len(spans)} spans exported")
    print(info)
    assert not above, (f"{info}; {len(above)} exported spans with trace id low 64 bits >= 0.25*2^64, "
                       f"e.g. {[s['traceId'] for s in above[:5]]}")
    assert not wrong_rec, (f"{info}; {len(wrong_rec)} records whose sampled flag disagrees with "
                           f"low64(trace_id) < 2^62, e.g. "
                           f"{[(r['trace_id'], r.get('sampled')) for r in wrong_rec[:5]]}")
    p = 0.25
    slack = 5 * math.sqrt(n * p * (1 - p))
    assert abs(len(spans) - n * p) <= slack, f"{info}: not within {n * p:.0f} +- {slack:.0f}"
    assert not dup_ids(spans), f"{info}; duplicate span ids {dup_ids(spans)[:5]}"
    assert set(got) == sampled, (f"{info}; exported - sampled: {len(set(got) - sampled)}, "
                                 f"sampled - exported: {len(sampled - set(got))}")
    m = st.obsd.metrics()
    assert metric(m, "obs_spans_exported_total") == len(spans), f"{info}; exported_total {m}"
    assert len(truth) == n


# -- 6. collector down and back; collector answering 500 ------------------------------

QUEUE = 200
BATCH = 50
DROP_QUEUE = 'obs_spans_dropped_total{reason="queue_full"}'
DROP_EXPORT = 'obs_spans_dropped_total{reason="export_failed"}'
ERR_CONNECT = 'obs_export_errors_total{kind="connect"}'
ERR_REJECTED = 'obs_export_errors_total{kind="rejected"}'
ERR_RETRYABLE = 'obs_export_errors_total{kind="retryable_status"}'


def _health_ok(st: Stack) -> List[str]:
    p = []
    if not st.obsd.alive():
        p.append(f"obsd exited ({st.obsd.proc.returncode if st.obsd.proc else '?'})")
        return p
    for path in ("/health", "/ready"):
        try:
            code, body = st.obsd.get(path, timeout=3)
        except OSError as e:
            p.append(f"{path}: {e!r}")
            continue
        if code != 200:
            p.append(f"{path} -> {code} {body[:200]!r}")
        elif path == "/health" and json.loads(body).get("status") != "ok":
            p.append(f"/health status {body[:200]!r}")
    return p


def test_collector_down_and_back(stack):
    """Receiver SIGKILLed while requests keep coming: obsd stays healthy,
    keeps recording, holds at most the queue (+ one in-flight batch) and
    counts every span it loses in obs_spans_dropped_total; once the receiver
    is back on the same port, new requests' spans arrive again."""
    st = stack("down", endpoint="flag",
               env={"OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(BATCH),
                    "OTEL_EXPORTER_OTLP_TIMEOUT": "2000"})
    port = st.server.port
    phase: Dict[str, str] = {}   # path -> "before" | "down" | "after"

    # at most 10 requests per pipeline (~900 bytes): the server reads a pipeline in one
    # read, and obs parses only the first --capture-bytes (2048) of a read
    def burst(tag: str, n: int, per_pipeline: int = 10) -> List[Truth]:
        out: List[Truth] = []
        while len(out) < n:
            k = min(per_pipeline, n - len(out))
            reqs = [("GET", f"/users/{uniq()}") for _ in range(k)]
            for _, p in reqs:
                phase[p] = tag
            out += clients.pipeline(HOST, port, reqs)
        return out

    truth = burst("before", 20)
    before = st.spans(20)
    assert len(before) == 20, f"{st.ctx()} before the outage: {len(before)}/20 spans\n{st.debug()}"

    st.receiver.kill()
    problems = []
    queued_seen = []
    n_down = 0
    t_end = time.monotonic() + 3.0
    while time.monotonic() < t_end or n_down < 3 * QUEUE:   # traffic continues during the outage
        truth += burst("down", 30)
        n_down += 30
        problems += [f"during outage: {x}" for x in _health_ok(st)]
        queued_seen.append(metric(st.obsd.metrics(), "obs_spans_queued"))
        time.sleep(0.05)
    harness.check_truth_sane(truth)
    recs = st.records(len(truth))
    d = harness.diff_truth(truth, recs)
    assert d is None, f"{st.ctx()} requests made while the collector was down are not all recorded:\n{d}"
    m_down = st.obsd.metrics()
    problems += [f"after outage: {x}" for x in _health_ok(st)]
    if max(queued_seen) > QUEUE:
        problems.append(f"obs_spans_queued reached {max(queued_seen):g} > OTEL_BSP_MAX_QUEUE_SIZE {QUEUE}")
    if metric(m_down, DROP_QUEUE) <= 0:
        problems.append(f"{n_down} requests while down, queue of {QUEUE}: "
                        f"obs_spans_dropped_total{{reason=\"queue_full\"}} is 0")
    if metric(m_down, ERR_CONNECT) <= 0:
        problems.append("collector down: obs_export_errors_total{kind=\"connect\"} is 0")

    st.receiver.start()   # same port, same output file
    # What obsd held through the outage (queue + the batch being retried) leaves on its next
    # retry (backoff: 1 s doubling); only once the queue has room again are new spans accepted.
    deadline = time.monotonic() + 30
    while True:
        held = metric(st.obsd.metrics(), "obs_spans_queued")
        n_rx = len(st.receiver.spans())
        if (held == 0 and n_rx > len(before)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if held != 0 or n_rx <= len(before):
        problems.append(f"receiver back for 30 s: obs_spans_queued still {held:g}, "
                        f"{n_rx - len(before)} spans of the outage delivered")
    truth += burst("after", 20)
    all_recs = st.records(len(truth))
    after_paths = {p for p, v in phase.items() if v == "after"}
    spans = st.spans(0, timeout=40,
                     done=lambda ss: after_paths <= {s["attributes"].get("url.path") for s in ss})
    got_paths = collections.Counter(s["attributes"].get("url.path") for s in spans)
    missing_after = sorted(after_paths - set(got_paths))
    if missing_after:
        problems.append(f"exporting did not resume: {len(missing_after)}/{len(after_paths)} spans of "
                        f"requests made after the receiver came back never arrived")
    dups = dup_ids(spans)
    if dups:
        problems.append(f"duplicate span ids received: {dups[:5]}")
    m = st.obsd.metrics()
    received = {s["spanId"] for s in spans}
    lost = len(all_recs) - len(received)
    dq = metric(m, DROP_QUEUE)
    de = metric(m, DROP_EXPORT)
    delivered_down = sum(1 for p, v in phase.items() if v == "down" and got_paths.get(p))
    summary = (f"requests {len(all_recs)} (before 20, down {n_down}, after 20); spans received "
               f"{len(received)} (down-phase delivered {delivered_down}); lost {lost}; dropped "
               f"queue_full {dq:g} export_failed {de:g}; exported_total "
               f"{metric(m, 'obs_spans_exported_total'):g}; queued {metric(m, 'obs_spans_queued'):g}; "
               f"errors connect {metric(m, ERR_CONNECT):g}")
    if lost != dq + de:
        problems.append(f"lost spans not all counted: lost {lost} != dropped queue_full {dq:g} + "
                        f"export_failed {de:g}")
    if delivered_down > QUEUE + BATCH:
        problems.append(f"{delivered_down} spans of the outage delivered: more than the queue "
                        f"({QUEUE}) + one batch ({BATCH}) can hold")
    if metric(m, "obs_spans_exported_total") != len(received):
        problems.append(f"obs_spans_exported_total {metric(m, 'obs_spans_exported_total'):g} != "
                        f"{len(received)} spans received")
    if metric(m, "obs_spans_queued") != 0:
        problems.append("obs_spans_queued not 0 after recovery")
    missing_before = [s for s in before if s["spanId"] not in received]
    problems += [f"span exported before the outage vanished: {brief_span(s)}" for s in missing_before]
    problems += [f"after recovery: {x}" for x in _health_ok(st)]
    print(summary)
    assert not problems, f"{st.ctx()}\n{summary}\n" + "\n".join(problems) + f"\n{st.debug()}"


def test_collector_rejects_500(stack):
    """A receiver answering 500: each batch is counted as
    obs_export_errors_total{kind="rejected"} (growing with every batch) and
    its spans as dropped export_failed; nothing counts as exported; obsd
    stays healthy and keeps recording."""
    st = stack("reject", endpoint="flag", receiver_status=500)
    port = st.server.port

    def wait_metric(key: str, want: float, timeout: float = 15.0) -> Dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            m = st.obsd.metrics()
            if metric(m, key) >= want or time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    truth = [clients.raw_request(HOST, port, "GET", f"/users/{uniq()}") for _ in range(10)]
    m1 = wait_metric(DROP_EXPORT, 10)
    r1 = metric(m1, ERR_REJECTED)
    truth += clients.curl(f"http://{HOST}:{port}", [("GET", f"/users/{uniq()}", None) for _ in range(10)])
    m2 = wait_metric(DROP_EXPORT, 20)
    time.sleep(1.0)
    m2 = st.obsd.metrics()
    r2 = metric(m2, ERR_REJECTED)
    recs = st.records(len(truth))
    rstats = st.receiver.stats()
    summary = (f"rejected {r1:g} -> {r2:g}; dropped export_failed "
               f"{metric(m2, DROP_EXPORT):g}; exported "
               f"{metric(m2, 'obs_spans_exported_total'):g}; receiver {rstats}")
    print(summary)
    problems = []
    if not (r1 >= 1 and r2 > r1):
        problems.append("obs_export_errors_total{kind=\"rejected\"} did not grow with each batch")
    if metric(m2, DROP_EXPORT) != 20:
        problems.append("20 sampled spans all answered 500: dropped export_failed should be 20")
    if metric(m2, "obs_spans_exported_total") != 0:
        problems.append("spans counted as exported although the collector answered 500")
    if rstats.get("requests") != r2:
        problems.append(f"receiver got {rstats.get('requests')} POSTs, obsd counts {r2:g} rejected")
    if metric(m2, ERR_RETRYABLE) != 0:
        problems.append("500 counted as retryable")
    d = harness.diff_truth(truth, recs)
    if d:
        problems.append(f"/api/requests vs clients:\n{d}")
    problems += _health_ok(st)
    assert not problems, f"{st.ctx()}\n{summary}\n" + "\n".join(problems)


# -- 7. no endpoint: /api/traces ------------------------------------------------------

def test_api_traces_without_endpoint(stack):
    """No endpoint configured: spans stay local; GET /api/traces lists one
    span per request (trace_id, span_id, name, status) matching the
    /api/requests records. No --trusted-proxy: an incoming X-Request-ID from
    127.0.0.1 is replaced (default: no peer trusted)."""
    st = stack("local", endpoint=None)
    port = st.server.port
    truth = [harness.probe(port)]
    truth += clients.curl(f"http://{HOST}:{port}", [("GET", f"/users/{uniq()}", None), ("GET", "/boom", None),
                                                     ("GET", "/json", None), ("GET", f"/nope/{uniq()}", None)])
    xr = raw_from("127.0.0.1", port, "GET", f"/users/{uniq()}", [("X-Request-ID", "keep-me-123")])
    truth.append(xr)
    harness.check_truth_sane(truth)
    records = st.records(len(truth))
    doc = st.obsd.traces()
    pids = st.pids()
    spans = [s for s in doc.get("spans", []) if s.get("resource", {}).get("process.pid") in pids]
    problems = []
    if doc.get("exporting") is not False:
        problems.append(f"/api/traces exporting={doc.get('exporting')!r} without an endpoint")
    if len(spans) != len(truth):
        problems.append(f"{len(spans)} spans in /api/traces for {len(truth)} requests")
    recs = {(r["trace_id"], r["span_id"]): r for r in records}
    for s in spans:
        r = recs.get((s.get("trace_id"), s.get("span_id")))
        if not HEX32.match(s.get("trace_id", "")) or not HEX16.match(s.get("span_id", "")):
            problems.append(f"ids {s.get('trace_id')!r} {s.get('span_id')!r}")
        if r is None:
            problems.append(f"span without a record: {s.get('trace_id')} {s.get('span_id')} {s.get('name')}")
            continue
        want_name = f"{r['method']} {route_of(r['path'])}"
        if s.get("name") != want_name:
            problems.append(f"name {s.get('name')!r} != {want_name!r}")
        code = (s.get("status") or {}).get("code")
        if (r["status"] >= 500) != (code == "ERROR") or code is None:
            problems.append(f"status {r['status']} -> span status {s.get('status')!r}")
        if s.get("kind") != "SERVER":
            problems.append(f"kind {s.get('kind')!r}")
        if s.get("attributes", {}).get("request.id") != r["request_id"]:
            problems.append(f"request.id {s.get('attributes', {}).get('request.id')!r} != {r['request_id']!r}")
        if r["path"] == xr.path and (r["request_id"] == "keep-me-123" or not HEX32.match(r["request_id"])):
            problems.append(f"X-Request-ID from an untrusted peer (no --trusted-proxy): request_id "
                            f"{r['request_id']!r}, want a generated id")
    m = st.obsd.metrics()
    if "obs_spans_exported_total" in m and m["obs_spans_exported_total"] != 0:
        problems.append(f"obs_spans_exported_total {m['obs_spans_exported_total']} without an endpoint")
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems) + f"\n/api/traces: {json.dumps(doc)[:2000]}"


# -- 8. export headers ------------------------------------------------------------------

@pytest.mark.parametrize("how", ["env", "flags"])
def test_otlp_headers(stack, how):
    """OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20abc" with the full
    URL from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -- or the same through
    --otlp-header and --otlp-traces-endpoint -> every export request carried
    authorization "Bearer abc" (%-decoded)."""
    if how == "env":
        st = stack("headers-env", endpoint="traces_env",
                   env={"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc"})
    else:
        st = stack("headers-flags", endpoint="traces_flag",
                   args=["--otlp-header", "authorization=Bearer%20abc"])
    port = st.server.port
    truth = [clients.raw_request(HOST, port, "GET", f"/users/{uniq()}") for _ in range(3)]
    truth += clients.curl(f"http://{HOST}:{port}", [("GET", "/text", None), ("GET", "/json", None)])
    spans = st.spans(len(truth))
    assert len(spans) == len(truth), f"{st.ctx()} {len(spans)} spans for {len(truth)} requests\n{st.debug()}"
    auth = collections.Counter(s.get("headers", {}).get("authorization") for s in spans)
    assert auth == {"Bearer abc": len(spans)}, f"{st.ctx()} authorization headers seen: {dict(auth)}"
