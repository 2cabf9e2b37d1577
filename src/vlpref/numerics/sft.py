"""Supervised fine-tuning's loss (SFT, and its data variants rejection sampling and SteerLM): the negative
log-likelihood of the target responses, as a mean over tokens. Pure tensor math.

    >>> import math, torch
    >>> logps = torch.tensor([math.log(0.5) + math.log(0.25), math.log(0.5)])  # two responses: 2 tokens and 1
    >>> round(sft_loss(logps, tokens=3).item(), 4)                               # (log 2 + log 4 + log 2) / 3
    0.9242

The mean is over the tokens of the whole *global* batch, not over the responses, and not over a micro-batch:
`tokens` is the global batch's response-token count, so the parts of a global batch split into micro-batches (and
processes) add up to its loss exactly, whatever the split. This is HF's `num_items_in_batch` normalisation; a mean
per micro-batch would weight a token by the length of the micro-batch it happened to land in.
"""

from __future__ import annotations

import torch


def sft_loss(logps: torch.Tensor, tokens: float) -> torch.Tensor:
    """−Σ_b log π(y_b | x_b) / tokens: the summed NLL of these responses over the global batch's token count.

    Args:
        logps: (B,) summed log-probs of each target response (`numerics.logprobs.sequence_logprobs`).
        tokens: response tokens in the global batch this is part of (≥ the tokens of these B responses).

    Returns:
        A scalar: this batch's share of the global batch's token-mean NLL.
    """
    return -logps.sum() / tokens
