"""Error events, lifecycle events and the Sentry export, end to end.

One obsd for the module (--port of the three servers, --errors-file,
--sentry-dsn pointing at tests/sentry/receiver.py, SENTRY_ENVIRONMENT=test,
SENTRY_RELEASE=app@1.0) and one standalone `obsctl events --json` with the
same ports. For each of uvicorn (h11 + asyncio), uvicorn (httptools + uvloop)
and hypercorn, serving errors_app.py (app.py's routes + /boom/{n}, /chain,
/deep, /slowstream), the workload is, in order:

  A  K raw GET /boom (ValueError("kaboom") in app.py's `boom`), 50 ms apart,
     while /slow and /text requests from other connections are in flight;
     obsd's /api/errors is snapshotted once those K events are out
  J  back to back: /chain, /boom/<n>, /chain, /boom/<n>, /boom/<n>, /chain,
     /boom/<n>, twice: every traceback names its request (kaboom-<n>)
  S  one /chain on its own (a chained traceback), one /deep on its own (a
     ~2.4 KB traceback: more than the default 2048 capture bytes per write)
  B  three clients leave GET /slowstream mid-stream: close() with unread
     data, an RST (SO_LINGER 0), a FIN (shutdown(SHUT_WR), then read on)
  C  one raw keep-alive connection carrying exactly 3 requests, then close
     (hypercorn 0.13 closes every connection after its first response: its
     keep-alive test checks the one request it carries, then skips)
  E  GET /boom and GET /text with Authorization, Cookie and ?token secrets

then waits (harness.RECORD_TIMEOUT) for every error event, every
ConnectionClosed and every Sentry envelope it expects, and snapshots all
outputs. The tests compare those with what the clients know.

How the servers report the /boom exception (checked with strace on this
machine): both uvicorn flavours write "ERROR:    Exception in ASGI
application\\nTraceback ..." to stderr in ONE write() of ~1.6 KB just after
the 500 response (the access log line, with the query string, goes to stdout
before it); hypercorn writes "[date] [pid] [ERROR] Error in ASGI
Framework\\nTraceback ..." to stderr, also in one write() of ~1.6 KB, ~1-4 ms (strace)
after the response, and has no access log. Both tracebacks end with app.py's
`boom` frame and "ValueError: kaboom". For /chain (raised outside Starlette)
the servers log the traceback first and then send their own 500.
"""
import collections
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import clients
import errors_support as es
import harness
from clients import Truth
from errors_support import ErrorsServer, EventStream, Leave, SentryReceiver
from harness import HOST, Obsd, stop_obsd_checked

K = 5                      # raising requests of phase A
BOOM_GAP = 0.05            # between them
PHASE_GAP = 0.25           # between phases: > the 100 ms join window
ERROR_SETTLE = 0.6         # > 300 ms hold + 100 ms join window, after the last expected event
SENTRY_ENV = "test"
SENTRY_RELEASE = "app@1.0"


# -- the module rig: receiver, obsd, obsctl events, three servers ---------------

@dataclass
class Rig:
    base: Path
    receiver: SentryReceiver
    obsd: Obsd
    ctl: EventStream
    servers: Dict[str, ErrorsServer]
    errors_file: Path

    def obsd_log(self) -> str:
        return es.read_output(self.obsd.proc, self.obsd.stderr_path)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    harness.require_binary(harness.OBSD)
    harness.require_binary(harness.OBSCTL)
    base = tmp_path_factory.mktemp("errors")
    receiver = SentryReceiver(base / "sentry.jsonl", key=uuid.uuid4().hex)
    servers = {s: ErrorsServer(s, base / s) for s in es.SETUPS}   # ports chosen, not started
    ports = [sv.port for sv in servers.values()]
    errors_file = base / "errors.jsonl"
    ctl = d = None
    try:
        receiver.start()
        ctl = EventStream(ports)
        if not ctl.wait_stderr("attached"):
            pytest.fail(f"obsctl events printed no 'attached' line within {harness.READY_TIMEOUT}s "
                        f"(exit code {ctl.proc.poll()})\n{ctl.stderr_text()}", pytrace=False)
        filters = []
        for p in ports:
            filters += ["--port", p]
        filters += ["--errors-file", errors_file, "--sentry-dsn", receiver.dsn]
        d = Obsd(filters, name="obsd-errors")
        with es.environment(SENTRY_ENVIRONMENT=SENTRY_ENV, SENTRY_RELEASE=SENTRY_RELEASE):
            d.start()
        for sv in servers.values():
            sv.start()
        yield Rig(base, receiver, d, ctl, servers, errors_file)
    finally:
        for sv in servers.values():
            sv.stop()
        if ctl is not None:
            ctl.interrupt()
            ctl.kill()
        try:
            if d is not None:
                stop_obsd_checked(d)   # must exit 0 within 5 s of SIGTERM
        finally:
            receiver.stop()


# -- one setup's workload -----------------------------------------------------

@dataclass
class Run:
    setup: str
    rig: Rig
    server: ErrorsServer
    probe: Truth
    bg: es.Background
    boom: List[Truth]
    snap_a: List[dict]                 # /api/errors of the server's pids after phase A
    tagged: List[Truth]                # phase J
    chain: Truth                       # phase S
    deep: Truth                        # phase S
    leaves: Dict[str, Leave]           # phase B
    ka_client: str                     # phase C
    ka: List[Truth]
    ka_server_closed: bool             # the server closed the keep-alive connection early
    secret: List[Truth]                # phase E
    waited_for: List[str] = field(default_factory=list)   # still missing at the deadline
    errors: List[dict] = field(default_factory=list)      # /api/errors, server pids, newest first
    errors_total: int = 0
    requests: List[dict] = field(default_factory=list)    # /api/requests, server pids
    events: List[dict] = field(default_factory=list)      # /api/events, oldest first (all)
    ctl: List[dict] = field(default_factory=list)         # obsctl events objects, in order
    file_errors: List[dict] = field(default_factory=list)
    sentry: List[dict] = field(default_factory=list)

    @property
    def pids(self):
        return self.server.pids()

    def ctx(self) -> str:
        s = (f"[{self.setup} on port {self.server.port}, pids {sorted(self.pids)}; obsd "
             f"{' '.join(map(str, self.rig.obsd.filters))}]")
        if self.waited_for:
            s += (f"\n(still missing after waiting {harness.RECORD_TIMEOUT}s: "
                  + "; ".join(self.waited_for[:12]) + ")")
        return s

    def errors_of(self, client: str) -> List[dict]:
        return [e for e in self.errors if (e.get("request") or {}).get("client") == client]

    def records_of(self, client: str) -> List[dict]:
        return [r for r in self.requests if r.get("client") == client]

    def ctl_errors_of(self, client: str) -> List[dict]:
        """The obsctl stream covers all three servers' ports: a client port
        can recur on another server's connection, so the server's pids
        select too."""
        pids = self.pids
        return [o["error"] for o in self.ctl
                if o.get("type") == "Error" and (o.get("error") or {}).get("pid") in pids
                and ((o.get("error") or {}).get("request") or {}).get("client") == client]

    def dump_errors(self, client: Optional[str] = None) -> str:
        sel = self.errors if client is None else self.errors_of(client)
        return "\n  ".join(es.brief_error(e) for e in sel) or "(none)"


def _error_clients_expected(run: Run) -> Dict[str, str]:
    """client -> what: the requests that must give an error event."""
    exp = {t.client: f"GET {t.target}" for t in run.tagged + [run.chain, run.deep]}
    exp.update({t.client: f"GET {t.target}" for t in run.secret if t.status >= 500})
    for lv in run.leaves.values():
        if lv.complete is not True:
            exp[lv.client] = f"{lv.mode} mid-stream"
    return exp


def _missing(run: Run) -> List[str]:
    d = run.rig.obsd
    miss = []
    errs = [e for e in es.api_errors(d)["errors"] if e.get("pid") in run.pids]
    have = collections.Counter((e.get("request") or {}).get("client") for e in errs)
    for client, what in _error_clients_expected(run).items():
        if not have[client]:
            miss.append(f"/api/errors event for {what} (client {client})")
    conns = [t.client for t in run.tagged + [run.chain, run.deep] + run.secret] + \
            [lv.client for lv in run.leaves.values()] + [run.ka_client]
    ctl = run.rig.ctl.objects()
    closed_ctl = {e.get("client") for e in ctl if e.get("type") == "ConnectionClosed"}
    api_ev = es.api_events(d)["events"]
    closed_api = {e.get("client") for e in api_ev if e.get("type") == "ConnectionClosed"}
    for c in conns:
        if c not in closed_ctl:
            miss.append(f"obsctl ConnectionClosed of {c}")
        if c not in closed_api:
            miss.append(f"/api/events ConnectionClosed of {c}")
    sent = {((l.get("event") or {}).get("extra") or {}).get("request_id") for l in run.rig.receiver.lines()}
    for e in errs:
        rid = (e.get("request") or {}).get("request_id")
        if rid and rid not in sent:
            miss.append(f"Sentry envelope of request {rid} ({(e.get('request') or {}).get('path')})")
    return miss


@pytest.fixture(scope="module", params=es.SETUPS)
def run(request, rig):
    setup = request.param
    sv = rig.servers[setup]
    d = rig.obsd
    port = sv.port
    u = harness.uniq

    probe = harness.probe(port)

    # A: K raising requests while other requests are in flight
    with es.Background(port) as bg:
        boom = []
        for i in range(K):
            if i:
                time.sleep(BOOM_GAP)
            boom.append(clients.raw_request(HOST, port, "GET", "/boom"))
    boom_clients = {t.client for t in boom}
    es.wait_until(lambda: len([e for e in es.api_errors(d)["errors"]
                               if (e.get("request") or {}).get("client") in boom_clients]) >= K,
                  harness.RECORD_TIMEOUT)
    time.sleep(ERROR_SETTLE)
    snap_a = [e for e in es.api_errors(d)["errors"] if e.get("pid") in sv.pids()]

    # J: back-to-back raising requests whose tracebacks name them
    time.sleep(PHASE_GAP)
    tagged = []
    for _ in range(2):
        for target in ["/chain", f"/boom/{u()}", "/chain", f"/boom/{u()}", f"/boom/{u()}", "/chain",
                       f"/boom/{u()}"]:
            tagged.append(clients.raw_request(HOST, port, "GET", target))

    # S: a chained traceback, then a long one, each on its own
    time.sleep(PHASE_GAP)
    chain = clients.raw_request(HOST, port, "GET", "/chain")
    time.sleep(PHASE_GAP)
    deep = clients.raw_request(HOST, port, "GET", "/deep")
    time.sleep(PHASE_GAP)

    # B: clients leaving a streamed response
    leaves = {}
    for mode in ("close", "rst", "fin"):
        leaves[mode] = es.leave_mid_stream(port, mode)
        time.sleep(PHASE_GAP)

    # C: one keep-alive connection, exactly 3 requests
    ka_client, ka, ka_server_closed = es.keepalive(port, ["/text", "/json", f"/users/{u()}"])
    time.sleep(PHASE_GAP)

    # E: secrets in Authorization, Cookie and the query string
    secret_headers = [("Authorization", f"Bearer {es.SECRETS[0]}"), ("Cookie", f"session={es.SECRETS[1]}")]
    secret = [clients.raw_request(HOST, port, "GET", f"/boom?token={es.SECRETS[2]}", headers=secret_headers)]
    time.sleep(PHASE_GAP)
    secret.append(clients.raw_request(HOST, port, "GET", f"/text?token={es.SECRETS[2]}", headers=secret_headers))

    r = Run(setup, rig, sv, probe, bg, boom, snap_a, tagged, chain, deep, leaves, ka_client, ka, ka_server_closed,
            secret)
    deadline = time.monotonic() + harness.RECORD_TIMEOUT
    while True:
        miss = _missing(r)
        if not miss or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    r.waited_for = miss
    time.sleep(ERROR_SETTLE + 0.4)
    doc = es.api_errors(d)
    r.errors_total = doc["total"]
    r.errors = [e for e in doc["errors"] if e.get("pid") in sv.pids()]
    r.requests = [x for x in d.requests() if x.get("pid") in sv.pids()]
    r.events = list(reversed(es.api_events(d)["events"]))
    r.ctl = rig.ctl.objects()
    r.file_errors = es.read_jsonl(rig.errors_file)
    r.sentry = rig.receiver.lines()
    yield r


# -- A: raising requests ---------------------------------------------------------

def test_boom_error_events(run):
    """K raising requests -> exactly K error events for the server's pids,
    each ValueError("kaboom") with app.py's `boom` as innermost frame, joined
    ("closest") to its own request: request_id / trace_id / span_id are those
    of the /boom record with the same client address, all K distinct."""
    assert not run.bg.failures, f"background clients failed: {run.bg.failures[:5]} {run.ctx()}"
    assert all(t.status == 200 for t in run.bg.truth) and \
        {t.path for t in run.bg.truth} == {"/slow", "/text"}, "background load: " + \
        str(collections.Counter(t.key() for t in run.bg.truth))
    assert all(t.status == 500 for t in run.boom), [t.describe() for t in run.boom]

    evs = run.snap_a
    assert len(evs) == K, (f"expected exactly {K} error events for the server's pids after {K} raising "
                           f"requests (and {len(run.bg.truth)} ok ones in flight), got {len(evs)}:\n  "
                           + "\n  ".join(es.brief_error(e) for e in evs) + f"\n{run.ctx()}")
    by_client = collections.defaultdict(list)
    for e in evs:
        by_client[(e.get("request") or {}).get("client")].append(e)
    recs = {r["client"]: r for r in run.requests if r.get("path") == "/boom"}
    problems = []
    for t in run.boom:
        got = by_client.get(t.client, [])
        if len(got) != 1:
            problems.append(f"{t.describe()}: {len(got)} error events with its client address")
            continue
        e = got[0]
        req, x = e.get("request") or {}, e.get("exception") or {}
        rec = recs.get(t.client)
        if rec is None:
            problems.append(f"{t.describe()}: no /boom record with client {t.client} in /api/requests")
            continue
        want = {"reason": "status_5xx", "method": "GET", "path": "/boom", "route": "/boom", "status": 500,
                "outcome": "ok"}
        have = {"reason": e.get("reason"), "method": req.get("method"), "path": req.get("path"),
                "route": req.get("route"), "status": req.get("status"), "outcome": req.get("outcome")}
        if have != want:
            problems.append(f"{t.describe()}: event fields {have}, expected {want}")
        for k in ("request_id", "trace_id", "span_id"):
            if req.get(k) != rec.get(k):
                problems.append(f"{t.describe()}: event request.{k}={req.get(k)!r} but its record has "
                                f"{rec.get(k)!r}")
        if e.get("pid") not in run.pids:
            problems.append(f"{t.describe()}: event pid {e.get('pid')} not a server pid")
        if (x.get("type"), x.get("message"), x.get("chain")) != ("ValueError", "kaboom", 1):
            problems.append(f"{t.describe()}: exception {x.get('type')!r} {x.get('message')!r} chain "
                            f"{x.get('chain')!r}, expected ValueError 'kaboom' chain 1")
        frames = x.get("frames") or []
        if not any(f.get("file") == run.server.app_file and f.get("function") == "boom" for f in frames):
            problems.append(f"{t.describe()}: no frame (file {run.server.app_file}, function boom) in "
                            f"{frames}")
        elif frames[-1].get("function") != "boom":
            problems.append(f"{t.describe()}: innermost frame is {frames[-1]}, not app.py's boom")
        st = x.get("stacktrace") or ""
        if not (st.startswith("Traceback (most recent call last):") and
                st.rstrip("\n").endswith("ValueError: kaboom") and 'raise ValueError("kaboom")' in st):
            problems.append(f"{t.describe()}: stacktrace text is not the server's traceback: {st[-300:]!r}")
        if x.get("join") != "closest" or x.get("candidates") != [rec.get("request_id")]:
            problems.append(f"{t.describe()}: join {x.get('join')!r} candidates {x.get('candidates')}, "
                            f"expected 'closest' [{rec.get('request_id')}]")
    assert not problems, "\n".join(problems) + f"\nevents:\n  {run.dump_errors()}\n{run.ctx()}"
    ids = [(e["request"]["request_id"], e["request"]["trace_id"]) for e in evs]
    assert len({i for i, _ in ids}) == K and len({t for _, t in ids}) == K, f"not distinct: {ids}"

    # the load really was in flight: each /boom started while a /slow was being served
    slows = [r for r in run.requests if r.get("path") == "/slow" and r.get("status") == 200]
    for t in run.boom:
        b = recs[t.client]
        inside = [s for s in slows if s["ts_ns"] < b["ts_ns"] < s["ts_ns"] + s["duration_us"] * 1000]
        assert inside, (f"harness: no /slow request was in flight when {t.describe()} started "
                        f"({len(slows)} /slow records)")


def test_boom_events_in_errors_file_and_obsctl(run):
    """The same K events are written to --errors-file (identical JSON) and
    streamed by `obsctl events --json` as {"type":"Error","error":{...}}."""
    file_by_id = {e.get("event_id"): e for e in run.file_errors}
    problems = []
    for e in run.snap_a:
        if file_by_id.get(e["event_id"]) != e:
            problems.append(f"--errors-file has no identical line for event {e['event_id']} "
                            f"({es.brief_error(e)}); file has {file_by_id.get(e['event_id'])}")
    for t in run.boom:
        got = run.ctl_errors_of(t.client)
        if len(got) != 1:
            problems.append(f"obsctl: {len(got)} Error events for {t.describe()}: "
                            + "; ".join(es.brief_error(x) for x in got))
            continue
        x = got[0].get("exception") or {}
        if (got[0].get("reason"), got[0]["request"].get("path"), x.get("type"), x.get("message"),
                x.get("join")) != ("status_5xx", "/boom", "ValueError", "kaboom", "closest"):
            problems.append(f"obsctl Error event for {t.describe()}: {es.brief_error(got[0])}")
    assert not problems, "\n".join(problems) + f"\n{run.ctx()}"


def test_chained_traceback(run):
    """/chain raises RuntimeError("outer failure") from KeyError (before any
    response: the server logs the traceback, then answers 500): the event
    reports the last exception of the chain (chain 2), its frames ending in
    errors_app.py's `chain`, and keeps the whole chained text."""
    evs = run.errors_of(run.chain.client)
    assert run.chain.status == 500, run.chain.describe()
    assert len(evs) == 1, f"{len(evs)} error events for {run.chain.describe()}\n{run.dump_errors()}\n{run.ctx()}"
    e = evs[0]
    x = e.get("exception") or {}
    assert (x.get("type"), x.get("message"), x.get("chain")) == ("RuntimeError", "outer failure", 2), \
        f"expected RuntimeError 'outer failure' chain 2: {es.brief_error(e)}"
    frames = x.get("frames") or []
    assert frames and frames[-1].get("function") == "chain" and \
        frames[-1].get("file") == run.server.errors_app_file, f"innermost frame {frames[-1:]}"
    st = x.get("stacktrace") or ""
    for needle in ("KeyError: 'inner-key'",
                   "The above exception was the direct cause of the following exception:",
                   "RuntimeError: outer failure"):
        assert needle in st, f"{needle!r} not in the stacktrace text:\n{st}"
    recs = run.records_of(run.chain.client)
    assert len(recs) == 1 and x.get("join") == "closest" and \
        x.get("candidates") == [recs[0]["request_id"]] == [e["request"]["request_id"]], \
        f"join: {es.brief_error(e)}; record {recs}"


def test_long_traceback_keeps_its_exception(run):
    """/deep raises ValueError("deep-kaboom") 30 calls deep: the server writes
    its traceback (~2.4 KB: Python folds the repeated frames) in one
    write(), more than the default 2048 capture bytes. The error event of the 500 must still say which exception it was
    (type and message: the exception line is the write's last line; the
    README: "the last 64 bytes of longer ones are captured too")."""
    assert run.deep.status == 500, run.deep.describe()
    evs = run.errors_of(run.deep.client)
    assert len(evs) == 1, f"{len(evs)} error events for {run.deep.describe()}\n{run.dump_errors()}\n{run.ctx()}"
    log = es.read_output(run.server.proc, run.server.proc.log_path)
    i = log.rfind("ValueError: deep-kaboom")
    j = log.rfind("Traceback (most recent call last):", 0, i)
    size = (f"the server's traceback text alone is {i - j + 24} bytes" if 0 <= j < i
            else "traceback not found in the server log")
    x = evs[0].get("exception") or {}
    assert (x.get("type"), x.get("message")) == ("ValueError", "deep-kaboom"), \
        f"the 500 of /deep has no exception ValueError 'deep-kaboom' ({size}): {es.brief_error(evs[0])}\n" \
        f"metrics: " + " ".join(l for l in es.get_text(run.rig.obsd, "/metrics").splitlines()
                                if l.startswith("obs_tracebacks_total"))


def test_back_to_back_tracebacks_join_their_own_request(run):
    """Raising requests back to back (/chain, /boom/<n>, ...): every
    traceback is attached to the request that raised it -- the kaboom-<n>
    of /boom/<n>, the RuntimeError of /chain -- or, when obs cannot tell,
    the event says join "ambiguous" and lists that request among its
    candidates. It must never be attached, silently, to another request.
    (Requests back to back are ~1 ms apart on loopback, while a server may
    write a traceback a few ms after its own 500: the next request can end
    closer in time to it than the request that raised it.)"""
    problems, lines = [], []
    for t in run.tagged:
        evs = run.errors_of(t.client)
        recs = run.records_of(t.client)
        if len(evs) != 1 or len(recs) != 1:
            problems.append(f"{t.describe()}: {len(evs)} error events, {len(recs)} records")
            continue
        e, x = evs[0], evs[0].get("exception") or {}
        want = ("RuntimeError", "outer failure") if t.path == "/chain" else \
            ("ValueError", "kaboom-" + t.path.rsplit("/", 1)[1])
        got = (x.get("type"), x.get("message"))
        ok = got == want and x.get("join") == "closest"
        ok = ok or (x.get("join") == "ambiguous" and recs[0]["request_id"] in (x.get("candidates") or []))
        lines.append(f"{'ok   ' if ok else 'WRONG'} {t.path:>14} ended {e.get('ts_ns')}: got {got} "
                     f"join {x.get('join')}")
        if not ok:
            problems.append(f"{t.describe()}: its event carries {got} (join {x.get('join')!r}, "
                            f"candidates {x.get('candidates')}), expected {want}")
    assert not problems, ("tracebacks attached to the wrong request:\n" + "\n".join(problems) +
                          "\nall, in request order:\n" + "\n".join(lines) + f"\n{run.ctx()}")


# -- B: clients leaving mid-stream ---------------------------------------------

def _check_leave(run: Run, lv: Leave, disconnect_reasons) -> None:
    ctx = f"{lv.mode}: client {lv.client} read {lv.received} bytes {lv.notes}\n{run.ctx()}"
    failed_expected = lv.complete is not True
    for src, evs in (("obsctl events", run.ctl), ("/api/events", run.events)):
        ids = es.conn_ids_of(evs, lv.client)
        assert len(ids) == 1, f"{src}: {len(ids)} ConnectionOpened for client {lv.client} {ctx}"
        life = es.life_of(evs, ids[0])
        dump = "\n  ".join(es.brief_life(e) for e in life)
        types = [e["type"] for e in life]
        disc = [e for e in life if e["type"] == "ClientDisconnected"]
        assert len(disc) == 1, f"{src}: expected one ClientDisconnected, got:\n  {dump}\n{ctx}"
        assert disc[0].get("reason") in disconnect_reasons and disc[0].get("in_flight", 0) >= 1, \
            f"{src}: ClientDisconnected {es.brief_life(disc[0])}, want reason in {disconnect_reasons}, " \
            f"in_flight >= 1\n{ctx}"
        end = "RequestFailed" if failed_expected else "ResponseCompleted"
        other = "ResponseCompleted" if failed_expected else "RequestFailed"
        assert types.count(end) == 1 and other not in types, \
            f"{src}: expected exactly one {end} and no {other} for GET /slowstream:\n  {dump}\n{ctx}"
        assert types[:2] == ["ConnectionOpened", "RequestStarted"] and types[-1] == "ConnectionClosed" and \
            types.count("ConnectionClosed") == 1 and types.index("ClientDisconnected") < types.index(
                "ConnectionClosed"), f"{src}: lifecycle order:\n  {dump}\n{ctx}"
        fin = life[types.index(end)]
        assert fin.get("path") == "/slowstream" and fin.get("status") == 200, f"{src}: {es.brief_life(fin)}"
        if failed_expected:
            assert fin.get("error") in es.LEAVE_REASONS, f"{src}: {es.brief_life(fin)} {ctx}"
    recs = run.records_of(lv.client)
    evs = run.errors_of(lv.client)
    ctl_evs = run.ctl_errors_of(lv.client)
    assert len(recs) == 1, f"{len(recs)} records for client {lv.client}: {recs} {ctx}"
    rec = recs[0]
    if not failed_expected:
        assert rec["outcome"] == "ok" and not evs and not ctl_evs, \
            f"the server completed the response after the FIN, yet: record {harness.brief_record(rec)}, " \
            f"events {run.dump_errors(lv.client)} {ctx}"
        return
    assert rec["outcome"] == "failed" and rec["error"] in es.LEAVE_REASONS and rec["status"] == 200, \
        f"record {harness.brief_record(rec)} {ctx}"
    assert len(evs) == 1, f"{len(evs)} error events in /api/errors for client {lv.client}: " \
                          f"{run.dump_errors(lv.client)} {ctx}"
    e = evs[0]
    req = e.get("request") or {}
    assert e.get("reason") == rec["error"] and req.get("path") == "/slowstream" and \
        req.get("outcome") == "failed" and req.get("status") == 200 and \
        req.get("request_id") == rec["request_id"], f"error event {json.dumps(e)} vs record " \
                                                    f"{harness.brief_record(rec)} {ctx}"
    assert len(ctl_evs) == 1 and ctl_evs[0].get("reason") in es.LEAVE_REASONS, \
        f"obsctl Error events for client {lv.client}: {[es.brief_error(x) for x in ctl_evs]} {ctx}"


def test_client_closes_mid_stream(run):
    """close() with unread response bytes (the kernel resets): ClientDisconnected,
    RequestFailed, ConnectionClosed; an error event with a failure reason."""
    _check_leave(run, run.leaves["close"], ("reset", "fin"))


def test_client_resets_mid_stream(run):
    """An RST (SO_LINGER 0) mid-stream: ClientDisconnected "reset", RequestFailed,
    ConnectionClosed; an error event with a failure reason."""
    _check_leave(run, run.leaves["rst"], ("reset",))


def test_client_half_closes_mid_stream(run):
    """A FIN mid-stream (shutdown(SHUT_WR), then the client reads on):
    ClientDisconnected "fin"; then whatever the server did -- if it cut the
    response, RequestFailed and an error event; if the client still got the
    whole response, ResponseCompleted and no error event."""
    _check_leave(run, run.leaves["fin"], ("fin",))


def test_client_disconnected_only_when_leaving_in_flight(run):
    """ClientDisconnected is reported for exactly the three clients that
    left with their request in flight -- never for the many connections
    that a client closed after its last response."""
    leaving = {lv.client for lv in run.leaves.values()}
    for src, evs in (("obsctl events", run.ctl), ("/api/events", run.events)):
        disc = [e for e in evs if e.get("type") == "ClientDisconnected" and e.get("pid") in run.pids]
        got = collections.Counter(e.get("client") for e in disc)
        assert set(got) == leaving and all(n == 1 for n in got.values()), \
            (f"{src}: ClientDisconnected for {dict(got)}, expected once for each of {sorted(leaving)}:\n  "
             + "\n  ".join(es.brief_life(e) for e in disc) + f"\n{run.ctx()}")


def test_error_events_are_the_error_requests(run):
    """Over the whole workload, the server's error events are exactly its
    records with a 5xx status or a failed outcome (one event each); the
    hundreds of 2xx/4xx requests produce none."""
    want = collections.Counter(r["request_id"] for r in run.requests
                               if r.get("status", 0) >= 500 or r.get("outcome") != "ok")
    got = collections.Counter((e.get("request") or {}).get("request_id") for e in run.errors)
    recs = {r["request_id"]: r for r in run.requests}
    assert got == want, ("error events vs error records (by request_id):\n missing events for: "
                         + "; ".join(harness.brief_record(recs[i]) for i in (want - got))
                         + "\n events without an error record: "
                         + "; ".join(es.brief_error(e) for e in run.errors
                                     if (e.get("request") or {}).get("request_id") in (got - want))
                         + f"\n{run.ctx()}")
    ok = sum(1 for r in run.requests if r.get("status", 0) < 500 and r.get("outcome") == "ok")
    assert ok >= 20, f"harness: only {ok} ok requests, too few for this to mean much"


# -- C: lifecycle of a keep-alive connection -----------------------------------

def _check_ka_life(run: Run, src: str, evs: List[dict], records: Optional[List[dict]]) -> None:
    ids = es.conn_ids_of(evs, run.ka_client)
    assert len(ids) == 1, f"{src}: {len(ids)} ConnectionOpened for client {run.ka_client}\n{run.ctx()}"
    life = es.life_of(evs, ids[0])
    dump = "\n  ".join(es.brief_life(e) for e in life)
    n = len(run.ka)
    expected = ["ConnectionOpened"] + ["RequestStarted", "ResponseCompleted"] * n + ["ConnectionClosed"]
    assert [e["type"] for e in life] == expected, \
        f"{src}: lifecycle of the keep-alive connection ({n} requests):\n  {dump}\nexpected {expected}\n{run.ctx()}"
    problems = []
    for i, t in enumerate(run.ka):
        st, done = life[1 + 2 * i], life[2 + 2 * i]
        for e in (st, done):
            if (e.get("method"), e.get("path")) != ("GET", t.path):
                problems.append(f"{e['type']} #{i + 1}: {e.get('method')} {e.get('path')}, expected GET {t.path}")
        if done.get("status") != t.status or done.get("bytes_in") != t.bytes_in or \
                done.get("bytes_out") != t.bytes_out:
            problems.append(f"ResponseCompleted #{i + 1}: status {done.get('status')} bytes "
                            f"{done.get('bytes_in')}/{done.get('bytes_out')}, client: {t.describe()}")
        if st.get("request_id") != done.get("request_id") or st.get("trace_id") != done.get("trace_id"):
            problems.append(f"request #{i + 1}: Started/Completed ids differ: {es.brief_life(st)} "
                            f"{es.brief_life(done)}")
        if records is not None:
            rec = records[i] if i < len(records) else {}
            if done.get("request_id") != rec.get("request_id") or done.get("trace_id") != rec.get("trace_id"):
                problems.append(f"request #{i + 1}: event ids {done.get('request_id')}/{done.get('trace_id')} "
                                f"!= record {rec.get('request_id')}/{rec.get('trace_id')}")
    for e in life:
        if e.get("client") != run.ka_client or e.get("server") != f"{HOST}:{run.server.port}" or \
                e.get("pid") not in run.pids:
            problems.append(f"addresses/pid: {es.brief_life(e)} pid {e.get('pid')} server {e.get('server')}")
    want_reason = "server_closed" if run.ka_server_closed else "client_closed"
    if life[-1].get("reason") != want_reason:
        problems.append(f"ConnectionClosed reason {life[-1].get('reason')!r}, expected {want_reason!r} "
                        f"({'the server' if run.ka_server_closed else 'the client'} closed the connection)")
    assert not problems, f"{src}:\n" + "\n".join(problems) + f"\n  {dump}\n{run.ctx()}"
    if n != 3:
        pytest.skip(f"{run.setup} closed the keep-alive connection after {n} response(s) (no "
                    f"keep-alive: curl too reports 'Connection 0 seems to be dead'); the lifecycle of "
                    f"those {n} request(s) was checked, the 3-request sequence cannot be produced")


def test_keepalive_lifecycle_obsctl(run):
    """`obsctl events --json --port P`: one keep-alive connection with exactly
    3 requests is exactly Opened, 3 x (Started, Completed), Closed, with the
    requests' method, path, status and byte counts."""
    assert all(t.status == 200 for t in run.ka) and run.ka, [t.describe() for t in run.ka]
    _check_ka_life(run, "obsctl events", run.ctl, None)


def test_keepalive_lifecycle_api_events(run):
    """The same from obsd's GET /api/events (newest first, reversed here),
    whose request ids are those of the /api/requests records."""
    recs = sorted(run.records_of(run.ka_client), key=lambda r: r["ts_ns"])
    assert [r["path"] for r in recs] == [t.path for t in run.ka], \
        f"records of the keep-alive connection: {[harness.brief_record(r) for r in recs]}"
    _check_ka_life(run, "/api/events", run.events, recs)


# -- D: Sentry -----------------------------------------------------------------

def test_sentry_envelopes(run):
    """Every error event of the server reached the Sentry receiver as one
    valid envelope (strict framing and event schema, X-Sentry-Auth with the
    DSN's key); the K /boom events carry the exception with its frames, the
    request, contexts.trace of the request's trace, environment, release,
    tags.service and tags.route."""
    rx = run.rig.receiver
    bad = [l for l in run.sentry if not l.get("ok")]
    assert not bad, f"the receiver rejected {len(bad)} envelope(s):\n" + \
        "\n".join(f"{l.get('status')} {l.get('error')}\n  body: {l.get('body', '')[:1500]}" for l in bad[:3])
    mine = [l for l in run.sentry if ((l["event"].get("extra") or {}).get("pid")) in run.pids]
    want_ids = collections.Counter(e["request"]["request_id"] for e in run.errors if e.get("request"))
    got_ids = collections.Counter((l["event"].get("extra") or {}).get("request_id") for l in mine)
    assert got_ids == want_ids, (f"envelopes vs error events of the server (by request_id): missing "
                                 f"{dict(want_ids - got_ids)}, extra {dict(got_ids - want_ids)}\n{run.ctx()}")
    recs = {r["client"]: r for r in run.requests if r.get("path") == "/boom"}
    ev_by_rid = {e["request"]["request_id"]: e for e in run.errors if e.get("request")}
    problems = []
    for t in run.boom:
        rec = recs[t.client]
        got = [l for l in mine if ((l["event"].get("contexts") or {}).get("trace") or {}).get("trace_id")
               == rec["trace_id"]]
        if len(got) != 1:
            problems.append(f"{t.describe()}: {len(got)} envelopes with contexts.trace.trace_id {rec['trace_id']}")
            continue
        l, ev = got[0], got[0]["event"]
        oe = ev_by_rid.get(rec["request_id"], {})
        ofr = ((oe.get("exception") or {}).get("frames") or [{}])[-1]
        checks = {
            "sentry_key": (l.get("sentry_key"), rx.key),
            "project": (l.get("project"), str(rx.project)),
            "auth sentry_version": ((l.get("auth") or {}).get("sentry_version"), "7"),
            "envelope dsn": (l["envelope_header"].get("dsn"), rx.dsn),
            "envelope event_id": (l["envelope_header"].get("event_id"), ev.get("event_id")),
            "item type": (l["item_header"].get("type"), "event"),
            "warnings": (l.get("warnings"), []),
            "level": (ev.get("level"), "error"),
            "environment": (ev.get("environment"), SENTRY_ENV),
            "release": (ev.get("release"), SENTRY_RELEASE),
            "span_id": (ev["contexts"]["trace"].get("span_id"), rec["span_id"]),
            "extra.request_id": ((ev.get("extra") or {}).get("request_id"), rec["request_id"]),
            "request.method": ((ev.get("request") or {}).get("method"), "GET"),
            "request.url": ((ev.get("request") or {}).get("url"), f"http://{HOST}:{run.server.port}/boom"),
            "tags.route": ((ev.get("tags") or {}).get("route"), "/boom"),
            "tags.service": ((ev.get("tags") or {}).get("service"), oe.get("service")),
            "tags.http.status_code": ((ev.get("tags") or {}).get("http.status_code"), "500"),
        }
        for k, (have, want) in checks.items():
            if have != want:
                problems.append(f"{t.describe()}: {k} = {have!r}, expected {want!r}")
        if not (ev.get("tags") or {}).get("service"):
            problems.append(f"{t.describe()}: tags.service empty: {ev.get('tags')}")
        vals = (ev.get("exception") or {}).get("values") or [{}]
        v = vals[-1]
        frames = (v.get("stacktrace") or {}).get("frames") or [{}]
        if (v.get("type"), v.get("value")) != ("ValueError", "kaboom"):
            problems.append(f"{t.describe()}: exception {v.get('type')!r}: {v.get('value')!r}")
        f = frames[-1]
        if (f.get("filename"), f.get("abs_path"), f.get("function"), f.get("lineno")) != \
                ("app.py", run.server.app_file, "boom", ofr.get("line")):
            problems.append(f"{t.describe()}: innermost frame {f}, expected app.py / {run.server.app_file} / "
                            f"boom / line {ofr.get('line')}")
    assert not problems, "\n".join(problems) + f"\n{run.ctx()}"


# -- E: redaction --------------------------------------------------------------

def test_secrets_never_leave_obs(run):
    """Authorization, Cookie and the query string of requests (to /boom and
    /text) appear in none of obs's outputs: /api/requests, /api/traces,
    /api/errors, /api/events, /metrics, the --errors-file, the Sentry
    receiver's file, the obsctl events output, obsd's log."""
    assert [t.status for t in run.secret] == [500, 200], [t.describe() for t in run.secret]
    # the requests were observed (so the search below is meaningful)
    for t in run.secret:
        assert len(run.records_of(t.client)) == 1, f"no record of {t.describe()} {run.ctx()}"
        assert es.conn_ids_of(run.ctl, t.client), f"obsctl saw no connection of {t.describe()}"
    boom_ev = run.errors_of(run.secret[0].client)
    assert len(boom_ev) == 1, f"no error event for {run.secret[0].describe()} {run.ctx()}"
    rid = boom_ev[0]["request"]["request_id"]
    assert any(((l.get("event") or {}).get("extra") or {}).get("request_id") == rid for l in run.sentry), \
        "no Sentry envelope for the /boom request carrying the secrets"

    d = run.rig.obsd
    outputs = {
        "/api/requests": es.get_text(d, "/api/requests?limit=100000"),
        "/api/traces": es.get_text(d, "/api/traces?limit=100000"),
        "/api/errors": es.get_text(d, "/api/errors?limit=100000"),
        "/api/events": es.get_text(d, "/api/events?limit=100000"),
        "/metrics": es.get_text(d, "/metrics"),
        "--errors-file": run.rig.errors_file.read_text(errors="replace"),
        "Sentry receiver file": run.rig.receiver.text(),
        "obsctl events output": run.rig.ctl.text(),
        "obsd log": run.rig.obsd_log(),
    }
    leaks = {name: es.find_secrets(text) for name, text in outputs.items()}
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, "secrets found in obs outputs:\n" + "\n".join(
        f"{k}:\n  " + "\n  ".join(v[:3]) for k, v in leaks.items())
    server_log = es.read_output(run.server.proc, run.server.proc.log_path)
    print(f"{run.setup}: the server's own log {'contains' if es.SECRETS[2] in server_log else 'lacks'} "
          f"the query secret (its stdout/stderr writes are what obs reads for tracebacks)")


# -- counters --------------------------------------------------------------------

def test_error_counters_consistent(run):
    """/metrics agrees with the outputs: obs_error_events_total = /api/errors
    total = --errors-file lines; obs_tracebacks_total{join} = joined events
    by join kind; obs_sentry_events_total{result="sent"} = envelopes the
    receiver accepted, nothing dropped or sampled out."""
    d = run.rig.obsd
    m = es.get_text(d, "/metrics")
    doc = es.api_errors(d)
    file_lines = es.read_jsonl(run.rig.errors_file)
    rx = run.rig.receiver.lines()
    evs = doc["errors"]
    assert doc["total"] == len(evs), f"more than the ring holds? total {doc['total']} count {len(evs)}"
    joins = collections.Counter((e.get("exception") or {}).get("join") for e in evs if e.get("request"))
    unjoined = sum(1 for e in evs if e.get("reason") == "traceback_without_request")
    checks = {
        "obs_error_events_total": (es.metric_value(m, "obs_error_events_total"), doc["total"]),
        "--errors-file lines": (len(file_lines), doc["total"]),
        'obs_tracebacks_total{join="closest"}':
            (es.metric_value(m, 'obs_tracebacks_total{join="closest"}'), joins["closest"]),
        'obs_tracebacks_total{join="ambiguous"}':
            (es.metric_value(m, 'obs_tracebacks_total{join="ambiguous"}'), joins["ambiguous"]),
        'obs_tracebacks_total{join="none"}': (es.metric_value(m, 'obs_tracebacks_total{join="none"}'), unjoined),
        'obs_sentry_events_total{result="sent"}':
            (es.metric_value(m, 'obs_sentry_events_total{result="sent"}'), sum(1 for l in rx if l.get("ok"))),
        "receiver rejections": (sum(1 for l in rx if not l.get("ok")), 0),
    }
    for res in ("dropped_queue_full", "dropped_send_failed", "sampled_out"):
        checks[f'obs_sentry_events_total{{result="{res}"}}'] = \
            (es.metric_value(m, f'obs_sentry_events_total{{result="{res}"}}'), 0)
    bad = {k: v for k, v in checks.items() if v[0] != v[1]}
    assert not bad, "inconsistent (got, expected): " + json.dumps(bad, indent=1) + \
        "\n" + "\n".join(l for l in m.splitlines() if l.startswith(("obs_error", "obs_traceb", "obs_sentry")))
