"""Fixtures of the obs end-to-end tests.

Run from the repo root, as root:  /usr/bin/python3 -m pytest -q tests/e2e
Logs of every process started (servers, obsd, obsctl) go to tests/e2e/.out/.
"""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Obsd, Server, stop_obsd_checked  # noqa: E402


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("the obs e2e tests load eBPF programs: run them as root")
    shutil.rmtree(harness.OUT, ignore_errors=True)
    harness.OUT.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def obsd_factory():
    """start_obsd(*filters) -> a ready Obsd; each is SIGTERMed at teardown
    and must exit 0 within 5 s (a teardown error otherwise)."""
    started = []

    def start(*filters, name="obsd"):
        d = Obsd(filters, name=name)
        started.append(d)
        return d.start()

    yield start
    errors = []
    for d in started:
        try:
            stop_obsd_checked(d)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.fixture
def server_factory(tmp_path_factory):
    """start_server(setup) -> a listening Server (no connection made yet);
    killed (whole process group) at teardown."""
    started = []

    def start(setup):
        s = Server(setup, tmp_path_factory.mktemp(setup))
        started.append(s)
        return s.start()

    yield start
    for s in started:
        s.stop()
