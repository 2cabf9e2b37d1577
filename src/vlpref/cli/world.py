"""`vlpref world …`: the shapes world's scenes, its pretrained models and its evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlpref.cli.app import console, world_app
from vlpref.errors import VlprefError


@world_app.command("generate")
def world_generate(
    out: Annotated[Path, typer.Option(help="dataset folder to write (records.jsonl + images/)")],
    split: Annotated[str, typer.Option(help="sft | prefs | eval (disjoint scene seeds)")] = "eval",
    images: Annotated[int, typer.Option(help="number of scenes")] = 500,
    tasks: Annotated[str, typer.Option(help="comma-separated: describe, open, pope, qa (attribute and count "
                                            "questions), relation (yes/no)")] = "describe,open,pope,qa,relation",
    seed: int = 0,
):
    """Render scenes and write their task prompts with reference answers and scene graphs."""
    from vlpref.world.tasks import SPLIT_SEEDS, TASK_GROUPS, build_split

    if images < 1:
        raise VlprefError(f"--images must be at least 1, not {images}")
    if split not in SPLIT_SEEDS:
        raise VlprefError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip())
    unknown = set(chosen) - set(TASK_GROUPS)
    if unknown:
        raise VlprefError(f"unknown task(s) {', '.join(sorted(unknown))}; choose from {', '.join(TASK_GROUPS)}")
    prompts = build_split(out, split, images, tasks=chosen, seed=seed)
    console.print(f"[green]wrote {len(prompts)} prompts over {images} scenes[/] to {out}")


@world_app.command("pretrain")
def world_pretrain(
    out: Annotated[Path, typer.Option(help="folder for the model(s)")] = Path("models/world"),
    config: Annotated[Path | None, typer.Option(help="pretraining YAML (default: recipes/world_pretrain.yaml "
                                                        "values)")] = None,
    pool: Annotated[bool, typer.Option(help="also train the model pool (VLFeedback stand-in)")] = False,
    data: Annotated[Path | None, typer.Option(help="folder for the sft/ and eval/ scenes (built if missing; "
                                                  "default OUT/data)")] = None,
    evaluate: Annotated[bool, typer.Option(help="measure CHAIR / POPE on a held-out split after training")] = True,
):
    """Train the world's tiny LLaVA (and, with --pool, its model pool) by SFT on world data, on the CPU."""
    from vlpref.config import load_yaml
    from vlpref.world.pretrain import PoolConfig, run_pretrain

    cfg = load_yaml(PoolConfig, config) if config else PoolConfig()
    run_pretrain(cfg, out, data=data, pool=pool, evaluate=evaluate, log=console.print)


@world_app.command("eval")
def world_eval(
    model: Annotated[str | None, typer.Argument(help="model folder, hub id or world:<name> (default: "
                                                      "world:world-base)")]
    = None,
    out: Annotated[Path | None, typer.Option(help="run folder: results, answers, items, the journal (default: "
                                                  "runs/world-eval/<model name>; rerun to reuse the answers)")] = None,
    data: Annotated[Path | None, typer.Option(help="world eval split (default: built into OUT/eval-split)")] = None,
    images: Annotated[int, typer.Option(help="scenes in the eval split when it is built")] = 300,
    steer: Annotated[str | None, typer.Option(help="SteerLM models: ask for these attribute values (per task: "
                                                   "'describe=...;pope=...'), e.g. "
                                                   "'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4'")]
    = None,
):
    """The world benchmark (as `vlpref eval world`): greedy answers on held-out scenes, world-POPE per split,
    CHAIR_s/CHAIR_i, attribute/count/position/relation hallucination, coverage, oracle helpfulness/faithfulness."""
    from vlpref.cli.evaluate import world_benchmark

    world_benchmark(out, model, data, images, steer)
