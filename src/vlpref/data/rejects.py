"""`--on-error raise|skip`: stop at the first bad record, or write each one with its reason and go on.

    >>> log = RejectLog("out/rejects.jsonl")
    >>> with log.guard(row={"id": "q1"}):          # a RecordError inside is written, not raised
    ...     raise RecordError("image file not found", file="in.json", record_id="q1", field="image")
    >>> log.count
    1

Nothing is dropped silently: every skipped row lands in the rejects file with the file, line, record id, field and
reason, and commands print the count at the end.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from vlpref.errors import RecordError

OnError = Literal["raise", "skip"]


class RejectLog:
    """Collects rejected rows. With `on_error="raise"` the first RecordError propagates unchanged."""

    def __init__(self, path: str | Path | None, on_error: OnError = "skip"):
        self.path = Path(path) if path is not None else None
        self.on_error = on_error
        self.count = 0
        self._file = None

    def add(self, error: RecordError, row: Any = None) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        entry = {
            "file": str(error.file) if error.file is not None else None,
            "line": error.line,
            "record_id": error.record_id,
            "field": error.field,
            "reason": error.reason,
            "row": row,
        }
        self._file.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self._file.flush()  # a crash after this point still leaves the reject on disk

    @contextmanager
    def guard(self, row: Any = None):
        """Run a block for one record; on RecordError either re-raise or log it (by `on_error`)."""
        try:
            yield
        except RecordError as error:
            if self.on_error == "raise":
                raise
            self.add(error, row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
