"""`vlpref world generate | pretrain | eval` end to end, with a training run short enough for CI."""

from __future__ import annotations

import json

from tests.test_cli import vlpref


def test_generate_pretrain_eval(tmp_path):
    out = vlpref("world", "generate", "--out", str(tmp_path / "eval"), "--images", "8", "--split", "eval")
    assert out.returncode == 0, out.stderr
    assert "over 8 scenes" in out.stderr
    (tmp_path / "quick.yaml").write_text(
        "recipe: world-pretrain\n"
        "eval_images: 10\n"
        "base: {name: quick, hidden_size: 32, scenes: 20, steps: 12, batch_size: 4, warmup_steps: 2, log_every: 6}\n"
        "pool:\n"
        "  - {name: quick-2, hidden_size: 32, scenes: 20, steps: 6, batch_size: 4, warmup_steps: 2, log_every: 6,\n"
        "     pope_first_steps: 3}\n"
    )
    out = vlpref("world", "pretrain", "--config", str(tmp_path / "quick.yaml"), "--out", str(tmp_path / "m"),
                 "--pool")
    assert out.returncode == 0, out.stderr
    summaries = json.loads((tmp_path / "m" / "world_models.json").read_text())
    assert [s["name"] for s in summaries] == ["quick", "quick-2"]
    assert all(0 <= s["metrics"]["chair_i"] <= 1 and "pope_f1_adversarial" in s["metrics"] for s in summaries)
    assert (tmp_path / "m" / "quick" / "model.safetensors").is_file()
    out = vlpref("world", "eval", str(tmp_path / "m" / "quick"), "--data", str(tmp_path / "eval"))
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) >= {"chair_s", "chair_i", "coverage", "pope_f1_random"}


def test_unknown_split_and_task():
    assert "unknown split 'train'" in vlpref("world", "generate", "--out", "x", "--split", "train").stderr
    assert "unknown task(s) caption" in vlpref("world", "generate", "--out", "x", "--tasks", "caption").stderr
