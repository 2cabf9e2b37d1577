"""`vlpref bench …`: speed figures as JSON (targets live here and in docs/benchmarks.md, never in timed tests).

    vlpref bench sample --json runs/bench-sample.json      # batched generation vs a one-prompt-at-a-time loop
    vlpref bench judge --json runs/bench-judge.json        # concurrent judging vs the latency bound
    vlpref bench dpo --json runs/bench-dpo.json            # our DPO step vs TRL's DPOTrainer (bench/dpo.py)

- `sample`: greedy answers to the same prompts, once through `VLM.generate` in left-padded batches, once one prompt at
  a time (what the papers' generation scripts do). Keys: `speedup` (loop seconds / batched seconds) and
  `outputs_identical`. Target: speedup >= 5 (on a GPU; see docs/benchmarks.md for the CPU figure).
- `judge`: `vlpref judge` with an OpenAI-compatible endpoint that answers every request after a fixed latency, as a
  remote API does. With `concurrency` requests in flight, the best possible time is ceil(n / concurrency) waves of
  one latency each (`bound_requests_per_s` = n / that time); `efficiency` is the measured rate over it.
  Target: efficiency >= 0.9.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI, Request

from vlpref.data.schema import DecodingParams


def bench_sample(model: str = "world:world-base", prompts: int = 64, batch_size: int = 16, max_new_tokens: int = 48,
                 dtype: str = "float32", device: str | None = None) -> dict:
    import tempfile

    from vlpref.data.store import read_records
    from vlpref.models.names import resolve_model
    from vlpref.models.vlm import VLM, Chat
    from vlpref.world.tasks import build_split

    with tempfile.TemporaryDirectory() as tmp:
        build_split(tmp, "prefs", max(1, prompts // 4), tasks=("describe", "open", "qa", "relation"))
        records = read_records(tmp)[:prompts]
        chats = [Chat.from_prompt(p, tmp) for p in records]
    vlm = VLM.load(resolve_model(model), dtype=dtype, device=device)
    greedy = DecodingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    vlm.generate(chats[:batch_size], greedy, batch_size=batch_size)  # warm-up, at both batch sizes
    vlm.generate(chats[:1], greedy, batch_size=1)
    start = time.perf_counter()
    batched = vlm.generate(chats, greedy, batch_size=batch_size)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    looped = [vlm.generate([chat], greedy, batch_size=1)[0] for chat in chats]
    loop_s = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for g in batched)
    return {"benchmark": "sample", "model": model, "device": str(vlm.device), "dtype": dtype, "prompts": len(chats),
            "batch_size": batch_size, "max_new_tokens": max_new_tokens, "batched_s": round(batched_s, 3),
            "loop_s": round(loop_s, 3), "speedup": round(loop_s / batched_s, 2),
            "batched_tokens_per_s": round(tokens / batched_s, 1),
            "outputs_identical": [g.text for g in batched] == [g.text for g in looped]}


def latency_app(latency_s: float):
    """An OpenAI-compatible endpoint that answers after `latency_s` (concurrently, like a remote API), with a
    VLFeedback-format rating for every '<text k>' the request lists."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        count = len(re.findall(r"^- <text \d+> ", text.split("## Annotation")[-1], re.MULTILINE))
        await asyncio.sleep(latency_s)
        blocks = [f"#### {aspect} Assessment\n" + "\n".join(
            f"##### Output for Text {k + 1}\nRating: {1 + (k % 5)}\nRationale: r" for k in range(count))
            for aspect in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")]
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "\n\n".join(blocks)},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}

    return app


@contextmanager
def latency_server(latency_s: float):
    """`latency_app` in its own process (so the server never competes with the judge for the GIL); yields the
    base URL."""
    import urllib.request

    from vlpref.serve import free_port

    port = free_port()
    code = (f"import uvicorn; from vlpref.bench.generation import latency_app; "
            f"uvicorn.run(latency_app({latency_s!r}), host='127.0.0.1', port={port}, log_level='error')")
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers (404: the latency app has no /models): it is up
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the latency server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


def bench_judge(prompts: int = 128, latency_s: float = 1.0, concurrency: int = 16) -> dict:
    from vlpref.annotations.judge import JudgeConfig, judge
    from vlpref.data.schema import Candidate
    from vlpref.data.store import read_records, write_records
    from vlpref.models.remote import RemoteEndpoint
    from vlpref.world.tasks import build_split

    with tempfile.TemporaryDirectory() as tmp, latency_server(latency_s) as url:
        root = Path(tmp)
        build_split(root / "prompts", "prefs", max(1, prompts // 8), tasks=("describe", "qa", "relation"))
        chosen = read_records(root / "prompts")[:prompts]
        cands = [Candidate(id=f"{p.id}/m/{i}", prompt_id=p.id, model_id="m", text=f"answer {i}")
                 for p in chosen for i in range(4)]
        write_records(root / "cands", "candidates", cands, prompts=str(root / "prompts"))
        endpoint = RemoteEndpoint(base_url=url, model="judge", api_key_env=None, concurrency=concurrency)
        config = JudgeConfig(backend="openai", endpoint=endpoint, structured="off", parse_retries=0)
        judge(config, root / "cands", root / "warm-up", log=lambda _: None)  # imports and connections, untimed
        start = time.perf_counter()
        annotations = judge(config, root / "cands", root / "judged", log=lambda _: None)
        seconds = time.perf_counter() - start
    # The best possible time sends requests in full waves of `concurrency`, each taking `latency_s`.
    waves = math.ceil(len(chosen) / concurrency)
    rate, bound = len(chosen) / seconds, len(chosen) / (waves * latency_s)
    return {"benchmark": "judge", "prompts": len(chosen), "responses_per_prompt": 4, "latency_s": latency_s,
            "concurrency": concurrency, "seconds": round(seconds, 3), "requests_per_s": round(rate, 2),
            "bound_requests_per_s": round(bound, 2), "efficiency": round(rate / bound, 3),
            "parsed_ok": sum(a.parse_status == "ok" for a in annotations) / len(annotations)}

