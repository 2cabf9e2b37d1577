"""`vlpref eval` through the real VLM layer on a tiny random-weight model of every supported architecture: images of
different sizes in one batch (POPE) and text-only two-turn chats (MT-Bench's generation path)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlpref.evaluation.run import EvalConfig, evaluate
from vlpref.models.tiny import ARCHITECTURES


@pytest.fixture(scope="module")
def pope(tmp_path_factory):
    root = tmp_path_factory.mktemp("pope")
    (root / "val2014").mkdir()
    for k, size in enumerate(((32, 32), (48, 32), (24, 40))):
        Image.new("RGB", size, (60 * k, 90, 200 - 50 * k)).save(root / "val2014" / f"{k}.jpg")
    rows = [{"question_id": i + 1, "image": f"{i % 3}.jpg", "text": f"Is there a {o} in the image?",
             "label": "yes" if i % 2 else "no"} for i, o in enumerate(["dog", "cat", "car"])]
    for split in ("random", "popular", "adversarial"):
        (root / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pope_on_every_architecture(arch, tiny_dirs, pope, tmp_path):
    config = EvalConfig(benchmark="pope", model=tiny_dirs[arch], data=str(pope), max_new_tokens=3, batch_size=3)
    results = evaluate(config, tmp_path / "out", log=lambda *_: None)
    assert set(results["splits"]) == {"random", "popular", "adversarial"} and results["f1_mean"] is not None
    assert results["calls"]["answers_generated"] == 3  # the three splits ask the same three questions
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 9 and all(isinstance(i["answer"], str) for i in items)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_text_only_two_turn_generation_on_every_architecture(arch, tiny_dirs, tmp_path):
    from vlpref.data.schema import DecodingParams, Turn
    from vlpref.evaluation.run import Question, Session

    session = Session(EvalConfig(benchmark="world", model=tiny_dirs[arch], max_new_tokens=3), tmp_path,
                      log=lambda *_: None)
    sampled = DecodingParams(temperature=0.7, max_new_tokens=3, seed=81)
    first = session.answers([Question("81 turn 1", [Turn(role="user", text="Write a haiku.")], [], sampled)])
    second = session.answers([Question("81 turn 2", [Turn(role="user", text="Write a haiku."),
                                                     Turn(role="assistant", text=first[0] or "ok"),
                                                     Turn(role="user", text="Now shorter.")], [], sampled)])
    assert isinstance(second[0], str)
    again = session.answers([Question("81 turn 1", [Turn(role="user", text="Write a haiku.")], [], sampled)])
    assert again == first and session.counts["answers_generated"] == 2  # the seeded answer came from the journal
