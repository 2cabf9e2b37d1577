"""The truncation policy (prompt and image tokens never cut), and clear errors for data that cannot train."""

from __future__ import annotations

import pytest

from tests.training.conftest import make_pairs, make_sft
from vlpref.data.schema import PreferencePair, Turn
from vlpref.data.store import write_records
from vlpref.errors import RecordError, VlprefError
from vlpref.models.vlm import VLM
from vlpref.training.data import load_examples


@pytest.fixture(scope="module")
def llava(tiny_dirs) -> VLM:
    return VLM.load(tiny_dirs["llava"])


def test_examples_hold_the_response_ids_and_prompt_length(llava, pairs_dir):
    examples, dropped = load_examples(pairs_dir, llava, "pairs")
    assert len(examples) == 8 and dropped == []
    e = examples[0]
    assert e.responses == [llava.response_ids("the picture is red ."),
                           llava.response_ids("it shows a blue circle and a small square")]
    # 16 image tokens (32 px / 8 px patches, squared) + the template's text tokens
    assert e.prompt_tokens == int(llava.encode([_chat(pairs_dir, e)])["attention_mask"].sum()) > 16


def _chat(root, example):
    from vlpref.training.data import chat_of

    return chat_of(root, example.record)


def test_long_responses_are_cut_to_fit_and_the_prompt_never(llava, pairs_dir):
    full, _ = load_examples(pairs_dir, llava, "pairs")
    room = full[0].prompt_tokens + 3
    cut, dropped = load_examples(pairs_dir, llava, "pairs", max_length=room)
    assert dropped == [] and len(cut) == 8
    for a, b in zip(full, cut, strict=True):
        assert a.prompt_tokens == b.prompt_tokens
        room_b = room - b.prompt_tokens
        assert all(r == s[:room_b] for r, s in zip(b.responses, a.responses, strict=True))
        assert all(len(r) + b.prompt_tokens <= room for r in b.responses)


def test_drop_mode_and_prompts_that_leave_no_room(llava, pairs_dir):
    full, _ = load_examples(pairs_dir, llava, "pairs")
    shortest = min(e.prompt_tokens for e in full)
    kept, dropped = load_examples(pairs_dir, llava, "pairs", max_length=shortest + 10, truncation="drop")
    assert len(kept) + len(dropped) == 8 and kept and dropped
    assert all(e.prompt_tokens + max(map(len, e.responses)) <= shortest + 10 for e in kept)
    assert all("> max_length" in d["reason"] for d in dropped)
    with pytest.raises(VlprefError, match="no example left to train on .8 dropped.*first: p0: the prompt alone"):
        load_examples(pairs_dir, llava, "pairs", max_length=shortest)  # the prompt alone fills it
    kept, dropped = load_examples(pairs_dir, llava, "pairs", max_length=max(e.prompt_tokens for e in full))
    assert {d["id"] for d in dropped} == {e.id for e in full if e.prompt_tokens == max(x.prompt_tokens for x in full)}
    assert all("the prompt alone is" in d["reason"] and "image tokens included" in d["reason"] for d in dropped)


def test_sft_reads_prompts_or_the_chosen_side_of_pairs(llava, tmp_path, pairs_dir):
    sft, _ = load_examples(make_sft(tmp_path / "sft"), llava, "sft")
    assert all(len(e.responses) == 1 for e in sft)
    from_pairs, _ = load_examples(pairs_dir, llava, "sft")
    assert from_pairs[0].responses == [llava.response_ids("the picture is red .")]
    with pytest.raises(VlprefError, match="a prompts dataset; this method trains on pairs"):
        load_examples(tmp_path / "sft", llava, "pairs")


def test_empty_sft_target_names_the_record_and_field(llava, tmp_path):
    root = make_pairs(tmp_path / "pairs")
    bad = PreferencePair(id="empty", prompt_id="q", images=["images/red.png"],
                         turns=[Turn(role="user", text="<image>\nWhat?")], chosen=" ", rejected="red", strategy="t")
    write_records(root, "pairs", [bad])
    with pytest.raises(RecordError, match="target response is empty") as info:
        load_examples(root, llava, "sft")
    assert info.value.record_id == "empty" and info.value.field == "chosen"
    [example], _ = load_examples(root, llava, "pairs")  # as a pair it is fine: saying nothing is scored
    assert example.responses[0] == [llava.end_of_turn_id]
