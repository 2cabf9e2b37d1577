"""`vlpref serve` over real HTTP: the OpenAI client talks to it, batching changes no seeded answer, bad requests get
a 400 that names the problem, and `vlpref sample` against it resumes after SIGKILL without repeating requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.candidates.test_sample import _kill_when
from vlpref.data.schema import DecodingParams, Turn
from vlpref.data.store import read_records
from vlpref.models.chat_api import from_openai_messages, to_openai_messages
from vlpref.models.remote import Completion, Failure, RemoteChat, RemoteEndpoint
from vlpref.serve import free_port
from vlpref.world.tasks import build_split


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = root / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "vlpref", "serve", "world:world-early", "--port", str(port),
                             "--max-batch", "4", "--log-requests", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    yield {"url": url, "log": log, "root": root}
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prompts")
    build_split(root, "prefs", 2, tasks=("describe", "qa"))
    return root


def test_messages_roundtrip(images):
    turns = [Turn(role="system", text="Be brief."), Turn(role="user", text="<image> and <image>: which is red?")]
    back, decoded = from_openai_messages(to_openai_messages(turns, images[:2]))
    assert back == turns
    assert [d.tobytes() for d in decoded] == [i.convert("RGB").tobytes() for i in images[:2]]
    with pytest.raises(ValueError, match="data URL"):
        from_openai_messages([{"role": "user", "content": [{"type": "image_url",
                                                             "image_url": {"url": "file:///etc/passwd"}}]}])


def endpoint(server, **kw) -> RemoteEndpoint:
    return RemoteEndpoint(base_url=server["url"], model="world-early", api_key_env=None, **kw)


def test_seeded_answers_do_not_depend_on_batching(server, prompts):
    """The same seeded requests, sent all at once (batched together) and one at a time, give the same texts."""
    from vlpref.models.vlm import Chat

    chosen = read_records(prompts)[:6]
    messages = [to_openai_messages(p.query, Chat.from_prompt(p, prompts).images) for p in chosen]
    params = [DecodingParams(temperature=1.0, max_new_tokens=16, seed=100 + i) for i in range(len(chosen))]
    together = RemoteChat(endpoint(server, concurrency=6)).run(messages, params)
    alone = RemoteChat(endpoint(server, concurrency=1)).run(messages, params)
    assert all(isinstance(r, Completion) for r in together)
    assert [r.text for r in together] == [r.text for r in alone]
    assert together[0].prompt_tokens > 0 and together[0].completion_tokens > 0


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("body, status, words", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]},
     400, "data URL"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, 400, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o"}, 404, "gpt-4o"),
    ({"messages": []}, 400, "non-empty"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0]"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, 400, "n must"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": 2**63}, 400, "seed must"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}, 400, "max_tokens must"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens must"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}, 400, "max_tokens must"),
])
def test_bad_requests_get_a_clear_error(server, body, status, words):
    code, reply = post(server["url"], body)
    assert code == status and words in reply["error"]["message"]


def test_failure_is_reported_not_raised(server):
    result = RemoteChat(RemoteEndpoint(base_url=server["url"], model="other", api_key_env=None, max_retries=0)).run(
        [[{"role": "user", "content": "hi"}]], [DecodingParams()])
    assert isinstance(result[0], Failure) and "HTTP 404" in result[0].reason


def test_sample_via_endpoint_resumes_after_sigkill(server, prompts, tmp_path):
    recipe = tmp_path / "remote.yaml"
    recipe.write_text(
        f"prompts: {prompts}\n"
        "pool:\n  - backend: openai\n    n: 2\n    decoding: {temperature: 1.0, max_new_tokens: 24}\n"
        f"    endpoint: {{base_url: '{server['url']}', model: world-early, api_key_env: null, concurrency: 2}}\n")
    vlpref = [sys.executable, "-m", "vlpref", "sample", "--config", str(recipe), "--out"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    before = len(server["log"].read_text().splitlines()) if server["log"].exists() else 0
    at_kill = _kill_when([*vlpref, str(killed)], killed / "journal.sqlite", rows=4)
    rerun = subprocess.run([*vlpref, str(killed)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    total = len(read_records(prompts)) * 2
    assert f"{at_kill} already done, {total - at_kill} to run" in " ".join(rerun.stderr.split())
    lines = server["log"].read_text().splitlines()[before:]
    bodies = [json.loads(line)["body"] for line in lines]
    # Every request reached the server; only requests in flight at the kill (<= concurrency) were sent twice.
    assert len(set(bodies)) == total and len(bodies) - total <= 2
    subprocess.run([*vlpref, str(whole)], capture_output=True, check=True)
    assert (killed / "records.jsonl").read_bytes() == (whole / "records.jsonl").read_bytes()


def test_concurrent_requests_all_answered(server, prompts):
    from vlpref.models.vlm import Chat

    p = read_records(prompts)[0]
    body = {"messages": to_openai_messages(p.query, Chat.from_prompt(p, prompts).images), "max_tokens": 4,
            "temperature": 0}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: post(server["url"], body), range(8)))
    assert [c for c, _ in replies] == [200] * 8
    assert len({r["choices"][0]["message"]["content"] for _, r in replies}) == 1  # greedy: one answer


def test_batcher_groups_waiting_requests():
    """Requests that arrive together run as one generate call (up to max_batch), each gets its own result."""
    import asyncio

    from vlpref.serve import Batcher

    sizes = []

    def generate(chats, params):
        sizes.append(len(chats))
        time.sleep(0.05)
        return [f"{c}:{p.seed}" for c, p in zip(chats, params, strict=True)]

    async def main():
        batcher = Batcher(generate, max_batch=4, max_wait_ms=20)
        worker = asyncio.create_task(batcher.run())
        results = await asyncio.gather(*[batcher.submit(f"c{i}", DecodingParams(seed=i)) for i in range(10)])
        worker.cancel()
        return results

    assert asyncio.run(main()) == [f"c{i}:{i}" for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) <= 4


def test_judge_via_endpoint_resumes_after_sigkill(server, prompts, tmp_path):
    """`vlpref judge` against the served model, killed mid-run: the rerun sends only unfinished calls and writes
    what an uninterrupted run writes. (The tiny world model is no judge: its answers do not parse, and are kept as
    'failed' annotations with their raw text, which is exactly what must survive the kill.)"""
    from vlpref.candidates.sample import PoolMember, SampleConfig, sample

    cands = tmp_path / "cands"
    sample(SampleConfig(prompts=str(prompts), pool=[PoolMember(model="world:world-early", n=2, decoding=DecodingParams(
        temperature=1.0, max_new_tokens=16))]), cands)
    recipe = tmp_path / "judge.yaml"
    recipe.write_text(
        "backend: openai\nparse_retries: 0\ndecoding: {temperature: 0.0, max_new_tokens: 48}\n"
        f"endpoint: {{base_url: '{server['url']}', model: world-early, api_key_env: null, concurrency: 2}}\n")
    vlpref = [sys.executable, "-m", "vlpref", "judge", "--config", str(recipe), "--candidates", str(cands), "--out"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    before = len(server["log"].read_text().splitlines()) if server["log"].exists() else 0
    at_kill = _kill_when([*vlpref, str(killed)], killed / "journal.sqlite", rows=3)
    rerun = subprocess.run([*vlpref, str(killed)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    total = len(read_records(prompts))
    assert f"{at_kill} already judged, {total - at_kill} to judge" in " ".join(rerun.stderr.split())
    bodies = [json.loads(line)["body"] for line in server["log"].read_text().splitlines()[before:]]
    assert len(set(bodies)) == total and len(bodies) - total <= 2  # only in-flight calls were sent twice
    subprocess.run([*vlpref, str(whole)], capture_output=True, check=True)
    assert (killed / "records.jsonl").read_bytes() == (whole / "records.jsonl").read_bytes()
