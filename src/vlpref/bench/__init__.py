"""`vlpref bench …`: every speed benchmark, each writing JSON (targets live here and in docs/benchmarks.md, never in
timed tests). `generation` (sample, judge), `dpo` (our DPO step vs TRL's), `view` (the viewer at 400k pairs)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
