"""Round trips between source layouts, the dataset folder, the HF datasets form and the export formats."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlpref.data.exporters import export_llamafactory, export_trl
from vlpref.data.importers import import_llava, import_trl, import_vlfeedback
from vlpref.data.schema import PreferencePair, Turn
from vlpref.data.store import load_hf, read_records, save_hf, write_records

from .conftest import export_vlfeedback, vlfeedback_rows


def same_pixels(a, b) -> bool:
    return Image.open(a).convert("RGB").tobytes() == Image.open(b).convert("RGB").tobytes()


def test_llava_json_to_dataset_to_trl_and_back(llava_json, tmp_path):
    path, image_root = llava_json
    prompts = import_llava(path, image_root, tmp_path / "ds")
    assert [p.id for p in prompts] == ["a", "b", "c"]
    assert prompts[0].turns[0] == Turn(role="user", text="<image>\nWhat is in the picture?")
    assert prompts[0].reference == "No, it is small." and prompts[2].turns[0].role == "system"
    assert prompts[1].images == ["images/train2017/b.png", "images/c.png"]
    write_records(tmp_path / "ds", "prompts", prompts)
    stored = read_records(tmp_path / "ds", check_image_files=True)
    assert stored == prompts

    assert export_trl(tmp_path / "ds", tmp_path / "trl") == 3
    reloaded = import_trl(tmp_path / "trl", tmp_path / "back")
    assert reloaded == stored
    for record in reloaded:
        for image in record.images:
            assert same_pixels(tmp_path / "ds" / image, tmp_path / "back" / image)


def test_trl_export_layout(llava_json, tmp_path):
    """The columns and content blocks TRL's DPOTrainer/SFTTrainer read for vision data."""
    import datasets

    path, image_root = llava_json
    write_records(tmp_path / "ds", "prompts", import_llava(path, image_root, tmp_path / "ds"))
    export_trl(tmp_path / "ds", tmp_path / "trl")
    row = datasets.load_from_disk(str(tmp_path / "trl"))[1]
    assert row["messages"][0] == {"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image", "text": None}, {"type": "text", "text": " and "},
        {"type": "image", "text": None}, {"type": "text", "text": " please."}]}
    assert len(row["images"]) == 2 and isinstance(row["images"][0], Image.Image)


def pairs_dataset(tmp_path, llava_json) -> list[PreferencePair]:
    path, image_root = llava_json
    prompts = import_llava(path, image_root, tmp_path / "pairs")
    pairs = [
        PreferencePair(id=f"{p.id}-0", prompt_id=p.id, images=p.images, turns=p.query, chosen="good answer .",
                       rejected="bad answer", chosen_scores={"Helpfulness": 5.0}, rejected_scores={"Helpfulness": 1.5},
                       strategy="vlfeedback-mean", provenance={"chosen_model": "m1", "rejected_model": "m2"})
        for p in prompts
    ]
    write_records(tmp_path / "pairs", "pairs", pairs)
    return pairs


def test_pairs_trl_round_trip_and_hf_forms(llava_json, tmp_path):
    pairs = pairs_dataset(tmp_path, llava_json)
    for fmt in ("arrow", "parquet"):
        export_trl(tmp_path / "pairs", tmp_path / f"trl-{fmt}", fmt=fmt)
        assert import_trl(tmp_path / f"trl-{fmt}", tmp_path / f"back-{fmt}") == pairs
        assert save_hf(tmp_path / "pairs", tmp_path / f"hf-{fmt}", fmt=fmt) == len(pairs)
        assert load_hf(tmp_path / f"hf-{fmt}", tmp_path / f"hf-back-{fmt}") == len(pairs)
        assert read_records(tmp_path / f"hf-back-{fmt}", check_image_files=True) == pairs


def test_llamafactory_export(llava_json, tmp_path):
    pairs = pairs_dataset(tmp_path, llava_json)
    assert export_llamafactory(tmp_path / "pairs", tmp_path / "lf") == len(pairs)
    rows = json.loads((tmp_path / "lf" / "data.json").read_text())
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["vlpref_pairs"]["ranking"] is True and info["vlpref_pairs"]["formatting"] == "sharegpt"
    first = rows[0]
    assert first["conversations"] == [{"from": "human", "value": "<image>\nWhat is in the picture?"},
                                      {"from": "gpt", "value": "A red square."},
                                      {"from": "human", "value": "Is it large?"}]
    assert first["chosen"] == {"from": "gpt", "value": "good answer ."}
    assert all((tmp_path / "lf" / p).is_file() for r in rows for p in r["images"])
    assert rows[2]["system"] == "Be brief."  # system turn -> LLaMA-Factory's system column
    # one <image> per listed image, as LLaMA-Factory checks
    for r in rows:
        assert sum(m["value"].count("<image>") for m in r["conversations"]) == len(r["images"])


def test_image_contrast_pairs_are_refused_by_single_image_formats(llava_json, tmp_path):
    from vlpref.data.rejects import RejectLog
    from vlpref.errors import RecordError

    pairs = pairs_dataset(tmp_path, llava_json)
    pairs[0] = pairs[0].model_copy(update={"rejected_images": ["images/c.png"], "strategy": "seva-noise"})
    write_records(tmp_path / "pairs", "pairs", pairs)
    with pytest.raises(RecordError, match=r"record a-0, field rejected_images"):
        export_trl(tmp_path / "pairs", tmp_path / "trl")
    log = RejectLog(tmp_path / "rejects.jsonl")
    assert export_llamafactory(tmp_path / "pairs", tmp_path / "lf", rejects=log) == len(pairs) - 1
    assert log.count == 1
    assert json.loads((tmp_path / "rejects.jsonl").read_text())["record_id"] == "a-0"


def test_vlfeedback_to_dataset_and_back(vlfeedback_json, tmp_path):
    path, image_root = vlfeedback_json
    prompts, candidates, annotations = import_vlfeedback(path, tmp_path / "vlf", image_root=image_root)
    assert [p.id for p in prompts] == ["v1", "v2"]
    assert prompts[0].turns[0].text == "<image>\nDescribe the image."  # placeholder added where the release has none
    assert prompts[1].turns[0].text == "<image>\nWhat colour?"  # not doubled
    assert len(candidates) == 6 and candidates[0].id == "v1/llava-v1.5-7b/0"
    first = annotations[0]
    assert first.aspects["Helpfulness"].score == 4.0 and first.aspects["Visual Faithfulness"].rationale == "faithful 4"
    assert first.mean_score() == pytest.approx((4 + 5 + 4) / 3)
    unparsed = annotations[2]  # "N/A" is kept, unscored, never dropped
    assert unparsed.parse_status == "partial" and unparsed.aspects["Visual Faithfulness"].score is None

    for kind, records in (("prompts", prompts), ("candidates", candidates), ("annotations", annotations)):
        write_records(tmp_path / "vlf" if kind == "prompts" else tmp_path / kind, kind, records)
    assert read_records(tmp_path / "vlf", check_image_files=True) == prompts
    assert read_records(tmp_path / "candidates") == candidates
    assert read_records(tmp_path / "annotations") == annotations
    save_hf(tmp_path / "annotations", tmp_path / "annotations-hf")
    load_hf(tmp_path / "annotations-hf", tmp_path / "annotations-back")
    assert read_records(tmp_path / "annotations-back") == annotations

    # ...and back to the release layout: equal apart from where the image now lives.
    exported = export_vlfeedback(prompts, candidates, annotations)
    original = vlfeedback_rows()
    for got, want in zip(exported, original, strict=True):
        assert same_pixels(tmp_path / "vlf" / got.pop("image"), image_root / want.pop("image"))
        want["instruction"] = want["instruction"].removeprefix("<image>\n")
        assert got == want


def test_import_any_hf_dataset_with_image_and_question_columns(tmp_path):
    import datasets

    from vlpref.data.importers import import_hf
    from vlpref.errors import VlprefError

    rows = {"qid": ["x1", "x2"], "img": [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))],
            "q": ["Is it red?", "<image>\nIs it blue?"], "a": ["yes", "yes"]}
    datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image()).save_to_disk(str(tmp_path / "hf"))
    prompts = import_hf(tmp_path / "hf", tmp_path / "ds", image_column="img", question_column="q",
                        answer_column="a", id_column="qid")
    assert [p.id for p in prompts] == ["x1", "x2"]
    assert prompts[0].turns == [Turn(role="user", text="<image>\nIs it red?"), Turn(role="assistant", text="yes")]
    assert prompts[1].turns[0].text == "<image>\nIs it blue?"  # an existing placeholder is kept, not doubled
    assert Image.open(tmp_path / "ds" / prompts[0].images[0]).getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(VlprefError, match=r"no column 'question'; columns are qid, img, q, a"):
        import_hf(tmp_path / "hf", tmp_path / "ds2", image_column="img")


@pytest.mark.parametrize("legacy_sequence", [False, True], ids=["list-of-structs", "sequence-of-struct"])
def test_vlfeedback_release_as_hf_dataset_with_embedded_images(tmp_path, legacy_sequence):
    """The hub release is parquet with an embedded image; `completions` may come back as a list of dicts or, for a
    legacy `Sequence` feature, as a dict of lists. Both import the same."""
    import datasets

    rows = vlfeedback_rows()
    for r in rows:
        r["image"] = Image.new("RGB", (8, 8), (0, 200, 0))
        if legacy_sequence:  # a Sequence of structs is stored (and read back) as a dict of lists
            r["completions"] = {k: [c[k] for c in r["completions"]] for k in ("model", "response", "annotations")}
    verdict = {a: {"Rating": datasets.Value("string"), "Rationale": datasets.Value("string")}
               for a in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")}
    completion = {"model": datasets.Value("string"), "response": datasets.Value("string"), "annotations": verdict}
    features = datasets.Features({
        "id": datasets.Value("string"), "instruction": datasets.Value("string"), "image": datasets.Image(),
        "models": datasets.List(datasets.Value("string")),
        "completions": datasets.Sequence(completion) if legacy_sequence else datasets.List(completion),
    })
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "vlf.parquet"))
    prompts, candidates, annotations = import_vlfeedback(tmp_path / "vlf.parquet", tmp_path / "out")
    assert [p.id for p in prompts] == ["v1", "v2"] and len(candidates) == 6
    assert annotations[1].aspects["Visual Faithfulness"].score == 1.0 and candidates[1].text == "A cat."
    assert Image.open(tmp_path / "out" / prompts[0].images[0]).getpixel((0, 0)) == (0, 200, 0)
