"""The in-process alternative to obs, for `make bench`: tests/e2e/app.py's
Starlette app wrapped in a plain prometheus_client ASGI middleware, as in the
usual "add Prometheus metrics to FastAPI/Starlette" article.

Per HTTP request the middleware finds the route template (Starlette route
matching, so /users/{id} stays one series), times the request, then counts it
in a Counter and observes a Histogram, both labelled method/route/status.
GET /metrics serves the registry (prometheus_client's ASGI app).

Run: uvicorn --app-dir scripts/bench app_prom:app   (any uvicorn flags)
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))

from app import app as inner  # noqa: E402  (tests/e2e/app.py)
from prometheus_client import Counter, Histogram, make_asgi_app  # noqa: E402
from starlette.routing import Match  # noqa: E402

REQUESTS = Counter("http_requests_total", "HTTP requests served",
                   ["method", "route", "status"])
DURATION = Histogram("http_request_duration_seconds", "HTTP request duration in seconds",
                     ["method", "route", "status"])
metrics_app = make_asgi_app()


def route_of(scope):
    """The matching route's template, or the raw path if none matches."""
    for route in inner.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
    return scope["path"]


class PrometheusMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics":
            await metrics_app(scope, receive, send)
            return
        method = scope["method"]
        route = route_of(scope)
        status = 500
        start = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            labels = (method, route, str(status))
            REQUESTS.labels(*labels).inc()
            DURATION.labels(*labels).observe(time.perf_counter() - start)


app = PrometheusMiddleware(inner)
