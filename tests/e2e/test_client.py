"""Outgoing calls (CLIENT spans) and one trace across observed hops
(docs/context.md), with real servers and clients.

Rig 1 (module-wide): a back service on TCP (uvicorn, back_app) and one on a
UNIX socket (uvicorn --uds, back_uds), and three front services (uvicorn,
client_app.py): front_httpx calls the TCP back with httpx, front_aiohttp with
aiohttp, front_uds calls the UNIX back with httpx. Every front request
/call/<rid> logs, calls <back>/back/<rid>?secret=q with X-Request-ID: <rid>,
logs again; the back logs too. Test clients send known X-Request-IDs at
concurrency 1, 8 and 32. One obsd (--port of every TCP server, --unix of
the back's socket, trusted proxies 127.0.0.1 and unix, so every record's
request id is the rid) exports to the test OTLP receiver
(tests/otlp/receiver.js: the official protos' generated decoder).

Rig 2: nginx -> UNIX socket -> gunicorn (uvicorn workers, the back app),
nginx's upstream with keepalive: one trace nginx SERVER -> nginx CLIENT ->
app SERVER per request.
"""
import collections
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Dict, List

import pytest

import clients
import harness
import unix_support as us
from harness import HOST, HarnessError
from traces_support import ObsdOtel, Receiver, metric, parse_metrics

SPAN_CLIENT, SPAN_SERVER = 3, 2
STATUS_ERROR = 2
CONCURRENCY = {1: 60, 8: 200, 32: 320}    # front requests per level and front
FRONTS = {"front_httpx": ("httpx", "tcp"), "front_aiohttp": ("aiohttp", "tcp"),
          "front_uds": ("httpx", "unix")}
OWN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTEL_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BSP_MAX_QUEUE_SIZE": "32768",
            "OTEL_BLRP_SCHEDULE_DELAY": "200", "OTEL_BLRP_MAX_QUEUE_SIZE": "32768"}
WAIT = 40.0


def uvicorn_cmd(module: str, env: Dict[str, str], port: int = 0, uds: str = "") -> List[str]:
    where = ["--uds", uds] if uds else ["--host", HOST, "--port", str(port)]
    return (["env"] + [f"{k}={v}" for k, v in env.items()] +
            [harness.PY, "-m", "uvicorn", *where, "--http", "h11", "--loop", "asyncio",
             "--no-access-log", f"{module}:app"])


class App:
    """client_app.py copied as <module>.py (its service name), run by uvicorn."""

    def __init__(self, d: Path, module: str, env: Dict[str, str], uds: bool = False):
        self.dir = d / module
        self.dir.mkdir(parents=True)
        shutil.copy(harness.HERE / "client_app.py", self.dir / f"{module}.py")
        self.module = module
        self.port = 0 if uds else harness.free_port()
        self.sock = str(self.dir / "s.sock") if uds else ""
        self.proc = harness.spawn(uvicorn_cmd(module, env, self.port, self.sock), f"client-{module}",
                                  cwd=str(self.dir))

    def wait(self) -> "App":
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not (us.unix_listening(self.sock) if self.sock else harness.listening(self.port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"{self.module} not up\n{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        harness.kill_group(self.proc)


def drive(port: int, paths: List[str], concurrency: int) -> None:
    """GET <path> with X-Request-ID: <last segment>, `concurrency` keep-alive
    clients at once; a call the front could not make answers 502."""
    errors = clients.keepalive_gets(HOST, port, paths, concurrency, ok=(200, 502))
    assert not errors, errors[:5]


def read_jsonl(path: Path) -> List[dict]:
    try:
        data = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in data.split("\n")[:-1] if l.strip()]


def svc(s: dict) -> str:
    """The service, without the ":app" of an ASGI app argument."""
    return s["resource"].get("service.name", "").split(":")[0]


def rid_of(s: dict) -> str:
    return s["attributes"].get("request.id", "")


class Rig:
    def __init__(self, tmp: Path):
        self.receiver = Receiver(tmp / "spans.jsonl", name="otlp-receiver-client").start()
        self.back = App(tmp, "back_app", {"ROLE": "back"})
        self.back_uds = App(tmp, "back_uds", {"ROLE": "back"}, uds=True)
        self.back.wait()
        self.back_uds.wait()
        self.fronts: Dict[str, App] = {}
        for name, (lib, transport) in FRONTS.items():
            env = {"ROLE": "front", "CLIENT": lib}
            if transport == "unix":
                env["BACK_UDS"] = self.back_uds.sock
            else:
                env["BACK_URL"] = f"http://{HOST}:{self.back.port}"
            self.fronts[name] = App(tmp, name, env)
        for f in self.fronts.values():
            f.wait()
        ports = [a for f in [self.back, *self.fronts.values()] for a in ("--port", str(f.port))]
        self.obsd = ObsdOtel(ports + ["--unix", self.back_uds.sock, "--trusted-proxy", "127.0.0.1/32",
                                      "--trusted-proxy", "unix", "--otlp-endpoint", self.receiver.base],
                             OTEL_ENV, name="obsd-client")
        self.obsd.start()
        self.rids: Dict[str, Dict[int, List[str]]] = {}
        for name, f in self.fronts.items():
            self.rids[name] = {}
            for c, n in CONCURRENCY.items():
                rids = [f"{name}-c{c}-{secrets.token_hex(8)}" for _ in range(n)]
                self.rids[name][c] = rids
                drive(f.port, [f"/call/{r}" for r in rids], c)
        self.own = [f"own-{secrets.token_hex(8)}" for _ in range(5)]
        self.fail = [f"fail-{secrets.token_hex(8)}" for _ in range(3)]
        drive(self.fronts["front_httpx"].port, [f"/own/{r}" for r in self.own] +
              [f"/fail/{r}" for r in self.fail], 1)
        self.n_calls = sum(len(v) for r in self.rids.values() for v in r.values()) + 8
        self.spans = self.wait_spans(3 * self.n_calls)
        self.logs = read_jsonl(Path(str(tmp / "spans.jsonl") + ".logs"))
        self.metrics = self.obsd.metrics()
        self.by = collections.defaultdict(list)     # (service, kind, rid) -> spans
        for s in self.spans:
            self.by[(svc(s), s["kind"], rid_of(s))].append(s)

    def wait_spans(self, want: int) -> List[dict]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            m = self.obsd.metrics()
            done = metric(m, "obs_spans_exported_total") if "obs_spans_exported_total" in m else 0
            if len(self.receiver.spans()) >= want and done >= len(self.receiver.spans()):
                break
            time.sleep(0.3)
        time.sleep(harness.SETTLE)
        time.sleep(1.0)
        return self.receiver.spans()

    def one(self, service: str, kind: int, rid: str) -> dict:
        got = self.by.get((service, kind, rid), [])
        assert len(got) == 1, f"{service} kind {kind} rid {rid}: {len(got)} spans\n{self.ctx()}"
        return got[0]

    def ctx(self) -> str:
        return f"[obsd {self.obsd.describe()}]\n--- obsd output ---\n{self.obsd.output()[-3000:]}"

    def stop(self):
        try:
            harness.stop_obsd_checked(self.obsd)
        finally:
            for a in [*self.fronts.values(), self.back, self.back_uds]:
                a.stop()
            self.receiver.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    harness.require_binary(harness.OBSD)
    r = Rig(tmp_path_factory.mktemp("client"))
    yield r
    r.stop()


def back_of(name: str) -> str:
    return "back_uds" if FRONTS[name][1] == "unix" else "back_app"


def test_every_call_is_a_client_span_never_wrongly_linked(rig):
    """Every call is exactly one CLIENT span of its front service, with the
    call's method, url.full without its query, server address/port or
    socket path and status. A CLIENT span with a parent has the front
    SERVER span of the same request as parent and shares its trace id;
    one without names why (obs.link) and has a trace of its own (no other
    request's trace id). At concurrency 1 every call is linked. The linked
    share per level goes to .out/client-links.txt."""
    front_traces = {s["traceId"] for s in rig.spans if s["kind"] == SPAN_SERVER and svc(s) in FRONTS}
    bad, lines = [], []
    for name in FRONTS:
        for c, rids in rig.rids[name].items():
            linked = 0
            for rid in rids:
                srv = rig.one(name, SPAN_SERVER, rid)
                cl = rig.one(name, SPAN_CLIENT, rid)
                a = cl["attributes"]
                if cl["name"] != "GET" or a.get("http.request.method") != "GET" or \
                        a.get("http.response.status_code") != 200:
                    bad.append(f"{rid}: name/method/status {cl['name']} {a}")
                url = a.get("url.full", "")
                if "?" in url or "secret" in json.dumps(cl) or not url.endswith(f"/back/{rid}"):
                    bad.append(f"{rid}: url.full {url!r}")
                if FRONTS[name][1] == "unix":
                    if a.get("server.address") != rig.back_uds.sock or "server.port" in a:
                        bad.append(f"{rid}: UNIX server.address {a.get('server.address')!r}")
                elif a.get("server.port") != rig.back.port or \
                        a.get("network.peer.address") != HOST:
                    bad.append(f"{rid}: server.port/peer {a}")
                if cl["parentSpanId"]:
                    linked += 1
                    if cl["parentSpanId"] != srv["spanId"] or cl["traceId"] != srv["traceId"] or \
                            a.get("obs.link") != "linked":
                        bad.append(f"{rid}: WRONG LINK parent {cl['parentSpanId']} trace "
                                   f"{cl['traceId']}, front span {srv['spanId']} {srv['traceId']}")
                else:
                    if a.get("obs.link") not in ("no_request", "ambiguous"):
                        bad.append(f"{rid}: unlinked without a reason: {a.get('obs.link')!r}")
                    if cl["traceId"] in front_traces:
                        bad.append(f"{rid}: unlinked call in a front request's trace")
            lines.append(f"{name} concurrency {c}: {linked}/{len(rids)} linked "
                         f"({100.0 * linked / len(rids):.1f} %)")
            if c == 1 and linked != len(rids):
                bad.append(f"{name} concurrency 1: only {linked}/{len(rids)} linked")
    out = harness.HERE / ".out" / "client-links.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert not bad, "\n".join(bad[:30]) + "\n" + "\n".join(lines) + f"\n{rig.ctx()}"


def test_unlinked_calls_are_counted(rig):
    """obs_client_spans_total{link} counts exactly the CLIENT spans by obs.link."""
    got = collections.Counter(s["attributes"].get("obs.link") for s in rig.spans
                              if s["kind"] == SPAN_CLIENT)
    for link in ("linked", "no_request", "ambiguous"):
        assert metric(rig.metrics, f'obs_client_spans_total{{link="{link}"}}') == got[link], \
            f"{link}: spans {dict(got)}\n{rig.ctx()}"


def test_callee_continues_the_callers_trace(rig):
    """The back's SERVER span of every call has the CLIENT span as parent
    and its trace id (TCP 4-tuple and UNIX socket pair stitching), so a
    linked call makes one trace front SERVER -> CLIENT -> back SERVER."""
    bad = []
    whole = 0
    for name in FRONTS:
        for rids in rig.rids[name].values():
            for rid in rids:
                cl = rig.one(name, SPAN_CLIENT, rid)
                back = rig.one(back_of(name), SPAN_SERVER, rid)
                if back["parentSpanId"] != cl["spanId"] or back["traceId"] != cl["traceId"]:
                    bad.append(f"{rid}: back parent {back['parentSpanId']} trace {back['traceId']}, "
                               f"call {cl['spanId']} {cl['traceId']}")
                elif cl["parentSpanId"]:
                    whole += 1
    st = {k: metric(rig.metrics, f'obs_stitch_total{{result="{k}"}}')
          for k in ("stitched", "late", "mismatch", "traceparent", "no_callee")}
    assert not bad, "\n".join(bad[:20]) + f"\n{st}\n{rig.ctx()}"
    assert whole > 0 and st["mismatch"] == 0 and st["no_callee"] == 0, st
    assert st["stitched"] + st["late"] + st["traceparent"] == rig.n_calls, st


def test_own_traceparent_respected_and_errors(rig):
    """A call carrying the app's own traceparent (an SDK) is the span that
    header names: its trace id and parent id are the CLIENT span's trace and
    span ids, and the back continues it. A call answered 503 is a CLIENT span
    with status ERROR, its front's 502 a SERVER span with status ERROR."""
    for rid in rig.own:
        cl = rig.one("front_httpx", SPAN_CLIENT, rid)
        back = rig.one("back_app", SPAN_SERVER, rid)
        assert cl["traceId"] == OWN_TRACE and cl["spanId"] == rid[-16:], cl
        assert back["traceId"] == OWN_TRACE and back["parentSpanId"] == rid[-16:], back
    assert metric(rig.metrics, "obs_client_spans_own_context_total") == len(rig.own)
    for rid in rig.fail:
        cl = rig.one("front_httpx", SPAN_CLIENT, rid)
        assert cl["status"]["code"] == STATUS_ERROR, cl
        assert cl["attributes"].get("http.response.status_code") == 503, cl
        assert cl["attributes"].get("error.type") == "503", cl
        assert rig.one("front_httpx", SPAN_SERVER, rid)["status"]["code"] == STATUS_ERROR


def test_client_metrics_match_the_calls(rig):
    """http_client_requests_total and the duration histogram count every call
    by service, peer, method and status."""
    for name in FRONTS:
        n = sum(len(v) for v in rig.rids[name].values())
        peer = rig.back_uds.sock if FRONTS[name][1] == "unix" else f"{HOST}:{rig.back.port}"
        extra200 = len(rig.own) if name == "front_httpx" else 0
        lab = f'service="{name}:app",peer="{peer}",method="GET"'
        assert metric(rig.metrics, f'http_client_requests_total{{{lab},status_code="200"}}') == n + extra200
        assert metric(rig.metrics, f'http_client_request_duration_seconds_count{{{lab},status_code="200"}}') \
            == n + extra200
        if name == "front_httpx":
            assert metric(rig.metrics, f'http_client_requests_total{{{lab},status_code="503"}}') == len(rig.fail)
    # served requests stay in http_requests_total only
    fronts = sum(metric(rig.metrics, f'http_requests_total{{service="{n}:app"}}') for n in FRONTS)
    assert fronts == rig.n_calls


def test_log_lines_agree_with_stitched_traces(rig):
    """A log line linked to a request carries that request's final trace id:
    stitching never leaves a line in a trace its span is not in."""
    spans = {s["spanId"]: s for s in rig.spans if s["kind"] == SPAN_SERVER}
    linked = [l for l in rig.logs if l.get("spanId")]
    bad = [f"{l['body']!r}: span {l['spanId']} trace {l['traceId']} vs "
           f"{spans.get(l['spanId'], {}).get('traceId')}"
           for l in linked if l["spanId"] in spans and spans[l["spanId"]]["traceId"] != l["traceId"]]
    assert linked, "no linked log line at all"
    assert not bad, "\n".join(bad[:20])


# == nginx -> UNIX socket -> gunicorn ============================================

def test_nginx_unix_gunicorn_one_trace(tmp_path):
    """nginx (TCP) proxies to gunicorn (uvicorn workers) on a UNIX socket
    through a keepalive upstream: every request is one trace, nginx SERVER ->
    nginx CLIENT (its upstream call, at concurrency 1 always linked) -> app
    SERVER, found by the X-Request-ID nginx sends (its $request_id)."""
    harness.require_binary(harness.OBSD)
    root = us.short_tmpdir("obs-client-nginx.")
    shutil.copy(harness.HERE / "client_app.py", root / "client_app.py")
    app = us.UnixServer("gunicorn-uvicorn", root, app="client_app:app", app_dir=root)
    nginx = us.Nginx(root, app.sock)
    receiver = Receiver(tmp_path / "spans.jsonl", name="otlp-receiver-client-nginx").start()
    obsd = None
    try:
        os.environ["ROLE"] = "back"     # the app answers every path
        try:
            app.start()
        finally:
            del os.environ["ROLE"]
        nginx.start()
        obsd = ObsdOtel(["--pid", str(nginx.pid), "--pid", str(app.pid),
                         "--otlp-endpoint", receiver.base], OTEL_ENV, name="obsd-client-nginx")
        obsd.start()
        n = 40
        drive(nginx.port, [f"/x/n-{secrets.token_hex(6)}" for _ in range(n)], 1)
        deadline = time.monotonic() + WAIT
        while len(receiver.spans()) < 3 * n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(harness.SETTLE)
        spans = receiver.spans()
        ngx_srv = [s for s in spans if svc(s) == "nginx" and s["kind"] == SPAN_SERVER]
        ngx_cl = {s["parentSpanId"]: s for s in spans if svc(s) == "nginx" and s["kind"] == SPAN_CLIENT}
        app_srv = {s["parentSpanId"]: s for s in spans if svc(s) == "client_app"}
        assert len(ngx_srv) == n, f"{len(ngx_srv)} nginx spans of {n}\n{obsd.output()[-2000:]}"
        bad = []
        for s in ngx_srv:
            cl = ngx_cl.get(s["spanId"])
            back = app_srv.get(cl["spanId"]) if cl else None
            if not cl or not back or len({s["traceId"], cl["traceId"], back["traceId"]}) != 1:
                bad.append(f"{s['spanId']}: client {cl and cl['spanId']} app {back and back['spanId']}")
            elif cl["attributes"].get("server.address") != app.sock:
                bad.append(f"nginx CLIENT server.address {cl['attributes'].get('server.address')!r}")
        assert not bad, "\n".join(bad[:10]) + f"\n{obsd.output()[-2000:]}"
    finally:
        if obsd is not None:
            harness.stop_obsd_checked(obsd)
        nginx.stop()
        app.stop()
        receiver.stop()
        shutil.rmtree(root, ignore_errors=True)
