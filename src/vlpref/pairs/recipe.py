"""A paper's whole data stage in one YAML: sample, judge, pairs. `vlpref prefs --config RECIPE --out DIR`.

    vlpref prefs --config recipes/seva/data_world.yaml --out runs/seva-data
    # -> runs/seva-data/candidates, runs/seva-data/annotations (if the recipe judges), runs/seva-data/pairs

The stage commands read the same file: `vlpref sample --config RECIPE` takes its `sample` section, and so on, so a
stage can be rerun (or resumed) on its own. Each stage resumes from its journal, so rerunning `vlpref prefs` after
a crash redoes nothing that finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vlpref.annotations.judge import JudgeConfig, judge
from vlpref.candidates.sample import SampleConfig, sample
from vlpref.config import StrictModel
from vlpref.errors import ConfigError
from vlpref.pairs.build import PairsConfig, build_pairs

STAGES = ("sample", "judge", "pairs")


class DataRecipe(StrictModel):
    recipe: Literal["preference-data"] = "preference-data"
    method: str = Field(description="which paper's data this builds, for people reading the file")
    sample: SampleConfig | None = Field(default=None, description="none: the strategy needs no sampling (povid)")
    judge: JudgeConfig | None = Field(default=None, description="none: the strategy needs no ratings (seva, povid)")
    pairs: PairsConfig


def run_recipe(recipe: DataRecipe, out: str | Path, log=print) -> None:
    out = Path(out)
    strategy = recipe.pairs.strategy
    needs = {"vlfeedback": ("sample", "judge"), "helpsteer": ("sample", "judge"), "seva": ("sample",),
             "povid": (), "image-contrast": ()}[strategy]
    for stage in needs:
        if getattr(recipe, stage) is None:
            raise ConfigError(f"recipe: strategy {strategy} needs a {stage} section")
    pairs = recipe.pairs
    if recipe.sample is not None:
        sample(recipe.sample, out / "candidates", log=log)
        pairs = pairs.model_copy(update={"candidates": str(out / "candidates")})
    if recipe.judge is not None:
        judge(recipe.judge, out / "candidates", out / "annotations", log=log)
        pairs = pairs.model_copy(update={"annotations": str(out / "annotations")})
    build_pairs(pairs, out / "pairs", log=log)


def stage_config(data: dict, stage: str) -> dict:
    """The `stage` section of a data recipe (a dict from YAML); other YAML is returned as it is."""
    if data.get("recipe") != "preference-data":
        return data
    section = data.get(stage)
    if section is None:
        raise ConfigError(f"this recipe has no {stage} section")
    return section
