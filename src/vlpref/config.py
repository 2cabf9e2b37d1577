"""Typed configs: every config and record is a pydantic model that rejects unknown keys by name.

    >>> from vlpref.config import StrictModel, parse
    >>> class Train(StrictModel):
    ...     learning_rate: float = 1e-5
    >>> parse(Train, {"lerning_rate": 1e-4}, source="recipe.yaml")
    Traceback (most recent call last):
    vlpref.errors.ConfigError: recipe.yaml: unknown key 'lerning_rate'; did you mean 'learning_rate'?

Why: the most common bug in peer toolkits is config that silently does nothing (TRL dropping unknown YAML keys,
torchtune never reading `clip_grad_norm`). pydantic's `extra="forbid"` catches the key; `parse` adds the nearest valid
key and the file name to the message. Names carried over from Hugging Face's TrainingArguments and TRL
(`learning_rate`, `num_train_epochs`, ...) point at ours (`ALIASES`), and `--set KEY=VALUE` on the command line
(`apply_sets`) reaches any key, dotted for nested ones (`--set lora.r=8`).
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from vlpref.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

# Hugging Face TrainingArguments / TRL names people bring, and ours. Consulted before the nearest spelling, which
# points `learning_rate` at `merge_lora`; used only where the target is a valid key.
ALIASES = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "schedule",
    "warmup_steps": "warmup_ratio",
    "adam_beta1": "adam_betas",
    "adam_beta2": "adam_betas",
    "logging_steps": "log_every",
    "save_steps": "save_every",
    "save_total_limit": "keep_checkpoints",
    "max_seq_length": "max_length",
    "bf16": "mixed_precision",
    "fp16": "mixed_precision",
    "torch_dtype": "dtype",
    "model_name_or_path": "model",
    "dataset": "data",
    "dataset_name": "data",
    "train_dataset": "data",
    "use_peft": "finetune",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_target_modules": "lora.target_modules",
    "precompute_ref_log_probs": "reference",
    "rpo_alpha": "sft_weight",
}


def suggest(key: str, valid: list[str]) -> str | None:
    """The valid key `key` most likely means: its alias, else the nearest spelling, else None."""
    alias = ALIASES.get(key)
    if alias is not None and alias.split(".")[0] in valid:
        return alias
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return near[0] if near else None


def _unknown_key(loc: list[str], valid: list[str]) -> str:
    """'unknown key 'a.b'; did you mean 'a.c'?' (or the valid keys, where nothing is near)."""
    near = suggest(loc[-1], valid)
    hint = f"; did you mean '{'.'.join([*loc[:-1], near])}'?" if near else ""
    # As written, even '' or a key with a line break in it (both found by the property tests), escaped so that the
    # message stays one line per problem.
    key = ".".join(loc)
    key = key if key.isprintable() else key.encode("unicode_escape").decode()
    return f"unknown key '{key}'{hint}" + ("" if near else f" (valid keys: {', '.join(valid)})")


class StrictModel(BaseModel):
    """Base for every config and record: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys of the (nested) model that `loc` points into, for the 'did you mean' hint."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        # Unwrap list[Model] / Model | None to the model class.
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def describe_validation_error(model: type[BaseModel], error: ValidationError) -> list[str]:
    """One readable line per problem: the dotted key, what is wrong, and the nearest valid key for unknown ones."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_key([str(p) for p in loc], _fields_at(model, loc[:-1])))
        else:
            lines.append(f"{where}: {item['msg']}")
    return lines


def parse(model: type[M], data: Any, source: str = "config") -> M:
    """Validate `data` into `model`, raising ConfigError with one line per problem, prefixed by `source`."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: " + f"\n{source}: ".join(describe_validation_error(model, error))) from None


def load_yaml(model: type[M], path: str | Path) -> M:
    """Read a YAML file into `model`; syntax and schema errors name the file."""
    return parse(model, read_yaml(path), source=str(path))


def read_yaml(path: str | Path) -> dict:
    """A YAML file as a dict (empty file: {}); a missing file or bad syntax is a ConfigError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data or {}


def overlay(model: type[M], base: dict, overrides: dict, source: str = "config", merge: tuple[str, ...] = (),
            sets: Iterable[str] = ()) -> M:
    """`base` (settings from a file) with `overrides` (command-line options, a demo row's settings) on top, parsed
    into `model`. Overrides that are None are not given. An override replaces the base's value, except for the keys
    in `merge`, whose dicts merge key by key (so `--judge-url` changes the judge's endpoint and keeps the rest of the
    recipe's judge). Then the `--set KEY=VALUE` items (`apply_sets`). The one way every command combines a recipe
    with its options.

        >>> overlay(TrainConfig, read_yaml("recipes/seva/train_world.yaml"), {"lr": 1e-5, "seed": None})
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    merged = {**base, **given}
    for key in merge:
        if isinstance(base.get(key), dict) and isinstance(given.get(key), dict):
            merged[key] = _merge(base[key], given[key])
    sets = list(sets)
    merged = apply_sets(model, merged, sets, taken=given)
    named = [*given, *(f"--set {item.partition('=')[0].strip()}" for item in sets)]
    return parse(model, merged, source=f"{source} (with {', '.join(named)} given)" if named else source)


def apply_sets(model: type[BaseModel], data: dict, sets: Iterable[str], taken: dict | None = None) -> dict:
    """A copy of `data` with each `KEY=VALUE` item of `--set` put in. KEY is any key of `model`, dotted for nested
    ones (lora.r, judge.endpoint.base_url; a number picks a list entry: pool.0.n); VALUE is read as YAML (1e-5, true,
    null, [q_proj, v_proj]). An unknown key is a ConfigError naming it and the nearest valid one, before anything
    runs; so is a key also in `taken` (given by its own option: which one wins would be a guess)."""
    out = copy.deepcopy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {key}: expected KEY=VALUE, e.g. --set lr=1e-5 or --set lora.r=8")
        # Messages name the key, not the value: a value is often YAML with brackets ([q_proj, v_proj]).
        where = f"--set {key}"
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" at character {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{where}: the value is not valid YAML ({getattr(error, 'problem', None) or 'syntax'}"
                              f"{at})") from None
        defaults = _check_key(model, parts, where)
        if _holds(taken or {}, parts):
            raise ConfigError(f"{where}: {parts[0]} is also given by its own option; give it once")
        _put(out, parts, value, where, defaults)
    return out


def _check_key(model: type[BaseModel], parts: list[str], where: str) -> list[Any]:
    """Follow `parts` through `model`'s fields as far as they are typed models (a dict-valued field takes any key;
    its reader checks them). Returns the defaults of the sections on the way (None where not known), so that a
    section the data leaves out starts from its default: `--set train.lr=...` must not drop the demo's other
    `train` settings."""
    current: Any = model
    defaults: list[Any] = []
    for depth, part in enumerate(parts):
        if isinstance(current, _ListOf):
            if not part.isdigit():
                raise ConfigError(f"{where}: {'.'.join(parts[:depth])} is a list; pick an entry by number, "
                                  f"e.g. {'.'.join([*parts[:depth], '0', *parts[depth + 1:]])}")
            current = current.item
            defaults.append(None)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            break
        if part not in current.model_fields:
            raise ConfigError(f"{where}: " + _unknown_key(parts[: depth + 1], list(current.model_fields)))
        field = current.model_fields[part]
        default = field.get_default(call_default_factory=True)
        defaults.append(default.model_dump(exclude_unset=True) if isinstance(default, BaseModel) else default)
        current = _section(field.annotation)
        if current is None and depth < len(parts) - 1:
            raise ConfigError(f"{where}: {'.'.join(parts[: depth + 1])} takes a value, not keys")
    return defaults + [None] * (len(parts) - len(defaults))


class _ListOf:
    def __init__(self, item: Any):
        self.item = item


def _section(annotation: Any) -> Any:
    """What keys under a field of this type lead to: a model class, a `_ListOf`, Any (a dict: any key), or None (a
    plain value)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
        origin = typing.get_origin(option)
        if origin is list and typing.get_args(option):
            return _ListOf(_section(typing.get_args(option)[0]) or Any)
        if option is Any or option is dict or origin is dict:
            return Any
    return None


def _holds(data: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _put(data: dict, parts: list[str], value: Any, where: str, defaults: list[Any]) -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = int(part) if part.isdigit() else -1
            if not 0 <= index < len(node):
                raise ConfigError(f"{where}: {'.'.join(parts[:depth])} has {len(node)} entries (0 to "
                                  f"{len(node) - 1})")
            if last:
                node[index] = value
            else:
                node[index] = node[index] if isinstance(node[index], dict | list) else {}
                node = node[index]
        elif last:
            node[part] = value
        else:
            if not isinstance(node.get(part), dict | list):  # absent or null: a new section, from its default
                node[part] = copy.deepcopy(defaults[depth]) if isinstance(defaults[depth], dict) else {}
            node = node[part]


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged
