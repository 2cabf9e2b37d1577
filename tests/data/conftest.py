"""Small on-disk fixtures in the real source layouts (LLaVA JSON, VLFeedback rows) with real image files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlpref.data.schema import IMAGE_TOKEN, Prompt


def write_image(path: Path, color=(255, 0, 0), size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def llava_json(tmp_path) -> tuple[Path, Path]:
    """(json file, image root) in LLaVA's instruction format: single image, two images, text only, multi-turn."""
    root = tmp_path / "coco"
    write_image(root / "train2017" / "a.jpg", (250, 10, 10))
    write_image(root / "train2017" / "b.png", (10, 250, 10))
    write_image(root / "c.png", (10, 10, 250))
    rows = [
        {"id": "a", "image": "train2017/a.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": "A red square."},
            {"from": "human", "value": "Is it large?"},
            {"from": "gpt", "value": "No, it is small."}]},
        {"id": "b", "image": ["train2017/b.png", "c.png"], "conversations": [
            {"from": "human", "value": "Compare <image> and <image> please."},
            {"from": "gpt", "value": "Green and blue."}]},
        {"id": "c", "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]},
    ]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows))
    return path, root


def vlfeedback_rows() -> list[dict]:
    def verdict(h, e, v):
        return {"Helpfulness": {"Rating": h, "Rationale": f"helpful {h}"},
                "Ethical Considerations": {"Rating": e, "Rationale": "safe"},
                "Visual Faithfulness": {"Rating": v, "Rationale": f"faithful {v}"}}

    return [
        {"id": "v1", "instruction": "Describe the image.", "image": "imgs/v1.png",
         "models": ["llava-v1.5-7b", "qwen-vl-chat", "fuyu-8b", "gpt4v"],
         "completions": [
             {"model": "llava-v1.5-7b", "response": "A red square.", "annotations": verdict("4", "5", "4")},
             {"model": "qwen-vl-chat", "response": "A cat.", "annotations": verdict("2", "5", "1")},
             {"model": "fuyu-8b", "response": "Red.", "annotations": verdict("3", "5", "N/A")},
             {"model": "gpt4v", "response": "A small red square.", "annotations": verdict("5", "5", "5")}]},
        {"id": "v2", "instruction": "<image>\nWhat colour?", "image": "imgs/v2.png",
         "models": ["a", "b"],
         "completions": [
             {"model": "a", "response": "Blue.", "annotations": verdict("5", "5", "5")},
             {"model": "b", "response": "Green.", "annotations": verdict("1", "5", "1")}]},
    ]


@pytest.fixture
def vlfeedback_json(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "vlf_images"
    write_image(root / "imgs" / "v1.png", (200, 0, 0))
    write_image(root / "imgs" / "v2.png", (0, 0, 200))
    path = tmp_path / "vlfeedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in vlfeedback_rows()))
    return path, root


def export_vlfeedback(prompts: list[Prompt], candidates: list, annotations: list) -> list[dict]:
    """The VLFeedback release layout again (image as a path), from imported records: the inverse of
    `import_vlfeedback`, to check that the import keeps everything the release holds."""
    by_prompt: dict[str, list] = {}
    for candidate in candidates:
        by_prompt.setdefault(candidate.prompt_id, []).append(candidate)
    verdicts = {a.candidate_id: a for a in annotations}
    rows = []
    for prompt in prompts:
        text = prompt.turns[0].text
        if prompt.images and text.startswith(f"{IMAGE_TOKEN}\n"):
            text = text[len(IMAGE_TOKEN) + 1 :]
        completions = []
        for candidate in by_prompt.get(prompt.id, []):
            annotation = verdicts.get(candidate.id)
            raw = json.loads(annotation.raw) if annotation is not None and annotation.raw else {}
            completions.append({"model": candidate.model_id, "response": candidate.text, "annotations": raw})
        rows.append({
            "id": prompt.id,
            "instruction": text,
            "image": prompt.images[0] if prompt.images else None,
            "models": [c["model"] for c in completions],
            "completions": completions,
        })
    return rows
