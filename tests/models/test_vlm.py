"""The VLM layer on every supported architecture: exact log-probs, reproducible seeded generation."""

from __future__ import annotations

import torch

from vlpref.data.schema import DecodingParams, Turn
from vlpref.models.vlm import VLM, Chat
from vlpref.numerics.logprobs import IGNORE


def chats(images) -> list[Chat]:
    return [
        Chat([Turn(role="user", text="<image>\nWhat is in the picture?")], [images[0]]),
        Chat([Turn(role="user", text="Describe the image <image> in detail please.")], [images[1]]),
        Chat(
            [
                Turn(role="user", text="<image>\nWhat color is it?"),
                Turn(role="assistant", text="It is green."),
                Turn(role="user", text="And the shape?"),
            ],
            [images[2]],
        ),
    ]


RESPONSES = ["A red circle.", "There are two blue squares and a small green triangle on the left.", "round"]


def test_logprobs_equal_plain_forward(vlm, images):
    """The layer's batched, right-padded, logits_to_keep scoring equals log_softmax of one unpadded forward pass."""
    batch_chats = chats(images)
    got = vlm.logprobs(batch_chats, RESPONSES, batch_size=3)
    for chat, response, per_token in zip(batch_chats, RESPONSES, got, strict=True):
        single = vlm.build_scoring_batch([chat], [response])
        labels = single.pop("labels")[0]
        with torch.no_grad():
            logits = vlm.model(**single).logits[0].float()  # (T, V), one example, no padding
        logp = torch.log_softmax(logits, dim=-1)
        positions = (labels != IGNORE).nonzero().squeeze(1)
        expected = logp[positions - 1, labels[positions]]
        assert per_token.shape == (len(vlm.response_ids(response)),)
        torch.testing.assert_close(per_token, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_token.sum(), expected.sum(), rtol=1e-5, atol=1e-5)


def test_response_mask_covers_exactly_the_response(vlm, images):
    batch = vlm.build_scoring_batch(chats(images)[:2], RESPONSES[:2])
    for b, response in enumerate(RESPONSES[:2]):
        scored = batch["input_ids"][b][batch["labels"][b] != IGNORE].tolist()
        assert scored == vlm.response_ids(response)
        assert scored[-1] == vlm.end_of_turn_id  # the end-of-turn token is scored: it is what generation stops at


def test_seeded_generation_is_reproducible_and_batch_independent(vlm, images):
    batch_chats = chats(images)
    params = [DecodingParams(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=8, seed=s) for s in (1, 2, 3)]
    first = vlm.generate(batch_chats, params, batch_size=3)
    again = vlm.generate(batch_chats, params, batch_size=3)
    assert [g.text for g in first] == [g.text for g in again]
    # Per-request seeds: the same request alone gives the same tokens as inside the batch.
    alone = vlm.generate(batch_chats[1:2], params[1:2])
    assert alone[0].token_ids == first[1].token_ids
    # A different seed changes the sample (random weights make the distribution nearly flat).
    other = vlm.generate(batch_chats[:1], [params[0].model_copy(update={"seed": 99})])
    assert other[0].token_ids != first[0].token_ids


def test_greedy_and_max_new_tokens(vlm, images):
    params = [DecodingParams(temperature=0.0, max_new_tokens=n) for n in (3, 6)]
    out = vlm.generate(chats(images)[:2], params, batch_size=2)
    for g, p in zip(out, params, strict=True):
        assert len(g.token_ids) <= p.max_new_tokens
        assert g.finish_reason in ("stop", "length")
        assert (g.finish_reason == "length") == (len(g.token_ids) == p.max_new_tokens)


def test_mixed_batch_scores_like_each_chat_alone(vlm, images):
    """Two-image, text-only and one-image chats in one batch: each scores as it does alone."""
    mixed = [
        Chat([Turn(role="user", text="<image> and <image> : compare them")], images[:2]),
        Chat([Turn(role="user", text="Say hi.")], []),
        Chat([Turn(role="system", text="Be brief."), Turn(role="user", text="<image> what?")], images[2:]),
    ]
    together = vlm.logprobs(mixed, RESPONSES, batch_size=3)
    for chat, response, got in zip(mixed, RESPONSES, together, strict=True):
        torch.testing.assert_close(got, vlm.logprobs([chat], [response])[0], rtol=1e-5, atol=1e-5)


END_OF_TURN = {"llava": "</s>", "qwen2_vl": "<|im_end|>", "qwen2_5_vl": "<|im_end|>", "idefics3": "<end_of_utterance>",
               "smolvlm": "<end_of_utterance>", "gemma3": "<end_of_turn>"}


def test_end_of_turn_comes_from_the_chat_template(vlm):
    """Gemma3-it's EOS is <eos> but its turns end with <end_of_turn>: scoring must append the latter, and
    generation must stop at either."""
    arch = vlm.model.config.model_type
    assert vlm.tokenizer.convert_ids_to_tokens(vlm.end_of_turn_id) == END_OF_TURN[arch]
    assert vlm.end_of_turn_id in vlm.stop_ids and vlm.tokenizer.eos_token_id in vlm.stop_ids
    if arch == "gemma3":
        assert vlm.tokenizer.eos_token == "<eos>" and vlm.end_of_turn_id != vlm.tokenizer.eos_token_id


def test_checkpoint_generation_settings_do_not_leak(vlm, images):
    """A checkpoint's generation_config (Qwen2-VL-Instruct ships repetition_penalty 1.05) must not change what
    DecodingParams ask for."""
    params = [DecodingParams(temperature=0.0, max_new_tokens=10)] * 2
    clean = vlm.generate(chats(images)[:2], params)
    polluted = vlm.model.generation_config
    before = polluted.to_dict()
    polluted.repetition_penalty, polluted.no_repeat_ngram_size = 1e6, 1
    polluted.suppress_tokens = list(range(len(vlm.tokenizer)))[:-50]
    try:
        assert [g.token_ids for g in vlm.generate(chats(images)[:2], params)] == [g.token_ids for g in clean]
    finally:
        for key in ("repetition_penalty", "no_repeat_ngram_size", "suppress_tokens"):
            setattr(polluted, key, before.get(key))
    # the clean greedy output does repeat tokens, so a leaked penalty would have changed it
    assert any(len(set(g.token_ids)) < len(g.token_ids) for g in clean)


def test_bf16_scoring_tracks_fp32(tiny_dirs, images):
    """bf16 weights (the GPU default) give log-probs within bf16 precision of fp32; scoring itself is in fp32."""
    fp32 = VLM.load(tiny_dirs["qwen2_vl"])
    bf16 = VLM.load(tiny_dirs["qwen2_vl"], dtype="bfloat16")
    for a, b in zip(fp32.logprobs(chats(images), RESPONSES), bf16.logprobs(chats(images), RESPONSES), strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=0, atol=0.05)
