"""What each preference objective scores per pair — one function for the policy and, under no_grad, the reference —
and the loss it makes of the scores.

    >>> terms, counts = score_terms(vlm, batch, root, config)          # {"chosen": (b,), "rejected": (b,), ...}
    >>> out, found = objective_loss(config, terms, ref_terms, counts)   # PreferenceLoss, metrics (TRL's names)

Objectives (methods.md §4.2, §5.3; the formulas are in `numerics.preference`; `OBJECTIVES` is the table of each
one's terms, loss function and default image distortion):
- `dpo` — the DPO family (sigmoid / cDPO / robust / hinge / IPO, ± length normalisation, ± SFT term) on
  log π(y_w|x) and log π(y_l|x). Silkie, Li–Lin–Pei, SeVa and POVID's stage 1.
- `povid` — POVID's stage 2: 0.5·DPO(y_w, y_l) + 0.5·DPO(y_w, ŷ), where ŷ is the model's own argmax tokens with y_w
  teacher-forced under the noised image, scored under the clean image (`noise` term). POVID draws the noise afresh
  at each step; here it is a pure function of the record (`data.augment`), which for POVID's single stage-2 epoch is
  the same thing, and lets the reference's side of it be precomputed and cached like any other.
- `mdpo` — mDPO: DPO + the image-conditional term on log π(y_w | corrupted image) (`corrupted` term) + the anchor.

Both extra terms need the pair's two sides to share their images (they are built from the chosen side's image).

A property of POVID's term worth knowing: it takes an argmax, so where two tokens' logits are within rounding of
each other (common in a barely trained model), the last bits of the computation — which differ with the batch it ran
in — decide ŷ. A reference term cached in one batch and recomputed in another can then differ slightly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vlpref.data.augment import AugmentConfig, augment
from vlpref.data.images import load_record_images
from vlpref.models.vlm import VLM, Chat
from vlpref.numerics.logprobs import IGNORE
from vlpref.numerics.preference import (
    PairLogps,
    PreferenceLoss,
    dpo_loss,
    mdpo_loss,
    metrics,
    noised_argmax_logps,
    povid_loss,
)
from vlpref.training.data import Example, chat_of, query_of
from vlpref.training.forward import Scored, score_examples, score_shared, score_unshared, summed


def negative_image(config) -> AugmentConfig | None:
    """The image distortion of the config's objective: the config's `image_negative`, or the objective's own default
    (POVID: diffusion noise, step 500, on [0, 1] pixels; mDPO: a crop keeping 1–20% of the area); None for `dpo`."""
    return config.image_negative if config.image_negative is not None else OBJECTIVES[config.objective].negative


def distorted_chat(root: Path, example: Example, aug: AugmentConfig) -> Chat:
    record = example.record
    images = load_record_images(root, record)
    return Chat(query_of(record), [augment(image, aug, key=f"{record.id}|{i}") for i, image in enumerate(images)])


def response_logits(scored: Scored, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each response token, left-aligned: (n, R, V), and the tokens (n, R), IGNORE-padded.

    The two layouts (prefix-shared continuation, unshared full sequence) put a response at different positions;
    this brings both to one, so logits of the same response under two images line up token for token.
    """
    logits, labels = scored.logits[rows], scored.labels[rows]  # (n, T, V), (n, T)
    mask = labels != IGNORE
    start, length = mask.float().argmax(dim=1), mask.sum(dim=1)  # (n,), (n,) responses are contiguous
    steps = torch.arange(int(length.max()), device=labels.device)
    position = (start[:, None] - 1 + steps).clamp(max=labels.shape[1] - 2)  # (n, R): logits at t-1 predict t
    picked = logits.gather(1, position[..., None].expand(-1, -1, logits.shape[-1]))
    tokens = labels.gather(1, position + 1).masked_fill(steps >= length[:, None], IGNORE)
    return picked, tokens


def _noised_argmax(clean: Scored, clean_rows: slice, noisy: Scored) -> torch.Tensor:
    clean_logits, tokens = response_logits(clean, clean_rows)
    noisy_logits, noisy_tokens = response_logits(noisy, slice(None))
    if not torch.equal(tokens, noisy_tokens):
        raise AssertionError("the clean and noised passes scored different responses")
    # numerics.noised_argmax_logps takes next-token-aligned (B, T, V) logits and (B, T) labels: shift by one slot
    pad = clean_logits.new_zeros(clean_logits.shape[0], 1, clean_logits.shape[-1])
    labels = torch.cat([tokens.new_full((tokens.shape[0], 1), IGNORE), tokens], dim=1)
    return noised_argmax_logps(torch.cat([clean_logits, pad], 1), torch.cat([noisy_logits, pad], 1), labels)


def score_terms(vlm: VLM, batch: list[Example], root: Path, config, prefix_sharing: bool = True,
                model=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The objective's summed log-probs, each (b,), and the chosen/rejected token counts (b, 2)."""
    aug = negative_image(config)
    if aug is None:
        sums, counts = score_examples(vlm, batch, root, prefix_sharing, model=model)
        return {"chosen": sums[:, 0], "rejected": sums[:, 1]}, counts
    chats = [chat_of(root, e.record) for e in batch]
    score = score_shared if prefix_sharing else score_unshared
    clean = score(vlm, chats, [e.responses for e in batch], model=model)  # rows: chosen 0, rejected 0, chosen 1 …
    sums, counts = summed(clean)
    terms = {"chosen": sums[0::2], "rejected": sums[1::2]}
    distorted = [distorted_chat(root, e, aug) for e in batch]
    if config.objective == "povid":
        with torch.no_grad():  # only its argmax is used, and argmax has no gradient
            noisy = score_unshared(vlm, distorted, [[e.responses[0]] for e in batch], model=model)
        terms["noise"] = _noised_argmax(clean, slice(0, None, 2), noisy)
    else:
        terms["corrupted"], _ = summed(score_unshared(vlm, distorted, [[e.responses[0]] for e in batch], model=model))
    return terms, counts.view(len(batch), 2)


Metrics = dict[str, float]


def _dpo(config, pair: PairLogps, policy: dict, ref: dict) -> tuple[PreferenceLoss, Metrics]:
    out = dpo_loss(pair, config.beta, config.loss_type, config.label_smoothing, config.length_normalized,
                   config.sft_weight)
    return out, metrics(out, pair)


def _povid(config, pair: PairLogps, policy: dict, ref: dict) -> tuple[PreferenceLoss, Metrics]:
    noise = PairLogps(policy["chosen"], policy["noise"], ref["chosen"], ref["noise"])
    out, noise_side = povid_loss(pair, noise, config.beta, config.sft_weight)
    return out, {**metrics(out, pair), **metrics(noise_side, noise, prefix="noise/")}


def _mdpo(config, pair: PairLogps, policy: dict, ref: dict) -> tuple[PreferenceLoss, Metrics]:
    out = mdpo_loss(pair, policy["corrupted"], ref["corrupted"], config.beta, config.sft_weight)
    return out, metrics(out, pair)


@dataclass(frozen=True)
class Objective:
    terms: tuple[str, ...]  # what score_terms returns; also the reference cache's columns, in this order
    # (config, chosen/rejected PairLogps, policy terms, reference terms) -> per-pair losses, metrics (TRL's names)
    loss: Callable[..., tuple[PreferenceLoss, Metrics]]
    negative: AugmentConfig | None  # the default distortion of the image its extra term is scored under


# The objectives, by the config's `objective`: one loss function each, no branching on the name elsewhere.
OBJECTIVES: dict[str, Objective] = {
    "dpo": Objective(("chosen", "rejected"), _dpo, None),
    "povid": Objective(("chosen", "rejected", "noise"), _povid,
                       AugmentConfig(op="diffusion", noise_step=500, space="pixels")),
    "mdpo": Objective(("chosen", "rejected", "corrupted"), _mdpo, AugmentConfig(op="mdpo-crop")),
}


def objective_loss(config, policy: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
                   counts: torch.Tensor) -> tuple[PreferenceLoss, Metrics]:
    """The config's objective on the policy's and the reference's terms ({term: (b,)}) and the token counts (b, 2)."""
    pair = PairLogps(policy["chosen"], policy["rejected"], ref["chosen"], ref["rejected"], counts[:, 0],
                     counts[:, 1])
    return OBJECTIVES[config.objective].loss(config, pair, policy, ref)
