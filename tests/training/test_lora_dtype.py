"""LoRA under bf16 autocast: the adapters stay float32, and peft no longer casts each adapted layer's input up to
float32 and back (CPU autocast, tiny LLaVA with bf16 weights)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vlpref.models.tiny import build_tiny
from vlpref.training.params import setup_trainable


def _lora_model(mixed_precision: str):
    model, _ = build_tiny("llava", seed=0)
    model = model.to(torch.bfloat16)
    config = SimpleNamespace(finetune="lora", freeze_projector=True, freeze_vision=True,
                             mixed_precision=mixed_precision,
                             lora=SimpleNamespace(r=4, alpha=8, dropout=0.0, target_modules="all-linear"))
    torch.manual_seed(1)
    model = setup_trainable(model, config)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would hide the adapters' share of the output
            torch.nn.init.normal_(p, std=0.5)
    return model


def _casts_and_logits(model) -> tuple[int, torch.Tensor]:
    from torch.profiler import profile

    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with profile() as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    casts = sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
    return casts, logits


def test_adapters_skip_the_input_casts_under_autocast_with_the_same_output():
    casting, kept = _lora_model("no"), _lora_model("bf16")
    adapters = [p for n, p in kept.named_parameters() if "lora_" in n]
    assert adapters and all(p.dtype == torch.float32 and p.requires_grad for p in adapters)  # master weights
    casts_before, logits_before = _casts_and_logits(casting)
    casts_after, logits_after = _casts_and_logits(kept)
    # 2 layers × 7 adapted linears: each cast its input to float32 (and autocast cast it back: 2 copies a layer)
    assert casts_before - casts_after >= 2 * 7 * 2
    assert torch.equal(logits_before, logits_after)
