"""ASGI app of the outgoing-call tests (test_client.py), front and back in one
file. Environment: ROLE=front|back; a front calls BACK_URL (http://host:port)
or, with BACK_UDS, the back's UNIX socket, with CLIENT=httpx|aiohttp (one
keep-alive client per process). /call/<rid>: log, GET <back>/back/<rid>
with X-Request-ID: <rid>, log again, answer with the back's status.
/own/<rid>: the same call carrying a traceparent of the app's own (what an
SDK does). /fail/<rid>: calls /boom/<rid>, which the back answers 503. The
back logs every request and answers "ok"."""
import logging
import os
import sys

log = logging.getLogger("clientapp")
_h = logging.StreamHandler(sys.stderr)
_h.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
log.addHandler(_h)
log.setLevel(logging.INFO)
log.propagate = False

ROLE = os.environ.get("ROLE", "front")
BACK_URL = os.environ.get("BACK_URL", "http://localhost")
BACK_UDS = os.environ.get("BACK_UDS", "")
CLIENT = os.environ.get("CLIENT", "httpx")
OWN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_client = None


async def _call(path: str, headers: dict) -> int:
    global _client
    if CLIENT == "aiohttp":
        import aiohttp
        if _client is None:
            conn = aiohttp.UnixConnector(path=BACK_UDS) if BACK_UDS else aiohttp.TCPConnector()
            _client = aiohttp.ClientSession(connector=conn)
        async with _client.get(BACK_URL + path, headers=headers) as r:
            await r.read()
            return r.status
    import httpx
    if _client is None:
        transport = httpx.AsyncHTTPTransport(uds=BACK_UDS) if BACK_UDS else None
        _client = httpx.AsyncClient(transport=transport, timeout=20)
    r = await _client.get(BACK_URL + path, headers=headers)
    return r.status_code


async def _answer(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    rid = headers.get("x-request-id", "")
    path = scope["path"]
    if ROLE == "back":
        log.warning("back %s rid=%s", path, rid)
        await _answer(send, 503 if path.startswith("/boom/") else 200, b"ok\n")
        return
    kind, _, arg = path[1:].partition("/")
    out = {"X-Request-ID": rid}
    target = f"/back/{arg}?secret=q"
    if kind == "own":
        out["traceparent"] = f"00-{OWN_TRACE}-{arg[-16:]}-01"
    elif kind == "fail":
        target = f"/boom/{arg}"
    log.warning("front before %s rid=%s", path, rid)
    status = await _call(target, out)
    log.warning("front after %s rid=%s status=%d", path, rid, status)
    await _answer(send, 200 if status < 500 else 502, b"done\n")
