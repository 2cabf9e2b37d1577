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
    from vlpref.bench.dpo import bench_dpo

    result = bench_dpo(batch_size, steps, threads)
    write_json(result, json_path)
    console.print_json(data=result)

