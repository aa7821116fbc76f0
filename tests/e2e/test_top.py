"""obsctl top, the live latency table: its screen driven in tmux against a
uvicorn under ab load (rows, sorting, detail view, filter, resize, quitting
restores the terminal); --batch and --json frames whose per-route request
counts must equal what the clients got, standalone (obsctl loads the probes)
and against a running obsd (--daemon); the privilege check."""
import json
import re
import subprocess
import time

import pytest

import clients
import harness
from harness import Obsctl
from top_support import (FRAME_TIMEOUT, PROMPT, TITLES, Load, Tmux, batch_frames, num, parse_table,
                         truth_by_route)

FRAMES = 9           # --iterations of the --batch run, 1 s apart
JSON_FRAMES = 16     # --iterations of the --json runs, 0.5 s apart
AFTER_FRAMES = 2     # frames that must follow the last response of the clients
EXIT_GRACE = 20.0    # beyond the frames, for obsctl top to exit
HEX32 = r"[0-9a-f]{32}"
LOOP_FRAMES = 8      # --iterations of the --json loops run, 1 s apart
QUIT_MAX = 0.6       # from q to the shell prompt (it was ~1 s while the probes detached)
QUIT_POLL = 0.02     # screen polls while waiting for the prompt


def drive(server) -> list:
    """The counted workload: fast, slow, failing and templated routes."""
    base = server.base
    truth = clients.ab(f"{base}/text", 1500, 4)
    truth += clients.ab(f"{base}/slow", 40, 4)
    truth += clients.curl(base, [("GET", "/boom", None)] * 3 +
                          [("GET", f"/users/{harness.uniq()}", None) for _ in range(5)])
    harness.check_truth_sane(truth)
    return truth


class Run:
    """obsctl top with a fixed number of frames, the workload sent after its
    first frame; afterwards: its output lines, exit code, the truth and when
    the clients were done."""

    def __init__(self, args, frames, interval, server, first_frame, name="obsctl-top"):
        self.frames = frames
        self.exit_timeout = frames * interval + EXIT_GRACE
        self.ctl = Obsctl(["top", "--iterations", str(frames), "--interval", str(interval)] +
                          [str(a) for a in args], name=name)
        try:
            self._wait(first_frame)
            self.truth = drive(server)
            self.t_done = time.monotonic()
            try:
                self.rc = self.ctl.proc.wait(self.exit_timeout)
            except subprocess.TimeoutExpired:
                self.rc = None
            self.ctl.interrupt()
        finally:
            self.ctl.kill()
        self.lines = [l for _, l in self.ctl.stdout_lines]

    def _wait(self, first_frame):
        deadline = time.monotonic() + FRAME_TIMEOUT
        while not any(first_frame(l) for _, l in self.ctl.stdout_lines):
            if self.ctl.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no first frame from {' '.join(map(str, self.ctl.args))} within "
                            f"{FRAME_TIMEOUT}s (exit code {self.ctl.proc.poll()})\n--- stderr ---\n"
                            f"{self.ctl.stderr_text()}", pytrace=False)
            time.sleep(0.05)

    def frames_after_done(self, starts) -> int:
        return sum(1 for t, l in self.ctl.stdout_lines if starts(l) and t > self.t_done)

    def ctx(self) -> str:
        return (f"[{' '.join(map(str, self.ctl.args))}]\n--- stderr ---\n{self.ctl.stderr_text()}"
                f"\n--- last stdout lines ---\n" + "\n".join(self.lines[-30:]))

    def check_complete(self, n_frames, starts):
        assert self.rc == 0, (f"exit code {self.rc} (None: still running after {self.exit_timeout}s) "
                              f"{self.ctx()}")
        assert n_frames == self.frames, f"{n_frames} frames, asked for {self.frames} {self.ctx()}"
        after = self.frames_after_done(starts)
        assert after >= AFTER_FRAMES, (f"only {after} frame(s) after the clients were done: the run "
                                       f"does not surely cover every request {self.ctx()}")


# -- the screen ---------------------------------------------------------------------

def rows_of(screen: str):
    return parse_table(screen.splitlines()) or []


def routes_of(screen: str):
    return {r["ROUTE"]: r for r in rows_of(screen)}


def both_live(screen: str) -> bool:
    r = routes_of(screen)
    return all(k in r and num(r[k]["REQ/S"]) > 0 for k in ("/text", "/slow"))


def test_top_screen(server_factory):
    """Rows with live rates; 'p' sorts by p99 (/slow first); Enter opens the
    detail (histogram, status codes, slowest requests with ids); help,
    filter, resize to 80x24; 'q' leaves the alternate screen, prompt back."""
    server = server_factory("uvicorn-h11")
    tmux = Tmux(120, 40)
    load = None
    try:
        tmux.type(f"{harness.OBSCTL} top --port {server.port}")
        tmux.send("Enter")
        tmux.wait(lambda s: "obsctl top " in s and "P99ms" in s, "the table", FRAME_TIMEOUT)
        assert tmux.alternate_on(), "the table is not on the alternate screen"
        load = Load([f"{server.base}/text", f"{server.base}/slow"])
        s = tmux.wait(both_live, "rows /text and /slow with REQ/S > 0")
        assert "window 10s" in s, f"the screen does not state the window:\n{s}"

        tmux.send("p")
        s = tmux.wait(lambda s: "sort p99" in s and both_live(s) and rows_of(s)[0]["ROUTE"] == "/slow",
                      "/slow as the first row after 'p' (sort by p99)")
        p99 = [num(r["P99ms"]) for r in rows_of(s)]
        assert p99 == sorted(p99, reverse=True), f"P99ms not descending after 'p':\n{s}"

        tmux.send("g")
        tmux.send("Enter")
        s = tmux.wait(lambda s: s.startswith("GET /slow") and "Latency histogram" in s and "|#" in s
                      and re.search(r"^\s+\d+\s+100\.0%\s+200\s*$", s, re.M) is not None
                      and re.search(rf"^\s+\S+ms 200 \S+ {HEX32} {HEX32} /slow\s*$", s, re.M) is not None,
                      "the detail view of GET /slow: histogram bars, 200 at 100%, slowest requests "
                      "with request and trace ids")
        tmux.send("Escape")
        tmux.wait(lambda s: "P99ms" in s and both_live(s), "the table again after Esc")

        tmux.send("?")
        tmux.wait(lambda s: "obsctl top - help" in s and "INFL" in s, "the help screen")
        tmux.send("Escape")
        tmux.wait(lambda s: "P99ms" in s, "the table again after the help")

        tmux.send("/")
        tmux.type("slo")
        tmux.send("Enter")
        tmux.wait(lambda s: "filter: slo" in s and list(routes_of(s)) == ["/slow"],
                  "only /slow with the filter 'slo'")
        tmux.send("Escape")
        tmux.wait(both_live, "both rows again once the filter is cleared")

        tmux.resize(80, 24)
        s = tmux.wait(lambda s: len(s.splitlines()) <= 24 and both_live(s), "the table at 80x24")
        assert all(len(l) <= 80 for l in s.splitlines()), s
        assert rows_of(s)[0]["ROUTE"] == "/slow", f"sort lost at 80x24:\n{s}"

        load.stop()
        t_quit = time.monotonic()
        tmux.send("q")
        s = tmux.wait(lambda s: s.rstrip().splitlines()[-1] == PROMPT.rstrip() and "P99ms" not in s,
                      "the shell prompt (table gone) after q", poll=QUIT_POLL)
        quit_s = time.monotonic() - t_quit
        assert quit_s < QUIT_MAX, (f"the prompt came back {quit_s:.2f}s after q (the probes' "
                                   f"teardown must not hold the terminal)")
        assert not tmux.alternate_on(), "still on the alternate screen after q"
        tmux.type("echo rc=$?")
        tmux.send("Enter")
        tmux.wait(lambda s: "rc=0" in s, "exit code 0 of obsctl top")
    finally:
        if load is not None:
            load.stop()
        tmux.kill()


# -- --batch and --json -------------------------------------------------------------

def is_title(line: str) -> bool:
    return line.split()[:3] == TITLES


def test_top_batch_counts_match_clients(server_factory):
    """--batch --iterations N --sort p99: the last frame's REQS per route are
    exactly what the clients got; /slow leads; /boom is all errors."""
    server = server_factory("uvicorn-h11")
    run = Run(["--batch", "--sort", "p99", "--port", server.port], FRAMES, 1, server, is_title)
    frames = batch_frames(run.lines)
    run.check_complete(len(frames), lambda l: l.startswith("obsctl top "))
    last = parse_table(frames[-1])
    got = {(r["METHOD"], r["ROUTE"]): int(r["REQS"]) for r in last}
    want = truth_by_route(run.truth)
    assert got == want, f"REQS per route {got} != clients {want} {run.ctx()}"

    later = [f for f in frames
             if parse_table(f) and sum(int(r["REQS"]) for r in parse_table(f)) == len(run.truth)]
    rows = parse_table(later[0])
    assert rows[0]["ROUTE"] == "/slow", "--sort p99 does not put /slow first:\n" + "\n".join(later[0])
    assert all(num(r["REQ/S"]) > 0 for r in rows), "\n".join(later[0])
    boom = next(r for r in rows if r["ROUTE"] == "/boom")
    assert num(boom["ERR%"]) == 100.0, "\n".join(later[0])
    slow = next(r for r in rows if r["ROUTE"] == "/slow")
    assert 49.0 <= num(slow["P50ms"]) <= num(slow["P99ms"]) <= num(slow["MAXms"]), "\n".join(later[0])


ROW_KEYS = {"service", "method", "route", "requests", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
            "error_pct", "in_flight", "bytes_per_s"}
HEAD_KEYS = {"requests", "rps", "error_pct", "in_flight", "bytes_per_s", "observed_processes",
             "events_lost", "obsctl_cpu_pct", "obsd_cpu_pct", "window_s", "rows"}


def json_frames(run):
    frames = []
    for l in run.lines:
        try:
            frames.append(json.loads(l))
        except ValueError:
            pytest.fail(f"stdout line is not JSON: {l!r} {run.ctx()}", pytrace=False)
    return frames


def check_json_counts(run, frames, mode):
    run.check_complete(len(frames), lambda l: l.startswith("{"))
    for f in frames:
        assert HEAD_KEYS <= f.keys() and f["mode"] == mode, f
        for r in f["rows"]:
            assert ROW_KEYS <= r.keys(), r
    last = frames[-1]
    got = {(r["method"], r["route"]): r["requests"] for r in last["rows"]}
    want = truth_by_route(run.truth)
    assert got == want, f"requests per route {got} != clients {want} {run.ctx()}"
    assert last["requests"] == len(run.truth), last
    done = next(f for f in frames if f["requests"] == len(run.truth))
    slow = next(r for r in done["rows"] if r["route"] == "/slow")
    assert slow["rps"] > 0 and 49.0 <= slow["p50_ms"] <= slow["p99_ms"] <= slow["max_ms"], slow
    assert next(r for r in done["rows"] if r["route"] == "/boom")["error_pct"] == 100.0, done


def test_top_json_standalone(server_factory):
    """--json: one JSON object per frame, header totals and per-row fields;
    counts exact."""
    server = server_factory("uvicorn-h11")
    run = Run(["--json", "--port", server.port], JSON_FRAMES, 0.5, server, lambda l: l.startswith("{"))
    frames = json_frames(run)
    check_json_counts(run, frames, "standalone")
    assert all(f["obsd_cpu_pct"] is None for f in frames), "standalone has no obsd CPU"
    assert frames[-1]["observed_processes"] >= 1, frames[-1]


def test_top_daemon(server_factory, obsd_factory):
    """--daemon ADDR:PORT --json against a running obsd (its /api/stats):
    counts exact, obsd's CPU and observed processes in the header, no error."""
    server = server_factory("uvicorn-h11")
    d = obsd_factory("--port", server.port, name="obsd-top")
    run = Run(["--daemon", f"{harness.HOST}:{d.port}", "--json"], JSON_FRAMES, 0.5, server,
              lambda l: l.startswith("{"), name="obsctl-top-daemon")
    frames = json_frames(run)
    check_json_counts(run, frames, "daemon")
    assert all(f["obsd_cpu_pct"] is not None and f["obsd_cpu_pct"] >= 0 for f in frames[1:]), \
        [f["obsd_cpu_pct"] for f in frames]
    assert frames[-1]["observed_processes"] >= 1, frames[-1]
    assert "error" not in frames[-1], frames[-1]


def test_top_json_loops(server_factory):
    """--json "loops": after two GET /block (time.sleep(0.2) in the loop) the
    server's worker has a window p99 busy time >= 100 ms (upper bound of its
    log2 bucket) and at least one blocked iteration in the window. A GET /text
    first: the probes follow a worker's loop once it has served a request."""
    server = server_factory("uvicorn-h11")
    pid = server.pid
    ctl = Obsctl(["top", "--json", "--iterations", str(LOOP_FRAMES), "--interval", "1",
                  "--port", server.port], name="obsctl-top-loops")

    def frames():
        return [json.loads(l) for _, l in ctl.stdout_lines]

    def wait_for(pred, what):
        deadline = time.monotonic() + FRAME_TIMEOUT
        while not pred():
            assert ctl.proc.poll() is None and time.monotonic() < deadline, \
                f"no frame with {what} (exit code {ctl.proc.poll()})\n{ctl.stderr_text()}"
            time.sleep(0.05)

    try:
        wait_for(lambda: frames(), "anything")
        assert clients.curl(server.base, [("GET", "/text", None)])[0].status == 200
        wait_for(lambda: any(w["worker"] == pid for f in frames() for w in f["loops"]),
                 f"a loops entry for the server pid {pid}")
        truth = clients.curl(server.base, [("GET", "/block", None)] * 2)
        assert [t.status for t in truth] == [200, 200], truth
        rc = ctl.proc.wait(LOOP_FRAMES + EXIT_GRACE)
    finally:
        ctl.kill()
    lines = [l for _, l in ctl.stdout_lines]
    ctx = "\n".join(lines[-5:]) + "\n--- stderr ---\n" + ctl.stderr_text()
    assert rc == 0, ctx
    assert len(lines) == LOOP_FRAMES, ctx
    for f in frames():
        for w in f["loops"]:
            assert {"service", "worker", "p99_ms", "blocked_in_window"} <= w.keys(), w
    mine = [w for f in frames() for w in f["loops"] if w["worker"] == pid]
    assert any(w["p99_ms"] is not None and w["p99_ms"] >= 100 and w["blocked_in_window"] >= 1
               for w in mine), f"no frame with p99_ms >= 100 and a blocked iteration: {mine}"


# -- usage ---------------------------------------------------------------------------

def test_top_needs_privileges():
    """Standalone without root or CAP_BPF+CAP_PERFMON: one clear line, exit 1."""
    harness.require_binary(harness.OBSCTL)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(harness.OBSCTL), "top", "--batch", "--iterations", "1"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_BPF" in lines[0] and "--daemon" in lines[0], p.stderr
    assert p.stdout == ""


def test_top_usage():
    """--help says where in-flight comes from; a bad --sort is a usage error."""
    harness.require_binary(harness.OBSCTL)
    h = subprocess.run([str(harness.OBSCTL), "top", "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0 and "http_requests_in_flight" in h.stdout and "--window" in h.stdout, h
    b = subprocess.run([str(harness.OBSCTL), "top", "--sort", "bogus", "--batch"], capture_output=True,
                       text=True, timeout=10)
    assert b.returncode == 2 and "bogus" in b.stderr, b
