"""OTLP metrics export (user/sinks/otlp_metrics.c).

Every test starts its own real uvicorn server, its own test OTLP/HTTP
receiver (tests/otlp/receiver.js: decodes ExportMetricsServiceRequest bodies
with the decoder generated from the official OpenTelemetry protos, one JSON
line per data point) and its own obsd with a short OTEL_METRIC_EXPORT_INTERVAL,
drives known requests with real clients (raw sockets, pipelining, curl, ab)
and compares what the receiver decoded with what the clients got.
"""
import collections
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest

import clients
import harness
from clients import Truth
from harness import HOST, Server, stop_obsd_checked, uniq
from traces_support import ObsdOtel, Receiver, metric, route_of

UVICORN = "uvicorn-h11"
INTERVAL_MS = 400
WAIT = 20.0
# the Prometheus buckets of /metrics (metrics.c default_buckets), seconds
BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
DELTA, CUMULATIVE = 1, 2
DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"
REQ_SIZE = "obs.http.server.request.size"
RESP_SIZE = "obs.http.server.response.size"
Key = Tuple[str, str, int]   # (method, route, status)


# -- receiver, stack ----------------------------------------------------------

class MetricsReceiver(Receiver):
    def points(self) -> List[dict]:
        """Every metric data point line written so far."""
        try:
            data = Path(str(self.out) + ".metrics").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.split("\n")[:-1] if line.strip()]


@dataclass
class Stack:
    name: str
    server: Server
    obsd: ObsdOtel
    receiver: Optional[MetricsReceiver]

    def ctx(self) -> str:
        r = f"receiver port {self.receiver.port}" if self.receiver else "no receiver"
        return (f"[{self.name}: {self.server.setup} port {self.server.port} pids "
                f"{sorted(self.server.pids())}; {r}; {self.obsd.describe()}]")

    def points(self) -> List[dict]:
        """The receiver's points of this server's resource (process.pid)."""
        pids = self.server.pids()
        return [p for p in self.receiver.points() if p["resource"].get("process.pid") in pids]

    def records(self, n: int) -> List[dict]:
        return harness.wait_records(self.obsd.requests, self.server.pids, n)

    def debug(self) -> str:
        out = f"{self.ctx()}\n--- obsd output ---\n{self.obsd.output()}"
        if self.receiver:
            out += f"\n--- receiver output ---\n{self.receiver.log()}"
        return out


@pytest.fixture
def stack(tmp_path):
    """make(name, env={}, args=[], receiver_args=[], endpoint="metrics_env"|"base_flag"|None)
    -> a Stack with receiver (unless endpoint is None), obsd and uvicorn
    started. obsd gets OTEL_METRIC_EXPORT_INTERVAL=400 unless env says
    otherwise. Teardown: obsd must exit 0 within 5 s of SIGTERM."""
    made: List[Stack] = []

    def make(name: str, env: Optional[Dict[str, str]] = None, args: Sequence[str] = (),
             receiver_args: Sequence[str] = (), endpoint: Optional[str] = "metrics_env") -> Stack:
        server = Server(UVICORN, tmp_path / f"{name}-server")
        rx = None
        if endpoint is not None:
            rx = MetricsReceiver(tmp_path / f"{name}.jsonl", name=f"otlp-receiver-{name}",
                                 args=receiver_args).start()
        e = {"OTEL_METRIC_EXPORT_INTERVAL": str(INTERVAL_MS)}
        a = ["--port", str(server.port)] + list(args)
        if endpoint == "metrics_env":
            e["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = rx.base + "/v1/metrics"
        elif endpoint == "base_flag":
            a += ["--otlp-endpoint", rx.base]
        e.update(env or {})
        st = Stack(name, server, ObsdOtel(a, e, name=f"obsd-{name}"), rx)
        made.append(st)
        st.obsd.start()
        server.start()
        return st

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


# -- workloads and what they must give -------------------------------------------

def drive_a(port: int) -> List[Truth]:
    """Raw single requests (one of them a DELETE the app answers 405),
    pipelining, curl keep-alive: GET /text, /users/{id}, /json, /boom (500),
    /nope/{id} (404)."""
    T = [harness.probe(port)]
    T += [clients.raw_request(HOST, port, "GET", "/text") for _ in range(2)]
    T += [clients.raw_request(HOST, port, "GET", f"/users/{uniq()}") for _ in range(3)]
    T.append(clients.raw_request(HOST, port, "DELETE", "/text"))
    # /boom last: after a 500, uvicorn closes the connection
    T += clients.pipeline(HOST, port, [("GET", f"/users/{uniq()}"), ("GET", "/json"),
                                       ("GET", f"/nope/{uniq()}"), ("GET", "/boom")])
    T += clients.curl(f"http://{HOST}:{port}", [("GET", "/json", None), ("GET", "/boom", None),
                                                ("GET", f"/users/{uniq()}", None)])
    return T


def drive_b(port: int, workdir: Path) -> List[Truth]:
    """Different routes and clients: POST /upload, /slow, ab -k on /json,
    curl with Connection: close."""
    workdir.mkdir(parents=True, exist_ok=True)
    body = clients.make_body_file(str(workdir), 64 * 1024, "upload.bin")
    base = f"http://{HOST}:{port}"
    T = clients.curl(base, [("POST", "/upload", body), ("GET", "/slow", None),
                            ("GET", f"/nope/{uniq()}", None)], close=True)
    T += clients.ab(f"{base}/json", 20, 2)
    T.append(clients.raw_request(HOST, port, "GET", "/text"))
    return T


def expected(truth: Sequence[Truth]) -> Dict[Key, int]:
    assert all(t.status for t in truth), [t.describe() for t in truth if not t.status]
    return dict(collections.Counter((t.method, route_of(t.path), t.status) for t in truth))


def key_of(p: dict) -> Key:
    a = p["attributes"]
    return (a.get("http.request.method"), a.get("http.route"), a.get("http.response.status_code"))


def exports(points: List[dict]) -> Dict[int, List[dict]]:
    """Points by export (the receiver's request number), in arrival order."""
    out: Dict[int, List[dict]] = collections.defaultdict(list)
    for p in points:
        out[p["export"]].append(p)
    return dict(sorted(out.items()))


def durations(points: List[dict]) -> List[dict]:
    return [p for p in points if p["name"] == DURATION]


def latest_counts(points: List[dict]) -> Dict[Key, int]:
    """Cumulative: the duration counts of the newest export that has any."""
    ex = [pts for pts in exports(points).values() if durations(pts)]
    return {key_of(p): p["count"] for p in durations(ex[-1])} if ex else {}


def delta_totals(points: List[dict]) -> Dict[Key, int]:
    """Delta: the duration counts summed over every export."""
    tot: Dict[Key, int] = collections.Counter()
    for p in durations(points):
        tot[key_of(p)] += p["count"]
    return dict(tot)


def add(a: Dict[Key, int], b: Dict[Key, int]) -> Dict[Key, int]:
    return dict(collections.Counter(a) + collections.Counter(b))


def wait_for(fn: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def diff(want: Dict[Key, int], got: Dict[Key, int]) -> str:
    keys = sorted(set(want) | set(got), key=str)
    return "\n".join(f"  {k}: clients {want.get(k, 0)}, exported {got.get(k, 0)}"
                     for k in keys if want.get(k, 0) != got.get(k, 0))


def check_point_shapes(pts: List[dict], want_temporality: int, server_pid: int) -> List[str]:
    """Every point: resource and scope as specified; histograms with the
    Prometheus bounds and bucket counts summing to the count; the up-down
    counter cumulative and not monotonic whatever the preference."""
    problems = []
    for p in pts:
        r = p["resource"]
        where = f"export {p['export']} {p['name']} {p.get('attributes')}"
        if r.get("service.name") != "app:app" or r.get("process.pid") != server_pid or \
                not r.get("host.name") or r.get("process.executable.name") is None:
            problems.append(f"{where}: resource {r}")
        if (p["scope"] or {}).get("name") != "obs":
            problems.append(f"{where}: scope {p['scope']}")
        if int(p["start"]) >= int(p["time"]):
            problems.append(f"{where}: start {p['start']} not before time {p['time']}")
        if p["name"] == DURATION:
            if p["type"] != "histogram" or p["unit"] != "s" or p["temporality"] != want_temporality:
                problems.append(f"{where}: type {p['type']} unit {p['unit']} "
                                f"temporality {p['temporality']}")
            if p["explicitBounds"] != BOUNDS or len(p["bucketCounts"]) != len(BOUNDS) + 1:
                problems.append(f"{where}: bounds {p['explicitBounds']} buckets {p['bucketCounts']}")
            if sum(p["bucketCounts"]) != p["count"] or p["count"] <= 0 or p["sum"] is None:
                problems.append(f"{where}: bucket counts {p['bucketCounts']} sum to "
                                f"{sum(p['bucketCounts'])}, count {p['count']}, sum {p['sum']}")
            a = p["attributes"]
            code = a.get("http.response.status_code", 0)
            if a.get("url.scheme") != "http" or (code >= 500) != (a.get("error.type") == str(code)):
                problems.append(f"{where}: url.scheme / error.type")
        elif p["name"] in (REQ_SIZE, RESP_SIZE):
            if (p["type"], p["unit"], p["monotonic"], p["temporality"]) != \
                    ("sum", "By", True, want_temporality):
                problems.append(f"{where}: {p['type']} {p['unit']} monotonic {p['monotonic']} "
                                f"temporality {p['temporality']}")
        elif p["name"] == ACTIVE:
            if (p["type"], p["unit"], p["monotonic"], p["temporality"]) != \
                    ("sum", "{request}", False, CUMULATIVE):
                problems.append(f"{where}: {p['type']} {p['unit']} monotonic {p['monotonic']} "
                                f"temporality {p['temporality']}")
        else:
            problems.append(f"{where}: unexpected metric")
    return problems


def exported_matches_counter(st: Stack) -> List[str]:
    """obs_metric_points_exported_total agrees with what the receiver
    decoded (read before and after it: an export may be under way)."""
    before = metric(st.obsd.metrics(), "obs_metric_points_exported_total")
    received = st.receiver.stats()["points"]
    time.sleep(0.3)
    after = metric(st.obsd.metrics(), "obs_metric_points_exported_total")
    if not before <= received <= after:
        return [f"obs_metric_points_exported_total {before:g}..{after:g}, receiver decoded "
                f"{received} points"]
    return []


# -- 1. cumulative ------------------------------------------------------------------

def test_cumulative_counts_match_clients(stack, tmp_path):
    """Default temporality: after each phase of requests, the newest export's
    http.server.request.duration count per (method, route, status) equals
    what the clients got so far (so the second phase's export still holds
    the first phase's counts); every export has the same start time; once
    idle, exports repeat the same totals; the histograms sum per (method,
    route) equals /metrics' http_request_duration_seconds_count; the byte
    sums equal /metrics' byte counters and the records' bytes."""
    st = stack("cumulative")
    port = st.server.port
    truth_a = drive_a(port)
    want_a = expected(truth_a)
    ok = wait_for(lambda: latest_counts(st.points()) == want_a)
    assert ok, f"{st.ctx()} phase A never exported as the clients saw it:\n" \
               f"{diff(want_a, latest_counts(st.points()))}\n{st.debug()}"
    truth_b = drive_b(port, tmp_path / "b")
    want = add(want_a, expected(truth_b))
    ok = wait_for(lambda: latest_counts(st.points()) == want)
    assert ok, f"{st.ctx()} after phase B:\n{diff(want, latest_counts(st.points()))}\n{st.debug()}"
    n_ex = len(exports(st.points()))
    assert wait_for(lambda: len(exports(st.points())) >= n_ex + 2), "exports stopped while idle"
    records = st.records(len(truth_a) + len(truth_b))
    m = st.obsd.metrics()
    pts = st.points()
    ex = exports(pts)
    last, prev = list(ex.values())[-1], list(ex.values())[-2]
    problems = check_point_shapes(pts, CUMULATIVE, st.server.pid)
    starts = {p["start"] for p in pts}
    if len(starts) != 1:
        problems.append(f"cumulative points with {len(starts)} different start times")
    if latest_counts(last) != want or latest_counts(prev) != want:
        problems.append("idle exports do not repeat the cumulative totals")
    seen: Dict[Key, int] = {}
    for n, e in ex.items():
        for p in durations(e):
            if p["count"] < seen.get(key_of(p), 0):
                problems.append(f"export {n}: {key_of(p)} count went down to {p['count']}")
            seen[key_of(p)] = p["count"]
    by_mr: Dict[Tuple[str, str], int] = collections.Counter()
    for (meth, route, _), c in want.items():
        by_mr[(meth, route)] += c
    for (meth, route), c in by_mr.items():
        prom = metric(m, f'http_request_duration_seconds_count{{method="{meth}",route="{route}"}}')
        if prom != c:
            problems.append(f"/metrics {meth} {route} count {prom:g}, clients {c}")
    sizes = {p["name"]: p["value"] for p in last if p["name"] in (REQ_SIZE, RESP_SIZE)}
    rec_in = sum(r["bytes_in"] for r in records)
    rec_out = sum(r["bytes_out"] for r in records)
    if (sizes.get(REQ_SIZE), sizes.get(RESP_SIZE)) != (rec_in, rec_out) or \
            metric(m, "http_bytes_received_total") != rec_in or metric(m, "http_bytes_sent_total") != rec_out:
        problems.append(f"bytes: exported {sizes}, records in {rec_in} out {rec_out}, /metrics "
                        f"{metric(m, 'http_bytes_received_total'):g} {metric(m, 'http_bytes_sent_total'):g}")
    if [p["value"] for p in last if p["name"] == ACTIVE] != [0]:
        problems.append(f"idle: {ACTIVE} {[p['value'] for p in last if p['name'] == ACTIVE]}, want [0]")
    problems += exported_matches_counter(st)
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems[:30])


# -- 2. delta -------------------------------------------------------------------------

def test_delta_temporality(stack, tmp_path):
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta: the duration
    counts summed over all exports equal what the clients got, phase by
    phase (nothing counted twice); exports while idle carry no duration or
    byte points (unchanged series are left out) but do carry the up-down
    counter, which stays cumulative; each export's window starts where the
    previous collection ended."""
    st = stack("delta", env={"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"})
    port = st.server.port
    truth_a = drive_a(port)
    want_a = expected(truth_a)
    ok = wait_for(lambda: delta_totals(st.points()) == want_a)
    assert ok, f"{st.ctx()} phase A:\n{diff(want_a, delta_totals(st.points()))}\n{st.debug()}"
    n_a = max(exports(st.points()), default=0)
    time.sleep(4 * INTERVAL_MS / 1000)
    idle = {n: pts for n, pts in exports(st.points()).items() if n > n_a}
    truth_b = drive_b(port, tmp_path / "b")
    want = add(want_a, expected(truth_b))
    ok = wait_for(lambda: delta_totals(st.points()) == want)
    assert ok, f"{st.ctx()} after phase B:\n{diff(want, delta_totals(st.points()))}\n{st.debug()}"
    records = st.records(len(truth_a) + len(truth_b))
    pts = st.points()
    problems = check_point_shapes(pts, DELTA, st.server.pid)
    if len(idle) < 2:
        problems.append(f"only {len(idle)} exports in {4 * INTERVAL_MS} ms of idleness")
    for n, e in idle.items():
        names = sorted({p["name"] for p in e})
        if names != [ACTIVE]:
            problems.append(f"idle export {n} carries {names}, want only {ACTIVE}")
    windows = sorted({(int(p["start"]), int(p["time"])) for p in pts if p["name"] != ACTIVE},
                     key=lambda w: w[1])
    for (s0, t0), (s1, t1) in zip(windows, windows[1:]):
        if s1 < t0:
            problems.append(f"delta windows overlap: [{s0}, {t0}] and [{s1}, {t1}]")
    for p in pts:
        if p["name"] == ACTIVE and int(p["start"]) != min(int(q["start"]) for q in pts):
            problems.append(f"{ACTIVE} start {p['start']} is not the exporter's start")
            break
    size = collections.Counter()
    for p in pts:
        if p["name"] in (REQ_SIZE, RESP_SIZE):
            size[p["name"]] += p["value"]
    rec = {REQ_SIZE: sum(r["bytes_in"] for r in records), RESP_SIZE: sum(r["bytes_out"] for r in records)}
    if dict(size) != rec:
        problems.append(f"byte deltas sum to {dict(size)}, records say {rec}")
    problems += exported_matches_counter(st)
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems[:30])


# -- 3. a failing collector --------------------------------------------------------------

def test_503_retry_after_then_delivered(stack):
    """The collector answers the first two exports 503 with Retry-After: 2:
    obsd retries the same body after 2 s each time (not after its 1 s
    backoff), counts two retryable errors and no loss, and once the
    collector accepts, the counts it gets equal the clients'."""
    st = stack("retry", receiver_args=["--status", "503", "--fail-first", "2", "--retry-after", "2"])
    truth = drive_a(st.server.port)
    want = expected(truth)
    ok = wait_for(lambda: latest_counts(st.points()) == want)
    log = st.receiver.stats()["metric_log"]
    assert ok, f"{st.ctx()} never delivered after the 503s; receiver log {log}\n" \
               f"{diff(want, latest_counts(st.points()))}\n{st.debug()}"
    m = st.obsd.metrics()
    problems = []
    if [e["status"] for e in log[:3]] != [503, 503, 200]:
        problems.append(f"receiver statuses {[e['status'] for e in log]}")
    gaps = [(b["t_ms"] - a["t_ms"]) / 1000 for a, b in zip(log[:3], log[1:3])]
    if len(gaps) < 2 or min(gaps) < 1.9:
        problems.append(f"retries {gaps} s apart, Retry-After asked for 2 s")
    for key, want_v in (('obs_metric_export_errors_total{kind="retryable_status"}', 2),
                        ('obs_metric_export_errors_total{kind="gave_up"}', 0),
                        ('obs_metric_exports_dropped_total{reason="export_failed"}', 0),
                        ('obs_metric_exports_dropped_total{reason="queue_full"}', 0),
                        ('obs_metric_points_dropped_total{reason="export_failed"}', 0)):
        if metric(m, key) != want_v:
            problems.append(f"{key} = {metric(m, key):g}, want {want_v}")
    problems += exported_matches_counter(st)
    problems += check_point_shapes(st.points(), CUMULATIVE, st.server.pid)
    assert not problems, f"{st.ctx()}\n" + "\n".join(problems) + f"\nreceiver log {log}"


def test_rejected_and_unreachable_collectors(stack):
    """A collector answering 400: every body is dropped at once (no retry)
    and counted as rejected / export_failed, nothing as exported. No
    collector at all: connect errors, the queue stays within its bound and
    what does not fit is counted as dropped queue_full. obsd stays healthy."""
    bad = stack("rejected", receiver_args=["--status", "400"])
    dead_port = harness.free_port()
    down = stack("down", endpoint=None,
                 env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://{HOST}:{dead_port}/v1/metrics",
                      "OTEL_METRIC_EXPORT_INTERVAL": "100"})
    drive_a(bad.server.port)
    drive_a(down.server.port)
    key_failed = 'obs_metric_exports_dropped_total{reason="export_failed"}'
    key_full = 'obs_metric_exports_dropped_total{reason="queue_full"}'
    assert wait_for(lambda: metric(bad.obsd.metrics(), key_failed) >= 2), bad.debug()
    assert wait_for(lambda: metric(down.obsd.metrics(), key_full) >= 1), down.debug()
    problems = []
    m = bad.obsd.metrics()
    rx = bad.receiver.stats()
    rejected = metric(m, 'obs_metric_export_errors_total{kind="rejected"}')
    if rejected != metric(m, key_failed) or rejected < 2:
        problems.append(f"400: rejected errors {rejected:g}, exports dropped export_failed "
                        f"{metric(m, key_failed):g}")
    if not rejected <= rx["metric_requests"] <= rejected + 1:
        problems.append(f"400: receiver got {rx['metric_requests']} POSTs, obsd counts {rejected:g} "
                        f"rejected (a retry?)")
    for key in ('obs_metric_export_errors_total{kind="retryable_status"}',
                'obs_metric_export_errors_total{kind="connect"}', "obs_metric_points_exported_total"):
        if metric(m, key) != 0:
            problems.append(f"400: {key} = {metric(m, key):g}")
    if metric(m, 'obs_metric_points_dropped_total{reason="export_failed"}') <= 0:
        problems.append("400: no data points counted as dropped")
    md = down.obsd.metrics()
    if metric(md, 'obs_metric_export_errors_total{kind="connect"}') < 1:
        problems.append("down: no connect error counted")
    if metric(md, "obs_metric_exports_queued") > 16:
        problems.append(f"down: {metric(md, 'obs_metric_exports_queued'):g} exports queued > 16")
    if metric(md, 'obs_metric_points_dropped_total{reason="queue_full"}') <= 0:
        problems.append("down: exports dropped from the queue but no points counted")
    for s in (bad, down):
        code, body = s.obsd.get("/health")
        if code != 200 or json.loads(body).get("status") != "ok":
            problems.append(f"{s.name}: /health {code} {body[:200]!r}")
    assert not problems, "\n".join(problems) + f"\n{bad.ctx()}\n{down.ctx()}"


# -- 4. settings: --config keys, flags, OTEL_METRICS_EXPORTER=none ---------------------------

def test_config_file_and_exporter_none(stack, tmp_path):
    """The YAML keys otlp-metrics-endpoint, metric-export-interval,
    metrics-temporality and otlp-header reach the exporter (delta points,
    the header on every request); the base --otlp-endpoint flag sends
    metrics to /v1/metrics; OTEL_METRICS_EXPORTER=none turns metrics off
    (spans still go) and drops the obs_metric_* series."""
    rx_port = harness.free_port()
    cfg = tmp_path / "obsd.yaml"
    cfg.write_text(f"otlp-metrics-endpoint: http://{HOST}:{rx_port}/v1/metrics\n"
                   "metric-export-interval: 300\nmetrics-temporality: delta\n"
                   "otlp-header: [\"authorization=Bearer%20m\"]\n")
    rx = MetricsReceiver(tmp_path / "file.jsonl", port=rx_port, name="otlp-receiver-file").start()
    try:
        # OTEL_METRIC_EXPORT_INTERVAL set but empty counts as unset: the file's value applies
        f = stack("file", endpoint=None, args=["--config", str(cfg)],
                  env={"OTEL_METRIC_EXPORT_INTERVAL": ""})
        f.receiver = rx
        off = stack("off", endpoint="base_flag", env={"OTEL_METRICS_EXPORTER": "none",
                                                      "OTEL_BSP_SCHEDULE_DELAY": "200"})
        on = stack("flag", endpoint="base_flag", args=["--metric-export-interval", "300"])
        want_f = expected(drive_a(f.server.port))
        truth_off = drive_a(off.server.port)
        want_on = expected(drive_a(on.server.port))
        ok_f = wait_for(lambda: delta_totals(f.points()) == want_f)
        ok_on = wait_for(lambda: latest_counts(on.points()) == want_on)
        problems = []
        if not ok_f:
            problems.append(f"--config: {diff(want_f, delta_totals(f.points()))}")
        problems += check_point_shapes(f.points(), DELTA, f.server.pid)
        auth = collections.Counter(p["headers"]["authorization"] for p in rx.points())
        if set(auth) != {"Bearer m"}:
            problems.append(f"--config otlp-header: authorization seen {dict(auth)}")
        if not ok_on:
            problems.append(f"--otlp-endpoint: {diff(want_on, latest_counts(on.points()))}")
        spans_ok = wait_for(lambda: off.receiver.stats()["spans"] >= len(truth_off), timeout=10)
        time.sleep(1.0)   # a metrics export, if any, would have come by now
        st_off = off.receiver.stats()
        if st_off["metric_requests"] or not spans_ok:
            problems.append(f"OTEL_METRICS_EXPORTER=none: receiver {st_off}")
        if any(k.startswith("obs_metric_") for k in off.obsd.metrics()):
            problems.append("OTEL_METRICS_EXPORTER=none: obs_metric_* series on /metrics")
        assert not problems, "\n".join(problems) + f"\n{f.ctx()}\n{off.ctx()}\n{on.ctx()}"
    finally:
        rx.stop()
