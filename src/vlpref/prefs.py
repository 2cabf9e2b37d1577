"""A paper's whole data stage in one YAML: sample, judge, pairs. `vlpref prefs --config RECIPE --out DIR`.

    vlpref prefs --config recipes/seva/data_world.yaml --out runs/seva-data
    # -> runs/seva-data/candidates, runs/seva-data/annotations (if the recipe judges), runs/seva-data/pairs

The stage commands read the same file: `vlpref sample --config RECIPE` takes its `sample` section, and so on, so a
stage can be rerun (or resumed) on its own. Each stage resumes from its journal, so rerunning `vlpref prefs` after
a crash redoes nothing that finished.

This module is where the data stages meet the shapes world: the stages (candidates/, annotations/, pairs/) know
nothing of it and take what they need from their caller. `run_sample`, `run_judge` and `run_pairs` are the stages as
the commands run them: an unset prompts folder becomes the world's prefs split (built once under OUT/prompts), the
oracle judge backend is the world's scene-graph judge, and the world injector is the scene-graph rewriter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vlpref.annotations.judge import JudgeConfig, judge
from vlpref.candidates.sample import SampleConfig, sample
from vlpref.config import StrictModel
from vlpref.data.schema import Annotation, Candidate, PreferencePair
from vlpref.errors import ConfigError, VlprefError
from vlpref.pairs.build import PairsConfig, build_pairs


class DataRecipe(StrictModel):
    recipe: Literal["preference-data"] = "preference-data"
    method: Literal["vlfeedback", "li-lin-pei", "seva", "povid"] = Field(
        description="which paper's data this builds (its pair rule is `pairs.strategy`)")
    sample: SampleConfig | None = Field(default=None, description="none: the strategy needs no sampling (povid)")
    judge: JudgeConfig | None = Field(default=None, description="none: the strategy needs no ratings (seva, povid)")
    pairs: PairsConfig


def world_prompts(out: Path, images: int, seed: int, tasks: tuple[str, ...] | None = None) -> Path:
    """The shapes world's prefs split (`images` scenes, these task types; default every one), built once under
    out/prompts."""
    from vlpref.world.tasks import TASK_GROUPS, build_split

    root = Path(out) / "prompts"
    if not (root / "records.jsonl").is_file():
        build_split(root, "prefs", images, tasks=tasks or TASK_GROUPS, seed=seed)
    return root


def run_sample(config: SampleConfig, out: str | Path, log=print, overwrite: bool = True) -> list[Candidate]:
    """`overwrite` false (the `sample` command without --overwrite): refuse an OUT that holds another run."""
    if not overwrite:
        check_sample_out(Path(out), config)
    if config.prompts is None:
        root = world_prompts(Path(out), config.world_images, config.seed, tuple(config.world_tasks))
        config = config.model_copy(update={"prompts": str(root)})
    return sample(config, out, log=log)


def check_sample_out(out: Path, config: SampleConfig) -> None:
    """OUT may be new, empty, or this same sampling run (to resume it: its journal, and candidates made with the
    same settings); anything else is another run's or another dataset, which sampling would overwrite."""
    from vlpref.data.store import META_FILE, read_meta

    if not out.is_dir() or not any(out.iterdir()):
        return
    hint = "choose a new folder or pass --overwrite"
    if not (out / META_FILE).is_file():
        if (out / "journal.sqlite").is_file() or (out / "prompts" / META_FILE).is_file():
            return  # a run that stopped before writing its candidates (the world prompts are built first)
        raise VlprefError(f"--out {out} is not empty and holds no sampling run; {hint}")
    meta = read_meta(out)
    if meta["kind"] != "candidates":
        raise VlprefError(f"--out {out} holds {meta['kind']}, which sampling would overwrite; {hint}")
    prompts = Path(config.prompts) if config.prompts is not None else out / "prompts"
    mine = config.model_dump(mode="json", exclude={"prompts"})
    theirs = {k: v for k, v in (meta.get("config") or {}).items() if k != "prompts"}
    if theirs != mine or meta.get("prompts") != str(prompts.resolve()):
        raise VlprefError(f"--out {out} holds candidates sampled with other settings (another run); {hint}")


def run_judge(config: JudgeConfig, candidates: str | Path, out: str | Path, log=print) -> list[Annotation]:
    oracle = None
    if config.backend == "oracle":
        from vlpref.world.judge import OracleJudge

        oracle = OracleJudge()
    return judge(config, candidates, out, log=log, oracle=oracle)


def run_pairs(config: PairsConfig, out: str | Path, log=print) -> list[PreferencePair]:
    if config.strategy in ("povid", "image-contrast") and config.prompts is None:
        root = world_prompts(Path(out), config.world_images, config.seed)
        config = config.model_copy(update={"prompts": str(root)})
    injector = None
    if config.strategy == "povid" and config.injector.backend == "world":
        from vlpref.world.inject import WorldInjector

        injector = WorldInjector(seed=config.seed)
    return build_pairs(config, out, log=log, injector=injector)


def run_recipe(recipe: DataRecipe, out: str | Path, log=print) -> None:
    out = Path(out)
    strategy = recipe.pairs.strategy
    needs = {"vlfeedback": ("sample", "judge"), "helpsteer": ("sample", "judge"), "seva": ("sample",),
             "povid": (), "image-contrast": ()}[strategy]
    for stage in needs:
        if getattr(recipe, stage) is None:
            raise ConfigError(f"recipe: strategy {strategy} needs a {stage} section")
    if strategy == "seva" and recipe.sample.augment is None:  # else every pair is skipped, after all the sampling
        raise ConfigError("recipe: strategy seva needs sample.augment (the augmented images its rejected answers "
                          "are sampled on), e.g. augment: {op: diffusion}")
    pairs = recipe.pairs
    if recipe.sample is not None:
        run_sample(recipe.sample, out / "candidates", log=log)
        pairs = pairs.model_copy(update={"candidates": str(out / "candidates")})
    if recipe.judge is not None:
        run_judge(recipe.judge, out / "candidates", out / "annotations", log=log)
        pairs = pairs.model_copy(update={"annotations": str(out / "annotations")})
    run_pairs(pairs, out / "pairs", log=log)


def stage_config(data: dict, stage: str) -> dict:
    """The `stage` section of a data recipe (a dict from YAML); other YAML is returned as it is."""
    if data.get("recipe") != "preference-data":
        return data
    section = data.get(stage)
    if section is None:
        raise ConfigError(f"this recipe has no {stage} section")
    return section
