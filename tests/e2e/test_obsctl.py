"""obsctl trace --json --port <port>, standalone (it loads the probes itself):
one JSON record per line on stdout, exactly the requests the clients got."""
import json
import time
from dataclasses import dataclass, field
from typing import List, Optional

import pytest

import clients
import harness
from harness import Obsctl, Server


@dataclass
class CtlRun:
    server: Server
    ctl: Obsctl
    truth: List
    lines: List[str] = field(default_factory=list)
    lines_before_sigint: int = 0
    rc: Optional[int] = None

    def ctx(self) -> str:
        return (f"[obsctl {' '.join(map(str, self.ctl.args[1:]))}; uvicorn-h11 pids {sorted(self.server.pids())}]"
                f"\n--- obsctl stderr ---\n{self.ctl.stderr_text()}")


@pytest.fixture(scope="module")
def ctlrun(tmp_path_factory):
    harness.require_binary(harness.OBSCTL)
    server = Server("uvicorn-h11", tmp_path_factory.mktemp("obsctl"))
    ctl = None
    try:
        server.start()
        ctl = Obsctl(["trace", "--json", "--port", server.port])
        if not ctl.wait_stderr("attached"):
            pytest.fail(f"obsctl printed no 'attached' line on stderr within {harness.READY_TIMEOUT}s "
                        f"(exit code {ctl.proc.poll()})\n--- stderr ---\n{ctl.stderr_text()}", pytrace=False)
        base = server.base
        body = clients.make_body_file(str(server.dir), harness.MIB, "upload.bin")
        items = [("GET", "/text", None), ("GET", "/json", None), ("GET", f"/users/{harness.uniq()}", None),
                 ("GET", f"/users/{harness.uniq()}?x=1", None), ("GET", "/stream", None), ("GET", "/slow", None),
                 ("GET", "/boom", None), ("GET", "/nope", None), ("POST", "/upload", body), ("GET", "/text", None)]
        truth = clients.curl(base, items) + clients.curl(base, items, close=True)
        harness.check_truth_sane(truth)
        ctl.wait_lines(len(truth), harness.RECORD_TIMEOUT)
        time.sleep(harness.SETTLE)
        r = CtlRun(server, ctl, truth)
        r.lines_before_sigint = len(ctl.stdout_lines)
        r.rc = ctl.interrupt()
        r.lines = [l for _, l in ctl.stdout_lines]
        yield r
    finally:
        if ctl is not None:
            ctl.kill()
        server.stop()


def test_obsctl_exits_0_on_sigint(ctlrun):
    assert ctlrun.rc == 0, f"obsctl exit code {ctlrun.rc} after SIGINT (None = not within 5 s) {ctlrun.ctx()}"


def test_obsctl_lines_are_json_records(ctlrun):
    bad = []
    for l in ctlrun.lines:
        try:
            o = json.loads(l)
            if not isinstance(o, dict) or not {"method", "path", "status", "outcome"} <= o.keys():
                bad.append(l)
        except ValueError:
            bad.append(l)
    assert not bad, f"{len(bad)} stdout line(s) are not JSON records:\n" + "\n".join(bad[:10]) + ctlrun.ctx()


def test_obsctl_matches_truth(ctlrun):
    recs = []
    for l in ctlrun.lines:
        try:
            recs.append(json.loads(l))
        except ValueError:
            pass
    d = harness.diff_truth(ctlrun.truth, recs)
    assert d is None, f"{ctlrun.ctx()}\n{d}"
    bad = harness.check_outcomes(ctlrun.truth, recs) + harness.check_slow(ctlrun.truth, recs)
    assert not bad, "\n".join(bad)
    assert all(r.get("pid") in ctlrun.server.pids() for r in recs), "records of other processes"


def test_obsctl_streams_records_live(ctlrun):
    """Records are printed (flushed) as requests complete, not only at exit."""
    assert ctlrun.lines_before_sigint >= len(ctlrun.truth), (
        f"only {ctlrun.lines_before_sigint} of {len(ctlrun.truth)} lines were on stdout before SIGINT "
        f"({len(ctlrun.lines)} after exit) {ctlrun.ctx()}")
