"""What the viewer reads: a pairs folder as a memory-mapped Arrow file, filtered and paged without loading the
dataset into memory; the annotations behind each pair; word-level diffs.

    >>> index = PairIndex.open("runs/vlfeedback/pairs")            # builds the Arrow index once, then reuses it
    >>> rows, total = index.page(Filters(strategy="vlfeedback-mean", min_margin=1.0, search="dog"), page=0, size=50)

The index is an Arrow IPC file written by streaming the JSONL records in batches (memory stays flat however large
the dataset), cached under ~/.cache/vlpref/view keyed by the records file's path, size and modification time, and
opened with `pyarrow.memory_map`: a filter reads only the columns it tests (Arrow compute, vectorised), and a page
takes the matching rows' slices. 400k pairs index in well under a minute and page in milliseconds.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

BATCH = 20_000
SCHEMA = pa.schema([
    ("row", pa.int64()), ("id", pa.string()), ("prompt_id", pa.string()), ("strategy", pa.string()),
    ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()), ("images", pa.string()),
    ("rejected_images", pa.string()), ("chosen_scores", pa.string()), ("rejected_scores", pa.string()),
    ("margin", pa.float64()), ("provenance", pa.string()), ("chosen_candidate", pa.string()),
    ("rejected_candidate", pa.string()), ("parse_failed", pa.bool_()),
])
ANNOTATION_SCHEMA = pa.schema([("candidate_id", pa.string()), ("judge_id", pa.string()), ("rubric", pa.string()),
                               ("aspects", pa.string()), ("raw", pa.string()), ("parse_status", pa.string())])


def cache_dir() -> Path:
    return Path(os.environ.get("VLPREF_VIEW_CACHE", Path.home() / ".cache" / "vlpref" / "view"))


def _stamp(path: Path, *more: str) -> str:
    """Names the index of `path`'s current contents: a rewrite changes the size, mtime, ctime or inode."""
    stat = path.stat()
    parts = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, 3, *more]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:20]


def _records(path: Path):
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg})") from None


def _write(target: Path, schema: pa.Schema, rows) -> None:
    """Stream `rows` (dicts) into an Arrow IPC file, BATCH rows at a time; atomic (written, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) == BATCH:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
    except BaseException:  # a bad record: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    tmp.rename(target)


def _open(path: Path) -> pa.Table:
    return ipc.open_file(pa.memory_map(str(path), "r")).read_all()  # zero-copy: pages come from the mapped file


def _mean(scores: dict) -> float | None:
    values = [v for v in scores.values() if isinstance(v, int | float)]
    return sum(values) / len(values) if values else None


@dataclass
class Filters:
    strategy: str | None = None
    min_margin: float | None = None
    parse_failures: bool = False
    search: str | None = None


class PairIndex:
    """A pairs folder (records.jsonl + meta.json + images/), indexed; with its annotations when meta.json names
    an annotations folder that exists."""

    def __init__(self, root: Path, table: pa.Table, annotations: pa.Table | None):
        self.root, self.table, self.annotations = root, table, annotations

    @classmethod
    def open(cls, root: str | Path, log=print) -> PairIndex:
        root = Path(root)
        records = root / "records.jsonl"
        meta = json.loads((root / "meta.json").read_text()) if (root / "meta.json").is_file() else {}
        if meta.get("kind") not in (None, "pairs") or not records.is_file():
            raise ValueError(f"{root}: not a pairs folder (records.jsonl with kind 'pairs' in meta.json)")
        annotations_dir = Path(meta["annotations"]) if meta.get("annotations") else None
        annotations = None
        status: dict[str, str] = {}
        annotations_stamp = "none"
        if annotations_dir is not None and (annotations_dir / "records.jsonl").is_file():
            source = annotations_dir / "records.jsonl"
            annotations_stamp = _stamp(source)
            target = cache_dir() / f"annotations-{annotations_stamp}.arrow"
            if not target.is_file():
                log(f"indexing {source}")
                _write(target, ANNOTATION_SCHEMA, (
                    {"candidate_id": a.get("candidate_id"), "judge_id": a.get("judge_id"), "rubric": a.get("rubric"),
                     "aspects": json.dumps(a.get("aspects") or {}), "raw": a.get("raw"),
                     "parse_status": a.get("parse_status")} for a in _records(source)))
            annotations = _open(target)
            # only the statuses that are not "ok": small even for a large dataset
            failed = pc.not_equal(annotations["parse_status"], "ok")
            picked = annotations.filter(pc.fill_null(failed, False))
            status = dict(zip(picked["candidate_id"].to_pylist(), picked["parse_status"].to_pylist(), strict=True))
        # the parse-failure flags come from the annotations: a re-annotation makes a new index
        target = cache_dir() / f"pairs-{_stamp(records, annotations_stamp)}.arrow"
        if not target.is_file():
            log(f"indexing {records}")
            _write(target, SCHEMA, (_pair_row(i, r, status) for i, r in enumerate(_records(records))))
        return cls(root, _open(target), annotations)

    def strategies(self) -> list[str]:
        return sorted(s for s in pc.unique(self.table["strategy"]).to_pylist() if s is not None)

    def __len__(self) -> int:
        return self.table.num_rows

    def select(self, filters: Filters) -> pa.Array | None:
        """Row numbers matching `filters` (None: every row). Only the tested columns are read; no row is copied."""
        table = self.table
        mask = None

        def both(condition):
            nonlocal mask
            condition = pc.fill_null(condition, False)
            mask = condition if mask is None else pc.and_(mask, condition)

        if filters.strategy:
            both(pc.equal(table["strategy"], filters.strategy))
        if filters.min_margin is not None:
            both(pc.greater_equal(table["margin"], filters.min_margin))
        if filters.parse_failures:
            both(table["parse_failed"])
        if filters.search:
            # a literal, case-insensitive substring of the prompt or either response
            hits = [pc.match_substring(table[c], filters.search, ignore_case=True)
                    for c in ("prompt", "chosen", "rejected")]
            both(pc.or_(pc.or_(hits[0], hits[1]), hits[2]))
        return None if mask is None else pc.indices_nonzero(mask)

    def page(self, filters: Filters, page: int, size: int) -> tuple[list[dict], int]:
        """The rows of one page (0-based) and the number of matching rows; only the page's rows are read."""
        rows = self.select(filters)
        if rows is None:
            return self.table.slice(page * size, size).to_pylist(), self.table.num_rows
        return self.table.take(rows.slice(page * size, size)).to_pylist(), len(rows)

    def row(self, row: int) -> dict | None:
        if not 0 <= row < self.table.num_rows:
            return None
        return self.table.slice(row, 1).to_pylist()[0]

    def annotation(self, candidate_id: str | None) -> dict | None:
        if self.annotations is None or not candidate_id:
            return None
        found = self.annotations.filter(pc.equal(self.annotations["candidate_id"], candidate_id))
        if not found.num_rows:
            return None
        record = found.slice(0, 1).to_pylist()[0]
        record["aspects"] = json.loads(record["aspects"])
        return record


def _pair_row(i: int, r: dict, status: dict[str, str]) -> dict:
    provenance = r.get("provenance") or {}
    chosen_scores, rejected_scores = r.get("chosen_scores") or {}, r.get("rejected_scores") or {}
    high, low = _mean(chosen_scores), _mean(rejected_scores)
    prompt = "\n\n".join(f"{t.get('role')}: {t.get('text', '')}" for t in r.get("turns") or [])
    chosen_c = provenance.get("chosen") if isinstance(provenance.get("chosen"), str) else None
    rejected_c = provenance.get("rejected") if isinstance(provenance.get("rejected"), str) else None
    return {"row": i, "id": r.get("id"), "prompt_id": r.get("prompt_id"), "strategy": r.get("strategy"),
            "prompt": prompt, "chosen": r.get("chosen"), "rejected": r.get("rejected"),
            "images": json.dumps(r.get("images") or []),
            "rejected_images": json.dumps(r["rejected_images"]) if r.get("rejected_images") else None,
            "chosen_scores": json.dumps(chosen_scores), "rejected_scores": json.dumps(rejected_scores),
            "margin": high - low if high is not None and low is not None else None,
            "provenance": json.dumps(provenance), "chosen_candidate": chosen_c, "rejected_candidate": rejected_c,
            "parse_failed": chosen_c in status or rejected_c in status}


WORD = re.compile(r"\S+|\s+")


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """[(kind, text)], kind 'same' / 'old' (only in `old`) / 'new' (only in `new`), word by word.

    >>> word_diff("a red circle", "a blue circle")
    [('same', 'a '), ('old', 'red'), ('new', 'blue'), ('same', ' circle')]
    """
    a, b = WORD.findall(old or ""), WORD.findall(new or "")
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[i1:i2])))
        else:
            if i2 > i1:
                out.append(("old", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("new", "".join(b[j1:j2])))
    return out
