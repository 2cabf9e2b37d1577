"""POPE: the official yes/no answer parser and per-split metrics (benchmarks.md §1.3-1.4).

    >>> pope_answer("No, there is not.")
    'no'
    >>> pope_metrics(["yes", "yes", "no", "no"], ["yes", "no", "no", "yes"])["f1"]
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

SPLITS = ("random", "popular", "adversarial")


def pope_answer(text: str) -> str:
    """The official rule (RUCAIBox/POPE evaluate.py, LLaVA eval_pope.py): keep the first sentence, drop commas,
    split on single spaces; 'No', 'not' or 'no' among the words means no, anything else (even '') means yes.
    Case-sensitive on purpose: 'NO' is yes, as in the official script."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (positive class 'yes') and yes-ratio of one split.

    Where the official script divides by zero (no 'yes' predicted), precision and F1 are reported as 0.0.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    pairs = list(zip(predictions, labels, strict=True))
    tp = sum(p == "yes" and gold != "no" for p, gold in pairs)
    fp = sum(p == "yes" and gold == "no" for p, gold in pairs)
    tn = sum(p == "no" and gold == "no" for p, gold in pairs)
    fn = sum(p == "no" and gold != "no" for p, gold in pairs)
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": (tp + fp) / n if n else 0.0, "n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def pope_metrics_lmms_eval(texts: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """lmms-eval's POPE scoring (tasks/pope/utils.py), for numbers comparable with lmms-eval's tables.

    No parser: the answer, lower-cased and stripped, must equal the label. Accuracy is the share of exact matches;
    TP/FP/FN count only answers that are exactly 'yes' or 'no' (so 'Yes.' is wrong for accuracy and drops out of
    precision and recall); every division is guarded. lmms-eval's own yes-ratio counts the labels' yeses (0.5 on
    POPE's balanced files whatever the model says, a bug): it is reported as `yes_ratio_lmms_eval`, for matching
    lmms-eval's tables, and `yes_ratio` is the share of answers that are exactly 'yes'. `unmatched` counts the
    answers that are neither.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} answers but {len(labels)} labels")
    pairs = [(t.lower().strip(), gold.lower().strip()) for t, gold in zip(texts, labels, strict=True)]
    tp = sum(p == "yes" and gold == "yes" for p, gold in pairs)
    fp = sum(p == "yes" and gold == "no" for p, gold in pairs)
    tn = sum(p == "no" and gold == "no" for p, gold in pairs)
    fn = sum(p == "no" and gold == "yes" for p, gold in pairs)
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": sum(p == gold for p, gold in pairs) / n if n else 0.0, "precision": precision,
            "recall": recall, "f1": f1, "yes_ratio": sum(p == "yes" for p, _ in pairs) / n if n else 0.0,
            "yes_ratio_lmms_eval": sum(gold == "yes" for _, gold in pairs) / n if n else 0.0, "n": n,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn, "unmatched": sum(p not in ("yes", "no") for p, _ in pairs)}


def f1_means(splits: dict[str, dict]) -> dict[str, float | None]:
    """LLaVA-1.5's single POPE number: the mean of the random, popular and adversarial F1s, {'f1_mean': ...} for the
    COCO files ('random', ...) and {'f1_mean_<dataset>': ...} for the others ('gqa_seem_random', ...); None unless
    all three splits were scored (a mean over whichever files were given would be misread as it)."""
    by_dataset: dict[str, dict[str, float]] = {}
    for name, metrics in splits.items():
        dataset, _, split = name.rpartition("_")
        by_dataset.setdefault(dataset, {})[split] = metrics["f1"]
    return {f"f1_mean_{dataset}" if dataset else "f1_mean": sum(f1s.values()) / 3 if set(f1s) == set(SPLITS) else None
            for dataset, f1s in by_dataset.items()}
