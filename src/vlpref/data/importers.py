"""Bring outside data into vlpref records: LLaVA conversation JSON, the VLFeedback release, any HF image/question
dataset, and TRL's vision formats (to reload what `exporters` wrote).

    >>> from vlpref.data.importers import import_llava
    >>> prompts = import_llava("llava_instruct.json", image_root="coco", out_root="data/prompts")
    >>> write_records("data/prompts", "prompts", prompts)

Every importer places the images it uses inside `out_root` (hard links where possible), so the result is a
self-contained dataset folder, and resolves source image paths inside `image_root` only. Bad rows raise a RecordError
naming file, record and field, or go to the RejectLog in skip mode.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from vlpref.data.images import load_image, place_image, resolve_image
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import IMAGE_TOKEN, Annotation, AspectScore, Candidate, PreferencePair, Prompt, Turn
from vlpref.data.store import open_hf
from vlpref.errors import RecordError, VlprefError

LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
VLFEEDBACK_ASPECTS = ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")


def _read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, row) from a JSON list file or a JSONL file; malformed JSONL lines raise RecordError."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"not valid JSON: {error.msg} at column {error.colno}", file=path,
                                      line=line_no) from None
        return
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                          file=path) from None
    if not isinstance(rows, list):
        raise RecordError("expected a JSON list of records", file=path)
    yield from enumerate(rows)


def _rows(path: Path, rejects: RejectLog) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON/JSONL file; in skip mode a malformed JSONL line is logged and reading goes on."""
    if path.suffix != ".jsonl":
        yield from _read_json_rows(path)
        return
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        with rejects.guard(row=line):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"not valid JSON: {error.msg} at column {error.colno}", file=path,
                                  line=line_no) from None
            yield line_no, row


def _validated(cls, data: dict, *, file: Path, line: int | None, record_id: str | None):
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise RecordError(first["msg"], file=file, line=line, record_id=record_id,
                          field=".".join(map(str, first["loc"])) or None) from None


def _copy_images(paths: list[str], image_root: Path, out_root: Path, *, file: Path, line, record_id: str,
                 field: str) -> list[str]:
    """Check each source image opens, then place it under out_root/images/ keeping its relative path."""
    placed = []
    for i, relative in enumerate(paths):
        where = f"{field}[{i}]" if len(paths) > 1 or field.endswith("s") else field
        try:
            load_image(image_root, relative, file=file, record_id=record_id, field=where)
        except RecordError as error:
            raise RecordError(error.reason, file=file, line=line, record_id=record_id, field=where) from None
        placed.append(place_image(resolve_image(image_root, relative), out_root, f"images/{relative}"))
    return placed


def _save_pil(image: Any, out_root: Path, relative: str, *, file, record_id: str, field: str) -> str:
    """Write an in-memory image (PIL, or HF's {"bytes", "path"} dict) to out_root/relative as PNG."""
    try:
        if isinstance(image, dict):
            image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else None
        if image is None:
            raise RecordError("image is missing", file=file, record_id=record_id, field=field)
        image.load()
        target = resolve_image(out_root, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(target)
    except (UnidentifiedImageError, OSError) as error:
        raise RecordError(f"cannot read image: {error}", file=file, record_id=record_id, field=field) from None
    return relative


# ---------------------------------------------------------------------------------------------------------------
# LLaVA conversation JSON


def import_llava(
    path: str | Path, image_root: str | Path, out_root: str | Path, rejects: RejectLog | None = None
) -> list[Prompt]:
    """LLaVA's instruction format: `[{"id", "image": "a.jpg" | [...], "conversations": [{"from", "value"}]}]`.

    `<image>` placeholders stay where LLaVA put them; their count must equal the number of images.
    """
    path, image_root, out_root = Path(path), Path(image_root), Path(out_root)
    rejects = rejects or RejectLog(None, on_error="raise")
    prompts = []
    for line, row in _rows(path, rejects):
        line_no = line if path.suffix == ".jsonl" else None
        record_id = str(row.get("id")) if isinstance(row, dict) and row.get("id") is not None else f"row{line}"
        with rejects.guard(row=row):
            if not isinstance(row, dict):
                raise RecordError("expected a JSON object", file=path, line=line_no, record_id=record_id)
            conversations = row.get("conversations")
            if not isinstance(conversations, list) or not conversations:
                raise RecordError("missing or empty list", file=path, line=line_no, record_id=record_id,
                                  field="conversations")
            turns = []
            for i, message in enumerate(conversations):
                speaker = message.get("from") if isinstance(message, dict) else message
                role = LLAVA_ROLES.get(speaker) if isinstance(speaker, str) else None
                if role is None:
                    raise RecordError(f"unknown speaker {speaker!r}"
                                      f"; expected one of {', '.join(LLAVA_ROLES)}", file=path, line=line_no,
                                      record_id=record_id, field=f"conversations[{i}].from")
                if not isinstance(message.get("value"), str):
                    raise RecordError("expected text", file=path, line=line_no, record_id=record_id,
                                      field=f"conversations[{i}].value")
                turns.append(Turn(role=role, text=message["value"]))
            image = row.get("image", [])
            sources = [image] if isinstance(image, str) else list(image or [])
            found = sum(t.text.count(IMAGE_TOKEN) for t in turns)
            if found != len(sources):
                raise RecordError(f"{found} {IMAGE_TOKEN} placeholder(s) for {len(sources)} image(s)", file=path,
                                  line=line_no, record_id=record_id, field="conversations")
            images = _copy_images(sources, image_root, out_root, file=path, line=line_no, record_id=record_id,
                                  field="image")
            prompts.append(_validated(Prompt, {"id": record_id, "images": images, "turns": turns,
                                               "source": path.name}, file=path, line=line_no, record_id=record_id))
    return prompts


# ---------------------------------------------------------------------------------------------------------------
# VLFeedback release


def _list_of_dicts(value: Any) -> Any:
    """A list of structs as `datasets` may return it: a list of dicts, or (legacy `Sequence` features) a dict of
    equal-length lists. Anything else is returned unchanged for the caller to reject."""
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        length = len(next(iter(value.values())))
        return [{k: v[i] for k, v in value.items()} for i in range(length)]
    return value


def _rating(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # e.g. "N/A": kept as unparsed, never dropped


def import_vlfeedback(
    path: str | Path, out_root: str | Path, image_root: str | Path | None = None, rejects: RejectLog | None = None,
    judge_id: str = "gpt-4v",
) -> tuple[list[Prompt], list[Candidate], list[Annotation]]:
    """The released VLFeedback layout: per instruction `id`, `instruction`, `image` (an image, or a path under
    `image_root`), `models`, and `completions[i] = {model, response, annotations: {aspect: {Rating, Rationale}}}`.

    Gives one Prompt per row, one Candidate per completion and one Annotation per completion (rubric 'vlfeedback',
    the released per-aspect ratings; a rating that is not a number is kept with score None and status 'partial').
    Reads JSON/JSONL files, or an HF dataset (save_to_disk folder, parquet, hub id) when `path` is not a JSON file.
    """
    path, out_root = Path(path), Path(out_root)
    rejects = rejects or RejectLog(None, on_error="raise")
    if path.suffix in (".json", ".jsonl"):
        rows: Iterator[tuple[int, Any]] = _rows(path, rejects)
    else:
        rows = enumerate(open_hf(path))
    prompts, candidates, annotations = [], [], []
    for line, row in rows:
        record_id = str(row.get("id")) if isinstance(row, dict) and row.get("id") is not None else f"row{line}"
        with rejects.guard(row=row if path.suffix in (".json", ".jsonl") else {"id": record_id}):
            for name in ("instruction", "completions"):
                if name not in row:
                    raise RecordError("missing", file=path, record_id=record_id, field=name)
            image = row.get("image", row.get("image_path"))
            if isinstance(image, str):
                if image_root is None:
                    raise RecordError("image is a path; pass image_root", file=path, record_id=record_id,
                                      field="image")
                images = _copy_images([image], Path(image_root), out_root, file=path, line=None,
                                      record_id=record_id, field="image")
            elif image is not None:
                images = [_save_pil(image, out_root, f"images/{record_id}.png", file=path, record_id=record_id,
                                    field="image")]
            else:
                images = []
            text = row["instruction"]
            if images and IMAGE_TOKEN not in text:
                text = f"{IMAGE_TOKEN}\n{text}"  # the release stores the image apart from the text
            prompt = _validated(Prompt, {"id": record_id, "images": images, "turns": [{"role": "user", "text": text}],
                                         "source": "vlfeedback"}, file=path, line=None, record_id=record_id)
            row_candidates, row_annotations = [], []
            for i, completion in enumerate(_list_of_dicts(row["completions"])):
                where = f"completions[{i}]"
                if not isinstance(completion, dict) or "response" not in completion:
                    raise RecordError("expected {model, response, annotations}", file=path, record_id=record_id,
                                      field=where)
                model = str(completion.get("model") or (row.get("models") or [None] * (i + 1))[i] or f"model{i}")
                candidate = Candidate(id=f"{record_id}/{model}/{i}", prompt_id=record_id, model_id=model,
                                      text=completion["response"])
                aspects, raw = {}, completion.get("annotations") or {}
                for aspect, verdict in raw.items():
                    verdict = verdict or {}
                    aspects[aspect] = AspectScore(score=_rating(verdict.get("Rating")),
                                                  rationale=str(verdict.get("Rationale") or ""))
                parsed = [a.score is not None for a in aspects.values()]
                status = "ok" if parsed and all(parsed) else ("partial" if any(parsed) else "failed")
                row_candidates.append(candidate)
                row_annotations.append(Annotation(
                    candidate_id=candidate.id, prompt_id=record_id, judge_id=judge_id, rubric="vlfeedback",
                    aspects=aspects, raw=json.dumps(raw, ensure_ascii=False), parse_status=status,
                ))
            prompts.append(prompt)
            candidates.extend(row_candidates)
            annotations.extend(row_annotations)
    return prompts, candidates, annotations


# ---------------------------------------------------------------------------------------------------------------
# Any HF dataset with image / question columns


def import_hf(
    path: str | Path, out_root: str | Path, image_column: str = "image", question_column: str = "question",
    answer_column: str | None = None, id_column: str | None = None, split: str = "train",
    rejects: RejectLog | None = None,
) -> list[Prompt]:
    """Prompts from a dataset with one image column and a question column (and optionally a reference answer)."""
    out_root = Path(out_root)
    rejects = rejects or RejectLog(None, on_error="raise")
    dataset = open_hf(path, split=split)
    for column in filter(None, (image_column, question_column, answer_column, id_column)):
        if column not in dataset.column_names:
            raise VlprefError(f"{path}: no column {column!r}; columns are {', '.join(dataset.column_names)}")
    prompts = []
    for index, row in enumerate(dataset):
        record_id = str(row[id_column]) if id_column else str(index)
        with rejects.guard(row={k: v for k, v in row.items() if k != image_column}):
            image = row[image_column]
            images = [] if image is None else [_save_pil(image, out_root, f"images/{record_id}.png", file=path,
                                                         record_id=record_id, field=image_column)]
            question = row[question_column]
            if not isinstance(question, str) or not question.strip():
                raise RecordError("empty or not text", file=path, record_id=record_id, field=question_column)
            text = question if IMAGE_TOKEN in question or not images else f"{IMAGE_TOKEN}\n{question}"
            turns = [{"role": "user", "text": text}]
            if answer_column and row[answer_column] is not None:
                turns.append({"role": "assistant", "text": str(row[answer_column])})
            prompts.append(_validated(Prompt, {"id": record_id, "images": images, "turns": turns,
                                               "source": str(path)}, file=Path(str(path)), line=None,
                                      record_id=record_id))
    return prompts


# ---------------------------------------------------------------------------------------------------------------
# TRL's vision formats (reload of exporters.export_trl)


def _turns_from_messages(messages: list[dict]) -> list[Turn]:
    turns = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            text = content
        else:
            # The export splits text at each <image> and keeps every piece verbatim, so joining restores it exactly.
            text = "".join(IMAGE_TOKEN if block["type"] == "image" else block["text"] for block in content)
        turns.append(Turn(role=message["role"], text=text))
    return turns


def import_trl(path: str | Path, out_root: str | Path) -> list[Prompt] | list[PreferencePair]:
    """Reload a TRL vision dataset: preference (`prompt`/`chosen`/`rejected`/`images`) or language modelling
    (`messages`/`images`). Image bytes go to out_root at their stored relative paths (else images/<id>_<i>.png);
    vlpref's extra columns (id, prompt_id, strategy, scores, provenance) are restored when present."""
    from datasets import Image as ImageFeature
    from datasets import List

    out_root = Path(out_root)
    dataset = open_hf(path)
    if "images" in dataset.column_names:
        dataset = dataset.cast_column("images", List(ImageFeature(decode=False)))
    is_pairs = "chosen" in dataset.column_names
    records: list = []
    for index, row in enumerate(dataset):
        record_id = str(row.get("id", index))
        images = []
        paths = row.get("image_paths") or []
        for i, image in enumerate(row.get("images") or []):
            relative = paths[i] if i < len(paths) else f"images/{record_id}_{i}.png"
            images.append(_save_pil(image, out_root, relative, file=path, record_id=record_id, field=f"images[{i}]"))
        extra = {k: json.loads(row[k]) for k in ("chosen_scores", "rejected_scores", "provenance", "meta")
                 if isinstance(row.get(k), str)}
        if is_pairs:
            records.append(PreferencePair(
                id=record_id, prompt_id=row.get("prompt_id") or record_id, images=images,
                turns=_turns_from_messages(row["prompt"]), chosen=_turns_from_messages(row["chosen"])[0].text,
                rejected=_turns_from_messages(row["rejected"])[0].text, strategy=row.get("strategy") or "trl-import",
                **{k: v for k, v in extra.items() if k != "meta"},
            ))
        else:
            records.append(Prompt(id=record_id, images=images, turns=_turns_from_messages(row["messages"]),
                                  source=row.get("source"), meta=extra.get("meta", {})))
    return records
