"""The table and figure of `experiments.evidence`: per method, mean ± std over seeds of accuracy, first-layer
density and locality (per-unit ratio to each unit's own permutation null, radius against SGD's), and the
accuracy left after window cropping; and a histogram of the per-unit ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blasso_jax import figures, report
from blasso_jax.counting import FIRST_LAYER

HEADERS = (
    "method",
    "seeds",
    "test % (best val)",
    "test % (final)",
    "layer-1 non-zero %",
    "ratio median",
    "units at ratio ≥ 2",
    "radius px (÷ SGD's)",
    "final test %: uncropped → window-cropped",
)


def _groups(records: Sequence[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: (r["label"], r["seed"])):
        groups.setdefault(record["label"], []).append(record)
    return groups


def method_table(records: Sequence[dict]) -> str:
    """One row per method label, mean ± std over its seeds (the sample std; n in the seeds column)."""
    groups = _groups(records)
    sgd = groups.get("SGD")
    sgd_radius = statistics.mean(r["locality"]["radius_median"] for r in sgd) if sgd else None
    rows = []
    for label, runs in groups.items():
        radii = [r["locality"]["radius_median"] for r in runs]
        radius = report.mean_std(radii, 1)
        if sgd_radius:
            radius += f" (÷ {statistics.mean(radii) / sgd_radius:.2f})"
        density = [100 * r["nonzero_per_layer"][FIRST_LAYER] / r["dense_per_layer"][FIRST_LAYER] for r in runs]
        uncropped = report.mean_std([100 * r["final_test_accuracy_uncropped"] for r in runs])
        cropped = report.mean_std([100 * r["final_test_accuracy_window_cropped"] for r in runs])
        rows.append(
            [
                label,
                ", ".join(str(r["seed"]) for r in runs),
                report.mean_std([100 * r["test_accuracy"]["best"] for r in runs]),
                report.mean_std([100 * r["test_accuracy"]["final"] for r in runs]),
                report.mean_std(density, 2),
                report.mean_std([r["locality"]["ratio_median"] for r in runs], 2),
                report.mean_std([r["locality"]["ratio_ge2_fraction"] for r in runs], 2),
                radius,
                f"{uncropped} → {cropped}",
            ]
        )
    return report.markdown_table(HEADERS, rows)


def save_ratio_histogram(records: Sequence[dict], path_without_suffix: Path) -> list[Path]:
    """A histogram of the per-unit ratio (share ÷ its own permutation null) of every method, seeds pooled."""
    fig = figures.new_figure(figsize=(7, 4))
    ax = fig.add_subplot()
    groups = _groups(records)
    top = max((max(r["unit_ratios"], default=1.0) for runs in groups.values() for r in runs), default=1.0)
    bins = np.linspace(0, max(top, 2.5), 60)
    for label, runs in groups.items():
        ratios = np.concatenate([np.asarray(r["unit_ratios"]) for r in runs])
        if len(ratios):
            ax.hist(ratios, bins=bins, histtype="step", density=True, label=f"{label} ({len(ratios)} units)")
    ax.axvline(2.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("best-window share ÷ the unit's own permutation null")
    ax.set_ylabel("density of units")
    ax.legend(fontsize=7)
    return figures.save_figure(fig, path_without_suffix)
