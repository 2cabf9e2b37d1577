"""Reading and writing the plain JSON and JSON-lines files that benchmarks, run folders and the viewer exchange.

    >>> rows = read_jsonl(Path("answers.jsonl"), "the answers")   # VlprefError naming the file and line if broken
    >>> write_jsonl(out / "items.jsonl", rows)
    >>> inside("images/a.png", "/data/pope"), inside("../secret.png", "/data/pope")
    (True, False)

`what` names the file for the user when it is missing ("pope question file: .../x.json does not exist"); a file that
is not valid JSON is named with its line. Everything is UTF-8; JSON lines are written one object per line with
non-ASCII text kept as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlpref.errors import VlprefError


def read_json(path: Path, what: str):
    if not path.is_file():
        raise VlprefError(f"{what}: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VlprefError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def read_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise VlprefError(f"{what}: {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise VlprefError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path` (absolute, or relative to `root`) lies inside `root` as written: '..' is resolved, symlinks
    are not (so a folder the user linked in stays in)."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, path))
    return target == base or target.startswith(base + os.sep)
