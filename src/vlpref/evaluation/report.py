"""Evaluation reports: one run's JSON, markdown and plot; several runs side by side with deltas.

    vlpref eval world --model runs/seva/model --out runs/eval/seva          # results.json, results.md, results.png
    # benchmarks with categories (MME subtasks, MMHal question types, ...) also get categories.png
    vlpref eval compare runs/eval/base runs/eval/seva --out runs/eval/cmp   # compare.md, compare.png, deltas vs base

A run folder holds `results.json`: {"benchmark": ..., "model": ..., <metric>: <number or nested numbers>}. Nested
results (per split, per category) are flattened to 'a/b' names, so every benchmark's numbers compare the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlpref.errors import VlprefError

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
    unit = {k: v for k, v in numbers.items() if 0.0 <= v <= 1.0 and not k.startswith(("calls/", "limit"))}
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


def compare(folders: list[Path], out: Path) -> str:
    """A markdown table of the runs' shared metrics, each with its delta from the first run; and a plot."""
    if len(folders) < 2:
        raise VlprefError("compare needs at least two run folders")
    runs = {folder.name: numeric_metrics(load_run(folder)) for folder in folders}
    if len(runs) < len(folders):
        raise VlprefError("run folders must have different names (they head the columns)")
    names = list(runs)
    shared = [m for m in runs[names[0]] if all(m in r for r in runs.values())]
    if not shared:
        raise VlprefError("the runs share no metric; compare runs of the same benchmark")
    head = "| metric | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for metric in shared:
        base = runs[names[0]][metric]
        cells = [f"{base:.4g}"] + [f"{r[metric]:.4g} ({r[metric] - base:+.3g})" for r in list(runs.values())[1:]]
        lines.append(f"| {metric}{arrow(metric)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
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
