"""`vlpref demo`: the longest end-to-end path built so far, offline, on tiny models of every supported architecture.

    vlpref demo --out runs/demo

Steps, each through the same library calls the CLI verbs use:
  1. write a small source dataset in LLaVA's conversation-JSON layout (drawn shapes, question, reference answer);
  2. import it into a dataset folder (`data import llava`);
  3. build and save a tiny random-weight model of each architecture, reload it through the Auto classes;
  4. sample responses per prompt with per-request seeds (batched, left-padded);
  5. score log π(response | image, prompt) of every sample and of the reference answer (batched, right-padded);
  6. make preference pairs (chosen = reference answer, rejected = a model sample: POVID's ground-truth-vs-model
     rule) and export them to TRL's and LLaMA-Factory's formats.

The models have random weights, so their samples are word salad and the reference answer is no likelier than a
sample: the demo shows that the machinery runs and agrees across architectures, not that anything is learned. The
shapes-world issue replaces this with a pretrained tiny VLM; the main-job issue replaces the whole demo.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw
from pydantic import Field
from rich.console import Console
from rich.table import Table

from vlpref.config import StrictModel
from vlpref.data.exporters import export_llamafactory, export_trl
from vlpref.data.importers import import_llava
from vlpref.data.schema import Candidate, DecodingParams, PreferencePair
from vlpref.data.store import RecordWriter, write_records
from vlpref.models.tiny import ARCHITECTURES, save_tiny
from vlpref.models.vlm import VLM, Chat

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 210, 30)}
SHAPES = ("circle", "square", "triangle")


class DemoConfig(StrictModel):
    """Settings of the foundation demo (recipes/foundation_demo.yaml holds the defaults)."""

    recipe: Literal["foundation-demo"] = "foundation-demo"
    architectures: list[Literal[ARCHITECTURES]] = Field(default_factory=lambda: list(ARCHITECTURES))  # type: ignore
    prompts: int = Field(default=8, ge=1, description="source prompts to draw")
    samples_per_prompt: int = Field(default=2, ge=1)
    decoding: DecodingParams = DecodingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)
    batch_size: int = Field(default=8, ge=1)
    seed: int = 0


def draw_source(out: Path, count: int, seed: int) -> Path:
    """A LLaVA-layout JSON of `count` drawn single-shape images; returns the JSON path (images beside it)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        image = Image.new("RGB", (32, 32), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        x, y, r = rng.randint(8, 24), rng.randint(8, 24), rng.randint(4, 7)
        if shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=COLORS[color])
        elif shape == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=COLORS[color])
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=COLORS[color])
        name = f"img/{i:04d}.png"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / name)
        rows.append({"id": f"shape-{i:04d}", "image": name, "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": f"There is one {color} {shape} in the picture."},
        ]})
    path = out / "llava.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def run_demo(cfg: DemoConfig, out: Path, console: Console) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    source = draw_source(out / "source", cfg.prompts, cfg.seed)
    prompts = import_llava(source, source.parent, out / "prompts")
    write_records(out / "prompts", "prompts", prompts)
    console.print(f"imported {len(prompts)} prompts from {source}")

    chats = [Chat.from_prompt(p, out / "prompts") for p in prompts]
    results, pairs = [], []
    for a, arch in enumerate(cfg.architectures):
        # Each architecture gets its own weights and sampling seeds: Idefics3 and SmolVLM share a config, and
        # near-uniform random logits map the same random draw to the same word, so shared seeds would print
        # identical rows.
        model_dir = save_tiny(arch, out / "models" / arch, seed=cfg.seed * 101 + a)
        vlm = VLM.load(str(model_dir))
        requests = [(i, k) for i in range(len(prompts)) for k in range(cfg.samples_per_prompt)]
        params = [cfg.decoding.model_copy(update={"seed": cfg.seed * 1_000_003 + a * 100_003 + i * 1009 + k})
                  for i, k in requests]

        start = time.perf_counter()
        generations = vlm.generate([chats[i] for i, _ in requests], params, batch_size=cfg.batch_size)
        gen_seconds = time.perf_counter() - start
        with RecordWriter(out / "candidates" / arch, "candidates") as writer:
            candidates = [
                Candidate(id=f"{prompts[i].id}/{arch}/{k}", prompt_id=prompts[i].id, model_id=arch, text=g.text,
                          decoding=p, finish_reason=g.finish_reason)
                for (i, k), g, p in zip(requests, generations, params, strict=True)
            ]
            for candidate in candidates:
                writer.write(candidate)

        start = time.perf_counter()
        sample_lp = vlm.logprobs([chats[i] for i, _ in requests], [g.text for g in generations], cfg.batch_size)
        reference_lp = vlm.logprobs(chats, [p.reference for p in prompts], cfg.batch_size)
        score_seconds = time.perf_counter() - start

        for (i, _k), candidate, lp in zip(requests, candidates, sample_lp, strict=True):
            pairs.append(PreferencePair(
                id=candidate.id, prompt_id=prompts[i].id, images=prompts[i].images, turns=prompts[i].query,
                chosen=prompts[i].reference, rejected=candidate.text, strategy="reference-vs-sample",
                provenance={"rejected_model": arch, "rejected_logp": round(float(lp.sum()), 4),
                            "chosen_logp": round(float(reference_lp[i].sum()), 4)},
            ))
        tokens = sum(len(lp) for lp in sample_lp)
        results.append({
            "architecture": arch,
            "model_class": type(vlm.model).__name__,
            "samples": len(generations),
            "sample_tokens": tokens,
            "sample_logp_per_token": round(float(sum(lp.sum() for lp in sample_lp)) / tokens, 4),
            "reference_logp_per_token": round(
                float(sum(lp.sum() for lp in reference_lp)) / sum(len(lp) for lp in reference_lp), 4),
            "generate_seconds": round(gen_seconds, 3),
            "score_seconds": round(score_seconds, 3),
            "example": generations[0].text,
        })

    write_records(out / "pairs", "pairs", pairs, images_from=out / "prompts")
    n_trl = export_trl(out / "pairs", out / "export" / "trl")
    n_lf = export_llamafactory(out / "pairs", out / "export" / "llamafactory")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title="vlpref foundation demo: tiny random-weight models (word salad is expected)")
    # Narrow headers so the table fits an 80-column terminal; the full figures are in results.json.
    for column, width in (("arch", 10), ("n", 2), ("logp/tok", 8), ("logp/tok", 8), ("gen s", 5), ("score s", 7)):
        table.add_column(column, no_wrap=True, min_width=width)
    table.columns[2].header, table.columns[3].header = "logp/tok\nsample", "logp/tok\nreference"
    table.add_column("first sample", no_wrap=True, overflow="ellipsis", max_width=16)
    for r in results:
        table.add_row(r["architecture"], str(r["samples"]), f"{r['sample_logp_per_token']:.3f}",
                      f"{r['reference_logp_per_token']:.3f}", f"{r['generate_seconds']:.2f}",
                      f"{r['score_seconds']:.2f}", r["example"])
    Console().print(table)
    console.print(f"{len(pairs)} pairs -> {out / 'pairs'}; exported {n_trl} to TRL and {n_lf} to LLaMA-Factory "
                  f"under {out / 'export'}; results in {out / 'results.json'}")
    return results
