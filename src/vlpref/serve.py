"""`vlpref serve MODEL`: an OpenAI-compatible chat endpoint over a local model, batching concurrent requests.

    vlpref serve world:world-base --port 8000             # http://127.0.0.1:8000/v1
    curl 127.0.0.1:8000/v1/models

For users without vLLM (CPU, laptops) it serves a policy or a judge to anything that speaks the OpenAI API,
vlpref's own remote backends included; vlpref's tests of every HTTP path talk to it over real HTTP.

- `POST /v1/chat/completions`: messages with text and base64 image data URLs (never fetched URLs or paths);
  `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`, `seed`, `n`. Streaming, tools and
  `response_format` are refused with a 400 naming the field, so a client knows to fall back to plain text.
- `GET /v1/models`: the one served model.
- Batching: requests wait up to `max_wait_ms` for others, then up to `max_batch` run as one left-padded batch
  (`VLM.generate`); a seeded request gives the same text whatever it is batched with.
- Bound to 127.0.0.1 unless told otherwise: a served model answers anyone who can reach the port.
- `request_log`: one JSON line per request (time, a hash of the body, tokens): an audit of what clients asked.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vlpref.data.schema import DecodingParams
from vlpref.errors import VlprefError
from vlpref.journal import content_key
from vlpref.models.chat_api import from_openai_messages

REFUSED = ("stream", "tools", "tool_choice", "functions", "response_format", "logprobs", "stop")


@dataclass
class _Pending:
    chat: Any
    params: DecodingParams
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Collects concurrent requests into batches for one `generate(chats, params)` at a time (a worker thread)."""

    def __init__(self, generate, max_batch: int = 16, max_wait_ms: float = 10.0):
        self.generate, self.max_batch, self.max_wait = generate, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1)  # the model runs one batch at a time

    async def submit(self, chat, params: DecodingParams):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(chat, params, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            try:
                await self._serve(batch)
            except Exception as error:  # noqa: BLE001 - never let the consumer die: later requests would hang
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)

    async def _serve(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
            except TimeoutError:
                break
        # A batch that fails is run again one request at a time, so a bad request fails alone, not with the
        # requests it happened to be batched with.
        for group in [batch] if len(batch) == 1 else [batch, *[[p] for p in batch]]:
            try:
                results = await loop.run_in_executor(
                    self.executor, self.generate, [p.chat for p in group], [p.params for p in group])
            except Exception as error:  # noqa: BLE001 - the request gets the error, the server lives on
                if len(group) == 1 and not group[0].future.done():
                    group[0].future.set_exception(error)
                continue
            for p, result in zip(group, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
            if group is batch:
                break


def _error(status: int, message: str, kind: str = "invalid_request_error"):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


SEED_LIMIT = 2**63 - 1  # torch generator seeds are signed 64-bit


def _params(body: dict[str, Any], n: int, max_tokens_limit: int) -> DecodingParams:
    """The request's decoding settings; ValueError (a 400) for values the model cannot run."""
    # `is None`, not `or`: a max_tokens of 0 is out of range and refused, not read as "unset"
    max_tokens = body.get("max_completion_tokens")
    max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
    max_tokens = 256 if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_tokens_limit:
        raise ValueError(f"max_tokens must be an integer from 1 to {max_tokens_limit} on this server")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= SEED_LIMIT - n):
        raise ValueError(f"seed must be an integer from 0 to {SEED_LIMIT - n}")
    return DecodingParams(temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0),
                          max_new_tokens=max_tokens, seed=seed)


def build_app(model_id: str, generate, max_batch: int = 16, max_wait_ms: float = 10.0,
              request_log: str | Path | None = None, chat_type=None, max_tokens_limit: int = 4096):
    """The FastAPI app serving `generate(chats, params) -> [Generation]` (e.g. `VLM.generate`) as `model_id`."""
    from contextlib import asynccontextmanager

    if chat_type is None:
        from vlpref.models.vlm import Chat as chat_type
    batcher = Batcher(generate, max_batch=max_batch, max_wait_ms=max_wait_ms)
    log_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="vlpref serve", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "vlpref"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        if body.get("model") not in (None, model_id):
            return _error(404, f"model {body.get('model')!r} is not served here; this server serves {model_id!r}",
                          "not_found_error")
        refused = [k for k in REFUSED if body.get(k) not in (None, False)]
        if refused:
            return _error(400, f"{refused[0]} is not supported by vlpref serve")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 16:
            return _error(400, "n must be an integer from 1 to 16")
        try:
            turns, images = from_openai_messages(body.get("messages"))
            params = _params(body, n, max_tokens_limit)
            if turns[-1].role != "user":
                raise ValueError("the last message must be the user's")
            chat = chat_type(turns, images)
        except ValueError as error:  # includes pydantic's ValidationError
            return _error(400, str(error).splitlines()[0] if "validation error" not in str(error) else str(error))
        # n > 1: each choice is its own request; a seeded request's choices take seeds seed, seed + 1, ...
        seeds = [None if params.seed is None else params.seed + i for i in range(n)]
        results = await asyncio.gather(*[batcher.submit(chat, params.model_copy(update={"seed": s})) for s in seeds])
        prompt_tokens = results[0].prompt_tokens
        completion_tokens = sum(len(r.token_ids) for r in results)
        if request_log is not None:
            line = json.dumps({"time": time.time(), "body": content_key(body), "n": n,
                               "completion_tokens": completion_tokens})
            with log_lock, open(request_log, "a") as f:
                f.write(line + "\n")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model_id,
            "choices": [{"index": i, "message": {"role": "assistant", "content": r.text},
                         "finish_reason": r.finish_reason} for i, r in enumerate(results)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens * n + completion_tokens},
        }

    return app


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1"):
    """Run an ASGI app on a free local port in a background thread; yields its base URL (".../v1").

    For notebooks, benchmarks and tests: `with serve_in_thread(build_app(...)) as url: ...`."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join()


def check_port(port: int) -> None:
    """A TCP port a server can bind (VlprefError naming --port otherwise)."""
    if not 1 <= port <= 65535:
        raise VlprefError(f"--port must be from 1 to 65535, not {port}")


def check_server_options(port: int, max_batch: int, max_wait_ms: float, max_tokens_limit: int) -> None:
    """Refuse settings the server would start with and then fail every request on (a batch of 0 answers 500)."""
    check_port(port)
    if max_batch < 1:
        raise VlprefError(f"--max-batch must be at least 1, not {max_batch}")
    if not max_wait_ms >= 0:
        raise VlprefError(f"--max-wait-ms must be 0 or more, not {max_wait_ms}")
    if max_tokens_limit < 1:
        raise VlprefError(f"--max-tokens-limit must be at least 1, not {max_tokens_limit}")


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, name: str | None = None, dtype: str = "float32",
          device: str | None = None, max_batch: int = 16, max_wait_ms: float = 10.0,
          request_log: str | Path | None = None, max_tokens_limit: int = 4096, log=print) -> None:
    """Load `model` (hub id, path or world:<name>) and serve it until interrupted."""
    import uvicorn

    from vlpref.models.names import resolve_model, short_name
    from vlpref.models.vlm import VLM

    check_server_options(port, max_batch=max_batch, max_wait_ms=max_wait_ms, max_tokens_limit=max_tokens_limit)

    vlm = VLM.load(resolve_model(model), dtype=dtype, device=device)
    model_id = name or short_name(model)
    app = build_app(model_id, lambda chats, params: vlm.generate(chats, params, batch_size=max_batch),
                    max_batch=max_batch, max_wait_ms=max_wait_ms, request_log=request_log,
                    max_tokens_limit=max_tokens_limit)
    log(f"serving {model_id} at http://{host}:{port}/v1 (batches of up to {max_batch})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
