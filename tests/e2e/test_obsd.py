"""obsd lifecycle and API shape: /ready (503 then 200), /health,
/api/requests, clean exit 0 on SIGTERM within 5 s."""
import json
import signal
import time

import harness
from harness import HOST, Obsd


def test_obsd_lifecycle_and_api():
    harness.require_binary(harness.OBSD)
    d = Obsd(name="obsd-lifecycle")
    d.proc = harness.spawn([harness.OBSD, "--listen", f"{HOST}:{d.port}"], d.name)
    d.stderr_path = d.proc.log_path
    try:
        seen = []
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while True:
            assert d.proc.poll() is None, f"obsd exited {d.proc.returncode}\n{d.output()}"
            try:
                st, _ = d.get("/ready", timeout=2)
                seen.append(st)
                if st == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"/ready not 200 within 20 s (seen {seen})\n{d.output()}"
            time.sleep(0.05)
        d.ready = True
        assert set(seen) <= {200, 503}, f"/ready answered {sorted(set(seen))}; only 503 and 200 are allowed"

        st, body = d.get("/health")
        assert st == 200, f"/health -> {st} {body[:300]!r}"
        h = json.loads(body)
        assert h.get("status") == "ok", h
        assert isinstance(h.get("uptime_seconds"), (int, float)) and h["uptime_seconds"] >= 0, h
        for k in ("observed_processes", "active_connections", "events_lost"):
            assert isinstance(h.get(k), int) and h[k] >= 0, f"/health {k}: {h}"

        doc = d.get_json("/api/requests?limit=5")
        assert isinstance(doc.get("requests"), list) and doc.get("count") == len(doc["requests"]) <= 5, doc

        rc = d.stop()
        assert rc == 0, f"obsd exit code {rc} after SIGTERM (None = not within 5 s)\n{d.output()}"
    finally:
        if d.proc is not None:
            harness.kill_group(d.proc, signal.SIGKILL, 0.1)
