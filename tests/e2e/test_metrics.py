"""Prometheus metrics, health and readiness, routes with bounded cardinality.

Every count is checked against what the clients really received: ab (exact
"Complete requests" / "Non-2xx responses") and raw keep-alive clients that
read every response (metrics_support.KeepAlive). Each test runs its own
obsd filtered on its own server (--pid / --port), so traffic of other tests
or other processes on the machine never reaches these counters.

Why no wrk: wrk stops with requests in flight and does not count their
responses, so its totals are not exact. `ab -k` does not really keep
connections alive against uvicorn (uvicorn answers ab's HTTP/1.0 requests
without "Connection: keep-alive", ab then closes), so real keep-alive load
comes from the raw keep-alive clients, which pipeline batches and count
every response.
"""
import collections
import http.client
import json
import math
import random
import signal
import string
import threading
import time

import pytest

import clients
import harness
import metrics_support as ms
from harness import HOST, HarnessError, Obsd, stop_obsd_checked
from metrics_support import SERVICE

HTTP_SERIES = ("http_requests_total", "http_request_duration_seconds_bucket",
               "http_request_duration_seconds_sum", "http_request_duration_seconds_count",
               "http_connections_active", "http_requests_in_flight",
               "http_bytes_sent_total", "http_bytes_received_total")


def _ctx(d: Obsd, sc: "ms.Scrape" = None) -> str:
    out = f"[obsd {' '.join(d.filters)}]"
    if sc is not None:
        out += "\n--- http_requests_total ---\n" + sc.dump("http_requests_total")
    return out


def _no_secret(sc: "ms.Scrape", d: Obsd) -> None:
    bad = [l for l in sc.text.splitlines() if "secret" in l or "token" in l]
    assert not bad, f"{_ctx(d)} a query string reached /metrics:\n" + "\n".join(bad[:20])


def _words(n: int, seed: int):
    """n distinct letters-only paths such as /alpha/bravo-xyz: no segment
    looks like an id (no digits, < 16 characters), so each stays literal."""
    rnd = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        w = lambda a, b: "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(a, b)))  # noqa: E731
        p = f"/{w(3, 7)}/{w(3, 6)}-{w(2, 4)}"
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _items(n: int):
    base = harness.uniq() * 100_000
    return [f"/items/{base + i}" for i in range(n)]


# -- 1. promtool ------------------------------------------------------------------

def test_promtool_check_metrics(server_factory, obsd_factory):
    """`promtool check metrics` on a live scrape after real traffic (every
    client kind, 200/404/500, a route with {id}): exit 0, nothing printed.
    The scrape also accounts exactly the responses the clients received."""
    s = server_factory("uvicorn-httptools")
    d = obsd_factory("--pid", s.pid, name="obsd-metrics-promtool")
    truth = harness.drive_small(s.port, s.dir)
    ka = ms.keepalive_parallel(s.port, _items(200) + ["/text?token=secret"] * 10, 2)
    n = len(truth) + sum(ka.values()) + ms.ab_exact(f"{s.base}/boom", 10, 2, 500)
    sc = ms.wait_count(d, n, service=SERVICE)
    got = sc.sum("http_requests_total", service=SERVICE)
    assert got == n, f"{_ctx(d, sc)}\nsum(http_requests_total) = {got:g}, clients received {n}"

    rc, out = ms.promtool_check(sc.text)
    assert rc == 0 and out == "", (f"{_ctx(d)} promtool check metrics: exit {rc}\n{out}\n"
                                   f"--- scrape ---\n{sc.text[:6000]}")
    _no_secret(sc, d)


# -- 2. a real Prometheus ------------------------------------------------------------

def test_prometheus_scrape_exact(server_factory, obsd_factory, tmp_path):
    """A real Prometheus scrapes obsd every 1 s while ab -k and raw
    keep-alive clients drive uvicorn (httptools + uvloop). After the load
    and 2 more scrapes, PromQL on the raw counters is exact: total, per
    status code, 5xx == /boom count; histogram _count == total and
    histogram_quantile(0.5) is finite and inside the median's bucket."""
    s = server_factory("uvicorn-httptools")
    d = obsd_factory("--pid", s.pid, name="obsd-metrics-prom")
    prom = ms.Prometheus(tmp_path / "prom", d.port).start()
    try:
        N_TEXT, N_BOOM = 3000, 60
        ka_targets = ["/json"] * 800 + _items(400) + ["/text?token=secret"] * 400
        results, errors = {}, []

        def run(name, fn):
            try:
                results[name] = fn()
            except Exception as e:  # noqa: BLE001
                errors.append(f"{name}: {e!r}")

        load = [threading.Thread(target=run, args=("ab-text", lambda: ms.ab_exact(f"{s.base}/text", N_TEXT, 16, 200))),
                threading.Thread(target=run, args=("ab-boom", lambda: ms.ab_exact(f"{s.base}/boom", N_BOOM, 4, 500))),
                threading.Thread(target=run, args=("keepalive", lambda: ms.keepalive_parallel(s.port, ka_targets, 4)))]
        for t in load:
            t.start()
        time.sleep(1.5)
        mid = prom.target_health()  # Prometheus is scraping while the load runs
        for t in load:
            t.join(240)
        assert not errors, "load failed (harness/server problem): " + "; ".join(errors)
        ka = results["keepalive"]
        want_status = collections.Counter({"200": N_TEXT + ka[200], "500": N_BOOM, "404": ka[404]})
        assert sum(ka.values()) == len(ka_targets) and set(ka) <= {200, 404}, f"keep-alive statuses {ka}"
        total = sum(want_status.values())

        sc = ms.wait_count(d, total, service=SERVICE)
        assert sc.sum("http_requests_total", service=SERVICE) == total, \
            f"{_ctx(d, sc)}\nobsd's own /metrics: total != {total} sent"
        t_done = time.time()
        prom.wait_scrapes_after(t_done, 2)

        sel = f'service="{SERVICE}"'
        res = {
            "total": prom.query(f"sum(http_requests_total{{{sel}}})"),
            "by_status": prom.query(f"sum by (status_code) (http_requests_total{{{sel}}})"),
            "5xx": prom.query(f'sum(http_requests_total{{{sel},status_code=~"5.."}})'),
            "count": prom.query(f"sum(http_request_duration_seconds_count{{{sel}}})"),
            "buckets": prom.query(f"sum by (le) (http_request_duration_seconds_bucket{{{sel}}})"),
            "p50": prom.query(f"histogram_quantile(0.5, sum by (le) (http_request_duration_seconds_bucket{{{sel}}}))"),
            "routes": prom.query(f"count by (route) (http_requests_total{{{sel}}})"),
            "up": prom.query('up{job="obsd"}'),
        }
        ctx = (f"{_ctx(d)} sent: total {total}, by status {dict(want_status)}; mid-load target {mid}\n"
               f"PromQL results: {json.dumps(res, indent=1, default=str)}")

        assert [v for _, v in res["up"]] == [1.0], ctx
        assert [v for _, v in res["total"]] == [float(total)], ctx
        by_status = {m.get("status_code"): v for m, v in res["by_status"]}
        assert by_status == {k: float(v) for k, v in want_status.items()}, ctx
        assert [v for _, v in res["5xx"]] == [float(N_BOOM)], ctx
        assert [v for _, v in res["count"]] == [float(total)], ctx
        assert {m.get("route") for m, _ in res["routes"]} == {"/text", "/json", "/boom", "/items/{id}"}, ctx

        # the histogram: cumulative buckets, +Inf == count, and the median's bucket
        buckets = sorted(((float(m["le"]), v) for m, v in res["buckets"]), key=lambda x: x[0])
        assert buckets and buckets[-1][0] == math.inf and buckets[-1][1] == total, ctx
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"buckets not cumulative\n{ctx}"
        assert len(res["p50"]) == 1, ctx
        p50 = res["p50"][0][1]
        finite_les = [le for le, _ in buckets if le != math.inf]
        assert math.isfinite(p50) and 0.0 <= p50 <= finite_les[-1], f"p50 = {p50}\n{ctx}"
        rank = 0.5 * total
        upper_i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
        lower = buckets[upper_i - 1][0] if upper_i > 0 else 0.0
        upper = buckets[upper_i][0]
        assert lower <= p50 <= upper, f"p50 {p50} outside the median's bucket ({lower}, {upper}]\n{ctx}"
        _no_secret(sc, d)
    finally:
        proc = prom.proc
        prom.stop()
    assert proc.poll() is not None, f"prometheus (pid {proc.pid}) still running after the test"


# -- 3. gunicorn with 3 workers: one service; --worker-label splits by worker ---------

class GunicornRun:
    pass


@pytest.fixture(scope="module")
def gunicorn_run(tmp_path_factory):
    """gunicorn -k uvicorn.workers.UvicornWorker -w 3 app:app observed by two
    obsd at once: A without and B with --worker-label (same traffic).
    Phase 1: ab -k /text (concurrency 24) and ab -k /boom. Phase 2: raw
    keep-alive connections, opened (and held) until each of the 3 workers
    owns at least one -- the owner read from /proc -- then 40 requests on
    each: exact per-worker truth."""
    r = GunicornRun()
    r.g = ms.Gunicorn(tmp_path_factory.mktemp("gunicorn-w3"), 3)
    r.a = r.b = None
    try:
        r.g.start()
        r.a = Obsd(["--pid", r.g.pid], name="obsd-metrics-gunicorn")
        r.b = Obsd(["--pid", r.g.pid, "--worker-label"], name="obsd-metrics-gunicorn-worker")
        r.a.start()
        r.b.start()
        r.workers = r.g.worker_pids()
        assert len(r.workers) == 3, f"gunicorn children {r.workers}"

        r.n_text = ms.ab_exact(f"{r.g.base}/text", 2400, 24, 200)
        r.n_boom = ms.ab_exact(f"{r.g.base}/boom", 30, 3, 500)
        n1 = r.n_text + r.n_boom
        r.a1 = ms.wait_count(r.a, n1, service=SERVICE)
        r.b1 = ms.wait_count(r.b, n1, service=SERVICE, settle=0.2)

        conns, owner = [], {}
        try:
            while set(owner.values()) != r.workers and len(conns) < 150:
                k = ms.KeepAlive(r.g.port)
                conns.append(k)
                k.run(["/text"])          # answered => accepted by some worker
                owner[k] = ms.conn_owner(r.g.port, k.local_port, r.workers)
            if set(owner.values()) != r.workers:
                raise HarnessError(f"{len(conns)} held connections reached only workers "
                                   f"{sorted(set(owner.values()))} of {sorted(r.workers)}")
            for i, k in enumerate(conns):
                k.run(["/json"] * 20 + _items(10) + ["/text?token=secret"] * 10)
        finally:
            for k in conns:
                k.close()
        r.per_worker = collections.Counter()
        r.status2 = collections.Counter()
        for k in conns:
            r.per_worker[owner[k]] += sum(k.statuses.values())
            r.status2 += k.statuses
        r.n2 = sum(r.per_worker.values())
        r.total = n1 + r.n2
        r.want_status = {"200": r.n_text + r.status2[200], "500": r.n_boom, "404": r.status2[404]}
        r.a2 = ms.wait_count(r.a, r.total, service=SERVICE)
        r.b2 = ms.wait_count(r.b, r.total, service=SERVICE, settle=0.2)
        r.health_a = r.a.get_json("/health")
        r.health_b = r.b.get_json("/health")
        r.ctx = (f"[gunicorn master {r.g.pid}, workers {sorted(r.workers)}; sent {r.total} = ab /text "
                 f"{r.n_text} + ab /boom {r.n_boom} + keep-alive {r.n2} ({len(conns)} connections, per "
                 f"worker {dict(r.per_worker)})]")
        yield r
    finally:
        errs = []
        for d in (r.a, r.b):
            if d is None:
                continue
            try:
                stop_obsd_checked(d)
            except AssertionError as e:
                errs.append(str(e))
        r.g.stop()
        assert not errs, "\n".join(errs)


def test_gunicorn_one_service_exact(gunicorn_run):
    """Without --worker-label: every http_* series of the 3 workers is one
    service "app:app" with no worker label; sum == total sent; per status
    exact."""
    r = gunicorn_run
    sc = r.a2
    ctx = f"{r.ctx}\n{_ctx(r.a, sc)}"
    http = [smp for smp in sc.samples if smp.name in HTTP_SERIES]
    assert {smp.l.get("service") for smp in http} == {SERVICE}, ctx
    assert not [smp for smp in http if "worker" in smp.l], ctx
    assert sc.sum("http_requests_total", service=SERVICE) == r.total, ctx
    assert sc.by("http_requests_total", "status_code") == {k: float(v) for k, v in r.want_status.items()}, ctx
    assert sc.sum("http_request_duration_seconds_count", service=SERVICE) == r.total, ctx
    _no_secret(sc, r.a)


def test_gunicorn_worker_label(gunicorn_run):
    """With --worker-label (a second obsd on the same traffic): every http_*
    series carries worker="<pid>"; the values are exactly the 3 worker pids
    (children of the gunicorn master, never the master); the sum over
    workers == total sent; the keep-alive phase's per-worker increase equals
    what each worker served (owner of each connection read from /proc);
    promtool accepts the exposition."""
    r = gunicorn_run
    sc = r.b2
    ctx = f"{r.ctx}\n{_ctx(r.b, sc)}"
    http = [smp for smp in sc.samples if smp.name in HTTP_SERIES]
    no_worker = [str(smp) for smp in http if "worker" not in smp.l]
    assert not no_worker, f"{ctx}\nhttp_* series without worker label:\n" + "\n".join(no_worker[:20])
    assert {smp.l.get("service") for smp in http} == {SERVICE}, ctx
    labels = sc.values("http_requests_total", "worker", service=SERVICE)
    assert labels == {str(p) for p in r.workers}, \
        f"{ctx}\nworker label values {sorted(labels)} != worker pids (children of {r.g.pid}) {sorted(r.workers)}"
    assert str(r.g.pid) not in labels, ctx
    assert sc.sum("http_requests_total", service=SERVICE) == r.total, ctx
    assert sc.by("http_requests_total", "status_code") == {k: float(v) for k, v in r.want_status.items()}, ctx

    before = r.b1.by("http_requests_total", "worker", service=SERVICE)
    after = sc.by("http_requests_total", "worker", service=SERVICE)
    delta = {w: after.get(w, 0) - before.get(w, 0) for w in after}
    want = {str(p): float(n) for p, n in r.per_worker.items()}
    assert delta == want, f"{ctx}\nkeep-alive phase per worker: obsd {delta}, truth {want}"

    rc, out = ms.promtool_check(sc.text)
    assert rc == 0 and out == "", f"{ctx}\npromtool check metrics (--worker-label): exit {rc}\n{out}"
    _no_secret(sc, r.b)


def test_gunicorn_health(gunicorn_run):
    """/health of both obsd after the traffic: observed_processes == 3 (the
    workers that served), one servers entry for "app:app" whose worker_ids
    are exactly the 3 worker pids; no connection left active."""
    r = gunicorn_run
    for d, h in ((r.a, r.health_a), (r.b, r.health_b)):
        ctx = f"{r.ctx} {_ctx(d)}\n/health: {json.dumps(h)}"
        assert h.get("status") == "ok", ctx
        assert h.get("observed_processes") == len(r.workers), ctx
        ours = [e for e in h.get("servers", []) if e.get("service") == SERVICE]
        assert len(ours) == 1, ctx
        assert sorted(ours[0].get("worker_ids", [])) == sorted(r.workers), ctx
        assert h.get("events_lost") == 0, ctx


# -- 4. routes ----------------------------------------------------------------------

def test_routes_ids_collapse(server_factory, obsd_factory):
    """10,000 distinct /items/<n> (404 from the app), some with
    ?token=secret, on 4 keep-alive connections: exactly one route label,
    "/items/{id}", with count 10,000; nothing collapsed; no query string in
    any label."""
    s = server_factory("uvicorn-httptools")
    d = obsd_factory("--pid", s.pid, name="obsd-metrics-items")
    paths = _items(10_000)
    targets = [p + ("?token=secret" if i % 10 == 0 else "") for i, p in enumerate(paths)]
    t0 = time.monotonic()
    got = ms.keepalive_parallel(s.port, targets, 4)
    assert got == {404: 10_000}, f"clients received {got} (harness/server problem)"
    sc = ms.wait_count(d, 10_000, service=SERVICE, timeout=30)
    ctx = f"{_ctx(d, sc)}\n(sent in {time.monotonic() - t0:.1f}s)"
    assert sc.values("http_requests_total", "route", service=SERVICE) == {"/items/{id}"}, ctx
    assert sc.select("http_requests_total", service=SERVICE)[0].l == \
        {"service": SERVICE, "method": "GET", "route": "/items/{id}", "status_code": "404"}, ctx
    assert sc.sum("http_requests_total", service=SERVICE, route="/items/{id}") == 10_000, ctx
    assert sc.sum("http_request_duration_seconds_count", service=SERVICE, route="/items/{id}") == 10_000, ctx
    assert sc.sum("obs_routes_collapsed_total", service=SERVICE) == 0, ctx
    _no_secret(sc, d)


def test_route_cap_overflow(server_factory, obsd_factory):
    """--route-cap 50 on a fresh obsd: a probe GET /text (route 1), then
    1,000 distinct letters-only paths on one keep-alive connection (in
    order): exactly 50 distinct non-overflow routes -- /text and the first
    49 paths --, the 951 others as route="__overflow__", and
    obs_routes_collapsed_total == 951. Routes that already exist keep being
    counted under their own name after the cap is hit. Total exact; no query
    string in any label."""
    CAP = 50
    s = server_factory("uvicorn-httptools")
    d = obsd_factory("--pid", s.pid, "--route-cap", CAP, name="obsd-metrics-cap")
    probe = harness.probe(s.port)
    assert probe.status == 200
    words = _words(1000, seed=harness.uniq())
    k = ms.KeepAlive(s.port)
    try:
        k.run([w + ("?token=secret" if i % 7 == 0 else "") for i, w in enumerate(words)])
        # after the cap: existing routes are still themselves
        k.run(["/text"] * 5 + [words[0]] * 3 + [words[48] + "?token=secret"] * 2)
    finally:
        k.close()
    assert k.statuses == {200: 5, 404: 1005}, f"clients received {k.statuses} (harness/server problem)"
    total = 1 + 1000 + 10
    sc = ms.wait_count(d, total, service=SERVICE)
    ctx = _ctx(d, sc)
    assert sc.sum("http_requests_total", service=SERVICE) == total, ctx

    routes = sc.by("http_requests_total", "route", service=SERVICE)
    named = {r: v for r, v in routes.items() if r != "__overflow__"}
    collapsed = len(words) - (CAP - 1)
    assert len(named) == CAP, f"{ctx}\n{len(named)} non-overflow routes, cap {CAP}"
    want_named = {"/text": 6.0, **{w: 1.0 for w in words[:CAP - 1]}}
    want_named[words[0]] += 3
    want_named[words[48]] += 2
    assert named == want_named, (f"{ctx}\nroutes differing from the first {CAP - 1} paths sent + /text: "
                                 f"got-only {sorted(set(named.items()) - set(want_named.items()))[:10]} "
                                 f"want-only {sorted(set(want_named.items()) - set(named.items()))[:10]}")
    assert routes.get("__overflow__") == collapsed, ctx
    assert sc.sum("http_request_duration_seconds_count", service=SERVICE, route="__overflow__") == collapsed, ctx
    got = sc.select("obs_routes_collapsed_total", service=SERVICE)
    assert [smp.value for smp in got] == [float(collapsed)], f"{ctx}\nobs_routes_collapsed_total: {got}"
    _no_secret(sc, d)


# -- 5. /ready and /health ------------------------------------------------------------

def test_ready_then_health(server_factory):
    """/ready polled as fast as possible from the first moment obsd's port
    accepts: the first answers are 503 (probes still being attached), then
    200, and never 503 again. /health: 200, Cache-Control: no-cache, JSON
    with status "ok", uptime_seconds, observed_processes, active_connections,
    events_lost; after traffic to uvicorn: observed_processes == 1, a
    servers entry "app:app" with worker_ids == [uvicorn's pid]; with 3 held
    keep-alive connections active_connections == 3 (and
    http_connections_active == 3; http_bytes_received/sent_total == the
    bytes the clients wrote/read), back to 0 once they are closed."""
    harness.require_binary(harness.OBSD)
    s = server_factory("uvicorn-httptools")
    d = Obsd(["--pid", s.pid], name="obsd-metrics-ready")
    d.proc = harness.spawn([harness.OBSD, "--listen", f"{HOST}:{d.port}"] + d.filters, d.name)
    d.stderr_path = d.proc.log_path
    t_start = time.monotonic()
    try:
        seen = []  # (seconds since spawn, status)
        deadline = t_start + harness.READY_TIMEOUT
        while True:
            assert d.proc.poll() is None, f"obsd exited {d.proc.returncode}\n{d.output()}"
            try:
                c = http.client.HTTPConnection(HOST, d.port, timeout=2)
                c.request("GET", "/ready")
                st = c.getresponse().status
                c.close()
                seen.append((round(time.monotonic() - t_start, 3), st))
                if st == 200 and sum(1 for _, x in seen if x == 200) >= 20:
                    break
            except ConnectionRefusedError:
                pass
            assert time.monotonic() < deadline, f"/ready never 200 within 20 s: {seen[-10:]}\n{d.output()}"
        d.ready = True
        statuses = [x for _, x in seen]
        first200 = statuses.index(200)
        summary = f"/ready answers (s since spawn, status): first {seen[:5]} ... around 200: " \
                  f"{seen[max(0, first200 - 2):first200 + 2]} ({len(seen)} answers)"
        assert statuses[0] == 503, f"the first /ready answer is not 503: {summary}\n{d.output()}"
        assert set(statuses[:first200]) == {503} and set(statuses[first200:]) == {200}, summary

        c = http.client.HTTPConnection(HOST, d.port, timeout=5)
        c.request("GET", "/health")
        resp = c.getresponse()
        body = resp.read()
        c.close()
        assert resp.status == 200, f"/health -> {resp.status} {body[:300]!r}"
        assert resp.getheader("Cache-Control") == "no-cache", resp.getheaders()
        assert (resp.getheader("Content-Type") or "").startswith("application/json"), resp.getheaders()
        h = json.loads(body)
        assert h.get("status") == "ok", h
        assert isinstance(h.get("uptime_seconds"), (int, float)) and h["uptime_seconds"] >= 0, h
        for k in ("observed_processes", "active_connections", "events_lost"):
            assert isinstance(h.get(k), int) and not isinstance(h.get(k), bool) and h[k] >= 0, f"{k}: {h}"
        assert h["uptime_seconds"] <= time.monotonic() - t_start + 0.5, h

        conns = [ms.KeepAlive(s.port) for _ in range(3)]
        try:
            for k in conns:
                k.run(["/text", "/json?token=secret"])
            # every response was read: the 3 connections are open, idle
            n = 6
            sc = ms.wait_count(d, n, service=SERVICE)
            h = d.get_json("/health")
            ctx = f"{_ctx(d)} uvicorn pid {s.pid}\n/health: {json.dumps(h)}\n{sc.dump('http_')}"
            assert sc.sum("http_requests_total", service=SERVICE) == n, ctx
            assert h.get("observed_processes") == 1, ctx
            ours = [e for e in h.get("servers", []) if e.get("service") == SERVICE]
            assert len(ours) == 1 and ours[0].get("worker_ids") == [s.pid], ctx
            assert isinstance(ours[0].get("uptime_seconds"), (int, float)) and ours[0]["uptime_seconds"] > 0, ctx
            assert h.get("active_connections") == 3 and ours[0].get("active_connections") == 3, ctx
            assert sc.sum("http_connections_active", service=SERVICE) == 3, ctx
            assert sc.sum("http_requests_in_flight", service=SERVICE) == 0, ctx
            # exact bytes both ways (the raw clients count every byte)
            assert sc.sum("http_bytes_received_total", service=SERVICE) == sum(k.bytes_sent for k in conns), ctx
            assert sc.sum("http_bytes_sent_total", service=SERVICE) == sum(k.bytes_received for k in conns), ctx
            assert h.get("events_lost") == 0, ctx
        finally:
            for k in conns:
                k.close()
        deadline = time.monotonic() + 5
        while True:
            h = d.get_json("/health")
            sc = ms.scrape(d)
            if h.get("active_connections") == 0 and sc.sum("http_connections_active", service=SERVICE) == 0:
                break
            assert time.monotonic() < deadline, \
                f"5 s after the clients closed: /health {json.dumps(h)}\n{sc.dump('http_connections')}"
            time.sleep(0.1)
        _no_secret(sc, d)
    finally:
        stop_obsd_checked(d)
        if d.proc is not None:
            harness.kill_group(d.proc, signal.SIGKILL, 0.1)


# -- 6. counters never go backwards --------------------------------------------------

def _histogram_problems(sc: "ms.Scrape") -> list:
    """Per histogram series: buckets cumulative in le, +Inf == _count."""
    probs = []
    groups = collections.defaultdict(list)
    for smp in sc.select("http_request_duration_seconds_bucket"):
        key = tuple((k, v) for k, v in smp.labels if k != "le")
        groups[key].append((float(smp.l["le"]), smp.value))
    counts = {smp.labels: smp.value for smp in sc.select("http_request_duration_seconds_count")}
    for key, bs in groups.items():
        bs.sort()
        if any(a[1] > b[1] for a, b in zip(bs, bs[1:])):
            probs.append(f"{dict(key)}: buckets not cumulative {bs}")
        if not bs or bs[-1][0] != math.inf or bs[-1][1] != counts.get(key):
            probs.append(f"{dict(key)}: +Inf bucket {bs[-1] if bs else None} != _count {counts.get(key)}")
    return probs


def _regressions(prev: "ms.Scrape", cur: "ms.Scrape") -> list:
    now = {smp.key(): smp.value for smp in cur.samples}
    out = []
    for smp in prev.counter_samples():
        v = now.get(smp.key())
        if v is None:
            out.append(f"{smp} vanished")
        elif v < smp.value:
            out.append(f"{smp} went back to {v:g}")
    return out


def test_counters_never_decrease(server_factory, obsd_factory, tmp_path_factory):
    """Scrape /metrics continuously while traffic runs -- new routes past
    --route-cap 20, /boom, 404s -- and across a restart of the server on the
    same port (new pid, same service "app:app"): every counter sample
    (…_total, histogram _bucket/_count/_sum) of each scrape is present in
    the next with a value >= the previous; histograms stay consistent
    (cumulative buckets, +Inf == _count) in every scrape; the final total is
    exact."""
    s1 = server_factory("uvicorn-httptools")
    d = obsd_factory("--port", s1.port, "--route-cap", 20, name="obsd-metrics-monotonic")
    scrapes, stop, errors = [], threading.Event(), []

    def scraper():
        while not stop.is_set():
            try:
                scrapes.append(ms.scrape(d))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            time.sleep(0.05)

    th = threading.Thread(target=scraper, daemon=True)
    th.start()
    try:
        words = _words(60, seed=harness.uniq())
        n = 0
        t = harness.drive_small(s1.port, s1.dir)
        n += len(t)
        got = ms.keepalive_parallel(s1.port, words[:30] + _items(300) + ["/text"] * 300, 3)
        n += sum(got.values()) + ms.ab_exact(f"{s1.base}/boom", 20, 2, 500)
        first = ms.wait_count(d, n, service=SERVICE)
        assert first.sum("http_requests_total", service=SERVICE) == n, _ctx(d, first)

        s1.stop()
        s2 = harness.Server("uvicorn-httptools", tmp_path_factory.mktemp("restart"))
        s2.port = s1.port
        try:
            s2.start()
            n += len(clients.ab(f"{s2.base}/text", 500, 8))
            got = ms.keepalive_parallel(s2.port, words[30:] + _items(300) + ["/json"] * 300, 3)
            n += sum(got.values()) + ms.ab_exact(f"{s2.base}/boom", 20, 2, 500)
            last = ms.wait_count(d, n, service=SERVICE)
        finally:
            s2.stop()
    finally:
        stop.set()
        th.join(5)
    assert not errors, f"scrapes failed: {errors[:5]}"
    final = ms.scrape(d)      # after the scraper thread stopped: the newest
    scrapes.append(final)
    assert final.sum("http_requests_total", service=SERVICE) == n, \
        f"{_ctx(d)} total changed after traffic ended\n{final.dump('http_requests_total')}"
    ctx = f"{_ctx(d)} {len(scrapes)} scrapes, servers pid {s1.pid} then {s2.pid} on port {s1.port}"
    assert last.sum("http_requests_total", service=SERVICE) == n, f"{ctx}\ntotal != {n}\n{last.dump('http_requests_total')}"
    assert last.sum("obs_routes_collapsed_total", service=SERVICE) > 0, f"{ctx} the route cap was never hit"

    problems = []
    for i, (a, b) in enumerate(zip(scrapes, scrapes[1:])):
        for p in _regressions(a, b):
            problems.append(f"scrape {i} -> {i + 1}: {p}")
    for i, sc in enumerate(scrapes):
        for p in _histogram_problems(sc):
            problems.append(f"scrape {i}: {p}")
    # and end-to-end: the scrape before the restart vs the last one
    problems += [f"before restart -> final: {p}" for p in _regressions(first, final)]
    assert not problems, f"{ctx}\n{len(problems)} problem(s):\n" + "\n".join(problems[:40])
    assert len(first.counter_samples()) > 50, f"{ctx} too few counter samples to be meaningful"
