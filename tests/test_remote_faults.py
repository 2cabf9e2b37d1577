"""The OpenAI-compatible client against an endpoint that misbehaves: 429 with Retry-After, 5xx, malformed bodies."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from vlpref.data.schema import DecodingParams
from vlpref.models.remote import Completion, Failure, RemoteChat, RemoteEndpoint
from vlpref.serve import serve_in_thread

OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def flaky_app(script: list):
    """Answers each request with the next scripted behaviour, then OK; records arrival times."""
    app = FastAPI()
    app.state.times = []

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        app.state.times.append(time.monotonic())
        kind = script.pop(0) if script else "ok"
        if kind == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "1"})
        if kind == "503":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if kind == "garbage":
            return PlainTextResponse("<html>gateway</html>", status_code=200)
        return OK

    return app


def ask(url: str, retries: int = 3):
    endpoint = RemoteEndpoint(base_url=url, model="m", api_key_env=None, max_retries=retries)
    return RemoteChat(endpoint).run([[{"role": "user", "content": "hi"}]], [DecodingParams(max_new_tokens=4)])[0]


def test_429_waits_for_retry_after_then_succeeds():
    app = flaky_app(["429", "503"])
    with serve_in_thread(app) as url:
        result = ask(url)
    assert isinstance(result, Completion) and result.text == "fine"
    times = app.state.times
    assert len(times) == 3 and times[1] - times[0] >= 0.9  # honoured "Retry-After: 1"


def test_persistent_errors_and_malformed_bodies_become_failures():
    with serve_in_thread(flaky_app(["503"] * 10)) as url:
        result = ask(url, retries=1)
    assert isinstance(result, Failure) and "HTTP 503" in result.reason and "overloaded" in result.reason
    with serve_in_thread(flaky_app(["garbage"])) as url:
        result = ask(url, retries=0)
    assert isinstance(result, Failure)


def test_a_json_body_that_does_not_parse_is_a_failure_not_a_crash():
    """Found by the fault suite: a 200 with content-type JSON and a broken body made the client raise
    JSONDecodeError, which stopped the whole judge run instead of failing one item."""
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        return Response('{"id": "x", "choices": [', media_type="application/json")

    with serve_in_thread(app) as url:
        result = ask(url, retries=0)
    assert isinstance(result, Failure) and result.reason.startswith("malformed response")
