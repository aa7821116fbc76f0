"""ASGI application served by every server setup of the obs end-to-end tests.

Routes (anything else answers 404):
  GET  /text          plain text
  GET  /json          JSON
  GET  /users/{id}    path parameter, echoed back as JSON
  GET  /stream        StreamingResponse: exactly 1 MiB in 16 chunks of 64 KiB
                      (no Content-Length => chunked transfer encoding on 1.1)
  POST /upload        reads the whole body, answers JSON with its length
  GET  /slow          sleeps 50 ms, then plain text
  GET  /boom          raises ValueError("kaboom") => the server answers 500
  GET  /block         blocks the event loop: time.sleep(0.2) inside the handler
  GET  /nap           awaits asyncio.sleep(0.2): slow, but the loop stays free
"""
import asyncio
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

STREAM_CHUNK = 64 * 1024
STREAM_CHUNKS = 16
STREAM_TOTAL = STREAM_CHUNK * STREAM_CHUNKS  # 1 MiB
SLOW_SECONDS = 0.05


async def text(request):
    return PlainTextResponse("hello from obs e2e\n")


async def json_route(request):
    return JSONResponse({"ok": True, "items": [1, 2, 3], "name": "obs"})


async def user(request):
    return JSONResponse({"id": request.path_params["id"]})


async def stream(request):
    async def body():
        chunk = b"x" * STREAM_CHUNK
        for _ in range(STREAM_CHUNKS):
            yield chunk
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="application/octet-stream")


async def upload(request):
    n = 0
    async for part in request.stream():
        n += len(part)
    return JSONResponse({"received": n})


async def slow(request):
    # asyncio.sleep alone may end up to ~1 ms early in wall-clock terms
    # (uvloop/libuv schedule timers from a cached loop time), so top up until
    # 50 ms have really passed since the handler started -- i.e. since after
    # the server read the request.
    deadline = time.monotonic() + SLOW_SECONDS
    await asyncio.sleep(SLOW_SECONDS)
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(left + 0.0005)
    return PlainTextResponse("slow\n")


async def boom(request):
    raise ValueError("kaboom")


BLOCK_SECONDS = 0.2


async def block(request):
    time.sleep(BLOCK_SECONDS)  # the mistake loop-lag monitoring exists for
    return PlainTextResponse("blocked\n")


async def nap(request):
    await asyncio.sleep(BLOCK_SECONDS)
    return PlainTextResponse("napped\n")


app = Starlette(
    routes=[
        Route("/text", text, methods=["GET"]),
        Route("/json", json_route, methods=["GET"]),
        Route("/users/{id}", user, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/slow", slow, methods=["GET"]),
        Route("/boom", boom, methods=["GET"]),
        Route("/block", block, methods=["GET"]),
        Route("/nap", nap, methods=["GET"]),
    ]
)
