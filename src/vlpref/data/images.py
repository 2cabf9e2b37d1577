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

import filecmp
import hashlib
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

    Importers place images inside the new dataset's root, so the dataset is self-contained and root-confined. The
    target is confined to `out_root` like any read. An existing file with the same content is reused; one with other
    content is an error (two different images must not share a path).
    """
    target = resolve_image(out_root, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if target.samefile(source) or filecmp.cmp(target, source, shallow=False):
            return relative
        raise ValueError(f"{target} already holds a different image; not overwriting it with {source}")
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return relative


def write_image_bytes(data: bytes, out_root: Path, relative: str) -> str:
    """Write raw image bytes at `out_root/relative` (confined to out_root; same rule as `place_image` for an
    existing file) and return `relative`. The bytes are stored as they are: no re-encoding, no quality loss."""
    target = resolve_image(out_root, relative)
    if target.exists():
        if target.read_bytes() == data:
            return relative
        raise ValueError(f"{target} already holds a different image")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return relative


def check_relative_path(relative: str) -> str:
    """A record's image path: relative, no '..' part, no backslashes (which mean different things per OS)."""
    if not isinstance(relative, str) or not relative:
        raise ValueError("image path must be a non-empty string")
    parts = Path(relative).parts
    if Path(relative).is_absolute() or "\\" in relative or ".." in parts:
        raise ValueError(f"image path {relative!r} must be relative to the dataset root, without '..'")
    return relative


def load_record_images(root: str | Path, record) -> list[Image.Image]:
    """Every image a record (prompt or pair) names, loaded from the dataset folder `root`; errors name the record
    and field. Light: no model library is imported (remote judges and clients use it)."""
    file = Path(root) / "records.jsonl"
    return [load_image(root, path, file=file, record_id=record.id, field=f"images[{i}]")
            for i, path in enumerate(record.images)]


def record_image_digests(root: str | Path, record) -> list[str]:
    """sha256 of each image file a record names: what a cached result computed from those images depends on."""
    file = Path(root) / "records.jsonl"
    return [hashlib.sha256(read_image_bytes(root, path, file=file, record_id=record.id, field=f"images[{i}]"))
            .hexdigest() for i, path in enumerate(record.images)]
