"""`vlpref eval --benchmark chair` on a COCO-layout fixture: images drawn or listed, captions journalled and written
in the standalone scorer's layout, both variants scored by hand, the ground truth journalled, missing tools named."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.evaluation.scoring.test_coco_chair import words
from vlpref.errors import VlprefError
from vlpref.evaluation import run as run_module
from vlpref.evaluation.run import EvalConfig, evaluate
from vlpref.evaluation.scoring import coco_chair
from vlpref.models.vlm import Generation

COLORS = {10: (255, 0, 0), 20: (0, 255, 0), 30: (0, 0, 255)}
# by the image's dominant channel (JPEG moves the exact colour)
CAPTIONS = ["A dog and a cat on a sofa.", "A man and two buses.", "An empty room."]


class ByImage:
    def __init__(self):
        self.asked = 0

    def generate(self, chats, params, batch_size=8):
        self.asked += len(chats)
        texts = []
        for chat in chats:
            pixel = chat.images[0].getpixel((4, 4))
            texts.append(CAPTIONS[pixel.index(max(pixel))])
        return [Generation(text=t, token_ids=[1], finish_reason="stop") for t in texts]


def coco(root):
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    for image_id, color in COLORS.items():
        Image.new("RGB", (8, 8), color).save(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", quality=100)
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    files = {
        "instances_val2014.json": {"categories": categories, "annotations": [
            {"image_id": 10, "category_id": 18}, {"image_id": 20, "category_id": 1}]},
        "instances_train2014.json": {"categories": categories, "annotations": []},
        "captions_val2014.json": {"annotations": [{"image_id": 10, "caption": "A dog on a couch."},
                                                  {"image_id": 20, "caption": "A man with a frisbee."}]},
        "captions_train2014.json": {"annotations": []},
    }
    for name, content in files.items():
        (root / "annotations" / name).write_text(json.dumps(content))


@pytest.fixture
def model(monkeypatch):
    stub = ByImage()
    monkeypatch.setattr(run_module.Session, "vlm", lambda self: stub)
    return stub


def test_chair_both_variants_by_hand(tmp_path, model, monkeypatch):
    coco(tmp_path / "coco")
    calls = []
    monkeypatch.setattr(coco_chair, "nltk_tools", lambda variant: calls.append(variant) or words())
    config = EvalConfig(benchmark="chair", data=str(tmp_path / "coco"))
    results = evaluate(config, tmp_path / "out", log=lambda *_: None)
    assert results["images"] == 3 and model.asked == 3 and calls == ["lemmatize", "singularize"]
    for variant in ("lemmatize", "singularize"):  # the stand-in extracts words the same way for both
        got = results[variant]
        assert got["chair_i"] == pytest.approx(2 / 5) and got["chair_s"] == pytest.approx(2 / 3)
        assert got["recall"] == pytest.approx(3 / 4)
    captions = [json.loads(line) for line in (tmp_path / "out" / "captions.jsonl").read_text().splitlines()]
    assert {c["image_id"] for c in captions} == {10, 20, 30}
    per_image = [json.loads(line) for line in (tmp_path / "out" / "chair_lemmatize.jsonl").read_text().splitlines()]
    assert {r["image_id"]: r["hallucinated"] for r in per_image} == {10: ["cat"], 20: ["bus"], 30: []}


def test_chair_truth_is_journalled(tmp_path, model, monkeypatch):
    coco(tmp_path / "coco")
    monkeypatch.setattr(coco_chair, "nltk_tools", lambda variant: words())
    config = EvalConfig(benchmark="chair", data=str(tmp_path / "coco"), chair_variants=["lemmatize"])
    evaluate(config, tmp_path / "out", log=lambda *_: None)
    read = []
    monkeypatch.setattr("vlpref.evaluation.chair.read_json", lambda path, what: read.append(path))
    again = evaluate(config, tmp_path / "out", log=lambda *_: None)
    assert read == [] and model.asked == 3 and again["calls"]["answers_generated"] == 0
    assert again["lemmatize"]["chair_i"] == pytest.approx(2 / 5)


def test_chair_image_ids_file_and_sampling(tmp_path, model, monkeypatch):
    coco(tmp_path / "coco")
    monkeypatch.setattr(coco_chair, "nltk_tools", lambda variant: words())
    ids = tmp_path / "ids.txt"
    ids.write_text("20\n30\n")
    listed = evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco"), chair_image_ids=str(ids),
                                 chair_variants=["lemmatize"]), tmp_path / "a", log=lambda *_: None)
    assert listed["images"] == 2 and listed["seed"] is None
    assert listed["lemmatize"]["chair_s"] == pytest.approx(1 / 2)
    drawn = evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco"), chair_images=2, chair_seed=1,
                                chair_variants=["lemmatize"]), tmp_path / "b", log=lambda *_: None)
    assert drawn["images"] == 2
    ids.write_text("20\n99\n")
    with pytest.raises(VlprefError, match=r"no image file for id\(s\) \[99\]"):
        evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco"), chair_image_ids=str(ids)),
                 tmp_path / "c", log=lambda *_: None)


def test_chair_names_missing_files_and_tools(tmp_path, model, monkeypatch):
    coco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations" / "captions_train2014.json").unlink()
    with pytest.raises(VlprefError, match="lacks captions_train2014.json"):
        evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco")), tmp_path / "o", log=lambda *_: None)
    coco(tmp_path / "coco2")

    def missing(variant):
        raise RuntimeError("CHAIR on COCO needs NLTK: pip install nltk")

    monkeypatch.setattr(coco_chair, "nltk_tools", missing)
    with pytest.raises(VlprefError, match="needs NLTK: pip install nltk. The captions are journalled"):
        evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco2")), tmp_path / "o2", log=lambda *_: None)
    assert model.asked == 3  # generated before the scorer was needed; a rerun will not generate again


def test_eval_score_chair_rescores_the_captions(tmp_path, model, monkeypatch):
    from vlpref.evaluation.score import score

    coco(tmp_path / "coco")
    monkeypatch.setattr(coco_chair, "nltk_tools", lambda variant: words())
    run = evaluate(EvalConfig(benchmark="chair", data=str(tmp_path / "coco")), tmp_path / "out", log=lambda *_: None)
    rescored = score("chair", answers=tmp_path / "out" / "captions.jsonl", metadata=tmp_path / "coco")
    assert rescored["lemmatize"] == run["lemmatize"] and rescored["skipped"] == {}

    def only_lemmatize(variant):
        if variant == "singularize":
            raise RuntimeError("CHAIR (singularize) needs the `pattern` package")
        return words()

    monkeypatch.setattr(coco_chair, "nltk_tools", only_lemmatize)
    partial = score("chair", answers=tmp_path / "out" / "captions.jsonl", metadata=tmp_path / "coco")
    assert "singularize" not in partial and "pattern" in partial["skipped"]["singularize"]
    (tmp_path / "bad.jsonl").write_text('{"image_id": "10", "caption": "x"}\n')
    with pytest.raises(VlprefError, match=r"bad.jsonl, record 1: needs an integer `image_id`"):
        score("chair", answers=tmp_path / "bad.jsonl", metadata=tmp_path / "coco")
