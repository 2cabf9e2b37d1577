"""OUT/log.png: the loss (and, for the DPO family, the reward margin and accuracy) per step, from OUT/log.jsonl.

Drawn on a bare matplotlib Figure with the Agg canvas, not pyplot: no process-wide backend is chosen and no figure
is kept open, so the trainer can call it once per run inside the demo or a notebook.
"""

from __future__ import annotations

import json
from pathlib import Path

# the DPO family's curves after the loss, as TRL names them in log.jsonl
CURVES = (("rewards/margins", "reward margin"), ("rewards/accuracies", "reward accuracy"))


def smoothed(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` values (the first ones over what there is): a step's loss is one batch's, noisy."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_log(log_file: Path, out: Path) -> Path | None:
    """Write the curves of `log_file` to `out` (PNG); None when it has no rows."""
    lines = log_file.read_text().splitlines() if log_file.is_file() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        return None
    from matplotlib.figure import Figure

    panels = [("loss", "loss")] + [(key, label) for key, label in CURVES if key in rows[-1]]
    figure = Figure(figsize=(5 * len(panels), 3.2), layout="constrained")
    window = max(1, len(rows) // 20)
    for axes, (key, label) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        steps, values = [s for s, _ in points], [v for _, v in points]
        axes.plot(steps, values, color="tab:blue", alpha=0.35 if window > 1 else 1.0, linewidth=1)
        if window > 1:
            axes.plot(steps, smoothed(values, window), color="tab:blue", linewidth=2, label=f"mean of {window} steps")
            axes.legend(loc="best", fontsize="small")
        axes.set_xlabel("step")
        axes.set_title(label)
        axes.grid(alpha=0.3)
    figure.savefig(out, dpi=80)
    return out
