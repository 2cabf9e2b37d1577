"""Where the world's pretrained models live, so no command retrains them.

    >>> from vlpref.world.models import world_model_path
    >>> vlm = VLM.load(str(world_model_path()))            # the base model, shipped with vlpref

`vlpref world pretrain --pool --out src/vlpref/world/pretrained` made the shipped models from
recipes/world_pretrain.yaml; their held-out metrics are in pretrained/world_models.json and in the README. They are
package data (bf16 safetensors, about 1.5 MB each), found in this order:
1. $VLPREF_WORLD_MODELS/<name>, if that variable is set (e.g. a folder your own `world pretrain` wrote);
2. the copies installed with vlpref.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlpref.errors import VlprefError

SHIPPED = Path(__file__).parent / "pretrained"
BASE = "world-base"


def world_model_path(name: str = BASE) -> Path:
    """Folder of the world model `name` (standard HF layout); VlprefError naming the fix if it is missing."""
    roots = [Path(os.environ["VLPREF_WORLD_MODELS"])] if os.environ.get("VLPREF_WORLD_MODELS") else []
    for root in [*roots, SHIPPED]:
        if (root / name / "config.json").is_file():
            return root / name
    known = ", ".join(world_model_names()) or "none"
    raise VlprefError(f"no world model {name!r} (shipped: {known}); train it with `vlpref world pretrain --pool`")


WORLD_PREFIX = "world:"


def model_path(model: str) -> str:
    """`world:<name>` -> the shipped world model's folder; anything else (hub id, path) is returned as is."""
    if model.startswith(WORLD_PREFIX):
        return str(world_model_path(model.removeprefix(WORLD_PREFIX)))
    return model


def short_name(model: str) -> str:
    """The name a model goes by in ids and on a server: 'world:world-base' -> 'world-base', 'org/m-7b' -> 'm-7b'."""
    return model.removeprefix(WORLD_PREFIX).rstrip("/").rsplit("/", 1)[-1]


def world_model_names() -> list[str]:
    """Names of the shipped models: the base model first, then the pool."""
    summary = SHIPPED / "world_models.json"
    if not summary.is_file():
        return []
    return [entry["name"] for entry in json.loads(summary.read_text())]
