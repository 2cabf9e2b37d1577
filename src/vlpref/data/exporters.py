"""Hand vlpref data to other trainers: TRL's vision formats and LLaMA-Factory's sharegpt preference format.

    >>> from vlpref.data.exporters import export_trl, export_llamafactory
    >>> export_trl("data/pairs", "export/trl")            # load with datasets.load_from_disk, pass to DPOTrainer
    >>> export_llamafactory("data/pairs", "export/lf")    # data.json + images/ + dataset_info.json

TRL (docs "Vision datasets"): conversational `prompt` / `chosen` / `rejected` whose content is a list of
`{"type": "image"}` / `{"type": "text", "text": ...}` blocks, plus an `images` column of images. Prompts (SFT data)
export as `messages` + `images`. vlpref's own fields ride along as extra columns (id, prompt_id, strategy, scores as
JSON, and `image_paths`, since an image feature keeps only a file's base name), which TRL ignores and `import_trl`
restores.

LLaMA-Factory (data/README.md "Preference Dataset"): sharegpt `conversations` ending with a human turn, `chosen` and
`rejected` messages `{"from": "gpt", "value": ...}`, an `images` list of paths with one `<image>` per image, and a
`dataset_info.json` entry with `"ranking": true`.

Neither format has a separate image list for the rejected side, so image-contrast pairs (SeVa, POVID stage 2) cannot
be exported there: each is reported (RecordError, or a reject in skip mode), never silently flattened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlpref.data.images import place_image, read_image_bytes, resolve_image
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import IMAGE_TOKEN, PreferencePair, Turn
from vlpref.data.store import RECORDS_FILE, check_hf_format, read_meta, read_records, write_hf
from vlpref.errors import RecordError, VlprefError

LF_ROLES = {"user": "human", "assistant": "gpt"}


def content_blocks(text: str) -> list[dict[str, Any]]:
    """Split text at each `<image>` into TRL content blocks, keeping every text piece verbatim (lossless)."""
    blocks: list[dict[str, Any]] = []
    for i, piece in enumerate(text.split(IMAGE_TOKEN)):
        if i > 0:
            blocks.append({"type": "image", "text": None})
        if piece:
            blocks.append({"type": "text", "text": piece})
    return blocks


def trl_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    return [{"role": t.role, "content": content_blocks(t.text)} for t in turns]


def _image_cells(root: Path, record, source: Path) -> list[dict[str, Any]]:
    return [{"bytes": read_image_bytes(root, p, file=source, record_id=record.id, field=f"images[{i}]"), "path": p}
            for i, p in enumerate(record.images)]


def _check_single_image_list(pair: PreferencePair, source: Path, target: str) -> None:
    if pair.rejected_images is not None:  # None whenever the rejected side shares the prompt's images
        raise RecordError(f"rejected side has its own images, which {target}'s format cannot hold", file=source,
                          record_id=pair.id, field="rejected_images")


def export_trl(root: str | Path, out: str | Path, fmt: str = "arrow", rejects: RejectLog | None = None) -> int:
    """Export a dataset folder of pairs (or prompts) to TRL's vision format; returns the number of rows written."""
    from datasets import Dataset, Image, List

    check_hf_format(fmt)
    root, out = Path(root), Path(out)
    kind = read_meta(root)["kind"]
    source = root / RECORDS_FILE
    rejects = rejects or RejectLog(None, on_error="raise")
    rows = []
    for record in read_records(root):
        with rejects.guard(row={"id": record.id}):
            if kind == "pairs":
                _check_single_image_list(record, source, "TRL")
                rows.append({
                    "id": record.id,
                    "prompt_id": record.prompt_id,
                    "prompt": trl_messages(record.turns),
                    "chosen": trl_messages([Turn(role="assistant", text=record.chosen)]),
                    "rejected": trl_messages([Turn(role="assistant", text=record.rejected)]),
                    "images": _image_cells(root, record, source),
                    "image_paths": record.images,
                    "strategy": record.strategy,
                    "chosen_scores": json.dumps(record.chosen_scores, sort_keys=True),
                    "rejected_scores": json.dumps(record.rejected_scores, sort_keys=True),
                    "provenance": json.dumps(record.provenance, sort_keys=True),
                })
            elif kind == "prompts":
                rows.append({
                    "id": record.id,
                    "messages": trl_messages(record.turns),
                    "images": _image_cells(root, record, source),
                    "image_paths": record.images,
                    "source": record.source,
                    "meta": json.dumps(record.meta, sort_keys=True),
                })
            else:
                raise VlprefError(f"{root}: holds {kind}; TRL export takes prompts or pairs")
    _none_exported(rows, root, rejects)
    dataset = Dataset.from_list(rows)
    dataset = dataset.cast_column("images", List(Image()))
    write_hf(dataset, out, fmt)
    return len(rows)


def _none_exported(rows: list, root: Path, rejects: RejectLog) -> None:
    """An export with no rows is an error (checked before anything is written, so no empty output is left that
    datasets.load_from_disk or LLaMA-Factory cannot open)."""
    if rows:
        return
    if rejects.count:
        raise VlprefError(f"{root}: every record was rejected ({rejects.count}); nothing exported; reasons in "
                          f"{rejects.path}")
    raise VlprefError(f"{root}: no records to export")


def _sharegpt(turns: list[Turn], source: Path, record_id: str) -> tuple[str | None, list[dict[str, str]]]:
    """(system prompt, sharegpt messages). LLaMA-Factory has one system prompt, before the conversation."""
    system = turns[0].text if turns[0].role == "system" else None
    rest = turns[1:] if system is not None else turns
    if any(t.role == "system" for t in rest):
        raise RecordError("LLaMA-Factory's format takes one system turn, at the start", file=source,
                          record_id=record_id, field="turns")
    return system, [{"from": LF_ROLES[t.role], "value": t.text} for t in rest]


def _place(root: Path, out: Path, relative: str, source: Path, record_id: str, index: int) -> str:
    try:
        return place_image(resolve_image(root, relative), out, relative)
    except (ValueError, OSError) as error:
        raise RecordError(f"cannot export image: {error}", file=source, record_id=record_id,
                          field=f"images[{index}]") from None


def export_llamafactory(
    root: str | Path, out: str | Path, name: str = "vlpref_pairs", rejects: RejectLog | None = None
) -> int:
    """Export pairs to LLaMA-Factory: out/data.json, out/images/..., out/dataset_info.json (entry `name`)."""
    root, out = Path(root), Path(out)
    if read_meta(root)["kind"] != "pairs":
        raise VlprefError(f"{root}: LLaMA-Factory preference export takes pairs")
    source = root / RECORDS_FILE
    rejects = rejects or RejectLog(None, on_error="raise")
    rows = []
    for pair in read_records(root):
        with rejects.guard(row={"id": pair.id}):
            _check_single_image_list(pair, source, "LLaMA-Factory")
            system, conversations = _sharegpt(pair.turns, source, pair.id)
            row: dict[str, Any] = {
                "conversations": conversations,
                "chosen": {"from": "gpt", "value": pair.chosen},
                "rejected": {"from": "gpt", "value": pair.rejected},
                "images": [_place(root, out, p, source, pair.id, i) for i, p in enumerate(pair.images)],
            }
            if system is not None:
                row["system"] = system
            rows.append(row)
    _none_exported(rows, root, rejects)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    columns = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}
    if any("system" in r for r in rows):
        columns["system"] = "system"
    info = {name: {"file_name": "data.json", "formatting": "sharegpt", "ranking": True, "columns": columns}}
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return len(rows)
