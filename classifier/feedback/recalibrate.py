"""A new model version whose only change is its thresholds, and the report that justifies it.

Thresholds are part of a model (review records name the version that applied them), so recalibrating
from reviewers' decisions writes a new model directory: the same weight files byte for byte, a bumped
version, the new thresholds, and the provenance (which decisions, how many, the estimates and the
refusals) under ``extra.recalibration``. :func:`write_recalibrated` re-reads the result through the
manifest check and verifies that nothing but thresholds, version and provenance changed.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flagstream.classifier.feedback.thresholds import Proposal
from flagstream.classifier.manifest import ModelManifest, read_manifest, write_manifest


def bump_version(version: str) -> str:
    """``1.2.0`` -> ``1.2.1``; ``2026.12`` -> ``2026.13``; ``v3-rc`` -> ``v3-rc.1``."""
    m = re.match(r"^(.*?)(\d+)$", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{version}.1"


def write_recalibrated(src: ModelManifest, out: Path, version: str, thresholds: Mapping[str, float],
                       provenance: Mapping[str, Any]) -> ModelManifest:
    """Copy ``src``'s files to ``out`` and write a manifest with ``thresholds`` and ``version``.

    Refuses to overwrite the source or a non-empty directory. Returns the re-read, verified manifest.
    """
    assert src.root is not None
    out = Path(out)
    if out.resolve() == Path(src.root).resolve():
        raise ValueError("the output must be a new directory, not the model being recalibrated")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; pick a new directory for the new model version")
    if version == src.version:
        raise ValueError(f"the new version must differ from {src.version}")
    unknown = set(thresholds) - set(src.labels)
    if unknown:
        raise ValueError(f"thresholds for labels the model does not have: {sorted(unknown)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in src.files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(src.root) / name, out / name)
    extra = dict(src.extra)
    extra["recalibration"] = dict(provenance, previous=f"{src.name}@{src.version}",
                                  previous_thresholds=dict(src.thresholds))
    new = ModelManifest(name=src.name, version=version, kind=src.kind, labels=list(src.labels),
                        thresholds={**src.thresholds, **{k: float(v) for k, v in thresholds.items()}},
                        normalizer_version=src.normalizer_version, base=src.base, extra=extra)
    write_manifest(out, new)
    back = read_manifest(out)  # the manifest check: every file present, hashed, nothing unlisted
    if back.files != src.files:
        raise ValueError("recalibrated model's files differ from the source model's (only thresholds may change)")
    return back


def candidates(parent: Path, src: ModelManifest, feed: str) -> list[ModelManifest]:
    """The thresholds-only versions of ``src`` for ``feed`` already written under ``parent`` (by
    ``calibrate --from-decisions --watch``), oldest first; directories that fail the manifest check are skipped."""
    out: list[tuple[str, ModelManifest]] = []
    for d in sorted(Path(parent).glob("*/manifest.json")) if Path(parent).is_dir() else []:
        try:
            m = read_manifest(d.parent)
        except (ValueError, OSError):
            continue
        rec = m.extra.get("recalibration") or {}
        if rec.get("previous") == f"{src.name}@{src.version}" and rec.get("feed") == feed and m.files == src.files:
            out.append((str(rec.get("written_at") or m.created_at), m))
    return [m for _, m in sorted(out, key=lambda x: x[0])]


def moved(proposed: Mapping[str, float], reference: Mapping[str, float], min_change: float) -> dict[str, float]:
    """The labels whose proposed threshold differs from ``reference`` by at least ``min_change``."""
    return {k: v for k, v in proposed.items() if abs(v - reference.get(k, float("nan"))) >= min_change
            or k not in reference}


def free_version(parent: Path, name: str, version: str) -> str:
    """``bump_version(version)``, bumped again while ``parent/<name>-<that>`` exists."""
    v = bump_version(version)
    while (Path(parent) / f"{name}-{v}").exists():
        v = bump_version(v)
    return v


def report_markdown(proposals: Sequence[Proposal], applied_feed: str | None, old: ModelManifest,
                    new_version: str | None) -> str:
    """The before/after table: per (label, feed) the estimates at the current and proposed thresholds."""

    def ci(p: tuple[float, float]) -> str:
        return f"[{p[0]:.2f}, {p[1]:.2f}]"

    lines = [f"# Recalibration of {old.name}@{old.version} from reviewers' decisions", "",
             f"Applied feed: `{applied_feed}` -> new version `{new_version}`" if new_version else
             "No threshold moved: no new version written.", "",
             "Estimates are Horvitz-Thompson (flagged decisions weight 1, audit decisions 1/probability) "
             "with 95% Wilson intervals on design-effective counts (classifier/feedback/thresholds.py).", "",
             "| label | feed | decisions (audit) | target P | threshold before | P before | R before | "
             "threshold after | P after | R after | outcome |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in proposals:
        cur = p.at_current
        before = (f"{cur.precision:.3f} {ci(cur.precision_ci)}", f"{cur.recall:.3f} {ci(cur.recall_ci)}") if cur else ("-", "-")
        if p.moved:
            after = (f"{p.threshold:.3f}", f"{p.precision:.3f} {ci(p.precision_ci)}", f"{p.recall:.3f} {ci(p.recall_ci)}")
            outcome = "moved"
        else:
            after = ("(kept)", "-", "-")
            outcome = f"refused: {p.refused}" + (f"; needs ~{p.more_decisions_needed} more decisions"
                                                 if p.more_decisions_needed else "")
        cur_t = f"{p.current:.3f}" if p.current is not None else "-"
        lines.append(f"| {p.label} | {p.feed} | {p.decisions} ({p.audit_decisions}) | {p.target_precision:.2f} | "
                     f"{cur_t} | {before[0]} | {before[1]} | {after[0]} | {after[1]} | {after[2]} | {outcome} |")
    return "\n".join(lines) + "\n"


def plot_curves(proposals: Sequence[Proposal], path: Path) -> Path | None:
    """PNG of the estimated precision and recall curves (with 95% bands) per (label, feed); None
    without matplotlib (the ``[train]`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = [p for p in proposals if p.curve]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    for ax, p in zip(axes[0], shown):
        t = [c.threshold for c in p.curve]
        for name, color, val, band in (("precision", "tab:blue", [c.precision for c in p.curve], [c.precision_ci for c in p.curve]),
                                       ("recall", "tab:orange", [c.recall for c in p.curve], [c.recall_ci for c in p.curve])):
            ax.plot(t, val, color=color, label=name)
            ax.fill_between(t, [b[0] for b in band], [b[1] for b in band], color=color, alpha=0.2)
        ax.axhline(p.target_precision, color="tab:blue", ls=":", lw=1, label="target precision")
        if p.current is not None:
            ax.axvline(p.current, color="grey", ls="--", lw=1, label=f"before {p.current:.2f}")
        if p.moved:
            ax.axvline(p.threshold, color="black", lw=1.2, label=f"after {p.threshold:.2f}")
        ax.set_title(f"{p.label} on {p.feed}: {p.decisions} decisions ({p.audit_decisions} audit)", fontsize=9)
        ax.set_xlabel("threshold")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(dir_: Path, proposals: Sequence[Proposal], applied_feed: str | None, old: ModelManifest,
                 new_version: str | None, provenance: Mapping[str, Any]) -> dict[str, Path]:
    """``report.md`` (table), ``report.json`` (every estimate) and ``curves.png`` in ``dir_``."""
    dir_ = Path(dir_)
    dir_.mkdir(parents=True, exist_ok=True)
    out = {"markdown": dir_ / "report.md", "json": dir_ / "report.json"}
    out["markdown"].write_text(report_markdown(proposals, applied_feed, old, new_version), encoding="utf-8")
    out["json"].write_text(json.dumps({"model": f"{old.name}@{old.version}", "new_version": new_version,
                                       "applied_feed": applied_feed, "provenance": dict(provenance),
                                       "proposals": [p.as_dict() for p in proposals]}, indent=2) + "\n",
                           encoding="utf-8")
    png = plot_curves(proposals, dir_ / "curves.png")
    if png is not None:
        out["png"] = png
    return out


__all__ = ["bump_version", "write_recalibrated", "candidates", "moved", "free_version", "report_markdown", "plot_curves", "write_report"]
