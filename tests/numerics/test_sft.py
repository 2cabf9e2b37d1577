"""SFT's loss against values worked out by hand: a token-level mean NLL over the global batch."""

import math

import pytest
import torch

from vlpref.numerics.logprobs import IGNORE, sequence_logprobs
from vlpref.numerics.sft import sft_loss

# Three target responses with these per-token probabilities (5 tokens in all):
#   a: 0.5, 0.25        -> -log p: log 2, 2 log 2        NLL 3 log 2
#   b: 0.5              ->         log 2                 NLL   log 2
#   c: 0.125, 1.0       ->         3 log 2, 0            NLL 3 log 2
PROBS = [[0.5, 0.25], [0.5], [0.125, 1.0]]
LOGPS = torch.tensor([sum(math.log(p) for p in response) for response in PROBS])  # (3,) summed log-probs
LOG2 = math.log(2)


def test_mean_over_the_global_batch_tokens():
    # (3 + 1 + 3) log 2 over 5 tokens = 1.4 log 2 = 0.97041
    assert sft_loss(LOGPS, tokens=5).item() == pytest.approx(7 * LOG2 / 5, abs=1e-6)
    # not the mean of per-response means: (1.5 + 1 + 1.5) log 2 / 3 = 1.3333 log 2
    assert sft_loss(LOGPS, tokens=5).item() != pytest.approx(4 * LOG2 / 3, abs=1e-3)


def test_micro_batches_add_up_to_the_global_batch():
    # [a, b] and [c], each over the global 5 tokens: 4 log 2 / 5 + 3 log 2 / 5 = 7 log 2 / 5
    parts = sft_loss(LOGPS[:2], tokens=5) + sft_loss(LOGPS[2:], tokens=5)
    assert parts.item() == pytest.approx(7 * LOG2 / 5, abs=1e-6)
    assert parts.item() == pytest.approx(sft_loss(LOGPS, tokens=5).item(), abs=1e-7)


def test_from_logits_the_gradient_is_minus_one_over_tokens():
    # one response of 2 tokens over a 2-token vocabulary, uniform logits: p = 1/2 each, NLL = 2 log 2 over 2 tokens
    logits = torch.zeros(1, 3, 2, requires_grad=True)  # (B, T, V): position t-1 predicts token t
    labels = torch.tensor([[IGNORE, 0, 1]])  # (B, T): the first position is the prompt
    loss = sft_loss(sequence_logprobs(logits, labels), tokens=2)
    assert loss.item() == pytest.approx(LOG2, abs=1e-6)
    loss.backward()
    # d(-log softmax(z)_y)/dz = softmax(z) - onehot(y) = (0.5, 0.5) - onehot, then / 2 tokens
    assert torch.allclose(logits.grad[0, 0], torch.tensor([-0.25, 0.25]))
    assert torch.allclose(logits.grad[0, 1], torch.tensor([0.25, -0.25]))
    assert torch.equal(logits.grad[0, 2], torch.zeros(2))  # the last position predicts nothing
