"""Prefix sharing is exact: per-response log-probs and parameter gradients equal the unshared computation, on every
supported architecture (fp32, relative 1e-5). Prefix sharing packs each prompt's responses into one row under a block
attention mask (`score_shared`), so these tests cover the mask, the per-response positions (Qwen's M-RoPE included),
Gemma3's image blocks and sliding window, and `split_sdpa`'s two-call attention."""

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
    """Checkpointed layers replay their forward during backward; the packed row's replay sees what the first pass
    saw (the same mask and positions), so gradients still equal the plain unshared ones."""
    batch_chats = chats(images)
    responses = [[vlm.response_ids(a), vlm.response_ids(b)] for a, b in PAIRS]
    plain, _, plain_grads = _logps_and_grads(vlm, score_unshared, batch_chats, responses)
    vlm.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert vlm.model.is_activation_checkpointing
    vlm.model.train()  # checkpointing acts in training mode only (the tiny models have no dropout)
    try:
        shared, _, shared_grads = _logps_and_grads(vlm, score_shared, batch_chats, responses)
        # the unshared layout too (image-contrast pairs, mDPO's and POVID's extra terms): no cache to replay into
        checkpointed, _, _ = _logps_and_grads(vlm, score_unshared, batch_chats, responses)
    finally:
        vlm.model.activation_checkpointing_disable()
        vlm.model.eval()
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-5)
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


@pytest.mark.parametrize("arch", ["llava", "gemma3"])
def test_shared_prefix_is_exact_with_eager_attention(tiny_dirs, images, arch):
    """Eager attention takes the block mask as an additive float mask (Gemma3: with its image blocks and sliding
    window, narrowed to 8 here so that the window cuts into every sequence)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_dirs[arch])
    if arch == "gemma3":
        config.text_config.sliding_window = 8
    from transformers import AutoModelForImageTextToText

    from vlpref.models.vlm import load_processor

    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[arch], config=config,
                                                        attn_implementation="eager").eval()
    eager = VLM(model, load_processor(tiny_dirs[arch]))
    responses = [[eager.response_ids(a), eager.response_ids(b)] for a, b in PAIRS]
    with torch.no_grad():
        shared, _ = summed(score_shared(eager, chats(images), responses))
        plain, _ = summed(score_unshared(eager, chats(images), responses))
    assert model.config.get_text_config()._attn_implementation == "eager"
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)


def test_split_sdpa_equals_one_masked_call():
    """split_sdpa's two calls (the prompts' causal square, then the response rows) and its last-layer shortcut
    give what one SDPA call under the full mask gives, on the rows they compute."""
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from vlpref.training.forward import split_sdpa

    torch.manual_seed(0)
    b, h, t, d, n0 = 2, 2, 9, 4, 5
    query, key, value = (torch.randn(b, h, t, d) for _ in range(3))
    allowed = torch.ones(t, t, dtype=torch.bool).tril().expand(b, 1, t, t).clone()
    allowed[0, 0, 7:, 5:7] = False  # row 0: response 1 (7, 8) does not see response 0 (5, 6)
    allowed.prefix_end, allowed.prefix_causal, allowed.outputs_from = n0, True, n0 - 1
    config = SimpleNamespace(num_hidden_layers=2)
    dense, _ = sdpa_attention_forward(SimpleNamespace(is_causal=True), query, key, value, allowed)
    inner, _ = split_sdpa(SimpleNamespace(is_causal=True, layer_idx=0, config=config), query, key, value, allowed)
    last, _ = split_sdpa(SimpleNamespace(is_causal=True, layer_idx=1, config=config), query, key, value, allowed)
    torch.testing.assert_close(inner, dense)
    torch.testing.assert_close(last[:, n0 - 1:], dense[:, n0 - 1:])
    assert not last[:, : n0 - 1].any()  # not computed: nothing downstream reads them


def test_a_model_switched_to_split_sdpa_generates_and_scores_as_before(tiny_dirs, images):
    """Prefix sharing switches the language model's SDPA to `split_sdpa` for good (a checkpointing replay must
    run what the forward ran); every other use of the model — generation, unshared scoring — is plain SDPA."""
    from vlpref.data.schema import DecodingParams

    vlm = VLM.load(tiny_dirs["qwen2_vl"])
    batch_chats = chats(images)
    params = DecodingParams(temperature=0.0, max_new_tokens=6)
    responses = [[vlm.response_ids(a), vlm.response_ids(b)] for a, b in PAIRS]
    with torch.no_grad():
        before = [g.token_ids for g in vlm.generate(batch_chats, params)], summed(
            score_unshared(vlm, batch_chats, responses))[0]
        score_shared(vlm, batch_chats, responses)
        after = [g.token_ids for g in vlm.generate(batch_chats, params)], summed(
            score_unshared(vlm, batch_chats, responses))[0]
    assert vlm.model.config.get_text_config()._attn_implementation == "vlpref_split_sdpa"
    assert before[0] == after[0]
    torch.testing.assert_close(before[1], after[1], rtol=0, atol=0)
