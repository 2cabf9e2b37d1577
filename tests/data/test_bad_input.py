"""Each kind of bad input gives an error naming the file, the record and the field; skip mode logs and goes on."""

from __future__ import annotations

import json

import pytest

from vlpref.data.importers import import_llava, import_vlfeedback
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import Prompt, Turn
from vlpref.data.store import read_records, write_records
from vlpref.errors import RecordError, UnsupportedModelError

from .conftest import write_image


def llava_file(tmp_path, rows, suffix=".json"):
    path = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows))
    return path


def row(id, image="ok.png", text="<image>\nWhat?"):
    turns = [{"from": "human", "value": text}, {"from": "gpt", "value": "A."}]
    return {"id": id, "image": image, "conversations": turns}


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "imgs"
    write_image(root / "ok.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return root


def test_missing_image(tmp_path, image_root):
    path = llava_file(tmp_path, [row("r1", image="nope.png")])
    with pytest.raises(RecordError, match=r"in\.json: record r1, field image: image file not found: .*nope\.png"):
        import_llava(path, image_root, tmp_path / "out")


def test_corrupt_image(tmp_path, image_root):
    path = llava_file(tmp_path, [row("r2", image="corrupt.png")])
    with pytest.raises(RecordError, match=r"in\.json: record r2, field image: cannot read image .*corrupt\.png"):
        import_llava(path, image_root, tmp_path / "out")


def test_image_path_outside_root(tmp_path, image_root):
    write_image(tmp_path / "secret.png")
    path = llava_file(tmp_path, [row("r3", image="../secret.png")])
    with pytest.raises(RecordError, match=r"record r3, field image: image path '\.\./secret\.png' leaves the dataset"):
        import_llava(path, image_root, tmp_path / "out")
    link = image_root / "link.png"
    link.symlink_to(tmp_path / "secret.png")  # a symlink out of the root is refused too
    with pytest.raises(RecordError, match=r"record r4, field image: .*leaves the dataset root"):
        import_llava(llava_file(tmp_path, [row("r4", image="link.png")]), image_root, tmp_path / "out")


def test_malformed_jsonl_row(tmp_path, image_root):
    path = llava_file(tmp_path, [row("r1"), '{"id": "r2", "image": ', row("r3")], suffix=".jsonl")
    with pytest.raises(RecordError, match=r"in\.jsonl:2: not valid JSON"):
        import_llava(path, image_root, tmp_path / "out")


def test_placeholder_count_mismatch(tmp_path, image_root):
    path = llava_file(tmp_path, [row("r5", text="What is this?")])
    with pytest.raises(RecordError, match=r"record r5, field conversations: 0 <image> placeholder\(s\) for 1 image"):
        import_llava(path, image_root, tmp_path / "out")
    with pytest.raises(ValueError, match=r"2 <image> placeholder\(s\) but 1 image"):
        Prompt(id="x", images=["a.png"], turns=[Turn(role="user", text="<image> <image>")])


def test_unknown_speaker(tmp_path, image_root):
    bad = row("r6")
    bad["conversations"][1]["from"] = "bot"
    with pytest.raises(RecordError, match=r"record r6, field conversations\[1\]\.from: unknown speaker 'bot'"):
        import_llava(llava_file(tmp_path, [bad]), image_root, tmp_path / "out")


def test_skip_mode_writes_every_reject_with_its_reason(tmp_path, image_root):
    rows = [row("good1"), row("bad-image", image="nope.png"), '{broken', row("bad-count", text="no placeholder"),
            row("good2")]
    log = RejectLog(tmp_path / "rejects.jsonl", on_error="skip")
    prompts = import_llava(llava_file(tmp_path, rows, ".jsonl"), image_root, tmp_path / "out", rejects=log)
    log.close()
    assert [p.id for p in prompts] == ["good1", "good2"]
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert log.count == 3 and len(rejects) == 3
    assert [(r["record_id"], r["field"], r["line"]) for r in rejects] == [
        ("bad-image", "image", 2), (None, None, 3), ("bad-count", "conversations", 4)]
    assert all(r["reason"] and r["row"] is not None for r in rejects)


def test_dataset_folder_rows_are_validated(tmp_path):
    write_image(tmp_path / "ds" / "images" / "a.png")
    prompt = Prompt(id="p1", images=["images/a.png"], turns=[Turn(role="user", text="<image> hi")])
    write_records(tmp_path / "ds", "prompts", [prompt])
    with (tmp_path / "ds" / "records.jsonl").open("a") as f:
        f.write('{"id": "p2", "images": [], "turns": [{"role": "user", "txt": "hi"}]}\n')
        f.write('{"id": "p3", "images": ["images/missing.png"], "turns": [{"role": "user", "text": "<image>"}]}\n')
    with pytest.raises(RecordError, match=r"records\.jsonl:2: record p2, field turns\.0\.text: Field required"):
        read_records(tmp_path / "ds")
    log = RejectLog(None, on_error="skip")
    assert [p.id for p in read_records(tmp_path / "ds", rejects=log, check_image_files=True)] == ["p1"]
    assert log.count == 2


def test_vlfeedback_missing_field(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"id": "v9", "completions": []}) + "\n")
    with pytest.raises(RecordError, match=r"v\.jsonl:1: record v9, field instruction: missing"):
        import_vlfeedback(path, tmp_path / "out")


def test_unsupported_architecture(tmp_path):
    from transformers import BertConfig

    from vlpref.models.vlm import VLM

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(UnsupportedModelError, match=r"bert: architecture 'bert' is not supported; vlpref supports"):
        VLM.load(str(tmp_path / "bert"))


def test_chat_from_prompt_names_the_record(tmp_path):
    from vlpref.models.vlm import Chat

    write_image(tmp_path / "images" / "a.png", (1, 2, 3))
    prompt = Prompt(id="p9", images=["images/a.png", "images/gone.png"],
                    turns=[Turn(role="user", text="<image> <image> compare"), Turn(role="assistant", text="ok")])
    with pytest.raises(RecordError, match=r"records\.jsonl: record p9, field images\[1\]: image file not found"):
        Chat.from_prompt(prompt, tmp_path)
    chat = Chat.from_prompt(prompt.model_copy(update={"images": ["images/a.png"] * 2}), tmp_path)
    assert chat.turns == prompt.query and chat.images[0].getpixel((0, 0)) == (1, 2, 3)
