"""Score responses to multimodal prompts for training: the image+prompt prefix encoded once and shared by every
response to it (chosen and rejected), or the plain unshared layout.

    >>> from vlpref.training.forward import score_examples, score_shared, summed
    >>> scored = score_shared(vlm, chats, [[chosen_ids, rejected_ids], ...])   # one pass per prompt
    >>> logps, counts = summed(scored)                                           # (2B,), (2B,) row 2b = chosen b
    >>> logps, counts = score_examples(vlm, examples, root)                      # (B, 2), (B, 2) from Examples

Why share. A DPO pair is one prompt (576 image tokens for LLaVA-1.5, ~100 text tokens) and two responses (~100
tokens each). The usual layout (TRL's) concatenates chosen and rejected into 2B full sequences, so the vision tower
and every prompt token run twice, forward and backward. Here each prompt's row is packed as

    [prompt | response 0 | response 1 | … | padding]       one row per prompt, one forward and one backward

under a block attention mask: prompt tokens attend causally among themselves; a response token attends to the
whole prompt and causally to its own response, never to another response. Each response gets the positions it has
in its own unshared sequence (both start right after the prompt), so every token sees exactly the keys, values and
rotary positions of the unshared computation: log-probs and parameter gradients equal the unshared ones
(tests/training/test_forward.py checks both on every supported architecture, fp32, relative 1e-5).

Per family:
- Qwen2-VL / Qwen2.5-VL take their 3-D M-RoPE positions explicitly: the prompt's from the model's own
  `get_rope_index`, each response's continuing after the prompt's last position, equal on the three axes (text).
- Gemma3: image tokens attend to their whole image block (both directions), as the model's own mask does, and its
  sliding-window layers get their own mask, the window measured in positions: each response sees the window it
  would see unshared (the padding between rows no longer counts, as it did when the prompt was a KV cache).
- The mask is a boolean (B, 1, T, T) tensor for SDPA, an additive float one for eager attention, a BlockMask for
  FlexAttention (whichever the model was loaded with). Flash-attention kernels take no such mask: a model loaded
  with one is scored unshared (exact, not shared).

Attention cost. SDPA skips nothing under a general mask, so one dense call over the packed row does about twice the
attention work of the KV-cache layout this replaced (CPU, the bench's shapes — 4 rows, 590-token prompts, two
100-token answers, 4 heads of 16 — forward + backward of one layer: dense 51 ms, the two calls below 37 ms).
`split_sdpa` (the language model's SDPA layers are switched to it) makes two calls instead: the prompts' causal
square, then the response rows against all keys; and in the last layer it computes only the queries whose logits
are kept, as the cache layout did (its prompt pass was wanted for keys and values only). On the `vlpref bench dpo`
model a batch's forward + backward then takes 0.127 s of CPU against the cache layout's 0.136 s (one thread).

The logits are computed only from the earliest prompt end onward (`logits_to_keep`), and gathered into the layout of
`Scored`: row (b, j) holds response j of prompt b, position 0 the prompt's last token.

Pairs whose sides have different images (image-contrast data) use `score_unshared`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

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


def summed(scored: Scored) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs (N,) and response token counts (N,)."""
    return token_logprobs(scored.logits, scored.labels).sum(-1), (scored.labels != IGNORE).sum(-1)


def _pad(rows: list[list[int]], value: int, device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=device)
    return out


def _image_blocks(token_type_ids: torch.Tensor) -> torch.Tensor:
    """Gemma3's image blocks: (B, T) ids, one per run of image tokens (token type 1), -1 elsewhere. Tokens of one
    block attend to each other in both directions (transformers' `get_block_sequence_ids_for_mask`)."""
    image = token_type_ids == 1
    starts = image & ~torch.nn.functional.pad(image, (1, 0))[:, :-1]
    return torch.where(image, starts.cumsum(1) - 1, -1)


def _attention_masks(vlm: VLM, allowed: torch.Tensor, prefix_end: int, prefix_causal: bool) -> torch.Tensor:
    """`allowed` (B, T, T) bool, query × key, in the form the model's attention implementation takes: a (B, 1, T, T)
    bool tensor for SDPA (marked for `split_sdpa` with the shortest prompt's length and whether every row's first
    `prefix_end` queries attend causally), an additive float tensor for eager attention, a BlockMask for
    FlexAttention."""
    impl = vlm.model.config.get_text_config()._attn_implementation
    if impl == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        b, t, _ = allowed.shape
        return create_block_mask(lambda bi, h, q, k: allowed[bi, q, k], b, None, t, t, device=allowed.device)
    if impl == "eager":
        dtype = vlm.model.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)[:, None]
    mask = allowed[:, None]
    # attributes, read by split_sdpa: the model passes a 4-D mask through to the attention layers untouched
    mask.prefix_end, mask.prefix_causal, mask.outputs_from = prefix_end, prefix_causal, prefix_end - 1
    return mask


def split_sdpa(module, query, key, value, attention_mask, **kwargs):
    """SDPA over packed rows, in two calls: SDPA's kernels skip nothing for a general mask, and a dense (T × T)
    mask over [prompt | chosen | rejected] costs about twice the attention of the prompt's causal square plus the
    responses' rows against all keys (LLaVA-1.5: ~600-token prompts, ~100-token answers).

    query: (B, H, T, d), key/value: (B, Hkv, T, d), attention_mask: (B, 1, T, T) bool marked by `_attention_masks`
    with n0 = `prefix_end`, the shortest prompt's length. Queries before n0 are prompt tokens in every row and see
    only keys before n0: causally (no mask), or under the mask's square where Gemma3's image blocks or a sliding
    window make it other than causal. Queries from n0 on take their mask rows against all keys.

    In the last layer only the queries from `outputs_from` (the first position whose logits are kept) reach the
    loss; the prompt's others are left at zero, unattended, as the KV-cache layout never computed them either (its
    prompt pass was wanted for its keys and values alone). Returns (B, T, H, d), as SDPA does.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n0 = getattr(attention_mask, "prefix_end", None)
    if n0 is None or n0 >= query.shape[2]:  # not a packed row (or no response): plain SDPA
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if getattr(module, "layer_idx", None) == module.config.num_hidden_layers - 1:
        start = attention_mask.outputs_from
        used, _ = sdpa_attention_forward(module, query[:, :, start:], key, value, attention_mask[:, :, start:],
                                         **kwargs)
        return torch.cat([used.new_zeros(used.shape[0], start, *used.shape[2:]), used], dim=1), None
    head_mask = None if attention_mask.prefix_causal else attention_mask[:, :, :n0, :n0]
    head, _ = sdpa_attention_forward(module, query[:, :, :n0], key[:, :, :n0], value[:, :, :n0], head_mask,
                                     **{**kwargs, "is_causal": True})
    tail, _ = sdpa_attention_forward(module, query[:, :, n0:], key, value, attention_mask[:, :, n0:], **kwargs)
    return torch.cat([head, tail], dim=1), None


# Registered once: the attention function, and transformers' SDPA mask builder under the same name, so that every
# other forward (generation, unshared scoring) of a model switched to it builds the masks SDPA takes.
AttentionInterface.register("vlpref_split_sdpa", split_sdpa)
AttentionMaskInterface.register("vlpref_split_sdpa", sdpa_mask)


def use_split_sdpa(vlm: VLM) -> None:
    """Switch the language model's SDPA layers to `split_sdpa` (plain SDPA for any mask not marked as packed).

    For good, not per call: a gradient-checkpointing replay must run the same operations as the forward it replays.
    The setting is not saved with the model (transformers does not serialise the attention implementation)."""
    text = vlm.model.config.get_text_config()
    if text._attn_implementation == "sdpa":
        text._attn_implementation = "vlpref_split_sdpa"


def packs(vlm: VLM) -> bool:
    """Whether the model's attention takes an arbitrary mask (flash-attention kernels do not)."""
    return vlm.model.config.get_text_config()._attn_implementation in ("sdpa", "vlpref_split_sdpa", "eager",
                                                                       "flex_attention")


@dataclass
class Packed:
    """Each prompt's row [prompt | response 0 | response 1 | … | padding], all (B, T) long tensors.

    segment: 0 in the prompt, j+1 in response j, -1 in padding; position: the text position each token has in its
    own unshared sequence (responses restart right after the prompt); start: where the token's own part begins
    (0 in the prompt, the response's first index in a response, 0 in padding)."""

    input_ids: torch.Tensor
    segment: torch.Tensor
    position: torch.Tensor
    start: torch.Tensor
    lengths: list[int]  # prompt lengths n_b


def _pack(prompt: dict[str, torch.Tensor], responses: list[list[list[int]]], pad_id: int) -> Packed:
    device = prompt["input_ids"].device
    lengths = prompt["attention_mask"].sum(-1).tolist()  # right padding: row b's prompt is positions 0 … n_b-1
    ids, segments, positions, starts = [], [], [], []
    for b, n in enumerate(lengths):
        ids.append(prompt["input_ids"][b, :n].tolist())
        segments.append([0] * n)
        positions.append(list(range(n)))
        starts.append([0] * n)
        for j, r in enumerate(responses[b]):
            starts[-1] += [len(ids[-1])] * len(r)
            ids[-1] += r
            segments[-1] += [j + 1] * len(r)
            positions[-1] += range(n, n + len(r))
    return Packed(_pad(ids, pad_id, device), _pad(segments, -1, device), _pad(positions, 0, device),
                  _pad(starts, 0, device), lengths)


def _rope_positions(vlm: VLM, prompt: dict[str, torch.Tensor], packed: Packed) -> torch.Tensor:
    """Qwen-VL's M-RoPE positions of the packed rows, (3, B, T): the prompt's from the model's own `get_rope_index`,
    each response continuing from the prompt's last position + 1, equal on the three axes (text after the image)."""
    kwargs = {k: prompt[k] for k in ("image_grid_thw", "video_grid_thw", "mm_token_type_ids") if k in prompt}
    rope, _ = vlm.model.model.get_rope_index(prompt["input_ids"], attention_mask=prompt["attention_mask"], **kwargs)
    n = torch.tensor(packed.lengths, device=rope.device)
    last = rope[:, torch.arange(len(n), device=rope.device), n - 1]  # (3, B)
    out = last[:, :, None] + (packed.position - n[:, None] + 1)  # (3, B, T) right in the responses
    in_prompt = packed.segment == 0
    out[:, in_prompt] = torch.nn.functional.pad(rope, (0, out.shape[-1] - rope.shape[-1]))[:, in_prompt]
    return out


def _block_mask(vlm: VLM, packed: Packed, token_type_ids: torch.Tensor | None) -> torch.Tensor | dict:
    """The attention mask(s) of the packed rows, in the model's form (see `_attention_masks`); a dict by layer type
    for models with sliding-window layers (Gemma3)."""
    segment, width = packed.segment, packed.segment.shape[1]
    index = torch.arange(width, device=segment.device)
    # Query × key (B, T, T): key k is visible to query q when k <= q and k is in the prompt or in q's own part
    # (k >= its start). A padding query's part starts at itself, so it sees itself only (a row masked everywhere
    # gives NaN in SDPA, which backward would spread); no real query reaches a padding key.
    own_start = torch.where(segment >= 0, packed.start, index)
    prompt_end = torch.tensor(packed.lengths, device=segment.device)[:, None, None]
    allowed = (index[None, :] <= index[:, None]) & ((index < prompt_end) | (index >= own_start[:, :, None]))
    causal_prompts = True  # whether every row's first min(lengths) queries attend causally (for split_sdpa)
    if vlm.model.config.model_type == "gemma3" and token_type_ids is not None:
        # Gemma3: the tokens of one image attend to each other in both directions, as its own mask has them
        blocks = _image_blocks(token_type_ids)
        allowed |= (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
        causal_prompts = False
    n0, text = min(packed.lengths), vlm.model.config.get_text_config()
    if "sliding_attention" not in (getattr(text, "layer_types", None) or []):
        return _attention_masks(vlm, allowed, n0, causal_prompts)
    # the window measured in positions (each response's unshared distances), not in packed indices
    near = packed.position[:, :, None] - packed.position[:, None, :] < text.sliding_window
    near |= (segment < 0)[:, :, None]
    return {"full_attention": _attention_masks(vlm, allowed, n0, causal_prompts),
            "sliding_attention": _attention_masks(vlm, allowed & near, n0,
                                                  causal_prompts and n0 <= text.sliding_window)}


def _response_rows(logits: torch.Tensor, first: int, packed: Packed, responses: list[list[list[int]]]) -> Scored:
    """Scored rows (b, j) from the packed logits (B, keep, V), whose column c is packed position first + c: the
    prompt's last token predicts response j's first token, then each response token the next."""
    flat = [r for per_prompt in responses for r in per_prompt]
    longest = max(len(r) for r in flat)
    picks = []  # (N, R+1) indices into logits flattened to (B·keep, V)
    for b, n in enumerate(packed.lengths):
        start = n
        for r in responses[b]:
            columns = [n - 1, *range(start, start + len(r) - 1)]
            columns += [n - 1] * (longest + 1 - len(columns))  # past the response: any column, labels IGNORE there
            picks.append([b * logits.shape[1] + c - first for c in columns])
            start += len(r)
    picked = logits.flatten(0, 1)[torch.tensor(picks, device=logits.device)]  # (N, R+1, V)
    return Scored(picked, _pad([[IGNORE, *r] for r in flat], IGNORE, logits.device))


def score_shared(vlm: VLM, chats: list[Chat], responses: list[list[list[int]]], model=None) -> Scored:
    """Score `responses[b]` (token id lists, end-of-turn included) given `chats[b]`, encoding each chat once.

    Returns Scored with N = Σ_b len(responses[b]) rows in order (b, 0), (b, 1), …; every prompt must have the same
    number of responses k (2 for a pair). Differentiable. `model` is what to call, when it is a wrapper of
    `vlm.model` (DDP, peft); `vlm.model` by default.
    """
    k = len(responses[0])
    if any(len(r) != k for r in responses) or len(responses) != len(chats):
        raise ValueError("score_shared needs one list of k responses per chat, the same k for every chat")
    if any(len(r) == 0 for rs in responses for r in rs):
        raise ValueError("an empty response has nothing to score (at least the end-of-turn token is expected)")
    if not packs(vlm):
        return score_unshared(vlm, chats, responses, model=model)
    use_split_sdpa(vlm)
    prompt = vlm.encode(chats, padding_side="right")
    packed = _pack(prompt, responses, vlm.tokenizer.pad_token_id)
    width = packed.input_ids.shape[1]
    # image markers (Gemma3's token_type_ids, Qwen's mm_token_type_ids) in the prompt part; responses are text
    marks = {key: torch.nn.functional.pad(prompt[key], (0, width - prompt[key].shape[1])) * (packed.segment == 0)
             for key in TOKEN_ALIGNED_KEYS if key in prompt}
    positions = (_rope_positions(vlm, prompt, packed) if vlm.model.config.model_type in MROPE_TYPES
                 else packed.position)
    mask = _block_mask(vlm, packed, marks.get("token_type_ids"))
    images = {key: v for key, v in prompt.items() if key not in ("input_ids", "attention_mask", *TOKEN_ALIGNED_KEYS)}
    # logits from the shortest prompt's last token on: the first query split_sdpa's last layer computes
    # (`outputs_from` of the mask)
    first = min(packed.lengths) - 1
    # use_cache=False: nothing continues from this pass, and a cache written inside checkpointed layers would be
    # appended to again by their replay.
    logits = (model or vlm.model)(input_ids=packed.input_ids, attention_mask=mask, position_ids=positions, **marks,
                                  **images, use_cache=False, logits_to_keep=width - first).logits
    return _response_rows(logits, first, packed, responses)


def score_unshared(vlm: VLM, chats: list[Chat], responses: list[list[list[int]]], model=None) -> Scored:
    """The same scores with every (prompt, response) row run in full: the reference for `score_shared`, and the
    path for responses whose prompts differ (other images) or for a model whose attention takes no mask."""
    flat_chats = [c for c, per_prompt in zip(chats, responses, strict=True) for _ in per_prompt]
    flat = [r for per_prompt in responses for r in per_prompt]
    # use_cache=False: a cache written inside gradient-checkpointed layers would be appended to again by their replay
    batch = {**vlm.build_scoring_batch(flat_chats, flat), "use_cache": False}
    logits, labels = vlm.forward_logits(batch, model=model)
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
