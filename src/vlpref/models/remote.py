"""Any OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, OpenAI, Gemini's compatible API, `vlpref serve`).

    >>> endpoint = RemoteEndpoint(base_url="http://127.0.0.1:8000/v1", model="world-base")
    >>> results = RemoteChat(endpoint).run([messages_1, messages_2], [params, params])

Requests run concurrently (asyncio, at most `concurrency` in flight). Transport faults are retried by the `openai`
client itself: connection errors, timeouts, 408/409/429 and 5xx, with exponential backoff and jitter, honouring
Retry-After. What still fails after `max_retries` comes back as a `Failure` with its reason: the caller journals
it and a later run retries it. A result is handed to `on_done` the moment it arrives, so it can be journalled
before the next one lands.

The API key is read from the environment variable `api_key_env` or from `api_key_file`, at the moment the client
is made; it is never stored on a config, written to a journal or output, or put in a log line.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class RemoteChat:
    def __init__(self, endpoint: RemoteEndpoint):
        self.endpoint = endpoint

    def _client(self):
        from openai import AsyncOpenAI

        e = self.endpoint
        return AsyncOpenAI(base_url=e.base_url, api_key=e.api_key(), timeout=e.timeout_s, max_retries=e.max_retries)

    async def _one(self, client, semaphore, messages, params: DecodingParams, extra: dict[str, Any]):
        import openai

        async with semaphore:
            if callable(messages):  # built only now: a run of 80k image prompts never holds them all in memory
                messages = messages()
            try:
                response = await client.chat.completions.create(
                    model=self.endpoint.model, messages=messages, **request_args(params), **extra)
            except openai.APIStatusError as error:
                return Failure(redact(f"HTTP {error.status_code}: {_message(error)}", client.api_key))
            except (openai.APIConnectionError, openai.APITimeoutError) as error:
                return Failure(redact(f"{type(error).__name__}: {error}", client.api_key))
            except openai.OpenAIError as error:
                return Failure(redact(f"{type(error).__name__}: {error}", client.api_key))
            except ValueError as error:  # a 200 whose JSON body does not parse: the client raises, not returns
                return Failure(redact(f"malformed response: {type(error).__name__}: {error}", client.api_key))
        if not getattr(response, "choices", None):
            return Failure("malformed response: no choices")
        choice = response.choices[0]
        text = choice.message.content if choice.message is not None else None
        if text is None:
            return Failure("malformed response: no message content")
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
                results[i] = await self._one(client, semaphore, messages[i], params[i], extra)
                if on_done is not None:
                    on_done(i, results[i])

            try:
                await asyncio.gather(*[task(i) for i in range(len(messages))])
            finally:
                await client.close()
            return results

        return asyncio.run(main())


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


def endpoint_complete(endpoint: RemoteEndpoint):
    """`complete(messages, params, extras, on_done) -> results` over an OpenAI-compatible endpoint: the model call
    the chat judge and the chat injector make."""
    chat = RemoteChat(endpoint)

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
