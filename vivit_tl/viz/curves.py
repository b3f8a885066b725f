"""Training curves from a run's ``metrics.jsonl``: loss, learning rate and accuracy against step."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from vivit_tl.engine.metrics_log import read_metrics

# panel title -> metric keys drawn in it (a panel without any logged value is left out)
PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("train/loss", "val/loss"),
    "learning rate": ("lr",),
    "accuracy": ("train/acc", "val/top1", "val/top5"),
}


def metric_series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    """The (steps, values) at which ``key`` was logged with a finite number, in log order."""
    points = [
        (float(r["step"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    return [s for s, _ in points], [v for _, v in points]


def plot_metrics(metrics: str | Path, out: str | Path, title: str = "") -> Path:
    """Plot the training curves of a metrics log into a PNG (one panel per quantity, x = step).

    Args:
        metrics: the ``metrics.jsonl`` file or the run directory holding it.
        out: PNG path to write.
        title: figure title (default: the run directory's name).

    Returns:
        The path written.
    """
    records = read_metrics(metrics, strict=True)
    panels = {
        name: {key: metric_series(records, key) for key in keys}
        for name, keys in PANELS.items()
    }
    panels = {name: {k: s for k, s in series.items() if s[0]} for name, series in panels.items()}
    panels = {name: series for name, series in panels.items() if series}
    if not panels:
        raise ValueError(f"{metrics}: none of the metrics {sorted(k for ks in PANELS.values() for k in ks)} is logged")
    fig = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, series) in zip(axes, panels.items()):
        for key, (steps, values) in series.items():
            marker = "o" if key.startswith("val/") or len(steps) < 30 else None
            ax.plot(steps, values, label=key, marker=marker, markersize=3, linewidth=1.2)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        else:
            ax.legend(fontsize=8)
    metrics_path = Path(metrics)
    fig.suptitle(title or (metrics_path if metrics_path.is_dir() else metrics_path.parent).name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
