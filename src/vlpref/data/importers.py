"""Bring outside data into vlpref records: LLaVA conversation JSON, the VLFeedback release, any HF image/question
dataset, and TRL's vision formats (to reload what `exporters` wrote).

    >>> from vlpref.data.importers import import_llava
    >>> prompts = import_llava("llava_instruct.json", image_root="coco", out_root="data/prompts")
    >>> write_records("data/prompts", "prompts", prompts)

Rules every importer follows:
- Source image paths are resolved inside `image_root` only; the images used are placed inside `out_root` (hard links
  where possible), so the result is a self-contained dataset folder.
- Images stored in a dataset (HF image features) are read from their embedded bytes only, never from the path a cell
  may carry instead: a crafted dataset cannot make vlpref copy an arbitrary local file. Bytes are kept as they are.
- Each row runs under `_row_errors`, so a malformed structure (a string where a dict belongs, a null response …)
  becomes a RecordError naming file, line and record, which `--on-error skip` logs like any other bad row.
- Record ids must be unique within an import.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from vlpref.data.images import load_image, place_image, resolve_image, write_image_bytes
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import IMAGE_TOKEN, Annotation, AspectScore, Candidate, PreferencePair, Prompt, Turn
from vlpref.data.store import open_hf
from vlpref.errors import RecordError, VlprefError

LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@contextmanager
def _row_errors(file: str | Path, line: int | None, record_id: str | None):
    """Turn any error from a malformed row into a RecordError that names the row (RecordErrors pass through)."""
    try:
        yield
    except RecordError:
        raise
    except ValidationError as error:
        first = error.errors()[0]
        raise RecordError(first["msg"], file=file, line=line, record_id=record_id,
                          field=".".join(map(str, first["loc"])) or None) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise RecordError(f"malformed record ({type(error).__name__}: {error})", file=file, line=line,
                          record_id=record_id) from None


def _rows(path: Path, rejects: RejectLog) -> Iterator[tuple[int | None, Any]]:
    """(line number or None, row) from a JSONL file or a JSON list file. In skip mode a malformed JSONL line is
    logged and reading goes on; a JSON list file that does not parse is one error for the whole file."""
    if path.suffix != ".jsonl":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise RecordError(f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                              file=path) from None
        if not isinstance(rows, list):
            raise RecordError("expected a JSON list of records", file=path)
        yield from ((None, row) for row in rows)
        return
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            with rejects.guard(row=line.rstrip("\n")):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"not valid JSON: {error.msg} at column {error.colno}", file=path,
                                      line=line_no) from None
                yield line_no, row


def _record_id(row: Any, index: int) -> str:
    return str(row["id"]) if isinstance(row, dict) and row.get("id") is not None else f"row{index}"


class _UniqueIds:
    """Refuses a second record with an id already imported (later stages key everything by id)."""

    def __init__(self):
        self.seen: set[str] = set()

    def check(self, record_id: str, file, line) -> None:
        if record_id in self.seen:
            raise RecordError("duplicate id", file=file, line=line, record_id=record_id, field="id")
        self.seen.add(record_id)


def _copy_images(paths: Any, image_root: Path, out_root: Path, *, file: Path, line, record_id: str,
                 field: str) -> list[str]:
    """Check each source image opens, then place it at out_root/images/<its path under image_root>."""
    indexed = not isinstance(paths, str)  # a list of paths names each as field[i]
    paths = [paths] if isinstance(paths, str) else paths
    placed = []
    for i, relative in enumerate(paths):
        where = f"{field}[{i}]" if indexed else field
        try:
            load_image(image_root, relative, file=file, record_id=record_id, field=where)
            source = resolve_image(image_root, relative)
            clean = source.relative_to(image_root.resolve()).as_posix()  # "a/../b.png" -> "b.png"
            placed.append(place_image(source, out_root, f"images/{clean}"))
        except RecordError as error:
            raise RecordError(error.reason, file=file, line=line, record_id=record_id, field=where) from None
        except ValueError as error:
            raise RecordError(str(error), file=file, line=line, record_id=record_id, field=where) from None
    return placed


def _embedded_image(cell: Any, out_root: Path, stem: str, *, file, line, record_id: str, field: str,
                    relative: str | None = None) -> str:
    """Write an image cell's embedded bytes to out_root/`relative`, else out_root/images/<stem>.<format>, after
    checking they decode.

    `cell` is an HF image cell read with `decode=False`: {"bytes": ..., "path": ...}. A cell with only a path is
    refused: following it would read an arbitrary local file named by the data.
    """
    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise RecordError("image has no embedded bytes (cells that only name a file path are not followed)",
                          file=file, line=line, record_id=record_id, field=field)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            suffix = (image.format or "png").lower().replace("jpeg", "jpg")
        return write_image_bytes(data, out_root, relative or f"images/{stem}.{suffix}")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise RecordError(f"cannot read image: {error}", file=file, line=line, record_id=record_id,
                          field=field) from None
    except ValueError as error:
        raise RecordError(str(error), file=file, line=line, record_id=record_id, field=field) from None


def _hf_rows(path: str | Path, image_columns: list[str], split: str = "train") -> Iterator[tuple[int, dict]]:
    """Rows of an HF dataset with its image columns left undecoded ({"bytes", "path"} cells)."""
    from datasets import Image as ImageFeature
    from datasets import List

    dataset = open_hf(path, split=split)
    for column in image_columns:
        if column in dataset.column_names:
            feature = dataset.features[column]
            undecoded = List(ImageFeature(decode=False)) if isinstance(feature, List) else ImageFeature(decode=False)
            dataset = dataset.cast_column(column, undecoded)
    yield from enumerate(dataset)


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
    ids, prompts = _UniqueIds(), []
    for index, (line, row) in enumerate(_rows(path, rejects)):
        record_id = _record_id(row, line or index)
        with rejects.guard(row=row), _row_errors(path, line, record_id):
            if not isinstance(row, dict):
                raise RecordError("expected a JSON object", file=path, line=line, record_id=record_id)
            ids.check(record_id, path, line)
            conversations = row.get("conversations")
            if not isinstance(conversations, list) or not conversations:
                raise RecordError("missing or empty list", file=path, line=line, record_id=record_id,
                                  field="conversations")
            turns = []
            for i, message in enumerate(conversations):
                if not isinstance(message, dict):
                    raise RecordError('expected {"from": ..., "value": ...}', file=path, line=line,
                                      record_id=record_id, field=f"conversations[{i}]")
                speaker = message.get("from")
                role = LLAVA_ROLES.get(speaker) if isinstance(speaker, str) else None
                if role is None:
                    raise RecordError(f"unknown speaker {speaker!r}; expected one of {', '.join(LLAVA_ROLES)}",
                                      file=path, line=line, record_id=record_id, field=f"conversations[{i}].from")
                if not isinstance(message.get("value"), str):
                    raise RecordError("expected text", file=path, line=line, record_id=record_id,
                                      field=f"conversations[{i}].value")
                turns.append(Turn(role=role, text=message["value"]))
            sources = row.get("image") or []
            if not (isinstance(sources, str) or (isinstance(sources, list) and all(isinstance(p, str)
                                                                                  for p in sources))):
                raise RecordError("expected an image path or a list of paths", file=path, line=line,
                                  record_id=record_id, field="image")
            found = sum(t.text.count(IMAGE_TOKEN) for t in turns)
            count = 1 if isinstance(sources, str) else len(sources)
            if found != count:
                raise RecordError(f"{found} {IMAGE_TOKEN} placeholder(s) for {count} image(s)", file=path,
                                  line=line, record_id=record_id, field="conversations")
            images = _copy_images(sources, image_root, out_root, file=path, line=line, record_id=record_id,
                                  field="image")
            prompts.append(Prompt(id=record_id, images=images, turns=turns, source=path.name))
    return prompts


# ---------------------------------------------------------------------------------------------------------------
# VLFeedback release


def _rating(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # e.g. "N/A": kept as unparsed, never dropped


def _list_of_dicts(value: Any) -> Any:
    """A list of structs as `datasets` may return it: a list of dicts, or (legacy `Sequence` features) a dict of
    equal-length lists. Anything else is returned unchanged for the caller to reject."""
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        length = len(next(iter(value.values())))
        return [{k: v[i] for k, v in value.items()} for i in range(length)]
    return value


def import_vlfeedback(
    path: str | Path, out_root: str | Path, image_root: str | Path | None = None, rejects: RejectLog | None = None,
    judge_id: str = "gpt-4v",
) -> tuple[list[Prompt], list[Candidate], list[Annotation]]:
    """The released VLFeedback layout: per instruction `id`, `instruction`, `image` (an embedded image, or a path
    under `image_root`; `image_path` is read too), `models`, and
    `completions[i] = {model, response, annotations: {aspect: {Rating, Rationale}}}`.

    Gives one Prompt per row, one Candidate per completion and one Annotation per completion (rubric 'vlfeedback',
    the released per-aspect ratings; a rating that is not a number is kept with score None and status 'partial').
    Reads JSON/JSONL files, or an HF dataset (save_to_disk folder, parquet, hub id) when `path` is not a JSON file.
    """
    path, out_root = Path(path), Path(out_root)
    rejects = rejects or RejectLog(None, on_error="raise")
    from_json = path.suffix in (".json", ".jsonl")
    rows = _rows(path, rejects) if from_json else ((None, r) for _, r in _hf_rows(path, ["image"]))
    ids = _UniqueIds()
    prompts, candidates, annotations = [], [], []
    for index, (line, row) in enumerate(rows):
        record_id = _record_id(row, line or index)
        with rejects.guard(row=row if from_json else {"id": record_id}), _row_errors(path, line, record_id):
            if not isinstance(row, dict):
                raise RecordError("expected a JSON object", file=path, line=line, record_id=record_id)
            ids.check(record_id, path, line)
            for name in ("instruction", "completions"):
                if name not in row:
                    raise RecordError("missing", file=path, line=line, record_id=record_id, field=name)
            image = row.get("image") if row.get("image") is not None else row.get("image_path")
            if image is not None and not isinstance(image, str | dict):
                raise RecordError("expected an image or a path", file=path, line=line, record_id=record_id,
                                  field="image")
            if isinstance(image, str):
                if image_root is None:
                    raise RecordError("image is a path; pass image_root", file=path, line=line,
                                      record_id=record_id, field="image")
                images = _copy_images(image, Path(image_root), out_root, file=path, line=line,
                                      record_id=record_id, field="image")
            elif image is not None:
                images = [_embedded_image(image, out_root, record_id, file=path, line=line, record_id=record_id,
                                          field="image")]
            else:
                images = []
            text = row["instruction"]
            if not isinstance(text, str):
                raise RecordError("expected text", file=path, line=line, record_id=record_id, field="instruction")
            if images and IMAGE_TOKEN not in text:
                text = f"{IMAGE_TOKEN}\n{text}"  # the release stores the image apart from the text
            prompt = Prompt(id=record_id, images=images, turns=[Turn(role="user", text=text)], source="vlfeedback")
            completions = _list_of_dicts(row["completions"])
            if not isinstance(completions, list):
                raise RecordError("expected a list", file=path, line=line, record_id=record_id, field="completions")
            models = row.get("models") or []
            row_candidates, row_annotations = [], []
            for i, completion in enumerate(completions):
                where = f"completions[{i}]"
                if not isinstance(completion, dict) or not isinstance(completion.get("response"), str):
                    raise RecordError("expected {model, response: text, annotations}", file=path, line=line,
                                      record_id=record_id, field=where)
                model = str(completion.get("model") or (models[i] if i < len(models) else None) or f"model{i}")
                candidate = Candidate(id=f"{record_id}/{model}/{i}", prompt_id=record_id, model_id=model,
                                      text=completion["response"])
                raw = completion.get("annotations") or {}
                if not isinstance(raw, dict) or not all(isinstance(v, dict | None) for v in raw.values()):
                    raise RecordError("expected {aspect: {Rating, Rationale}}", file=path, line=line,
                                      record_id=record_id, field=f"{where}.annotations")
                aspects = {
                    aspect: AspectScore(score=_rating((verdict or {}).get("Rating")),
                                        rationale=str((verdict or {}).get("Rationale") or ""))
                    for aspect, verdict in raw.items()
                }
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
    columns = open_hf(path, split=split).column_names
    for column in filter(None, (image_column, question_column, answer_column, id_column)):
        if column not in columns:
            raise VlprefError(f"{path}: no column {column!r}; columns are {', '.join(columns)}")
    ids, prompts = _UniqueIds(), []
    for index, row in _hf_rows(path, [image_column], split):
        record_id = str(row[id_column]) if id_column else str(index)
        with rejects.guard(row={k: v for k, v in row.items() if k != image_column}), \
                _row_errors(path, None, record_id):
            ids.check(record_id, path, None)
            image = row[image_column]
            images = [] if image is None else [_embedded_image(image, out_root, f"{index:08d}", file=path, line=None,
                                                               record_id=record_id, field=image_column)]
            question = row[question_column]
            if not isinstance(question, str) or not question.strip():
                raise RecordError("empty or not text", file=path, record_id=record_id, field=question_column)
            text = question if IMAGE_TOKEN in question or not images else f"{IMAGE_TOKEN}\n{question}"
            turns = [Turn(role="user", text=text)]
            if answer_column and row[answer_column] is not None:
                turns.append(Turn(role="assistant", text=str(row[answer_column])))
            prompts.append(Prompt(id=record_id, images=images, turns=turns, source=str(path)))
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


def _single_response(messages: list[dict], field: str, file, record_id: str) -> str:
    turns = _turns_from_messages(messages)
    if len(turns) != 1 or turns[0].role != "assistant":
        raise RecordError("expected exactly one assistant message", file=file, record_id=record_id, field=field)
    return turns[0].text


def import_trl(path: str | Path, out_root: str | Path, rejects: RejectLog | None = None):
    """Reload a TRL vision dataset: preference (`prompt`/`chosen`/`rejected`/`images`) or language modelling
    (`messages`/`images`) -> pairs or prompts. Images are written from their embedded bytes at their stored relative
    paths (`image_paths`, else images/<id>_<i>.<format>); vlpref's extra columns (id, prompt_id, strategy, scores,
    provenance) are restored when present."""
    out_root = Path(out_root)
    rejects = rejects or RejectLog(None, on_error="raise")
    ids, records = _UniqueIds(), []
    for index, row in _hf_rows(path, ["images"]):
        record_id = str(row.get("id") or index)
        with rejects.guard(row={"id": record_id}), _row_errors(path, None, record_id):
            ids.check(record_id, path, None)
            known = row.get("image_paths") or []
            images = []
            for i, cell in enumerate(row.get("images") or []):
                images.append(_embedded_image(cell, out_root, f"{record_id}_{i}", file=path, line=None,
                                              record_id=record_id, field=f"images[{i}]",
                                              relative=known[i] if i < len(known) else None))
            extra = {k: json.loads(row[k]) for k in ("chosen_scores", "rejected_scores", "provenance", "meta")
                     if isinstance(row.get(k), str)}
            if "chosen" in row:
                records.append(PreferencePair(
                    id=record_id, prompt_id=row.get("prompt_id") or record_id, images=images,
                    turns=_turns_from_messages(row["prompt"]),
                    chosen=_single_response(row["chosen"], "chosen", path, record_id),
                    rejected=_single_response(row["rejected"], "rejected", path, record_id),
                    strategy=row.get("strategy") or "trl-import",
                    **{k: v for k, v in extra.items() if k != "meta"},
                ))
            else:
                records.append(Prompt(id=record_id, images=images, turns=_turns_from_messages(row["messages"]),
                                      source=row.get("source"), meta=extra.get("meta", {})))
    return records
