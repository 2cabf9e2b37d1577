"""Random-weight models of real VLM layouts, built directly on the device that runs them (for the GPU benches).

    >>> from vlpref.bench.layouts import LAYOUTS, build_layout
    >>> model, processor = build_layout(LAYOUTS["llava-1.5-7b"], device="cuda", dtype=torch.bfloat16)  # 7.06B
    >>> model, processor = build_layout(LAYOUTS["llava-1.5-7b"].shrunk(), device="cpu")  # the same code path, tiny

A layout is one of `models.tiny`'s architectures at a real checkpoint's sizes: the language model's and vision tower's
widths and depths, the real vocabulary size (the LM head's cost is a large part of a step at 32k-152k entries) and an
image size that gives the real number of image tokens. Everything else is `build_tiny`'s: the word tokenizer (its
few hundred ids are a prefix of the vocabulary; the other rows are never input, but every logit is computed), the
chat template shaped like the family's own, and tiny's patch sizes (Qwen-VL's patch 4 at 96 px is the 576 patches
and 144 merged tokens of a 336-px image at the real patch 14; Idefics3's patch 8 at 208 px the 676 patches and 169
tokens of the real 364-px image).

How it is built without a CPU detour (a 7B model is 28 GB in fp32): `build_tiny` runs on the meta device, which
allocates nothing, to make the processor and the config; the config is resized to the layout; then the model class
is instantiated from it under `torch.device(device)` in the target dtype, so every weight is created and randomly
initialised (transformers' `_init_weights`, normal draws) on the device itself: seconds for 7B on a GPU.

`Layout.shrunk()` keeps the architecture, vocabulary, image size, tying and rotary layout and sets the widths and
depths to tiny's: the CPU tests run the real-layout code path through it without ever building a large model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import PreTrainedModel, ProcessorMixin

from vlpref.models.tiny import TEXT, VISION, build_tiny


@dataclass(frozen=True)
class Layout:
    name: str
    arch: str  # a models.tiny architecture
    text: dict = field(default_factory=dict)  # language model sizes (models.tiny.TEXT keys)
    vision: dict = field(default_factory=dict)  # vision tower sizes (models.tiny.VISION keys; LLaVA: + patch_size)
    vocab_size: int | None = None  # None: the word tokenizer's own (the `tiny` layout)
    image_size: int = 32  # pixels, chosen for the real number of image tokens (see the module docstring)
    tie_word_embeddings: bool = False
    max_positions: int = 1024
    source: str = ""  # the checkpoint whose sizes these are

    def shrunk(self, vocab_size: int | None = None) -> Layout:
        """The same layout at tiny widths and depths (CPU tests); `vocab_size` overrides the real vocabulary."""
        vision = {k: v for k, v in self.vision.items() if k == "patch_size"}
        return replace(self, name=f"{self.name}@tiny", text={}, vision=vision,
                       vocab_size=vocab_size or self.vocab_size)

    @property
    def image_tokens(self) -> int:
        """Image tokens one image becomes in the language model's sequence."""
        if self.arch == "llava":
            return (self.image_size // self.vision.get("patch_size", 8)) ** 2
        if self.arch in ("qwen2_vl", "qwen2_5_vl"):  # patch 4, 2x2 merge
            return (self.image_size // 4) ** 2 // 4
        return (self.image_size // 8) ** 2 // 4  # idefics3 / smolvlm: patch 8, scale factor 2


_CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   patch_size=14)
_QWEN_VIT = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16)
_QWEN25_VIT = dict(hidden_size=1280, intermediate_size=3420, num_hidden_layers=32, num_attention_heads=16)
_SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)


def _text(hidden: int, mlp: int, layers: int, heads: int, kv: int) -> dict:
    return dict(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv)


# `tiny` is the bench's historical model: LLaVA-1.5's 576 image tokens at tiny widths and the word vocabulary.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("tiny", "llava", vision={"patch_size": 14}, image_size=336, source="LLaVA-1.5 token layout, tiny widths"),
    Layout("llava-1.5-7b", "llava", _text(4096, 11008, 32, 32, 32), _CLIP_L_336, 32064, 336, max_positions=4096,
           source="llava-hf/llava-1.5-7b-hf"),
    Layout("llava-1.5-13b", "llava", _text(5120, 13824, 40, 40, 40), _CLIP_L_336, 32064, 336, max_positions=4096,
           source="llava-hf/llava-1.5-13b-hf"),
    Layout("qwen2-vl-2b", "qwen2_vl", _text(1536, 8960, 28, 12, 2), _QWEN_VIT, 151936, 96, True, 32768,
           source="Qwen/Qwen2-VL-2B-Instruct"),
    Layout("qwen2-vl-7b", "qwen2_vl", _text(3584, 18944, 28, 28, 4), _QWEN_VIT, 152064, 96, False, 32768,
           source="Qwen/Qwen2-VL-7B-Instruct"),
    Layout("qwen2.5-vl-3b", "qwen2_5_vl", _text(2048, 11008, 36, 16, 2), _QWEN25_VIT, 151936, 96, True, 32768,
           source="Qwen/Qwen2.5-VL-3B-Instruct"),
    Layout("qwen2.5-vl-7b", "qwen2_5_vl", _text(3584, 18944, 28, 28, 4), _QWEN25_VIT, 152064, 96, False, 32768,
           source="Qwen/Qwen2.5-VL-7B-Instruct"),
    Layout("idefics3-8b", "idefics3", _text(4096, 14336, 32, 32, 8), _SIGLIP_SO400M, 128259, 208, False, 10240,
           source="HuggingFaceM4/Idefics3-8B-Llama3"),
)}


def _resize_config(config, layout: Layout) -> None:
    """The layout's vocabulary, tying, positions and (Qwen-VL) rotary sections, on a tiny-built config."""
    text = config.get_text_config()
    if layout.vocab_size is not None:
        text.vocab_size = layout.vocab_size
        if hasattr(config, "vocab_size"):
            config.vocab_size = layout.vocab_size
    text.tie_word_embeddings = config.tie_word_embeddings = layout.tie_word_embeddings
    text.max_position_embeddings = layout.max_positions
    rope = getattr(text, "rope_parameters", None)
    if isinstance(rope, dict) and "mrope_section" in rope:
        # Qwen-VL's sections (temporal, height, width) split head_dim / 2 as 1/4, 3/8, 3/8: [16, 24, 24] at 128;
        # models.tiny's [2, 2, rest] is a tiny-width choice
        half = text.hidden_size // text.num_attention_heads // 2
        rope["mrope_section"] = [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]


def build_layout(layout: Layout, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """`layout`'s model with random weights, created on `device` in `dtype`, and its processor."""
    unknown = (set(layout.text) - set(TEXT)) | (set(layout.vision) - {*VISION, "patch_size"})
    if unknown:
        raise ValueError(f"layout {layout.name}: unknown size key(s) {sorted(unknown)}")
    with torch.device("meta"):  # the config and processor only: meta tensors allocate nothing
        template, processor = build_tiny(layout.arch, image_size=layout.image_size, text=dict(layout.text) or None,
                                         vision=dict(layout.vision) or None, seed=seed)
    config = template.config
    _resize_config(config, layout)
    torch.manual_seed(seed)
    with torch.device(device):
        model = type(template)._from_config(config, dtype=dtype)
    if layout.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = template.generation_config
    return model.eval(), processor


def save_layout(layout: Layout, out_dir: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    """Build `layout` on `device` and save it as a standard model folder (what both trainers load)."""
    out_dir = Path(out_dir)
    model, processor = build_layout(layout, device, dtype, seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    del model
    return out_dir


def parameter_count(layout: Layout) -> int:
    """Parameters of `layout`'s model, counted on the meta device (nothing is allocated)."""
    model, _ = build_layout(layout, device="meta")
    return sum(p.numel() for p in model.parameters())
