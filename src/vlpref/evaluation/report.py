"""Evaluation reports: one run's JSON, markdown and plot; several runs side by side with deltas.

    vlpref eval world --model runs/seva/model --out runs/eval/seva          # results.json, results.md, results.png
    # benchmarks with categories (MME subtasks, MMHal question types, ...) also get categories.png
    vlpref eval compare runs/eval/base runs/eval/seva --out runs/eval/cmp   # compare.md, compare.png, deltas vs base

A run folder holds `results.json`: {"benchmark": ..., "model": ..., <metric>: <number or nested numbers>}. Nested
results (per split, per category) are flattened to 'a/b' names, so every benchmark's numbers compare the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vlpref.errors import VlprefError

# Bookkeeping in results.json, not metrics: never compared or plotted.
NOT_METRICS = ("calls/", "eval_data/", "limit")
# Metrics where lower is better, for the arrows in the reports.
LOWER_IS_BETTER = ("chair", "hallucination", "hallucination_rate")

# Each benchmark's per-category breakdown, plotted as OUT/categories.png: (where the categories are in the results,
# the metric plotted per category). None for the metric: the categories map straight to numbers.
CATEGORIES = {
    "pope": ("splits", "f1"),
    "mme": ("subtasks", "score"),
    "mmhal": ("per_type", None),
    "mmvet": ("per_capability", None),
    "llava-bench": ("", "relative"),
    "mtbench": ("ours_per_category", None),
    "amber": ("discriminative", "f1"),
}


def categories(results: dict) -> tuple[str, dict[str, float]] | None:
    """(label, {category: value}) of a run's per-category breakdown, or None when its benchmark has none."""
    where = CATEGORIES.get(results.get("benchmark"))
    if where is None:
        return None
    group, metric = where
    found = results.get(group, {}) if group else results
    values = {name: (v if metric is None else v.get(metric)) for name, v in found.items()
              if metric is None or isinstance(v, dict)}
    values = {name: float(v) for name, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return (f"{results['benchmark']}: {metric or 'score'} per {group or 'category'}", values) if values else None


def flatten(results: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a/b': 1}."""
    flat: dict[str, object] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def numeric_metrics(results: dict) -> dict[str, float]:
    """The run's numbers under their flattened names (booleans and text left out): what reports and the viewer show."""
    return {k: float(v) for k, v in flatten(results).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def arrow(name: str) -> str:
    """' ↓' after a metric where lower is better, else ''."""
    return " ↓" if any(word in name for word in LOWER_IS_BETTER) else ""


def write_run(results: dict, out: Path, title: str) -> None:
    """OUT/results.json, OUT/results.md and OUT/results.png (one bar per metric in [0, 1], the rest listed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    numbers = numeric_metrics(results)
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name}{arrow(name)} | {value:.4g} |" for name, value in numbers.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    unit = {k: v for k, v in numbers.items() if 0.0 <= v <= 1.0 and not k.startswith(NOT_METRICS)}
    if unit:
        _bars({title: unit}, out / "results.png", title)
    breakdown = categories(results)
    if breakdown:
        label, values = breakdown
        _bars({label: values}, out / "categories.png", label, ylim=None)


def load_run(folder: Path) -> dict:
    path = folder / "results.json"
    if not path.is_file():
        raise VlprefError(f"{folder}: no results.json (an evaluation run folder is expected)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VlprefError(f"{path}: not valid JSON ({error.msg})") from None


Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
# Metrics that are shares of questions, images or mentions (an interval for a proportion fits them); ratings and
# judge scores (helpfulness 1-5, MMHal's 0-6, ...) can fall in [0, 1] too, so the name decides, not the value.
SHARES = ("acc", "precision", "recall", "f1", "yes_ratio", "chair", "hallucination", "coverage")


def _items(folder: Path) -> list[dict]:
    path = folder / "items.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metric_n(metric: str, results: dict, items: list[dict]) -> int | None:
    """How many questions (or images, or mentions) the metric is a share of, or None where unknown.

    The results' own count where the metric sits in a group that has one (POPE's splits: 'splits/random/f1' -> the
    split's `n`); the world's CHAIR_i counts mentions, its POPE metrics a split's questions, the rest the described
    images; else the run's number of items."""
    parts = metric.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        group = results
        for key in parts[:depth]:
            group = group.get(key) if isinstance(group, dict) else None
        if isinstance(group, dict) and isinstance(group.get("n"), int):
            return group["n"]
    if results.get("benchmark") == "world":
        split = next((s for s in ("random", "popular", "adversarial") if metric.endswith(f"_{s}")), None)
        if split:
            return sum(item.get("task") == "pope" and item.get("split") == split for item in items) or None
        if metric.startswith("chair_i"):
            return results.get("mentions")
        return results.get("captions")
    if metric == "f1_mean" and isinstance(results.get("splits"), dict):  # the mean over the three splits' n
        return sum(s.get("n", 0) for s in results["splits"].values() if isinstance(s, dict)) or None
    return len(items) or None


def interval(base: float, other: float, n_base: int | None, n_other: int | None) -> float | None:
    """The half-width of a 95% interval for `other - base` when both are shares in [0, 1] of known counts: the
    normal approximation for a difference of proportions, 1.96 * sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2). It
    treats the runs as independent samples; the same questions make the true interval narrower, so it errs wide."""
    if not (n_base and n_other and 0.0 <= base <= 1.0 and 0.0 <= other <= 1.0):
        return None
    return Z95 * math.sqrt(base * (1 - base) / n_base + other * (1 - other) / n_other)


def data_check(names: list[str], results: list[dict]) -> tuple[str | None, str | None]:
    """(an error, a warning) about the runs' eval data: runs asked different questions (another split, another
    image count, a --limit) compare data, not models; runs without a record of it cannot be checked."""
    known = {name: r["eval_data"] for name, r in zip(names, results, strict=True) if isinstance(r.get("eval_data"),
                                                                                                dict)}
    unknown = [name for name in names if name not in known]
    if len({d.get("sha256") for d in known.values()}) > 1:
        listing = ", ".join(f"{name} ({d.get('questions')} questions, {str(d.get('sha256'))[:12]})"
                            for name, d in known.items())
        return (f"the runs were evaluated on different data: {listing}; their deltas would mix the data's "
                "difference into the models' (rerun on the same eval data, or pass --allow-different-data)"), None
    if unknown:
        return None, (f"{', '.join(unknown)}: no record of the eval data (a run scored by `vlpref eval score` or "
                      "made before the record existed), so whether the runs asked the same questions is unchecked")
    return None, None


def compare(folders: list[Path], out: Path, allow_different_data: bool = False, warn=None) -> str:
    """A markdown table of the runs' shared metrics, each with its delta from the first run, a 95% interval for the
    delta where the metric is a share (`interval`) and the count it is a share of; and a plot. Runs evaluated on
    different data are refused (`allow_different_data`: compared under a warning at the top of the table)."""
    if len(folders) < 2:
        raise VlprefError("compare needs at least two run folders")
    loaded = {folder.name: load_run(folder) for folder in folders}
    if len(loaded) < len(folders):
        raise VlprefError("run folders must have different names (they head the columns)")
    names = list(loaded)
    error, warning = data_check(names, list(loaded.values()))
    if error and not allow_different_data:
        raise VlprefError(error)
    warning = error or warning
    runs = {name: {k: v for k, v in numeric_metrics(r).items() if not k.startswith(NOT_METRICS)}
            for name, r in loaded.items()}
    items = {name: _items(folder) for name, folder in zip(names, folders, strict=True)}
    shared = [m for m in runs[names[0]] if all(m in r for r in runs.values())]
    if not shared:
        raise VlprefError("the runs share no metric; compare runs of the same benchmark")
    lines = [f"**WARNING: {warning}**", ""] if warning else []
    lines += [f"Deltas from {names[0]}, ± a 95% interval (normal approximation for a difference of proportions, "
              "runs taken as independent; only for shares: accuracy, F1, CHAIR, ...); n: the questions, images or "
              "mentions each metric is a share of.", ""]
    lines += ["| metric | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for metric in shared:
        base = runs[names[0]][metric]
        counts = [metric_n(metric, loaded[name], items[name]) for name in names]
        cells = [f"{base:.4g}"]
        for name, n in zip(names[1:], counts[1:], strict=True):
            value = runs[name][metric]
            half = interval(base, value, counts[0], n) if any(w in metric for w in SHARES) else None
            cells.append(f"{value:.4g} ({value - base:+.3g}" + (f" ± {half:.2g})" if half is not None else ")"))
        shown = "/".join(dict.fromkeys("?" if n is None else str(n) for n in counts))
        lines.append(f"| {metric}{arrow(metric)} | {shown} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    if warning and warn:
        warn(warning)
    unit = [m for m in shared if all(0.0 <= r[m] <= 1.0 for r in runs.values())]
    if unit:
        _bars({name: {m: r[m] for m in unit} for name, r in runs.items()}, out / "compare.png", "comparison")
    return text


def _bars(series: dict[str, dict[str, float]], path: Path, title: str, ylim: tuple | None = (0, 1)) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metrics = list(next(iter(series.values())))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, len(metrics) * 0.7), 4))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(metrics))], [values[m] for m in metrics], width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(metrics))], metrics, rotation=40,
                  ha="right", fontsize=8)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
