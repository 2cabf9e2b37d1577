"""A run folder's record of itself: the settings that decide what is computed, out/summary.json (the run finished),
and the losses out/log.jsonl holds. Read before a model loads, so that rerunning a finished run costs nothing and
never rewrites it, and a resume with other settings names them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vlpref.errors import VlprefError
from vlpref.training import checkpoint
from vlpref.training.config import TrainConfig

# Settings that do not change what is computed: a resumed run may change them.
NOT_HASHED = {"recipe", "save_every", "save_minutes", "save_each_epoch", "keep_checkpoints", "log_every", "report_to",
              "reference_cache"}


@dataclass
class TrainResult:
    steps: int
    final_loss: float  # NaN when the loss was not a number
    out: Path
    finished_before: bool = False  # out held this run, finished: nothing was trained or written


def settings_hash(config: TrainConfig) -> str:
    kept = {k: v for k, v in config.model_dump().items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_of(config: TrainConfig | dict) -> dict:
    """The settings `settings_hash` hashes, as JSON values (what out/config.json holds, less NOT_HASHED)."""
    found = json.loads(config.model_dump_json()) if isinstance(config, TrainConfig) else config
    return {k: v for k, v in found.items() if k not in NOT_HASHED}


def read_summary(out: Path) -> TrainResult | None:
    """out/summary.json as a result (None without one): written last, so the run, export included, finished."""
    path = out / "summary.json"
    if not path.is_file():
        return None
    found = json.loads(path.read_text())  # a NaN written by older versions reads back as one
    loss = found.get("final_loss")
    return TrainResult(found["steps"], float("nan") if loss is None else float(loss), out, finished_before=True)


def finished(config: TrainConfig, out: Path, log=print) -> TrainResult | None:
    """The result of the run already finished in `out` with these settings, None if there is none; an error naming
    the settings that differ if it was made with others. Read before the model loads: a rerun costs nothing."""
    result = read_summary(out)
    if result is None or not (out / "config.json").is_file():
        return None
    changed = checkpoint.differences(settings_of(json.loads((out / "config.json").read_text())), settings_of(config))
    if changed:
        raise VlprefError(f"{out} holds a finished run made with other training settings ({'; '.join(changed)}); "
                          "train into a new --out, or pass --no-resume to train again here")
    log(f"{out} holds this run, finished ({result.steps} step(s), final loss {result.final_loss:.4f}): nothing to "
        "train (--no-resume trains it again)")
    return result


def logged_loss(out: Path, step: int) -> float:
    """The loss log.jsonl holds for `step` (NaN if none): a run resumed at its last step trains nothing."""
    log_file = out / "log.jsonl"
    rows = [json.loads(r) for r in log_file.read_text().splitlines()] if log_file.is_file() else []
    return next((float(r["loss"]) for r in rows if r["step"] == step and r["loss"] is not None), float("nan"))

