"""obsd's GET /api/stats, the live aggregates behind /metrics as JSON
(docs/api.md). After exact-count traffic (200s, 500s, an {id} route, a
50 ms route) and once the counts have settled: every http_requests_total
series of /metrics is in "requests" with the same value; every route's
Prometheus buckets equal http_request_duration_seconds_bucket, and its
count, errors, bytes and log-linear latency buckets add up; the latency
bounds are lhist's and put /slow at 50 ms or more; "services", "bytes" and
"loops" have their members; "obs" has exactly the obs_* families of
/metrics."""
import collections

import clients
import harness
import metrics_support as ms
from metrics_support import SERVICE

LH_SUB = 32              # lhist.h: linear sub-buckets per power of two
SLOW_US = 50_000         # /slow sleeps 50 ms
N_TEXT, N_BOOM, N_SLOW, N_USERS = 300, 20, 20, 5


def is_lhist_upper(le: int) -> bool:
    """Whether le is the upper bound of a bucket of lhist.h: the next bucket
    starts at le + 1, which has at most LH_SUB's bits of significance."""
    x = le + 1
    if x <= 2 * LH_SUB:
        return True
    shift = x.bit_length() - (LH_SUB.bit_length())
    return (x >> shift) << shift == x


def drive(s) -> int:
    """Requests the clients got an answer to."""
    n = ms.ab_exact(f"{s.base}/text", N_TEXT, 4, 200)
    n += ms.ab_exact(f"{s.base}/boom", N_BOOM, 2, 500)
    n += len(clients.ab(f"{s.base}/slow", N_SLOW, 2))
    n += len(clients.curl(s.base, [("GET", f"/users/{harness.uniq()}", None)] * N_USERS))
    return n


def stable_scrape(d, total):
    """A /metrics scrape with every request counted, then /api/stats, then a
    scrape equal to the first one on the http_* series (nothing moved between)."""
    sc = ms.wait_count(d, total, service=SERVICE)
    stats = d.get_json("/api/stats")
    again = ms.scrape(d)
    assert sc.dump() == again.dump(), "http_* series moved while /api/stats was read"
    return sc, stats


def prom_labels(entry: dict, names) -> dict:
    return {k: entry[k] for k in names if k in entry}


def check_requests(sc, stats):
    got = {tuple(sorted(prom_labels(e, ("service", "method", "route", "status_code")).items())):
           e["count"] for e in stats["requests"]}
    want = {s.labels: s.value for s in sc.select("http_requests_total")}
    assert got == want, f"/api/stats requests {got}\n!= /metrics http_requests_total {want}"


def check_route(sc, stats, r):
    lab = prom_labels(r, ("service", "method", "route"))
    bounds = stats["duration_buckets_seconds"]
    buckets = r["duration_seconds"]["buckets"]
    assert len(buckets) == len(bounds) + 1 and sum(buckets) == r["count"], r
    assert r["count"] == ms_value(sc, "http_request_duration_seconds_count", lab), r
    cum = 0
    for le, n in zip(bounds, buckets):
        cum += n
        assert cum == ms_value(sc, "http_request_duration_seconds_bucket", dict(lab, le=f"{le:g}")), \
            (le, r)
    lat = r["latency_us"]
    assert sum(n for _, n in lat) == r["count"], r
    assert [le for le, _ in lat] == sorted({le for le, _ in lat}), f"latency bounds not ascending {lat}"
    assert all(is_lhist_upper(le) for le, _ in lat), f"not lhist bounds: {lat}"
    statuses = sc.by("http_requests_total", "status_code", **lab)
    assert r["errors"] == sum(v for k, v in statuses.items() if int(k) >= 500), (r, statuses)


def ms_value(sc, name, labels) -> float:
    got = sc.select(name, **labels)
    assert len(got) == 1, f"{name}{labels}: {got}"
    return got[0].value


def test_api_stats_matches_metrics(server_factory, obsd_factory):
    s = server_factory("uvicorn-h11")
    d = obsd_factory("--port", s.port, name="obsd-stats")
    total = drive(s)
    sc, stats = stable_scrape(d, total)

    assert stats["obsd"]["attached"] is True and stats["obsd"]["observed_processes"] >= 1, stats["obsd"]
    assert stats["latency_scheme"] == {"kind": "log-linear", "unit": "us", "sub_buckets": LH_SUB,
                                       "max_us": 2 ** 32 - 1}, stats["latency_scheme"]
    check_requests(sc, stats)
    routes = {r["route"]: r for r in stats["routes"] if r["service"] == SERVICE}
    assert set(routes) == {"/text", "/boom", "/slow", "/users/{id}"}, list(routes)
    for r in stats["routes"]:
        check_route(sc, stats, r)
    assert routes["/boom"]["errors"] == N_BOOM and routes["/text"]["errors"] == 0, routes
    assert all(le >= SLOW_US for le, _ in routes["/slow"]["latency_us"]), routes["/slow"]

    sent = collections.Counter()
    for r in stats["routes"]:
        sent[r["service"]] += r["bytes_sent"]
    for b in stats["bytes"]:
        assert b["sent"] == ms_value(sc, "http_bytes_sent_total", {"service": b["service"]}), b
        assert b["sent"] == sent[b["service"]], (b, sent)
    svc = [x for x in stats["services"] if x["service"] == SERVICE]
    assert len(svc) == 1 and svc[0]["requests_in_flight"] == 0, stats["services"]
    assert all(len(w["buckets"]) == len(stats["loop_buckets_us"]) for w in stats["loops"]), stats["loops"]

    families = {n for n in sc.types if n.startswith("obs_")}
    assert set(stats["obs"]) == families, (sorted(stats["obs"]), sorted(families))
    ok = [x["value"] for x in stats["obs"]["obs_requests_total"] if x["outcome"] == "ok"]
    assert ok == [ms_value(sc, "obs_requests_total", {"outcome": "ok"})], stats["obs"]["obs_requests_total"]
