"""The paper's Figures 3 and 4, and the locality of first-layer filters over training, as matplotlib Figures
(Figures 1, 2 and 5, model sizes and accuracies against them, are in `blasso_jax.reporting.scaling_figures`).

Figures are built in the one style of `blasso_jax.reporting.style` (no pyplot, no backend, no global state);
`style.save_figure` writes them as PNG and PDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from blasso_jax.analysis.filters import FILTER_NORMALISATION, normalised_filters
from blasso_jax.models import networks as models
from blasso_jax.reporting.style import GRID, REFERENCE, figure_legend, new_figure, panels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Figure 3's reference models: the label on the plot and the model whose kernel sizes it shows.
REFERENCE_MODELS = {"S-CONV": "s-conv", "S-LOCAL": "s-local", "dense": "s-fc"}
_REFERENCE_COLORS = ("black", "tab:gray", "tab:brown", "tab:olive", "tab:cyan")


def reference_counts(
    alpha: int, image_shape: Sequence[int], num_classes: int | Sequence[int]
) -> dict[str, dict[str, int]]:
    """Kernel entries per layer of S-CONV, S-LOCAL and S-FC ('dense') at this α, from the models' shapes.

    With several class counts (Figure 3 puts CIFAR-100 beside CIFAR-10 and SVHN), a layer whose size
    depends on the class count (the classifier) gets one reference per count, named 'S-CONV, 100
    classes'; the others stay one line. `jax.eval_shape` of each model's init: nothing is allocated,
    so α=150 costs nothing.
    """
    class_counts = sorted({int(num_classes)} if isinstance(num_classes, int) else {int(c) for c in num_classes})
    counts: dict[str, dict[str, int]] = {}
    for label, name in REFERENCE_MODELS.items():
        per_classes = {}
        for classes in class_counts:
            per_classes[classes] = models.layer_weights(name, alpha, classes, image_shape)
        first = per_classes[class_counts[0]]
        counts[label] = {layer: n for layer, n in first.items() if all(c[layer] == n for c in per_classes.values())}
        if len(class_counts) > 1:
            for classes, sizes in per_classes.items():
                counts[f"{label}, {classes} classes"] = {k: n for k, n in sizes.items() if k not in counts[label]}
    return counts


def _layer_names(runs: dict[str, list[dict]]) -> list[str]:
    names: list[str] = []
    for records in runs.values():
        for record in records:
            names += [name for name in record.get("nonzero_per_layer", {}) if name not in names]
    return names


def plot_nonzeros(runs: dict[str, list[dict]], references: dict[str, dict[str, float]]) -> Figure:
    """Figure 3: non-zero weights per layer against epoch, one panel per layer and one curve per run.

    `runs` maps a label to its metrics records (`epoch`, `nonzero_per_layer`); `references` maps a
    name (e.g. 'S-CONV') to per-layer counts, drawn as dashed lines in the panels of those layers.
    """
    layers = _layer_names(runs)
    empty = f"no metrics record of runs {sorted(runs)} has 'nonzero_per_layer'; nothing to plot"
    fig, axes = panels(len(layers), empty)
    colors: dict[str, str] = {}  # one colour per reference model, whatever its class count
    for ax, layer in zip(axes, layers):
        levels = []
        for label, records in runs.items():
            points = sorted(
                (r["epoch"], r["nonzero_per_layer"][layer]) for r in records if layer in r.get("nonzero_per_layer", {})
            )
            if points:
                epochs, counts = zip(*points)
                ax.plot(epochs, counts, marker="." if len(points) < 30 else None, label=label)
                levels += counts
        for name, per_layer in references.items():
            color = colors.setdefault(name.split(",")[0], _REFERENCE_COLORS[len(colors) % len(_REFERENCE_COLORS)])
            if layer in per_layer:
                ax.axhline(per_layer[layer], **{**REFERENCE, "color": color}, label=name)
                levels.append(per_layer[layer])
        ax.set_yscale("log", nonpositive="mask")
        positive = [level for level in levels if level > 0]
        if positive:  # a margin of ×2, so a panel whose counts never change (the last layer) still has a range
            ax.set_ylim(min(positive) / 2, max(positive) * 2)
        ax.set_title(layer)
        ax.set_xlabel("epoch")
        ax.grid(True, which="major", **GRID)
    axes[0].set_ylabel("non-zero weights")
    figure_legend(fig, axes)
    return fig


def _filter_image(weights: np.ndarray) -> tuple[np.ndarray, str | None]:
    """|w| / max |w| of one [H, W, C] filter, as an RGB or grayscale image and its colormap."""
    magnitude = normalised_filters(weights[None])[0]
    if magnitude.shape[-1] == 3:
        return magnitude, None
    return magnitude[..., 0], "gray"


def plot_filters(
    panels: dict[str, np.ndarray],
    image_shape: Sequence[int],
    *,
    k: int = 8,
    min_nonzero: int = 20,
    seed: int = 0,
    chosen_units: dict[str, tuple[np.ndarray, str]] | None = None,
) -> Figure:
    """Figure 4: per panel, `k` first-layer filters drawn at random among units with ≥ `min_nonzero` non-zeros.

    Each panel value holds one filter per unit (`[units, H, W, C]`, e.g. from `fc_filters_as_images`
    or `local_filters_as_images`). The draw uses `numpy.random.default_rng(seed)`, one per panel, so
    panels do not depend on each other. With fewer eligible units, all are shown and the title says so.
    `chosen_units[panel] = (units, caption)` shows the first `k` of those units instead (e.g. the most local).
    """
    image_shape = tuple(int(d) for d in image_shape)
    if image_shape[-1] not in (1, 3):
        raise ValueError(f"filters can be drawn for 1 or 3 input channels, got image_shape {image_shape}")
    if not panels:
        raise ValueError("plot_filters needs at least one panel")
    if k < 1:
        raise ValueError(f"k (filters per panel) must be >= 1, got {k}")
    cols = min(k, 8)
    rows = math.ceil(k / cols)
    fig = new_figure(figsize=(1.4 * cols, (1.4 * rows + 0.5) * len(panels) + 0.4))
    fig.suptitle(FILTER_NORMALISATION, fontsize=9)
    subfigures = np.atleast_1d(fig.subfigures(len(panels), 1))
    for subfigure, (name, filters) in zip(subfigures, panels.items()):
        filters = np.asarray(filters)
        if math.prod(filters.shape[1:]) != math.prod(image_shape):
            raise ValueError(f"panel {name!r}: filters of shape {filters.shape[1:]} do not reshape to {image_shape}")
        filters = filters.reshape(len(filters), *image_shape)
        chosen, title = _panel_units(name, filters, k, min_nonzero, seed, (chosen_units or {}).get(name))
        subfigure.suptitle(title, fontsize=9)
        axes = subfigure.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes:
            ax.set_axis_off()
        for ax, unit in zip(axes, chosen):
            image, cmap = _filter_image(filters[unit])
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"unit {unit}", fontsize=7)
    return fig


def _panel_units(name, filters, k, min_nonzero, seed, given) -> tuple[np.ndarray, str]:
    """The units a Figure 4 panel shows and its title: `given` (units, caption), or a seeded random draw."""
    if given is not None:
        return np.asarray(given[0])[:k], f"{name}: {given[1]}"
    nonzero = np.count_nonzero(filters.reshape(len(filters), -1), axis=1)
    eligible = np.flatnonzero(nonzero >= min_nonzero)
    chosen = np.random.default_rng(seed).choice(eligible, size=min(k, len(eligible)), replace=False)
    if len(eligible) >= k:
        return chosen, f"{name}: {k} of {len(eligible)} units with ≥{min_nonzero} non-zeros"
    return chosen, f"{name}: only {len(eligible)} of {len(filters)} units have ≥{min_nonzero} non-zeros"


def plot_locality(runs: dict[str, list[dict]], image_shape: Sequence[int]) -> Figure:
    """First-layer locality against epoch, one curve per run: the moment β-LASSO's filters turn local.

    Left: the median over units of the largest |w| share inside any 9×9 window (`analysis.locality`),
    with each run's shuffled-pixel level dotted in its colour and dense random filters' level dashed.
    Right: the median radius holding 90% of |w|, from 0 to the image's half diagonal, so a flat line
    looks flat. Records without a `locality` dict are skipped.
    """
    fig = new_figure(figsize=(9, 3.8))
    share_ax, radius_ax = fig.subplots(1, 2)
    chance: dict[str, float] = {}
    plotted = 0
    for label, records in runs.items():
        summaries = sorted((r["epoch"], r["locality"]) for r in records if r.get("locality", {}).get("radius_median"))
        if not summaries:
            continue
        epochs = [epoch for epoch, _ in summaries]
        marker = "." if len(epochs) < 30 else None
        (line,) = share_ax.plot(epochs, [s["window_share_median"] for _, s in summaries], marker=marker, label=label)
        share_ax.plot(epochs, [s["window_share_shuffled"] for _, s in summaries], linestyle=":", color=line.get_color())
        radius_ax.plot(epochs, [s["radius_median"] for _, s in summaries], marker=marker, label=label)
        chance = {"window_share": summaries[-1][1]["window_share_chance"], "radius": summaries[-1][1]["radius_chance"]}
        plotted += 1
    if not plotted:
        raise ValueError(f"no metrics record of runs {sorted(runs)} has a 'locality' dict; nothing to plot")
    share_ax.plot([], [], linestyle=":", color="gray", label="same weights, pixels shuffled")
    share_ax.axhline(chance["window_share"], **REFERENCE, label="dense random filters")
    radius_ax.axhline(chance["radius"], **REFERENCE, label="dense random filters")
    window = summaries[-1][1]["window"]
    share_ax.set(ylim=(0, 1), ylabel=f"median best {window}×{window}-window share of |w|")
    radius_ax.set(
        ylim=(0, math.hypot(*image_shape[:2]) / 2),
        ylabel=f"median radius holding {summaries[-1][1]['mass']:.0%} of |w| (px)",
    )
    for ax in (share_ax, radius_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, **GRID)
    figure_legend(fig, (share_ax, radius_ax), max_columns=3)
    return fig


# Figure 1's memory line: the weights one 16 GiB device holds in 16-bit (2 bytes each), the V100 of the paper.
