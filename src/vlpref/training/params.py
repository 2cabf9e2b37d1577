"""Which weights train: the vision tower / projector / language model split, freezing, and LoRA on the language model.

    >>> model = setup_trainable(vlm.model, config)            # peft-wrapped when config.finetune == "lora"
    >>> sorted({part_of(n) for n, p in model.named_parameters() if p.requires_grad})
    ['language']

The three parts are found by module name, which every supported family follows (transformers 5):
- vision tower: `vision_tower` (LLaVA, Gemma3), `visual` (Qwen-VL), `vision_model` (Idefics3 / SmolVLM);
- projector: `multi_modal_projector` (LLaVA, Gemma3), `connector` (Idefics3), `visual.merger` (Qwen-VL's patch
  merger, which plays the projector's part although it lives inside the vision module);
- language model: everything else (embeddings, decoder, LM head).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vlpref.errors import ConfigError

Part = Literal["vision", "projector", "language"]
PROJECTOR = ("multi_modal_projector", "connector", "merger")
VISION = ("vision_tower", "visual", "vision_model")


def part_of(name: str) -> Part:
    pieces = name.split(".")
    if any(p in PROJECTOR for p in pieces):
        return "projector"
    if any(p in VISION for p in pieces):
        return "vision"
    return "language"


def lora_targets(model: nn.Module, wanted: list[str] | str) -> list[str]:
    """Full names of the language model's linear layers to adapt (LM head excluded): all of them ("all-linear"), or
    those whose last name piece is in `wanted` (e.g. q_proj, v_proj)."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and part_of(n) == "language" and not n.endswith("lm_head")]
    if wanted != "all-linear":
        names = [n for n in names if n.rsplit(".", 1)[-1] in wanted]
        if not names:
            raise ConfigError(f"lora.target_modules {wanted} matches no linear layer of the language model")
    return names


def setup_trainable(model: nn.Module, config) -> nn.Module:
    """Freeze and wrap `model` as `config` (a TrainConfig) says; returns the model to train (peft's wrapper for
    LoRA). Parts that train in full: everything but the frozen parts (full fine-tuning); with LoRA, the adapters plus
    the projector and vision tower if they are not frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    if config.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                                 target_modules=lora_targets(model, lora.target_modules))
        model = get_peft_model(model, peft_config)  # marks the adapters trainable, nothing else
        if config.mixed_precision != "no":
            keep_activation_dtype(model)
        trains_in_full = {"projector": not config.freeze_projector, "vision": not config.freeze_vision}
    else:
        trains_in_full = {"projector": not config.freeze_projector, "vision": not config.freeze_vision,
                          "language": True}
    for name, p in model.named_parameters():
        if trains_in_full.get(part_of(name), False) and "lora_" not in name:
            p.requires_grad_(True)
            if p.dtype != torch.float32:  # fp32 master weights (config: only with autocast on), as ZeRO keeps them
                p.data = p.data.float()
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("nothing would train: every part is frozen")
    return model


def keep_activation_dtype(model: nn.Module) -> None:
    """Stop peft casting each adapted layer's input to the adapters' float32 (for use under autocast).

    peft keeps the adapters in float32 next to bf16 base weights (they are master weights: AdamW updates below a
    bf16 step would be lost) and casts the input x (N, d) up to float32 before them; under autocast their matmuls
    then cast it back down. Two copies of every adapted layer's input, forward and backward, for nothing: under
    autocast the matmul runs in the autocast dtype whatever x is, so the result is the same without them. The
    adapters stay float32; autocast casts them once per forward (its weight cache).
    """
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):  # peft's tuner layers (LoRA's Linear among them)
            module.cast_input_dtype_enabled = False


def param_groups(model: nn.Module, lr: float, projector_lr: float | None, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices decay, biases and norms do not (as HF Trainer); the projector at its own rate."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((part_of(name) == "projector", p.ndim >= 2), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             "lr": projector_lr if projector and projector_lr is not None else lr}
            for (projector, decays), params in sorted(groups.items())]
