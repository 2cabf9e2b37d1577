"""`vlpref eval`: run a benchmark, score answers made elsewhere, compare runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlpref.cli.app import ConfigOpt, console, eval_app, recipe_config
from vlpref.errors import VlprefError


@eval_app.callback(invoke_without_command=True)
def eval_run(
    ctx: typer.Context,
    benchmark: Annotated[str | None, typer.Option(help="pope, mme, chair, mmhal, mmvet, llava-bench, mtbench, "
                                                       "amber or world")] = None,
    model: Annotated[str | None, typer.Option(help="hub id, path or world:<name>")] = None,
    data: Annotated[Path | None, typer.Option(help="your local copy of the benchmark's official files")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder: results, answers, judge outputs, the journal (world: "
                                                  "also the built eval split; default runs/world-eval/<model name>)")]
    = None,
    config: ConfigOpt = None,
    images: Annotated[str | None, typer.Option(help="the images folder, where it is not inside --data; world: the "
                                                    "number of scenes in the eval split it builds")] = None,
    style: Annotated[str | None, typer.Option(help="prompt format: llava (default), official or lmms-eval")] = None,
    scoring: Annotated[str | None, typer.Option(help="pope: official (default) or lmms-eval")] = None,
    judge_url: Annotated[str | None, typer.Option(help="judge: an OpenAI-compatible base URL")] = None,
    judge_model: Annotated[str | None, typer.Option(help="judge: the model name the endpoint serves")] = None,
    judge_key_env: Annotated[str | None, typer.Option(help="judge: the environment variable holding the API key "
                                                           "(default OPENAI_API_KEY)")] = None,
    judge_prompt: Annotated[Path | None, typer.Option(help="judge: a file with the official judge prompt")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16")] = None,
    device: Annotated[str | None, typer.Option(help="e.g. cuda (default: cuda when available)")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="default: the benchmark's own setting")] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N questions (a smoke run)")] = None,
    steer: Annotated[str | None, typer.Option(help="world, SteerLM models: the attribute values to ask for (see "
                                                   "`vlpref eval world --help`)")] = None,
):
    """Generate a model's answers to a benchmark, judge them where needed (cached: a rerun makes no call) and score
    them exactly as the official scripts do."""
    if ctx.invoked_subcommand is not None:
        return
    if benchmark is None and config is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    world, world_images = (benchmark or _recipe_benchmark(config)) == "world", None
    if world:
        # one world entry point: the same defaults, split and output as `vlpref eval world` / `vlpref world eval`
        if data and images is not None:
            raise VlprefError("--images: world builds that many scenes only when --data is not given; "
                              "give one or the other")
        if not data:
            world_images = _scene_count(images)
            images = None
    if out is None and not world:
        raise VlprefError("--out is required")
    from vlpref.evaluation.run import EvalConfig, evaluate

    judge = {}
    if judge_url or judge_model or judge_key_env:
        judge = {"backend": "openai", "endpoint": {k: v for k, v in (
            ("base_url", judge_url), ("model", judge_model), ("api_key_env", judge_key_env)) if v}}
    if judge_prompt:
        judge["prompt"] = str(judge_prompt)
    cfg = recipe_config(EvalConfig, config, merge=("judge",), benchmark=benchmark, model=model,
                        data=str(data) if data else None, images=images, style=style,
                        scoring=scoring, dtype=dtype, device=device, batch_size=batch_size,
                        max_new_tokens=max_new_tokens, limit=limit, judge=judge or None,
                        world_images=world_images, steer=steer)
    out = out or _world_out(cfg.model)
    results = evaluate(cfg, out, log=console.print)
    _emit(results)
    console.print(f"[green]wrote[/] {out}/results.json, results.md, results.png and items.jsonl")


def _emit(results: dict) -> None:
    """The results, as JSON on stdout (logs and progress go to stderr), so `vlpref eval ... > results.json` works."""
    import json

    print(json.dumps(results, indent=2, default=str))


def _recipe_benchmark(config: Path | None) -> str | None:
    if config is None:
        return None
    from vlpref.config import read_yaml

    return read_yaml(config).get("benchmark")


def _scene_count(images: str | None) -> int | None:
    """World's --images is a number of scenes, never a folder."""
    if images is None:
        return None
    try:
        count = int(images)
    except ValueError:
        count = 0
    if count < 1:
        raise VlprefError(f"--images: world takes the number of scenes to build (a positive integer), not {images!r}")
    return count


def _world_out(model: str) -> Path:
    from vlpref.models.names import short_name

    return Path("runs/world-eval") / short_name(model)


@eval_app.command("score")
def eval_score(
    benchmark: Annotated[str, typer.Option(help="mme, pope, chair, mmhal, mmvet, llava-bench, mtbench or amber")],
    out: Annotated[Path, typer.Option(help="where results.json and results.md go")],
    answers: Annotated[Path | None, typer.Option(help="the model's answers in the official layout (pope: a JSONL "
                                                      "of question_id and text, LLaVA's merged file with "
                                                      "--questions, or the answers folder `vlpref eval` writes)")]
    = None,
    judge: Annotated[Path | None, typer.Option(help="the judge's outputs (mmhal, mmvet, llava-bench, mtbench)")]
    = None,
    labels: Annotated[list[Path] | None, typer.Option(help="pope: the label files coco_pope_<split>.json, one per "
                                                           "split: repeat the option, or give their folder")] = None,
    questions: Annotated[Path | None, typer.Option(help="pope: LLaVA's question file (llava_pope_test.jsonl), "
                                                        "whose `category` splits LLaVA's merged answer file")] = None,
    scoring: Annotated[str | None, typer.Option(help="pope: official (default) or lmms-eval")] = None,
    metadata: Annotated[Path | None, typer.Option(help="mmvet: mm-vet.json; amber: the annotations; chair: the "
                                                       "COCO annotations folder")] = None,
):
    """Score answers (and judge outputs) produced by any tool, exactly as the official scripts do."""
    from vlpref.evaluation.report import write_run
    from vlpref.evaluation.score import score

    results = score(benchmark, answers, judge, labels, metadata, questions, scoring)
    write_run({"benchmark": benchmark, **results}, out, benchmark)
    _emit(results)
    console.print(f"[green]wrote[/] {out}/results.json, results.md and results.png")


@eval_app.command("world")
def eval_world(
    out: Annotated[Path | None, typer.Option(help="run folder: results, answers, items, the journal and the built "
                                                  "eval split (default: runs/world-eval/<model name>; rerun to reuse "
                                                  "the answers)")] = None,
    model: Annotated[str | None, typer.Option(help="model folder or hub id (default: the shipped world-base)")]
    = None,
    data: Annotated[Path | None, typer.Option(help="world eval split (default: built into OUT/eval-split)")] = None,
    images: Annotated[int, typer.Option(min=1, help="scenes in the eval split built into OUT/eval-split (rebuilt "
                                                    "when this changes)")] = 300,
    steer: Annotated[str | None, typer.Option(help="SteerLM models: the attribute values to ask for (per task: "
                                                   "'describe=...;pope=...'), e.g. "
                                                   "'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4'")]
    = None,
):
    """The world benchmarks: world-POPE per split, CHAIR, attribute/count/position/relation hallucination,
    coverage, oracle-judged helpfulness and faithfulness (greedy answers on held-out scenes)."""
    world_benchmark(out, model, data, images, steer)


def world_benchmark(out: Path | None, model: str | None, data: Path | None, images: int, steer: str | None) -> None:
    """`vlpref eval world` and `vlpref world eval`: the world benchmark through the evaluation runner (journalled
    answers, items for `vlpref view`); the metrics go to stdout as JSON."""
    from vlpref.evaluation.run import EvalConfig, evaluate
    from vlpref.evaluation.world import steer_targets
    from vlpref.models.names import DEFAULT_MODEL

    steer_targets(steer, option="--steer")  # a malformed --steer is named as the option
    model = model or DEFAULT_MODEL
    out = out or _world_out(model)
    _scene_count(str(images))  # named as the option (typer's min does not reach `vlpref world eval`)
    cfg = recipe_config(EvalConfig, None, benchmark="world", model=model, data=str(data) if data else None,
                        world_images=images, steer=steer)
    results = evaluate(cfg, out, log=console.print)
    _emit(results)
    console.print(f"[green]wrote[/] {out}/results.json, results.md, results.png and items.jsonl")


@eval_app.command("compare")
def eval_compare(
    runs: Annotated[list[Path], typer.Argument(help="evaluation run folders (the first is the baseline)")],
    out: Annotated[Path, typer.Option(help="where compare.md and compare.png go")],
    allow_different_data: Annotated[bool, typer.Option(help="compare runs evaluated on different questions "
                                                            "(refused otherwise), under a warning")] = False,
):
    """Runs side by side, each metric with its delta from the first run, a 95% interval for the delta where the
    metric is a share, and the count behind it. Runs evaluated on different data are refused."""
    from vlpref.evaluation.report import compare

    table = compare(runs, out, allow_different_data,
                    warn=lambda text: console.print(f"[bold red]WARNING:[/] {text}", highlight=False))
    print(table)

