"""`vlpref bench …`: speed benchmarks, each writing JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlpref.cli.app import JsonOpt, bench_app, console


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
    from vlpref.bench import write_json
    from vlpref.bench.generation import bench_sample

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
    from vlpref.bench import write_json
    from vlpref.bench.generation import bench_judge

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
    from vlpref.bench.view import bench_view

    result = bench_view(pairs)
    write_json(result, json_path)
    console.print_json(data=result)


def _layout(name: str, shrink: bool):
    """The named bench layout (`bench.layouts.LAYOUTS`), at tiny widths with `shrink`; one line naming the valid
    ones otherwise."""
    from vlpref.bench.layouts import LAYOUTS
    from vlpref.errors import VlprefError

    if name not in LAYOUTS:
        raise VlprefError(f"--layout {name!r} is not a bench layout; choose one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name].shrunk() if shrink and name != "tiny" else LAYOUTS[name]


def _choice(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    from vlpref.errors import VlprefError

    if value is not None and value not in allowed:
        raise VlprefError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")


LayoutOpt = Annotated[str, typer.Option(help="tiny (CPU), or a real checkpoint's sizes with random weights: "
                                             "llava-1.5-7b, llava-1.5-13b, qwen2-vl-2b, qwen2-vl-7b, qwen2.5-vl-3b, "
                                             "qwen2.5-vl-7b, idefics3-8b")]
ShrinkOpt = Annotated[bool, typer.Option(help="the layout at the tiny test widths and depths (its vocabulary and "
                                              "image tokens kept): the real-layout code path on a CPU")]
DtypeOpt = Annotated[str, typer.Option(help="float32, or bfloat16 (bf16 weights under bf16 autocast)")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda; default: cuda when there is one")]
ThreadsOpt = Annotated[int, typer.Option(help="torch CPU threads (ignored on a GPU)")]


@bench_app.command("dpo")
def bench_dpo_cmd(
    json_path: JsonOpt = Path("runs/bench-dpo.json"),
    layout: LayoutOpt = "tiny",
    finetune: Annotated[str | None, typer.Option(help="lora or full; default: full for tiny, lora otherwise")] = None,
    dtype: DtypeOpt = "float32",
    batch_size: Annotated[int, typer.Option(min=1, help="pairs per step, both sides")] = 4,
    steps: Annotated[int, typer.Option(min=2, help="training steps per side (the first is not timed)")] = 20,
    device: DeviceOpt = None,
    shrink: ShrinkOpt = False,
    threads: ThreadsOpt = 2,
):
    """Our DPO step against TRL's DPOTrainer on the same random-weight model, pairs and batches: throughput (per
    step, per epoch with our reference precompute), step-1 log-probs of each side and the tokens scored, peak memory,
    MFU."""
    from vlpref.bench import write_json
    from vlpref.bench.dpo import bench_dpo

    _choice("--finetune", finetune, ("lora", "full"))
    _choice("--dtype", dtype, ("float32", "bfloat16"))
    _choice("--device", device, ("cpu", "cuda"))
    result = bench_dpo(batch_size, steps, threads, layout=_layout(layout, shrink), finetune=finetune, dtype=dtype,
                       device=device)
    write_json(result, json_path)
    console.print_json(data=result)


@bench_app.command("train-all")
def bench_train_all_cmd(
    json_path: JsonOpt = Path("runs/bench-train-all.json"),
    layout: LayoutOpt = "tiny",
    dtype: DtypeOpt = "float32",
    batch_size: Annotated[int, typer.Option(min=1, help="examples per step")] = 4,
    steps: Annotated[int, typer.Option(min=1, help="optimizer steps per run")] = 4,
    device: DeviceOpt = None,
    shrink: ShrinkOpt = False,
    threads: ThreadsOpt = 2,
):
    """Every objective and method (dpo, povid, mdpo, online reference, gradient checkpointing, full fine-tuning,
    sft, rs, steerlm) for a few steps: finite losses, step times, peak memory; the exported models load and
    generate."""
    from vlpref.bench import write_json
    from vlpref.bench.train_all import bench_train_all

    _choice("--dtype", dtype, ("float32", "bfloat16"))
    _choice("--device", device, ("cpu", "cuda"))
    result = bench_train_all(_layout(layout, shrink), dtype, batch_size, steps, device, threads)
    write_json(result, json_path)
    console.print_json(data=result)
