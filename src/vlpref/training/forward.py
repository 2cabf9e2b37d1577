"""Score responses to multimodal prompts for training: the image+prompt prefix encoded once and shared by every
response to it (chosen and rejected), or the plain unshared layout.

    >>> from vlpref.training.forward import score_examples, score_shared, summed
    >>> scored = score_shared(vlm, chats, [[chosen_ids, rejected_ids], ...])   # one prefix pass per prompt
    >>> logps, counts = summed(scored)                                           # (2B,), (2B,) row 2b = chosen b
    >>> logps, counts = score_examples(vlm, examples, root)                      # (B, 2), (B, 2) from Examples

Why share. A DPO pair is one prompt (576 image tokens for LLaVA-1.5, ~100 text tokens) and two responses (~100
tokens each). The usual layout (TRL's) concatenates chosen and rejected into 2B full sequences, so the vision tower
and every prompt token run twice, forward and backward. Here the prompt runs once, its keys and values (the KV cache,
still attached to the autograd graph) are repeated for each response, and the responses continue from it. Gradients
flow back through the cache into the prompt's computation, so log-probs and parameter gradients equal the unshared
ones (tests/training/test_forward.py checks both on every supported architecture, fp32, relative 1e-5).

How the continuation is made exact on right-padded prompts:
- the prefix pass covers each prompt minus its last token (that token is masked out of the prefix), so that the
  continuation's first position is the last prompt token, whose logits predict the first response token;
- padding between a short prompt and its continuation stays in the cache but is masked out of attention;
- each continuation token gets its position explicitly: the last prompt token's position + 0, 1, 2 … (for Qwen-VL's
  3-D M-RoPE, text positions after the image, equal in the three axes), which is what the model computes itself for
  the unpadded, unshared sequence.

Gradient checkpointing. transformers drops the cache inside checkpointed layers unless a layer declares it only
reads it (`_can_checkpoint_with_cache`), because a replayed layer would append its keys a second time. So the
prefix pass writes a `PrefixCache` whose replay finds its layer filled and returns what it computed without storing
it again, and the continuation reads a `ContinuationCache` that returns prefix + new keys and stores nothing: a
replay sees exactly what the first pass saw. With those two, `allow_checkpointing` marks the model's layers as
cache-readers, and prefix sharing stays exact under (non-reentrant) checkpointing — tested like the rest.

Pairs whose sides have different images (image-contrast data) use `score_unshared`, and so does a batch of a
sliding-window model (Gemma3) whose padded prompt + response reaches the window (see `score_shared`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer

from vlpref.models.vlm import TOKEN_ALIGNED_KEYS, VLM, Chat
from vlpref.numerics.logprobs import IGNORE, token_logprobs
from vlpref.training.data import Example, chat_of

# model_type values whose language model takes Qwen-VL's 3-D (temporal, height, width) rotary positions.
MROPE_TYPES = ("qwen2_vl", "qwen2_5_vl")


@dataclass
class Scored:
    """Logits and aligned labels of a batch of responses: row r's label t is predicted by logits[r, t-1].

    logits: (N, T, V); labels: (N, T) with IGNORE outside the response (the first position is always IGNORE).
    """

    logits: torch.Tensor
    labels: torch.Tensor


class PrefixCache(DynamicCache):
    """Written once by the prefix pass. A checkpoint replay of that pass finds its layer filled and returns the
    recomputed keys and values as the first pass did (from an empty cache: just them), storing nothing."""

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx < len(self.layers) and self.layers[layer_idx].get_seq_length() > 0:
            return key_states, value_states
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


class ContinuationCache(DynamicCache):
    """Reads a PrefixCache's layers: returns prefix + new keys and values and stores nothing, so every call —
    first pass or checkpoint replay — sees the same prefix."""

    @classmethod
    def reading(cls, prefix: PrefixCache) -> ContinuationCache:
        cache = cls.__new__(cls)
        cache.__dict__.update(prefix.__dict__)  # shares the layers; neither cache changes them from here on
        return cache

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        layer = self.layers[layer_idx]
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)


def allow_checkpointing(model: torch.nn.Module) -> None:
    """Let gradient-checkpointed layers keep the cache argument (they only read a ContinuationCache and write a
    PrefixCache idempotently, see the module docstring)."""
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module._can_checkpoint_with_cache = True


def summed(scored: Scored) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs (N,) and response token counts (N,)."""
    return token_logprobs(scored.logits, scored.labels).sum(-1), (scored.labels != IGNORE).sum(-1)


def _pad(rows: list[list[int]], value: int, device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=device)
    return out


def _positions(vlm: VLM, prompt: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Explicit rotary positions of the (right-padded) prompt: (3, B, Tp) for M-RoPE models, None for the others
    (their default, 0 … Tp-1 per row, is already right for right padding)."""
    if vlm.model.config.model_type not in MROPE_TYPES:
        return None
    kwargs = {k: prompt[k] for k in ("image_grid_thw", "video_grid_thw", "mm_token_type_ids") if k in prompt}
    positions, _ = vlm.model.model.get_rope_index(prompt["input_ids"], attention_mask=prompt["attention_mask"],
                                                  **kwargs)
    return positions


def _sliding_window(vlm: VLM) -> int | None:
    """The sliding window of a model with sliding-window attention layers (Gemma3), else None."""
    text = vlm.model.config.get_text_config()
    layer_types = getattr(text, "layer_types", None) or []
    window = getattr(text, "sliding_window", None)
    return window if window and "sliding_attention" in layer_types else None


def score_shared(vlm: VLM, chats: list[Chat], responses: list[list[list[int]]], model=None) -> Scored:
    """Score `responses[b]` (token id lists, end-of-turn included) given `chats[b]`, encoding each chat once.

    Returns Scored with N = Σ_b len(responses[b]) rows in order (b, 0), (b, 1), …; every prompt must have the same
    number of responses k (2 for a pair). Differentiable. `model` is what to call, when it is a wrapper of
    `vlm.model` (DDP, peft); `vlm.model` by default.
    """
    k = len(responses[0])
    if any(len(r) != k for r in responses) or len(responses) != len(chats):
        raise ValueError("score_shared needs one list of k responses per chat, the same k for every chat")
    model, device = model or vlm.model, vlm.device
    prompt = vlm.encode(chats, padding_side="right")
    mask = prompt["attention_mask"]  # (B, Tp)
    lengths = mask.sum(-1)  # (B,) right padding: row b's prompt is positions 0 … n_b-1
    rows = torch.arange(len(chats), device=device)
    last_token = prompt["input_ids"][rows, lengths - 1]  # (B,)
    for key in TOKEN_ALIGNED_KEYS:  # the last prompt token is re-run as text: it must not be an image token
        if key in prompt and bool(prompt[key][rows, lengths - 1].any()):
            raise ValueError(f"{vlm.name}: a prompt ends with an image token; prefix sharing needs a text token last")

    window = _sliding_window(vlm)
    if window is not None and mask.shape[1] + max(len(r) for rs in responses for r in rs) + 1 >= window:
        # Sliding-window layers (Gemma3) keep the last `window` cache slots, and here slots include the padding
        # after short prompts: once prompt + response reach the window the shared cache drops or keeps the wrong
        # keys. The unshared layout is exact there (transformers masks by position).
        return score_unshared(vlm, chats, responses, model=model)
    positions = _positions(vlm, prompt)  # (3, B, Tp) or None
    prefix_mask = mask.clone()
    prefix_mask[rows, lengths - 1] = 0  # the last token is computed in the continuation instead
    extra = {"position_ids": positions} if positions is not None else {}
    # logits_to_keep=1: the prefix pass is wanted for its KV cache, not its logits.
    prefix = PrefixCache(config=vlm.model.config)
    cache_arg = _cache_argument(vlm)
    model(**{**prompt, "attention_mask": prefix_mask}, **extra, **{cache_arg: prefix}, use_cache=True,
          logits_to_keep=1)
    prefix.batch_repeat_interleave(k)  # (B, …) -> (B·k, …), row b·k + j continues prompt b
    cache = ContinuationCache.reading(prefix)

    flat = [r for per_prompt in responses for r in per_prompt]
    if any(len(r) == 0 for r in flat):
        raise ValueError("an empty response has nothing to score (at least the end-of-turn token is expected)")
    starts = lengths.repeat_interleave(k) - 1  # (N,) index of the last prompt token
    cont = [[int(last_token[i // k])] + r for i, r in enumerate(flat)]
    input_ids = _pad(cont, vlm.tokenizer.pad_token_id, device)  # (N, R+1)
    cont_mask = (_pad(cont, -1, device) != -1).long()
    labels = _pad([[IGNORE] + r for r in flat], IGNORE, device)  # (N, R+1)
    steps = torch.arange(input_ids.shape[1], device=device)
    if positions is None:
        cont_positions = starts[:, None] + steps  # (N, R+1)
    else:  # text after the image: one position, the same on the three M-RoPE axes
        last = positions[:, rows, lengths - 1].repeat_interleave(k, dim=1)  # (3, N)
        cont_positions = last[:, :, None] + steps  # (3, N, R+1)
    attention = torch.cat([prefix_mask.repeat_interleave(k, dim=0), cont_mask], dim=1)  # (N, Tp + R+1)
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=cont_positions,
                   **{cache_arg: cache}, use_cache=True).logits  # (N, R+1, V)
    return Scored(logits, labels)


def _cache_argument(vlm: VLM) -> str:
    """transformers 5.25 renamed forward's `past_key_values` to `cache` (the old name warns on every call); we
    support >= 5.23, so ask the model class which name it takes."""
    import inspect

    forward = type(vlm.model.get_base_model() if hasattr(vlm.model, "get_base_model") else vlm.model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def score_unshared(vlm: VLM, chats: list[Chat], responses: list[list[list[int]]], model=None) -> Scored:
    """The same scores with every (prompt, response) row run in full: the reference for `score_shared`, and the
    path for responses whose prompts differ (other images) or when the KV cache is unavailable."""
    flat_chats = [c for c, per_prompt in zip(chats, responses, strict=True) for _ in per_prompt]
    flat = [r for per_prompt in responses for r in per_prompt]
    logits, labels = vlm.forward_logits(vlm.build_scoring_batch(flat_chats, flat), model=model)
    return Scored(logits, labels)


def score_examples(vlm: VLM, examples: list[Example], root: Path, prefix_sharing: bool = True,
                   model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs (b, k) and token counts (b, k) of each example's k responses.

    Examples whose responses share their images (k > 1) share the prefix when `prefix_sharing` is on; a pair whose
    rejected side has its own images (image contrast) is scored unshared, each side under its own images.
    """
    k = len(examples[0].responses)
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # example index -> (sums (k,), counts (k,))
    same = [i for i, e in enumerate(examples) if e.rejected_images is None]
    contrast = [i for i, e in enumerate(examples) if e.rejected_images is not None]
    if same:
        chats = [chat_of(root, examples[i].record) for i in same]
        score = score_shared if prefix_sharing and k > 1 else score_unshared
        s, c = summed(score(vlm, chats, [examples[i].responses for i in same], model=model))
        rows.update(zip(same, zip(s.view(-1, k), c.view(-1, k), strict=True), strict=True))
    if contrast:  # one row per side: chosen under the images, rejected under the rejected images
        chats = [chat_of(root, examples[i].record, images)
                 for i in contrast for images in (None, examples[i].rejected_images)]
        responses = [[r] for i in contrast for r in examples[i].responses]
        s, c = summed(score_unshared(vlm, chats, responses, model=model))
        rows.update(zip(contrast, zip(s.view(-1, k), c.view(-1, k), strict=True), strict=True))
    sums = torch.stack([rows[i][0] for i in range(len(examples))])
    counts = torch.stack([rows[i][1] for i in range(len(examples))])
    return sums, counts
