"""Where records live: a dataset folder (JSONL + images) and its Hugging Face `datasets` form.

    >>> from vlpref.data.store import write_records, read_records, save_hf, load_hf
    >>> write_records("data/prompts", "prompts", prompts)          # records.jsonl + meta.json (+ images/)
    >>> prompts = read_records("data/prompts")                      # validated, images checked on request
    >>> save_hf("data/prompts", "data/prompts-arrow")               # Arrow, images embedded as image features
    >>> load_hf("data/prompts-arrow", "data/prompts-again")         # back to a dataset folder

A dataset folder is the working format of every pipeline stage:

    root/
      meta.json        {"kind": "prompts" | "candidates" | "annotations" | "pairs", "format": "vlpref-jsonl", ...}
      records.jsonl    one record per line (the schema in vlpref.data.schema)
      images/          the images the records name, by paths relative to root

JSONL is appendable line by line, so a stage that crashes keeps every record it flushed. The HF form (`save_hf`) is
self-contained: image bytes are embedded (`datasets.Image`), free-form dict fields (`meta`, `provenance`, scores,
`aspects`) are JSON strings so that rows with different keys share one Arrow schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlpref.config import StrictModel
from vlpref.data.images import load_image, place_image, read_image_bytes, resolve_image, write_image_bytes
from vlpref.data.rejects import RejectLog
from vlpref.data.schema import RECORD_TYPES
from vlpref.errors import RecordError, VlprefError

RECORDS_FILE = "records.jsonl"
META_FILE = "meta.json"
FORMAT = "vlpref-jsonl"
IMAGE_FIELDS = ("images", "rejected_images")
JSON_FIELDS = ("meta", "provenance", "chosen_scores", "rejected_scores", "aspects")


def kind_of(record: StrictModel) -> str:
    for kind, cls in RECORD_TYPES.items():
        if isinstance(record, cls):
            return kind
    raise TypeError(f"not a vlpref record: {type(record).__name__}")


# Which command makes each kind, for the message when a folder of another kind is given.
MADE_BY = {"prompts": "vlpref data import or vlpref world generate", "candidates": "vlpref sample",
           "annotations": "vlpref judge", "pairs": "vlpref pairs"}


def read_meta(root: str | Path, kind: str | None = None) -> dict[str, Any]:
    """A dataset folder's meta.json; VlprefError naming the folder if it is missing, broken, or (with `kind`)
    holds another kind of record."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise VlprefError(f"{root}: not a vlpref dataset folder (no {META_FILE}); import the data first")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise VlprefError(f"{path}: not valid JSON ({error}); rewrite it or rebuild the folder") from None
    if not isinstance(meta, dict):
        raise VlprefError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("kind") not in RECORD_TYPES:
        raise VlprefError(f"{path}: unknown kind {meta.get('kind')!r}; expected one of {', '.join(RECORD_TYPES)}")
    if kind is not None and meta["kind"] != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise VlprefError(f"{root}: holds {meta['kind']}, not {kind}; give {article} {kind} folder "
                          f"({MADE_BY[kind]} writes one)")
    return meta


class RecordWriter:
    """Appends records to a dataset folder, one flushed line each (crash-safe: a line is written whole or not)."""

    def __init__(
        self, root: str | Path, kind: str, append: bool = False, images_from: str | Path | None = None, **meta: Any
    ):
        """`images_from`: the root of the dataset the records' images live in now; each image a record names is
        placed (hard-linked, else copied) at the same relative path under `root`, keeping the folder self-contained.
        """
        if kind not in RECORD_TYPES:
            raise ValueError(f"unknown record kind {kind!r}")
        self.root, self.kind = Path(root), kind
        self.images_from = Path(images_from) if images_from is not None else None
        if append and (self.root / META_FILE).is_file() and read_meta(self.root)["kind"] != kind:
            raise VlprefError(f"{self.root} holds {read_meta(self.root)['kind']}; cannot append {kind}")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / META_FILE).write_text(json.dumps({"kind": kind, "format": FORMAT, **meta}, indent=2) + "\n")
        self._file = (self.root / RECORDS_FILE).open("a" if append else "w", encoding="utf-8")
        self.count = 0

    def write(self, record: StrictModel) -> None:
        if kind_of(record) != self.kind:
            raise TypeError(f"{self.root} holds {self.kind}, not {kind_of(record)}")
        if self.images_from is not None and self.images_from.resolve() != self.root.resolve():
            for name in IMAGE_FIELDS:
                for i, relative in enumerate(getattr(record, name, None) or []):
                    try:
                        place_image(resolve_image(self.images_from, relative), self.root, relative)
                    except (ValueError, OSError) as error:
                        raise RecordError(str(error), file=self.root / RECORDS_FILE, record_id=record.id,
                                          field=f"{name}[{i}]") from None
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_records(
    root: str | Path, kind: str, records: Iterable[StrictModel], images_from: str | Path | None = None, **meta: Any
) -> int:
    """Write all `records` to a dataset folder (replacing its records); returns the count. See RecordWriter."""
    with RecordWriter(root, kind, images_from=images_from, **meta) as writer:
        for record in records:
            writer.write(record)
        return writer.count


def _field_of(error: ValidationError) -> str:
    first = error.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "(record)"


def _reason_of(error: ValidationError) -> str:
    return "; ".join(
        ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
        + (f" ({'.'.join(map(str, e['loc']))})" if e["loc"] else "")
        for e in error.errors()
    )


def check_images(root: str | Path, record: StrictModel, file: str | Path) -> None:
    """Open every image a record names (RecordError if one is missing, corrupt or outside the root)."""
    for name in IMAGE_FIELDS:
        for i, relative in enumerate(getattr(record, name, None) or []):
            load_image(root, relative, file=file, record_id=record.id if hasattr(record, "id") else None,
                       field=f"{name}[{i}]")


def iter_records(
    root: str | Path, rejects: RejectLog | None = None, check_image_files: bool = False, kind: str | None = None
) -> Iterator[StrictModel]:
    """Validated records of a dataset folder, in file order. Bad rows raise RecordError (file, line, id, field),
    or are written to `rejects` when it is in skip mode. `kind`: the kind the caller needs (VlprefError if the
    folder holds another)."""
    root = Path(root)
    cls = RECORD_TYPES[read_meta(root, kind)["kind"]]
    path = root / RECORDS_FILE
    if not path.is_file():
        raise VlprefError(f"{root}: no {RECORDS_FILE}; the folder is incomplete (rebuild it)")
    rejects = rejects or RejectLog(None, on_error="raise")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = None
            with rejects.guard(row=line.rstrip("\n")):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"not valid JSON: {error.msg} at column {error.colno}", file=path,
                                      line=line_no) from None
                record_id = row.get("id") if isinstance(row, dict) else None
                if not isinstance(row, dict):
                    raise RecordError(f"expected a JSON object, got {type(row).__name__}", file=path, line=line_no)
                try:
                    parsed = cls.model_validate(row)
                except ValidationError as error:
                    raise RecordError(_reason_of(error), file=path, line=line_no, record_id=record_id,
                                      field=_field_of(error)) from None
                if check_image_files:
                    try:
                        check_images(root, parsed, path)
                    except RecordError as error:
                        raise RecordError(error.reason, file=path, line=line_no, record_id=error.record_id,
                                          field=error.field) from None
                record = parsed  # only a record that passed every check is yielded
            if record is not None:
                yield record


def read_records(root: str | Path, rejects: RejectLog | None = None, check_image_files: bool = False,
                 kind: str | None = None) -> list:
    return list(iter_records(root, rejects, check_image_files, kind))


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets form


def _hf_features(kind: str):
    from datasets import Image, List

    return {name: List(Image()) for name in IMAGE_FIELDS if name in RECORD_TYPES[kind].model_fields}


def records_to_hf(records: list[StrictModel], root: str | Path, kind: str):
    """An in-memory `datasets.Dataset` of `records`, with image bytes read from `root` and embedded."""
    from datasets import Dataset

    rows = []
    for record in records:
        row = record.model_dump(mode="json")
        for name in IMAGE_FIELDS:
            if name not in row:
                continue
            # The image feature keeps only a base name, so the relative paths get a column of their own. It is
            # written for every row (None when absent): Dataset.from_list takes its columns from the first row.
            row[f"{name}_paths"] = row[name]
            if row[name] is not None:
                row[name] = [
                    {"bytes": read_image_bytes(root, p, file=root / RECORDS_FILE, record_id=row.get("id"),
                                               field=f"{name}[{i}]"), "path": p}
                    for i, p in enumerate(row[name])
                ]
        for name in JSON_FIELDS:
            if name in row:
                row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
        rows.append(row)
    dataset = Dataset.from_list(rows)
    for name, feature in _hf_features(kind).items():
        dataset = dataset.cast_column(name, feature)
    return dataset.add_column("_kind", [kind] * len(rows)) if rows else dataset


def hf_to_records(dataset, out_root: str | Path, kind: str | None = None) -> list[StrictModel]:
    """Records from a `datasets.Dataset` written by `records_to_hf`; image bytes go to `out_root` at their paths."""
    from datasets import Image, List

    out_root = Path(out_root)
    if kind is None:
        kinds = set(dataset["_kind"]) if "_kind" in dataset.column_names else set()
        if len(kinds) != 1:
            raise VlprefError("cannot tell the record kind of this dataset; pass it explicitly")
        kind = kinds.pop()
    cls = RECORD_TYPES[kind]
    for name in IMAGE_FIELDS:
        if name in dataset.column_names:
            dataset = dataset.cast_column(name, List(Image(decode=False)))
    records = []
    for index, row in enumerate(dataset):
        known_paths = {name: row.get(f"{name}_paths") or [] for name in IMAGE_FIELDS}
        row = {k: v for k, v in row.items() if k in cls.model_fields}
        for name in JSON_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
        for name in IMAGE_FIELDS:
            if row.get(name) is None:
                continue
            paths = []
            for i, image in enumerate(row[name]):
                known = known_paths[name]
                relative = known[i] if i < len(known) else f"images/{row.get('id', index)}_{name}_{i}.png"
                if not image.get("bytes"):
                    raise RecordError("image has no embedded bytes", file=f"row {index}", record_id=row.get("id"),
                                      field=f"{name}[{i}]")
                try:  # confined to out_root; never overwrites a different image
                    paths.append(write_image_bytes(image["bytes"], out_root, relative))
                except ValueError as error:
                    raise RecordError(str(error), file=f"row {index}", record_id=row.get("id"),
                                      field=f"{name}[{i}]") from None
            row[name] = paths
        try:
            records.append(cls.model_validate(row))
        except ValidationError as error:
            raise RecordError(_reason_of(error), record_id=row.get("id"), field=_field_of(error),
                              file=f"row {index}") from None
    return records


HF_FORMATS = ("arrow", "parquet")


def check_hf_format(fmt: str) -> None:
    if fmt not in HF_FORMATS:
        raise VlprefError(f"unknown format {fmt!r}; use {' or '.join(HF_FORMATS)}")


def write_hf(dataset, out: str | Path, fmt: str) -> None:
    """Write a `datasets.Dataset`: `arrow` (save_to_disk folder) or `parquet` (one file, out/data.parquet)."""
    check_hf_format(fmt)
    out = Path(out)
    if fmt == "arrow":
        dataset.save_to_disk(str(out))
    else:
        out.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(out / "data.parquet"))


def save_hf(root: str | Path, out: str | Path, fmt: str = "arrow") -> int:
    """Convert a dataset folder to HF form (see `write_hf`); returns the count."""
    check_hf_format(fmt)
    root = Path(root)
    dataset = records_to_hf(read_records(root), root, read_meta(root)["kind"])
    write_hf(dataset, out, fmt)
    return len(dataset)


def open_hf(path: str | Path, split: str = "train"):
    """A `datasets.Dataset` from a save_to_disk folder, a parquet/json(l) file or folder, or a hub id."""
    import datasets

    path = Path(path)
    if any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    suffixes = (".parquet", ".json", ".jsonl")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in suffixes)
    if files:
        builder = "parquet" if files[0].suffix == ".parquet" else "json"
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    if path.exists():
        raise VlprefError(f"{path}: no dataset found (expected save_to_disk output, parquet or json files)")
    return datasets.load_dataset(str(path), split=split)  # a hub id: needs network or a warm HF cache


def load_hf(path: str | Path, out_root: str | Path, kind: str | None = None) -> int:
    """Convert HF form back to a dataset folder at `out_root`; returns the count."""
    records = hf_to_records(open_hf(path), out_root, kind)
    if kind is None:
        if not records:
            raise VlprefError(f"{path}: no records, so no kind to give the dataset folder")
        kind = kind_of(records[0])
    return write_records(out_root, kind, records)
