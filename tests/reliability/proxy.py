"""A fault-injecting proxy for an OpenAI-compatible endpoint: a seeded share of requests gets a 429 with
Retry-After, a 500 or 503, a timeout, malformed JSON, or a body cut off mid-transfer; the rest are forwarded.

    with serve_in_thread(fault_proxy(upstream_url, share=0.3, seed=0)) as url:   # point clients at url
"""

from __future__ import annotations

import asyncio
import random
import urllib.error
import urllib.request
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

FAULTS = ("429", "500", "503", "timeout", "malformed", "truncated")


def fault_proxy(upstream: str, share: float, seed: int = 0, hang_s: float = 3.0) -> FastAPI:
    """`upstream`: the real endpoint's base URL (".../v1"). `hang_s` must exceed the client's timeout."""
    app = FastAPI()
    rng = random.Random(seed)
    app.state.counts = Counter()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.body()
        app.state.counts["requests"] += 1
        fault = rng.choice(FAULTS) if rng.random() < share else None
        if fault:
            app.state.counts[fault] += 1
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429,
                                headers={"Retry-After": "0.05"})
        if fault in ("500", "503"):
            return JSONResponse({"error": {"message": "upstream trouble"}}, status_code=int(fault))
        if fault == "timeout":
            await asyncio.sleep(hang_s)
            return JSONResponse({"error": {"message": "too late"}}, status_code=504)
        if fault == "malformed":
            return Response('{"id": "x", "choices": [{"message": ', media_type="application/json")
        status, content = await asyncio.to_thread(_forward, upstream + "/chat/completions", body)
        if fault == "truncated":

            async def cut():  # half the body, then the connection drops
                yield content[: len(content) // 2]
                raise ConnectionResetError("cut off")

            return StreamingResponse(cut(), media_type="application/json",
                                     headers={"content-length": str(len(content))})
        app.state.counts["forwarded"] += 1
        return Response(content, status_code=status, media_type="application/json")

    return app


def _forward(url: str, body: bytes) -> tuple[int, bytes]:
    # the standard library's client, in a worker thread: the proxy needs no HTTP package of its own
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
