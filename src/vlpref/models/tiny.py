"""Tiny random-weight VLMs of real architectures, built locally from configs.

    >>> from vlpref.models.tiny import build_tiny
    >>> model, processor = build_tiny("llava")            # LLaVA-1.5: CLIP vision tower + Llama
    >>> model.save_pretrained("tiny-llava"); processor.save_pretrained("tiny-llava")
    >>> # ... and later, like any hub model:
    >>> from vlpref.models.vlm import VLM
    >>> vlm = VLM.load("tiny-llava")

The test suite runs on these (TRL's suite does the same with hub-hosted tiny models; ours are built offline). Each
model is the real transformers class with a real processor (the PIL image processor, a word-level tokenizer holding the
architecture's special tokens, and a chat template shaped like the family's own), so every code path that touches
`AutoModelForImageTextToText` / `AutoProcessor` is exercised. Images are 32x32 by default and become 4-16 image tokens.

Sizes are deliberately small (hidden 64, 2 layers) so a forward pass takes milliseconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, ProcessorMixin

from vlpref.models.tokenizer import BASE_WORDS, build_word_tokenizer
from vlpref.models.vlm import without_video

# The architectures (model_type values) the VLM layer supports and tests. qwen2_5_vl shares Qwen2-VL's processor;
# smolvlm (SmolVLM2) is Idefics3's layout with a video-capable processor.
ARCHITECTURES = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "gemma3")

TEMPLATE_WORDS = ["helpful", "you", "are", "user", "assistant", "system", "model"]  # words the chat templates use

# A shared Jinja prelude: accept string content or a list of {"type": "text"|"image"} blocks, as HF chat templates do.
_PARTS = (
    "{%- if message['content'] is string -%}{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
)

# LLaVA-1.5 ("USER: <image>\n... ASSISTANT:"), as in the llava-hf checkpoints.
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}" + _PARTS + "{%- if message['role'] == 'system' -%}"
    "{% for p in parts %}{{ p['text'] }}{% endfor %}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}USER: "
    "{% for p in parts %}{% if p['type'] == 'image' %}<image>\n{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{{ ' ' }}"
    "{%- else -%}ASSISTANT: {% for p in parts %}{{ p['text'] }}{% endfor %}</s>{{ ' ' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)

# Qwen2-VL / Qwen2.5-VL ChatML with vision markers and the default system prompt.
QWEN_TEMPLATE = (
    "{%- for message in messages -%}" + _PARTS + "{%- if loop.first and message['role'] != 'system' -%}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% for p in parts %}{% if p['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ p['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)

# Idefics3 / SmolVLM ("User:<image>...<end_of_utterance>\nAssistant:").
IDEFICS3_TEMPLATE = (
    "<|im_start|>{%- for message in messages -%}" + _PARTS + "{{ message['role'] | capitalize }}: "
    "{% for p in parts %}{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)

# Gemma3 ("<start_of_turn>user\n<start_of_image>...<end_of_turn>\n<start_of_turn>model\n").
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages -%}" + _PARTS
    + "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "<start_of_turn>{{ role }}\n"
    "{% for p in parts %}{% if p['type'] == 'image' %}<start_of_image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
    "<end_of_turn>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<start_of_turn>model\n{%- endif -%}"
)

# Default sizes of every tiny language model and vision tower; `build_tiny(text=..., vision=...)` overrides them.
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@dataclass(frozen=True)
class Sizes:
    text: dict
    vision: dict


def _ids(tok, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def _text_ids(tok) -> dict:
    return dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, max_position_embeddings=1024)


def _llava(words: list[str], image_size: int, sizes: Sizes) -> tuple[PreTrainedModel, ProcessorMixin]:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = build_word_tokenizer(words, special_tokens=["<image>"], eos_token="</s>", chat_template=LLAVA_TEMPLATE)
    patch = sizes.vision.pop("patch_size", 8)  # the shapes world uses 16: one patch per scene cell
    tie = sizes.text.pop("tie_word_embeddings", False)
    config = LlavaConfig(
        tie_word_embeddings=tie,
        vision_config=dict(model_type="clip_vision_model", image_size=image_size, patch_size=patch,
                           projection_dim=sizes.vision["hidden_size"], **sizes.vision),
        text_config=dict(model_type="llama", **sizes.text, **_text_ids(tok), tie_word_embeddings=tie),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",  # drop CLS, as LLaVA-1.5 does
        vision_feature_layer=-2,
        image_seq_length=(image_size // patch) ** 2,
        pad_token_id=tok.pad_token_id,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE,
    )
    return LlavaForConditionalGeneration(config), processor


def _qwen(words: list[str], image_size: int, sizes: Sizes, version: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    import transformers as tf
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ["<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = build_word_tokenizer(words, special_tokens=specials, eos_token="<|im_end|>", chat_template=QWEN_TEMPLATE)
    image_id, video_id, start_id, end_id = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                "<|vision_end|>")
    head_dim = sizes.text["hidden_size"] // sizes.text["num_attention_heads"]
    rope = {"rope_type": "default", "mrope_section": [2, 2, head_dim // 2 - 4], "rope_theta": 10000.0}
    text = dict(**sizes.text, **_text_ids(tok), rope_parameters=rope)
    patch, merge, v = 4, 2, sizes.vision
    if version == "qwen2_vl":
        vision = dict(depth=v["num_hidden_layers"], embed_dim=v["hidden_size"], hidden_size=sizes.text["hidden_size"],
                      num_heads=v["num_attention_heads"], mlp_ratio=v["intermediate_size"] // v["hidden_size"],
                      patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2)
        config_cls, model_cls, proc_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    else:
        vision = dict(depth=v["num_hidden_layers"], hidden_size=v["hidden_size"],
                      intermediate_size=v["intermediate_size"], num_heads=v["num_attention_heads"], patch_size=patch,
                      spatial_merge_size=merge, temporal_patch_size=2, out_hidden_size=sizes.text["hidden_size"],
                      window_size=patch * merge * 2, fullatt_block_indexes=[v["num_hidden_layers"] - 1])
        config_cls, model_cls = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
        proc_cls = tf.Qwen2_5_VLProcessor
    config = config_cls(text_config=text, vision_config=vision, image_token_id=image_id, video_token_id=video_id,
                        vision_start_token_id=start_id, vision_end_token_id=end_id)
    # Images are resized to a multiple of patch*merge within [min, max] pixels; 32x32 -> 8x8 patches -> 16 tokens.
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": (image_size // 2) ** 2, "longest_edge": image_size**2},
        patch_size=patch, merge_size=merge, temporal_patch_size=2,
    )
    # No video processor: transformers' video processors need torchvision (see `without_video`).
    processor = without_video(proc_cls)(image_processor=image_processor, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    return model_cls(config), processor


def _idefics3(words: list[str], image_size: int, sizes: Sizes, version: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Idefics3 (SmolVLM v1 checkpoints) or SmolVLM (SmolVLM2): the same layout, SmolVLM's processor adds video."""
    import transformers as tf

    if version == "idefics3":
        from transformers.models.idefics3.image_processing_pil_idefics3 import (
            Idefics3ImageProcessorPil as ImageProcessor,
        )

        config_cls, model_cls, proc_cls = tf.Idefics3Config, tf.Idefics3ForConditionalGeneration, tf.Idefics3Processor
    else:
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil as ImageProcessor

        config_cls, model_cls = tf.SmolVLMConfig, tf.SmolVLMForConditionalGeneration
        proc_cls = without_video(tf.SmolVLMProcessor)  # video processors need torchvision (see `without_video`)
    grid = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    specials = ["<|im_start|>", "<fake_token_around_image>", "<image>", "<global-img>", "<video>", *grid]
    tok = build_word_tokenizer(words, special_tokens=specials, eos_token="<end_of_utterance>",
                               chat_template=IDEFICS3_TEMPLATE)
    patch, scale = 8, 2
    config = config_cls(
        vision_config=dict(image_size=image_size, patch_size=patch, **sizes.vision),
        text_config=dict(model_type="llama", **sizes.text, **_text_ids(tok)),
        scale_factor=scale,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )
    # One global image, no splitting into tiles: (32/8)^2 / 2^2 = 4 image tokens.
    image_processor = ImageProcessor(
        do_image_splitting=False, size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
    )
    processor = proc_cls(image_processor=image_processor, tokenizer=tok,
                         image_seq_len=(image_size // patch) ** 2 // scale**2, chat_template=IDEFICS3_TEMPLATE)
    return model_cls(config), processor


def _gemma3(words: list[str], image_size: int, sizes: Sizes) -> tuple[PreTrainedModel, ProcessorMixin]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    # As in the real Gemma3-it checkpoints: the tokenizer's EOS is <eos>, but a turn ends with <end_of_turn>, and
    # generation_config lists both as stop tokens.
    tok = build_word_tokenizer(words, special_tokens=["<start_of_turn>", "<end_of_turn>"], extra_special_tokens=named,
                               bos_token="<bos>", eos_token="<eos>", chat_template=GEMMA3_TEMPLATE)
    patch, mm_tokens = 8, 4  # 4x4 patches average-pooled to 2x2 = 4 soft tokens per image
    head_dim = sizes.text["hidden_size"] // sizes.text["num_attention_heads"]
    config = Gemma3Config(
        text_config=dict(**sizes.text, **_text_ids(tok), head_dim=head_dim, sliding_window=64,
                         query_pre_attn_scalar=head_dim),
        vision_config=dict(model_type="siglip_vision_model", image_size=image_size, patch_size=patch, **sizes.vision),
        mm_tokens_per_image=mm_tokens,
        boi_token_index=tok.convert_tokens_to_ids(named["boi_token"]),
        eoi_token_index=tok.convert_tokens_to_ids(named["eoi_token"]),
        image_token_index=tok.convert_tokens_to_ids(named["image_token"]),
        pad_token_id=tok.pad_token_id,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=mm_tokens,
                                chat_template=GEMMA3_TEMPLATE)
    model = Gemma3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    return model, processor


BUILDERS: dict[str, Callable[[list[str], int, Sizes], tuple[PreTrainedModel, ProcessorMixin]]] = {
    "llava": _llava,
    "qwen2_vl": lambda words, size, sizes: _qwen(words, size, sizes, "qwen2_vl"),
    "qwen2_5_vl": lambda words, size, sizes: _qwen(words, size, sizes, "qwen2_5_vl"),
    "idefics3": lambda words, size, sizes: _idefics3(words, size, sizes, "idefics3"),
    "smolvlm": lambda words, size, sizes: _idefics3(words, size, sizes, "smolvlm"),
    "gemma3": _gemma3,
}


def build_tiny(
    arch: str,
    words: Iterable[str] = BASE_WORDS,
    image_size: int = 32,
    seed: int = 0,
    text: dict | None = None,
    vision: dict | None = None,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny random-weight model and its processor; deterministic in `seed`.

    Args:
        arch: one of `ARCHITECTURES`.
        words: the tokenizer's vocabulary.
        image_size: input image side in pixels (the processor resizes every image to it).
        seed: seeds the weight initialisation.
        text: overrides of the language model's sizes (keys of `TEXT`), e.g. {"hidden_size": 128}.
        vision: overrides of the vision tower's sizes (keys of `VISION`; for LLaVA also `patch_size`).
    """
    if arch not in BUILDERS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    # LLaVA alone also takes vision={"patch_size": ...} (default 8; the others' token layouts assume 8) and
    # text={"tie_word_embeddings": True}.
    vision_keys = {*VISION, "patch_size"} if arch == "llava" else set(VISION)
    text_keys = {*TEXT, "tie_word_embeddings"} if arch == "llava" else set(TEXT)
    for given, allowed, name in ((text, text_keys, "text"), (vision, vision_keys, "vision")):
        unknown = set(given or {}) - allowed
        if unknown:
            raise ValueError(f"unknown {name} size key(s) {sorted(unknown)}; valid: {sorted(allowed)}")
    torch.manual_seed(seed)
    sizes = Sizes(text={**TEXT, **(text or {})}, vision={**VISION, **(vision or {})})
    model, processor = BUILDERS[arch]([*words, *TEMPLATE_WORDS], image_size, sizes)
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    if not isinstance(model.generation_config.eos_token_id, list):  # a builder may list several stop tokens
        model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval(), processor


def save_tiny(arch: str, out_dir: str | Path, **kwargs) -> Path:
    """Build a tiny model and save it in standard Hugging Face layout (safetensors + processor files)."""
    out_dir = Path(out_dir)
    model, processor = build_tiny(arch, **kwargs)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
