"""`vlpref eval world` writes the world benchmarks' JSON, markdown and plot; `vlpref eval compare` puts runs side
by side with deltas and names bad input."""

from __future__ import annotations

import json

from tests.test_cli import vlpref


def test_world_eval_then_compare(tmp_path):
    first = vlpref("eval", "world", "--images", "3", "--out", str(tmp_path / "base"))
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((tmp_path / "base" / "results.json").read_text())
    for key in ("pope_f1_random", "pope_f1_popular", "pope_f1_adversarial", "chair_s", "chair_i", "coverage",
                "attribute_hallucination", "count_hallucination", "relation_hallucination", "helpfulness",
                "faithfulness"):
        assert isinstance(results[key], float), key
    assert results["benchmark"] == "world" and 1 <= results["helpfulness"] <= 5
    assert "| chair_i ↓ |" in (tmp_path / "base" / "results.md").read_text()
    assert (tmp_path / "base" / "results.png").stat().st_size > 1000
    steered = vlpref("eval", "world", "--data", str(tmp_path / "base" / "eval-split"), "--steer",
                     "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4", "--out", str(tmp_path / "s"))
    assert steered.returncode == 0, steered.stderr[-2000:]
    cmp = vlpref("eval", "compare", str(tmp_path / "base"), str(tmp_path / "s"), "--out", str(tmp_path / "cmp"))
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert table.startswith("| metric | base | s |") and "| chair_i ↓ |" in table
    row = next(line for line in table.splitlines() if line.startswith("| coverage |"))
    assert row.count("(") == 1 and ("(+" in row or "(-" in row)  # one delta column, signed
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_compare_names_bad_input(tmp_path):
    (tmp_path / "a").mkdir()
    out = vlpref("eval", "compare", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "no results.json" in out.stderr
    one = vlpref("eval", "compare", str(tmp_path / "a"), "--out", str(tmp_path / "c"))
    assert one.returncode == 2 and "at least two run folders" in one.stderr


def test_the_built_split_follows_world_images(tmp_path):
    from vlpref.evaluation.run import EvalConfig, evaluate

    small = evaluate(EvalConfig(benchmark="world", world_images=2, max_new_tokens=4), tmp_path, log=lambda *_: None)
    split = tmp_path / "eval-split" / "records.jsonl"
    lines = len(split.read_text().splitlines())
    evaluate(EvalConfig(benchmark="world", world_images=3, max_new_tokens=4), tmp_path, log=lambda *_: None)
    assert len(split.read_text().splitlines()) > lines  # rebuilt with 3 scenes, not the 2-scene split reused
    assert small["benchmark"] == "world"
