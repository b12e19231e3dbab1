"""The report's pictures: precision-recall curves with each model's operating point, and reliability diagrams.

Kept apart so the rest of the evaluation never imports matplotlib (headless ``Agg`` backend, imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flagstream.classifier.training.calibration import expected_calibration_error, reliability
from flagstream.classifier.data.corpus import targets
from flagstream.classifier.labels import LABELS


def plot_curves(out_dir: Path, test: Any, candidates: dict[str, np.ndarray], thresholds: dict[str, dict[str, float]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    y = targets(test)
    files = []
    fig, axes = plt.subplots(1, len(LABELS), figsize=(6 * len(LABELS), 5))
    for j, lab in enumerate(LABELS):
        ax = axes[j]
        known = ~np.isnan(y[:, j])
        for name, probs in candidates.items():
            p, r, _ = precision_recall_curve(y[known, j].astype(int), probs[known, j])
            ax.plot(r, p, label=name)
            pred = probs[known, j] >= thresholds[name][lab]
            t = y[known, j] == 1
            if pred.any():
                ax.scatter([(pred & t).sum() / max(1, t.sum())], [(pred & t).sum() / pred.sum()], marker="o")
        ax.axhline(0.9, color="grey", lw=0.5, ls="--")
        ax.set(title=f"{lab}: precision-recall (test)", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "pr_curves.png", dpi=110)
    plt.close(fig)
    files.append("pr_curves.png")
    fig, axes = plt.subplots(1, len(LABELS), figsize=(6 * len(LABELS), 5))
    for j, lab in enumerate(LABELS):
        ax = axes[j]
        for name, probs in candidates.items():
            pts = reliability(probs[:, j], y[:, j])
            ax.plot([a for a, _, _ in pts], [b for _, b, _ in pts], marker="o",
                    label=f"{name} (ECE {expected_calibration_error(probs[:, j], y[:, j]):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set(title=f"{lab}: calibration (test)", xlabel="mean predicted probability", ylabel="observed frequency")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "calibration.png", dpi=110)
    plt.close(fig)
    files.append("calibration.png")
    return files
