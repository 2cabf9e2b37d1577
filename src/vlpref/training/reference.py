"""Reference log-probs computed once, cached on disk, reused across epochs and runs — vision data included.

    >>> cache = ReferenceCache("runs/reference.sqlite", fingerprint=model_fingerprint("world-base", None, "float32"))
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
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from vlpref.journal import Journal, content_key
from vlpref.models.fingerprint import model_fingerprint  # noqa: F401 (the docstring example uses it)
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


class ReferenceCache:
    def __init__(self, path: str | Path, fingerprint: str, scored: object = "chosen-rejected"):
        """`scored`: a JSON-able description of what `compute`'s score function returns (part of every key)."""
        self.journal = Journal(path)
        self.fingerprint, self.scored = fingerprint, scored

    @torch.no_grad()
    def compute(self, vlm: VLM, examples: list[Example], root: Path, score: Callable[[list[Example]], torch.Tensor],
                batch_size: int = 8, shard: tuple[int, int] = (0, 1), log=print) -> None:
        """Fill the cache for `examples` (this process's share `shard` = (rank, world size) of the missing ones);
        `score(batch)` gives the (b, terms) log-probs of a batch."""
        keys = [example_key(self.fingerprint, root, e, self.scored) for e in examples]
        missing = [i for i, k in enumerate(keys) if self.journal.get(k) is None]
        if len(missing) < len(examples):
            log(f"reference log-probs: {len(examples) - len(missing)} of {len(examples)} cached")
        # Shares are fixed by example index, not by what is missing: another process may already be writing its
        # share while this one looks, so a share of the missing list would differ between processes.
        mine = [i for i in missing if i % shard[1] == shard[0]]
        was_training = vlm.model.training
        vlm.model.eval()
        try:
            for start in range(0, len(mine), batch_size):
                batch = [examples[i] for i in mine[start : start + batch_size]]
                sums = score(batch)  # (b, terms)
                for i, row in zip(mine[start : start + batch_size], sums.tolist(), strict=True):
                    self.journal.put(keys[i], row)
        finally:
            vlm.model.train(was_training)
        if mine:
            log(f"reference log-probs: computed {len(mine)} example(s)" + (" in this process" if shard[1] > 1 else ""))

    def get(self, root: Path, examples: list[Example]) -> torch.Tensor:
        """(N, k) cached log-probs of `examples`' responses; KeyError naming an example that is not cached."""
        rows = []
        for e in examples:
            value = self.journal.get(example_key(self.fingerprint, root, e, self.scored))
            if value is None:
                raise KeyError(f"no cached reference log-probs for example {e.id}")
            rows.append(value)
        return torch.tensor(rows, dtype=torch.float32)
