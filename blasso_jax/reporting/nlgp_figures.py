"""Figures of the NLGP benchmark: first-layer receptive fields, locality over training, locality against the gain.

As `blasso_jax.reporting.figures`, every figure is a `matplotlib.figure.Figure` built without pyplot (no backend, no
global state); save it with `style.save_figure`. Curves and sweeps take plain records (dicts with an
`epoch` and the metric names), one list per seed, and draw the mean over seeds with a ±1 standard
deviation band (sample std; no band with one seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blasso_jax.data.geometry import LINES, Geometry
from blasso_jax.reporting import style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The per-unit locality numbers of `blasso_jax.analysis.locality.summarize`, with their axis labels.
CURVE_METRICS = {
    "ratio_median": "median ratio (share / permutation null)",
    "ratio_ge2_fraction": "fraction of units with ratio ≥ 2",
    "ipr_median": "median IPR (sparsity, not locality)",
}


def _sorted_units(kernel: np.ndarray) -> np.ndarray:
    """Units ordered by the site of their largest |w| (all-zero units last), so local fields form a diagonal."""
    peaks = np.where(np.abs(kernel).max(0) > 0, np.abs(kernel).argmax(0), kernel.shape[0])
    return np.argsort(peaks, kind="stable")


def plot_receptive_fields(
    panels: dict[str, np.ndarray], geometry: Geometry, units: int = 8, columns: int = 2
) -> Figure:
    """Each panel's first-layer weights w / max|w| per unit (red +, blue −, white 0), units sorted by peak site.

    Args:
      panels: title -> kernel `[sites, units]` (one channel).
      geometry: a ring or line (each panel one units × sites image), or a torus or image (each panel `units` maps).
      units: the most units drawn per panel on a torus (the first in peak order).
      columns: panels per row.

    Returns:
      The Figure: panels in rows of `columns`, in the order given.
    """
    if not panels:
        raise ValueError("no receptive-field panels to draw")
    rows = -(-len(panels) // columns)
    tiles = 1 if geometry.kind in LINES else units
    fig = style.new_figure(figsize=(3.8 * columns, (2.5 if geometry.kind in LINES else 1.9) * rows))
    grids = fig.subfigures(rows, columns, squeeze=False).ravel()
    for grid, (title, kernel) in zip(grids, panels.items()):
        kernel = np.asarray(kernel, np.float64)[:, _sorted_units(np.asarray(kernel))]
        scale = np.abs(kernel).max(0)
        normalised = kernel / np.where(scale > 0, scale, 1.0)
        axes = grid.subplots(1, tiles, squeeze=False).ravel()
        if geometry.kind in LINES:
            image = axes[0].imshow(normalised.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="none")
            axes[0].set(xlabel="site", ylabel="unit (by peak site)")
        else:
            for ax, column in zip(axes, normalised.T):
                image = ax.imshow(column.reshape(geometry.shape), cmap="RdBu_r", vmin=-1, vmax=1)
                ax.set_axis_off()
        grid.suptitle(title, fontsize=9)
        grid.colorbar(image, ax=list(axes), shrink=0.8, label="w / max |w|")
    for grid in grids[len(panels) :]:
        grid.set_visible(False)
    return fig


def _mean_band(ax, epochs: Sequence[float], values: np.ndarray, **style: Any) -> None:
    """Mean over seeds (rows of `values`) and, with several seeds, a ±1 sample-std band."""
    mean = np.nanmean(values, axis=0)
    (line,) = ax.plot(epochs, mean, **style)
    if len(values) > 1:
        spread = np.nanstd(values, axis=0, ddof=1)
        ax.fill_between(epochs, mean - spread, mean + spread, color=line.get_color(), alpha=0.15, linewidth=0)


def _aligned(seeds: list[list[dict]], metric: str) -> tuple[list[float], np.ndarray]:
    """The epochs every seed recorded and a [seeds, epochs] array of `metric` (None -> NaN)."""
    epochs = sorted(set.intersection(*(set(r["epoch"] for r in records) for records in seeds)))
    values = [[next(r for r in records if r["epoch"] == e).get(metric) for e in epochs] for records in seeds]
    return epochs, np.array([[np.nan if v is None else v for v in row] for row in values], np.float64)


def plot_locality_curves(curves: dict[str, list[list[dict]]], styles: dict[str, dict] | None = None) -> Figure:
    """The per-unit locality summaries against epoch, one line per label (mean over its seeds, ±1 std band).

    Args:
      curves: label -> one list of records per seed; a record holds `epoch` and the `CURVE_METRICS` keys.
      styles: label -> matplotlib line style (color, linestyle, ...), optional.

    Returns:
      The Figure: one panel per metric, a dotted line at ratio 1 (no spatial structure) and 2 (the mark).
    """
    fig, axes = style.panels(len(curves) and len(CURVE_METRICS), "no locality curves to draw")
    for ax, (metric, ylabel) in zip(axes, CURVE_METRICS.items()):
        for label, seeds in curves.items():
            epochs, values = _aligned(seeds, metric)
            _mean_band(ax, epochs, values, label=label, **(styles or {}).get(label, {}))
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.grid(True, **style.GRID)
    axes[0].axhline(1.0, **style.NO_STRUCTURE)
    axes[0].axhline(2.0, **style.GUIDE)
    style.figure_legend(fig, axes[:1], max_columns=4, fontsize=8)
    return fig


def plot_gain_sweep(points: dict[str, dict[float, list[dict]]], styles: dict[str, dict] | None = None) -> Figure:
    """Final locality against the gain g, one line per label: mean over seeds with ±1 std error bars.

    Args:
      points: label -> {gain: one final-summary dict per seed (the `CURVE_METRICS` keys)}.
      styles: label -> matplotlib line style, optional.

    Returns:
      The Figure: one panel per metric, gain on a log axis.
    """
    fig, axes = style.panels(len(points) and len(CURVE_METRICS), "no gain-sweep points to draw")
    for ax, (metric, ylabel) in zip(axes, CURVE_METRICS.items()):
        for label, by_gain in points.items():
            gains = sorted(by_gain)
            values = [np.array([np.nan if s.get(metric) is None else s[metric] for s in by_gain[g]]) for g in gains]
            means = [np.nanmean(v) for v in values]
            errors = [np.nanstd(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
            ax.errorbar(gains, means, yerr=errors, marker="o", capsize=3, label=label, **(styles or {}).get(label, {}))
        ax.set(xscale="log", xlabel="gain g", ylabel=ylabel)
        ax.grid(True, **style.GRID)
    axes[0].axhline(1.0, **style.NO_STRUCTURE)
    style.figure_legend(fig, axes[:1], max_columns=4, fontsize=8)
    return fig
