"""One layer over Hugging Face image-text-to-text models: build inputs, generate, score log-probs.

    >>> from PIL import Image
    >>> from vlpref.models.vlm import VLM, Chat
    >>> from vlpref.data.schema import Turn, DecodingParams
    >>> vlm = VLM.load("llava-hf/llava-1.5-7b-hf", dtype="bfloat16", device="cuda")   # or a local folder
    >>> chat = Chat(turns=[Turn(role="user", text="<image>\\nWhat is shown?")], images=[Image.open("cat.png")])
    >>> out = vlm.generate([chat], [DecodingParams(temperature=0.7, seed=1)])
    >>> vlm.logprobs([chat], [out[0].text])[0].sum()     # log π(response | image, prompt)

Supported (and tested on tiny random-weight models): LLaVA-1.5, Qwen2-VL, Qwen2.5-VL, Idefics3 (SmolVLM) and
Gemma3. Inputs always go through the processor's own chat template and image processor, so image-token expansion
(576 tokens for LLaVA-1.5, dynamic grids for Qwen) is exactly what the model was trained with.

Two padding sides, on purpose:
- generation pads on the left, so every row's next token sits at the last position;
- scoring pads on the right, so each real token keeps the positions it has in an unpadded forward pass (causal
  attention never looks at the padding after it) and log-probs equal the single-example computation.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from vlpref.data.images import load_record_images
from vlpref.data.schema import IMAGE_TOKEN, DecodingParams, Prompt, Turn, count_image_tokens
from vlpref.errors import UnsupportedModelError, VlprefError
from vlpref.numerics.logprobs import IGNORE, token_logprobs

# model_type values whose processors and forward passes this layer is tested on.
SUPPORTED_MODEL_TYPES = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "gemma3")

DTYPES = ("float32", "bfloat16", "float16")

# Per-token tensors a processor may return besides input_ids/attention_mask; extended with zeros for response tokens
# (Gemma3 marks image tokens in token_type_ids, Qwen-VL in mm_token_type_ids; response tokens are text = 0).
TOKEN_ALIGNED_KEYS = ("token_type_ids", "mm_token_type_ids")


def check_supported(model_type: str, name: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{name}: architecture {model_type!r} is not supported; vlpref supports {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


@dataclass
class Chat:
    """A conversation to answer or score: turns with `<image>` placeholders and the images, in order."""

    turns: list[Turn]
    images: list[Image.Image] = field(default_factory=list)

    def __post_init__(self):
        found = count_image_tokens(self.turns)
        if found != len(self.images):
            raise ValueError(f"chat has {found} {IMAGE_TOKEN} placeholder(s) but {len(self.images)} image(s)")

    @classmethod
    def from_prompt(cls, prompt: Prompt, root: str | Path) -> Chat:
        """The prompt's query turns with its images loaded from the dataset folder `root` (RecordError naming the
        record and field if an image is missing, corrupt or outside the root)."""
        return cls(turns=prompt.query, images=load_record_images(root, prompt))


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_new_tokens reached)
    prompt_tokens: int = 0  # prompt length in tokens, image tokens included (for usage reports)


def to_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    """Our turns -> HF chat messages with content blocks; `<image>` becomes {"type": "image"} in place."""
    messages = []
    for turn in turns:
        blocks: list[dict[str, Any]] = []
        pieces = turn.text.split(IMAGE_TOKEN)
        for i, piece in enumerate(pieces):
            if i > 0:
                blocks.append({"type": "image"})
            if piece.strip():
                blocks.append({"type": "text", "text": piece.strip()})
        messages.append({"role": turn.role, "content": blocks})
    return messages


def _video_config(image_processor) -> dict | None:
    """The video processor config transformers' own loader wants where torchvision is installed, from the image
    processor's: same sizes, patching and normalisation (transformers infers it the same way from a legacy
    preprocessor_config.json). None where transformers has no video processor of that name."""
    import transformers

    config = image_processor.to_dict()
    name = config.pop("image_processor_type", type(image_processor).__name__)
    name = name.removesuffix("Pil").replace("ImageProcessor", "VideoProcessor")
    if not hasattr(transformers, name):  # dummy classes stand in where torchvision is missing, so this is portable
        return None
    return {**config, "video_processor_type": name}


def without_video(cls):
    """`cls` (a processor class) minus its video processor, under the same class name.

    transformers' video processors import torchvision, and Qwen2-VL's and SmolVLM's processors require one even for
    image-only use. vlpref never passes videos, so the processor is built without one on every machine, torchvision
    or not. The class name is kept, and the saved processor_config.json holds a video processor config derived from
    the image processor's, so that plain `AutoProcessor` loads the folder where torchvision is installed.
    """
    attributes = [a for a in cls.get_attributes() if a != "video_processor"]

    @functools.wraps(cls.__init__)  # save_pretrained picks what to save from the __init__ signature
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("video_processor", None)  # some processors take it as a required argument
        cls.__init__(self, *args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = cls.to_dict(self)
        video = _video_config(self.image_processor)
        if video is not None:
            out["video_processor"] = video
        return out

    return type(cls.__name__, (cls,), {"get_attributes": classmethod(lambda c: attributes), "__init__": __init__,
                                        "to_dict": to_dict})


def _processor_class(name_or_path: str, **kwargs):
    """The processor class a checkpoint names (processor, image processor or tokenizer config, as transformers looks
    them up), else the default one of its model type."""
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name
    from transformers.utils import cached_file

    for filename in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False, **kwargs)
        if path is None:
            continue
        with open(path, encoding="utf-8") as f:
            name = json.load(f).get("processor_class")
        if name and (cls := processor_class_from_name(name)) is not None:
            return cls
    model_type = AutoConfig.from_pretrained(name_or_path, **kwargs).model_type
    return processor_class_from_name(PROCESSOR_MAPPING_NAMES[model_type])


def load_processor(name_or_path: str, **kwargs):
    """The checkpoint's processor for images and text, built the same way whatever is installed.

    transformers' `AutoProcessor` depends on the machine: with torchvision it picks torchvision image processors and
    loads a video processor (failing on folders saved without torchvision, which have no video processor config);
    without it, Qwen2-VL's and SmolVLM's processors cannot be built at all. Here the image processor is always the
    PIL one, so a model sees the same pixels on every machine, and there is never a video processor (`without_video`).
    """
    cls = _processor_class(name_or_path, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(name_or_path, backend="pil", **kwargs)
    if "video_processor" not in cls.get_attributes():
        return cls.from_pretrained(name_or_path, image_processor=image_processor, **kwargs)
    # Built directly: `from_pretrained` reads the accepted arguments from `__init__`'s code, which the wrapper hides.
    # The processor's own config reader still finds its settings and chat template (chat_template.jinja, or a legacy
    # chat_template.json).
    config, _ = cls.get_processor_dict(name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    extra = {k: v for k, v in config.items()
             if k not in ("processor_class", "auto_map", "chat_template", *cls.get_attributes())}
    return without_video(cls)(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=config.get("chat_template") or tokenizer.chat_template, **extra)


class PerRowSampler(LogitsProcessor):
    """Samples each row's next token with that row's own settings and random generator.

    HF's `generate` samples the whole batch from the global RNG, so a request's output would depend on what else is
    in its batch. Here each row keeps its own `torch.Generator` seeded from the request, and the chosen token is
    returned as the only finite score, so `generate(do_sample=False)` emits exactly it. The temperature, top-k and
    top-p steps reuse transformers' warpers, applied row by row.
    """

    def __init__(self, params: list[DecodingParams], device: torch.device):
        self.params = params
        self.generators = []
        for p in params:
            g = torch.Generator(device=device)
            # An unseeded request draws fresh OS entropy; torch.seed() would also reseed the global RNG.
            g.manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
            self.generators.append(g)
        self.warpers = [
            [
                *([TopKLogitsWarper(p.top_k)] if p.top_k > 0 else []),
                *([TopPLogitsWarper(p.top_p)] if p.top_p < 1.0 else []),
            ]
            for p in params
        ]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # scores: (B, V) next-token logits for the B rows of this batch.
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, (p, generator, warpers) in enumerate(zip(self.params, self.generators, self.warpers, strict=True)):
            logits = scores[row : row + 1].float()  # (1, V)
            if p.temperature == 0.0:
                chosen[row] = logits.argmax(dim=-1)[0]
                continue
            logits = logits / p.temperature
            for warp in warpers:
                logits = warp(input_ids[row : row + 1], logits)
            probs = torch.softmax(logits, dim=-1)
            chosen[row] = torch.multinomial(probs[0], 1, generator=generator)[0]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen.unsqueeze(1), 0.0)
        return out


class VLM:
    """A Hugging Face image-text-to-text model with its processor."""

    def __init__(self, model, processor, name: str = "model"):
        check_supported(model.config.model_type, name)
        self.model, self.processor, self.name = model, processor, name
        self.tokenizer = processor.tokenizer
        if self.tokenizer.pad_token_id is None:  # some checkpoints ship without one; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.end_of_turn_id = self._find_end_of_turn()
        # Generation stops at any of: the end-of-turn token, the tokenizer's EOS, the checkpoint's EOS list.
        # (Gemma3-it: EOS is <eos> but turns end with <end_of_turn>; its generation_config lists both.)
        configured = model.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured]
        self.stop_ids = list(dict.fromkeys(i for i in [self.end_of_turn_id, self.tokenizer.eos_token_id, *configured]
                                           if i is not None))

    def _find_end_of_turn(self) -> int:
        """The special token the chat template puts right after an assistant message (e.g. <|im_end|>,
        <end_of_turn>, </s>): what a response ends with when scored, and a stop token when sampling."""
        marker = "vlprefresponsemarker"
        try:
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": [{"type": "text", "text": "x"}]},
                 {"role": "assistant", "content": [{"type": "text", "text": marker}]}],
                chat_template=self.processor.chat_template, tokenize=False,
            )
        except Exception:  # a template that cannot render this two-turn chat: fall back to the tokenizer's EOS
            return self.tokenizer.eos_token_id
        suffix = rendered.split(marker, 1)[1] if marker in rendered else ""
        special = set(self.tokenizer.all_special_ids) | set(self.tokenizer.added_tokens_decoder)
        for token_id in self.tokenizer(suffix, add_special_tokens=False)["input_ids"]:
            if token_id in special:
                return token_id
        return self.tokenizer.eos_token_id

    @classmethod
    def load(
        cls,
        name_or_path: str,
        dtype: str = "float32",
        device: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
    ) -> VLM:
        """Load by hub id or local path through `AutoModelForImageTextToText` + `AutoProcessor`.

        Args:
            dtype: float32 (tests, exact comparisons), bfloat16 or float16.
            device: e.g. "cuda" or "cuda:1"; None keeps the model on the CPU.
            revision: a hub branch, tag or commit, for reproducible runs.
            attn_implementation: e.g. "sdpa", "flash_attention_2", "eager"; None lets transformers choose.
        """
        if dtype not in DTYPES:
            raise VlprefError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        from transformers import AutoConfig

        # Checked from the config, before any weights are read.
        check_supported(AutoConfig.from_pretrained(name_or_path, **hub).model_type, name_or_path)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=getattr(torch, dtype), **hub, **extra)
        if device is not None:
            model = model.to(device)
        return cls(model.eval(), load_processor(name_or_path, **hub), name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def prompt_text(self, turns: list[Turn], add_generation_prompt: bool = True) -> str:
        """The chat-template rendering of `turns`, image placeholders still unexpanded.

        The processor's template is rendered by the tokenizer's Jinja renderer: for text this is what
        `processor.apply_chat_template(tokenize=False)` does, minus the video defaults that SmolVLM's processor
        reads from a video processor we do not load.
        """
        return self.tokenizer.apply_chat_template(
            to_messages(turns), chat_template=self.processor.chat_template,
            add_generation_prompt=add_generation_prompt, tokenize=False,
        )

    def encode(self, chats: list[Chat], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """Processor outputs for a batch of prompts (input_ids (B, T), attention_mask, pixel tensors …)."""
        texts = [self.prompt_text(c.turns) for c in chats]
        images = [list(c.images) for c in chats]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if any(images):
            kwargs["images"] = images
        self.tokenizer.padding_side = padding_side
        batch = self.processor(**kwargs)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def generate(
        self, chats: list[Chat], params: list[DecodingParams] | DecodingParams, batch_size: int = 8
    ) -> list[Generation]:
        """Answer each chat. A request with a seed gives the same text whatever else is in its batch."""
        if isinstance(params, DecodingParams):
            params = [params] * len(chats)
        if len(params) != len(chats):
            raise ValueError(f"{len(chats)} chats but {len(params)} decoding settings")
        results: list[Generation] = []
        for start in range(0, len(chats), batch_size):
            batch_chats, batch_params = chats[start : start + batch_size], params[start : start + batch_size]
            inputs = self.encode(batch_chats, padding_side="left")
            prompt_len = inputs["input_ids"].shape[1]
            # A clean config: decoding is exactly what `params` say. transformers fills every field left unset
            # from model.generation_config (a checkpoint's repetition_penalty, suppress_tokens …), so that is
            # swapped for the clean config while generating.
            config = GenerationConfig(
                max_new_tokens=max(p.max_new_tokens for p in batch_params),
                do_sample=False,
                eos_token_id=self.stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                bos_token_id=self.tokenizer.bos_token_id,
            )
            sampler = PerRowSampler(batch_params, self.device)
            saved, self.model.generation_config = self.model.generation_config, config
            try:
                out = self.model.generate(
                    **inputs, generation_config=config, logits_processor=LogitsProcessorList([sampler])
                )
            finally:
                self.model.generation_config = saved
            for row, p in enumerate(batch_params):
                tokens = out[row, prompt_len:].tolist()[: p.max_new_tokens]
                stop = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
                if stop is not None:
                    tokens, reason = tokens[:stop], "stop"
                else:
                    reason = "length"
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                results.append(Generation(text=text, token_ids=tokens, finish_reason=reason,
                                          prompt_tokens=int(inputs["attention_mask"][row].sum())))
        return results

    def response_ids(self, response: str) -> list[int]:
        """Token ids of a response as the chat template writes it: the text, then the end-of-turn token."""
        return [*self.tokenizer(response, add_special_tokens=False)["input_ids"], self.end_of_turn_id]

    def build_scoring_batch(self, chats: list[Chat], responses: list[str] | list[list[int]]) -> dict[str, torch.Tensor]:
        """Prompt tokens (from the processor) + response tokens, right-padded; `labels` mark the response.

        A response is a text (tokenised by `response_ids`) or a list of token ids used as they are.

        Response tokens are appended at the token level (as TRL does), so the prompt is tokenised exactly as for
        generation. Returns the model inputs plus `labels` (B, T) with IGNORE on prompt, image and padding positions.
        """
        prompts = self.encode(chats, padding_side="right")
        mask = prompts["attention_mask"].bool()  # (B, Tp)
        rows = []
        for b, response in enumerate(responses):
            n = int(mask[b].sum())  # right padding: the prompt is the first n positions
            ids = response if isinstance(response, list) else self.response_ids(response)
            rows.append((prompts["input_ids"][b, :n], torch.tensor(ids, dtype=torch.long, device=self.device)))
        width = max(len(p) + len(r) for p, r in rows)
        batch = len(rows)
        input_ids = torch.full((batch, width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        attention = torch.zeros((batch, width), dtype=torch.long, device=self.device)
        labels = torch.full((batch, width), IGNORE, dtype=torch.long, device=self.device)
        extra = {k: torch.zeros((batch, width), dtype=prompts[k].dtype, device=self.device)
                 for k in TOKEN_ALIGNED_KEYS if k in prompts}
        for b, (prompt, response) in enumerate(rows):
            n, m = len(prompt), len(response)
            input_ids[b, :n], input_ids[b, n : n + m] = prompt, response
            attention[b, : n + m] = 1
            labels[b, n : n + m] = response
            for k in extra:
                extra[k][b, :n] = prompts[k][b, :n]
        other = {k: v for k, v in prompts.items() if k not in ("input_ids", "attention_mask", *TOKEN_ALIGNED_KEYS)}
        return {"input_ids": input_ids, "attention_mask": attention, **extra, **other, "labels": labels}

    def forward_logits(self, batch: dict[str, torch.Tensor], model=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, keep, V) from the earliest response position on, and the labels trimmed to match (B, keep).

        Only positions from the earliest response start onward are scored, so the model is asked for just those
        logits: with LLaVA's 576 image tokens the prompt is most of the sequence, and (T, V) logits dominate memory.
        `model`: what to call when it wraps `self.model` (DDP, peft). Differentiable.
        """
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        first = int((labels != IGNORE).float().argmax(dim=1).min())
        keep = labels.shape[1] - first + 1
        return (model or self.model)(**inputs, logits_to_keep=keep).logits, labels[:, -keep:]

    def forward_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token log-probs (B, T) of `batch["labels"]`, 0 where IGNORE. Differentiable (no no_grad here)."""
        logits, labels = self.forward_logits(batch)
        scored = token_logprobs(logits, labels)  # (B, keep)
        width = batch["labels"].shape[1]
        return torch.cat([scored.new_zeros(scored.shape[0], width - scored.shape[1]), scored], dim=1)

    @torch.no_grad()
    def logprobs(self, chats: list[Chat], responses: list[str], batch_size: int = 8) -> list[torch.Tensor]:
        """Per-token log-probs of each response (its tokens + end-of-turn) given its chat: a list of 1-D tensors."""
        if len(chats) != len(responses):
            raise ValueError(f"{len(chats)} chats but {len(responses)} responses")
        out: list[torch.Tensor] = []
        for start in range(0, len(chats), batch_size):
            batch = self.build_scoring_batch(chats[start : start + batch_size], responses[start : start + batch_size])
            per_token = self.forward_logprobs(batch)
            scored = batch["labels"] != IGNORE
            out.extend(per_token[b][scored[b]].cpu() for b in range(per_token.shape[0]))
        return out
