"""Hostile and malformed inputs: nothing escapes a dataset root, and every bad row is reported, never a crash."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlpref.data.exporters import export_llamafactory
from vlpref.data.importers import import_hf, import_llava, import_vlfeedback
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import PreferencePair, Prompt, Turn
from vlpref.data.store import RecordWriter, load_hf, read_records, save_hf, write_records
from vlpref.errors import RecordError, VlprefError

from .conftest import write_image


def test_record_image_paths_must_stay_relative():
    for bad in ("../x.png", "/etc/passwd", "a/../../x.png", "images\\..\\x.png", ""):
        with pytest.raises(ValueError, match="image path"):
            Prompt(id="p", images=[bad], turns=[Turn(role="user", text="<image>")])


def test_export_cannot_write_outside_its_folder(tmp_path):
    """A path that climbs out of the root and back in used to land outside the export folder."""
    root = tmp_path / "ds2"
    write_image(root / "images" / "x.png")
    pair = {"id": "p", "prompt_id": "p", "images": ["images/x.png"], "turns": [{"role": "user", "text": "<image>"}],
            "chosen": "a", "rejected": "b", "strategy": "s"}
    write_records(root, "pairs", [PreferencePair(**pair)])
    climbing = json.dumps({**pair, "images": ["../../../../ds2/images/x.png"]})
    (root / "records.jsonl").write_text(climbing + "\n")  # written by hand, past the schema
    with pytest.raises(RecordError, match=r"field images\.0"):
        export_llamafactory(root, tmp_path / "o1" / "o2" / "o3" / "out")
    assert not (tmp_path / "ds2" / "ds2").exists() and not (tmp_path / "o1" / "ds2").exists()


def test_path_only_image_cells_are_not_followed(tmp_path):
    """An HF image cell may carry a path instead of bytes; following it would copy any local file."""
    write_image(tmp_path / "secret.png", (9, 9, 9))
    cell = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": None, "path": str(tmp_path / "secret.png")}], type=cell),
                      "question": ["What?"]})
    pq.write_table(table, tmp_path / "evil.parquet")
    with pytest.raises(RecordError, match=r"record 0, field image: image has no embedded bytes"):
        import_hf(tmp_path / "evil.parquet", tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("completion, field", [
    ("just a string", "completions[0]"),
    ({"model": "m", "response": None}, "completions[0]"),
    ({"model": "m", "response": "r", "annotations": {"Helpfulness": "5"}}, "completions[0].annotations"),
])
def test_malformed_vlfeedback_structures_are_reported_rows(tmp_path, completion, field):
    good = {"id": "ok", "instruction": "Hi", "completions": [{"model": "m", "response": "r", "annotations": {}}]}
    bad = {"id": "bad", "instruction": "Hi", "models": [], "completions": [completion]}
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    pattern = rf"v\.jsonl:1: record bad, field {field.replace('[', '.').replace(']', '.')}"
    with pytest.raises(RecordError, match=pattern):
        import_vlfeedback(path, tmp_path / "out")
    log = RejectLog(None, on_error="skip")
    prompts, _, _ = import_vlfeedback(path, tmp_path / "out2", rejects=log)
    assert [p.id for p in prompts] == ["ok"] and log.count == 1


def test_malformed_llava_structures_are_reported_rows(tmp_path):
    rows = [{"id": "a", "conversations": ["human"]}, {"id": "b", "image": 7, "conversations": [
        {"from": "human", "value": "<image> x"}]}, {"id": "c", "conversations": [{"from": "gpt", "value": "no user"}]}]
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = RejectLog(tmp_path / "rejects.jsonl", on_error="skip")
    assert import_llava(path, tmp_path, tmp_path / "out", rejects=log) == []
    log.close()
    reasons = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["record_id"], r["line"]) for r in reasons] == [("a", 1), ("b", 2), ("c", 3)]
    assert reasons[0]["field"] == "conversations[0]" and "expected {" in reasons[0]["reason"]
    assert reasons[1]["field"] == "image" and "expected an image path" in reasons[1]["reason"]
    assert "at least one user turn" in reasons[2]["reason"]


def test_duplicate_ids_and_image_collisions(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", (1, 1, 1))
    row = {"id": "same", "image": "a.png", "conversations": [{"from": "human", "value": "<image> q"}]}
    (tmp_path / "in.json").write_text(json.dumps([row, row]))
    with pytest.raises(RecordError, match=r"record same, field id: duplicate id"):
        import_llava(tmp_path / "in.json", tmp_path / "imgs", tmp_path / "out")
    # a second import from another root whose a.png differs must not silently keep the old picture
    write_image(tmp_path / "other" / "a.png", (2, 2, 2))
    (tmp_path / "in.json").write_text(json.dumps([row]))
    import_llava(tmp_path / "in.json", tmp_path / "imgs", tmp_path / "out2")
    with pytest.raises(RecordError, match=r"record same, field image: .*already holds a different image"):
        import_llava(tmp_path / "in.json", tmp_path / "other", tmp_path / "out2")


def test_appending_another_kind_is_refused(tmp_path):
    write_records(tmp_path / "ds", "prompts", [Prompt(id="p", turns=[Turn(role="user", text="hi")])])
    with pytest.raises(VlprefError, match="holds prompts; cannot append pairs"):
        RecordWriter(tmp_path / "ds", "pairs", append=True)


def test_hf_round_trip_keeps_paths_when_only_later_rows_have_rejected_images(tmp_path):
    write_image(tmp_path / "ds" / "images" / "a.png", (1, 1, 1))
    write_image(tmp_path / "ds" / "images" / "noised" / "a.png", (5, 5, 5))
    base = dict(prompt_id="p", images=["images/a.png"], turns=[Turn(role="user", text="<image>")], chosen="a",
                rejected="b", strategy="seva")
    pairs = [PreferencePair(id="p1", **base),
             PreferencePair(id="p2", rejected_images=["images/noised/a.png"], **base)]
    write_records(tmp_path / "ds", "pairs", pairs)
    save_hf(tmp_path / "ds", tmp_path / "hf")
    load_hf(tmp_path / "hf", tmp_path / "back")
    assert read_records(tmp_path / "back", check_image_files=True) == pairs
    assert Image.open(tmp_path / "back" / "images" / "noised" / "a.png").getpixel((0, 0)) == (5, 5, 5)


def test_llamafactory_takes_one_leading_system_turn(tmp_path):
    turns = [Turn(role="user", text="hi"), Turn(role="system", text="late"), Turn(role="user", text="again")]
    write_records(tmp_path / "ds", "pairs", [PreferencePair(id="p", prompt_id="p", turns=turns, chosen="a",
                                                            rejected="b", strategy="s")])
    with pytest.raises(RecordError, match=r"record p, field turns: LLaMA-Factory's format takes one system turn"):
        export_llamafactory(tmp_path / "ds", tmp_path / "lf")


def test_image_path_used_when_image_is_null(tmp_path):
    write_image(tmp_path / "imgs" / "v.png")
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"id": "v", "instruction": "Hi", "image": None, "image_path": "v.png",
                                "completions": []}) + "\n")
    prompts, _, _ = import_vlfeedback(path, tmp_path / "out", image_root=tmp_path / "imgs")
    assert prompts[0].images == ["images/v.png"]
