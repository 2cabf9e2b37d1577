"""`vlpref world pretrain`: a tiny LLaVA trained by SFT on shapes-world data, in minutes on a CPU.

    vlpref world pretrain --out models/world-base            # the default base model
    vlpref world pretrain --out models/world-pool --pool     # the base model and the pool

The model is transformers' `LlavaForConditionalGeneration` (CLIP vision tower + Llama) with a word-level tokenizer
over the world's closed vocabulary, saved in standard HF format. Like LLaVA-1.5 on COCO it should be useful but
imperfect: training is deliberately short, so the co-occurrence prior of the world (see `scenes.py`) still shows
up as hallucinated objects.

The loop is plain PyTorch (AdamW, linear warm-up then cosine decay, gradient clipping) over the VLM layer's own
scoring path: loss = mean negative log-likelihood of reference-answer tokens (prompt and image positions masked), the
same log-probs every other part of vlpref computes.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from vlpref.config import StrictModel
from vlpref.data.schema import Prompt
from vlpref.data.store import read_records
from vlpref.models.tiny import build_tiny
from vlpref.models.vlm import VLM, Chat
from vlpref.numerics.logprobs import IGNORE
from vlpref.world.scenes import WorldConfig
from vlpref.world.tasks import build_split, world_vocabulary

# How often each task is drawn into a training batch.
DEFAULT_MIX = {"describe": 0.35, "open": 0.1, "pope": 0.2, "color": 0.07, "size": 0.07, "count": 0.07,
               "position": 0.07, "relation": 0.07}


class PretrainConfig(StrictModel):
    """One world model: its size, its data and its training length."""

    name: str = "world-base"
    hidden_size: int = 128
    layers: int = 2
    vision_hidden_size: int = 64
    vision_layers: int = 2
    scenes: int = Field(default=3000, ge=10, description="training scenes (sft split)")
    steps: int = Field(default=1500, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    warmup_steps: int = 100
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 0
    world: WorldConfig = Field(default_factory=WorldConfig)
    log_every: int = 50


def build_world_model(config: PretrainConfig):
    """The untrained tiny LLaVA for `config`: 48-px images, one 16-px patch per scene cell."""
    image_size = 3 * config.world.cell
    return build_tiny(
        "llava", words=world_vocabulary(), image_size=image_size, seed=config.seed,
        text={"hidden_size": config.hidden_size, "intermediate_size": 2 * config.hidden_size,
              "num_hidden_layers": config.layers, "num_attention_heads": 4, "num_key_value_heads": 2},
        vision={"hidden_size": config.vision_hidden_size, "intermediate_size": 2 * config.vision_hidden_size,
                "num_hidden_layers": config.vision_layers, "num_attention_heads": 2,
                "patch_size": config.world.cell},
    )


def _lr(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(config: PretrainConfig, out: str | Path, data: str | Path, log=print) -> dict:
    """Train one world model on the sft split in `data` (built if missing) and save it to `out`."""
    out, data = Path(out), Path(data)
    if not (data / "records.jsonl").is_file():
        build_split(data, "sft", config.scenes, config.world, seed=config.seed)
    prompts: list[Prompt] = read_records(data)
    by_task: dict[str, list[Prompt]] = {}
    for p in prompts:
        by_task.setdefault(p.meta["task"], []).append(p)
    tasks = [t for t in config.mix if t in by_task]
    weights = [config.mix[t] for t in tasks]
    images = {}  # scene images are shared by many prompts: decode each once

    def chat(p: Prompt) -> Chat:
        if p.images[0] not in images:
            images[p.images[0]] = Chat.from_prompt(p, data).images[0]
        return Chat(p.query, [images[p.images[0]]])

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model, processor = build_world_model(config)
    vlm = VLM(model, processor, name=config.name)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    start, history = time.perf_counter(), []
    for step in range(config.steps):
        batch_prompts = [rng.choice(by_task[t]) for t in rng.choices(tasks, weights=weights, k=config.batch_size)]
        batch = vlm.build_scoring_batch([chat(p) for p in batch_prompts], [p.reference for p in batch_prompts])
        per_token = vlm.forward_logprobs(batch)  # (B, T)
        loss = -per_token.sum() / (batch["labels"] != IGNORE).sum()
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
        if (step + 1) % config.log_every == 0 or step == config.steps - 1:
            recent = sum(history[-config.log_every:]) / len(history[-config.log_every:])
            log(f"{config.name} step {step + 1}/{config.steps} loss {recent:.4f} "
                f"({time.perf_counter() - start:.0f}s)")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    summary = {"name": config.name, "seconds": round(time.perf_counter() - start, 1), "final_loss": history[-1],
               "parameters": sum(p.numel() for p in model.parameters()), "config": config.model_dump()}
    (out / "vlpref_pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


Variant = Literal["base", "pool"]
