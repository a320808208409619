"""The accuracy-locality frontier: each method cell's test accuracy (at best validation) against how local its first
layer is, from committed evidence JSONs (`experiments.evidence`), with the spread over seeds as error bars.

A cell is one method label (one configuration) with its seeds. Locality is read two ways, each against a null:
the median per-unit ratio (a unit's best-window share over its own permutation null: 1 without spatial structure)
and the median 90 %-mass radius divided by the tuned SGD's, the SGD cell of best mean validation accuracy.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path

from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.reporting import style
from blasso_jax.training.selection import best_by_validation


@dataclasses.dataclass(frozen=True)
class Cell:
    """One method cell over its seeds: mean and sample std (0 for one seed) of each quantity the frontier plots."""

    label: str
    method: str
    seeds: tuple[int, ...]
    val: float
    test: tuple[float, float]
    ratio: tuple[float, float]
    radius: tuple[float, float]
    density_first: float


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cells(records: Sequence[dict]) -> list[Cell]:
    """The cells of `records` (evidence JSONs), one per label, in label order; a seed given twice is an error."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["label"], []).append(record)
    result = []
    for label in sorted(groups):
        runs = sorted(groups[label], key=lambda r: r["seed"])
        seeds = tuple(r["seed"] for r in runs)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"cell {label!r} holds seeds {list(seeds)}: one JSON per seed, please")
        result.append(
            Cell(
                label=label,
                method=runs[0]["method"],
                seeds=seeds,
                val=statistics.mean(100 * r["val_accuracy"]["best"] for r in runs),
                test=_mean_std([100 * r["test_accuracy"]["best"] for r in runs]),
                ratio=_mean_std([r["locality"]["ratio_median"] for r in runs]),
                radius=_mean_std([r["locality"]["radius_median"] for r in runs]),
                density_first=statistics.mean(
                    r["nonzero_per_layer"][FIRST_LAYER] / r["dense_per_layer"][FIRST_LAYER] for r in runs
                ),
            )
        )
    return result


def first_seen(folders: Sequence[Sequence[dict]]) -> list[dict]:
    """The records of several evidence folders, leaving out a label that an earlier folder already holds: a cell
    over seeds (e.g. `cpu_augment/`) comes first, and a grid folder's seed-0 run of the same cell is not drawn again."""
    seen: set[str] = set()
    kept = []
    for records in folders:
        kept += [r for r in records if r["label"] not in seen]
        seen |= {r["label"] for r in records}
    return kept


def tuned_reference(all_cells: Sequence[Cell], method: str = "sgd") -> Cell:
    """The cell of `method` with the best mean validation accuracy (the first in label order among equals)."""
    candidates = [c for c in all_cells if c.method == method]
    if not candidates:
        raise ValueError(f"no {method} cell among {[c.label for c in all_cells]}: the radius needs a reference")
    return best_by_validation(candidates, lambda c: c.val)


def plot_frontier(records: Sequence[dict], path_without_suffix: str | Path, title: str = "") -> list[Path]:
    """Two panels, test accuracy against the median per-unit ratio and against the median radius ÷ the tuned SGD's;
    one point per cell with ±std bars over its seeds (a single-seed cell, e.g. a grid point, has none)."""
    from matplotlib import colormaps  # as style's, imported where a figure is drawn

    all_cells = cells(records)
    reference = tuned_reference(all_cells)
    fig = style.new_figure(figsize=(13, 5.5))
    axes = fig.subplots(1, 2, sharey=True)
    markers = {"blasso": "o", "sgd": "s", "mask_retrain": "^", "shuffled_mask_retrain": "v", "magnitude": "D"}
    for index, cell in enumerate(all_cells):
        x_values = (cell.ratio, (cell.radius[0] / reference.radius[0], cell.radius[1] / reference.radius[0]))
        for ax, (x, x_err) in zip(axes, x_values):
            ax.errorbar(
                x,
                cell.test[0],
                xerr=x_err,
                yerr=cell.test[1],
                fmt=markers.get(cell.method, "P"),
                color=colormaps["tab20"](index % 20),  # twenty distinct colours: grids add many cells
                capsize=3,
                markersize=6 if len(cell.seeds) > 1 else 4,
                label=f"{cell.label} (n={len(cell.seeds)})" if ax is axes[0] else None,
            )
    axes[0].axvline(1.0, **style.NO_STRUCTURE)
    axes[0].set_xlabel("median per-unit ratio (best-window share ÷ own permutation null; 1 = no locality)")
    axes[1].axvline(1.0, **style.NO_STRUCTURE)
    axes[1].set_xlabel(f"median 90 %-mass radius ÷ the tuned SGD's ({reference.label}: {reference.radius[0]:.1f} px)")
    axes[0].set_ylabel("test accuracy % at best validation")
    fig.suptitle(title or "accuracy against first-layer locality, mean ± std over seeds")
    style.figure_legend(fig, axes[:1], max_columns=2)
    return style.save_figure(fig, path_without_suffix)
