"""One resolver for the model names every command takes: a hub id, a local folder, or `world:<name>`.

    >>> resolve_model("world:world-base")       # the shapes world's shipped base model -> its folder
    '.../vlpref/world/pretrained/world-base'
    >>> resolve_model("Qwen/Qwen2-VL-2B-Instruct")  # anything else is passed to transformers as it is
    'Qwen/Qwen2-VL-2B-Instruct'

`world:<name>` names a folder of local models, found in this order:
1. $VLPREF_WORLD_MODELS/<name>, if that variable is set (e.g. a folder your own `vlpref world pretrain` wrote);
2. the shapes world's models installed with vlpref (package data, made by `vlpref world pretrain --pool`).
The shapes world is a plugin: this module knows where its models are stored, not how they are made, and imports
nothing from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlpref.errors import VlprefError

WORLD_PREFIX = "world:"
DEFAULT_MODEL = "world:world-base"
SHIPPED = Path(__file__).resolve().parent.parent / "world" / "pretrained"


def world_roots() -> list[Path]:
    """Where `world:<name>` models are looked up, first match wins."""
    env = os.environ.get("VLPREF_WORLD_MODELS")
    return [Path(env), SHIPPED] if env else [SHIPPED]


def world_model_names() -> list[str]:
    """Names of the shipped world models, the base model first (the order of pretrained/world_models.json)."""
    summary = SHIPPED / "world_models.json"
    return [entry["name"] for entry in json.loads(summary.read_text())] if summary.is_file() else []


def world_model_dir(name: str) -> Path:
    """Folder of the world model `name` (standard HF layout); VlprefError naming the fix if there is none."""
    for root in world_roots():
        if (root / name / "config.json").is_file():
            return root / name
    known = ", ".join(world_model_names()) or "none"
    raise VlprefError(f"no world model {name!r} (shipped: {known}); train it with `vlpref world pretrain --pool`")


def resolve_model(model: str) -> str:
    """`world:<name>` -> that model's folder; a hub id or a path -> unchanged (transformers resolves it)."""
    if model.startswith(WORLD_PREFIX):
        return str(world_model_dir(model.removeprefix(WORLD_PREFIX)))
    return model


def short_name(model: str) -> str:
    """The name a model goes by in ids and on a server: 'world:world-base' -> 'world-base', 'org/m-7b' -> 'm-7b'."""
    return model.removeprefix(WORLD_PREFIX).rstrip("/").rsplit("/", 1)[-1]
