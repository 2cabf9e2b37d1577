"""The OpenAI-compatible client against an endpoint that misbehaves: 429 with Retry-After, 5xx, malformed bodies."""

from __future__ import annotations

import re
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from vlpref.data.schema import DecodingParams
from vlpref.models.remote import Completion, Failure, RemoteChat, RemoteEndpoint, shown_url
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
        if kind == "503-final":  # the server says a retry will not help
            return JSONResponse({"error": {"message": "gone"}}, status_code=503, headers={"x-should-retry": "false"})
        if kind == "garbage":
            return PlainTextResponse("<html>gateway</html>", status_code=200)
        return OK

    return app


def ask(url: str, retries: int = 3, log=None):
    endpoint = RemoteEndpoint(base_url=url, model="m", api_key_env=None, max_retries=retries)
    return RemoteChat(endpoint, log=log).run([[{"role": "user", "content": "hi"}]],
                                             [DecodingParams(max_new_tokens=4)])[0]


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


def test_retries_are_reported_naming_the_url():
    """The openai client's own retries were silent: a run against a struggling endpoint showed nothing for minutes."""
    lines = []
    with serve_in_thread(flaky_app(["503"])) as url:
        result = ask(url, log=lines.append)
    assert isinstance(result, Completion)
    assert len(lines) == 1
    assert re.fullmatch(rf"endpoint {re.escape(url)}: request 1 failed \(HTTP 503: overloaded\); retry 1 of 3 in "
                        r"0\.\d s", lines[0]), lines[0]


def test_retry_lines_go_to_stderr_by_default(capsys):
    with serve_in_thread(flaky_app(["503"])) as url:
        assert isinstance(ask(url), Completion)
    captured = capsys.readouterr()
    assert f"endpoint {url}: request 1 failed (HTTP 503: overloaded); retry 1 of 3" in captured.err
    assert captured.out == ""


def test_failures_name_the_url_and_the_retries():
    with serve_in_thread(flaky_app(["503"] * 10)) as url:
        result = ask(url, retries=2, log=lambda line: None)
    assert result.reason == f"HTTP 503: overloaded (endpoint {url}, after 2 retries)"
    with serve_in_thread(flaky_app(["503-final"])) as url:  # x-should-retry: false is honoured
        result = ask(url, retries=2, log=pytest.fail)
    assert result.reason == f"HTTP 503: gone (endpoint {url})"


def test_unreachable_endpoint_fails_with_its_url():
    with serve_in_thread(flaky_app([])) as url:
        pass  # the server is gone: nothing listens on its port now
    result = ask(url, retries=0)
    assert isinstance(result, Failure) and result.reason.startswith("APIConnectionError")
    assert result.reason.endswith(f"(endpoint {url})")


def test_shown_url_drops_credentials():
    assert shown_url("https://user:secret@api.example.com:8443/v1?key=abc") == "https://api.example.com:8443/v1"
    assert shown_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
