"""A content hash of a model folder, to key caches of anything the model computed (reference log-probs in training,
answers in evaluation): another checkpoint, a merged LoRA or another dtype makes new keys, never a stale hit.

    >>> key = model_fingerprint("runs/dpo/model", revision=None, dtype="bfloat16")
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def model_fingerprint(path: str, revision: str | None, dtype: str) -> str:
    """A hash of the model folder: every config, tokenizer and template file whole; each weight file whole up to
    256 MiB, above that its header (names, shapes, offsets) and 64 samples of 1 MiB spread through it (reading 15 GB
    to key a cache would cost more than the forward passes it saves; a merged LoRA changes every layer, so spread
    samples see it). Plus the path, revision and dtype. A hub id is hashed through its snapshot in the local
    Hugging Face cache (the files a load would read), so an upstream update is a new fingerprint even with no
    revision pinned; a hub id with no local snapshot is keyed by id + revision alone."""
    folder = Path(path)
    h = hashlib.sha256(json.dumps([str(path), revision, dtype]).encode())
    if not folder.is_dir():
        folder = _cached_snapshot(str(path), revision) or folder
    if folder.is_dir():
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            size = file.stat().st_size
            h.update(f"{file.relative_to(folder)}:{size}".encode())
            with file.open("rb") as f:
                if size <= 256 << 20:
                    h.update(f.read())
                    continue
                h.update(f.read(1 << 20))  # safetensors: the header comes first
                for i in range(64):
                    f.seek(size * i // 64)
                    h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot folder of a hub model (never downloads), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not a hub id, not cached, or no hub library: fall back to id + revision
        return None
