"""obsd process/port filters: with two servers A and B and obsd filtered on
A, A's records are exact and no record ever belongs to B (or anything else)."""

import harness


def _filtered_case(server_factory, obsd_factory, setup_a, setup_b, filters_for):
    a = server_factory(setup_a)
    b = server_factory(setup_b)
    d = obsd_factory(*filters_for(a), name="obsd-filter")
    # B first: records wrongly emitted for it have time to show up
    truth_b = harness.drive_small(b.port, b.dir)
    truth_a = harness.drive_small(a.port, a.dir)
    recs_a = harness.wait_records(d.requests, a.pids, len(truth_a))
    all_recs = d.requests()
    ctx = (f"[obsd {' '.join(d.filters)}; A={setup_a} port {a.port} pids {sorted(a.pids())}; "
           f"B={setup_b} port {b.port} pids {sorted(b.pids())}, {len(truth_b)} responses]")

    diff = harness.diff_truth(truth_a, recs_a)
    assert diff is None, f"{ctx} A's records differ from the truth:\n{diff}"
    bad = harness.check_outcomes(truth_a, recs_a)
    assert not bad, f"{ctx}\n" + "\n".join(bad)

    b_pids = b.pids()
    of_b = [r for r in all_recs if r.get("pid") in b_pids]
    assert not of_b, (f"{ctx} {len(of_b)} record(s) carry B's pid:\n" +
                      "\n".join(harness.brief_record(r) for r in of_b[:10]))
    a_pids = a.pids()
    foreign = [r for r in all_recs if r.get("pid") not in a_pids]
    assert not foreign, (f"{ctx} {len(foreign)} record(s) of processes outside the filter:\n" +
                         "\n".join(harness.brief_record(r) for r in foreign[:10]))


def test_filter_pid(server_factory, obsd_factory):
    """--pid <A's pid>: A (uvicorn h11) exact, nothing from B (uvicorn httptools)."""
    _filtered_case(server_factory, obsd_factory, "uvicorn-h11", "uvicorn-httptools",
                   lambda a: ["--pid", a.pid])


def test_filter_port(server_factory, obsd_factory):
    """--port <A's port>: same as --pid."""
    _filtered_case(server_factory, obsd_factory, "uvicorn-h11", "uvicorn-httptools",
                   lambda a: ["--port", a.port])


def test_filter_pid_includes_children(server_factory, obsd_factory):
    """--pid <gunicorn master>: the requests its 2 worker children serve are
    reported exactly; nothing from B."""
    _filtered_case(server_factory, obsd_factory, "gunicorn-uvicorn", "uvicorn-h11",
                   lambda a: ["--pid", a.pid])
