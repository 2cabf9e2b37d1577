"""The world models shipped with vlpref load by name and behave as the README says: useful, yet hallucinating."""

from __future__ import annotations

import json

import pytest

from vlpref.errors import VlprefError
from vlpref.evaluation.world import evaluate_world
from vlpref.models.names import SHIPPED, world_model_dir, world_model_names
from vlpref.models.vlm import VLM
from vlpref.world.tasks import build_split


def test_every_shipped_model_loads_by_name():
    names = world_model_names()
    assert names[0] == "world-base" and len(names) >= 3  # the base model and its pool
    for name in names:
        vlm = VLM.load(str(world_model_dir(name)))
        assert type(vlm.model).__name__ == "LlavaForConditionalGeneration"
    summaries = json.loads((SHIPPED / "world_models.json").read_text())
    assert all("chair_i" in s["metrics"] and "pope_f1_adversarial" in s["metrics"] for s in summaries)


def test_unknown_model_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("VLPREF_WORLD_MODELS", str(tmp_path))
    with pytest.raises(VlprefError, match=r"no world model 'nope'.*vlpref world pretrain"):
        world_model_dir("nope")


def test_base_model_is_useful_yet_hallucinates(tmp_path):
    """On held-out scenes the base model covers most objects but names absent ones too (the README's figures are
    on 300 scenes; this 60-scene sample only checks the character, with wide bounds)."""
    data = tmp_path / "eval"
    build_split(data, "eval", images=60, tasks=("describe", "pope"), seed=11)
    metrics = evaluate_world(VLM.load(str(world_model_dir("world-base"))), data)
    assert metrics["coverage"] > 0.5
    assert 0.02 < metrics["chair_i"] < 0.6
    for split in ("random", "popular", "adversarial"):  # yes/no existence well above chance (0.5)
        assert metrics[f"pope_accuracy_{split}"] > 0.65
