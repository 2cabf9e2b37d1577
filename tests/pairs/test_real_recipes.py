"""Every real-model data recipe (recipes/*/data.yaml) runs end to end with small stand-ins substituted: the shapes
world's prompts for the paper's dataset, world models for the GPU pool, the world oracle and injector for the
GPT-4o / Gemini endpoints. Everything else (rubric, pool sizes and decoding, augmentation, pair rule) is the
recipe's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlpref.annotations.judge import JudgeConfig
from vlpref.config import load_yaml
from vlpref.data.store import read_meta
from vlpref.pairs.inject import InjectorConfig
from vlpref.prefs import DataRecipe, run_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*/data.yaml"))
WORLD = ["world:world-base", "world:world-mid", "world:world-early", "world:world-small"]


def substituted(recipe: DataRecipe) -> DataRecipe:
    updates = {"pairs": recipe.pairs.model_copy(update={"prompts": None, "world_images": 2,
                                                          "injector": InjectorConfig()})}
    if recipe.sample is not None:
        pool = [m.model_copy(update={"model": WORLD[i % len(WORLD)], "id": f"m{i}", "dtype": "float32", "device": None,
                                     "decoding": m.decoding.model_copy(update={"max_new_tokens": 16})})
                for i, m in enumerate(recipe.sample.pool)]
        updates["sample"] = recipe.sample.model_copy(update={"prompts": None, "world_images": 2, "pool": pool})
    if recipe.judge is not None:
        updates["judge"] = JudgeConfig(backend="oracle", rubric=recipe.judge.rubric)
    return recipe.model_copy(update=updates)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.parent.name)
def test_real_data_recipe_runs_with_stand_ins(path, tmp_path):
    recipe = load_yaml(DataRecipe, path)
    run_recipe(substituted(recipe), tmp_path / "out", log=lambda *a: None)
    assert read_meta(tmp_path / "out" / "pairs")["kind"] == "pairs"
    assert (tmp_path / "out" / "pairs" / "records.jsonl").read_text().strip()  # some pairs were made
