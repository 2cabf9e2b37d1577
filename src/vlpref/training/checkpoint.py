"""Checkpoints with exact resume: trainable weights, optimizer and scheduler state, step, and every process's RNG.

    out/checkpoints/step-000040/
        trainable.safetensors   the weights that train (LoRA adapters, or all of them), by name
        optimizer.pt            AdamW state; tensors and numbers only, read back with torch.load(weights_only=True)
        state.json              step, scheduler state, the settings the run was started with (and their hash)
        rng-0.pt, rng-1.pt …    each process's torch RNG states, CPU and CUDA (LoRA dropout draws from them)

Frozen weights are not saved: they are the base model's, read again from it on resume. Under FSDP the shards are
gathered first (`training.sharding`), so a checkpoint has the same files whatever the sharding. A checkpoint is
written to a temporary folder and renamed into place, so a kill mid-save leaves the previous checkpoint as the
latest. Resuming restores all of the above and continues at the next step; the data order is a function of (seed,
epoch), so the batches after resume are the ones an uninterrupted run sees, and so are the losses
(tests/training/test_train.py). A checkpoint made with other settings is refused before the model is loaded, naming
the settings that differ (`check`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlpref.errors import VlprefError
from vlpref.training import sharding

PREFIX = "step-"


def checkpoints(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()),
                  key=lambda p: int(p.name.removeprefix(PREFIX)))


def differences(before: dict, now: dict) -> list[str]:
    """`key: old -> new` for each setting that differs, nested ones dotted (`lora.r: 4 -> 8`)."""
    a, b = _flat(before), _flat(now)
    return [f"{k}: {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}" for k in sorted(a.keys() | b.keys())
            if k not in a or k not in b or a[k] != b[k]]


def _flat(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        flat |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return flat


def state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as error:
        raise VlprefError(f"{folder / 'state.json'} cannot be read ({error}); remove {folder} to resume from the "
                          "checkpoint before it, or pass --no-resume to start over") from None


def check(folder: Path, settings_hash: str, settings: dict, world_size: int) -> dict:
    """The checkpoint's state, if this run (its settings and process count) can resume from it; else an error that
    says why, naming the settings that differ."""
    found = state(folder)
    if found["settings"] != settings_hash:
        # checkpoints made before the settings themselves were stored have only their hash
        changed = differences(found["config"], settings) if "config" in found else []
        raise VlprefError(f"{folder} was made with other training settings"
                          + (f" ({'; '.join(changed)})" if changed else "")
                          + "; resume with the same config, or train into a new --out (or pass --no-resume to start "
                          "over here)")
    if found["world_size"] != world_size:
        raise VlprefError(f"{folder} was made by {found['world_size']} process(es), this run has {world_size}; "
                          "exact resume needs the same number")
    return found


def save(out: Path, step: int, model: torch.nn.Module, optimizer, scheduler, settings_hash: str, rank: int,
         world_size: int, barrier, keep: int, settings: dict | None = None) -> Path:
    """Every process writes its RNG state; the main process writes the rest and moves the folder into place.
    `settings`: what `settings_hash` hashes, kept so that a refused resume can name what differs."""
    final = out / "checkpoints" / f"{PREFIX}{step:06d}"
    tmp = out / "checkpoints" / f".tmp-{PREFIX}{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():  # LoRA dropout on a GPU draws from the CUDA generators
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / f"rng-{rank}.pt")
    if sharding.is_sharded(model):  # gathering the shards is a collective: every process takes part
        weights, optim = sharding.full_trainable(model), sharding.full_optimizer_state(model, optimizer)
    elif rank == 0:
        weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        optim = optimizer.state_dict()
    if rank == 0:
        save_file(weights, tmp / "trainable.safetensors")
        torch.save(optim, tmp / "optimizer.pt")
    barrier()  # every rank's RNG file is in tmp before it moves
    if rank == 0:
        (tmp / "state.json").write_text(json.dumps({"step": step, "scheduler": scheduler.state_dict(),
                                                    "settings": settings_hash, "config": settings,
                                                    "world_size": world_size}))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old)
    barrier()
    return final


def load(folder: Path, model: torch.nn.Module, optimizer, scheduler, settings_hash: str, rank: int,
         world_size: int, settings: dict | None = None) -> int:
    """Restore a checkpoint into the live objects; returns its step."""
    found = check(folder, settings_hash, settings or {}, world_size)
    weights = load_file(folder / "trainable.safetensors")
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != trainable:
        raise VlprefError(f"{folder}: its weights do not match this model's trainable parameters")
    optim = torch.load(folder / "optimizer.pt", weights_only=True)
    if sharding.is_sharded(model):  # each process keeps its shard of the whole tensors
        sharding.load_trainable(model, weights)
        sharding.load_optimizer_state(model, optimizer, optim)
    else:
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        optimizer.load_state_dict(optim)
    scheduler.load_state_dict(found["scheduler"])
    rng = torch.load(folder / f"rng-{rank}.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return found["step"]
