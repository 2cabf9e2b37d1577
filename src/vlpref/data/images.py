"""Image paths inside a dataset root, and loading them with errors that name the record.

    >>> path = resolve_image("data/pairs", "images/q1.png")      # data/pairs/images/q1.png, absolute
    >>> resolve_image("data/pairs", "../../etc/passwd")
    Traceback (most recent call last):
    ValueError: image path '../../etc/passwd' leaves the dataset root data/pairs

A dataset's records name images relative to its root, and nothing outside that root is ever read: a crafted record
cannot make vlpref (or the viewer that serves these images) read arbitrary files. Symlinks are resolved before the
check, so a link pointing out of the root is refused too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vlpref.errors import RecordError


def resolve_image(root: str | Path, relative: str) -> Path:
    """Absolute path of `relative` under `root`; ValueError if it is absolute or escapes the root."""
    if not relative or Path(relative).is_absolute():
        raise ValueError(f"image path {relative!r} must be relative to the dataset root {root}")
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"image path {relative!r} leaves the dataset root {root}")
    return path


def load_image(root: str | Path, relative: str, *, file: str | Path, record_id: str, field: str) -> Image.Image:
    """Open an image as RGB, or raise RecordError naming the record and field (missing, corrupt, outside root)."""
    try:
        path = resolve_image(root, relative)
    except ValueError as error:
        raise RecordError(str(error), file=file, record_id=record_id, field=field) from None
    if not path.is_file():
        raise RecordError(f"image file not found: {path}", file=file, record_id=record_id, field=field)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later inside a training step
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise RecordError(f"cannot read image {path}: {error}", file=file, record_id=record_id, field=field) from None


def read_image_bytes(root: str | Path, relative: str, *, file: str | Path, record_id: str | None, field: str) -> bytes:
    """The raw bytes of an image file under `root` (for embedding), or RecordError naming the record."""
    try:
        return resolve_image(root, relative).read_bytes()
    except (ValueError, OSError) as error:
        raise RecordError(f"cannot read image: {error}", file=file, record_id=record_id, field=field) from None


def place_image(source: Path, out_root: Path, relative: str) -> str:
    """Put `source` at `out_root/relative` (hard link when possible, else copy) and return `relative`.

    Importers place images inside the new dataset's root, so the dataset is self-contained and root-confined.
    A hard link costs no space; across file systems it falls back to a copy.
    """
    target = out_root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return relative
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return relative
