"""Reference log-probs computed once, cached on disk, reused across epochs and runs — vision data included.

    >>> from vlpref.models.fingerprint import model_fingerprint
    >>> cache = ReferenceCache("runs/reference.sqlite", fingerprint=model_fingerprint(path, None, "float32"))
    >>> cache.compute(vlm, examples, root, score=lambda batch: ...)  # (b, terms): log π_ref(chosen), (rejected) …
    >>> ref = cache.get(root, examples)                              # (N, terms)

DPO's reference is frozen, so log π_ref(y|x) of every response is a constant of the dataset: computing it in each
step (TRL's default, which also refuses to precompute for vision models) costs a forward pass per step and a second
copy of the model in memory. Li–Lin–Pei precompute it the same way (their released JSON carries `ref_win_logp`).

Each value is keyed by a content hash of everything it depends on: the model (a fingerprint of its config and
weight files), the dtype, the prompt turns, the images' bytes, the response token ids and what is scored (the
objective's terms and its image distortion). A changed image, another
truncation or another model makes new keys, never a stale hit. The store is the stages' sqlite journal, committed per
batch, so a killed precompute resumes where it stopped, and several processes can fill one file.

The trainer's reference is one of three objects, chosen once (`Trainer.__init__`), each answering `log_probs(batch,
policy)` with log π_ref of the objective's terms:
- `Precomputed`: rows of this cache, read into memory before training (`reference: precomputed`, the default);
- `AdaptersDisabled`: the policy itself with its LoRA adapters switched off (`reference: online`, LoRA);
- `FrozenCopy`: a frozen copy of the initial weights (`reference: online`, full fine-tuning).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from vlpref.journal import Journal, content_key
from vlpref.models.vlm import VLM
from vlpref.training.data import Example


def _image_digest(root: Path, paths: list[str] | None) -> list[str] | None:
    if paths is None:
        return None
    return [hashlib.sha256((root / p).read_bytes()).hexdigest()[:16] for p in paths]


def example_key(fingerprint: str, root: Path, example: Example, scored: object) -> str:
    record = example.record
    # the record id seeds POVID's noise and mDPO's crop (objectives.distorted_chat), so it is part of the key
    return content_key("reference-logps", fingerprint, [t.model_dump() for t in record.turns],
                       _image_digest(root, record.images), _image_digest(root, example.rejected_images),
                       example.responses, scored, record.id)


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 12s."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ReferenceCache:
    def __init__(self, path: str | Path, fingerprint: str, scored: object = "chosen-rejected"):
        """`scored`: a JSON-able description of what `compute`'s score function returns (part of every key)."""
        self.journal = Journal(path)
        self.fingerprint, self.scored = fingerprint, scored

    @torch.no_grad()
    def compute(self, vlm: VLM, examples: list[Example], root: Path, score: Callable[[list[Example]], torch.Tensor],
                batch_size: int = 8, shard: tuple[int, int] = (0, 1), log=print, every: float = 10.0) -> None:
        """Fill the cache for `examples` (this process's share `shard` = (rank, world size) of the missing ones);
        `score(batch)` gives the (b, terms) log-probs of a batch. Progress (count, rate, time left) goes to `log`
        at most every `every` seconds: on a large dataset this pass takes as long as an epoch's forward passes."""
        keys = [example_key(self.fingerprint, root, e, self.scored) for e in examples]
        missing = [i for i, k in enumerate(keys) if self.journal.get(k) is None]
        if len(missing) < len(examples):
            log(f"reference log-probs: {len(examples) - len(missing)} of {len(examples)} cached")
        # Shares are fixed by example index, not by what is missing: another process may already be writing its
        # share while this one looks, so a share of the missing list would differ between processes.
        mine = [i for i in missing if i % shard[1] == shard[0]]
        where = " in this process" if shard[1] > 1 else ""
        if mine:
            log(f"reference log-probs: computing {len(mine)} example(s){where}")
        was_training = vlm.model.training
        vlm.model.eval()
        began = last = time.perf_counter()
        try:
            for start in range(0, len(mine), batch_size):
                batch = [examples[i] for i in mine[start : start + batch_size]]
                sums = score(batch)  # (b, terms)
                for i, row in zip(mine[start : start + batch_size], sums.tolist(), strict=True):
                    self.journal.put(keys[i], row)
                done, now = min(start + batch_size, len(mine)), time.perf_counter()
                if done < len(mine) and now - last >= every:
                    last, rate = now, done / max(now - began, 1e-9)
                    log(f"reference log-probs: {done}/{len(mine)}{where} ({rate:.1f} example(s)/s, "
                        f"{duration((len(mine) - done) / rate)} left)")
        finally:
            vlm.model.train(was_training)
        if mine:
            log(f"reference log-probs: computed {len(mine)} example(s){where} in "
                f"{duration(time.perf_counter() - began)}")

    def get(self, root: Path, examples: list[Example]) -> torch.Tensor:
        """(N, k) cached log-probs of `examples`' responses; KeyError naming an example that is not cached."""
        rows = []
        for e in examples:
            value = self.journal.get(example_key(self.fingerprint, root, e, self.scored))
            if value is None:
                raise KeyError(f"no cached reference log-probs for example {e.id}")
            rows.append(value)
        return torch.tensor(rows, dtype=torch.float32)


# (batch, model) -> the objective's summed log-probs {term: (b,)} of `batch` under `model` (objectives.score_terms)
Score = Callable[[list[Example], nn.Module], dict[str, torch.Tensor]]


class Reference(Protocol):
    def log_probs(self, batch: list[Example], policy: nn.Module) -> dict[str, torch.Tensor]:
        """log π_ref of each of the objective's terms for `batch`, {term: (b,)}, without gradient. `policy` is the
        model being trained, as the step calls it (DDP-prepared or sharded)."""
        ...


@dataclass
class Precomputed:
    """Reference log-probs computed before any weight changed and read from the cache into memory once (a cache key
    hashes the example's image bytes, too slow to redo every step). No reference model is kept."""

    table: torch.Tensor  # (N, terms) float32 on the CPU, row i = the trainer's examples[i]
    rows: dict[int, int]  # id(example) -> its row: the trainer's own Example objects, so identity is safe
    terms: tuple[str, ...]  # the table's columns
    device: torch.device  # where the policy's log-probs are

    def log_probs(self, batch: list[Example], policy: nn.Module) -> dict[str, torch.Tensor]:
        cached = self.table[[self.rows[id(e)] for e in batch]].to(self.device)  # (b, terms)
        return {t: cached[:, i] for i, t in enumerate(self.terms)}


@dataclass
class AdaptersDisabled:
    """LoRA's reference is its base model: the policy with the adapters switched off, so no second copy is kept.
    (The config refuses this when the projector or vision tower trains in full: those would not switch off.)"""

    score: Score
    autocast: Callable[[], AbstractContextManager]  # the policy's: a prepared model autocasts itself, a sharded one not

    def log_probs(self, batch: list[Example], policy: nn.Module) -> dict[str, torch.Tensor]:
        from accelerate.utils import extract_model_from_parallel  # DDP's wrapper off; peft's disable_adapter is inside

        with torch.no_grad(), extract_model_from_parallel(policy).disable_adapter(), self.autocast():
            return self.score(batch, policy)


@dataclass
class FrozenCopy:
    """Full fine-tuning's online reference: a copy of the initial weights, frozen, in eval mode."""

    model: nn.Module  # not prepared by accelerate (nothing trains), so it is put under autocast here
    score: Score
    autocast: Callable[[], AbstractContextManager]

    def log_probs(self, batch: list[Example], policy: nn.Module) -> dict[str, torch.Tensor]:
        with torch.no_grad(), self.autocast():
            return self.score(batch, self.model)
