"""`vlpref` command line: a thin dispatcher to the library. Only built verbs are listed.

    vlpref tiny llava models/tiny-llava
    vlpref data import llava llava_instruct.json --images coco/ --out data/prompts
    vlpref data export trl data/pairs export/trl
    vlpref demo --out runs/demo
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vlpref.errors import VlprefError

app = typer.Typer(help="Align vision-language models with preference data.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Import, check, convert and export datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Bring outside data into a vlpref dataset folder.", no_args_is_help=True)
export_app = typer.Typer(help="Write a dataset folder in another trainer's format.", no_args_is_help=True)
data_app.add_typer(import_app, name="import")
data_app.add_typer(export_app, name="export")
app.add_typer(data_app, name="data")

console = Console(stderr=True)

OnErrorOpt = Annotated[str, typer.Option("--on-error", help="raise: stop at the first bad record; skip: write it to "
                                         "the rejects file and go on")]
RejectsOpt = Annotated[Path | None, typer.Option(help="rejects file (default: OUT/rejects.jsonl)")]


def _rejects(on_error: str, rejects: Path | None, out: Path):
    from vlpref.data.rejects import RejectLog

    if on_error not in ("raise", "skip"):
        raise VlprefError(f"--on-error must be raise or skip, not {on_error!r}")
    return RejectLog(rejects or out / "rejects.jsonl", on_error=on_error)  # type: ignore[arg-type]


def _report(written: int, what: str, out: Path, log) -> None:
    console.print(f"[green]wrote {written} {what}[/] to {out}")
    if log is not None and log.count:
        console.print(f"[yellow]skipped {log.count} bad record(s)[/]; reasons in {log.path}")
    if log is not None:
        log.close()


@app.command()
def tiny(
    arch: Annotated[str, typer.Argument(help="llava | qwen2_vl | qwen2_5_vl | idefics3 | smolvlm | gemma3")],
    out: Annotated[Path, typer.Argument(help="folder for the model (standard HF layout)")],
    image_size: int = 32,
    seed: int = 0,
):
    """Build a tiny random-weight model of a real architecture, offline (for tests and trying things)."""
    from vlpref.models.tiny import ARCHITECTURES, save_tiny

    if arch not in ARCHITECTURES:
        raise VlprefError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    save_tiny(arch, out, image_size=image_size, seed=seed)
    console.print(f"[green]saved tiny {arch}[/] to {out}")


@import_app.command("llava")
def import_llava_cmd(
    path: Annotated[Path, typer.Argument(help="LLaVA conversation JSON or JSONL")],
    images: Annotated[Path, typer.Option(help="root the records' image paths are relative to")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """LLaVA instruction JSON (`<image>` placeholders) -> prompts."""
    from vlpref.data.importers import import_llava
    from vlpref.data.store import write_records

    log = _rejects(on_error, rejects, out)
    prompts = import_llava(path, images, out, rejects=log)
    _report(write_records(out, "prompts", prompts), "prompts", out, log)


@import_app.command("vlfeedback")
def import_vlfeedback_cmd(
    path: Annotated[Path, typer.Argument(help="VLFeedback release: JSON/JSONL, parquet, or a save_to_disk folder")],
    out: Annotated[Path, typer.Option(help="folder; gets prompts/, candidates/, annotations/")],
    images: Annotated[Path | None, typer.Option(help="image root, when `image` holds paths")] = None,
    judge_id: str = "gpt-4v",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """The released VLFeedback layout -> prompts, candidates and per-aspect annotations."""
    from vlpref.data.importers import import_vlfeedback
    from vlpref.data.store import write_records

    log = _rejects(on_error, rejects, out)
    prompts, candidates, annotations = import_vlfeedback(path, out / "prompts", image_root=images, rejects=log,
                                                         judge_id=judge_id)
    write_records(out / "prompts", "prompts", prompts)
    write_records(out / "candidates", "candidates", candidates)
    written = write_records(out / "annotations", "annotations", annotations)
    console.print(f"[green]wrote {len(prompts)} prompts, {len(candidates)} candidates[/]")
    _report(written, "annotations", out, log)


@import_app.command("hf")
def import_hf_cmd(
    path: Annotated[str, typer.Argument(help="save_to_disk folder, parquet/json files, or a hub id")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    image_column: str = "image",
    question_column: str = "question",
    answer_column: str | None = None,
    id_column: str | None = None,
    split: str = "train",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """Any dataset with an image column and a question column -> prompts."""
    from vlpref.data.importers import import_hf
    from vlpref.data.store import write_records

    log = _rejects(on_error, rejects, out)
    prompts = import_hf(path, out, image_column, question_column, answer_column, id_column, split, rejects=log)
    _report(write_records(out, "prompts", prompts), "prompts", out, log)


@import_app.command("trl")
def import_trl_cmd(
    path: Annotated[Path, typer.Argument(help="TRL vision dataset (save_to_disk folder or parquet)")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """TRL's vision preference (prompt/chosen/rejected/images) or messages/images format -> pairs or prompts."""
    from vlpref.data.importers import import_trl
    from vlpref.data.store import kind_of, write_records

    log = _rejects(on_error, rejects, out)
    records = import_trl(path, out, rejects=log)
    kind = kind_of(records[0]) if records else "pairs"
    _report(write_records(out, kind, records), kind, out, log)


@export_app.command("trl")
def export_trl_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder of pairs or prompts")],
    out: Annotated[Path, typer.Argument(help="output folder")],
    format: Annotated[str, typer.Option(help="arrow (save_to_disk) or parquet")] = "arrow",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """TRL's vision format: conversational prompt/chosen/rejected (or messages) + images."""
    from vlpref.data.exporters import export_trl

    log = _rejects(on_error, rejects, out.parent / f"{out.name}-rejects")
    _report(export_trl(path, out, fmt=format, rejects=log), "rows", out, log)


@export_app.command("llamafactory")
def export_llamafactory_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder of pairs")],
    out: Annotated[Path, typer.Argument(help="output folder (data.json, images/, dataset_info.json)")],
    name: str = "vlpref_pairs",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """LLaMA-Factory's sharegpt preference format with a dataset_info.json entry."""
    from vlpref.data.exporters import export_llamafactory

    log = _rejects(on_error, rejects, out.parent / f"{out.name}-rejects")
    _report(export_llamafactory(path, out, name=name, rejects=log), "pairs", out, log)


@data_app.command("validate")
def validate_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """Check every record and open every image, naming line, record and field of what is wrong.

    Exits 0 when all are valid; 2 at the first bad record (default), or 1 after listing all of them (skip)."""
    from vlpref.data.store import iter_records, read_meta

    log = _rejects(on_error, rejects, path.parent / f"{path.name}-rejects")
    kind = read_meta(path)["kind"]
    count = sum(1 for _ in iter_records(path, rejects=log, check_image_files=True))
    console.print(f"[green]{count} valid {kind}[/] in {path}")
    if log.count:
        console.print(f"[yellow]{log.count} bad record(s)[/]; reasons in {log.path}")
        log.close()
        raise typer.Exit(1)


@data_app.command("to-hf")
def to_hf_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    out: Annotated[Path, typer.Argument(help="output folder")],
    format: Annotated[str, typer.Option(help="arrow (save_to_disk) or parquet")] = "arrow",
):
    """Dataset folder -> Hugging Face datasets form (images embedded as image features)."""
    from vlpref.data.store import save_hf

    _report(save_hf(path, out, fmt=format), "records", out, None)


@data_app.command("from-hf")
def from_hf_cmd(
    path: Annotated[Path, typer.Argument(help="folder written by `data to-hf`")],
    out: Annotated[Path, typer.Argument(help="dataset folder to write")],
):
    """Hugging Face datasets form -> dataset folder (JSONL + images)."""
    from vlpref.data.store import load_hf

    _report(load_hf(path, out), "records", out, None)


world_app = typer.Typer(help="The shapes world: scenes with exact ground truth, a tiny pretrained VLM, metrics.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")


@world_app.command("generate")
def world_generate(
    out: Annotated[Path, typer.Option(help="dataset folder to write (records.jsonl + images/)")],
    split: Annotated[str, typer.Option(help="sft | prefs | eval (disjoint scene seeds)")] = "eval",
    images: Annotated[int, typer.Option(help="number of scenes")] = 500,
    tasks: Annotated[str, typer.Option(help="comma-separated: describe, open, pope, qa")] = "describe,open,pope,qa",
    seed: int = 0,
):
    """Render scenes and write their task prompts with reference answers and scene graphs."""
    from vlpref.world.tasks import SPLIT_SEEDS, build_split

    if split not in SPLIT_SEEDS:
        raise VlprefError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip())
    unknown = set(chosen) - {"describe", "open", "pope", "qa"}
    if unknown:
        raise VlprefError(f"unknown task(s) {', '.join(sorted(unknown))}; choose from describe, open, pope, qa")
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
    model: Annotated[str | None, typer.Argument(help="model folder or hub id (default: the shipped world-base)")]
    = None,
    data: Annotated[Path | None, typer.Option(help="world eval split (default: built under the model folder)")]
    = None,
    images: Annotated[int, typer.Option(help="scenes in the eval split when it is built")] = 300,
    steer: Annotated[str | None, typer.Option(help="SteerLM models: ask for these attribute values, e.g. "
                                                   "'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4'")]
    = None,
):
    """Greedy answers on held-out scenes: CHAIR_s/CHAIR_i, attribute/count/position/relation hallucination,
    coverage, and world-POPE per split."""
    import json

    from vlpref.models.vlm import VLM
    from vlpref.world.metrics import evaluate_world
    from vlpref.world.models import world_model_path
    from vlpref.world.tasks import build_split

    model = model or str(world_model_path())
    data = data or Path("runs/world-eval")
    if not (data / "records.jsonl").is_file():
        build_split(data, "eval", images)

    from vlpref.evaluation.world import steer_targets

    targets = steer_targets(steer, option="--steer")
    results = evaluate_world(VLM.load(model), data, steer=targets)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


def _config(schema, path: Path | None, stage: str | None = None, **overrides):
    """The YAML at `path` (or the schema's defaults) with the command-line options that were given on top. A data
    recipe (recipe: preference-data) gives its `stage` section."""
    import yaml

    from vlpref.config import parse
    from vlpref.pairs.recipe import stage_config

    base = {}
    if path:
        try:
            base = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise VlprefError(f"{path}: {error}") from None
        base = parse(schema, stage_config(base, stage) if stage else base, source=str(path)).model_dump()
    return parse(schema, {**base, **{k: v for k, v in overrides.items() if v is not None}})


ConfigOpt = Annotated[Path | None, typer.Option(help="recipe YAML; options given here override it")]


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="candidates folder (also holds the journal; rerun to resume)")],
    config: ConfigOpt = None,
    prompts: Annotated[Path | None, typer.Option(help="prompts folder (default: the world's prefs split)")] = None,
    model: Annotated[str | None, typer.Option(help="sample from this one model (hub id, path or world:<name>) "
                                                 "instead of the recipe's pool")] = None,
    n: Annotated[int | None, typer.Option(help="responses per prompt, with --model")] = None,
    augment: Annotated[str | None, typer.Option(help="also answer under augmented images: diffusion, moco, "
                                                   "mdpo-crop, … (SeVa)")] = None,
):
    """N responses per prompt from a pool of models, each with its own decoding settings."""
    from vlpref.candidates.sample import SampleConfig
    from vlpref.candidates.sample import sample as run

    member = {"model": model, **({"n": n} if n else {})} if model else None
    cfg = _config(SampleConfig, config, "sample", prompts=str(prompts) if prompts else None,
                  pool=[member] if member else None, augment={"op": augment} if augment else None)
    run(cfg, out, log=console.print)
    console.print(f"[green]wrote candidates[/] to {out}")


@app.command()
def judge(
    candidates: Annotated[Path, typer.Option(help="candidates folder (from vlpref sample)")],
    out: Annotated[Path, typer.Option(help="annotations folder (also holds the journal; rerun to resume)")],
    config: ConfigOpt = None,
    rubric: Annotated[str | None, typer.Option(help="vlfeedback (3 aspects, 1-5) or helpsteer (5 attributes, "
                                                  "0-4)")] = None,
    prompts: Annotated[Path | None, typer.Option(help="prompts folder (default: the candidates' own)")] = None,
):
    """Rate every prompt's candidates on a rubric (default judge: the world's oracle)."""
    from vlpref.annotations.judge import JudgeConfig
    from vlpref.annotations.judge import judge as run

    cfg = _config(JudgeConfig, config, "judge", rubric=rubric, prompts=str(prompts) if prompts else None)
    run(cfg, candidates, out, log=console.print)
    console.print(f"[green]wrote annotations[/] to {out}")


@app.command()
def pairs(
    out: Annotated[Path, typer.Option(help="pairs folder")],
    strategy: Annotated[str | None, typer.Option(help="vlfeedback, helpsteer, seva, povid or image-contrast")]
    = None,
    config: ConfigOpt = None,
    annotations: Annotated[Path | None, typer.Option(help="annotations folder (vlfeedback, helpsteer)")] = None,
    candidates: Annotated[Path | None, typer.Option(help="candidates folder (seva)")] = None,
    prompts: Annotated[Path | None, typer.Option(help="prompts folder (povid, image-contrast; default: the "
                                                     "world's prefs split)")] = None,
):
    """Build preference pairs by one paper's rule; what makes no pair goes to OUT/skipped.jsonl with its reason."""
    from vlpref.pairs.build import PairsConfig, build_pairs

    cfg = _config(PairsConfig, config, "pairs", strategy=strategy,
                  annotations=str(annotations) if annotations else None,
                  candidates=str(candidates) if candidates else None, prompts=str(prompts) if prompts else None)
    build_pairs(cfg, out, log=console.print)
    console.print(f"[green]wrote pairs[/] to {out}")


@app.command()
def prefs(
    config: Annotated[Path, typer.Option(help="data recipe YAML (recipe: preference-data), e.g. "
                                              "recipes/seva/data_world.yaml")],
    out: Annotated[Path, typer.Option(help="folder for candidates/, annotations/ and pairs/")],
):
    """A paper's whole data stage: sample, judge and build pairs, as its recipe says (each stage resumes)."""
    from vlpref.config import load_yaml
    from vlpref.pairs.recipe import DataRecipe, run_recipe

    run_recipe(load_yaml(DataRecipe, config), out, log=console.print)
    console.print(f"[green]wrote preference data[/] to {out}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="run folder: checkpoints, log.jsonl, model/ (rerun to resume)")],
    config: ConfigOpt = None,
    method: Annotated[str | None, typer.Option(help="sft, rs, steerlm or dpo")] = None,
    data: Annotated[Path | None, typer.Option(help="pairs (dpo) or prompts-with-answers (sft, rs, steerlm) folder")]
    = None,
    model: Annotated[str | None, typer.Option(help="hub id, local path or a shapes-world model name")] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT's latest checkpoint if it has one")] = True,
):
    """Train with SFT, rejection sampling, SteerLM or a DPO-family objective (on accelerate: `accelerate launch -m
    vlpref.cli train ...` or `torchrun --nproc_per_node N -m vlpref.cli train ...` for several processes)."""
    from vlpref.training.config import TrainConfig
    from vlpref.training.trainer import train as run_training

    cfg = _config(TrainConfig, config, None, method=method, data=str(data) if data else None, model=model, lr=lr,
                  epochs=epochs, max_steps=max_steps, seed=seed)
    result = run_training(cfg, out, resume=resume, log=console.print)
    console.print(f"[green]trained[/] {result.steps} step(s); final loss {result.final_loss:.4f}; run in {out}")


@app.command()
def view(
    paths: Annotated[list[Path], typer.Argument(help="a pairs folder (or a prefs output holding pairs/), or one or "
                                                     "two evaluation run folders")],
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 shows your data to your network")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
):
    """A local, read-only web page: pairs with filters, diffs, scores and judge text; evaluation runs with results,
    plots and every item; two runs side by side."""
    from vlpref.view.app import serve as run

    run(paths, host=host, port=port, log=console.print)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="hub id, local path or world:<name>")] = "world:world-base",
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 exposes the model to your network")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    name: Annotated[str | None, typer.Option(help="model name clients send (default: the model's last path "
                                               "part)")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "float32",
    device: Annotated[str | None, typer.Option(help="e.g. cuda; default CPU")] = None,
    max_batch: Annotated[int, typer.Option(help="requests generated together")] = 16,
    max_wait_ms: Annotated[float, typer.Option(help="how long a request waits for others to batch with")] = 10.0,
    log_requests: Annotated[Path | None, typer.Option(help="append one JSON line per request (body hash, "
                                                           "tokens)")] = None,
    max_tokens_limit: Annotated[int, typer.Option(help="largest max_tokens a request may ask for")] = 4096,
):
    """Serve a local model on an OpenAI-compatible /v1/chat/completions (+ /v1/models), batching requests."""
    from vlpref.serve import serve as run

    run(model, host=host, port=port, name=name, dtype=dtype, device=device, max_batch=max_batch,
        max_wait_ms=max_wait_ms, request_log=log_requests, max_tokens_limit=max_tokens_limit, log=console.print)


bench_app = typer.Typer(help="Speed benchmarks, written as JSON (see docs/benchmarks.md).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
JsonOpt = Annotated[Path, typer.Option("--json", help="where to write the figures")]


eval_app = typer.Typer(help="Evaluation: `vlpref eval --benchmark NAME --model M --data PATH --out OUT` generates, "
                       "judges and scores; `score` scores answers made by any tool; `world`; `compare`.")
app.add_typer(eval_app, name="eval")


@eval_app.callback(invoke_without_command=True)
def eval_run(
    ctx: typer.Context,
    benchmark: Annotated[str | None, typer.Option(help="pope, mme, chair, mmhal, mmvet, llava-bench, mtbench, "
                                                       "amber or world")] = None,
    model: Annotated[str | None, typer.Option(help="hub id, path or world:<name>")] = None,
    data: Annotated[Path | None, typer.Option(help="your local copy of the benchmark's official files")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder: results, answers, judge outputs, the journal")]
    = None,
    config: ConfigOpt = None,
    images: Annotated[Path | None, typer.Option(help="the images folder, where it is not inside --data")] = None,
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
):
    """Generate a model's answers to a benchmark, judge them where needed (cached: a rerun makes no call) and score
    them exactly as the official scripts do."""
    if ctx.invoked_subcommand is not None:
        return
    if benchmark is None and config is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    if out is None:
        raise VlprefError("--out is required")
    import yaml

    from vlpref.config import parse
    from vlpref.evaluation.run import EvalConfig, evaluate

    base = {}
    if config:
        try:
            base = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise VlprefError(f"{config}: {error}") from None
    judge = dict(base.get("judge") or {})
    if judge_url or judge_model or judge_key_env:
        endpoint = dict(judge.get("endpoint") or {})
        endpoint.update({k: v for k, v in (("base_url", judge_url), ("model", judge_model),
                                           ("api_key_env", judge_key_env)) if v})
        judge.update(backend="openai", endpoint=endpoint)
    if judge_prompt:
        judge["prompt"] = str(judge_prompt)
    overrides = {"benchmark": benchmark, "model": model, "data": str(data) if data else None,
                 "images": str(images) if images else None, "style": style, "scoring": scoring, "dtype": dtype,
                 "device": device, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "limit": limit,
                 "judge": judge or None}
    cfg = parse(EvalConfig, {**base, **{k: v for k, v in overrides.items() if v is not None}},
                source=str(config) if config else "the command line")
    results = evaluate(cfg, out, log=console.print)
    console.print_json(data=results, default=str)
    console.print(f"[green]wrote[/] {out}/results.json, results.md and results.png")


@eval_app.command("score")
def eval_score(
    benchmark: Annotated[str, typer.Option(help="mme, pope, chair, mmhal, mmvet, llava-bench, mtbench or amber")],
    out: Annotated[Path, typer.Option(help="where results.json and results.md go")],
    answers: Annotated[Path | None, typer.Option(help="the model's answers in the official layout")] = None,
    judge: Annotated[Path | None, typer.Option(help="the judge's outputs (mmhal, mmvet, llava-bench, mtbench)")]
    = None,
    labels: Annotated[list[Path] | None, typer.Option(help="pope: a question file per split (repeat)")] = None,
    metadata: Annotated[Path | None, typer.Option(help="mmvet: mm-vet.json; amber: the annotations; chair: the "
                                                       "COCO annotations folder")] = None,
):
    """Score answers (and judge outputs) produced by any tool, exactly as the official scripts do."""
    from vlpref.evaluation.report import write_run
    from vlpref.evaluation.score import score

    results = score(benchmark, answers, judge, labels, metadata)
    write_run({"benchmark": benchmark, **results}, out, benchmark)
    console.print_json(data=results, default=str)
    console.print(f"[green]wrote[/] {out}/results.json, results.md and results.png")


@eval_app.command("world")
def eval_world(
    out: Annotated[Path, typer.Option(help="where results.json, results.md and results.png go")],
    model: Annotated[str | None, typer.Option(help="model folder or hub id (default: the shipped world-base)")]
    = None,
    data: Annotated[Path | None, typer.Option(help="world eval split (default: built into OUT/eval-split)")] = None,
    images: Annotated[int, typer.Option(help="scenes in the eval split when it is built")] = 300,
    steer: Annotated[str | None, typer.Option(help="SteerLM models: the attribute values to ask for, e.g. "
                                                   "'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4'")]
    = None,
):
    """The world benchmarks: world-POPE per split, CHAIR, attribute/count/position/relation hallucination,
    coverage, oracle-judged helpfulness and faithfulness (greedy answers on held-out scenes)."""
    from vlpref.evaluation.run import EvalConfig, evaluate

    cfg = EvalConfig(benchmark="world", model=model or "world:world-base", data=str(data) if data else None,
                     world_images=images, steer=steer)
    results = evaluate(cfg, out, log=console.print)
    console.print_json(data=results)
    console.print(f"[green]wrote[/] {out}/results.json, results.md and results.png")


@eval_app.command("compare")
def eval_compare(
    runs: Annotated[list[Path], typer.Argument(help="evaluation run folders (the first is the baseline)")],
    out: Annotated[Path, typer.Option(help="where compare.md and compare.png go")],
):
    """Runs side by side, each metric with its delta from the first run."""
    from vlpref.evaluation.report import compare

    console.print(compare(runs, out), highlight=False)


@bench_app.command("sample")
def bench_sample_cmd(
    json_path: JsonOpt = Path("runs/bench-sample.json"),
    model: Annotated[str, typer.Option(help="hub id, path or world:<name>")] = "world:world-base",
    prompts: Annotated[int, typer.Option()] = 64,
    batch_size: Annotated[int, typer.Option()] = 16,
    max_new_tokens: Annotated[int, typer.Option()] = 48,
    dtype: Annotated[str, typer.Option()] = "float32",
    device: Annotated[str | None, typer.Option()] = None,
):
    """Batched greedy generation vs a one-prompt-at-a-time loop: speedup, and whether the outputs are identical."""
    from vlpref.bench import bench_sample, write_json

    result = bench_sample(model, prompts, batch_size, max_new_tokens, dtype, device)
    write_json(result, json_path)
    console.print_json(data=result)


@bench_app.command("judge")
def bench_judge_cmd(
    json_path: JsonOpt = Path("runs/bench-judge.json"),
    prompts: Annotated[int, typer.Option()] = 128,
    latency_s: Annotated[float, typer.Option(help="the simulated endpoint's answer time")] = 1.0,
    concurrency: Annotated[int, typer.Option()] = 16,
):
    """Judging against an endpoint with fixed latency: requests/s against the concurrency / latency bound."""
    from vlpref.bench import bench_judge, write_json

    result = bench_judge(prompts, latency_s, concurrency)
    write_json(result, json_path)
    console.print_json(data=result)


@bench_app.command("view")
def bench_view_cmd(
    json_path: JsonOpt = Path("runs/bench-view.json"),
    pairs: Annotated[int, typer.Option(help="synthetic pairs to index and page")] = 400_000,
):
    """The viewer on a large synthetic pairs dataset: index build, page, filter and search times, memory."""
    from vlpref.bench import write_json
    from vlpref.view.bench import bench_view

    result = bench_view(pairs)
    write_json(result, json_path)
    console.print_json(data=result)


@bench_app.command("dpo")
def bench_dpo_cmd(
    json_path: JsonOpt = Path("runs/bench-dpo.json"),
    batch_size: Annotated[int, typer.Option(help="pairs per step, both sides")] = 4,
    steps: Annotated[int, typer.Option(help="training steps per side (the first is not timed)")] = 20,
    threads: Annotated[int, typer.Option(help="torch CPU threads (ignored on a GPU)")] = 2,
):
    """Our DPO step against TRL's DPOTrainer on the same tiny LLaVA-1.5-shaped model, data and batch: throughput,
    step-1 loss difference, peak memory, FLOP rate."""
    from vlpref.bench import write_json
    from vlpref.training.bench import bench_dpo

    result = bench_dpo(batch_size, steps, threads)
    write_json(result, json_path)
    console.print_json(data=result)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for everything the demo writes (rerun to resume)")]
    = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option(help="demo recipe YAML (default: recipes/demo.yaml's settings)")]
    = None,
    seeds: Annotated[int | None, typer.Option(help="world seeds; more than one reports mean ± std")] = None,
    quick: Annotated[bool, typer.Option(help="toy sizes: every stage runs, nothing is learned")] = False,
):
    """The four papers' comparisons in miniature on the shapes world: data, training, evaluation, one table."""
    from vlpref.demo import DemoConfig, run_demo

    cfg = _config(DemoConfig, config, seeds=seeds)
    run_demo(cfg.quick() if quick else cfg, out, console)


def main() -> None:
    try:
        app()
    except VlprefError as error:
        console.print(f"[red]error:[/] {error}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
