"""`vlpref judge` and `vlpref sample` through a proxy that fails 30% of requests (429 with Retry-After, 500, 503,
timeouts, malformed JSON, bodies cut off): every item ends either done or listed as failed with its reason, and
reruns complete the failed ones to exactly what a fault-free run writes."""

from __future__ import annotations

import json
import subprocess

from PIL import Image

from tests.reliability.harness import FIGURES, VLPREF, ScriptedEndpoint, run, same_records, write_yaml
from tests.reliability.proxy import FAULTS, fault_proxy
from tests.reliability.test_crash_resume import judge_reply
from vlpref.data.schema import Candidate, Prompt, Turn
from vlpref.data.store import write_records
from vlpref.serve import build_app, serve_in_thread

SHARE = 0.3


def prompts_and_candidates(tmp_path, n: int = 30):
    prompts, cands = tmp_path / "prompts", tmp_path / "cands"
    (prompts / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), (0, 90, 200)).save(prompts / "images" / "a.png")
    items = [Prompt(id=f"p{i:02d}", images=["images/a.png"], turns=[Turn(role="user", text=f"<image>\nQ{i}?")])
             for i in range(n)]
    write_records(prompts, "prompts", items)
    write_records(cands, "candidates", [Candidate(id=f"{p.id}/m/{k}", prompt_id=p.id, model_id="m", text=t)
                                        for p in items for k, t in enumerate(["Blue.", "A cat."])],
                  prompts=str(prompts))
    return prompts, cands


def endpoint_config(url: str) -> dict:
    # one client retry and a short timeout, so that some items exhaust their retries and the rerun path runs
    return {"base_url": url, "model": "m", "api_key_env": None, "concurrency": 4, "max_retries": 1,
            "timeout_s": 1.0}


def until_complete(cmd: list[str], out, items: int, field: str, done) -> int:
    """Run `cmd` until it exits 0; after each failing run every item is done or in failed.jsonl with a reason."""
    for attempt in range(1, 8):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0:
            assert not (out / "failed.jsonl").exists()
            return attempt
        assert result.returncode == 2, result.stderr[-2000:]
        failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
        assert all(row["reason"] and row[field] for row in failed)
        FIGURES["items_failed_then_retried"] += len(failed)
        assert done() + len(failed) == items, "an item is neither done nor listed as failed"
    raise AssertionError("still failing after 7 runs")


def test_judge_through_a_faulty_proxy(tmp_path):
    _, cands = prompts_and_candidates(tmp_path)
    with serve_in_thread(build_app("m", ScriptedEndpoint(judge_reply, delay=0.0), max_batch=4)) as upstream:
        proxy = fault_proxy(upstream, SHARE, seed=7)
        with serve_in_thread(proxy) as url:
            config = write_yaml(tmp_path / "judge.yaml", {"backend": "openai", "structured": "off",
                                                          "endpoint": endpoint_config(url)})
            out = tmp_path / "faulty"

            def done() -> int:
                records = out / "records.jsonl"
                return len({json.loads(x)["prompt_id"] for x in records.read_text().splitlines()}) if \
                    records.exists() else 0

            runs = until_complete([*VLPREF, "judge", "--config", str(config), "--candidates", str(cands), "--out",
                                   str(out)], out, 30, "prompt", done)
        clean = write_yaml(tmp_path / "clean.yaml", {"backend": "openai", "structured": "off",
                                                     "endpoint": endpoint_config(upstream)})
        run([*VLPREF, "judge", "--config", str(clean), "--candidates", str(cands), "--out", str(tmp_path / "clean")])
    counts = proxy.state.counts
    _record(counts, runs)
    assert runs >= 2, "no item exhausted its retries; the rerun path was not exercised"
    assert sum(counts[f] for f in FAULTS) >= 0.2 * counts["requests"]
    same_records(out, tmp_path / "clean", replace=(url, upstream))  # the judge id names the endpoint's URL


def test_sample_through_a_faulty_proxy(tmp_path):
    prompts, _ = prompts_and_candidates(tmp_path, n=24)
    answer = ScriptedEndpoint(lambda text, tag: f"An answer to {text.strip()[-4:]}", delay=0.0)
    with serve_in_thread(build_app("m", answer, max_batch=4)) as upstream:
        proxy = fault_proxy(upstream, SHARE, seed=11)
        with serve_in_thread(proxy) as url:
            recipe = write_yaml(tmp_path / "sample.yaml", {"prompts": str(prompts), "pool": [
                {"model": "m", "backend": "openai", "endpoint": endpoint_config(url), "n": 2,
                 "decoding": {"temperature": 0.7, "max_new_tokens": 16}}]})
            out = tmp_path / "faulty"

            def done() -> int:
                records = out / "records.jsonl"
                return len(records.read_text().splitlines()) if records.exists() else 0

            runs = until_complete([*VLPREF, "sample", "--config", str(recipe), "--out", str(out)], out, 48,
                                  "candidate", done)
        clean = write_yaml(tmp_path / "clean.yaml", {"prompts": str(prompts), "pool": [
            {"model": "m", "backend": "openai", "endpoint": endpoint_config(upstream), "n": 2,
             "decoding": {"temperature": 0.7, "max_new_tokens": 16}}]})
        run([*VLPREF, "sample", "--config", str(clean), "--out", str(tmp_path / "clean")])
    _record(proxy.state.counts, runs)
    assert runs >= 2, "no request exhausted its retries; the rerun path was not exercised"
    same_records(out, tmp_path / "clean", replace=(url, upstream))


def _record(counts, runs: int) -> None:
    FIGURES["proxied_requests"] += counts["requests"]
    FIGURES["faults_injected"] += sum(counts[f] for f in FAULTS)
    for fault in FAULTS:
        FIGURES[f"fault_{fault}"] += counts[fault]
    FIGURES["faulty_runs_until_complete"] += runs
