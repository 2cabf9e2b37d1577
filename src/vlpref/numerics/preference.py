"""Preference objectives on summed response log-probs: the DPO family, POVID's stage 2 and mDPO. Pure tensor math.

    >>> import torch
    >>> logps = PairLogps(chosen=torch.tensor([-10.0]), rejected=torch.tensor([-12.0]),
    ...                   ref_chosen=torch.tensor([-11.0]), ref_rejected=torch.tensor([-11.0]))
    >>> out = dpo_loss(logps, beta=0.1)                     # margin 0.1 * ((-10 + 11) - (-12 + 11)) = 0.2
    >>> round(out.losses.item(), 4)                          # -log sigmoid(0.2)
    0.5981

Notation (methods.md): log π(y|x) is the SUM of the response's token log-probs (`numerics.logprobs`);
Δ(y) = log π_θ(y|x) − log π_ref(y|x); the implicit reward is β·Δ(y).

Losses, per pair (B,):
- `sigmoid` (DPO): −log σ(β(Δ_w − Δ_l)); with `label_smoothing` ε it is conservative DPO:
  −(1−ε) log σ(βh) − ε log σ(−βh).
- `robust` (rDPO): [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1 − 2ε).
- `hinge` (SLiC): max(0, 1 − βh).
- `ipo`: (h_avg − 1/(2β))², with h_avg the margin of per-token averaged log-ratios (as TRL, confirmed with IPO's
  authors).
- `length_normalized=True` divides every log-prob by its response's token count first (Li–Lin–Pei's
  `use_average`; SimPO-style). Off by default: every paper here uses sums.
- `sft_weight` adds λ·(−log π_θ(y_w|x)), the summed NLL of the chosen response, as RLAIF-V's and Li–Lin–Pei's
  code write it (`DPO_weight·DPO − SFT_weight·logπ(y_w)`; weight 0 in all four papers' settings); POVID's and
  mDPO's losses take it too, added once per pair.
- `label_smoothing` applies to `sigmoid` (conservative DPO) and `robust` only. Note: TRL 1.16's `sigmoid` ignores
  label smoothing, so a run with ε > 0 differs from a TRL 1.16 run with the same settings.

POVID stage 2 is `povid_loss`: 0.5·DPO(y_w, y_l^text) + 0.5·DPO(y_w, y_l^noise), the same β in both, where y_l^noise
is scored by `noised_argmax_logps`. mDPO is `mdpo_loss`: DPO + the image-conditional term + the anchor.

Metrics use TRL's names (`metrics`), so curves compare directly with TRL runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from vlpref.numerics.logprobs import IGNORE

LossType = Literal["sigmoid", "robust", "hinge", "ipo"]


@dataclass
class PairLogps:
    """Summed response log-probs of a batch of pairs, each (B,); token counts (B,) for averaged variants."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_tokens: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None


@dataclass
class PreferenceLoss:
    losses: torch.Tensor  # (B,) per pair; the training loss is their mean
    chosen_rewards: torch.Tensor  # (B,) β·Δ(y_w), detached
    rejected_rewards: torch.Tensor  # (B,) β·Δ(y_l), detached

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()


def _per_token(logps: torch.Tensor, tokens: torch.Tensor | None, what: str) -> torch.Tensor:
    if tokens is None:
        raise ValueError(f"{what} needs the responses' token counts (PairLogps.chosen_tokens / rejected_tokens)")
    return logps / tokens.clamp(min=1)


def dpo_loss(logps: PairLogps, beta: float = 0.1, loss_type: LossType = "sigmoid", label_smoothing: float = 0.0,
             length_normalized: bool = False, sft_weight: float = 0.0) -> PreferenceLoss:
    """One of the DPO-family losses per pair (module docstring has the formulas)."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen, rejected = logps.chosen, logps.rejected
    ref_chosen, ref_rejected = logps.ref_chosen, logps.ref_rejected
    if length_normalized:
        chosen = _per_token(chosen, logps.chosen_tokens, "length_normalized")
        rejected = _per_token(rejected, logps.rejected_tokens, "length_normalized")
        ref_chosen = _per_token(ref_chosen, logps.chosen_tokens, "length_normalized")
        ref_rejected = _per_token(ref_rejected, logps.rejected_tokens, "length_normalized")
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected  # Δ_w, Δ_l
    margin = chosen_ratio - rejected_ratio  # h
    eps = label_smoothing
    if eps and loss_type not in ("sigmoid", "robust"):
        raise ValueError(f"label_smoothing applies to the sigmoid and robust losses, not {loss_type}")
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
    elif loss_type == "robust":
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)
    elif loss_type == "ipo":
        if length_normalized:  # already per token
            average = margin
        else:
            average = (_per_token(chosen_ratio, logps.chosen_tokens, "ipo")
                       - _per_token(rejected_ratio, logps.rejected_tokens, "ipo"))
        losses = (average - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose sigmoid, robust, hinge or ipo")
    if sft_weight:
        losses = losses + sft_weight * -logps.chosen
    return PreferenceLoss(losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def noised_argmax_logps(clean_logits: torch.Tensor, noisy_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """POVID's image-side negative: at each response position take the token the model predicts under the distorted
    image (teacher-forced on y_w), and score it under the clean-image logits. (B, T, V), (B, T, V), (B, T) -> (B,).

    ŷ_t = argmax π(· | x_noisy, y_w,<t);  log π(y_l^n) = Σ_t log π(ŷ_t | x_clean, y_w,<t), over y_w's positions.
    Policy and reference each call this with their own logits (each takes its own argmax).
    """
    if clean_logits.shape != noisy_logits.shape or clean_logits.shape[:2] != labels.shape:
        raise ValueError(f"clean {tuple(clean_logits.shape)}, noisy {tuple(noisy_logits.shape)} logits and labels "
                         f"{tuple(labels.shape)} must agree on (B, T) (trim labels as the logits were trimmed)")
    scored = labels[:, 1:] != IGNORE  # (B, T-1): positions of y_w's tokens
    predicted = noisy_logits[:, :-1].argmax(dim=-1)  # (B, T-1), no gradient through argmax
    logp = torch.log_softmax(clean_logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, predicted.unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(~scored, 0.0).sum(dim=-1)


def povid_loss(text: PairLogps, noise: PairLogps, beta: float = 0.1, sft_weight: float = 0.0
               ) -> tuple[PreferenceLoss, PreferenceLoss]:
    """POVID stage 2: 0.5·DPO(y_w, y_l^text) + 0.5·DPO(y_w, y_l^noise), sigmoid, same β (methods.md §4.2), plus
    `sft_weight`·NLL(y_w) once (0 in POVID's settings).

    Returns (combined, noise side). The combined loss carries the text side's rewards, which is what POVID's own
    trainer logs; log the noise side's under its own prefix (`metrics(noise_side, noise, prefix="noise/")`)."""
    a, b = dpo_loss(text, beta), dpo_loss(noise, beta)
    losses = 0.5 * a.losses + 0.5 * b.losses + sft_weight * -text.chosen
    return PreferenceLoss(losses, a.chosen_rewards, a.rejected_rewards), b


def mdpo_loss(logps: PairLogps, chosen_corrupted: torch.Tensor, ref_chosen_corrupted: torch.Tensor,
              beta: float = 0.1, sft_weight: float = 0.0) -> PreferenceLoss:
    """mDPO (methods.md §5.3): DPO + image-conditional + anchor, per pair; plus `sft_weight`·NLL(y_w) (0 in mDPO's
    settings).

    L_CoPO = −log σ(β[(π(y_w|m) − π_ref(y_w|m)) − (π(y_w|m') − π_ref(y_w|m'))]), m' the corrupted image;
    L_AncPO = −log σ(β(π(y_w|m) − π_ref(y_w|m))), anchor δ = 0.
    `chosen_corrupted`, `ref_chosen_corrupted`: log π(y_w | m') under policy and reference, (B,).
    """
    base = dpo_loss(logps, beta)
    chosen_ratio = logps.chosen - logps.ref_chosen
    corrupted_ratio = chosen_corrupted - ref_chosen_corrupted
    conditional = -F.logsigmoid(beta * (chosen_ratio - corrupted_ratio))
    anchor = -F.logsigmoid(beta * chosen_ratio)
    losses = base.losses + conditional + anchor + sft_weight * -logps.chosen
    return PreferenceLoss(losses, base.chosen_rewards, base.rejected_rewards)


def metrics(out: PreferenceLoss, logps: PairLogps, prefix: str = "") -> dict[str, float]:
    """TRL's names: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen,
    logps/rejected (batch means)."""
    margins = out.chosen_rewards - out.rejected_rewards
    return {f"{prefix}rewards/chosen": out.chosen_rewards.mean().item(),
            f"{prefix}rewards/rejected": out.rejected_rewards.mean().item(),
            f"{prefix}rewards/margins": margins.mean().item(),
            f"{prefix}rewards/accuracies": (margins > 0).float().mean().item(),
            f"{prefix}logps/chosen": logps.chosen.detach().mean().item(),
            f"{prefix}logps/rejected": logps.rejected.detach().mean().item()}
