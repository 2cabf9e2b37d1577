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

import copy
import json
import random
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from transformers import get_cosine_schedule_with_warmup

from vlpref.config import StrictModel
from vlpref.data.schema import Prompt
from vlpref.data.store import read_records
from vlpref.models.tiny import build_tiny
from vlpref.models.vlm import VLM, Chat
from vlpref.numerics.logprobs import IGNORE
from vlpref.world.scenes import COLS, ROWS, WorldConfig
from vlpref.world.tasks import build_split, world_vocabulary

# How often each task is drawn into a training batch. Yes/no existence (POPE) gets a large share: answering it needs
# binding the asked category to image tokens, which a tiny model learns far more slowly than describing.
DEFAULT_MIX = {"describe": 0.25, "open": 0.05, "pope": 0.3, "color": 0.08, "size": 0.08, "count": 0.08,
               "position": 0.08, "relation": 0.08}


class PretrainConfig(StrictModel):
    """One world model: its size, its data and its training length."""

    name: str = "world-base"
    hidden_size: int = 128
    layers: int = 4
    vision_hidden_size: int = 64
    vision_layers: int = 2
    tie_embeddings: bool = Field(default=True, description="share input and output word embeddings")
    scenes: int = Field(default=3000, ge=10, description="training scenes (sft split)")
    steps: int = Field(default=4000, ge=1)
    batch_size: int = Field(default=32, ge=1)
    # 2e-3 stalls the vision path at chance (colours never learned); 5e-4 learns (a probe in the notes).
    learning_rate: float = Field(default=5e-4, gt=0)
    warmup_steps: int = 100
    pope_first_steps: int = Field(default=1500, ge=0, description="curriculum: the first steps train yes/no "
                                  "existence (POPE) alone, where binding a question to image tokens is learned")
    align_weight: float = Field(default=1.0, ge=0, description="weight of the patch-word alignment loss (a stand-in "
                                "for CLIP pretraining and LLaVA's projector alignment; 0 turns it off)")
    align_positions: bool = Field(default=False, description="alignment targets also name each occupied cell's row and "
                                  "column words")
    snapshots: dict[str, int] = Field(default_factory=dict,
                                      description="pool members saved along the way: name -> step (training length)")
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 0
    world: WorldConfig = Field(default_factory=WorldConfig)
    log_every: int = 50


def build_world_model(config: PretrainConfig):
    """The untrained tiny LLaVA for `config`: 48-px images, one 16-px patch per scene cell.

    The image processor normalises with the world's background as its mean (std 0.5), so background pixels are 0
    and a patch's embedding comes from its object alone. With CLIP's own mean and std the near-white background
    maps to about +1.9 per channel; it then dominates every patch embedding, and a small shape's colour barely moves
    it. In a probe, the model learned the colour of a 7x7-px square within 300 steps with this normalisation, and
    not at all with CLIP's.
    """
    image_size = 3 * config.world.cell
    model, processor = build_tiny(
        "llava", words=world_vocabulary(), image_size=image_size, seed=config.seed,
        text={"hidden_size": config.hidden_size, "intermediate_size": 2 * config.hidden_size,
              "num_hidden_layers": config.layers, "num_attention_heads": 4, "num_key_value_heads": 2,
              "tie_word_embeddings": config.tie_embeddings},
        vision={"hidden_size": config.vision_hidden_size, "intermediate_size": 2 * config.vision_hidden_size,
                "num_hidden_layers": config.vision_layers, "num_attention_heads": 2,
                "patch_size": config.world.cell},
    )
    processor.image_processor.image_mean = [c / 255 for c in config.world.background]
    processor.image_processor.image_std = [0.5, 0.5, 0.5]
    return model, processor


def cell_targets(scene: dict, word_id, positions: bool = False, small_drawn: bool = False) -> torch.Tensor:
    """(9, K) word ids that describe each grid cell (row-major, as the image tokens), IGNORE where none.

    A large object's cell is described by its category and colour; a small one's by "small" and its colour, since
    its shape is not drawn (a disc): the alignment target never asks a patch for what it cannot show. With
    `positions`, an occupied cell also names its row and column words ("top", "left" …), the words descriptions
    use for where things are; empty cells stay without a target (naming their positions too made world-base
    answer "no" to every existence question: docs/world.md). K = 4 with positions, else 2. In a crisp world
    (`small_drawn`, small shapes drawn in full) small objects are named by their category too.
    """
    targets = torch.full((9, 4 if positions else 2), IGNORE, dtype=torch.long)
    for o in scene["objects"]:
        words = [o["category"] if o["size"] == "large" or small_drawn else "small", o["color"]]
        if positions:
            words += [ROWS[o["row"]], COLS[o["col"]]]
        targets[o["row"] * 3 + o["col"]] = torch.tensor([word_id(w) for w in words])
    return targets


def alignment_loss(model, pixel_values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image token's projected feature, read through the LM's output embedding, against the
    words describing its cell (K targets per cell, equal mass each: the optimum is ln 2 on a cell with two words,
    ln 4 with four).

    This stands in for what a real LLaVA starts from: a CLIP tower pretrained on captions and a projector aligned to
    the LM's word space (LLaVA's stage 1). Without it the tiny model learns to describe scenes but not, within the
    10-minute budget, to answer "Is there a {category}?" from the image: the image tokens come to mean the words
    they show only slowly, and yes/no existence needs exactly that to match the asked word against them.
    The features are those the LM's forward uses (`vision_feature_layer`, `vision_feature_select_strategy`); the
    tower runs a second time for them, which costs little at 9 tokens per image.
    pixel_values (B, 3, H, W), targets (B, 9, K) -> scalar.
    """
    config = model.config
    features = model.model.get_image_features(
        pixel_values=pixel_values, vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy).pooler_output
    features = torch.stack(list(features))  # (B, 9, hidden)
    logits = model.get_output_embeddings()(features)  # (B, 9, V)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    mask = targets != IGNORE
    picked = logprobs.gather(-1, targets.clamp(min=0)) * mask
    return -picked.sum() / mask.sum().clamp(min=1)


def pretrain(config: PretrainConfig, out: str | Path, data: str | Path, log=print, on_step=None) -> dict:
    """Train one world model on the sft split in `data` (built if missing) and save it to `out`.

    Loss = mean NLL of the reference-answer tokens + `align_weight` x `alignment_loss`. The first
    `pope_first_steps` draw yes/no existence questions only; then batches follow `mix`.
    `on_step(step, vlm)`, if given, runs every `log_every` steps (in eval mode), e.g. to evaluate a checkpoint.
    """
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
    word_id = processor.tokenizer.convert_tokens_to_ids
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    start, history = time.perf_counter(), []
    for step in range(config.steps):
        pope_first = step < config.pope_first_steps and "pope" in by_task and config.mix.get("pope", 0) > 0
        drawn = ["pope"] * config.batch_size if pope_first else \
            rng.choices(tasks, weights=weights, k=config.batch_size)
        batch_prompts = [rng.choice(by_task[t]) for t in drawn]
        batch = vlm.build_scoring_batch([chat(p) for p in batch_prompts], [p.reference for p in batch_prompts])
        per_token = vlm.forward_logprobs(batch)  # (B, T)
        loss = -per_token.sum() / (batch["labels"] != IGNORE).sum()
        if config.align_weight:
            targets = torch.stack([cell_targets(p.meta["scene"], word_id, config.align_positions,
                                                small_drawn=not config.world.small_as_disc)
                                   for p in batch_prompts])  # (B, 9, K)
            loss = loss + config.align_weight * alignment_loss(model, batch["pixel_values"], targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        history.append(loss.item())
        for name, at in config.snapshots.items():
            if step + 1 == at:  # a shorter-trained pool member, from the same run
                _save(model, processor, out.parent / name, config, name, at, time.perf_counter() - start, history)
        if (step + 1) % config.log_every == 0 or step == config.steps - 1:
            recent = sum(history[-config.log_every:]) / len(history[-config.log_every:])
            log(f"{config.name} step {step + 1}/{config.steps} loss {recent:.4f} "
                f"({time.perf_counter() - start:.0f}s)")
            if on_step is not None:  # e.g. a held-out evaluation; the model is put back in train mode after
                model.eval()
                on_step(step + 1, vlm)
                model.train()
    return _save(model, processor, out, config, config.name, config.steps, time.perf_counter() - start, history)


def _save(model, processor, out: Path, config: PretrainConfig, name: str, steps: int, seconds: float,
          history: list[float]) -> dict:
    """Save in bf16 (half the size; these models ship with vlpref). Every metric is measured on the saved copy,
    loaded back as fp32, so the figures describe exactly what users get."""
    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).to(torch.bfloat16).eval().save_pretrained(out)  # a copy: training goes on in fp32
    processor.save_pretrained(out)
    summary = {"name": name, "steps": steps, "seconds": round(seconds, 1),
               "final_loss": round(sum(history[-50:]) / len(history[-50:]), 4),
               "parameters": sum(p.numel() for p in model.parameters()), "config": config.model_dump()}
    (out / "vlpref_pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class PoolConfig(StrictModel):
    """The world's base model and its pool (recipes/world_pretrain.yaml holds the shipped values)."""

    recipe: Literal["world-pretrain"] = "world-pretrain"
    base: PretrainConfig = Field(
        default_factory=lambda: PretrainConfig(snapshots={"world-early": 2000, "world-mid": 3000}))
    pool: list[PretrainConfig] = Field(
        default_factory=lambda: [PretrainConfig(name="world-small", hidden_size=64, layers=2, steps=2500,
                                                pope_first_steps=1000)],
        description="further pool members (the base run's snapshots are members too)")
    eval_images: int = Field(default=300, ge=10, description="held-out scenes for the after-training metrics")


def run_pretrain(config: PoolConfig, out: str | Path, data: str | Path | None = None, pool: bool = False,
                 evaluate: bool = True, log=print) -> list[dict]:
    """Train the base model (and the pool) into out/<name>/, evaluate each on held-out scenes, and write
    out/world_models.json with sizes, training seconds and metrics. Training and evaluation scenes are written to
    data/sft and data/eval (default: out/data)."""
    out = Path(out)
    root = Path(data) if data else out / "data"
    data, eval_data = root / "sft", root / "eval"
    if evaluate and not (eval_data / "records.jsonl").is_file():
        build_split(eval_data, "eval", config.eval_images, config.base.world, seed=config.base.seed)
    summaries = []
    for member in [config.base, *(config.pool if pool else [])]:
        trained = [pretrain(member, out / member.name, data, log=log)]
        if pool:  # snapshots of this run are pool members too (shorter training lengths)
            trained += [json.loads((out / name / "vlpref_pretrain.json").read_text()) for name in member.snapshots]
        for summary in trained:
            summaries.append(_evaluated(summary, out, eval_data, evaluate, log))
    (out / "world_models.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return summaries


def _evaluated(summary: dict, out: Path, eval_data: Path, evaluate: bool, log) -> dict:
    from vlpref.evaluation.world import evaluate_world
    from vlpref.models.vlm import VLM

    member = summary["name"]
    if evaluate:
        metrics = evaluate_world(VLM.load(str(out / member)), eval_data)
        summary["metrics"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        log(f"{member}: CHAIR_i {metrics['chair_i']:.3f}  CHAIR_s {metrics['chair_s']:.3f}  "
            f"coverage {metrics['coverage']:.3f}  POPE F1 random/popular/adversarial "
            f"{metrics['pope_f1_random']:.3f}/{metrics['pope_f1_popular']:.3f}/"
            f"{metrics['pope_f1_adversarial']:.3f}  ({summary['seconds']:.0f}s training)")
        (out / member / "vlpref_pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
