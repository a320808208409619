"""The figure of `experiments.evidence`: a histogram of the per-unit ratios (share ÷ the unit's own permutation
null) of every method in an evidence folder. Its table is `blasso_jax.reporting.evidence_tables.methods_table`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blasso_jax.reporting import style
from blasso_jax.reporting.evidence_tables import by_label


def save_ratio_histogram(records: Sequence[dict], path_without_suffix: Path) -> list[Path]:
    """A histogram of the per-unit ratio (share ÷ its own permutation null) of every method, seeds pooled."""
    fig = style.new_figure(figsize=(7, 4))
    ax = fig.add_subplot()
    groups = by_label(records)
    top = max((max(r["unit_ratios"], default=1.0) for runs in groups.values() for r in runs), default=1.0)
    bins = np.linspace(0, max(top, 2.5), 60)
    for label, runs in groups.items():
        ratios = np.concatenate([np.asarray(r["unit_ratios"]) for r in runs])
        if len(ratios):
            ax.hist(ratios, bins=bins, histtype="step", density=True, label=f"{label} ({len(ratios)} units)")
    ax.axvline(2.0, **style.GUIDE)
    ax.set_xlabel("best-window share ÷ the unit's own permutation null")
    ax.set_ylabel("density of units")
    ax.legend(fontsize=7)
    return style.save_figure(fig, path_without_suffix)
