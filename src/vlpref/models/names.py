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
    """`world:<name>` -> that model's folder; a hub id or a path -> unchanged (transformers resolves it).

    What cannot be a model fails here, at once and offline, with one line (VlprefError): a folder without a model's
    config.json, a path that does not exist, a bare name that is neither a folder nor in the local HF cache (a
    mistyped world name would otherwise spend half a minute asking the hub), and, with HF_HUB_OFFLINE set, a hub id
    that is not cached."""
    if model.startswith(WORLD_PREFIX):
        return str(world_model_dir(model.removeprefix(WORLD_PREFIX)))
    path = Path(model).expanduser()
    if path.exists():
        check_model_dir(path)
        return model
    if _in_hub_cache(model):
        return model
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if looks_like_path or offline or "/" not in model:  # a bare name is no hub id of a VLM
        if looks_like_path:
            where = "no such folder"
        else:
            where = "no such folder, and not in the local Hugging Face cache" + (" (HF_HUB_OFFLINE is set)"
                                                                                  if offline else "")
        raise VlprefError(f"model {model!r}: {where}{_world_hint(model) if '/' not in model else ''}")
    return model


def check_model_dir(path: Path) -> None:
    """A local model folder must hold a transformers config.json naming its model_type."""
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise VlprefError(f"model {str(path)!r}: not a model folder (no config.json); give a folder saved by "
                          "save_pretrained, `vlpref tiny` or `vlpref train` (its model/), a hub id, or world:<name>")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise VlprefError(f"model {str(path)!r}: {config} is not a JSON object") from None
    if not model_type:
        raise VlprefError(f"model {str(path)!r}: {config} names no model_type; not a transformers model folder")


def _in_hub_cache(model: str) -> bool:
    """Whether the local HF cache holds anything of repo `model` (any revision: transformers picks the file)."""
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.file_download import repo_folder_name

    try:
        return (Path(HF_HUB_CACHE) / repo_folder_name(repo_id=model, repo_type="model")).is_dir()
    except (ValueError, OSError):
        return False


def _world_hint(model: str) -> str:
    import difflib

    names = world_model_names()
    close = difflib.get_close_matches(model.removeprefix(WORLD_PREFIX), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean world:{close[0]}?"
    return f"; world models are named world:<name> ({', '.join(names)})" if names else ""


def short_name(model: str) -> str:
    """The name a model goes by in ids and on a server: 'world:world-base' -> 'world-base', 'org/m-7b' -> 'm-7b'."""
    return model.removeprefix(WORLD_PREFIX).rstrip("/").rsplit("/", 1)[-1]
