"""Prefix sharing is exact: per-response log-probs and parameter gradients equal the unshared computation, on every
supported architecture (fp32, relative 1e-5)."""

from __future__ import annotations

import pytest
import torch

from tests.models.test_vlm import chats
from vlpref.models.vlm import VLM
from vlpref.training.forward import score_shared, score_unshared, summed

# prompts of different lengths and image sizes (Qwen's dynamic grid), one multi-turn (`chats`): the right padding
# and the per-row continuation positions are exercised
PAIRS = [("A red circle.", "a blue square"),
         ("There are two blue squares and a small green triangle on the left.", "no"),
         ("round", "It is a green square on the left and a red one")]


def _logps_and_grads(vlm: VLM, score, batch_chats, responses):
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    logps, counts = summed(score(vlm, batch_chats, responses))
    # a weighted sum, so that a row swapped with another would change the gradients
    objective = (logps * torch.arange(1.0, len(logps) + 1)).sum()
    grads = torch.autograd.grad(objective, params, allow_unused=True)
    return logps.detach(), counts, grads


def test_shared_prefix_equals_unshared(vlm, images):
    batch_chats = chats(images)
    responses = [[vlm.response_ids(a), vlm.response_ids(b)] for a, b in PAIRS]
    shared, shared_counts, shared_grads = _logps_and_grads(vlm, score_shared, batch_chats, responses)
    plain, plain_counts, plain_grads = _logps_and_grads(vlm, score_unshared, batch_chats, responses)

    assert shared_counts.tolist() == plain_counts.tolist() == [len(r) for pair in responses for r in pair]
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    # Gradients: each parameter's gradient within 1e-5 of the largest gradient entry. (A relative check per entry
    # would fail on the key-projection biases, whose true gradient is 0 — softmax ignores a shift shared by all
    # keys — and which both layouts give as ~1e-10 of rounding noise.)
    scale = max(g.abs().max() for g in plain_grads if g is not None)
    compared = 0
    for a, b in zip(shared_grads, plain_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a - b).abs().max() <= 1e-5 * scale
            compared += 1
    assert compared > 10


def test_shared_prefix_with_one_response_per_prompt(vlm, images):
    batch_chats = chats(images)[:2]
    responses = [[vlm.response_ids("A red circle.")], [vlm.response_ids("no")]]
    shared, _ = summed(score_shared(vlm, batch_chats, responses))
    plain, _ = summed(score_unshared(vlm, batch_chats, responses))
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)


def test_shared_prefix_warns_nothing(vlm, images):
    """transformers 5.25 deprecated forward's `past_key_values` (a FutureWarning on every training step)."""
    import warnings

    responses = [[vlm.response_ids("A red circle.")], [vlm.response_ids("no")]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score_shared(vlm, chats(images)[:2], responses)


def test_empty_response_is_an_error(vlm, images):
    with pytest.raises(ValueError, match="empty response"):
        score_shared(vlm, chats(images)[:1], [[vlm.response_ids("yes"), []]])


def test_shared_prefix_is_exact_under_gradient_checkpointing(vlm, images):
    """Checkpointed layers replay their forward during backward; the prefix and continuation caches make the replay
    see what the first pass saw, so gradients still equal the plain unshared ones."""
    from vlpref.training.forward import allow_checkpointing

    batch_chats = chats(images)
    responses = [[vlm.response_ids(a), vlm.response_ids(b)] for a, b in PAIRS]
    plain, _, plain_grads = _logps_and_grads(vlm, score_unshared, batch_chats, responses)
    vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    allow_checkpointing(vlm.model)
    vlm.model.train()  # checkpointing acts in training mode only (the tiny models have no dropout)
    try:
        shared, _, shared_grads = _logps_and_grads(vlm, score_shared, batch_chats, responses)
    finally:
        vlm.model.gradient_checkpointing_disable()
        vlm.model.eval()
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    scale = max(g.abs().max() for g in plain_grads if g is not None)
    for a, b in zip(shared_grads, plain_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a - b).abs().max() <= 1e-5 * scale


def test_sliding_window_models_stay_exact_past_the_window(tiny_dirs, images):
    """Gemma3's sliding-window layers keep the last `window` cache slots, padding included; past the window the
    shared cache would be wrong, so scoring falls back to the unshared layout there (window 8 << these sequences)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_dirs["gemma3"])
    config.text_config.sliding_window = 8
    from transformers import Gemma3ForConditionalGeneration

    from vlpref.models.vlm import load_processor

    model = Gemma3ForConditionalGeneration.from_pretrained(tiny_dirs["gemma3"], config=config).eval()
    narrow = VLM(model, load_processor(tiny_dirs["gemma3"]))
    batch_chats = chats(images)
    responses = [[narrow.response_ids(a), narrow.response_ids(b)] for a, b in PAIRS]
    with torch.no_grad():
        shared, _ = summed(score_shared(narrow, batch_chats, responses))
        plain, _ = summed(score_unshared(narrow, batch_chats, responses))
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
