"""Requests that do not complete.

  * a raw socket sends GET /slow and close()s before the answer (uvicorn
    notices the disconnect and never writes a response): obsd reports it
    with outcome "failed", status 0 and error "client_closed" -- not "ok",
    not dropped;
  * the same with an RST (SO_LINGER 0) instead of a FIN: "client_reset";
  * a client that sends half a request head and leaves: no record at all.
"""
import socket
import struct
import time
from dataclasses import dataclass
from typing import List

import pytest

import clients
import harness
from harness import HOST, Obsd, Server, stop_obsd_checked


@dataclass
class FailRun:
    setup: str
    server: Server
    probe: clients.Truth
    closed_client: str     # "ip:port" of the socket that close()d during /slow
    reset_client: str      # "ip:port" of the socket that reset during /slow
    partial_client: str    # "ip:port" of the socket that sent half a head
    records: List[dict]

    def ctx(self) -> str:
        return (f"[{self.setup} pids {sorted(self.server.pids())}; records:\n  " +
                "\n  ".join(harness.brief_record(r) for r in self.records) + "]")

    def by_client(self, client: str) -> List[dict]:
        return [r for r in self.records if r.get("client") == client]


def _abort_slow(port: int, reset: bool) -> str:
    s = socket.create_connection((HOST, port), timeout=10)
    local = "%s:%d" % s.getsockname()[:2]
    s.sendall(clients.build_request("GET", f"/slow?abort={harness.uniq()}", f"{HOST}:{port}"))
    # the server has read the request (its 50 ms sleep is running) ...
    harness.wait_server_read(port, s.getsockname()[1])
    time.sleep(0.005)
    if reset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return local


def _partial_head(port: int) -> str:
    s = socket.create_connection((HOST, port), timeout=10)
    local = "%s:%d" % s.getsockname()[:2]
    s.sendall(f"GET /users/{harness.uniq()} HTT".encode())
    harness.wait_server_read(port, s.getsockname()[1])
    time.sleep(0.1)
    s.close()
    return local


@pytest.fixture(scope="module")
def obsd():
    d = Obsd(name="obsd-failed")
    try:
        d.start()
        yield d
    finally:
        stop_obsd_checked(d)


@pytest.fixture(scope="module", params=["uvicorn-h11", "uvicorn-httptools"])
def failrun(request, obsd, tmp_path_factory):
    server = Server(request.param, tmp_path_factory.mktemp("failed-" + request.param))
    try:
        server.start()
        probe = harness.probe(server.port)
        partial = _partial_head(server.port)
        closed = _abort_slow(server.port, reset=False)
        reset = _abort_slow(server.port, reset=True)
        time.sleep(0.2)  # let the server finish its (discarded) /slow handlers
        records = harness.wait_records(obsd.requests, server.pids, 3)
        yield FailRun(request.param, server, probe, closed, reset, partial, records)
    finally:
        server.stop()


def _check_failed(run: FailRun, client: str, what: str, reason: str):
    recs = run.by_client(client)
    assert len(recs) == 1, f"{what}: expected 1 record with client {client}, got {len(recs)} {run.ctx()}"
    r = recs[0]
    assert (r.get("method"), r.get("path")) == ("GET", "/slow"), f"{what}: {harness.brief_record(r)}"
    assert r.get("outcome") == "failed", f"{what}: outcome {r.get('outcome')!r}: {harness.brief_record(r)}"
    assert r.get("error") == reason, \
        f"{what}: error {r.get('error')!r}, expected {reason!r} (docs/records.md): {harness.brief_record(r)}"
    assert r.get("status") == 0, f"{what}: server wrote no response, status must be 0: {harness.brief_record(r)}"
    print(f"{run.setup} {what}: error={r.get('error')!r} flags={r.get('flags')}")


def test_client_close_before_answer_is_failed(failrun):
    _check_failed(failrun, failrun.closed_client, "GET /slow, client close()d before the answer",
                  "client_closed")


def test_client_reset_before_answer_is_failed(failrun):
    _check_failed(failrun, failrun.reset_client, "GET /slow, client reset before the answer",
                  "client_reset")


def test_partial_head_produces_no_record(failrun):
    recs = failrun.by_client(failrun.partial_client)
    assert not recs, f"half a request head produced record(s) {failrun.ctx()}"


def test_nothing_else_reported(failrun):
    """Exactly: the probe (ok), the two aborted /slow requests; nothing else."""
    expected_clients = {failrun.probe.client, failrun.closed_client, failrun.reset_client}
    others = [r for r in failrun.records if r.get("client") not in expected_clients]
    assert not others, f"unexpected record(s) {failrun.ctx()}"
    probe = failrun.by_client(failrun.probe.client)
    assert len(probe) == 1 and harness.rec_key(probe[0]) == ("GET", "/text", 200) and \
        probe[0].get("outcome") == "ok", f"probe GET /text: {failrun.ctx()}"
