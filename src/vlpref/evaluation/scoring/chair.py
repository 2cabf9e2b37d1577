"""CHAIR (Rohrbach et al., 2018): how many object mentions in captions name objects that are not in the image.

    >>> chair([["dog", "cat", "cat"], ["car"]], [{"dog"}, {"car", "bus"}])
    {'chair_s': 0.5, 'chair_i': 0.5, 'recall': 0.6666666666666666, 'mentions': 4, 'captions': 2}

Formulas as in the official scorer (benchmarks.md §6.4):
- CHAIR_i = Σ hallucinated mentions / Σ object mentions; duplicate mentions count.
- CHAIR_s = (#captions with >= 1 hallucinated mention) / #captions.
- recall  = Σ_captions |distinct correctly mentioned GT objects| / Σ_captions |GT objects|.
Word extraction (what counts as a mention) is the caller's: COCO's synonym tables for the real benchmark, the closed
vocabulary parser for the shapes world.
"""

from __future__ import annotations

from collections.abc import Sequence


def chair(mentions: Sequence[Sequence[str]], truth: Sequence[set[str]]) -> dict[str, float]:
    """`mentions[k]`: canonical object words of caption k (in order, duplicates kept); `truth[k]`: its objects."""
    if len(mentions) != len(truth):
        raise ValueError(f"{len(mentions)} captions but {len(truth)} ground-truth sets")
    total = hallucinated = bad_captions = recalled = present = 0
    for words, objects in zip(mentions, truth, strict=True):
        wrong = sum(w not in objects for w in words)
        total += len(words)
        hallucinated += wrong
        bad_captions += wrong > 0
        recalled += len(set(words) & objects)
        present += len(objects)
    return {
        "chair_s": bad_captions / len(mentions) if mentions else 0.0,
        "chair_i": hallucinated / total if total else 0.0,
        "recall": recalled / present if present else 0.0,
        "mentions": total,
        "captions": len(mentions),
    }
