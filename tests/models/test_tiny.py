"""Tiny models save and reload through the Auto classes, offline, and are deterministic in their seed."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from vlpref.models.tiny import ARCHITECTURES, build_tiny
from vlpref.models.vlm import load_processor

EXPECTED_CLASS = {
    "llava": "LlavaForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_reload_through_auto_classes(arch, tiny_dirs):
    folder = Path(tiny_dirs[arch])
    assert AutoConfig.from_pretrained(folder).model_type == arch
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(model).__name__ == EXPECTED_CLASS[arch]
    original, _ = build_tiny(arch)
    for (name, a), (_, b) in zip(original.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    processor = load_processor(str(folder))
    stops = model.generation_config.eos_token_id
    assert processor.tokenizer.eos_token_id in (stops if isinstance(stops, list) else [stops])
    # the saved processor names the real class, so machines with torchvision load it with AutoProcessor as is
    assert json.loads((folder / "processor_config.json").read_text())["processor_class"].endswith("Processor")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_seed_controls_weights():
    a, _ = build_tiny("llava", seed=1)
    b, _ = build_tiny("llava", seed=1)
    c, _ = build_tiny("llava", seed=2)
    weight = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown tiny architecture 'mllama'"):
        build_tiny("mllama")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_size_overrides(arch):
    model, _ = build_tiny(arch, text={"hidden_size": 96, "num_hidden_layers": 3}, vision={"hidden_size": 48})
    small, _ = build_tiny(arch)
    text = model.config.get_text_config()
    assert (text.hidden_size, text.num_hidden_layers) == (96, 3)
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in small.parameters())
    with pytest.raises(ValueError, match=r"unknown text size key\(s\) \['hiden_size'\]"):
        build_tiny(arch, text={"hiden_size": 8})


def test_load_options(tiny_dirs):
    from vlpref.errors import VlprefError
    from vlpref.models.vlm import VLM

    vlm = VLM.load(tiny_dirs["llava"], dtype="bfloat16", attn_implementation="eager")
    assert next(vlm.model.parameters()).dtype == torch.bfloat16
    assert vlm.model.config._attn_implementation == "eager"
    with pytest.raises(VlprefError, match="dtype must be one of float32, bfloat16, float16, not 'fp8'"):
        VLM.load(tiny_dirs["llava"], dtype="fp8")
