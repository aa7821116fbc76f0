"""Self-tests of the truth side (no obsd involved): the clients count bytes
exactly, and every server setup answers the workload as the app says.
If these fail, the other failures are the harness's, not obs's."""
import socket
import threading

import pytest

import clients
import harness


class CannedServer:
    """Accepts one connection, reads the request(s), writes canned bytes."""

    def __init__(self, responses, expect_requests=1):
        self.responses = responses
        self.expect = expect_requests
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        c, _ = self.sock.accept()
        with c:
            while self.received.count(b"\r\n\r\n") < self.expect:
                d = c.recv(65536)
                if not d:
                    break
                self.received += d
            for r in self.responses:
                c.sendall(r)
        self.sock.close()


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n")
CL = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
CONT = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_raw_client_counts_chunked_and_interim_bytes():
    srv = CannedServer([CONT, CHUNKED])
    t = clients.raw_request("127.0.0.1", srv.port, "GET", "/stream?q=1")
    srv.t.join(5)
    assert (t.status, t.path, t.body) == (200, "/stream", b"hello0123456789abcdef")
    assert t.bytes_out == len(CONT) + len(CHUNKED)
    assert t.bytes_in == len(srv.received)


def test_pipeline_splits_bytes_per_response():
    srv = CannedServer([CL + CHUNKED + CL], expect_requests=3)
    ts = clients.pipeline("127.0.0.1", srv.port, [("GET", "/a"), ("GET", "/b?x"), ("GET", "/c")])
    srv.t.join(5)
    assert [(t.path, t.status, t.bytes_out) for t in ts] == [
        ("/a", 404, len(CL)), ("/b", 200, len(CHUNKED)), ("/c", 404, len(CL))]
    assert sum(t.bytes_in for t in ts) == len(srv.received)


def test_pipeline_unanswered_after_server_close():
    srv = CannedServer([CL], expect_requests=3)
    ts = clients.pipeline("127.0.0.1", srv.port, [("GET", "/a"), ("GET", "/b"), ("GET", "/c")])
    assert [(t.path, t.status, t.kind) for t in ts] == [
        ("/a", 404, "pipeline"), ("/b", 0, "pipeline-unanswered"), ("/c", 0, "pipeline-unanswered")]


@pytest.mark.parametrize("setup", harness.SETUPS)
def test_workload_truth_is_consistent(setup, server_factory):
    """drive_full against the bare server: statuses/bodies as the app
    defines them (check_truth_sane), and the expected number of responses."""
    s = server_factory(setup)
    truth = harness.drive_full(s.port, s.dir)
    answered = [t for t in truth if t.status]
    # probe 1 + raw 12 + pipeline 10 + curl 2x10 + ab 200, minus hypercorn's unanswered pipelined ones
    unanswered = len(truth) - len(answered)
    assert len(truth) == 1 + 12 + 10 + 20 + 200
    assert unanswered == (9 if setup == "hypercorn" else 0)
