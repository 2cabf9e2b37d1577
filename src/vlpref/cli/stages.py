"""The pipeline's verbs: sample, judge, pairs, prefs (all three from one recipe), train, view, serve, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlpref.cli.app import ConfigOpt, SetOpt, app, console, recipe_config


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
    overwrite: Annotated[bool, typer.Option(help="sample into OUT even though it holds something else (another "
                                                 "run's candidates, another dataset)")] = False,
):
    """N responses per prompt from a pool of models, each with its own decoding settings."""
    from vlpref.candidates.sample import SampleConfig
    from vlpref.errors import VlprefError
    from vlpref.prefs import run_sample

    if n is not None and model is None:  # a recipe's pool sets n per member; --n alone would be ignored
        raise VlprefError("--n applies with --model; set n on each pool member in the recipe instead")
    member = {"model": model, **({"n": n} if n is not None else {})} if model else None
    cfg = recipe_config(SampleConfig, config, "sample", prompts=str(prompts) if prompts else None,
                  pool=[member] if member else None, augment={"op": augment} if augment else None)
    run_sample(cfg, out, log=console.print, overwrite=overwrite)
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
    from vlpref.prefs import run_judge

    cfg = recipe_config(JudgeConfig, config, "judge", rubric=rubric, prompts=str(prompts) if prompts else None)
    run_judge(cfg, candidates, out, log=console.print)
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
    from vlpref.pairs.build import PairsConfig
    from vlpref.prefs import run_pairs

    cfg = recipe_config(PairsConfig, config, "pairs", strategy=strategy,
                  annotations=str(annotations) if annotations else None,
                  candidates=str(candidates) if candidates else None, prompts=str(prompts) if prompts else None)
    run_pairs(cfg, out, log=console.print)
    console.print(f"[green]wrote pairs[/] to {out}")


@app.command()
def prefs(
    config: Annotated[Path, typer.Option(help="data recipe YAML (recipe: preference-data), e.g. "
                                              "recipes/seva/data_world.yaml")],
    out: Annotated[Path, typer.Option(help="folder for candidates/, annotations/ and pairs/")],
    sets: SetOpt = None,
):
    """A paper's whole data stage: sample, judge and build pairs, as its recipe says (each stage resumes)."""
    from vlpref.prefs import DataRecipe, run_recipe

    run_recipe(recipe_config(DataRecipe, config, sets=sets), out, log=console.print)
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
    sets: SetOpt = None,
):
    """Train with SFT, rejection sampling, SteerLM or a DPO-family objective (on accelerate: `accelerate launch -m
    vlpref.cli train ...` or `torchrun --nproc_per_node N -m vlpref.cli train ...` for several processes)."""
    from vlpref.training.config import TrainConfig
    from vlpref.training.trainer import train as run_training

    cfg = recipe_config(TrainConfig, config, None, method=method, data=str(data) if data else None, model=model, lr=lr,
                  epochs=epochs, max_steps=max_steps, seed=seed, sets=sets)
    result = run_training(cfg, out, resume=resume, log=console.print)
    done = "already trained" if result.finished_before else "trained"
    console.print(f"[green]{done}[/] {result.steps} step(s); final loss {result.final_loss:.4f}; run in {out}")


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



@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for everything the demo writes (rerun to resume)")]
    = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option(help="demo recipe YAML (default: recipes/demo.yaml's settings)")]
    = None,
    seeds: Annotated[str | None, typer.Option(help="world seeds: a count (3: seeds 0, 1, 2) or a list (5,6,7); "
                                                   "several report mean ± std and paired differences")] = None,
    quick: Annotated[bool, typer.Option(help="toy sizes: every stage runs, nothing is learned")] = False,
    sets: SetOpt = None,
):
    """The four papers' comparisons in miniature on the shapes world: data, training, evaluation, one table."""
    from vlpref.demo import DemoConfig, run_demo

    cfg = recipe_config(DemoConfig, config, seeds=seeds, sets=sets)
    run_demo(cfg.quick() if quick else cfg, out, console)
