"""Errors a user can act on. The CLI prints their message alone (no traceback) and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class VlprefError(Exception):
    """Base class: something about the user's input or setup, explained in the message."""


class ConfigError(VlprefError):
    """A config file or option is invalid (unknown key, wrong type, missing file)."""


class RecordError(VlprefError):
    """One input record is bad. The message names the file, the record (id, else line number) and the field.

        >>> str(RecordError("bad image", file="data/train.jsonl", line=3, record_id="q7", field="images[0]"))
        'data/train.jsonl:3: record q7, field images[0]: bad image'
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        record_id: str | None = None,
        field: str | None = None,
    ):
        self.reason, self.file, self.line, self.record_id, self.field = reason, file, line, record_id, field
        where = f"{file}" if file is not None else "<input>"
        if line is not None:
            where += f":{line}"
        parts = [where]
        if record_id is not None:
            parts.append(f"record {record_id}")
        if field is not None:
            parts.append(f"field {field}")
        super().__init__(f"{parts[0]}: " + ", ".join(parts[1:]) + (": " if len(parts) > 1 else "") + reason)


class UnsupportedModelError(VlprefError):
    """The model's architecture is not one the VLM layer supports."""
