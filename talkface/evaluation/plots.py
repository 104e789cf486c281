"""PNG plots of an evaluation report: each field's distribution over files and per-file per-frame sync curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..metrics import METRICS, is_number
from ..utils.io import write_with
from .cache import safe_name
from .pairing import EVALUATION_FPS


def write_plots(report, plots_dir, max_curve_plots: int = 20) -> dict:
    """Histograms of each metric over files and per-frame sync curves (LSE confidence, AVS_u) as PNG."""
    from ..utils.imports import require

    matplotlib = require("matplotlib", "evaluation plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for field_name in report.fields:
        values = [row["values"][field_name] for row in report.files
                  if field_name in row["values"] and is_number(row["values"][field_name])
                  and math.isfinite(row["values"][field_name])]
        if not values:
            continue
        figure, axis = plt.subplots(figsize=(5, 3.2))
        axis.hist(values, bins=min(30, max(5, len(values))), color="#4477aa")
        axis.set_xlabel(field_name)
        axis.set_ylabel("files")
        summary = report.summary.get(field_name)
        if summary is not None and math.isfinite(summary["value"]):
            axis.axvline(summary["value"], color="#cc3311", linestyle="--", label=f"data set {summary['value']:.3f}")
            axis.legend(fontsize=8)
        axis.set_title(f"{field_name} over {len(values)} files")
        figure.tight_layout()
        path = plots_dir / f"distribution_{field_name}.png"
        write_with(path, lambda tmp: figure.savefig(tmp, dpi=100))
        plt.close(figure)
        written[f"plot_{field_name}"] = path

    curve_rows = [row for row in report.files if row["curves"]][:max_curve_plots]
    labels = {name: label for metric in METRICS.values() for name, label in metric.curve_labels.items()}
    for row in curve_rows:
        names = list(row["curves"])
        figure, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
        for axis, name in zip(axes[:, 0], names):
            curve = np.asarray(row["curves"][name], dtype=float)  # NaN where nothing was scored (gaps are drawn)
            axis.plot(np.arange(len(curve)) / EVALUATION_FPS, curve, linewidth=1)
            axis.set_ylabel(labels.get(name, name), fontsize=8)
            axis.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("time (s)")
        axes[0, 0].set_title(f"{row['stem']}: per-frame sync")
        figure.tight_layout()
        path = plots_dir / "sync_curves" / f"{safe_name(row['stem'])}.png"
        path.parent.mkdir(exist_ok=True)
        write_with(path, lambda tmp: figure.savefig(tmp, dpi=100))
        plt.close(figure)
        written[f"curve_{row['stem']}"] = path
    return written
