"""The paper's Figures 1, 2 and 5 as matplotlib Figures: weights against α and image size, width ladders with
the MDL panel, and accuracy against ResNet18's kernel size. Built without pyplot, as `blasso_jax.reporting.figures`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from blasso_jax.reporting import style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEVICE_MEMORY_BYTES = 16 * 2**30
BYTES_PER_WEIGHT = 2


def plot_sizes(by_alpha: dict[str, dict[int, int]], by_image_side: dict[str, dict[int, int]]) -> Figure:
    """Figure 1 (right): weights against α and against the image side, one line per model, log-log.

    `by_alpha[model][α]` and `by_image_side[model][side]` are weight counts (e.g. from `models.layer_weights`);
    a dashed line marks what a 16 GiB device holds in 16-bit.
    """
    fig = style.new_figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2)
    memory_line = DEVICE_MEMORY_BYTES / BYTES_PER_WEIGHT
    for ax, series, xlabel in (
        (axes[0], by_alpha, "α (base channels), 32×32 images"),
        (axes[1], by_image_side, "image side (px)"),
    ):
        for name, points in series.items():
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker=".", label=name.upper())
        ax.axhline(memory_line, **style.REFERENCE, label="16 GiB in 16-bit")
        ax.set(xscale="log", yscale="log", xlabel=xlabel)
        ticks = sorted({x for points in series.values() for x in points})
        ax.set_xticks(ticks, labels=[str(x) for x in ticks], minor=False)
        ax.set_xticks([], minor=True)
        ax.grid(True, which="major", **style.GRID)
    axes[0].set_ylabel("weights (kernel entries)")
    style.figure_legend(fig, axes, max_columns=4)
    return fig


def plot_kernel_sizes(accuracy: dict[str, dict[str, dict[int, float]]]) -> Figure:
    """Figure 5: test accuracy against ResNet18's kernel size, one panel per dataset and one line per method.

    `accuracy[dataset][method label][kernel size]` is a test accuracy in percent.
    """
    fig, axes = style.panels(len(accuracy), "no accuracies to plot")
    for ax, (dataset, by_method) in zip(axes, accuracy.items()):
        for label, points in by_method.items():
            sizes = sorted(points)
            ax.plot(sizes, [points[k] for k in sizes], marker="o", label=label)
        ax.set(title=dataset, xlabel="kernel size", xticks=sorted({k for p in by_method.values() for k in p}))
        ax.grid(True, **style.GRID)
    axes[0].set_ylabel("test accuracy % (best validation epoch)")
    style.figure_legend(fig, axes)
    return fig


def plot_width_ladders(
    accuracy: dict[str, dict[str, dict[int, tuple[float, float]]]],
    mdl: dict[str, dict[str, tuple[int, float]]],
    fit_accuracy: float,
) -> Figure:
    """Figure 2 (and 6): test and train accuracy against weights, and MDL against generalization, a row per dataset.

    `accuracy[dataset][model][weights]` is (train %, test %) of one run of the model's width ladder;
    `mdl[dataset][model]` is (fewest weights reaching `fit_accuracy` train accuracy, best test %), for
    the models that reach it; the others are named in the MDL panel.
    """
    if not accuracy:
        raise ValueError("no accuracies to plot")
    threshold = f"{100 * fit_accuracy:g}%"
    labels = list(dict.fromkeys(label for by_model in accuracy.values() for label in by_model))
    colors = {label: f"C{i}" for i, label in enumerate(labels)}  # a model's colour is the same in every row
    fig = style.new_figure(figsize=(12.6, 4.1 * len(accuracy)))
    subfigures = np.atleast_1d(fig.subfigures(len(accuracy), 1))
    axes = []
    for subfigure, (dataset, by_model) in zip(subfigures, accuracy.items()):
        subfigure.suptitle(dataset)
        test_ax, train_ax, mdl_ax = subfigure.subplots(1, 3, sharex=True)  # one weight axis per dataset
        mdl_ax.sharey(test_ax)  # both are test accuracy
        axes += [test_ax, train_ax, mdl_ax]
        for label, points in by_model.items():
            weights = sorted(points)
            for ax, column in ((train_ax, 0), (test_ax, 1)):
                ax.plot(weights, [points[w][column] for w in weights], marker="o", color=colors[label], label=label)
        train_ax.axhline(100 * fit_accuracy, **style.NO_STRUCTURE, label=f"{threshold} train")
        fitted = mdl.get(dataset, {})
        for label, (weights, best) in fitted.items():
            mdl_ax.scatter([weights], [best], color=colors[label], label=label)
            mdl_ax.annotate(label, (weights, best), textcoords="offset points", xytext=(4, 4), fontsize=8)
        never = [label for label in by_model if label not in fitted]
        mdl_title = "MDL & generalization" + (f"\nnever reached {threshold} train: {', '.join(never)}" if never else "")
        test_ax.set(title="test", ylabel="test accuracy % (best validation epoch)")
        train_ax.set(title="train", ylabel="train accuracy % (final epoch)")
        mdl_ax.set(
            title=mdl_title,
            xlabel=f"fewest weights reaching {threshold} train accuracy",
            ylabel="best test accuracy % over the ladder",
        )
        for ax in (test_ax, train_ax):
            ax.set_xlabel("weights (kernel entries)")
        for ax in (test_ax, train_ax, mdl_ax):
            ax.set_xscale("log")
            ax.grid(True, which="major", **style.GRID)
    style.figure_legend(fig, axes)
    return fig
