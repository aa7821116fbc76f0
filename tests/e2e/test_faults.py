"""Faults around obsd, measured against real servers.

  * the OTLP receiver down, slow (answers after 10 s) or failing (500):
    requests keep appearing in /api/requests promptly (consumption never
    waits for the exporter), every request is counted, the failure is
    counted in /metrics, memory stays bounded, obsd stops within 5 s;
  * an observed worker SIGKILLed while a request is in flight: that request
    is reported failed with error "process_exit" and the connection is
    freed (/health active_connections back to 0);
  * a ring-buffer overflow in a burst: the loss is counted
    (obs_events_lost_total{reason="ringbuf_full"}, /health events_lost) and
    the requests it hit are reported failed or flagged, never mis-reported;
  * obsd SIGKILLed and restarted while keep-alive connections stay open: the
    new obsd attaches (/ready 200) and, per docs/records.md, follows those
    connections from their next request: reported exactly once, nothing
    before it.
"""
import collections
import os
import signal
import socket
import time

import pytest

import clients
import faults_support as fs
import harness
import hostile_support as hs
import metrics_support
from harness import HOST, Obsd, Server, stop_obsd_checked

LATENCY_MAX = 1.0        # s: a finished request is in /api/requests within this
OTLP_RUN = 6.0           # s of traffic per exporter fault


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = fs.SleepServer("uvicorn-httptools", tmp_path_factory.mktemp("faults-srv"))
    try:
        yield s.start()
    finally:
        s.stop()


# -- 1. the exporter's collector down / slow / failing --------------------------------

@pytest.mark.parametrize("mode", ["down", "slow", "failing"])
def test_otlp_receiver_fault(server, mode, tmp_path):
    receiver = None
    if mode == "down":
        endpoint = f"http://{HOST}:{harness.free_port()}"     # nothing listens there
    else:
        receiver = fs.Receiver(tmp_path / "spans.jsonl", status=500 if mode == "failing" else None,
                               delay_ms=10000 if mode == "slow" else None).start()
        endpoint = receiver.endpoint
    d = fs.ObsdEnv(["--port", str(server.port)], env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
    }, name=f"obsd-otlp-{mode}")
    problems, note, stop_s = [], "", 0.0
    try:
        d.start()
        mem = hs.MemLog(d.proc.pid)
        mem.sample("attached")
        base = f"http://{HOST}:{server.port}"
        total0 = d.get_json("/health")["requests_total"]
        made, latencies = 0, []
        deadline = time.monotonic() + OTLP_RUN
        while time.monotonic() < deadline:
            lat, _r = fs.appear_latency(d, server.port, f"/users/{harness.uniq()}")
            latencies.append(lat)
            made += 1 + len(clients.ab(f"{base}/text", 1000, 4))
            mem.sample(f"after {made} requests")
        # every request counted, eventually (the last ab's within a drain or two)
        h = d.get_json("/health")
        for _ in range(20):
            if h["requests_total"] - total0 >= made:
                break
            time.sleep(0.1)
            h = d.get_json("/health")
        if h["requests_total"] - total0 != made:
            problems.append(f"{made} requests made, /health requests_total grew by "
                            f"{h['requests_total'] - total0}")
        worst = max(latencies)
        if worst > LATENCY_MAX:
            problems.append(f"a request took {worst:.2f} s to appear in /api/requests while the "
                            f"collector was {mode} (all: {[round(x, 3) for x in latencies]})")
        err = hs.health_ok(d)
        if err:
            problems.append(err)
        st, _ = d.get("/ready")
        if st != 200:
            problems.append(f"/ready -> {st} with the collector {mode}")
        m = hs.metrics(d)
        exp_err = {k: v for k, v in m.items() if k.startswith("obs_export_errors_total") and v}
        dropped = {k: v for k, v in m.items() if k.startswith("obs_spans_dropped_total") and v}
        exported = m.get("obs_spans_exported_total", 0)
        if mode == "down" and not hs.msum(m, "obs_export_errors_total", exporter="otlp", kind="connect"):
            problems.append(f"collector down: no connect error counted ({exp_err})")
        if mode == "failing" and not hs.msum(m, "obs_export_errors_total", exporter="otlp",
                                             kind="rejected"):
            problems.append(f"collector answering 500: no rejected export counted ({exp_err})")
        if mode != "slow" and exported:
            problems.append(f"collector {mode}: {exported:.0f} spans counted as exported")
        mem_err = mem.check()
        if mem_err:
            problems.append(mem_err)
        note = (f"[{mode}] {made} requests in {OTLP_RUN:.0f} s; appear latency max {worst * 1000:.0f} ms; "
                f"export errors {exp_err}; dropped {dropped}; exported {exported:.0f}; "
                f"receiver {receiver.stats() if receiver else '-'}; peak VmHWM {mem.peak_mb():.1f} MB")
        (harness.OUT / f"faults-otlp-{mode}.txt").write_text(note + "\n" + mem.table() + "\n")
    finally:
        t0 = time.monotonic()
        try:
            stop_obsd_checked(d)
        except AssertionError as e:
            problems.append(str(e))
        stop_s = time.monotonic() - t0
        if receiver:
            receiver.stop()
        with open(harness.OUT / f"faults-otlp-{mode}.txt", "a") as f:
            f.write(f"SIGTERM to exit: {stop_s:.1f} s\n")
    assert not problems, "\n".join(problems) + f"\n(stopped in {stop_s:.1f} s)\n{note}"


# -- 2. a worker killed mid-request ----------------------------------------------------

def test_worker_killed_mid_request(tmp_path_factory):
    srv = fs.SleepServer("gunicorn-uvicorn", tmp_path_factory.mktemp("faults-kill"))
    d = Obsd(["--port", str(srv.port)], name="obsd-kill")
    problems = []
    try:
        srv.start()
        d.start()
        harness.probe(srv.port)
        s = socket.create_connection((HOST, srv.port), timeout=10)
        local = "%s:%d" % s.getsockname()[:2]
        s.sendall(clients.build_request("GET", "/sleep?ms=5000", f"{HOST}:{srv.port}"))
        harness.wait_server_read(srv.port, s.getsockname()[1], timeout=5)
        worker = metrics_support.conn_owner(srv.port, s.getsockname()[1], srv.pids())
        time.sleep(0.2)   # the handler is asleep: the request is in flight
        os.kill(worker, signal.SIGKILL)

        deadline = time.monotonic() + 5
        rec = None
        while time.monotonic() < deadline and rec is None:
            rec = next((r for r in d.requests() if r.get("client") == local), None)
            time.sleep(0.1)
        if rec is None:
            problems.append(f"no record for the request in flight on the killed worker {worker} "
                            f"(client {local}) within 5 s")
        elif (rec.get("outcome"), rec.get("error"), rec.get("status")) != ("failed", "process_exit", 0):
            problems.append(f"request in flight on the killed worker: expected failed/process_exit/"
                            f"status 0 (docs/records.md), got {harness.brief_record(rec)}")
        try:
            s.settimeout(5)
            got = s.recv(100)
            client_saw = f"EOF after {len(got)} bytes"
        except OSError as e:
            client_saw = repr(e)
        s.close()
        h = hs.wait_idle(d, timeout=5)
        if h.get("active_connections") != 0:
            problems.append(f"/health active_connections={h.get('active_connections')} after the "
                            f"worker's death and the client's close")
        # gunicorn starts a new worker: it is followed too
        t = harness.probe(srv.port)
        time.sleep(1.0)
        mine = [r for r in d.requests() if r.get("client") == t.client]
        if [harness.rec_key(r) for r in mine] != [t.key()]:
            problems.append(f"request after the kill not reported exactly: truth {t.describe()}, "
                            f"records {[harness.brief_record(r) for r in mine]}")
        (harness.OUT / "faults-kill.txt").write_text(
            f"killed worker {worker}; client saw {client_saw}; record "
            f"{harness.brief_record(rec) if rec else None}; health after {h}\n")
        err = hs.health_ok(d)
        if err:
            problems.append(err)
    finally:
        stop_obsd_checked(d)
        srv.stop()
    assert not problems, "\n".join(problems)


# -- 3. ring-buffer overflow --------------------------------------------------------------

def _lost_ringbuf(m) -> float:
    return hs.msum(m, "obs_events_lost_total", reason="ringbuf_full")


def test_ringbuf_overflow(tmp_path_factory):
    srv = Server("uvicorn-httptools", tmp_path_factory.mktemp("faults-ring"))
    d = Obsd(["--port", str(srv.port), "--capture-bytes", "8192"], name="obsd-ring")
    problems, notes = [], []
    try:
        srv.start()
        d.start()
        harness.probe(srv.port)
        # a) the highest rate these clients reach: 16 connections pipelining
        #    1 MiB responses written in 64 KiB writes (an 8 KiB record each)
        t0 = time.monotonic()
        n = fs.burst_streams(srv.port, 16, 8)
        rate = n / (time.monotonic() - t0)
        m = hs.wait_metric(d, lambda m: False, timeout=1.2)
        notes.append(f"max rate: {n} x 1 MiB responses at {rate:.0f}/s, ring fill peak "
                     f"{m.get('obs_ringbuf_fill_peak_ratio', 0):.3f}, lost {_lost_ringbuf(m):.0f}")
        stalled = False
        if not _lost_ringbuf(m):
            # b) it did not overflow: stall the consumer (SIGSTOP) during a burst
            stalled = True
            os.kill(d.proc.pid, signal.SIGSTOP)
            try:
                n2 = fs.burst_streams(srv.port, 16, 16)
            finally:
                os.kill(d.proc.pid, signal.SIGCONT)
            notes.append(f"consumer stopped during {n2} x 1 MiB responses")
        m = hs.wait_metric(d, lambda m: _lost_ringbuf(m) > 0, timeout=3)
        h = d.get_json("/health")
        lost = _lost_ringbuf(m)
        notes.append(f"obs_events_lost_total{{ringbuf_full}} {lost:.0f}, /health events_lost "
                     f"{h.get('events_lost')}, connections with lost events "
                     f"{m.get('obs_connections_lost_events_total', 0):.0f}")
        if not lost:
            problems.append("no ring-buffer loss counted in /metrics although the consumer was "
                            "stopped during a burst" if stalled else "no loss counted")
        if not h.get("events_lost") or h.get("events_lost") < lost:
            problems.append(f"/health events_lost={h.get('events_lost')} does not count the "
                            f"{lost:.0f} ring-buffer drops")
        if lost and not m.get("obs_connections_lost_events_total"):
            problems.append("records were dropped but no connection noticed a sequence gap")
        # what was hit is reported failed "lost" or flagged, never mis-reported
        recs = harness.wait_records(d.requests, srv.pids, 0, timeout=0.5, settle=1.5)
        kinds = collections.Counter()
        for r in recs:
            flags = r.get("flags") or []
            kinds[(r.get("path"), r.get("status"), r.get("outcome"), r.get("error"),
                   tuple(flags))] += 1
            if r.get("method") and r.get("path") not in ("/stream", "/text"):
                problems.append(f"record names a request never sent: {harness.brief_record(r)}")
            elif r.get("status") not in (0, 200):
                problems.append(f"record with a status never written: {harness.brief_record(r)}")
            elif r.get("outcome") == "failed" and r.get("error") == "lost" and "lost" not in flags:
                problems.append(f"failed lost record not flagged lost: {harness.brief_record(r)}")
        notes.append("records: " + "; ".join(f"{n} x {k}" for k, n in kinds.most_common(8)))
        deadline = time.monotonic() + 10
        st = 0
        while time.monotonic() < deadline and st != 200:
            st, _ = d.get("/ready")
            time.sleep(0.2)
        if st != 200:
            problems.append(f"/ready -> {st} after the overflow")
        err = hs.health_ok(d)
        if err:
            problems.append(err)
        (harness.OUT / "faults-ringbuf.txt").write_text("\n".join(notes) + "\n")
    finally:
        if d.proc is not None and d.proc.poll() is None:
            os.kill(d.proc.pid, signal.SIGCONT)
        stop_obsd_checked(d)
        srv.stop()
    assert not problems, "\n".join(problems) + "\n" + "\n".join(notes)


# -- 4. obsd killed and restarted under open keep-alive connections -------------------

def test_restart_with_open_connections(tmp_path_factory):
    srv = fs.KeepAliveServer("uvicorn-h11", tmp_path_factory.mktemp("faults-restart"))
    a = b = None
    conns = []
    problems, notes = [], []
    try:
        srv.start()
        a = Obsd(["--port", str(srv.port)], name="obsd-before").start()
        conns = fs.keepalive_open(srv.port, 5)
        before = [fs.keepalive_request(c, srv.port, f"/users/{harness.uniq()}") for c in conns]
        harness.wait_records(a.requests, srv.pids, len(before), settle=0.2)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(5)
        a.stop()
        t0 = time.monotonic()
        b = Obsd(["--port", str(srv.port)], name="obsd-after").start()   # /ready 200 or raises
        notes.append(f"restarted obsd ready in {time.monotonic() - t0:.1f} s")
        after = [fs.keepalive_request(c, srv.port, f"/users/{harness.uniq()}") for c in conns]
        fresh = clients.raw_request(HOST, srv.port, "GET", f"/users/{harness.uniq()}")
        recs = harness.wait_records(b.requests, srv.pids, len(after) + 1)
        truth = after + [fresh]
        diff = harness.diff_truth(truth, recs)
        if diff:
            problems.append("after the restart, requests on connections opened before it and on a "
                            "new one are not reported exactly once (docs/records.md: followed from "
                            "their next request):\n" + diff)
        problems += harness.check_raw_bytes(truth, recs)
        old = {t.path for t in before}
        if any(r.get("path") in old for r in recs):
            problems.append("the restarted obsd reported requests made before it started")
        notes.append("records after restart: " + "; ".join(harness.brief_record(r) for r in recs))
        for c in conns:
            c.close()
        h = hs.wait_idle(b, timeout=5)
        if h.get("active_connections") != 0:
            problems.append(f"/health active_connections={h.get('active_connections')} after the "
                            f"adopted connections closed")
        (harness.OUT / "faults-restart.txt").write_text("\n".join(notes) + "\n")
    finally:
        for c in conns:
            c.close()
        if a is not None:
            a.stop()
        if b is not None:
            stop_obsd_checked(b)
        srv.stop()
    assert not problems, "\n".join(problems) + "\n" + "\n".join(notes)
