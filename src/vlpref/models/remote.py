"""Any OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, OpenAI, Gemini's compatible API, `vlpref serve`).

    >>> endpoint = RemoteEndpoint(base_url="http://127.0.0.1:8000/v1", model="world-base")
    >>> results = RemoteChat(endpoint).run([messages_1, messages_2], [params, params])

Requests run concurrently (asyncio, at most `concurrency` in flight). Transport faults are retried here, as the
`openai` client would (connection errors, timeouts, 408/409/429 and 5xx, exponential backoff with jitter, honouring
Retry-After), but visibly: each retry is a line naming the endpoint's URL, the request and the reason (at most one
line every few seconds, with a count of the retries in between), where the client's own retries were silent.
What still fails after `max_retries` comes back as a `Failure` whose reason names the URL: the caller journals it
and a later run retries it. A result is handed to `on_done` the moment it arrives, so it can be journalled before
the next one lands.

The API key is read from the environment variable `api_key_env` or from `api_key_file`, at the moment the client
is made; it is never stored on a config, written to a journal or output, or put in a log line.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from vlpref.config import StrictModel
from vlpref.data.schema import DecodingParams
from vlpref.errors import ConfigError


class RemoteEndpoint(StrictModel):
    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1")
    model: str = Field(description="the model name the endpoint serves")
    api_key_env: str | None = Field(default="OPENAI_API_KEY", description="environment variable holding the key")
    api_key_file: str | None = Field(default=None, description="file holding the key (first line)")
    concurrency: int = Field(default=8, ge=1, description="requests in flight at once")
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    price_per_million: tuple[float, float] | None = Field(
        default=None, description="(input, output) price in USD per million tokens, for the cost estimate")

    def api_key(self) -> str:
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"api_key_file {path} does not exist")
            key = path.read_text().strip().splitlines()
            if not key:
                raise ConfigError(f"api_key_file {path} is empty")
            return key[0].strip()
        if self.api_key_env and os.environ.get(self.api_key_env):
            return os.environ[self.api_key_env]
        return "EMPTY"  # local servers (vLLM, vlpref serve) take any key


def check_backend(backend: str, endpoint: RemoteEndpoint | None, model: str | None = None) -> None:
    """A config's backend settings agree: an endpoint exactly for `openai`, a model exactly for `local`."""
    if (backend == "openai") != (endpoint is not None):
        raise ValueError("endpoint: set it exactly when backend is openai")
    if model is not None or backend == "local":
        if (backend == "local") != (model is not None):
            raise ValueError("model: set it exactly when backend is local")


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Failure:
    reason: str


def request_args(params: DecodingParams) -> dict[str, Any]:
    """DecodingParams -> chat-completions arguments (top_k is not part of the OpenAI API and is not sent)."""
    args: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                            "max_tokens": params.max_new_tokens}
    if params.seed is not None:
        args["seed"] = params.seed
    return args


RETRY_LOG_EVERY_S = 5.0  # a dead endpoint fails every request fast: one retry line per request would flood


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RemoteChat:
    """`log` gets the retry lines (default: standard error, so they never mix with a command's output)."""

    def __init__(self, endpoint: RemoteEndpoint, log: Callable[[str], None] | None = None):
        self.endpoint = endpoint
        self.url = shown_url(endpoint.base_url)
        self.log = log or _stderr
        self._last_line = float("-inf")
        self._unlogged = 0

    def _client(self):
        from openai import AsyncOpenAI

        e = self.endpoint
        # max_retries=0: the retries are ours (`_one`), so that each one can be reported
        return AsyncOpenAI(base_url=e.base_url, api_key=e.api_key(), timeout=e.timeout_s, max_retries=0)

    def _retrying(self, request: int, reason: str, retry: int, wait: float) -> None:
        now = time.monotonic()
        if now - self._last_line < RETRY_LOG_EVERY_S:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more retries since the last line)" if self._unlogged else ""
        self.log(f"endpoint {self.url}: request {request + 1} failed ({reason}); "
                 f"retry {retry} of {self.endpoint.max_retries} in {wait:.1f} s{more}")
        self._last_line, self._unlogged = now, 0

    async def _one(self, client, semaphore, index: int, messages, params: DecodingParams, extra: dict[str, Any]):
        async with semaphore:
            if callable(messages):  # built only now: a run of 80k image prompts never holds them all in memory
                messages = messages()
            for retry in range(self.endpoint.max_retries + 1):
                try:
                    response = await client.chat.completions.create(
                        model=self.endpoint.model, messages=messages, **request_args(params), **extra)
                    break
                except Exception as error:
                    reason = _reason(error)
                    if reason is None:
                        raise
                    if retry < self.endpoint.max_retries and _retryable(error):
                        wait = _backoff(retry, error)
                        self._retrying(index, redact(reason, client.api_key), retry + 1, wait)
                        await asyncio.sleep(wait)
                        continue
                    tried = f", after {retry} retries" if retry else ""
                    return Failure(redact(f"{reason} (endpoint {self.url}{tried})", client.api_key))
        if not getattr(response, "choices", None):
            return Failure(f"malformed response: no choices (endpoint {self.url})")
        choice = response.choices[0]
        text = choice.message.content if choice.message is not None else None
        if text is None:
            return Failure(f"malformed response: no message content (endpoint {self.url})")
        usage = response.usage
        return Completion(text=text, finish_reason=choice.finish_reason or "unknown",
                          prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0)

    def run(self, messages: list, params: list[DecodingParams], on_done=None,
            extras: list[dict[str, Any]] | None = None) -> list[Completion | Failure]:
        """Send every request (at most `concurrency` at once); `on_done(i, result)` the moment each one lands.

        `messages[i]` is a message list, or a zero-argument function making it (called when the request is sent);
        `extras[i]` holds further create() arguments (e.g. response_format) for request i."""

        async def main():
            client = self._client()
            semaphore = asyncio.Semaphore(self.endpoint.concurrency)
            results: list[Completion | Failure | None] = [None] * len(messages)

            async def task(i):
                extra = extras[i] if extras else {}
                results[i] = await self._one(client, semaphore, i, messages[i], params[i], extra)
                if on_done is not None:
                    on_done(i, results[i])

            try:
                await asyncio.gather(*[task(i) for i in range(len(messages))])
            finally:
                await client.close()
            return results

        return asyncio.run(main())


def shown_url(url: str) -> str:
    """`url` for messages: without user:password@ or a query string, which may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else url.split("?", 1)[0]


def _reason(error: Exception) -> str | None:
    """What went wrong with a request, in a line; None for an exception that is a bug here, not a fault there."""
    import openai

    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {_message(error)}"
    if isinstance(error, openai.OpenAIError):  # connection errors, timeouts
        return f"{type(error).__name__}: {error}"
    if isinstance(error, ValueError):  # a 200 whose JSON body does not parse: the client raises, not returns
        return f"malformed response: {type(error).__name__}: {error}"
    return None


def _retryable(error: Exception) -> bool:
    """What the `openai` client retries: connection errors and timeouts; 408, 409, 429 and 5xx, unless the server
    says otherwise in x-should-retry."""
    import openai

    if isinstance(error, openai.APIConnectionError):  # APITimeoutError is one
        return True
    if not isinstance(error, openai.APIStatusError):
        return False
    should = error.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return error.status_code in (408, 409, 429) or error.status_code >= 500


def _backoff(retry: int, error: Exception) -> float:
    """Seconds before retry `retry + 1`: the server's Retry-After (up to a minute), else 0.5 s doubling to 8 s, less
    up to a quarter at random so that requests failed together do not all come back together."""
    response = getattr(error, "response", None)
    headers = response.headers if response is not None else {}
    wait = None
    try:
        if headers.get("retry-after-ms"):
            wait = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after"):
            value = headers["retry-after"]
            try:
                wait = float(value)
            except ValueError:  # an HTTP date
                wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        wait = None
    if wait is not None and 0 <= wait <= 60:
        return wait
    return min(0.5 * 2**retry, 8.0) * (1 - 0.25 * random.random())


def redact(text: str, key: str | None) -> str:
    """`text` with the API key, and any 8 characters in a row of it, replaced by '***'. A failure reason is
    journalled and written to failed.jsonl, and some servers echo the key they were sent ("Incorrect API key
    provided: sk-...") whole or in part."""
    if not key or key == "EMPTY":
        return text
    text = text.replace(key, "***")
    for start in range(max(len(key) - 7, 0)):
        text = text.replace(key[start : start + 8], "***")
    return text


def endpoint_complete(endpoint: RemoteEndpoint, log: Callable[[str], None] | None = None):
    """`complete(messages, params, extras, on_done) -> results` over an OpenAI-compatible endpoint: the model call
    the chat judge and the chat injector make. `log`: where retry lines go (see `RemoteChat`)."""
    chat = RemoteChat(endpoint, log=log)

    def complete(messages, params, extras, on_done=None):
        return chat.run(messages, params, on_done=on_done, extras=extras)

    return complete


def local_complete(model: str, batch_size: int = 8):
    """The same over a transformers VLM in this process (hub id, path or world:<name>), in batches."""
    from vlpref.models.chat_api import from_openai_messages
    from vlpref.models.names import resolve_model
    from vlpref.models.vlm import VLM, Chat

    vlm = VLM.load(resolve_model(model))

    def complete(messages, params, extras, on_done=None):
        results = []
        for start in range(0, len(messages), batch_size):
            batch = [m() if callable(m) else m for m in messages[start : start + batch_size]]
            chats = [Chat(*from_openai_messages(m)) for m in batch]
            for offset, g in enumerate(vlm.generate(chats, params[start : start + batch_size], batch_size)):
                results.append(Completion(g.text, g.finish_reason, g.prompt_tokens, len(g.token_ids)))
                if on_done is not None:
                    on_done(start + offset, results[-1])
        return results

    return complete


def _message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(error, "message", error))
