"""ASGI application of the error-event end-to-end tests (test_errors.py).

Every route of app.py (the shared e2e app, imported unchanged -- /boom still
raises ValueError("kaboom") in app.py's `boom`, Starlette answers 500 and the
server logs the traceback after the response), plus:

  GET /boom/{n}       raises ValueError("kaboom-<n>") in `boom_tagged`: each
                      traceback names its request, so the join can be checked
  GET /deep           raises ValueError("deep-kaboom") DEEP_LEVELS calls deep
                      in `deep_raise`: a traceback of ~2.4 KB (Python folds
                      the repeated frames), written by the server in one
                      write() -- longer than obsd's default 2048 capture
                      bytes
  GET /chain          NOT routed through Starlette: `chain` raises
                      RuntimeError("outer failure") from KeyError('inner-key')
                      before any response, so the SERVER logs the chained
                      traceback first and then answers 500 itself. Without
                      Starlette's middleware frames the chained traceback
                      stays ~1 KB, well under obsd's default capture of
                      2048 bytes per write.
  GET /slowstream     StreamingResponse of 1 MiB in 16 chunks of 64 KiB with
                      30 ms between chunks. The shared /stream writes its
                      1 MiB at once: on loopback the kernel socket buffers
                      take all of it, so the server has written (and
                      completed) the whole response before any client can
                      leave mid-stream. Here the server is still writing
                      ~0.5 s later, so a client that leaves after the first
                      bytes really cuts the response short.
"""
import asyncio

from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

import app as shared

SLOW_STREAM_CHUNK = 64 * 1024
SLOW_STREAM_CHUNKS = 16
SLOW_STREAM_GAP = 0.03
DEEP_LEVELS = 30


async def boom_tagged(request):
    raise ValueError("kaboom-" + request.path_params["n"])


def deep_raise(level):
    if level <= 0:
        raise ValueError("deep-kaboom")
    return deep_raise(level - 1) + 1


async def deep(request):
    deep_raise(DEEP_LEVELS)


async def slowstream(request):
    async def body():
        chunk = b"y" * SLOW_STREAM_CHUNK
        for i in range(SLOW_STREAM_CHUNKS):
            if i:
                await asyncio.sleep(SLOW_STREAM_GAP)
            yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream")


async def chain(scope, receive, send):
    try:
        raise KeyError("inner-key")
    except KeyError as e:
        raise RuntimeError("outer failure") from e


starlette_app = Starlette(
    routes=list(shared.app.routes) + [
        Route("/boom/{n}", boom_tagged, methods=["GET"]),
        Route("/deep", deep, methods=["GET"]),
        Route("/slowstream", slowstream, methods=["GET"]),
    ]
)


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/chain":
        await chain(scope, receive, send)
    else:
        await starlette_app(scope, receive, send)
