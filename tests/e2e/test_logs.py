"""Log records: the lines a real uvicorn server writes to stdout/stderr,
exported by obsd over OTLP/HTTP logs and linked to their request's trace only
when that is certain.

One module-wide rig: a uvicorn server (logs_app.py: every /work/<id> request
writes a Python-logging line and a structlog JSON line carrying its
X-Request-ID, then uvicorn writes its access line), the test OTLP receiver
(tests/otlp/receiver.js, decoding with the official generated decoder; spans
to one file, log records to another) and obsd (--port <server>,
--trusted-proxy 127.0.0.1/32 so record request ids are the clients'
X-Request-IDs, --otlp-endpoint <receiver>). Clients send known X-Request-IDs
at concurrency 1, 8 and 32; obsd's /api/requests gives request id -> trace
id / span id. The truth of what the app wrote is the server's own output
file.
"""
import collections
import http.client
import json
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

import clients
import harness
from harness import HOST, HarnessError, Server, stop_obsd_checked
from traces_support import ObsdOtel, Receiver

CONCURRENCY = {1: 150, 8: 400, 32: 640}    # requests per level
SECRETS = ("SECRET-AUTH-123", "SECRET-COOKIE-456", "SECRET-QUERY-789")
LOG_TIMEOUT = 30.0
UNLINKED_REASONS = ("no_request", "ambiguous", "buffered")
PY_LINE = re.compile(r"^WARNING:logsapp:handling /work/(\S+) rid=(\S+)$")
# uvicorn's access line (before the response), hypercorn's (after it)
ACCESS_LINE = re.compile(r'^INFO: +\S+ - "GET /work/(\S+) HTTP/1\.1" 200|'
                         r'^\[[^]]*\] \[\d+\] \[INFO\] \S+ - - \[[^]]*\] "GET /work/(\S+) 1\.1" 200')


class LogsServer(Server):
    """uvicorn (h11, asyncio) or hypercorn (with its access log on stdout)
    serving logs_app:app."""

    def __init__(self, setup: str, workdir: Path):
        super().__init__(setup, workdir)
        shutil.copy(harness.HERE / "logs_app.py", self.dir / "logs_app.py")

    def start(self, timeout: float = harness.READY_TIMEOUT) -> "LogsServer":
        cmd = ["logs_app:app" if a == "app:app" else a for a in harness._server_cmd(self.setup, self.port)]
        if self.setup == "hypercorn":
            cmd[-1:-1] = ["--access-logfile", "-"]
        self.proc = harness.spawn(cmd, "server-logs", cwd=str(self.dir))
        deadline = time.monotonic() + timeout
        while not harness.listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"logs server not listening on {self.port}\n{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        self.pids()
        return self


def drive(port: int, rids: List[str], concurrency: int) -> None:
    """GET /work/<rid> with X-Request-ID: <rid>, `concurrency` keep-alive
    clients at once; every answer must be 200."""
    errors = clients.keepalive_gets(HOST, port, [f"/work/{r}" for r in rids], concurrency,
                                    timeout=10)
    assert not errors, errors[:5]


def secret_request(port: int) -> None:
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        c.request("GET", f"/secret?token={SECRETS[2]}",
                  headers={"Authorization": f"Bearer {SECRETS[0]}", "Cookie": f"sid={SECRETS[1]}"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    finally:
        c.close()


def read_jsonl(path: Path) -> List[dict]:
    try:
        data = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in data.split("\n")[:-1] if l.strip()]


def metric(d: ObsdOtel, key: str) -> float:
    return d.metrics().get(key, 0.0)


def truth_lines(text: str) -> "collections.Counter":
    """(rid, kind) of every line the app and uvicorn wrote for /work requests."""
    got = collections.Counter()
    for line in text.splitlines():
        m = PY_LINE.match(line)
        if m:
            got[(m.group(2), "py")] += 1
        elif line.startswith("{"):
            got[(json.loads(line).get("request_id"), "json")] += 1
        elif ACCESS_LINE.match(line):
            m = ACCESS_LINE.match(line)
            got[(m.group(1) or m.group(2), "access")] += 1
    return got


def kind_of(rec: dict):
    """(rid, kind) of an exported log record, or None for other lines."""
    body = rec.get("body") or ""
    m = PY_LINE.match(body)
    if m:
        return (m.group(2), "py")
    if body == "work done":
        return (rec["attributes"].get("request_id"), "json")
    m = ACCESS_LINE.match(body)
    if m:
        return (m.group(1) or m.group(2), "access")
    return None


class Rig:
    def __init__(self, tmp: Path, setup: str = "uvicorn-h11", levels: Dict[int, int] = CONCURRENCY):
        self.levels = levels
        self.receiver = Receiver(tmp / "spans.jsonl", name=f"otlp-receiver-logs-{setup}").start()
        self.logs_file = Path(str(tmp / "spans.jsonl") + ".logs")
        self.server = LogsServer(setup, tmp / "server")
        self.obsd = ObsdOtel(["--port", str(self.server.port), "--trusted-proxy", "127.0.0.1/32",
                              "--otlp-endpoint", self.receiver.base],
                             {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200",
                              "OTEL_BLRP_MAX_QUEUE_SIZE": "16384"},
                             name=f"obsd-logs-{setup}")
        self.obsd.start()
        self.server.start()
        self.rids: Dict[int, List[str]] = {}
        for c, n in levels.items():
            self.rids[c] = [f"c{c}-{secrets.token_hex(12)}" for _ in range(n)]
            drive(self.server.port, self.rids[c], c)
        secret_request(self.server.port)
        self.n_requests = sum(levels.values()) + 1
        self.records = harness.wait_records(self.obsd.requests, self.server.pids, self.n_requests)
        self.by_rid = {r["request_id"]: r for r in self.records}
        self.logs = self.wait_logs()
        self.server_out = self.server.proc.log_path.read_text(errors="replace")

    def wait_logs(self) -> List[dict]:
        """Until every record obsd made is exported (and no more arrive)."""
        want = 3 * (self.n_requests - 1) + 2
        deadline = time.monotonic() + LOG_TIMEOUT
        while time.monotonic() < deadline:
            made = metric(self.obsd, "obs_log_records_total")
            done = metric(self.obsd, "obs_log_records_exported_total") + \
                metric(self.obsd, 'obs_log_records_dropped_total{reason="queue_full"}') + \
                metric(self.obsd, 'obs_log_records_dropped_total{reason="export_failed"}')
            if made >= want and done >= made:
                break
            time.sleep(0.2)
        time.sleep(harness.SETTLE)
        return read_jsonl(self.logs_file)

    def ctx(self) -> str:
        return (f"[server port {self.server.port} pids {sorted(self.server.pids())}; receiver "
                f"{self.receiver.port}; obsd {self.obsd.describe()}]\n--- obsd output ---\n"
                f"{self.obsd.output()}")

    def stop(self):
        try:
            stop_obsd_checked(self.obsd)
        finally:
            self.server.stop()
            self.receiver.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("logs"))
    yield r
    r.stop()


def test_every_line_exported_once(rig):
    """Every /work line the app and uvicorn wrote (the server's own output is
    the truth) is exported exactly once, by the server's process."""
    truth = truth_lines(rig.server_out)
    all_rids = {r for rids in rig.rids.values() for r in rids}
    assert {rid for rid, _ in truth} == all_rids, "harness: the app did not log every request"
    assert all(n == 1 for n in truth.values()) and len(truth) == 3 * len(all_rids)
    got = collections.Counter(k for k in map(kind_of, rig.logs) if k)
    missing, extra = truth - got, got - truth
    assert not missing and not extra, (
        f"{sum(missing.values())} lines never exported (e.g. {list(missing)[:3]}), "
        f"{sum(extra.values())} exported too often or invented (e.g. {list(extra)[:3]}) {rig.ctx()}")
    pids = rig.server.pids()
    bad = [l for l in rig.logs if l["resource"].get("process.pid") not in pids]
    assert not bad, f"records of other processes: {bad[:2]}"
    assert metric(rig.obsd, 'obs_log_records_dropped_total{reason="queue_full"}') == 0
    assert metric(rig.obsd, 'obs_log_records_dropped_total{reason="export_failed"}') == 0
    assert metric(rig.obsd, "obs_log_records_exported_total") == len(rig.logs)


def test_severity_body_attributes_resource(rig):
    """Severity from logging's "LEVEL:name:msg", uvicorn's access line and
    structlog's "level"; JSON fields are typed attributes and "event" the
    body; the resource is the span resource."""
    problems = []
    for l in rig.logs:
        k = kind_of(l)
        if not k:
            continue
        a, res = l["attributes"], l["resource"]
        want = {"py": (13, "WARNING", "stderr"), "json": (9, "info", "stdout"),
                "access": (9, "INFO", "stdout")}[k[1]]
        have = (l["severityNumber"], l["severityText"], a.get("log.iostream"))
        if have != want:
            problems.append(f"{k}: severity/stream {have}, want {want}")
        if k[1] == "json":
            fields = {x: a.get(x) for x in ("request_id", "user", "n", "ok", "ratio")}
            if fields != {"request_id": k[0], "user": "alice", "n": 42, "ok": True, "ratio": 0.5}:
                problems.append(f"{k}: attributes {a}")
            if "event" in a or "level" in a:
                problems.append(f"{k}: body/level fields repeated as attributes: {a}")
        if not isinstance(a.get("thread.id"), int):
            problems.append(f"{k}: thread.id {a.get('thread.id')!r}")
        for key in ("service.name", "process.executable.name", "host.name"):
            if not res.get(key):
                problems.append(f"{k}: resource {key} missing: {res}")
        if not (0 < int(l["time"]) <= int(l["observedTime"])):
            problems.append(f"{k}: time {l['time']} observed {l['observedTime']}")
    assert not problems, "\n".join(problems[:20])


def check_links(rig) -> None:
    """Every exported /work line is linked to its own request's trace and
    span, or not linked and says why; never to another request. Prints the
    linked share per concurrency and checks the counters."""
    wrong, unlinked_bad = [], []
    linked = collections.Counter()
    total = collections.Counter()
    level = {rid: c for c, rids in rig.rids.items() for rid in rids}
    for l in rig.logs:
        k = kind_of(l)
        if not k:
            continue
        rec = rig.by_rid.get(k[0])
        assert rec, f"no record for request {k[0]}"
        total[level[k[0]]] += 1
        if l["traceId"]:
            linked[level[k[0]]] += 1
            if (l["traceId"], l["spanId"]) != (rec["trace_id"], rec["span_id"]):
                wrong.append(f"{k}: linked to {l['traceId']}/{l['spanId']}, its request is "
                             f"{rec['trace_id']}/{rec['span_id']}")
        elif l["attributes"].get("obs.trace_link") not in UNLINKED_REASONS:
            unlinked_bad.append(f"{k}: no ids and no reason: {l['attributes']}")
    for c in rig.levels:
        print(f"{rig.server.setup} concurrency {c:2d}: {linked[c]}/{total[c]} lines linked "
              f"({100.0 * linked[c] / max(total[c], 1):.1f}%)")
    assert not wrong, f"{len(wrong)} WRONG links:\n" + "\n".join(wrong[:10])
    assert not unlinked_bad, "\n".join(unlinked_bad[:10])
    n_linked = sum(1 for l in rig.logs if l["traceId"])
    assert metric(rig.obsd, "obs_log_records_linked_total") == n_linked
    for reason in UNLINKED_REASONS:
        n = sum(1 for l in rig.logs if l["attributes"].get("obs.trace_link") == reason)
        assert metric(rig.obsd, f'obs_log_records_unlinked_total{{reason="{reason}"}}') == n, reason
    return linked, total


def test_links_never_wrong(rig):
    """A line carrying an X-Request-ID is linked to that request's trace and
    span, or not linked and counted; never another request's. At concurrency
    1 every line is linked."""
    linked, total = check_links(rig)
    assert linked[1] == total[1] == 3 * CONCURRENCY[1], \
        f"concurrency 1: {linked[1]} of {total[1]} lines linked {rig.ctx()}"


def test_post_response_lines_never_linked_to_the_next_request(tmp_path):
    """hypercorn writes its access line after the response is complete, when
    the next request may already be the only one in flight: at concurrency 8
    no line (its access lines included) is linked to another request, and
    every line is exported once; at concurrency 1 the handler's lines are
    linked."""
    r = Rig(tmp_path, "hypercorn", {1: 60, 8: 300})
    try:
        truth = truth_lines(r.server_out)
        got = collections.Counter(k for k in map(kind_of, r.logs) if k)
        assert truth == got and len(truth) == 3 * 360, \
            f"exported != written: missing {list(truth - got)[:3]} extra {list(got - truth)[:3]}"
        check_links(r)
        c1 = [l for l in r.logs if kind_of(l) and kind_of(l)[0].startswith("c1-") and
              kind_of(l)[1] != "access"]
        assert c1 and all(l["traceId"] for l in c1), \
            f"{sum(1 for l in c1 if not l['traceId'])} of {len(c1)} handler lines at concurrency 1 unlinked"
    finally:
        r.stop()


def find_secrets(text: str) -> List[str]:
    return [s for s in SECRETS + tuple(s.split("-", 1)[1] for s in SECRETS) if s in text]


def test_secrets_redacted(rig):
    """The /secret request's query string, Authorization and Cookie values,
    which the app and uvicorn wrote to their output, are in no export."""
    assert all(s in rig.server_out for s in SECRETS), "harness: the app did not log the secrets"
    outputs = {
        "OTLP logs": rig.logs_file.read_text(),
        "/api/logs": rig.obsd.get("/api/logs?limit=100000")[1].decode(),
    }
    leaks = {k: find_secrets(v) for k, v in outputs.items() if find_secrets(v)}
    assert not leaks, f"secrets leaked: {leaks}"
    lines = [l["body"] for l in rig.logs if "/secret?" in (l.get("body") or "")]
    assert len(lines) == 2, f"the /secret lines were not exported: {lines}"
    assert all("/secret?[redacted]" in b for b in lines), lines
    assert "'authorization': '[redacted]'" in lines[0] + lines[1]
    assert "'cookie': '[redacted]'" in lines[0] + lines[1]


def test_api_and_obsctl_logs(rig):
    """/api/logs lists the newest records first with the exported ids;
    obsctl logs --json prints them oldest first, one object per line."""
    doc = rig.obsd.get_json("/api/logs?limit=50")
    assert doc["count"] == len(doc["logs"]) == 50 and doc["total"] >= len(rig.logs)
    ts = [l["ts_ns"] for l in doc["logs"]]
    assert ts == sorted(ts, reverse=True)
    exported = {(l["body"], l["traceId"]) for l in rig.logs}
    for l in doc["logs"]:
        assert (l["body"], l["trace_id"]) in exported, l
    out = subprocess.run([str(harness.OBSCTL), "logs", "--json", "--limit", "20", "--daemon",
                          f"{HOST}:{rig.obsd.port}"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    objs = [json.loads(l) for l in out.stdout.splitlines()]
    assert [o["ts_ns"] for o in objs] == sorted(ts[:20])
    text = subprocess.run([str(harness.OBSCTL), "logs", "--limit", "5", "--daemon",
                           f"{HOST}:{rig.obsd.port}"], capture_output=True, text=True, timeout=20)
    assert text.returncode == 0 and text.stdout.startswith("TIME"), text.stdout + text.stderr
    assert len(text.stdout.splitlines()) == 6


def test_logs_endpoint_and_exporter_none(tmp_path):
    """OTEL_EXPORTER_OTLP_LOGS_ENDPOINT sends log records to their own URL
    while spans go to OTEL_EXPORTER_OTLP_ENDPOINT; OTEL_LOGS_EXPORTER=none
    exports no log records (they stay in /api/logs)."""
    spans_rx = Receiver(tmp_path / "a.jsonl", name="otlp-receiver-logs-a").start()
    logs_rx = Receiver(tmp_path / "b.jsonl", name="otlp-receiver-logs-b").start()
    server = LogsServer("uvicorn-h11", tmp_path / "server")
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100",
           "OTEL_EXPORTER_OTLP_ENDPOINT": spans_rx.base,
           "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": logs_rx.base + "/v1/logs"}
    split = ObsdOtel(["--port", str(server.port)], env, name="obsd-logs-split")
    off = ObsdOtel(["--port", str(server.port)], dict(env, OTEL_LOGS_EXPORTER="none"),
                   name="obsd-logs-off")
    try:
        split.start()
        off.start()
        server.start()
        drive(server.port, [f"e-{secrets.token_hex(8)}" for _ in range(5)], 1)
        deadline = time.monotonic() + LOG_TIMEOUT
        while time.monotonic() < deadline and (
                len(read_jsonl(Path(str(logs_rx.out) + ".logs"))) < 15 or len(spans_rx.spans()) < 10):
            time.sleep(0.2)
        time.sleep(harness.SETTLE)
        assert len(read_jsonl(Path(str(logs_rx.out) + ".logs"))) == 15
        assert not read_jsonl(Path(str(spans_rx.out) + ".logs")), "log records sent to the spans URL"
        assert len(spans_rx.spans()) == 10 and not logs_rx.spans()   # both obsds export spans
        m = off.metrics()
        assert "obs_log_records_exported_total" not in m and m.get("obs_log_records_total") == 15, \
            {k: v for k, v in m.items() if k.startswith("obs_log")}
        assert off.get_json("/api/logs")["count"] == 15
    finally:
        for d in (split, off):
            stop_obsd_checked(d)
        server.stop()
        spans_rx.stop()
        logs_rx.stop()
