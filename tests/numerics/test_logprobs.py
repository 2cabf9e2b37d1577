"""Hand-computed log-probs: the arithmetic is written out so a reader can check it on paper."""

import math

import torch

from vlpref.numerics.logprobs import IGNORE, sequence_logprobs, token_logprobs


def test_token_logprobs_by_hand():
    # Vocabulary of 3. Logits at t=0 are [0, ln 2, 0] -> probs [1/4, 2/4, 1/4]; at t=1 uniform -> 1/3 each.
    logits = torch.tensor([[[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]])
    labels = torch.tensor([[IGNORE, 1, 2]])  # t=1 is token 1 (scored by t=0 logits), t=2 is token 2 (by t=1 logits)
    got = token_logprobs(logits, labels)
    expected = torch.tensor([[0.0, math.log(2 / 4), math.log(1 / 3)]])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(sequence_logprobs(logits, labels), torch.tensor([math.log(1 / 2) + math.log(1 / 3)]))


def test_masked_and_padded_positions_score_zero():
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[IGNORE, IGNORE, 3, IGNORE], [IGNORE, 1, 2, 0]])
    got = token_logprobs(logits, labels)
    assert got[0, 0] == got[0, 1] == got[0, 3] == 0.0 and got[1, 0] == 0.0
    torch.testing.assert_close(got[0, 2], torch.log_softmax(logits[0, 1], -1)[3])
    torch.testing.assert_close(got[1, 3], torch.log_softmax(logits[1, 2], -1)[0])


def test_bf16_logits_are_scored_in_float32():
    logits = torch.randn(1, 3, 7).to(torch.bfloat16)
    got = token_logprobs(logits, torch.tensor([[IGNORE, 2, 4]]))
    assert got.dtype == torch.float32


def test_gradient_flows_to_scored_positions_only():
    logits = torch.zeros(1, 3, 2, requires_grad=True)
    sequence_logprobs(logits, torch.tensor([[IGNORE, 1, IGNORE]])).sum().backward()
    # d/dz log softmax(z)_1 at uniform z = onehot(1) - 1/2; the unused positions get no gradient
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([-0.5, 0.5]))
    assert logits.grad[0, 1:].abs().sum() == 0


def test_chunked_log_softmax_matches_torch_across_chunks(monkeypatch):
    """Values and gradients equal torch.log_softmax's when the rows span several chunks (chunk of 3 rows, 2 × 4
    positions), in float32 and from bf16 logits."""
    from vlpref.numerics import logprobs

    monkeypatch.setattr(logprobs, "CHUNK", 3)
    torch.manual_seed(0)
    labels = torch.tensor([[IGNORE, 4, 0, 2], [IGNORE, IGNORE, 1, 3]])
    weights = torch.randn(2, 4)
    for dtype in (torch.float32, torch.bfloat16):
        logits = torch.randn(2, 4, 5).to(dtype).requires_grad_(True)
        reference = logits.detach().clone().requires_grad_(True)
        got = token_logprobs(logits, labels)
        logp = torch.log_softmax(reference[:, :-1].float(), -1)
        expected = logp.gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0] * (labels[:, 1:] != IGNORE)
        expected = torch.cat([torch.zeros(2, 1), expected], dim=1)
        torch.testing.assert_close(got, expected)
        (got * weights).sum().backward()
        (expected * weights).sum().backward()
        assert logits.grad.dtype == dtype
        torch.testing.assert_close(logits.grad, reference.grad)
