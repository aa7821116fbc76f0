"""Servers behind UNIX stream sockets, observed like TCP ones.

1. nginx -> gunicorn (2 uvicorn workers) -> Django, over a UNIX socket.
   Real nginx (Debian's, own prefix and config) on TCP proxies to
   unix:<tmp>/app.sock through an upstream block with keepalive 8. Truth is
   nginx's JSON access log: per request what the client got ($status,
   $request_length, $bytes_sent) and per upstream attempt what the app got
   and answered ($upstream_status, $upstream_bytes_sent,
   $upstream_bytes_received, $upstream_response_length). Clients: curl and
   a threaded Python keep-alive client, a few hundred requests; one slow
   request's worker is SIGKILLed while it holds the request.
     obsd A: --unix <app.sock> (no trusted proxy)
     obsd B: --pid <nginx master> --pid <gunicorn master>
             --trusted-proxy unix --trusted-proxy 127.0.0.1
   A: the app's records are exactly nginx's upstream attempts (method, path,
   status, bytes), the killed one failed with a reason, the replacement
   worker is followed, nothing else is seen, nginx's X-Request-ID is NOT
   honoured (no --trusted-proxy unix). B: every nginx request is one record
   of service "nginx" (TCP) and every upstream attempt one record of the
   Django service (UNIX), joined one to one by request id (client's id ->
   nginx record, nginx's $request_id -> app record) with exact statuses and
   bytes; /metrics counts each once under its own service.
2. uvicorn --uds (h11 and httptools): curl --unix-socket and raw-socket
   clients, several requests pipelined in one send; exact records, also in
   `obsctl trace --json --unix` and in the lifecycle events.
3. hypercorn -b unix: and daphne -u: records match what the clients got.
4. Filters: --unix selects one of two UNIX servers and no TCP one; --port
   selects the TCP server and no UNIX one.
5. Span attributes of a UNIX request in /api/traces.
6. The close() tracepoint is loaded but attached only once a UNIX connection
   is followed; a server's close() after that is reported at once.

UNIX clients have no address: records of raw clients are found by the
X-Request-ID they send (obsd runs with --trusted-proxy unix where needed).
"""
import collections
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

import clients
import harness
import unix_support as us
from deploy_support import series
from harness import HOST, Obsctl, bpf_links_of, bpf_progs_held, uniq

SLOW_MIN_US = 50_000


@pytest.fixture
def short_tmp():
    d = us.short_tmpdir("obs-unix.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fmt_key(k) -> str:
    return " ".join(map(str, k))


def multiset_diff(want: collections.Counter, got: collections.Counter, what: str) -> Optional[str]:
    if want == got:
        return None
    lines = [f"{what}: truth {sum(want.values())}, obs {sum(got.values())}"]
    for k, n in sorted((want - got).items(), key=str):
        lines.append(f"  MISSING {n} x {fmt_key(k)} (truth {want[k]}, obs {got[k]})")
    for k, n in sorted((got - want).items(), key=str):
        lines.append(f"  EXTRA   {n} x {fmt_key(k)} (truth {want[k]}, obs {got[k]})")
    return "\n".join(lines)


def by_rid(records: List[dict]) -> Dict[str, List[dict]]:
    out = collections.defaultdict(list)
    for r in records:
        out[r.get("request_id")].append(r)
    return out


def metric_sum(text: str, name: str, service: str) -> float:
    return sum(v for lab, v in series(text, name) if lab.get("service") == service)


# == 1. nginx -> gunicorn -> Django ==============================================

DJANGO_ROUTES = ["/ok", "/items/{n}", "/go", "/forbidden", "/gone", "/missing-{n}", "/admin/login/",
                 "/admin/", "POST /echo", "/ok", "/items/{n}", "/slow"]


def django_request(i: int):
    """(method, target, body) of the i-th request of the Python client."""
    spec = DJANGO_ROUTES[i % len(DJANGO_ROUTES)]
    method, target = spec.split(" ", 1) if " " in spec else ("GET", spec)
    target = target.replace("{n}", str(uniq()))
    body = os.urandom(100 + i % 900) if method == "POST" else None
    return method, target, body


def python_client(base_port: int, n: int, out: list, errors: list, seed: int) -> None:
    """n keep-alive requests through nginx, each with its own X-Request-ID."""
    conn = http.client.HTTPConnection(HOST, base_port, timeout=30)
    try:
        for i in range(n):
            method, target, body = django_request(seed + i)
            rid = us.new_rid()
            conn.request(method, target, body=body, headers={"X-Request-ID": rid})
            resp = conn.getresponse()
            resp.read()
            t = clients.Truth(method=method, path=clients.path_of(target), status=resp.status,
                              kind="python", target=target)
            t.rid = rid  # type: ignore[attr-defined]
            out.append(t)
    except Exception as e:  # reported by the fixture
        errors.append(repr(e))
    finally:
        conn.close()


@dataclass
class Stack:
    project: us.DjangoProject
    app: us.UnixServer
    nginx: us.Nginx
    obsd_a: harness.Obsd
    obsd_b: harness.Obsd
    truth: List[clients.Truth] = field(default_factory=list)
    hang_rid: str = ""
    killed: int = 0
    entries: List[dict] = field(default_factory=list)
    attempts: List[dict] = field(default_factory=list)
    recs_a: List[dict] = field(default_factory=list)
    all_a: List[dict] = field(default_factory=list)
    recs_b: List[dict] = field(default_factory=list)
    metrics_a: str = ""
    metrics_b: str = ""
    report: str = ""

    def ctx(self) -> str:
        return (f"[nginx :{self.nginx.port} pids {sorted(self.nginx.pids())}; gunicorn "
                f"{self.app.sock} pids {sorted(self.app.pids())}; killed worker {self.killed}; "
                f"truth and records: {self.report}]")


def _hang(stack: Stack, out: list) -> None:
    token = us.new_rid()
    rid = us.new_rid()
    stack.hang_rid = rid
    conn = http.client.HTTPConnection(HOST, stack.nginx.port, timeout=60)

    def run():
        try:
            conn.request("GET", f"/hang?token={token}", headers={"X-Request-ID": rid})
            resp = conn.getresponse()
            resp.read()
            t = clients.Truth(method="GET", path="/hang", status=resp.status, kind="hang",
                              target="/hang")
            t.rid = rid  # type: ignore[attr-defined]
            out.append(t)
        finally:
            conn.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    pid = stack.project.hang_pid(token)
    assert pid in stack.app.workers(), f"harness: /hang ran in {pid}, not a gunicorn worker"
    os.kill(pid, signal.SIGKILL)     # a worker of the gunicorn this test started
    stack.killed = pid
    th.join(60)


def drive_django(stack: Stack) -> None:
    base = stack.nginx.base
    truth: List[clients.Truth] = []
    # curl: keep-alive, Connection: close, a POST body
    body = clients.make_body_file(str(stack.project.dir), 64 * 1024, "body.bin")
    items = [("GET", "/ok", None), ("GET", f"/items/{uniq()}", None), ("GET", "/go", None),
             ("GET", "/forbidden", None), ("GET", "/gone", None), ("GET", "/admin/login/", None),
             ("GET", "/admin/", None), ("GET", "/slow", None), ("GET", f"/nope-{uniq()}", None),
             ("POST", "/echo", body)]
    truth += us.curl_unix(None, items, base=base, rids=[us.new_rid() for _ in items])
    truth += us.curl_unix(None, items[:5], base=base, close=True, rids=[us.new_rid() for _ in range(5)])
    # the Python client: 4 keep-alive connections, 60 requests each
    outs, errors, threads = [[] for _ in range(4)], [], []
    for k in range(4):
        th = threading.Thread(target=python_client, args=(stack.nginx.port, 60, outs[k], errors, k * 7))
        threads.append(th)
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, f"python client failed: {errors}"
    for o in outs:
        truth += o
    # a worker dies holding a request
    _hang(stack, truth)
    # the replacement worker serves (gunicorn forks it; obsd follows it)
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while len(stack.app.workers()) < 2 or stack.killed in stack.app.workers():
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.05)
    stack.app.pids()
    after = [("GET", f"/items/{uniq()}", None) for _ in range(6)]
    truth += us.curl_unix(None, after, base=base, close=True, rids=[us.new_rid() for _ in after])
    stack.truth = truth


def check_client_truth(stack: Stack) -> None:
    """Harness self-check: every client got what the app answers (502 for
    the killed one), and nginx logged each client request once, as the
    client got it."""
    bad = []
    logged = collections.defaultdict(list)
    for e in stack.entries:
        logged[e["client_rid"]].append(e)
    for t in stack.truth:
        want = 502 if t.path == "/hang" else us.django_status(t.method, t.path)
        if t.status != want:
            bad.append(f"{t.describe()}: expected {want}")
        es = logged.get(t.rid, [])
        if len(es) != 1 or int(es[0]["status"]) != t.status:
            bad.append(f"{t.describe()} rid={t.rid}: nginx logged {es}")
    if len(stack.entries) != len(stack.truth):
        bad.append(f"nginx logged {len(stack.entries)} requests, clients made {len(stack.truth)}")
    if bad:
        raise harness.HarnessError("client truth vs nginx log:\n" + "\n".join(bad[:30]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    harness.require_binary(harness.OBSD)
    root = us.short_tmpdir("obs-unix-django.")
    project = us.DjangoProject(root)
    app = us.UnixServer("gunicorn-uvicorn", root, app=us.DJANGO_SERVICE, app_dir=project.dir)
    nginx = us.Nginx(root, app.sock)
    a = harness.Obsd(["--unix", app.sock], name="obsd-unix-a")
    b = None
    try:
        app.start()
        nginx.start()
        # no connection has been made to either yet: obsd sees them all
        a.start()
        b = harness.Obsd(["--pid", nginx.pid, "--pid", app.pid, "--trusted-proxy", "unix",
                          "--trusted-proxy", HOST], name="obsd-unix-b")
        b.start()
        s = Stack(project, app, nginx, a, b)
        drive_django(s)
        s.entries = nginx.log_entries()
        deadline = time.monotonic() + harness.RECORD_TIMEOUT
        while len(s.entries) < len(s.truth) and time.monotonic() < deadline:
            time.sleep(0.1)
            s.entries = nginx.log_entries()
        check_client_truth(s)
        s.attempts = us.upstream_attempts(s.entries)
        s.recs_a = harness.wait_records(a.requests, app.pids, len(s.attempts))
        s.all_a = a.requests()
        s.recs_b = harness.wait_records(b.requests, lambda: app.pids() | nginx.pids(),
                                        len(s.attempts) + len(s.entries))
        s.metrics_a = a.get("/metrics")[1].decode()
        s.metrics_b = b.get("/metrics")[1].decode()
        s.report = str(us.write_report("unix-django", us.summarize_nginx(s.entries),
                                       "obsd A (--unix):\n" + us.summarize_records(s.all_a),
                                       "obsd B (--pid nginx, gunicorn):\n" + us.summarize_records(s.recs_b)))
        print(us.summarize_nginx(s.entries, 20))
        print(us.summarize_records(s.all_a, 20))
        yield s
    finally:
        for d in (a, b):
            if d is not None:
                harness.stop_obsd_checked(d)
        nginx.stop()
        app.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_django_records_are_nginx_upstream_attempts(stack):
    """obsd --unix <app.sock>: the multiset of (method, path, status) of the
    app's records is exactly nginx's upstream attempts (the killed one as
    status 0), per route and status; bytes_in/bytes_out sum per key to
    $upstream_bytes_sent/$upstream_bytes_received; nothing of any other
    process (nginx included) is reported."""
    want = collections.Counter((a["method"], a["path"], 0 if a["rid"] == stack_hang_nginx_rid(stack)
                                else a["status"]) for a in stack.attempts)
    got = collections.Counter((r["method"], r["path"], r["status"]) for r in stack.recs_a)
    d = multiset_diff(want, got, "app records vs nginx upstream attempts")
    assert d is None, f"{d}\n{stack.ctx()}"
    by_status = collections.Counter(a["status"] for a in stack.attempts)
    assert {200, 302, 403, 404} <= set(by_status), f"harness: statuses {by_status}"
    want_b = collections.defaultdict(lambda: [0, 0])
    for a in stack.attempts:
        k = (a["method"], a["path"])
        want_b[k][0] += a["bytes_in"]
        want_b[k][1] += a["bytes_out"]
    got_b = collections.defaultdict(lambda: [0, 0])
    for r in stack.recs_a:
        k = (r["method"], r["path"])
        got_b[k][0] += r["bytes_in"]
        got_b[k][1] += r["bytes_out"]
    bad = [f"{fmt_key(k)}: nginx sent/received {want_b[k]}, obs bytes_in/out {got_b[k]}"
           for k in sorted(set(want_b) | set(got_b)) if want_b[k] != got_b[k]]
    assert not bad, "\n".join(bad[:30]) + f"\n{stack.ctx()}"
    pids = stack.app.pids()
    foreign = [r for r in stack.all_a if r.get("pid") not in pids]
    assert not foreign, (f"--unix {stack.app.sock} reported {len(foreign)} record(s) of other "
                         f"processes:\n" + us.summarize_records(foreign, 10))


def stack_hang_nginx_rid(stack) -> str:
    es = [e for e in stack.entries if e["client_rid"] == stack.hang_rid]
    return es[0]["rid"] if es else ""


def test_django_record_fields(stack):
    """Every app record: transport "unix", server = the socket path, client
    = "nginx[<pid>]" with pid = peer_pid = one of nginx's workers, service =
    the Django app; request ids are obs's own (X-Request-ID from a UNIX
    peer is not honoured without --trusted-proxy unix); the new worker that
    replaced the killed one is observed."""
    workers = stack.nginx.workers()
    nginx_rids = {e["rid"] for e in stack.entries}
    bad = []
    for r in stack.recs_a:
        p = []
        if r.get("transport") != "unix":
            p.append(f"transport {r.get('transport')!r}")
        if r.get("server") != stack.app.sock:
            p.append(f"server {r.get('server')!r}")
        m = re.match(r"^nginx\[(\d+)\]$", r.get("client", ""))
        if not m or int(m.group(1)) not in workers or r.get("peer_pid") != int(m.group(1)):
            p.append(f"client {r.get('client')!r} peer_pid {r.get('peer_pid')!r} (nginx workers "
                     f"{sorted(workers)})")
        if r.get("service") != us.DJANGO_SERVICE:
            p.append(f"service {r.get('service')!r}")
        if r.get("request_id") in nginx_rids:
            p.append("request_id is nginx's: honoured without --trusted-proxy unix")
        if p:
            bad.append(f"{'; '.join(p)}: {harness.brief_record(r)}")
    assert not bad, f"{len(bad)} record(s):\n" + "\n".join(bad[:20]) + f"\n{stack.ctx()}"
    pids_seen = {r["pid"] for r in stack.recs_a}
    replacement = stack.app.workers()
    assert pids_seen & replacement, (f"no record of the replacement worker(s) {sorted(replacement)}; "
                                     f"records from {sorted(pids_seen)}\n{stack.ctx()}")


def test_django_killed_worker_fails_the_request(stack):
    """The request whose worker was SIGKILLed (nginx answered 502, upstream
    502 with 0 bytes received) is one failed record of the killed pid:
    status 0, error "process_exit", bytes_in = $upstream_bytes_sent."""
    nrid = stack_hang_nginx_rid(stack)
    att = [a for a in stack.attempts if a["rid"] == nrid]
    assert len(att) == 1 and att[0]["status"] == 502 and att[0]["bytes_out"] == 0, \
        f"harness: nginx logged the killed request as {att}"
    app_pids = stack.app.pids()
    for name, recs in (("A", stack.recs_a), ("B", stack.recs_b)):
        hang = [r for r in recs if r.get("path") == "/hang" and r["pid"] in app_pids]
        assert len(hang) == 1, f"obsd {name}: {len(hang)} /hang records\n{stack.ctx()}"
        r = hang[0]
        assert (r["pid"], r["status"], r["outcome"], r["error"]) == \
            (stack.killed, 0, "failed", "process_exit"), f"obsd {name}: {harness.brief_record(r)}"
        assert r["bytes_in"] == att[0]["bytes_in"] and r["bytes_out"] == 0, harness.brief_record(r)
    ok = [r for r in stack.recs_a if r.get("path") != "/hang" and r.get("outcome") != "ok"]
    assert not ok, "other records failed:\n" + us.summarize_records(ok, 10)


def test_django_b_joins_nginx_and_app_by_request_id(stack):
    """obsd B (--trusted-proxy unix and 127.0.0.1): each nginx request is
    exactly one nginx record whose request_id is the client's X-Request-ID,
    with $status, $request_length, $bytes_sent and the client address; each
    upstream attempt is exactly one app record whose request_id is nginx's
    $request_id, with the upstream status (0 for the killed one) and
    $upstream_bytes_sent/$upstream_bytes_received."""
    ng_pids, app_pids = stack.nginx.pids(), stack.app.pids()
    ng = by_rid([r for r in stack.recs_b if r["pid"] in ng_pids])
    ap = by_rid([r for r in stack.recs_b if r["pid"] in app_pids])
    bad = []
    for e in stack.entries:
        rs = ng.pop(e["client_rid"], [])
        if len(rs) != 1:
            bad.append(f"nginx request {e['method']} {e['uri']} rid {e['client_rid']}: {len(rs)} nginx records")
            continue
        r = rs[0]
        got = (r["method"], r["path"], r["status"], r["bytes_in"], r["bytes_out"], r["client"],
               r["transport"], r["server"], r["service"])
        want = (e["method"], clients.path_of(e["uri"]), int(e["status"]), int(e["request_length"]),
                int(e["bytes_sent"]), e["client"], "tcp", f"{HOST}:{stack.nginx.port}", "nginx")
        if got != want:
            bad.append(f"nginx record {got} != log {want}")
    hang = stack_hang_nginx_rid(stack)
    for a in stack.attempts:
        rs = ap.pop(a["rid"], [])
        if len(rs) != 1:
            bad.append(f"upstream attempt {a['method']} {a['path']} rid {a['rid']}: {len(rs)} app records")
            continue
        r = rs[0]
        got = (r["method"], r["path"], r["status"], r["bytes_in"], r["bytes_out"], r["transport"],
               r["server"], r["service"])
        want = (a["method"], a["path"], 0 if a["rid"] == hang else a["status"], a["bytes_in"],
                a["bytes_out"], "unix", stack.app.sock, us.DJANGO_SERVICE)
        if got != want:
            bad.append(f"app record {got} != nginx upstream {want}")
    for rid, rs in list(ng.items()) + list(ap.items()):
        bad += [f"record matching no logged request: {harness.brief_record(r)}" for r in rs]
    assert not bad, f"{len(bad)} problem(s):\n" + "\n".join(bad[:30]) + f"\n{stack.ctx()}"


def test_django_services_separate_nothing_twice(stack):
    """/metrics: nginx (TCP) and the Django app (UNIX) are two services;
    http_requests_total counts each nginx request once under "nginx" and
    each upstream attempt once under the app (obsd B), and obsd A (--unix)
    has no nginx series; bytes totals equal nginx's log."""
    ng, app = "nginx", us.DJANGO_SERVICE
    tb = stack.metrics_b
    assert metric_sum(tb, "http_requests_total", ng) == len(stack.entries), \
        f"nginx requests {len(stack.entries)}; http_requests_total{{service=nginx}} " \
        f"{metric_sum(tb, 'http_requests_total', ng)}\n{stack.ctx()}"
    assert metric_sum(tb, "http_requests_total", app) == len(stack.attempts), stack.ctx()
    assert metric_sum(stack.metrics_a, "http_requests_total", app) == len(stack.attempts), stack.ctx()
    assert metric_sum(stack.metrics_a, "http_requests_total", ng) == 0, \
        "obsd --unix <app.sock> counted nginx requests"
    assert metric_sum(tb, "http_bytes_sent_total", ng) == sum(int(e["bytes_sent"]) for e in stack.entries)
    assert metric_sum(tb, "http_bytes_received_total", ng) == \
        sum(int(e["request_length"]) for e in stack.entries)
    assert metric_sum(tb, "http_bytes_sent_total", app) == sum(a["bytes_out"] for a in stack.attempts)
    assert metric_sum(tb, "http_bytes_received_total", app) == sum(a["bytes_in"] for a in stack.attempts)
    # per route and status: /metrics of A == A's records, /items/<n> is one route
    by_route = collections.Counter()
    for lab, v in series(stack.metrics_a, "http_requests_total"):
        if lab.get("service") == app:
            by_route[(lab["method"], lab["route"], int(lab["status_code"]))] += int(v)
    want = collections.Counter((r["method"], r["route"], r["status"]) for r in stack.recs_a)
    d = multiset_diff(want, by_route, "http_requests_total by route and status vs records")
    assert d is None, d
    items = sum(1 for a in stack.attempts if a["path"].startswith("/items/"))
    assert by_route[("GET", "/items/{id}", 200)] == items > 0, (items, by_route)
    services = {r["pid"]: r["service"] for r in stack.recs_b}
    assert {services[p] for p in services if p in stack.nginx.pids()} == {ng}
    assert {services[p] for p in services if p in stack.app.pids()} == {app}


# == 2. uvicorn --uds ==============================================================

def drive_asgi_unix(sock: str, workdir, pipelining: bool = True) -> List[clients.Truth]:
    """Raw single requests and a pipelined batch (exact bytes, own request
    ids), curl --unix-socket keep-alive and Connection: close."""
    T = [us.uds_raw(sock, "GET", "/text")]
    upload = clients.make_body_file(str(workdir), harness.MIB, "upload.bin")
    for m, t, body in (("GET", "/json", b""), ("GET", f"/users/{uniq()}", b""),
                       ("GET", f"/users/{uniq()}?q=1", b""), ("GET", "/stream", b""),
                       ("POST", "/upload", open(upload, "rb").read()), ("GET", "/slow", b""),
                       ("GET", "/boom", b""), ("GET", f"/nope-{uniq()}", b"")):
        T.append(us.uds_raw(sock, m, t, body))
    if pipelining:
        # /stream last: a response queued behind its 1 MiB would share a
        # coalesced write whose middle is not captured (docs/records.md)
        T += us.uds_pipeline(sock, [("GET", f"/users/{uniq()}"), ("GET", "/text"), ("GET", "/json"),
                                    ("GET", "/slow"), ("GET", f"/users/{uniq()}"), ("GET", "/nope"),
                                    ("GET", f"/users/{uniq()}"), ("GET", "/stream")])
    items = [("GET", "/text", None), ("GET", "/json", None), ("GET", f"/users/{uniq()}", None),
             ("GET", "/stream", None), ("GET", "/slow", None), ("GET", "/boom", None),
             ("GET", "/nope", None), ("POST", "/upload", upload)]
    T += us.curl_unix(sock, items)
    T += us.curl_unix(sock, items[:3], close=True)
    harness.check_truth_sane(T)
    return T


def check_unix_records(truth, records, sock: str, by_id: bool = True) -> List[str]:
    """Exact multiset; every request with an id of its own has exactly one
    record with that id and its exact method, path, status and bytes; the
    raw clients' records name this process as the peer; curl's name curl.
    Without by_id (an observer that does not honour the ids), the raw
    requests' exact fields are compared as a multiset."""
    problems = []
    d = harness.diff_truth(truth, records)
    if d:
        problems.append(d)
    me = os.getpid()
    if not by_id:
        return problems + check_raw_multiset(truth, records, sock)
    recs = by_rid(records)
    mine = set()
    for t in truth:
        if t.bytes_in is None:
            continue
        rs = recs.get(t.rid, [])
        if len(rs) != 1:
            problems.append(f"{t.describe()} rid={t.rid}: {len(rs)} records with that request_id")
            continue
        r = rs[0]
        mine.add(id(r))
        got = (r["method"], r["path"], r["status"], r["bytes_in"], r["bytes_out"], r["transport"],
               r["server"], r["client"], r.get("peer_pid"), r["outcome"])
        want = (t.method, t.path, t.status, t.bytes_in, t.bytes_out, "unix", sock,
                f"{us.my_comm()}[{me}]", me, "ok")
        if got != want:
            problems.append(f"record {got} != client {want}")
        if t.path == "/slow" and not SLOW_MIN_US <= r["duration_us"] <= t.elapsed_us:
            problems.append(f"/slow duration_us {r['duration_us']} not in [{SLOW_MIN_US}, {t.elapsed_us}]")
    for r in records:
        if id(r) in mine:
            continue
        # curl may be gone before obsd reads its comm: then "[pid]"
        if (r["transport"], r["server"]) != ("unix", sock) or \
                not re.match(r"^(curl)?\[\d+\]$", r["client"]):
            problems.append(f"curl's record: transport/server/client {r['transport']!r} "
                            f"{r['server']!r} {r['client']!r}")
        if r["path"] == "/slow" and r["duration_us"] < SLOW_MIN_US:
            problems.append(f"/slow duration_us {r['duration_us']}: {harness.brief_record(r)}")
    return problems


def check_raw_multiset(truth, records, sock: str) -> List[str]:
    """The raw clients' requests (this process is the peer) against the
    records naming this process, as multisets of their exact fields."""
    peer = f"{us.my_comm()}[{os.getpid()}]"
    want = collections.Counter((t.method, t.path, t.status, t.bytes_in, t.bytes_out, "unix", sock,
                                peer, os.getpid()) for t in truth if t.bytes_in is not None)
    got = collections.Counter((r["method"], r["path"], r["status"], r["bytes_in"], r["bytes_out"],
                               r["transport"], r["server"], r["client"], r.get("peer_pid"))
                              for r in records if r["client"] == peer)
    d = multiset_diff(want, got, "raw requests")
    return [d] if d else []


@pytest.mark.parametrize("setup", ["uvicorn-h11", "uvicorn-httptools"])
def test_uvicorn_uds(setup, short_tmp, obsd_factory):
    """uvicorn --uds, h11 and httptools: exact records in /api/requests and
    in `obsctl trace --json --unix`; lifecycle events carry the path and the
    peer."""
    server = us.UnixServer(setup, short_tmp)
    d = obsd_factory("--unix", server.sock, "--trusted-proxy", "unix", name="obsd-uds")
    ctl = None
    try:
        server.start()
        ctl = Obsctl(["trace", "--json", "--unix", server.sock], name="obsctl-uds")
        assert ctl.wait_stderr("attached"), f"obsctl did not attach:\n{ctl.stderr_text()}"
        truth = drive_asgi_unix(server.sock, short_tmp)
        recs = harness.wait_records(d.requests, server.pids, len(truth))
        ctx = f"[{setup} {server.sock} pids {sorted(server.pids())}]\n" + us.summarize_records(recs, 60)
        problems = check_unix_records(truth, recs, server.sock)
        assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30]) + "\n" + ctx
        foreign = [r for r in d.requests() if r["pid"] not in server.pids()]
        assert not foreign, "records of other processes:\n" + us.summarize_records(foreign, 10)

        ctl.wait_lines(len(truth), harness.RECORD_TIMEOUT)
        time.sleep(harness.SETTLE)
        assert ctl.interrupt() == 0
        lines = [json.loads(l) for _, l in ctl.stdout_lines]
        problems = check_unix_records(truth, [r for r in lines if r["pid"] in server.pids()],
                                      server.sock, by_id=False)
        assert not problems, "obsctl trace --json:\n" + "\n".join(problems[:30])
        assert len(lines) == len(truth), f"obsctl printed {len(lines)} records for {len(truth)} requests"

        events = d.get_json("/api/events?limit=100000")["events"]
        opened = [e for e in events if e["type"] == "ConnectionOpened" and e["pid"] in server.pids()]
        raw_conns = sum(1 for t in truth if t.kind == "raw") + 1   # + the pipelined one
        assert len(opened) >= raw_conns, f"{len(opened)} ConnectionOpened events, {raw_conns}+ connections"
        bad = [e for e in opened if e["transport"] != "unix" or e["server"] != server.sock or
               not re.match(r"^(curl|" + re.escape(us.my_comm()) + r")?\[\d+\]$", e["client"])]
        assert not bad, f"lifecycle events: {bad[:5]}"
        mine = [e for e in opened if e["client"] == f"{us.my_comm()}[{os.getpid()}]"]
        assert len(mine) == raw_conns, f"{len(mine)} connections from this process, {raw_conns} made"
    finally:
        if ctl is not None:
            ctl.kill()
        server.stop()


# == 3. hypercorn, daphne ===========================================================

@pytest.mark.parametrize("setup", ["hypercorn", "daphne"])
def test_other_servers_uds(setup, short_tmp, obsd_factory):
    """hypercorn -b unix:PATH and daphne -u PATH: records match what the
    clients got (raw requests exactly, with bytes; curl by multiset)."""
    server = us.UnixServer(setup, short_tmp)
    d = obsd_factory("--unix", server.sock, "--trusted-proxy", "unix", name="obsd-uds-smoke")
    try:
        server.start()
        truth = drive_asgi_unix(server.sock, short_tmp, pipelining=False)
        recs = harness.wait_records(d.requests, server.pids, len(truth))
        problems = check_unix_records(truth, recs, server.sock)
        assert not problems, (f"[{setup} {server.sock}] {len(problems)} problem(s):\n" +
                              "\n".join(problems[:30]) + "\n" + us.summarize_records(recs, 60))
    finally:
        server.stop()


# == 4. filters ======================================================================

def test_filters_unix_and_port(short_tmp, server_factory, obsd_factory):
    """Two UNIX servers (a, b) and a TCP one (t). obsd --unix <a>: a's
    records exact, nothing of b or t. obsd --port <t>: t's records exact,
    no UNIX server's."""
    a = us.UnixServer("uvicorn-h11", short_tmp / "a").start()
    b = us.UnixServer("uvicorn-h11", short_tmp / "b").start()
    try:
        t = server_factory("uvicorn-h11")
        du = obsd_factory("--unix", a.sock, name="obsd-filter-unix")
        dp = obsd_factory("--port", t.port, name="obsd-filter-port")
        truth_b = us.curl_unix(b.sock, [("GET", "/text", None), ("GET", f"/users/{uniq()}", None)] * 3)
        truth_t = harness.drive_small(t.port, t.dir)
        truth_a = us.curl_unix(a.sock, [("GET", "/text", None), ("GET", "/json", None),
                                        ("GET", f"/users/{uniq()}", None), ("GET", "/nope", None)] * 3)
        truth_a.append(us.uds_raw(a.sock, "GET", "/slow"))
        recs_a = harness.wait_records(du.requests, a.pids, len(truth_a))
        recs_t = harness.wait_records(dp.requests, t.pids, len(truth_t))
        all_u, all_p = du.requests(), dp.requests()
        assert harness.diff_truth(truth_a, recs_a) is None, harness.diff_truth(truth_a, recs_a)
        assert harness.diff_truth(truth_t, recs_t) is None, harness.diff_truth(truth_t, recs_t)
        other_u = [r for r in all_u if r["pid"] not in a.pids()]
        assert not other_u, (f"--unix {a.sock} reported other servers (b {sorted(b.pids())}, "
                             f"t {sorted(t.pids())}):\n" + us.summarize_records(other_u, 10))
        assert all(r["transport"] == "unix" and r["server"] == a.sock for r in recs_a)
        other_p = [r for r in all_p if r["pid"] not in t.pids() or r.get("transport") == "unix"]
        assert not other_p, (f"--port {t.port} reported other servers (a {sorted(a.pids())}, "
                             f"b {sorted(b.pids())}):\n" + us.summarize_records(other_p, 10))
        assert len(truth_b) == 6
    finally:
        a.stop()
        b.stop()


# == 5. spans ==========================================================================

def test_unix_span_attributes(short_tmp, obsd_factory):
    """/api/traces: a request over a UNIX socket is a span with
    network.transport=unix, server.address = network.local.address = the
    socket path, no server.port, client.address or client.port, and the
    peer process as obs.peer.pid / obs.peer.name."""
    server = us.UnixServer("uvicorn-h11", short_tmp)
    d = obsd_factory("--unix", server.sock, "--trusted-proxy", "unix", name="obsd-unix-spans")
    try:
        server.start()
        n = uniq()
        t = us.uds_raw(server.sock, "GET", f"/users/{n}")
        assert t.status == 200
        harness.wait_records(d.requests, server.pids, 1)
        spans = [s for s in d.get_json("/api/traces?limit=100000")["spans"]
                 if s["attributes"].get("request.id") == t.rid]
        assert len(spans) == 1, f"{len(spans)} spans with request.id {t.rid}"
        s = spans[0]
        a = s["attributes"]
        assert s["name"] == "GET /users/{id}" and s["kind"] == "SERVER", s
        want = {"network.transport": "unix", "server.address": server.sock,
                "network.local.address": server.sock, "obs.peer.pid": os.getpid(),
                "obs.peer.name": us.my_comm(), "url.path": f"/users/{n}",
                "http.response.status_code": 200, "http.request.method": "GET",
                "http.route": "/users/{id}"}
        assert {k: a.get(k) for k in want} == want, a
        for k in ("server.port", "client.address", "client.port", "net.host.port", "net.peer.ip"):
            assert k not in a, f"{k} present in a UNIX span: {a}"
        assert s["resource"]["process.pid"] == server.pid, s["resource"]
    finally:
        server.stop()


# == 6. the close() tracepoint, attached lazily =======================================

CLOSE_HOOK_TIMEOUT = 5.0   # the loader looks at every drain (<= 50 ms)
CLOSED_TIMEOUT = 5.0       # well below the 30 s idle sweep that finds unseen closes


def test_close_hook_attached_at_first_unix_connection(short_tmp, obsd_factory):
    """obsd --unix <sock> loads enter_close (sys_enter_close) but does not
    attach it while no UNIX connection is followed (close() of every process
    on the node would run it); after one request on a UNIX connection it is
    attached within a few seconds, and the server's close() of that same
    connection (Connection: close on its second request, the client keeping
    its end open) is a ConnectionClosed event "server_closed" at once, not
    after the idle sweep."""
    server = us.UnixServer("uvicorn-h11", short_tmp).start()   # no connection made yet
    d = obsd_factory("--unix", server.sock, "--trusted-proxy", "unix", name="obsd-lazy-close")
    c = None
    try:
        progs = bpf_progs_held(d.proc.pid)
        if "enter_close" not in progs and "no tracefs" in d.output():
            pytest.skip("no tracefs: syscall tracepoints are not loaded")
        assert "enter_close" in progs and "enter_write" in progs, f"programs held by obsd: {progs}"
        # the check sees syscall tracepoint links: enter_write is attached at start
        assert bpf_links_of(progs["enter_write"]), "enter_write has no link: cannot tell attachment"
        time.sleep(0.5)   # several drains
        assert not bpf_links_of(progs["enter_close"]), \
            f"enter_close attached before any UNIX connection: {bpf_links_of(progs['enter_close'])}"

        rids = [us.new_rid(), us.new_rid()]
        c = us._connect(server.sock, 10.0)
        c.sock.sendall(clients.build_request("GET", "/text", "localhost", b"",
                                             [("X-Request-ID", rids[0])]))
        assert c.read_response("GET")[0] == 200
        deadline = time.monotonic() + CLOSE_HOOK_TIMEOUT
        while not bpf_links_of(progs["enter_close"]):
            assert time.monotonic() < deadline, \
                (f"enter_close not attached {CLOSE_HOOK_TIMEOUT}s after a UNIX request\n"
                 f"--- obsd output ---\n{d.output()}")
            time.sleep(0.05)
        assert "close() tracepoint attached" in d.output(), d.output()

        c.sock.sendall(clients.build_request("GET", "/json", "localhost", b"",
                                             [("X-Request-ID", rids[1]), ("Connection", "close")]))
        assert c.read_response("GET")[0] == 200
        me = f"{us.my_comm()}[{os.getpid()}]"
        deadline = time.monotonic() + CLOSED_TIMEOUT
        while True:
            events = d.get_json("/api/events?limit=100000")["events"][::-1]
            ids = {e["conn_id"] for e in events if e["type"] == "ConnectionOpened" and e["client"] == me}
            life = [e for e in events if e.get("conn_id") in ids and e["type"] != "Error"]
            if any(e["type"] == "ConnectionClosed" for e in life) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        dump = "\n  ".join(json.dumps({k: e.get(k) for k in ("type", "conn_id", "path", "status",
                                                               "reason", "request_id")}) for e in life)
        assert len(ids) == 1, f"{len(ids)} connections from this process:\n  {dump}"
        assert [e["type"] for e in life] == ["ConnectionOpened"] + ["RequestStarted", "ResponseCompleted"] * 2 + \
            ["ConnectionClosed"], f"no prompt ConnectionClosed of the UNIX connection:\n  {dump}"
        assert life[-1].get("reason") == "server_closed", f"lifecycle:\n  {dump}"
        assert [e.get("request_id") for e in life if e["type"] == "ResponseCompleted"] == rids, dump
    finally:
        if c is not None:
            c.close()
        server.stop()
