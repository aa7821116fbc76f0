"""ASGI app of the log tests (test_logs.py): every request to /work/<id>
writes two lines carrying its X-Request-ID before answering, one through
Python logging (default format "LEVEL:name:msg", stderr) and one through
structlog's JSON renderer (stdout, printed as two writes under -u: the
message, then its newline). /secret logs its URL and headers (secrets that
obs must redact). uvicorn adds its access line (stdout) for every request."""
import logging
import sys

import structlog

log = logging.getLogger("logsapp")
_h = logging.StreamHandler(sys.stderr)
_h.setFormatter(logging.Formatter(logging.BASIC_FORMAT))  # "%(levelname)s:%(name)s:%(message)s"
log.addHandler(_h)
log.setLevel(logging.INFO)
log.propagate = False
structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    logger_factory=structlog.PrintLoggerFactory(sys.stdout),
)
slog = structlog.get_logger()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):  # the (empty) body: hypercorn wants it read
        pass
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    rid = headers.get("x-request-id", "")
    path = scope["path"]
    if path.startswith("/work/"):
        log.warning("handling %s rid=%s", path, rid)
        slog.info("work done", request_id=rid, user="alice", n=42, ok=True, ratio=0.5)
    elif path == "/secret":
        qs = scope["query_string"].decode()
        log.info("request %s?%s headers %r", path, qs, headers)
    body = b"ok\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
