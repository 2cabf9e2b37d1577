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


# Positions per chunk: the float32 working copy of a chunk is CHUNK × V × 4 bytes (32 MB at LLaVA's 32,000 tokens).
CHUNK = 256


class _PickedLogprob(torch.autograd.Function):
    """log softmax(logits)[target] per row, computed chunk by chunk in float32, without keeping a (M, V) float32
    log-softmax for backward as `torch.log_softmax` does: backward recomputes each chunk's softmax from the logits
    (which the LM head's backward keeps anyway) and the saved log-normalisers.

    logits: (M, V) any float dtype; target: (M,) token ids. Returns (M,) float32.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        picked = logits.new_empty(logits.shape[0], dtype=torch.float32)
        norm = torch.empty_like(picked)  # (M,) logsumexp of each row
        for start in range(0, logits.shape[0], CHUNK):
            rows = slice(start, start + CHUNK)
            chunk = logits[rows].float()  # (c, V)
            norm[rows] = torch.logsumexp(chunk, dim=-1)
            picked[rows] = chunk.gather(-1, target[rows, None]).squeeze(-1) - norm[rows]
        ctx.save_for_backward(logits, target, norm)
        return picked

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target, norm = ctx.saved_tensors
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], CHUNK):
            rows = slice(start, start + CHUNK)
            # d picked / d logits = onehot(target) - softmax(logits), per row, times the incoming gradient
            chunk = torch.exp(logits[rows].float() - norm[rows, None]).mul_(-grad[rows, None])  # (c, V)
            chunk.scatter_add_(-1, target[rows, None], grad[rows, None].float())
            out[rows] = chunk
        return out, None


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
    b, t, v = logits.shape
    # the token each position predicts: (B, T), IGNORE at the last position (it predicts nothing here)
    target = torch.cat([labels[:, 1:], labels.new_full((b, 1), IGNORE)], dim=1)
    # In float32, chunk by chunk: bf16 logits lose ~3 digits, which DPO's small log-ratio differences cannot afford,
    # and a whole (B, T, V) float32 copy is the largest tensor of a step with a real vocabulary. All T positions, so
    # that the logits enter as a view, not a (B, T-1, V) copy.
    picked = _PickedLogprob.apply(logits.reshape(b * t, v), target.clamp(min=0).reshape(-1)).view(b, t)
    picked = picked.masked_fill(target == IGNORE, 0.0)  # (B, T): position t scores the token at t+1
    return torch.cat([picked.new_zeros(b, 1), picked[:, :-1]], dim=1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of `token_logprobs` over each sequence: (B, T, V), (B, T) -> (B,)."""
    return token_logprobs(logits, labels).sum(dim=-1)
