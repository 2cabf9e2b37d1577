"""Per-token log-probabilities of target tokens: the one place vlpref turns logits into log π(y_t | x, y_<t).

    >>> import torch
    >>> logits = torch.zeros(1, 3, 4)                      # uniform over 4 tokens
    >>> labels = torch.tensor([[-100, 2, 3]])              # first position is prompt
    >>> token_logprobs(logits, labels)                     # log(1/4) where scored, 0 where masked
    tensor([[ 0.0000, -1.3863, -1.3863]])

Convention (as in TRL, torchtune and every method in methods.md): `labels[b, t]` is the token at position t, or
IGNORE where position t is not scored (prompt, image, padding). Position t is predicted by the logits at t-1, so the
first position is never scored. Sums, not means, are what DPO uses.
"""

from __future__ import annotations

import torch

IGNORE = -100


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-prob of each label token under the logits one position earlier.

    Args:
        logits: (B, T, V) next-token logits; `logits[b, t]` scores the token at t+1.
        labels: (B, T) target token ids, IGNORE (-100) where not scored.

    Returns:
        (B, T) float32 log-probs aligned with `labels`; 0 at ignored positions and at t = 0.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, T)")
    target = labels[:, 1:]  # (B, T-1)
    scored = target != IGNORE
    # log_softmax in float32: bf16 logits lose ~3 digits, which DPO's small log-ratio differences cannot afford.
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    picked = picked.masked_fill(~scored, 0.0)
    return torch.cat([picked.new_zeros(labels.shape[0], 1), picked], dim=1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of `token_logprobs` over each sequence: (B, T, V), (B, T) -> (B,)."""
    return token_logprobs(logits, labels).sum(dim=-1)
